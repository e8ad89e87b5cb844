"""The ``lr-widget`` command line (also ``python -m lr_widget``): range tests without Jupyter.

Commands
--------
demo
    Sweep the built-in demo task (:func:`lr_widget.demo.make_demo`).
run MODULE:FUNCTION
    Sweep a model of yours. ``MODULE`` is a dotted module importable from the current directory
    or a path to a ``.py`` file; ``FUNCTION`` takes no arguments and returns
    ``(model, loader[, loss_fn, optimizer])`` or a dict with the keys ``model`` and ``loader``
    and optionally ``loss_fn``, ``optimizer`` and ``val_loader`` (needed by ``--val``).
show RESULT.json
    Print the suggestions of a saved result, optionally re-smoothed with ``--beta``; draw it
    (``--svg``) or export it (``--csv``). Results are read as plain JSON, never unpickled.
lab
    Open the quickstart notebook in JupyterLab, served on 127.0.0.1 only, behind a random token.
version
    Print the versions of lr_widget, torch and Python.

``demo`` and ``run`` report progress on stderr (one line rewritten in place on a terminal, a
plain line every tenth of the sweep otherwise), print the suggestions as a table on stdout, and
save the result as JSON and the curve as SVG, in ``lr_widget_out/`` unless told otherwise.

Exit codes
----------
0
    Success. ``lab`` also exits 0 when stopped with Ctrl-C, its normal way to end.
1
    The sweep failed in user code (model, loss or data); the engine restored the model and the
    optimizer. For ``lab``: the server exited with an error after it had started. Also when
    stdout is closed early (``| head``).
2
    A usage or configuration error: bad arguments, a module or function that cannot be loaded,
    a setup function that raises or returns the wrong thing, an unreadable result file, a
    missing notebook, a file that cannot be written.
130
    Interrupted with Ctrl-C (the model and optimizer are restored).

Errors are reported in one line on stderr; ``--traceback`` adds the Python traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import os
import platform
import random
import reprlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, TextIO

import numpy as np
import torch

import lr_widget
from lr_widget.engine import LRFinder, StepEvent
from lr_widget.result import RangeTestResult
from lr_widget.schedules import MODES
from lr_widget.settings import SweepSettings
from lr_widget.suggestions import DEFAULT_RULE, Suggestion

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SWEEP_ERROR",
    "EXIT_USAGE",
    "CommandError",
    "Progress",
    "SweepSetup",
    "build_parser",
    "default_notebook",
    "format_progress",
    "format_suggestions",
    "lab_command",
    "load_setup_function",
    "main",
    "setup_from",
]

EXIT_OK = 0
EXIT_SWEEP_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_OUT_DIR = Path("lr_widget_out")
RESULT_STEM = "range_test"
REQUIRED_SETUP_KEYS = ("model", "loader")
SETUP_KEYS = (*REQUIRED_SETUP_KEYS, "loss_fn", "optimizer", "val_loader")
QUICKSTART = "quickstart.ipynb"
LAB_HOST = "127.0.0.1"
LAB_DEFAULT_PORT = 8888
LAB_PORT_RETRIES = 50
LAB_STARTUP_TIMEOUT_S = 120.0
LAB_SHUTDOWN_TIMEOUT_S = 20.0


class CommandError(Exception):
    """A failure reported in one line on stderr, ending the command with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- entry point ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, prog: str = "lr-widget") -> int:
    """Run the command line and return its exit code (see the module docstring).

    Parameters
    ----------
    argv
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.
    prog
        The program name shown in help and error messages.

    Returns
    -------
    int
        0 ok, 1 sweep error, 2 usage or configuration error, 130 interrupted.

    Examples
    --------
    >>> main(["version"])  # doctest: +ELLIPSIS
    lr_widget ...
    torch ...
    python ...
    0
    """
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as request:  # --help, or a usage error argparse has already reported
        return request.code if isinstance(request.code, int) else EXIT_USAGE
    try:
        return int(args.handler(args))
    except CommandError as error:
        _report_error(prog, error, args.traceback)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SWEEP_ERROR


