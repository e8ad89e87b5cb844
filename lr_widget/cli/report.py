"""What ``demo``, ``run`` and ``show`` tell the user: progress, the suggestions, files written.

Progress goes to stderr (:class:`Progress`), the report and the list of files to stdout; the
result is written as JSON, the curve as SVG and the steps as CSV through :func:`write_output`,
which turns a failed write into a :class:`~lr_widget.cli.errors.CommandError`.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from lr_widget.cli.errors import CommandError
from lr_widget.engine.recording import StepEvent
from lr_widget.engine.repeated_sweep import RepeatStepEvent
from lr_widget.plotting.static import save_picture
from lr_widget.results.protocol import SweepResult
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.registry import CURVE_READ, DEFAULT_RULE


# -- progress ---------------------------------------------------------------------------------
class Progress:
    """Report a sweep's progress on a text stream; pass it as the engine's ``callback``.

    On a terminal it rewrites one line in place (``\\r``), at most every ``refresh_s`` seconds;
    otherwise (a pipe, a CI log) it writes a plain line every tenth of the sweep, so a log does
    not fill up with a hundred lines or with carriage returns.

    Parameters
    ----------
    stream
        Where to write, usually ``sys.stderr``.
    interactive
        Whether ``stream`` is a terminal; ``None`` asks ``stream.isatty()``.
    refresh_s
        Least time between two terminal updates.

    Examples
    --------
    >>> import io
    >>> from lr_widget.engine.sweep import StepEvent
    >>> log = io.StringIO()
    >>> progress = Progress(log, interactive=False)
    >>> progress(StepEvent(0, 1, 1e-3, 0.5, 0.5, None, None, 0.2))
    >>> log.getvalue()
    'step 1/1  lr 1.00e-03  loss 0.5  ETA 0s\\n'
    """

    def __init__(
        self, stream: TextIO, interactive: bool | None = None, refresh_s: float = 0.1
    ) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.refresh_s = refresh_s
        self._last_event: StepEvent | None = None
        self._shown: StepEvent | None = None
        self._shown_at = -math.inf
        self._line_width = 0

    def __call__(self, event: StepEvent) -> None:
        """Record ``event`` and show it if it is time to."""
        self._last_event = event
        if self._due(event):
            self._show(event)

    def finish(self) -> None:
        """Show the last step if it was skipped, and end the terminal line."""
        if self._last_event is not None and self._last_event is not self._shown:
            self._show(self._last_event)
        if self.interactive and self._line_width:
            self.stream.write("\n")
            self.stream.flush()
            self._line_width = 0

    def _due(self, event: StepEvent) -> bool:
        if event.step + 1 == event.num_steps:
            return True
        if self.interactive:
            return time.monotonic() - self._shown_at >= self.refresh_s
        return (event.step + 1) % math.ceil(event.num_steps / 10) == 0

    def _show(self, event: StepEvent) -> None:
        line = format_progress(event)
        if self.interactive:
            # Pad with spaces to wipe what is left of a longer previous line.
            self.stream.write("\r" + line.ljust(self._line_width))
            self._line_width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown, self._shown_at = event, time.monotonic()


def format_progress(event: StepEvent) -> str:
    """One line: step, LR, loss (and validation loss), time left.

    >>> format_progress(StepEvent(9, 100, 1e-5, 1.23456, 1.3, None, None, 2.0))
    'step 10/100  lr 1.00e-05  loss 1.235  ETA 18s'
    """
    val = "" if event.val_loss is None else f"  val {event.val_loss:.4g}"
    run = f"run {event.run + 1}/{event.repeats}  " if isinstance(event, RepeatStepEvent) else ""
    return (
        f"{run}step {event.step + 1}/{event.num_steps}  lr {event.lr:.2e}  loss {event.loss:.4g}"
        f"{val}  ETA {_duration(event.eta_s)}"
    )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"


# -- the report -------------------------------------------------------------------------------
def format_report(result: SweepResult, description: str) -> str:
    """What the sweep did, the suggestions table, and the confirmation probes' verdict."""
    parts = [description, _describe_run(result), "", format_suggestions(result)]
    if result.confirmation is not None:
        parts += ["", f"confirmation: {result.confirmation.reason}"]
    return "\n".join(parts)


def _describe_run(result: SweepResult) -> str:
    if not result.has_data:
        return f"no steps recorded ({result.outcome})"
    first = result.runs[0]
    curve = "validation" if first.val_losses is not None else "training"
    lrs = f"lr {result.lrs[0]:.2e} to {result.lrs[-1]:.2e}"
    smoothed = f"{CURVE_READ} of the {curve} loss (its EMA drawn beside it: beta {result.beta:g})"
    if result.is_repeated:
        return (
            f"{len(result.runs)} runs from {lrs}; {result.describe_end()}\n"
            f"suggestions: the median of the runs' picks, each from {smoothed}"
        )
    seconds = first.timings.get("total_s")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    stop = f"{first.stop_reason}: {first.stop_detail}" if first.stop_detail else "stopped"
    return f"{first.num_steps} steps from {lrs}{took}; {stop}\nsuggestions from {smoothed}"


def format_suggestions(result: SweepResult) -> str:
    """Every rule's suggestion as an aligned table: rule, LR, reason; the default rule starred.

    >>> from lr_widget import RangeTestResult
    >>> table = format_suggestions(RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.0, 0.5]))
    >>> print(table.splitlines()[2])
       steep  no suggestion  too short: 2 usable points, need at least 8
    >>> table.splitlines()[-1] == f"* the default rule ({DEFAULT_RULE})"
    True
    """
    rows = [("", "rule", "lr", "reason")]
    for rule, suggestion in result.suggestions().items():
        marker = "*" if rule == DEFAULT_RULE else ""
        rows.append((marker, rule, _lr_cell(suggestion), suggestion.reason))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, [*widths, 0], strict=True)).rstrip()
        for row in rows
    ]
    lines.append(f"* the default rule ({DEFAULT_RULE})")
    return "\n".join(lines)


def _lr_cell(suggestion: Suggestion) -> str:
    return "no suggestion" if suggestion.lr is None else f"{suggestion.lr:.2e}"


PLOTTING_NEEDS = "drawing the curve needs matplotlib: pip install matplotlib"


def can_plot() -> bool:
    """Whether matplotlib is installed (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def require_plotting(option: str) -> None:
    """A :class:`CommandError` naming ``option`` unless matplotlib is installed."""
    if not can_plot():
        raise CommandError(f"{option}: {PLOTTING_NEEDS}")


def draw_curve(result: SweepResult, path: Path, title: str, all_rules: bool = False) -> Path:
    """Write the picture of ``result`` (:meth:`~lr_widget.results.protocol.SweepResult.plot`): the
    curve the suggestions read, the suggested LR labelled (every rule's with ``all_rules``); the
    format follows the suffix."""
    return save_picture(result, path, title=title, all_rules=all_rules)


# -- output files -----------------------------------------------------------------------------
def make_folder(path: Path) -> None:
    """Create ``path``'s folder; a :class:`CommandError` naming ``path`` if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from error


def write_output(path: Path, writer: Callable[[Path], object]) -> Path:
    """Write ``path`` with ``writer`` (``result.save``, ``result.to_csv``...); return ``path``."""
    make_folder(path)
    try:
        writer(path)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
    return path


def print_written(written: Mapping[str, Path]) -> None:
    """List the files written, one ``wrote KIND  PATH`` line each, after a blank line."""
    width = max(len(kind) for kind in written)
    print()
    for kind, path in written.items():
        print(f"wrote {kind.ljust(width)}  {path}")
