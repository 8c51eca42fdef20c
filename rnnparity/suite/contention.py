"""Busy processes beside a benchmark: ``rnnparity bench --contention N``.

A shared CI runner or a laptop running a test suite has other work on its cores; the
timings that matter there are the ones taken beside it. :func:`busy_processes` starts
``N`` processes that each keep one core busy (a pure-Python loop, or NumPy element-wise
work with ``kind="numpy"``) for as long as its block runs, and stops them when the block
is left: normally, on an error, or on Ctrl-C. Should the benchmark's process itself be
killed, each busy process notices that its parent is gone within a few milliseconds and
exits, so none outlives the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

BUSY_KINDS = ("python", "numpy")

# Each child spins until its parent (the benchmark) is gone or stops it; it says "ready"
# once spinning, so timing starts only after every child holds a core.
_CHILD = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the benchmark stops its busy processes itself
parent = int(sys.argv[1])
kind = sys.argv[2]
work = lambda: sum(range(20000))
if kind == "numpy":
    import numpy as np
    a = np.random.default_rng(0).uniform(-1, 1, 20000)
    work = lambda: np.tanh(a, out=a)
work()
print("ready", flush=True)
while os.getppid() == parent:
    for _ in range(20):
        work()
"""

__all__ = ["BUSY_KINDS", "busy_processes"]


@contextlib.contextmanager
def busy_processes(count: int, kind: str = "python") -> Iterator[list[int]]:
    """``count`` busy processes for the duration of the block; yields their process ids."""
    if kind not in BUSY_KINDS:
        raise ValueError(f"kind must be one of {BUSY_KINDS}; got {kind!r}")
    if count < 0:
        raise ValueError(f"count must be 0 or more busy processes; got {count}")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(count):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(os.getpid()), kind],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    env=env,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a busy process (pid {child.pid}) did not start; exit code {child.poll()}")
        yield [child.pid for child in children]
    finally:
        _stop(children)


def _stop(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
    for child in children:
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
