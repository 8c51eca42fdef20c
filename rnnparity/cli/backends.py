"""``rnnparity check --backend jax|torch|numpy|tensorflow``: the parity matrix under another
Keras 3 backend, run in a subprocess with ``KERAS_BACKEND`` set (a process picks its backend
once, when Keras is imported).

JAX gets ``JAX_ENABLE_X64=1`` (else its float64 cases would silently compute in float32).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from typing import TextIO

EXIT_ERROR = 2
BACKENDS = ("jax", "torch", "numpy", "tensorflow")
_PACKAGE = {"jax": "jax", "torch": "torch", "numpy": "numpy", "tensorflow": "tensorflow"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="run the matrix under this Keras 3 backend, in a subprocess with KERAS_BACKEND set (implies --keras keras3)",
    )


def child_arguments(args: argparse.Namespace) -> list[str]:
    """``check``'s options, as given, for the subprocess (without ``--backend``)."""
    argv = ["check", "--keras", "keras3", "--show-failures", str(args.show_failures)]
    if args.quick:
        argv.append("--quick")
    if args.select:
        argv += ["-k", args.select]
    if args.family:
        argv += ["--family", args.family]
    if args.json_path:
        argv += ["--json", args.json_path]
    return argv


def run_check_on_backend(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``rnnparity check`` in a subprocess under ``args.backend``; its exit code."""
    backend = args.backend
    if args.keras == "tf-keras":
        err.write("rnnparity check: --backend runs Keras 3; tf-keras (Keras 2) has the TensorFlow backend only\n")
        return EXIT_ERROR
    if importlib.util.find_spec(_PACKAGE[backend]) is None:
        err.write(
            f"rnnparity check: --backend {backend}: the {backend} backend is not installed (no {_PACKAGE[backend]} package)\n"
        )
        return EXIT_ERROR
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend == "jax":
        env["JAX_ENABLE_X64"] = "1"
    process = subprocess.run(
        [sys.executable, "-m", "rnnparity", *child_arguments(args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out.write(process.stdout)
    err.write(process.stderr)
    return process.returncode