def _report_error(prog: str, error: CommandError, show_traceback: bool) -> None:
    if show_traceback:
        traceback.print_exception(error)
    message = " ".join(str(error).split())  # one line, whatever the user's exception said
    print(f"{prog}: error: {message}", file=sys.stderr)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# -- the parser -------------------------------------------------------------------------------
def build_parser(prog: str = "lr-widget") -> argparse.ArgumentParser:
    """The argument parser of every command; each command's handler is ``args.handler``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="LR range tests from the command line: sweep, suggest, save, draw.",
        epilog="exit codes: 0 ok, 1 sweep error, 2 usage or configuration error, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    sweep = [_sweep_options(), common]
    demo = commands.add_parser(
        "demo", parents=sweep, help="sweep the built-in demo task", description=_DEMO_HELP
    )
    demo.set_defaults(handler=_command_demo)
    run = commands.add_parser(
        "run", parents=sweep, help="sweep your model: MODULE:FUNCTION", description=_RUN_HELP
    )
    run.add_argument("target", metavar="MODULE:FUNCTION", help="e.g. train:setup or a/b.py:setup")
    run.set_defaults(handler=_command_run)
    _add_show_parser(commands, common)
    _add_lab_parser(commands, common)
    version = commands.add_parser(
        "version", parents=[common], help="print the versions of lr_widget, torch and Python"
    )
    version.set_defaults(handler=_command_version)
    return parser


_DEMO_HELP = (
    "Run an LR range test on the built-in demo (a seeded 3-class problem and an MLP), print "
    "the suggestions, save the result as JSON and the curve as SVG."
)
_RUN_HELP = (
    "Import MODULE (dotted, importable from the current directory, or path/to/file.py), call "
    "FUNCTION() and sweep what it returns: (model, loader[, loss_fn, optimizer]) or a dict with "
    "keys model, loader and optionally loss_fn, optimizer, val_loader. Then as 'demo'."
)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )
    return common


# Flag, type, default, metavar, help. Defaults come from SweepSettings, the engine's own, so the
# command line and the engine cannot drift apart.
_SWEEP_OPTIONS: tuple[tuple[str, Callable[[str], Any], Any, str, str], ...] = (
    ("--start-lr", float, SweepSettings.start_lr, "LR", "LR of the first step"),
    ("--end-lr", float, SweepSettings.end_lr, "LR", "LR of the last step"),
    ("--num-steps", int, SweepSettings.num_steps, "N", "number of LRs tried"),
    ("--beta", float, SweepSettings.beta, "B", "smoothing of the loss curve, in [0, 1)"),
    ("--diverge-factor", float, SweepSettings.diverge_factor, "X",
     "stop when the smoothed loss exceeds X times its minimum; inf: never"),
    ("--batches-per-step", int, SweepSettings.batches_per_step, "N", "optimizer steps per LR"),
    ("--seed", _non_negative_int, 0, "N", "seed of torch, numpy and random, set first"),
)  # fmt: skip
_OUTPUT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--json", f"the result (default DIR/{RESULT_STEM}.json)"),
    ("--svg", f"picture of the curve (default DIR/{RESULT_STEM}.svg)"),
    ("--csv", "also write one row per step as CSV"),
)


def _sweep_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    sweep = options.add_argument_group("sweep")
    for flag, kind, default, metavar, text in _SWEEP_OPTIONS:
        sweep.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} (default %(default)s)"
        )
    sweep.add_argument(
        "--mode",
        choices=MODES,
        default=SweepSettings.mode,
        help="spacing of the LRs (default %(default)s)",
    )
    sweep.add_argument("--val", action="store_true", help="follow the validation loss instead")
    sweep.add_argument("--quiet", action="store_true", help="no progress on stderr")
    output = options.add_argument_group("output")
    output.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        metavar="DIR",
        help="folder of the default output files (default %(default)s)",
    )
    for flag, text in _OUTPUT_OPTIONS:
        output.add_argument(flag, type=Path, metavar="PATH", help=text)
    return options


def _add_show_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    show = commands.add_parser(
        "show",
        parents=[common],
        help="print the suggestions of a saved result",
        description="Load a result saved as JSON (never a pickle) and print its suggestions.",
    )
    show.add_argument(
        "result_path", type=Path, metavar="RESULT.json", help="a result saved by demo or run"
    )
    show.add_argument("--beta", type=float, help="re-smooth the curve with this beta first")
    show.add_argument("--svg", type=Path, metavar="PATH", help="also draw the curve as SVG")
    show.add_argument("--csv", type=Path, metavar="PATH", help="also write the steps as CSV")
    show.set_defaults(handler=_command_show)


def _add_lab_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    lab = commands.add_parser(
        "lab",
        parents=[common],
        help="open the quickstart notebook in JupyterLab",
        description="Serve a notebook with JupyterLab on 127.0.0.1 behind a random token, print "
        "its URL and open a browser when there is a display. Ctrl-C stops the server.",
    )
    lab.add_argument(
        "--notebook",
        type=Path,
        metavar="PATH",
        help=f"the notebook to open (default: the checkout's notebooks/{QUICKSTART})",
    )
    lab.add_argument(
        "--port",
        type=_non_negative_int,
        default=LAB_DEFAULT_PORT,
        help="first port to try; the next free one is used (default %(default)s)",
    )
    lab.add_argument("--no-browser", action="store_true", help="only print the URL")
    lab.add_argument(
        "--allow-root", action="store_true", help="let Jupyter run as root (containers)"
    )
    lab.set_defaults(handler=_command_lab)


# -- demo and run -----------------------------------------------------------------------------
@dataclass
class SweepSetup:
    """What one sweep needs, from the demo or from a user's setup function.

    Attributes
    ----------
    model, train_data, loss_fn, optimizer, val_data
        Passed to :class:`~lr_widget.engine.LRFinder`, which checks them.
    source
        Short name of where they came from (``"demo"``, ``"train:setup"``), for titles and errors.
    description
        One line about the task, printed above the suggestions.
    """

    model: Any
    train_data: Any
    loss_fn: Any = None
    optimizer: Any = None
    val_data: Any = None
    source: str = "setup"
    description: str = ""


def _command_demo(args: argparse.Namespace) -> int:
    from lr_widget.demo import make_demo

    _seed_everything(args.seed)
    demo = make_demo(seed=args.seed)
    setup = SweepSetup(
        model=demo.model,
        train_data=demo.train_loader,
        loss_fn=demo.loss_fn,
        val_data=demo.val_loader,
        source="demo",
        description=f"demo: {demo.description}",
    )
    with _torch_threads(1):
        return _sweep_and_report(setup, args)


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch ops on ``count`` threads, then restore the previous number.

    The demo's matrices are tiny: one thread sweeps it in a fraction of a second where two
    OpenMP threads on a busy 2-core machine took 5 to 12 s, and one thread gives the same curve
    on every machine (the reduction order, hence the rounding, depends on the thread count).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _command_run(args: argparse.Namespace) -> int:
    function = load_setup_function(args.target)
    _seed_everything(args.seed)
    try:
        returned = function()
    except Exception as error:
        raise CommandError(f"{args.target} raised {_describe(error)}") from error
    return _sweep_and_report(setup_from(returned, args.target), args)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_setup_function(spec: str) -> Callable[[], Any]:
    """Import ``module:function`` or ``path/to/file.py:function`` and return the function.

    Raises
    ------
    CommandError
        Naming the problem: a spec without a colon, a module or file that cannot be found or
        imported, a missing attribute, or one that is not callable.
    """
    module_name, colon, function_name = spec.rpartition(":")
    if not (colon and module_name and function_name.isidentifier()):
        raise CommandError(
            f"expected MODULE:FUNCTION, such as train:setup or path/to/train.py:setup, got {spec!r}"
        )
    module = _import_setup_module(module_name)
    if not hasattr(module, function_name):
        defined = ", ".join(_functions_of(module)) or "no functions"
        raise CommandError(
            f"{module_name} has no function {function_name!r} (it defines {defined})"
        )
    function = getattr(module, function_name)
    if not callable(function):
        raise CommandError(f"{spec} is not callable: it is {_shape_of(function)}")
    return function  # type: ignore[no-any-return]


def _functions_of(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if callable(value) and getattr(value, "__module__", None) == module.__name__
    )


def _import_setup_module(name: str) -> ModuleType:
    if name.endswith(".py") or "/" in name or os.sep in name:
        return _import_file(Path(name))
    # `python -m` puts the current directory on sys.path, the `lr-widget` script does not.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if name == missing or name.startswith(missing + "."):
            raise CommandError(
                f"no module named {name!r} in the current directory ({os.getcwd()}) or on "
                "sys.path; give a dotted module name or path/to/file.py"
            ) from error
        raise CommandError(f"importing {name} failed: {_describe(error)}") from error
    except Exception as error:
        raise CommandError(f"importing {name} failed: {_describe(error)}") from error


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    # Like running a script: its folder goes first on sys.path, so sibling imports work.
    sys.path.insert(0, str(path.resolve().parent))
    name = path.stem if path.stem not in sys.modules else f"_lr_widget_setup_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise CommandError(f"importing {path} failed: {_describe(error)}") from error
    return module


def setup_from(returned: Any, source: str) -> SweepSetup:
    """Read what a setup function returned: a 2 to 4 item tuple or a dict (see ``run``).

    Raises
    ------
    CommandError
        If ``returned`` has another shape, naming what it was.
    """
    if isinstance(returned, Mapping):
        parts = _setup_dict(returned, source)
    elif isinstance(returned, (tuple, list)) and 2 <= len(returned) <= 4:
        parts = dict(zip(SETUP_KEYS, returned, strict=False))
    else:
        raise CommandError(
            f"{source} must return (model, loader[, loss_fn, optimizer]) or a dict with keys "
            f"{', '.join(SETUP_KEYS)}; it returned {_shape_of(returned)}"
        )
    return SweepSetup(
        model=parts["model"],
        train_data=parts["loader"],
        loss_fn=parts.get("loss_fn"),
        optimizer=parts.get("optimizer"),
        val_data=parts.get("val_loader"),
        source=source,
        description=f"run: {source}",
    )


def _setup_dict(returned: Mapping[Any, Any], source: str) -> dict[str, Any]:
    missing = [key for key in REQUIRED_SETUP_KEYS if key not in returned]
    unknown = sorted(str(key) for key in returned if key not in SETUP_KEYS)
    if missing or unknown:
        problem = f"lacks {missing}" if missing else f"has unknown keys {unknown}"
        raise CommandError(
            f"the dict {source} returned {problem}; valid keys are {', '.join(SETUP_KEYS)} "
            f"({' and '.join(REQUIRED_SETUP_KEYS)} required)"
        )
    return {str(key): value for key, value in returned.items()}


def _shape_of(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _sweep_and_report(setup: SweepSetup, args: argparse.Namespace) -> int:
    finder = _build_finder(setup, args)
    paths = _output_paths(args)
    for path in paths.values():  # fail before the sweep, not after it
        _make_folder(path)
    result = _run_sweep(finder, quiet=args.quiet)
    print(format_report(result, setup.description))
    writers: dict[str, Callable[[Path], object]] = {
        "result": result.save,
        "picture": lambda path: draw_curve(result, path, f"LR range test: {setup.source}"),
        "steps": result.to_csv,
    }
    _print_written({kind: _write(path, writers[kind]) for kind, path in paths.items()})
    return EXIT_OK


def _output_paths(args: argparse.Namespace) -> dict[str, Path]:
    paths = {
        "result": args.json or args.out / f"{RESULT_STEM}.json",
        "picture": args.svg or args.out / f"{RESULT_STEM}.svg",
    }
    if args.csv is not None:
        paths["steps"] = args.csv
    return paths


def _build_finder(setup: SweepSetup, args: argparse.Namespace) -> LRFinder:
    settings = {
        "start_lr": args.start_lr,
        "end_lr": args.end_lr,
        "num_steps": args.num_steps,
        "mode": args.mode,
        "beta": args.beta,
        "diverge_factor": args.diverge_factor,
        "batches_per_step": args.batches_per_step,
    }
    try:
        SweepSettings(**settings)
    except (TypeError, ValueError) as error:
        raise CommandError(f"invalid sweep option: {error}") from error
    if args.val and setup.val_data is None:
        raise CommandError(
            f"--val needs validation data: return a dict with a 'val_loader' from {setup.source}"
        )
    val_data = setup.val_data if args.val else None
    try:
        return LRFinder(
            setup.model,
            setup.train_data,
            setup.loss_fn,
            setup.optimizer,
            val_data=val_data,
            **settings,
        )
    except (TypeError, ValueError) as error:
        raise CommandError(f"{setup.source} returned an unusable setup: {error}") from error


def _run_sweep(finder: LRFinder, quiet: bool) -> RangeTestResult:
    progress = None if quiet else Progress(sys.stderr)
    try:
        return finder.run(callback=progress)
    except KeyboardInterrupt as interrupt:
        step = finder.result.num_steps if finder.result is not None else 0
        raise CommandError(
            f"interrupted at step {step}; the model and optimizer were restored", EXIT_INTERRUPTED
        ) from interrupt
    except Exception as error:
        step = finder.result.num_steps if finder.result is not None else 0
        raise CommandError(
            f"the sweep failed at step {step}: {_describe(error)} (the model and optimizer "
            "were restored)",
            EXIT_SWEEP_ERROR,
        ) from error
    finally:
        if progress is not None:
            progress.finish()


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from error


def _write(path: Path, writer: Callable[[Path], object]) -> Path:
    _make_folder(path)
    try:
        writer(path)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
    return path


def _print_written(written: Mapping[str, Path]) -> None:
    width = max(len(kind) for kind in written)
    print()
    for kind, path in written.items():
        print(f"wrote {kind.ljust(width)}  {path}")


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
    >>> from lr_widget.engine import StepEvent
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
    return (
        f"step {event.step + 1}/{event.num_steps}  lr {event.lr:.2e}  loss {event.loss:.4g}"
        f"{val}  ETA {_duration(event.eta_s)}"
    )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"


# -- the report -------------------------------------------------------------------------------
def format_report(result: RangeTestResult, description: str) -> str:
    """What the sweep did, then the suggestions table."""
    return "\n".join([description, _describe_run(result), "", format_suggestions(result)])


def _describe_run(result: RangeTestResult) -> str:
    if not result.lrs:
        return f"no steps recorded ({result.stop_reason})"
    seconds = result.timings.get("total_s")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    curve = "validation" if result.val_losses is not None else "training"
    stop = f"{result.stop_reason}: {result.stop_detail}" if result.stop_detail else "stopped"
    return (
        f"{result.num_steps} steps from lr {result.lrs[0]:.2e} to {result.lrs[-1]:.2e}{took}; "
        f"{stop}\nsuggestions from the smoothed {curve} loss (beta {result.beta:g})"
    )


def format_suggestions(result: RangeTestResult) -> str:
    """Every rule's suggestion as an aligned table: rule, LR, reason; the default rule starred.

    >>> print(format_suggestions(RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.0, 0.5])))
       rule     lr             reason
       steep    no suggestion  too short: 2 usable points, need at least 8
    *  valley   no suggestion  too short: 2 usable points, need at least 8
       minimum  no suggestion  too short: 2 usable points, need at least 8
       slide    no suggestion  too short: 2 usable points, need at least 8
    * the default rule (valley)
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


