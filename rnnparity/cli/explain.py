"""``rnnparity explain KIND|MODEL``: where each gate lives in ``kernel``,
``recurrent_kernel`` and ``bias`` (for a layer kind, or every recurrent layer of a file)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TextIO

from rnnparity.cli.common import EXIT_OK, CommandError, exit_codes, import_tensorflow_quietly
from rnnparity.cli.layout_text import FORMATS, conv_rank_of, kind_of, render_explain

KIND_NAMES = (
    "lstm, gru, simple_rnn, conv_lstm1d, conv_lstm2d, conv_lstm3d (or the Keras class names LSTM, GRU, SimpleRNN, "
    "ConvLSTM1D, ConvLSTM2D, ConvLSTM3D)"
)
DEFAULT_UNITS, DEFAULT_INPUT_DIM, DEFAULT_KERNEL_SIZE = 4, 3, 3
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
# Options that describe a layer kind; a model file fixes them itself.
KIND_OPTIONS = {
    "units": "--units",
    "input_dim": "--input-dim",
    "reset_after": "--reset-after",
    "no_bias": "--no-bias",
    "filters": "--filters",
    "kernel_size": "--kernel-size",
}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "explain",
        help="where each gate lives in kernel, recurrent_kernel and bias",
        description="Print which columns of kernel, recurrent_kernel and bias hold each gate, the gate order "
        "(LSTM and ConvLSTM: i, f, c, o; GRU: z, r, h), the shapes and the equations, for a layer kind or for every recurrent "
        "layer of a saved model (an HDF5 file is read without Keras). --plot draws the same as coloured blocks.",
        epilog=exit_codes("the layout was printed", None, "bad options, or the file cannot be read"),
    )
    parser.add_argument(
        "kind",
        metavar="KIND|MODEL",
        help=f"{KIND_NAMES}; or a saved .keras/.h5 model, to explain each of its recurrent layers",
    )
    parser.add_argument("--units", type=int, default=None, help=f"units (default {DEFAULT_UNITS}; a kind only)")
    parser.add_argument(
        "--input-dim",
        type=int,
        default=None,
        help=f"input dim, or a ConvLSTM's input channels (default {DEFAULT_INPUT_DIM}; a kind only)",
    )
    parser.add_argument("--filters", type=int, default=None, help=f"a ConvLSTM's filters (default {DEFAULT_UNITS})")
    parser.add_argument(
        "--kernel-size",
        default=None,
        help=f"a ConvLSTM's kernel_size: one size, or one per spatial axis as 3,2 (default {DEFAULT_KERNEL_SIZE})",
    )
    parser.add_argument("--reset-after", choices=["true", "false"], default=None, help="GRU only (default true)")
    parser.add_argument("--no-bias", action="store_true", default=None, help="use_bias=False (a kind only)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="also draw kernel, recurrent_kernel and bias as coloured gate blocks (PNG/SVG/PDF by suffix; needs "
        "matplotlib, the [plot] extra); for a model, one file per cell: PATH's name plus -NN-<layer>",
    )
    return parser


def _given(args: argparse.Namespace) -> list[str]:
    return [flag for name, flag in KIND_OPTIONS.items() if getattr(args, name) is not None]


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rnnparity.layout import explain_layout

    kind = kind_of(args.kind)
    rank = conv_rank_of(args.kind)
    if rank is not None:
        return _explain_conv_kind(args, rank, out, err)
    if args.filters is not None or args.kernel_size is not None:
        if kind is not None:
            raise CommandError(f"--filters and --kernel-size apply to ConvLSTM1D/2D/3D only; got {args.kind}")
    if kind is None:
        if not args.kind.endswith(MODEL_SUFFIXES) and not os.path.exists(args.kind):
            raise CommandError(f"expected one of {KIND_NAMES} or a saved model file; got {args.kind!r}")
        if given := _given(args):
            raise CommandError(f"{', '.join(given)} describe a layer kind; {args.kind} is a file and fixes them itself")
        return _explain_model(args, out, err)
    if args.reset_after is not None and kind != "gru":
        raise CommandError(f"--reset-after applies to GRU only; got {args.kind}")
    units = DEFAULT_UNITS if args.units is None else args.units
    input_dim = DEFAULT_INPUT_DIM if args.input_dim is None else args.input_dim
    try:
        data = explain_layout(kind, units, input_dim, args.reset_after != "false", not args.no_bias)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out.write(render_explain(data, args.format) + "\n")
    return _plot(args, [(args.plot, data)], err)


def _kernel_size(text: str, rank: int) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise CommandError(f"--kernel-size takes one integer or {rank} separated by commas (3 or 3,2); got {text!r}") from None
    if len(sizes) == 1:
        sizes = sizes * rank
    if len(sizes) != rank:
        raise CommandError(f"--kernel-size for a ConvLSTM{rank}D takes 1 or {rank} sizes; got {text!r}")
    return sizes


def _explain_conv_kind(args: argparse.Namespace, rank: int, out: TextIO, err: TextIO) -> int:
    """``rnnparity explain conv_lstm2d``: the gate layout of a ConvLSTM{rank}D (not drawn by --plot)."""
    from rnnparity.layout import explain_conv_lstm_layout

    if args.units is not None:
        raise CommandError(f"a ConvLSTM{rank}D has --filters, not --units")
    if args.reset_after is not None:
        raise CommandError(f"--reset-after applies to GRU only; got {args.kind}")
    if args.plot:
        raise CommandError("--plot draws LSTM, GRU and SimpleRNN layouts; a ConvLSTM's gate blocks are listed, not drawn")
    kernel = _kernel_size(args.kernel_size, rank) if args.kernel_size is not None else (DEFAULT_KERNEL_SIZE,) * rank
    filters = DEFAULT_UNITS if args.filters is None else args.filters
    channels = DEFAULT_INPUT_DIM if args.input_dim is None else args.input_dim
    try:
        data = explain_conv_lstm_layout(rank, filters, kernel, channels, not args.no_bias)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out.write(render_explain(data, args.format) + "\n")
    return EXIT_OK


def _plot(args: argparse.Namespace, pictures: list[tuple[str, dict[str, Any]]], err: TextIO) -> int:
    if not args.plot:
        return EXIT_OK
    from rnnparity.cli.plot import draw_layout

    for path, data in pictures:
        try:
            draw_layout(data, path)
        except ImportError as exc:
            raise CommandError(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot write --plot {path}: {exc}") from None
        err.write(f"picture written to {path}\n")
    return EXIT_OK


def _picture_path(plot: str, number: int, label: str) -> str:
    from rnnparity.files.export import safe_filename

    base, suffix = os.path.splitext(plot)
    return f"{base}-{number:02d}-{safe_filename(label)}{suffix or '.png'}"


def _explain_model(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Explain every recurrent layer of a saved model (loaded as safely as ``verify`` does).
    An HDF5 file is read without Keras (:mod:`rnnparity.files.legacy`)."""
    from rnnparity.files import legacy, verify

    if os.path.isfile(args.kind) and legacy.is_hdf5(args.kind):
        return _explain_hdf5(args, out, err)
    import_tensorflow_quietly()
    try:
        _, model = verify.load_model(verify.read_model_file(args.kind))
    except verify.ModelFileError as exc:
        raise CommandError(str(exc)) from None
    parts = verify.explained_cells(model)
    pictures = (
        [
            (_picture_path(args.plot, number, layer), data)
            for number, (layer, _, data) in enumerate(parts)
            if "units" in data  # ConvLSTM gate blocks are listed, not drawn
        ]
        if args.plot
        else []
    )
    if args.format == "json":
        listing = [{"layer": layer, "part": part, "explain": data} for layer, part, data in parts]
        out.write(json.dumps({"model": args.kind, "layers": listing}, indent=2) + "\n")
        return _plot(args, pictures, err)
    if not parts:
        out.write(f"{args.kind}: no recurrent layers with a twin\n")
    heading = "## " if args.format == "markdown" else ""
    for layer, part, data in parts:
        out.write(f"{heading}{layer}: {part}\n\n")
        out.write(render_explain(data, args.format) + "\n\n")
    return _plot(args, pictures, err)


