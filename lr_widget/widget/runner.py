"""Running sweeps in a background thread, publishing them at a few updates a second.

Jupyter delivers button clicks, slider moves and plot clicks only while no cell is running, so a
sweep that blocks the cell could never be stopped or clicked. :class:`SweepRunner` runs it in a
thread instead: the cell returns at once and Stop is a ``threading.Event`` the engine checks before
every step.

ipywidgets has no locking, so each widget has one writer at a time. The sweep thread writes only
what it owns (curves, y range, progress, status) through the hooks it is given; work that belongs
to the main thread (enabling buttons, suggestion markers) goes through :class:`MainThreadQueue`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import sys
import threading
import warnings
from collections.abc import Callable
from time import monotonic
from typing import Any

from lr_widget.engine.recording import StepCallback, StepEvent
from lr_widget.engine.threads import adopt_torch_threads

IDLE_EXIT_S = 30.0
"""Seconds an idle sweep thread waits for another sweep before it ends."""

# sweep(callback, stop_event) runs the whole sweep (one or several runs) in the calling thread
# and returns its result.
SweepFn = Callable[[StepCallback, threading.Event], Any]


def _kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the thread that will run queued work, if one drives this thread.

    Inside a Jupyter kernel cell the kernel's loop is running. Elsewhere (plain pytest, scripts)
    there is none, and queued work runs when the owner calls :meth:`MainThreadQueue.run_pending`.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    shell_module = sys.modules.get("IPython")
    shell = shell_module.get_ipython() if shell_module is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.get_event_loop()


class MainThreadQueue:
    """Run callables on the thread that built the queue (the kernel's main thread).

    :meth:`post` may be called from any thread. With a kernel event loop, the posted work runs on
    the loop as soon as the main thread is free (``loop.call_soon_threadsafe``). Without one, or
    when the main thread is blocked in ``LRWidget.wait()``, the owner runs it by calling
    :meth:`run_pending`; whichever comes first runs each callable exactly once.
    """

    def __init__(self) -> None:
        self._owner = threading.current_thread()
        self._loop = _kernel_loop()
        self._pending: collections.deque[Callable[[], Any]] = collections.deque()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop that runs posted work, or ``None`` (run by :meth:`run_pending` only)."""
        return self._loop

    def post(self, work: Callable[[], Any]) -> None:
        """Queue ``work`` for the main thread (any thread)."""
        self._pending.append(work)
        loop = self.loop
        if loop is not None and not loop.is_closed():
            # If the loop closed meanwhile, run_pending() still gets the work.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.run_pending)

    def run_pending(self) -> int:
        """Run the queued work, in order; a no-op outside the owning thread. Returns the count."""
        if threading.current_thread() is not self._owner:
            return 0
        done = 0
        while True:
            try:
                work = self._pending.popleft()
            except IndexError:
                return done
            work()
            done += 1


_Inbox = queue.SimpleQueue[tuple[Callable[[], None], Callable[[], None]]]


class SweepThreads:
    """Daemon threads that run sweeps, shared by every widget of the process.

    A sweep is handed to an idle thread if there is one, else to a new one; a thread that has
    waited :data:`IDLE_EXIT_S` seconds without work ends. So a re-run, and the first sweep of a
    new widget after another's, costs no thread start, and idle widgets leave no threads behind.
    Daemon threads: a sweep never keeps the interpreter from exiting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the idle list, between submit() and an idle exit
        self._idle: list[_Inbox] = []

    @property
    def idle(self) -> int:
        """How many threads wait for work."""
        with self._lock:
            return len(self._idle)

    def submit(self, job: Callable[[], None], done: Callable[[], None]) -> None:
        """Run ``job()`` in an idle thread, or in a new one if none is idle, then ``done()``
        once that thread is idle again (so work submitted after ``done`` reuses it)."""
        with self._lock:
            if self._idle:
                self._idle.pop().put((job, done))  # the most recent: its caches are warmest
                return
        inbox: _Inbox = queue.SimpleQueue()
        inbox.put((job, done))
        threading.Thread(
            target=self._serve, args=(inbox,), name="lr_widget-sweep", daemon=True
        ).start()

    def _serve(self, inbox: _Inbox) -> None:
        while True:
            try:
                job, done = inbox.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if any(waiting is inbox for waiting in self._idle):
                        self._idle = [waiting for waiting in self._idle if waiting is not inbox]
                        return
                continue  # submit() took this thread meanwhile: its job is on the way
            try:
                adopt_torch_threads()  # the count the user set, read at each job: it may change
                job()
            except Exception as error:  # a bug in a hook: report it as a dying thread would
                threading.excepthook(
                    threading.ExceptHookArgs(
                        (type(error), error, error.__traceback__, threading.current_thread())
                    )
                )
            except BaseException:  # SystemExit and the like end the thread: nothing waits on it
                done()
                raise
            with self._lock:
                self._idle.append(inbox)
            done()


SWEEP_THREADS = SweepThreads()
"""The process's sweep threads."""


class SweepRunner:
    """Run one widget's sweeps, one at a time, in :data:`SWEEP_THREADS`, and publish their
    progress, throttled on time.

    Parameters
    ----------
    sweep
        ``sweep(callback, stop_event)`` runs the sweep to its end (``LRFinder.run``).
    on_start, on_progress, on_finish
        Hooks called **in the sweep thread**: before the sweep; with the latest
        :class:`~lr_widget.engine.recording.StepEvent` at most every ``interval_s`` seconds and once
        more at the end, whatever the end (``None`` if no step ran); and last of all with the
        exception that ended the sweep, or ``None``. They must only touch what the sweep thread
        owns.
    interval_s
        Least time between two progress publications.
    """

    def __init__(
        self,
        sweep: SweepFn,
        *,
        on_start: Callable[[], None],
        on_progress: Callable[[StepEvent | None], None],
        on_finish: Callable[[BaseException | None], None],
        interval_s: float = 0.15,
    ) -> None:
        self._sweep = sweep
        self._on_start = on_start
        self._on_progress = on_progress
        self._on_finish = on_finish
        self.interval_s = interval_s
        self._thread: threading.Thread | None = None  # the thread running a sweep, while it runs
        self._done = threading.Event()
        self._done.set()  # no sweep yet
        self._stop_event = threading.Event()
        self._latest: StepEvent | None = None
        self._last_publish = -float("inf")

    @property
    def alive(self) -> bool:
        """Whether a sweep is running (from :meth:`start` until its ``on_finish`` returned)."""
        return not self._done.is_set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called since the last :meth:`start`."""
        return self._stop_event.is_set()

    def start(self) -> bool:
        """Start a sweep in the sweep thread; ``False`` (and nothing done) if one is running."""
        if self.alive:
            return False
        # A fresh event per sweep: a Stop can never leak into the next sweep, and a Stop that
        # arrives before the engine starts its loop is not lost.
        self._stop_event = threading.Event()
        self._latest, self._last_publish = None, -float("inf")
        self._done.clear()
        SWEEP_THREADS.submit(self._run, self._done.set)
        return True

    def stop(self) -> None:
        """Ask the sweep to stop after its current step (any thread)."""
        self._stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the sweep to end; ``True`` if it has ended (or none was started)."""
        if threading.current_thread() is self._thread:
            return True
        return self._done.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop any sweep and wait for its end (at most ``timeout`` seconds); its thread goes back
        to :data:`SWEEP_THREADS`. ``False`` if it is still running (inside a slow batch: it stops
        and restores the state once that batch returns)."""
        self.stop()
        return self.join(timeout)

    # -- sweep thread -----------------------------------------------------------------------
    def _run(self) -> None:
        self._thread = threading.current_thread()
        try:
            self._work()
        finally:
            self._thread = None

    def _work(self) -> None:
        error: BaseException | None = None
        try:
            self._on_start()
            # The first redraw comes one interval in, not at the first step: a sweep shorter
            # than the interval is drawn once, when it ends.
            self._last_publish = monotonic()
            self._sweep(self._on_step, self._stop_event)
        except BaseException as exc:  # the sweep's only exit: hand everything to on_finish
            error = exc
        try:
            self._on_progress(self._latest)  # the final state is always drawn
        except BaseException as exc:
            error = error or exc
        self._on_finish(error)

    def _on_step(self, event: StepEvent) -> None:
        self._latest = event
        now = monotonic()
        if now - self._last_publish >= self.interval_s:
            self._last_publish = now
            self._on_progress(event)
