"""The widget's parts without a widget: the sweep session, the selection and the LR targets."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest
import torch
import traitlets

from lr_widget.engine.sweep import LRFinder
from lr_widget.results.confirmation import Confirmation
from lr_widget.results.range_test import RangeTestResult
from lr_widget.widget import runner
from lr_widget.widget.probes import ProbeJob
from lr_widget.widget.runner import MainThreadQueue
from lr_widget.widget.selection import Selection
from lr_widget.widget.session import SweepSession
from lr_widget.widget.targets import LRTargets
from tests.helpers import make_batches, make_classifier

LRS = np.logspace(-5, -1, 41)


class RecordingView:
    """A :class:`~lr_widget.widget.session.SweepView` that notes each hook and its thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.threads: list[threading.Thread] = []

    def _note(self, hook: str) -> None:
        self.calls.append((hook, threading.current_thread().name))
        if threading.current_thread() not in self.threads:
            self.threads.append(threading.current_thread())

    def sweep_started(self, num_steps: int) -> None:
        self._note("sweep_started")

    def curvature_running(self, running: bool) -> None:
        self._note("curvature_running")

    def sweep_progress(self, run: Any, event: Any, beta: float) -> None:
        self._note("sweep_progress")

    def run_finished(self, partial: Any, beta: float) -> None:
        self._note("run_finished")

    def sweep_finished(self, result: Any, error: Any, seconds: float) -> None:
        self._note("sweep_finished")


def _session(**settings: Any) -> tuple[SweepSession, RecordingView, list[str]]:
    finder = LRFinder(make_classifier(), make_batches(count=4), num_steps=30, **settings)
    session = SweepSession(finder, None, update_interval_s=0.0)
    view, ended = RecordingView(), []
    session.attach(
        view,
        on_ended=lambda: ended.append(threading.current_thread().name),
        on_curvature=lambda estimate, note: None,
    )
    return session, view, ended


def test_a_session_sweeps_in_its_thread_and_hands_the_end_to_the_main_thread() -> None:
    session, view, ended = _session()
    assert session.start({}) is True
    assert session.join(60)
    assert ended == []  # the end is posted to the main thread, not yet taken over
    seen_elsewhere: list[bool] = []
    other = threading.Thread(target=lambda: seen_elsewhere.append(session.sweeping))
    other.start()
    other.join()
    assert seen_elsewhere == [True]  # another thread reads the state and runs nothing
    assert ended == []
    assert not session.sweeping  # a read in the main thread first runs the posted end
    assert ended == [threading.current_thread().name]
    hooks = [hook for hook, _ in view.calls]
    assert hooks[0] == "sweep_started"
    assert hooks[-1] == "sweep_finished"
    assert "sweep_progress" in hooks
    assert {thread for _, thread in view.calls} == {"lr_widget-sweep"}
    assert isinstance(session.result, RangeTestResult)
    assert session.result.num_steps == 30


def _sweep(session: SweepSession) -> None:
    assert session.start({})
    assert session.join(60)
    session.main.run_pending()


def test_sweeps_reuse_idle_threads_across_sessions_and_idle_threads_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "IDLE_EXIT_S", 0.3)
    monkeypatch.setattr(runner, "SWEEP_THREADS", runner.SweepThreads())  # none idle yet
    session, view, _ = _session()
    _sweep(session)
    _sweep(session)
    assert len(view.threads) == 1  # the second sweep started no thread
    (first,) = view.threads
    other, other_view, _ = _session()
    _sweep(other)
    assert other_view.threads == [first]  # nor did a new session's first sweep
    other.close()
    first.join(20)
    assert not first.is_alive()  # idle: no thread left behind
    assert runner.SWEEP_THREADS.idle == 0
    _sweep(session)  # a new thread serves the next sweep
    first_again, second = view.threads
    assert first_again is first
    assert second is not first
    session.close()
    assert not session.thread_alive
    second.join(20)
    assert not second.is_alive()


