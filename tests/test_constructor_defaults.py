"""Twins built by name (not by from_keras) get Keras's defaults, keep the training-only
arguments and honour ``backend``, for every layer kind and cell.

from_keras passes every argument explicitly, so a wrong default (``return_sequences=True``,
``activation="relu"``) or an argument dropped on the way to the cell would pass every parity
case; these tests close that hole (found by mutation testing, docs/mutation.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import FLAVOR_MAJOR, flavor_params, keras_handle

import rnnparity
from rnnparity.suite.matrix import random_weights

LAYERS = ("LSTM", "GRU", "SimpleRNN")
KIND = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}
COMPARED = (
    "units",
    "activation",
    "recurrent_activation",
    "use_bias",
    "go_backwards",
    "return_sequences",
    "return_state",
    "stateful",
    "reset_after",
    "unit_forget_bias",
    "time_major",
    "zero_output_for_mask",
    "dropout",
    "recurrent_dropout",
)


@pytest.mark.parametrize(
    ("flavor", "name"),
    [p for f in FLAVOR_MAJOR for p in flavor_params(f, [(f, n) for n in LAYERS], [f"{f}-{n}" for n in LAYERS])],
)
def test_defaults_are_keras_defaults(flavor: str, name: str) -> None:
    handle = keras_handle(flavor)
    for suffix in ("", "Cell"):
        keras_config = getattr(handle.module.layers, name + suffix)(4).get_config()
        twin_config = getattr(rnnparity, name + suffix)(4, keras_version=handle.keras_version).get_config()
        for key in COMPARED:
            if key in keras_config:
                assert twin_config[key] == keras_config[key], f"{name}{suffix} default {key}"


@pytest.mark.parametrize("name", [n + s for n in LAYERS for s in ("", "Cell")])
def test_training_only_arguments_are_kept_by_every_kind(name: str) -> None:
    twin = getattr(rnnparity, name)(3, dropout=0.25, recurrent_dropout=0.1, kernel_initializer="he_normal", seed=7)
    config = twin.get_config()
    assert (config["dropout"], config["recurrent_dropout"], config["kernel_initializer"]) == (0.25, 0.1, "he_normal")


@pytest.mark.parametrize("name", LAYERS)
def test_every_kind_honours_the_backend(name: str) -> None:
    """Keras's JAX loop repeats the initial h at masked steps before the first unmasked one,
    the TensorFlow loop a zero output (known difference jax-masked-output-start)."""
    rng = np.random.default_rng(17)
    kind = KIND[name]
    x = rng.normal(0.0, 1.5, (2, 4, 3)).astype(np.float32)
    states: list[Any] = [rng.uniform(-0.9, 0.9, (2, 3)).astype(np.float32) for _ in range(2 if kind == "lstm" else 1)]
    mask = np.array([[False, False, True, True], [True, True, True, True]])
    weights = random_weights(rng, kind, 3, 3)
    outputs = {}
    for backend in ("tensorflow", "jax"):
        layer = getattr(rnnparity, name)(3, return_sequences=True, backend=backend)
        layer.set_weights(weights)
        outputs[backend] = layer(x, initial_state=states, mask=mask)
    np.testing.assert_array_equal(outputs["tensorflow"][0, :2], 0.0)
    np.testing.assert_array_equal(outputs["jax"][0, :2], np.broadcast_to(states[0][0], (2, 3)))
    np.testing.assert_array_equal(outputs["jax"][:, 2:], outputs["tensorflow"][:, 2:])


@pytest.mark.parametrize("name", [n + s for n in LAYERS for s in ("", "Cell")])
def test_a_bad_flag_is_named_in_the_error(name: str) -> None:
    flag = "reset_after" if name.startswith("GRU") else "unit_forget_bias" if name.startswith("LSTM") else "use_bias"
    with pytest.raises(TypeError, match=f"^{flag} must be"):
        getattr(rnnparity, name)(3, **{flag: "yes"})


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_no_bias_equals_a_zero_bias(name: str, reset_after: bool) -> None:
    """use_bias=False computes what use_bias=True computes with the bias at zero."""
    rng = np.random.default_rng(23)
    kind = KIND[name]
    options: dict[str, Any] = {"reset_after": reset_after} if kind == "gru" else {}
    weights = random_weights(rng, kind, 3, 2, True, reset_after)
    x = rng.normal(0.0, 1.5, (2, 5, 2)).astype(np.float32)
    with_bias = getattr(rnnparity, name)(3, return_sequences=True, **options)
    with_bias.set_weights([weights[0], weights[1], np.zeros_like(weights[2])])
    without = getattr(rnnparity, name)(3, return_sequences=True, use_bias=False, **options)
    without.set_weights(weights[:2])
    rnnparity.assert_parity(with_bias(x), without(x), rtol=0.0, atol=0.0, context=f"{name} use_bias=False")
