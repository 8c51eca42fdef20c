"""The convolution arithmetic of the ConvLSTM twins (:mod:`rnnparity.conv_lstm`), NumPy only:
TensorFlow's ``SAME`` padding, output sizes, the windows of an input gathered as columns
(im2col with ``sliding_window_view``) so that a convolution is one matmul, ``SameColumns``
gathering them into buffers made once, for a convolution repeated every timestep, and the
adjoint of im2col (col2im: columns summed back into the image) for the gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one spatial axis: ``(before, after)``."""
    span = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    span = (kernel - 1) * dilation + 1
    return (size - span) // stride + 1 if size >= span else 0


def windows(x: np.ndarray, kernel_size: tuple[int, ...], strides: tuple[int, ...], dilation_rate: tuple[int, ...]) -> np.ndarray:
    """The convolution windows of (already padded) ``x`` ``(n, channels, *spatial)`` as a
    view ``(n, channels, *kernel_size, *out)``: element ``[b, ch, *k, *p]`` is the input
    under kernel offset ``k`` at output position ``p``. No copy."""
    rank = len(kernel_size)
    spans = tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation_rate))
    view = sliding_window_view(x, spans, axis=tuple(range(2, rank + 2)))  # (n, C, *positions, *spans)
    pick = (slice(None), slice(None), *(slice(None, None, s) for s in strides), *(slice(None, None, d) for d in dilation_rate))
    return np.moveaxis(view[pick], tuple(range(rank + 2, 2 * rank + 2)), tuple(range(2, rank + 2)))


def im2col(
    x: np.ndarray,
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
) -> np.ndarray:
    """The convolution windows of ``x`` ``(n, channels, *spatial)`` as columns:
    ``(n, channels * prod(kernel_size), prod(out))``, rows ordered ``(channel, *kernel)``.
    The copy runs along the last spatial axis, which is contiguous in ``x``."""
    if any(p for pair in pads for p in pair):
        x = np.pad(x, ((0, 0), (0, 0), *pads))
    view = windows(x, kernel_size, strides, dilation_rate)
    rank = len(kernel_size)
    return view.reshape(x.shape[0], -1, math.prod(view.shape[rank + 2 :]))


class SameColumns:
    """im2col of a stride-1, ``same``-padded convolution, for up to ``block`` arrays of shape
    ``(channels, *spatial)`` at a time, into buffers made once: a zero-bordered copy of the
    input (only its interior is ever written, so the border stays zero) and the columns
    ``(block, channels * prod(kernel_size), prod(spatial))``. A call on ``x`` ``(n, channels,
    *spatial)``, ``n <= block``, returns the first ``n`` columns, the values :func:`im2col`
    gives for ``x`` with the same arguments; the next call overwrites them."""

    def __init__(
        self,
        block: int,
        channels: int,
        spatial: tuple[int, ...],
        kernel_size: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        dtype: np.dtype,
    ) -> None:
        ones = (1,) * len(kernel_size)
        self.block = block
        self.key = (block, channels, tuple(spatial), tuple(kernel_size), tuple(pads), np.dtype(dtype))
        self.padded = np.zeros((block, channels, *(s + a + b for s, (a, b) in zip(spatial, pads))), dtype)
        self.interior = self.padded[(slice(None), slice(None), *(slice(a, a + s) for s, (a, _) in zip(spatial, pads)))]
        self.columns = np.empty((block, channels * math.prod(kernel_size), math.prod(spatial)), dtype)
        self._windows = windows(self.padded, kernel_size, ones, ones)  # (block, C, *K, *spatial), a view of padded
        self._target = self.columns.reshape(self._windows.shape)  # the same layout, a view of columns

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        self.interior[:n] = x
        np.copyto(self._target[:n], self._windows[:n])
        return self.columns[:n]


def images_per_block(bytes_per_image: int, count: int, budget: int) -> int:
    """How many images of ``bytes_per_image`` (their columns and products) a block of at most
    ``budget`` bytes holds: at least one, at most ``count``."""
    return max(1, min(count, budget // max(1, bytes_per_image)))


def col2im(
    columns: np.ndarray,
    image_shape: tuple[int, ...],
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    dilation_rate: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
) -> np.ndarray:
    """The adjoint of :func:`im2col`: ``columns`` ``(n, channels * prod(kernel_size), prod(out))``
    summed back into images ``(n, *image_shape)`` (``image_shape`` = ``(channels, *spatial)``):
    every window entry is added to the input position im2col gathered it from, and what lands
    on the padding is dropped. With ``columns`` the gradient of im2col's result, this is the
    gradient of its input. One strided addition per kernel offset; the result may be a view."""
    n, channels, spatial = columns.shape[0], image_shape[0], image_shape[1:]
    padded_size = tuple(s + before + after for s, (before, after) in zip(spatial, pads))
    out = tuple((p - (k - 1) * d - 1) // st + 1 for p, k, d, st in zip(padded_size, kernel_size, dilation_rate, strides))
    windows = columns.reshape(n, channels, *kernel_size, *out)
    images = np.zeros((n, channels, *padded_size), dtype=columns.dtype)
    every = (slice(None), slice(None))
    for offsets in np.ndindex(*kernel_size):
        # im2col's entry (offset k, position o) is the padded input at o * stride + k * dilation.
        target = tuple(slice(k * d, k * d + (o - 1) * st + 1, st) for k, d, o, st in zip(offsets, dilation_rate, out, strides))
        images[(*every, *target)] += windows[(*every, *offsets)]
    return images[(*every, *(slice(before, before + s) for s, (before, _) in zip(spatial, pads)))]


@dataclass(frozen=True)
class Geometry:
    """The spatial sizes one call works with (a cell's weights do not fix them)."""

    spatial_in: tuple[int, ...]
    spatial_out: tuple[int, ...]
    input_pads: tuple[tuple[int, int], ...]
    recurrent_pads: tuple[tuple[int, int], ...]
