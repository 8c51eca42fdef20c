"""How many BLAS threads a twin's matmuls use: chosen per call, restored after it.

NumPy's BLAS (OpenBLAS, MKL, BLIS) splits each matmul over its threads, and the threads
wait for one another, spinning, at the end of every matmul. A recurrent layer does one
small matmul per gate and timestep, thousands in a row: when another process holds a
core, every one of them waits for a thread the kernel has descheduled, and a call can
take ten times longer than on one thread. So every twin call (the time loop,
``rnnparity.gradients``) runs under a BLAS thread count chosen for that call, and puts
the count the process had back when it returns, also on error. The choice never changes
a number: each element of a matmul is computed by one thread either way.

The choice, ``"auto"`` (the default):

* one thread when a step's recurrent matmul is small (fewer than :data:`SMALL_STEP_MACS`
  multiply-adds);
* one thread inside a pytest-xdist worker (``PYTEST_XDIST_WORKER`` is set): the workers
  already occupy the cores;
* one thread when other processes are running right now, so that fewer cores are free
  than BLAS has threads (the kernel's count of runnable tasks in ``/proc/loadavg``, minus
  this process's own running threads; Linux only, elsewhere the machine counts as idle);
* with :data:`SPLIT_BATCH` on (off by default, see there), a large forward call on free
  cores: its batch split into slices, one per free core, each run on its own Python thread
  with one BLAS thread (the rows of a batch never meet in a step, so the slices give the
  same bits); ConvLSTM and stacks are not split;
* otherwise the count the process already has (NumPy's default: one per core). A process
  whose BLAS has one thread (``OPENBLAS_NUM_THREADS=1``) keeps it, and is never split.

Overrides, strongest first: the context manager ``rnnparity.blas_threads(setting)`` for
the calls inside it; the environment variable ``RNNPARITY_BLAS_THREADS``. A setting is
``"auto"``, ``"keep"`` (never touch BLAS threads) or a positive integer (that many threads).

The limits are set through ``threadpoolctl``. Without it installed, twins leave BLAS
threads alone (as ``"keep"``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Union

ENV_VAR = "RNNPARITY_BLAS_THREADS"

# A step's recurrent matmul below this many multiply-adds runs on one BLAS thread whatever
# the machine does (OpenBLAS itself runs a matmul this small on one thread). Above it, the
# machine decides: on 2 idle cores two threads were ~8% faster even at B32 H128 (OpenBLAS
# 0.3.31, 2026-12-02; docs/bench.md), while one busy process made them several times slower.
SMALL_STEP_MACS = 2**18

# A forward call splits its batch over Python threads only when each slice keeps at least
# this many rows (a matmul of one row takes another BLAS path, whose bits may differ).
MIN_SPLIT_ROWS = 32

# Whether a large forward call on an idle machine splits its batch over Python threads
# (True) or leaves its matmuls to BLAS's own threads (False). Off: measured on 2 idle cores
# (2026-12-02), the split large LSTM took 425 ms against 321 ms on BLAS's two threads (GRU
# 323 against 254), no faster than one thread (448 ms): the slices contend for the GIL
# between NumPy calls. Kept, tested, for machines where it measures better.
SPLIT_BATCH = False

Setting = Union[str, int]

_override: ContextVar[Setting | None] = ContextVar("rnnparity_blas_threads", default=None)

__all__ = [
    "ENV_VAR",
    "MIN_SPLIT_ROWS",
    "SMALL_STEP_MACS",
    "Plan",
    "blas_threads",
    "choose",
    "current_blas_threads",
    "limited",
    "parse_setting",
]


def parse_setting(value: Any, argument: str) -> Setting:
    """``value`` as a setting: ``"auto"``, ``"keep"`` or a positive int (also given as text)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "keep"):
            return text
        if text.isdigit() and int(text) > 0:
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError(f"{argument} must be 'auto', 'keep' or a positive integer number of BLAS threads; got {value!r}")


def current_setting() -> Setting:
    """The setting in force: the innermost ``blas_threads`` block, else ``RNNPARITY_BLAS_THREADS``, else ``"auto"``."""
    override = _override.get()
    if override is not None:
        return override
    value = os.environ.get(ENV_VAR, "").strip()
    return parse_setting(value, f"environment variable {ENV_VAR}") if value else "auto"


@contextlib.contextmanager
def blas_threads(setting: Setting) -> Iterator[None]:
    """Twin calls inside the block use ``setting`` (``"auto"``, ``"keep"`` or a thread count)
    instead of ``RNNPARITY_BLAS_THREADS`` / ``"auto"``. Nothing outside twin calls changes."""
    token = _override.set(parse_setting(setting, "blas_threads"))
    try:
        yield
    finally:
        _override.reset(token)


