"""BLAS threads per twin call (rnnparity.threads): the choice, its overrides, that the
process's count is back after every call, and that no thread count changes a bit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import rnnparity
from rnnparity import threads
from rnnparity.suite.matrix import random_weights

threadpoolctl = pytest.importorskip("threadpoolctl")

LAYERS = {"lstm": rnnparity.LSTM, "gru": rnnparity.GRU, "simple_rnn": rnnparity.SimpleRNN}


def twin(kind: str, units: int, input_dim: int, dtype: str = "float32", seed: int = 0, **options) -> rnnparity.LSTM:
    layer = LAYERS[kind](units, dtype=dtype, **{"return_sequences": True, **options})
    layer.set_weights(random_weights(np.random.default_rng(seed), kind, units, input_dim, dtype=dtype))
    return layer


@pytest.fixture
def two_blas_threads(monkeypatch):
    """The process's BLAS on two threads (as NumPy starts on 2 cores), outside xdist's setting."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    if not threads._blas_libraries():
        pytest.skip("threadpoolctl finds no BLAS library in this NumPy")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert threads.current_blas_threads() == 2
        yield


def threads_seen_by_steps(layer, x, monkeypatch) -> set[int | None]:
    """The BLAS thread counts in force while ``layer``'s steps run during ``layer(x)``."""
    seen: set[int | None] = set()
    original = type(layer.cell).recurrent_step

    def step(self, *args):
        seen.add(threads.current_blas_threads())
        return original(self, *args)

    monkeypatch.setattr(type(layer.cell), "recurrent_step", step)
    layer(x)
    monkeypatch.setattr(type(layer.cell), "recurrent_step", original)
    return seen


BIG = threads.SMALL_STEP_MACS


@pytest.mark.parametrize(
    ("setting", "busy", "step_macs", "batch", "splittable", "expected"),
    [
        ("auto", 0, BIG - 1, 256, True, threads.Plan(1)),  # a small step: one thread, idle or not
        ("auto", 0, BIG, 256, False, threads.Plan(None)),  # large, idle, not splittable: the process's count
        ("auto", 0, BIG, 256, True, threads.Plan(1, 2)),  # large, idle: two slices of the batch
        ("auto", 0, BIG, 63, True, threads.Plan(None)),  # too few rows for two slices of 32
        ("auto", 1, BIG, 256, True, threads.Plan(1)),  # beside one busy process (2 cores): one thread
        ("auto", 3, BIG, 256, False, threads.Plan(1)),
        ("keep", 1, 1, 256, True, threads.Plan(None)),
        (3, 0, BIG, 256, True, threads.Plan(3)),
        (1, 0, BIG, 256, True, threads.Plan(1)),
    ],
)
def test_choice(two_blas_threads, monkeypatch, setting, busy, step_macs, batch, splittable, expected) -> None:
    monkeypatch.setattr(threads, "SPLIT_BATCH", True)
    monkeypatch.setattr(threads, "other_running_tasks", lambda: busy)
    monkeypatch.setattr(threads, "_available_cores", lambda: 2)
    assert threads.choose(setting, step_macs, batch, splittable) == expected


def test_by_default_a_large_call_on_free_cores_uses_blas_threads_unsplit(two_blas_threads, monkeypatch) -> None:
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)
    monkeypatch.setattr(threads, "_available_cores", lambda: 2)
    assert threads.choose("auto", 10 * BIG, 256, True) == threads.Plan(None)


def test_auto_respects_a_process_on_one_blas_thread(two_blas_threads, monkeypatch) -> None:
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)
    monkeypatch.setattr(threads, "_available_cores", lambda: 2)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert threads.choose("auto", 10 * BIG, 256, True) == threads.Plan(None)


def test_auto_uses_one_thread_in_an_xdist_worker(two_blas_threads, monkeypatch) -> None:
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)
    monkeypatch.setattr(threads, "_available_cores", lambda: 2)
    assert threads.choose("auto", 10 * BIG) == threads.Plan(None)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert threads.choose("auto", 10 * BIG, 256, True) == threads.Plan(1)