def draw_curve(result: RangeTestResult, path: Path, title: str) -> Path:
    """Write the curve the suggestions read, with every suggestion marked, as SVG."""
    from lr_widget.picture import Marker, save_curve_svg

    markers = [
        Marker(_marker_label(suggestion), suggestion.lr, suggestion.loss)
        for suggestion in result.suggestions().values()
        if suggestion.lr is not None and suggestion.loss is not None
    ]
    raw = result.losses if result.val_losses is None else result.val_losses
    return save_curve_svg(path, result.lrs, raw, result.curve, markers, title=title)


def _marker_label(suggestion: Suggestion) -> str:
    default = " (default)" if suggestion.rule == DEFAULT_RULE else ""
    return f"{suggestion.rule} {suggestion.lr:.1e}{default}"


# -- show -------------------------------------------------------------------------------------
def _command_show(args: argparse.Namespace) -> int:
    result = _load_result(args.result_path)
    if args.beta is not None:
        try:
            result = result.with_beta(args.beta)
        except ValueError as error:
            raise CommandError(f"invalid --beta: {error}") from error
    print(format_report(result, f"{args.result_path}: {_what_was_swept(result)}"))
    written = {}
    if args.svg is not None:
        title = f"LR range test: {args.result_path.name}"
        written["picture"] = _write(args.svg, lambda path: draw_curve(result, path, title))
    if args.csv is not None:
        written["steps"] = _write(args.csv, result.to_csv)
    if written:
        _print_written(written)
    return EXIT_OK