# ---------------------------------------------------------------------------- BLAS access
_UNSET: Any = object()
_libraries: Any = _UNSET  # threadpoolctl's controllers of the BLAS libraries loaded, or None
_lock = threading.Lock()
_active = 0  # twin calls currently inside `limited` (several Python threads may call twins)
_saved: list[int] = []  # the counts the libraries had when the first of them entered


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries in the process (found once), or []."""
    global _libraries
    if _libraries is _UNSET:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _libraries = []
        else:
            with warnings.catch_warnings():
                # threadpoolctl's notes about OpenMP runtimes concern other libraries, not BLAS.
                warnings.simplefilter("ignore", RuntimeWarning)
                _libraries = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return list(_libraries)


def current_blas_threads() -> int | None:
    """The largest thread count of the process's BLAS libraries (None without threadpoolctl
    or without a BLAS it knows)."""
    counts = [lib.get_num_threads() for lib in _blas_libraries()]
    counts = [c for c in counts if c is not None]
    return max(counts) if counts else None


# ---------------------------------------------------------------------------- the choice
def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        return os.cpu_count() or 1


def _runnable_tasks() -> int | None:
    """Tasks (threads) the kernel counts as runnable right now, on the whole machine."""
    try:
        with open("/proc/loadavg") as file:
            return int(file.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_running_threads() -> int:
    """This process's threads in state R (running or runnable), itself included."""
    running = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat") as file:
                stat = file.read()
        except OSError:  # the thread ended meanwhile
            continue
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
            running += 1
    return max(1, running)


def other_running_tasks(samples: int = 2, interval: float = 2e-4) -> int:
    """Runnable tasks of other processes: the fewest of ``samples`` looks at the machine
    ``interval`` seconds apart (one look may catch a blip), minus this process's own."""
    fewest = None
    for k in range(samples):
        if k:
            time.sleep(interval)
        count = _runnable_tasks()
        if count is None or count <= 1:  # unknown, or only the thread reading: idle (the usual case costs one read)
            return 0
        fewest = count if fewest is None else min(fewest, count)
    assert fewest is not None
    return max(0, fewest - _own_running_threads())


@dataclass(frozen=True)
class Plan:
    """How one call runs: on ``blas_threads`` BLAS threads (None: as the process has them),
    its batch split over ``workers`` Python threads (1: not split)."""

    blas_threads: int | None
    workers: int = 1


def choose(setting: Setting, step_macs: int, batch: int = 0, splittable: bool = False) -> Plan:
    """The plan for a call whose recurrent matmul does ``step_macs`` multiply-adds per step
    over ``batch`` rows, under ``setting``. ``splittable``: the call may run its batch in
    parallel slices (a forward call; gradients record whole-batch steps)."""
    if setting == "keep":
        return Plan(None)
    if isinstance(setting, int):
        return Plan(setting)
    if step_macs < SMALL_STEP_MACS or os.environ.get("PYTEST_XDIST_WORKER"):
        return Plan(1)
    current = current_blas_threads()
    if current is None or current <= 1:  # no BLAS we can set, or the process asked for one thread
        return Plan(None)
    free = _available_cores() - other_running_tasks()
    workers = min(free, current, batch // MIN_SPLIT_ROWS)
    if SPLIT_BATCH and splittable and workers >= 2:
        # Each slice on one BLAS thread: no thread waits for another until the slices are
        # done, and the element-wise gate functions (one core each in NumPy) run in parallel.
        # Only on free cores: a slice's thread descheduled while it holds the GIL stalls the others.
        return Plan(1, workers)
    return Plan(max(1, free)) if free < current else Plan(None)


@contextlib.contextmanager
def limited(count: int | None) -> Iterator[None]:
    """BLAS on ``count`` threads inside the block (None: untouched); the process's counts are
    put back when the last of concurrent blocks leaves."""
    global _active
    libraries = _blas_libraries() if count is not None else []
    if not libraries:
        yield
        return
    with _lock:
        at_entry = [lib.get_num_threads() for lib in libraries]
        if _active == 0:
            _saved[:] = at_entry
        _active += 1
        _set(libraries, [count] * len(libraries))
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            # Nested blocks put back what they found; the last block out, what the process had.
            _set(libraries, _saved if _active == 0 else at_entry)


def _set(libraries: list[Any], counts: Sequence[int | None]) -> None:
    for lib, count in zip(libraries, counts):
        if count is not None and lib.get_num_threads() != count:
            lib.set_num_threads(count)


@contextlib.contextmanager
def for_call(step_macs: int) -> Iterator[None]:
    """The BLAS threads chosen for one twin call that is not split (see the module docstring) inside the block."""
    with limited(choose(current_setting(), step_macs).blas_threads):
        yield
