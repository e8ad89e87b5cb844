"""Confirming an LR from the widget: :func:`~lr_widget.diagnostics.confirm.confirm_lr` in a
background thread.

The probes train the model, as a sweep does, so they run in a thread of their own (the cell and
the buttons stay free) and never beside a sweep: the session refuses to start one while the
other runs. The outcome is posted to the main thread, which owns everything it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lr_widget.engine.threads import adopt_torch_threads
from lr_widget.results.confirmation import Confirmation
from lr_widget.widget.runner import MainThreadQueue

ConfirmDone = Callable[[Confirmation | None, BaseException | None], None]
"""Called in the main thread with the confirmation, or ``None`` and the error that ended it."""


class ProbeJob:
    """At most one confirmation at a time, each in a daemon thread of its own.

    >>> job = ProbeJob(MainThreadQueue())
    >>> job.running
    False
    """

    def __init__(self, main: MainThreadQueue) -> None:
        self._main = main
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()

    @property
    def running(self) -> bool:
        """From :meth:`start` until its outcome has been posted."""
        return not self._done.is_set()

    def start(self, work: Callable[[], Confirmation], on_done: ConfirmDone) -> bool:
        """Run ``work`` in a new thread and post its outcome to ``on_done``; ``False`` (and
        nothing done) while one runs."""
        if self.running:
            return False
        self._done.clear()
        self._thread = threading.Thread(
            target=self._run, args=(work, on_done), name="lr_widget-confirm", daemon=True
        )
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the probes; ``True`` once they have ended (or none started)."""
        return self._done.wait(timeout)

    def _run(self, work: Callable[[], Confirmation], on_done: ConfirmDone) -> None:
        confirmation: Confirmation | None = None
        error: BaseException | None = None
        try:
            adopt_torch_threads()
            confirmation = work()
        except BaseException as exc:  # shown in the widget; confirm_lr has restored the state
            error = exc
        finally:
            self._main.post(lambda: on_done(confirmation, error))
            self._done.set()