def _load_result(path: Path) -> RangeTestResult:
    try:
        return RangeTestResult.load(path)
    except FileNotFoundError as error:
        raise CommandError(f"no such result file: {path}") from error
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
    except KeyError as error:
        raise CommandError(
            f"{path} is not a readable lr_widget result: it has no {error.args[0]!r} field"
        ) from error
    except (ValueError, TypeError) as error:
        raise CommandError(f"{path} is not a readable lr_widget result: {error}") from error


def _what_was_swept(result: RangeTestResult) -> str:
    model = result.metadata.get("model", "a model")
    optimizer = result.metadata.get("optimizer", "an optimizer")
    created = result.metadata.get("created")
    return f"{model} with {optimizer}" + (f", {created}" if created else "")


# -- lab --------------------------------------------------------------------------------------
def default_notebook() -> Path:
    """The quickstart notebook of the source checkout this package was imported from."""
    return Path(lr_widget.__file__).resolve().parents[1] / "notebooks" / QUICKSTART


def _command_lab(args: argparse.Namespace) -> int:
    notebook = _find_notebook(args.notebook)
    if importlib.util.find_spec("jupyterlab") is None:
        raise CommandError("JupyterLab is not installed; pip install 'lr_widget[notebook]'")
    token = secrets.token_urlsafe(32)
    open_browser = not args.no_browser and _has_display()
    with _token_config(token) as config, _sigterm_as_interrupt():
        command = lab_command(notebook, config, args.port, open_browser, args.allow_root)
        server = subprocess.Popen(command)
        try:
            return _serve(server, notebook, token, config)
        except KeyboardInterrupt:
            print("stopping JupyterLab", file=sys.stderr)
            return EXIT_OK
        finally:
            _stop_server(server)