def test_a_hook_that_raises_is_reported_and_the_thread_serves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "IDLE_EXIT_S", 0.3)
    threads = runner.SweepThreads()
    reported: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))
    ran: list[threading.Thread] = []
    done = [threading.Event(), threading.Event()]

    def broken() -> None:
        ran.append(threading.current_thread())
        raise RuntimeError("a bug in a hook")

    threads.submit(broken, done[0].set)
    assert done[0].wait(20)
    threads.submit(lambda: ran.append(threading.current_thread()), done[1].set)
    assert done[1].wait(20)
    assert [type(error) for error in reported] == [RuntimeError]
    assert ran[0] is ran[1]  # the thread survived and was reused


def _openmp() -> Any:
    """The OpenMP runtime torch was built with (its wheel ships libgomp), or skip."""
    import ctypes
    import pathlib

    libraries = sorted(pathlib.Path(torch.__file__).parent.glob("lib/libgomp*.so*"))
    if not libraries or not torch.backends.openmp.is_available():
        pytest.skip("this torch has no bundled OpenMP runtime to ask")
    return ctypes.CDLL(str(libraries[0]))


OPENMP_DEFAULT = int(os.environ.get("OMP_NUM_THREADS", "0").split(",")[0] or 0) or os.cpu_count()


@pytest.mark.skipif(OPENMP_DEFAULT == 1, reason="OpenMP's default is one thread: nothing to see")
def test_sweep_and_probe_threads_train_with_the_torch_thread_count_the_user_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.set_num_threads reaches OpenMP in the calling thread only: a new thread would run
    its first ops on every core (spinning), unless lr_widget hands the count over."""
    openmp = _openmp()
    monkeypatch.setattr(runner, "IDLE_EXIT_S", 0.3)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fresh = threading.Thread(target=lambda: seen.append(openmp.omp_get_max_threads()))
        seen: list[int] = []
        fresh.start()
        fresh.join(20)
        assert seen == [OPENMP_DEFAULT]  # the trap itself: a plain new thread's default
        seen.clear()
        done = threading.Event()
        runner.SweepThreads().submit(lambda: seen.append(openmp.omp_get_max_threads()), done.set)
        assert done.wait(20)
        job = ProbeJob(MainThreadQueue())

        def probe() -> Confirmation:
            seen.append(openmp.omp_get_max_threads())
            raise RuntimeError("no confirmation needed")

        assert job.start(probe, lambda confirmation, error: None)
        assert job.join(20)
        assert seen == [1, 1]
    finally:
        torch.set_num_threads(before)


def test_shown_is_derived_once_per_result_and_smoothing_and_never_changes_the_result() -> None:
    session, _, _ = _session(beta=0.9)
    session.start({})
    session.join(60)
    session.main.run_pending()
    result = session.result
    assert result is not None
    saved = result.to_dict()
    first = session.shown()
    assert first is not None
    assert session.shown() is first  # cached: suggestions are not computed again
    assert first.suggestions == result.suggestions()

    session.beta = 0.3
    resmoothed = session.shown()
    assert resmoothed is not None
    assert resmoothed is not first
    assert resmoothed.result.beta == 0.3
    assert resmoothed.suggestions == result.with_beta(0.3).suggestions()
    assert result.to_dict() == saved  # the session's result is never re-smoothed in place


def test_keep_copies_the_result_and_refuses_while_sweeping_or_without_one() -> None:
    session, _, _ = _session()
    with pytest.raises(ValueError, match="no result to keep yet"):
        session.keep()
    session.start({})
    with pytest.raises(RuntimeError, match="a sweep is running"):
        session.keep()
    session.join(60)
    session.main.run_pending()
    assert session.keep("first") == "first"
    assert session.comparison["first"] is not session.result
    assert session.comparison["first"].to_dict() == session.result.to_dict()  # type: ignore[union-attr]


def test_a_session_without_an_engine_shows_its_result_and_cannot_start() -> None:
    loaded = RangeTestResult(lrs=LRS.tolist(), losses=(2 - np.tanh(np.log10(LRS) + 3)).tolist())
    session = SweepSession(None, loaded)
    assert session.result is loaded
    assert session.settings.num_steps == 100  # no saved settings: the defaults
    np.testing.assert_array_equal(session.recorded_lrs(), LRS)
    with pytest.raises(RuntimeError, match="has no model to sweep"):
        session.start({})


def test_starting_without_a_view_or_with_bad_settings_changes_nothing() -> None:
    finder = LRFinder(make_classifier(), make_batches(count=4), num_steps=30)
    session = SweepSession(finder, None)
    with pytest.raises(RuntimeError, match="attach"):
        session.start({})
    session.attach(RecordingView(), on_ended=lambda: None, on_curvature=lambda e, n: None)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2"):
        session.start({"num_steps": 1})
    assert not session.sweeping
    assert finder.settings.num_steps == 30


# -- the selection ----------------------------------------------------------------------------
def _selection() -> Selection:
    return Selection(lambda: LRS)


def test_selection_snaps_to_the_nearest_recorded_lr_in_log_space() -> None:
    selection = _selection()
    assert selection.select(1.1e-3) == pytest.approx(1e-3)
    assert selection.lr == pytest.approx(1e-3)
    low, high = selection.select_range(2.1e-5, 3e-2)
    assert (low, high) == (LRS[3], LRS[35])
    assert selection.lr_range == (low, high)


@pytest.mark.parametrize("bad", [None, 0.0, -1.0, float("nan"), "1e-3", True])
def test_selection_refuses_a_value_that_is_not_an_lr(bad: Any) -> None:
    selection = _selection()
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        selection.select(bad)
    with pytest.raises(traitlets.TraitError, match="lr must be a finite number > 0"):
        selection.lr = bad if bad is not None else -1.0
    assert selection.lr is None


def test_selection_traits_refuse_reversed_or_empty_ranges() -> None:
    selection = _selection()
    with pytest.raises(traitlets.TraitError, match="0 < low < high"):
        selection.lr_range = (1e-2, 1e-3)
    with pytest.raises(ValueError, match="covers a single recorded LR"):
        selection.select_range(1.01e-3, 1.02e-3)
    assert selection.lr_range is None


def test_a_drag_gives_a_hint_when_it_selects_nothing() -> None:
    assert (
        Selection(lambda: np.zeros(0)).drag_to(1e-4, 1e-2) == "run a sweep first: no LRs recorded"
    )
    selection = _selection()
    assert selection.drag_to(1.01e-3, 1.02e-3) == "drag across at least two recorded LRs"
    assert selection.lr_range is None
    assert selection.drag_to(1e-4, 1e-2) == ""
    assert selection.lr_range == (pytest.approx(1e-4), pytest.approx(1e-2))


# -- the targets ------------------------------------------------------------------------------
def _two_group_optimizer() -> torch.optim.Optimizer:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    return torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.01},
            {"params": model[1].parameters(), "lr": 0.1},
        ]
    )


def test_targets_apply_keeping_group_ratios_and_wait_for_a_sweep_on_that_optimizer() -> None:
    optimizer = _two_group_optimizer()
    swept: list[torch.optim.Optimizer | None] = [optimizer]
    targets = LRTargets(optimizer, None, swept_optimizer=lambda: swept[0])
    targets.selected(1.0)
    assert [group["lr"] for group in optimizer.param_groups] == [0.01, 0.1]  # not yet
    with pytest.raises(RuntimeError, match="the sweep is using this optimizer"):
        targets.apply(1.0)
    swept[0] = None
    targets.sweep_ended(2.0)  # the LR selected by then
    assert [group["lr"] for group in optimizer.param_groups] == [pytest.approx(0.2), 2.0]
    targets.sweep_ended(5.0)  # nothing pending any more
    assert optimizer.param_groups[1]["lr"] == 2.0


def test_targets_refuse_without_an_optimizer_or_an_lr() -> None:
    targets = LRTargets(None, None, swept_optimizer=lambda: None)
    with pytest.raises(ValueError, match=r"apply\(\) needs an optimizer"):
        targets.apply(1e-3)
    with pytest.raises(ValueError, match="no LR selected yet"):
        targets.apply(None, _two_group_optimizer())
    with pytest.raises(TypeError, match=r"must be a torch\.optim\.Optimizer"):
        targets.apply(1e-3, "sgd")  # type: ignore[arg-type]
