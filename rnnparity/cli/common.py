"""What every subcommand shares: exit codes, the one-line error, output paths (``-`` is
stdout), and importing TensorFlow without its C++ start-up log lines."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from typing import Any, TextIO

EXIT_OK = 0  # the check passed
EXIT_MISMATCH = 1  # the check ran and found a difference
EXIT_ERROR = 2  # the check could not run: bad options, unreadable files, Keras missing

STDOUT = "-"  # as a --json PATH: write to standard output


def exit_codes(ok: str, mismatch: str | None, error: str = "bad options, or the check could not run") -> str:
    """The ``exit codes`` paragraph of a subcommand's ``--help``."""
    codes = [f"{EXIT_OK}: {ok}"]
    if mismatch is not None:
        codes.append(f"{EXIT_MISMATCH}: {mismatch}")
    codes.append(f"{EXIT_ERROR}: {error} (one line on stderr)")
    return "exit codes: " + "; ".join(codes) + "."


class CommandError(Exception):
    """A refusal: ``main`` prints ``rnnparity COMMAND: <message>`` on one line and exits 2."""


def writable_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a file (None if it can; ``-`` is stdout). Creates it
    empty if absent, as the command will write it anyway; never truncates an existing file."""
    if path == STDOUT:
        return None
    if os.path.isdir(path):
        return "it is a directory"
    try:
        open(path, "a", encoding="utf-8").close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def writable_directory_problem(path: str) -> str | None:
    """Why ``path`` cannot be used (or created) as an output directory (None if it can)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "it exists and is not a directory"
        return None if os.access(path, os.W_OK) else "the directory is not writable"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK) else f"{parent} is not writable"


def check_output_file(option: str, path: str | None) -> None:
    """Refuse an unwritable output file before any work is done."""
    if path and (problem := writable_file_problem(path)):
        raise CommandError(f"cannot write {option} {path}: {problem}")


def write_json(option: str, path: str, payload: Any, out: TextIO, *, indent: int = 2) -> None:
    """``payload`` as JSON into ``path``, or onto ``out`` when ``path`` is ``-``."""
    if path == STDOUT:
        json.dump(payload, out, indent=indent)
        out.write("\n")
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=indent)
            handle.write("\n")
    except OSError as exc:
        raise CommandError(f"cannot write {option} {path}: {exc.strerror or exc}") from None


def text_stream(json_path: str | None, out: TextIO, err: TextIO) -> TextIO:
    """Where the human-readable lines go: stderr when the JSON takes stdout (``--json -``)."""
    return err if json_path == STDOUT else out


# TensorFlow's native start-up lines (absl before its logging is set up, oneDNN, the CUDA
# probes on a machine without a GPU). They are not about the user's model or numbers.
TENSORFLOW_NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations are on",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "failed call to cuInit",
    "Could not find cuda drivers",
    "cpu_feature_guard.cc",
    "This TensorFlow binary is optimized",
    "To enable the following instructions:",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning",
)


def is_tensorflow_noise(line: str) -> bool:
    return any(marker in line for marker in TENSORFLOW_NOISE)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (and probe its devices) with its C++ start-up log lines dropped.

    ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it; ``0`` shows everything) quiets
    TensorFlow's native log, including E-level notes such as oneDNN's "supports DT_BOOL only
    on platforms with AVX-512" that a masked layer triggers mid-run; TensorFlow's real errors
    reach Python as exceptions and are reported as before. The lines absl writes before that
    setting is read go to file descriptor 2 while TensorFlow starts, so that descriptor is
    pointed at a temporary file meanwhile and every line that is not known start-up noise is
    written back to stderr. Without TensorFlow this does nothing: the caller's own import
    reports it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").addFilter(_drop_retracing_warnings)  # added once, however often called
    if "tensorflow" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, once
        except Exception:
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured.read().decode("utf-8", "replace").splitlines() if not is_tensorflow_noise(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


def _drop_retracing_warnings(record: logging.LogRecord) -> bool:
    """TensorFlow's "N out of the last N calls ... triggered tf.function retracing" warning:
    Keras 3 traces its convolution once per new shape, and the ConvLSTM cases of a check have
    many shapes by design. The advice it prints is for the author of a training loop, not for
    someone reading a parity report; TensorFlow's other warnings still show."""
    return "triggered tf.function retracing" not in record.getMessage()