def _find_notebook(given: Path | None) -> Path:
    notebook = (given or default_notebook()).expanduser().resolve()
    if notebook.is_file():
        return notebook
    if given is None:
        raise CommandError(
            f"the quickstart notebook is not at {notebook}: it comes with a source checkout of "
            "lr_widget, not with the installed package; pass --notebook PATH"
        )
    raise CommandError(f"no such notebook: {notebook}; pass --notebook PATH to an .ipynb file")


def _has_display() -> bool:
    # Without a display Python's webbrowser falls back to console browsers (lynx, w3m), which
    # would take over the terminal the server logs to.
    if platform.system() in ("Darwin", "Windows"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def lab_command(
    notebook: Path, config_file: Path, port: int, open_browser: bool, allow_root: bool = False
) -> list[str]:
    """The ``python -m jupyterlab`` command serving ``notebook``'s folder on 127.0.0.1.

    The token is not on the command line (any local user can read a process's arguments): it
    is in ``config_file``, which is loaded after the user's own Jupyter config and so wins.
    """
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--config={config_file}",
        f"--ServerApp.ip={LAB_HOST}",
        f"--ServerApp.port={port}",
        f"--ServerApp.port_retries={LAB_PORT_RETRIES}",
        f"--ServerApp.root_dir={notebook.parent}",
        f"--ServerApp.open_browser={open_browser}",
        # Ctrl-C stops the server at once instead of asking "Shut down (y/[n])?".
        "--ServerApp.answer_yes=True",
        f"--LabApp.default_url=/lab/tree/{urllib.parse.quote(notebook.name)}",
    ]
    if allow_root:
        command.append("--ServerApp.allow_root=True")
    return command


