"""One sweep at a time per model and per optimizer, process-wide.

A second sweep of a model that is being swept (a notebook cell re-run that builds a second
``LRWidget(model, dl)`` while the first still sweeps) would snapshot the first sweep's
half-trained state and "restore" that. Every job that trains a model and puts it back (a sweep,
confirmation probes, a curvature estimate) claims its model and optimizer here first; a second
claim of either is refused with an error that names the job holding it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class SweepInProgressError(RuntimeError):
    """The model or optimizer is being trained by another lr_widget job right now."""


@dataclass(frozen=True)
class _Holder:
    job: str
    thread: str
    since: float

    def describe(self) -> str:
        started = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"{self.job} started at {started} in thread {self.thread!r}"


_lock = threading.Lock()
_holders: dict[int, tuple[weakref.ref[Any], _Holder]] = {}


@contextmanager
def claimed(job: str, **objects: Any) -> Iterator[None]:
    """Hold ``objects`` (``model=``, ``optimizer=``; ``None`` values are skipped) for ``job``
    until the block ends; ``SweepInProgressError`` if another job holds any of them.

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> with claimed("a sweep", model=model):
    ...     with claimed("another sweep", model=model):
    ...         pass
    Traceback (most recent call last):
        ...
    lr_widget.engine.claims.SweepInProgressError: this model is being trained by a sweep started at
    ...
    """
    held = {name: value for name, value in objects.items() if value is not None}
    holder = _Holder(job, threading.current_thread().name, time.time())
    with _lock:
        for name, value in held.items():
            entry = _holders.get(id(value))
            if entry is not None and entry[0]() is value:
                raise SweepInProgressError(
                    f"this {name} is being trained by {entry[1].describe()}; a second job would "
                    "snapshot its half-trained state. Wait for it to end (w.wait(), or let "
                    "find_lr return) or stop it (w.stop()), then run again"
                )
        for value in held.values():
            _holders[id(value)] = (weakref.ref(value), holder)
    try:
        yield
    finally:
        with _lock:
            for value in held.values():
                entry = _holders.get(id(value))
                if entry is not None and entry[1] is holder:
                    del _holders[id(value)]