def test_other_running_tasks_subtracts_this_process(monkeypatch) -> None:
    counts = iter([5, 3, 4])
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: next(counts))
    monkeypatch.setattr(threads, "_own_running_threads", lambda: 2)
    assert threads.other_running_tasks(samples=3, interval=0) == 1  # the fewest seen, 3, minus our 2
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: 1)
    assert threads.other_running_tasks(samples=2, interval=0) == 0
    monkeypatch.setattr(threads, "_runnable_tasks", lambda: None)  # no /proc/loadavg: counted as idle
    assert threads.other_running_tasks() == 0


def test_own_running_threads_counts_at_least_the_caller() -> None:
    assert threads._own_running_threads() >= 1


@pytest.mark.parametrize("setting", ["auto", "keep", 1, 3])
def test_a_call_leaves_the_process_thread_count_as_it_was(two_blas_threads, setting, monkeypatch) -> None:
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 1)  # auto then limits a large step too
    layer = twin("lstm", 16, 4)
    x = np.random.default_rng(1).normal(size=(3, 5, 4))
    with rnnparity.blas_threads(setting):
        layer(x)
        rnnparity.gradients(layer, x, np.ones((3, 5, 16)))
    assert threads.current_blas_threads() == 2
    with threadpoolctl.threadpool_limits(1, user_api="blas"):  # any count the user set survives too
        with rnnparity.blas_threads(setting):
            layer(x)
        assert threads.current_blas_threads() == 1
    assert threads.current_blas_threads() == 2


def test_the_steps_run_on_the_chosen_threads(two_blas_threads, monkeypatch) -> None:
    layer = twin("gru", 16, 4)
    x = np.random.default_rng(2).normal(size=(3, 5, 4))
    assert threads_seen_by_steps(layer, x, monkeypatch) == {1}  # auto, a small step
    with rnnparity.blas_threads("keep"):
        assert threads_seen_by_steps(layer, x, monkeypatch) == {2}
    monkeypatch.setenv(threads.ENV_VAR, "keep")
    assert threads_seen_by_steps(layer, x, monkeypatch) == {2}
    with rnnparity.blas_threads(1):  # the context manager wins over the variable
        assert threads_seen_by_steps(layer, x, monkeypatch) == {1}
    assert threads.current_blas_threads() == 2


def test_a_failing_call_restores_the_thread_count(two_blas_threads, monkeypatch) -> None:
    layer = twin("simple_rnn", 8, 3)

    def broken(self, *args):
        assert threads.current_blas_threads() == 1
        raise RuntimeError("step failed")

    monkeypatch.setattr(rnnparity.SimpleRNNCell, "recurrent_step", broken)
    with pytest.raises(RuntimeError, match="step failed"):
        layer(np.ones((2, 4, 3)))
    assert threads.current_blas_threads() == 2


def test_concurrent_calls_from_python_threads_restore_the_count(two_blas_threads) -> None:
    layers = [twin(kind, 24, 6, seed=k) for k, kind in enumerate(LAYERS)]
    x = np.random.default_rng(3).normal(size=(4, 30, 6))
    expected = [layer(x) for layer in layers]
    results: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        results[k] = [layers[k](x) for _ in range(20)]

    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(layers))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert threads.current_blas_threads() == 2
    for k, outputs in results.items():
        assert all(np.array_equal(y, expected[k]) for y in outputs)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_counts_change_no_bit(two_blas_threads, kind: str, dtype: str) -> None:
    """A medium layer (B32 T100 D64 H128) and a wider one (B160 H256), forward and
    gradients, on one and on two BLAS threads: the same bits."""
    for batch, timesteps, input_dim, units in [(32, 100, 64, 128), (160, 12, 32, 256)]:
        layer = twin(kind, units, input_dim, dtype, seed=4)
        rng = np.random.default_rng(5)
        x = rng.normal(size=(batch, timesteps, input_dim)).astype(dtype)
        dy = rng.normal(size=(batch, timesteps, units)).astype(dtype)
        runs = []
        for count in (1, 2):
            with rnnparity.blas_threads(count):
                runs.append((layer(x), rnnparity.gradients(layer, x, dy)))
        for output, grads in runs[1:]:
            assert np.array_equal(output, runs[0][0])
            assert np.array_equal(grads["inputs"], runs[0][1]["inputs"])
            assert all(np.array_equal(a, b) for a, b in zip(grads["weights"], runs[0][1]["weights"]))