@contextlib.contextmanager
def _token_config(token: str) -> Iterator[Path]:
    """A Jupyter config file setting the token, in a folder only this user can read."""
    folder = Path(tempfile.mkdtemp(prefix="lr_widget_lab_"))
    path = folder / "lr_widget_lab_config.json"
    try:
        path.write_text(json.dumps({"IdentityProvider": {"token": token}}), encoding="utf-8")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so ``kill`` also stops the server it started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _serve(server: subprocess.Popen[bytes], notebook: Path, token: str, config: Path) -> int:
    info = _wait_for_server_info(server)
    shutil.rmtree(config.parent, ignore_errors=True)  # read by now: no token left on disk
    if info.get("token") != token:
        raise CommandError(
            "the Jupyter server does not use the token lr-widget gave it (a Jupyter config "
            "overrides it?); stopped it rather than serve without a known token"
        )
    url = (
        f"http://{LAB_HOST}:{info['port']}/lab/tree/{urllib.parse.quote(notebook.name)}"
        f"?token={token}"
    )
    print(f"JupyterLab is serving {notebook.parent}\n\n    {url}\n\nPress Ctrl-C to stop it.")
    sys.stdout.flush()
    code = server.wait()
    if code != 0:
        raise CommandError(f"JupyterLab exited with code {code}", EXIT_SWEEP_ERROR)
    return EXIT_OK


def _wait_for_server_info(server: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The server's runtime info (port, token), which it writes once it is listening."""
    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{server.pid}.json"
    deadline = time.monotonic() + LAB_STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        code = server.poll()
        if code is not None:
            raise CommandError(f"JupyterLab did not start (exit code {code}); see its log above")
        with contextlib.suppress(OSError, ValueError):  # not written yet, or half written
            info = json.loads(info_file.read_text(encoding="utf-8"))
            if isinstance(info, dict) and info.get("pid") == server.pid:
                return info
        time.sleep(0.2)
    raise CommandError(f"JupyterLab did not start within {LAB_STARTUP_TIMEOUT_S:.0f} s")


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop the server (SIGTERM: it shuts its kernels down), killing it if it hangs."""
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=LAB_SHUTDOWN_TIMEOUT_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        server.kill()
        server.wait()


# -- version ----------------------------------------------------------------------------------
def _command_version(args: argparse.Namespace) -> int:
    print(f"lr_widget {lr_widget.__version__}")
    print(f"torch {torch.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    return EXIT_OK