def _cell_layout(cell: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The explain data of one stored cell (:mod:`rnnparity.files.stored`)."""
    from rnnparity.layout import explain_conv_lstm_layout, explain_layout

    if cell.is_conv:
        return explain_conv_lstm_layout(cell.rank, cell.units, cell.kernel_size, cell.input_dim, cell.use_bias)
    return explain_layout(cell.kind, cell.units, cell.input_dim, bool(settings.get("reset_after", True)), cell.use_bias)


def _hdf5_entries(file: Any, plans: list[Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for plan in plans:
        layer = plan.layer
        if layer.class_name == "Bidirectional":
            parts = [("forward", layer.cells[0], plan.cell_settings[0]), ("backward", layer.cells[1], plan.cell_settings[1])]
        elif layer.class_name == "RNN":
            parts = [(f"cell {i}", cell, s) for i, (cell, s) in enumerate(zip(layer.cells, plan.cell_settings))]
        else:
            parts = [("", layer.cells[0], plan.settings)]
        described = [
            {
                "part": part,
                "stored": {"path": "/".join(cell.paths[0].split("/")[:-1]), "shapes": [list(s) for s in cell.shapes]},
                "explain": _cell_layout(cell, settings),
            }
            for part, cell, settings in parts
        ]
        entries.append(
            {
                "name": layer.name,
                "saved_class": layer.saved_class,
                "class": layer.class_name,
                "class_source": layer.class_source,
                **(
                    {"filters": layer.units, "input_channels": layer.input_dim, "kernel_size": list(layer.cells[0].kernel_size)}
                    if layer.cells[0].is_conv
                    else {"units": layer.units, "input_dim": layer.input_dim}
                ),
                "twin": plan.description,
                "assumptions": plan.assumptions,
                "parts": described,
            }
        )
    return entries


def _explain_hdf5(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``rnnparity explain FILE.h5``: every recurrent layer of a Keras HDF5 file (a model or
    weights only, any Keras from 2.0), read with h5py: name, class as saved, units and input
    dim from the shapes, who wrote the file, what the twin assumes, and its gate layout."""
    from rnnparity.files import legacy

    try:
        file = legacy.read_weights_file(args.kind)
        plans = [legacy.plan_twin(file, layer) for layer in file.layers]
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    entries = _hdf5_entries(file, plans)
    pictures: list[tuple[str, dict[str, Any]]] = []
    if args.plot:
        for entry in entries:
            for part in entry["parts"]:
                if "units" not in part["explain"]:
                    continue  # ConvLSTM gate blocks are listed, not drawn
                label = f"{entry['name']}-{part['part']}" if part["part"] else str(entry["name"])
                pictures.append((_picture_path(args.plot, len(pictures), label), part["explain"]))
    if args.format == "json":
        header = {
            "file": args.kind,
            "layout": file.layout,
            "keras_version": file.keras_release,
            "backend": file.backend,
            "written_by": file.writer.source,
        }
        listing = {**header, "layers": entries, "no_twin": file.no_twin, "other_layers": sorted(file.others)}
        out.write(json.dumps(listing, indent=2) + "\n")
        return _plot(args, pictures, err)
    heading = "## " if args.format == "markdown" else ""
    out.write(f"{args.kind}: {file.describe()}; read with h5py, no Keras\n")
    out.write(
        f"{len(entries)} recurrent layer(s) with a twin; {len(file.others)} other layer(s) with weights"
        + (f"; {len(file.no_twin)} recurrent layer(s) without a twin" if file.no_twin else "")
        + "\n\n"
    )
    for entry, plan in zip(entries, plans):
        if entry["saved_class"]:
            saved = f"{entry['saved_class']} (the class saved in the model config)"
        else:
            saved = f"{entry['class']} (not saved in a weights-only file; {entry['class_source']})"
        sizes = (
            f"filters {entry['filters']}, input channels {entry['input_channels']}"
            if "filters" in entry
            else f"units {entry['units']}, input_dim {entry['input_dim']}"
        )
        out.write(f"{heading}{entry['name']}: {saved}; {sizes}\n")
        out.write(f"twin: {entry['twin']}\n")
        out.write("the twin assumes:\n" + "".join(f"  - {note}\n" for note in entry["assumptions"]))
        for part in entry["parts"]:
            stored = part["stored"]
            shapes = ", ".join(str(tuple(s)) for s in stored["shapes"])
            label = f"{part['part']}: " if part["part"] else ""
            converted = (
                " (the gate table shows the twin's layout, after the cuDNN conversion)" if plan.layer.has_cudnn_weights else ""
            )
            out.write(f"\n{label}stored in {stored['path']}: {shapes}{converted}\n")
            out.write(render_explain(part["explain"], args.format) + "\n")
        out.write("\n")
    for name, reason in file.no_twin.items():
        out.write(f"{heading}{name}: no twin: {reason}\n")
    return _plot(args, pictures, err)