def test_without_threadpoolctl_twins_leave_blas_alone(monkeypatch) -> None:
    monkeypatch.setattr(threads, "_libraries", [])
    assert threads.current_blas_threads() is None
    with rnnparity.blas_threads(1):
        y = twin("lstm", 8, 3)(np.ones((2, 4, 3)))
    assert y.shape == (2, 4, 8)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_bad_settings_name_the_argument(value: str, monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"blas_threads must be 'auto', 'keep' or a positive integer"):
        threads.parse_setting(value or 0, "blas_threads")
    if value:
        monkeypatch.setenv(threads.ENV_VAR, value)
        with pytest.raises(ValueError, match=f"environment variable {threads.ENV_VAR} must be .* got '{value}'"):
            twin("gru", 4, 2)(np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="blas_threads must be"):
        rnnparity.blas_threads(True).__enter__()


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (" KEEP ", "keep"), ("4", 4), (2, 2)])
def test_settings(value, expected) -> None:
    assert threads.parse_setting(value, "blas_threads") == expected


@pytest.fixture
def idle_two_cores(two_blas_threads, monkeypatch):
    """auto on an idle 2-core machine, with the large-step threshold lowered so that small,
    cheap layers take the large-step paths."""
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)
    monkeypatch.setattr(threads, "_available_cores", lambda: 2)
    monkeypatch.setattr(threads, "SMALL_STEP_MACS", 1)
    monkeypatch.setattr(threads, "SPLIT_BATCH", True)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "options",
    [
        {"return_sequences": True},
        {"return_state": True, "go_backwards": True},
        {"return_sequences": True, "return_state": True, "zero_output_for_mask": True},
        {"return_sequences": True, "backend": "jax"},
    ],
    ids=["sequences", "backwards-state", "zero-output", "jax"],
)
def test_a_split_batch_gives_the_bits_of_one_loop(idle_two_cores, monkeypatch, kind, dtype, options) -> None:
    calls = []
    split = rnnparity.rnn._split_batch

    def counted(workers, *args):
        calls.append(workers)
        return split(workers, *args)

    monkeypatch.setattr(rnnparity.rnn, "_split_batch", counted)
    layer = twin(kind, 12, 5, dtype, seed=6, **options)
    rng = np.random.default_rng(7)
    x = rng.normal(scale=2.0, size=(70, 9, 5)).astype(dtype)  # 70 rows: slices of 35 and 35
    mask = rng.uniform(size=(70, 9)) > 0.3
    mask[:5, :3] = False  # masked first steps: the jax backend repeats the initial h there
    initial = [rng.normal(size=(70, 12)).astype(dtype) for _ in range(2 if kind == "lstm" else 1)]
    with rnnparity.blas_threads("keep"):
        expected = layer(x, initial_state=initial, mask=mask)
    got = layer(x, initial_state=initial, mask=mask)
    assert calls == [2]
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert threads.current_blas_threads() == 2


def test_a_split_stateful_layer_carries_its_states(idle_two_cores) -> None:
    layer = twin("lstm", 8, 3, stateful=True)
    reference = twin("lstm", 8, 3, stateful=True)
    x = np.random.default_rng(8).normal(size=(64, 10, 3))
    for chunk in (x[:, :4], x[:, 4:]):
        got = layer(chunk)
        with rnnparity.blas_threads("keep"):
            expected = reference(chunk)
        assert np.array_equal(got, expected)
    assert all(np.array_equal(a, b) for a, b in zip(layer.states, reference.states))


def test_a_split_batch_keeps_the_callers_error_handling_and_leaves_no_thread(idle_two_cores) -> None:
    import warnings

    layer = twin("gru", 6, 3)
    layer.set_weights([1e4 * w for w in layer.get_weights()])  # exp overflows inside the gates
    x = np.random.default_rng(9).normal(size=(64, 5, 3))
    before = threading.active_count()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer(x)
    assert np.isfinite(y).all()
    assert threading.active_count() == before
