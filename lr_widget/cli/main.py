"""The ``lr-widget`` argument parser and its commands: demo, run, show, lab, version.

:func:`main` parses the arguments, runs the command's handler and turns a
:class:`~lr_widget.cli.errors.CommandError` into one line on stderr and an exit code. The
handlers are thin: loading a setup function is :mod:`lr_widget.cli.setup_loader`'s job, what is
printed and written :mod:`lr_widget.cli.report`'s, serving JupyterLab :mod:`lr_widget.cli.lab`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

import lr_widget
from lr_widget.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SWEEP_ERROR,
    EXIT_USAGE,
    CommandError,
    describe_error,
)
from lr_widget.cli.lab import LAB_DEFAULT_PORT, QUICKSTART, run_lab
from lr_widget.cli.report import (
    Progress,
    draw_curve,
    format_report,
    make_folder,
    print_written,
    write_output,
)
from lr_widget.cli.setup_loader import SweepSetup, load_setup_function, setup_from
from lr_widget.engine import LRFinder
from lr_widget.result import RangeTestResult
from lr_widget.schedules import MODES
from lr_widget.settings import SweepSettings
from lr_widget.state import seed_everything

__all__ = ["build_parser", "main"]

DEFAULT_OUT_DIR = Path("lr_widget_out")
RESULT_STEM = "range_test"


# -- entry point ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, prog: str = "lr-widget") -> int:
    """Run the command line and return its exit code (see :mod:`lr_widget.cli`).

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
def _command_demo(args: argparse.Namespace) -> int:
    from lr_widget.demo import make_demo

    seed_everything(args.seed)
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
    seed_everything(args.seed)
    try:
        returned = function()
    except Exception as error:
        raise CommandError(f"{args.target} raised {describe_error(error)}") from error
    return _sweep_and_report(setup_from(returned, args.target), args)


def _sweep_and_report(setup: SweepSetup, args: argparse.Namespace) -> int:
    finder = _build_finder(setup, args)
    paths = _output_paths(args)
    for path in paths.values():  # fail before the sweep, not after it
        make_folder(path)
    result = _run_sweep(finder, quiet=args.quiet)
    print(format_report(result, setup.description))
    writers: dict[str, Callable[[Path], object]] = {
        "result": result.save,
        "picture": lambda path: draw_curve(result, path, f"LR range test: {setup.source}"),
        "steps": result.to_csv,
    }
    print_written({kind: write_output(path, writers[kind]) for kind, path in paths.items()})
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
            f"the sweep failed at step {step}: {describe_error(error)} (the model and optimizer "
            "were restored)",
            EXIT_SWEEP_ERROR,
        ) from error
    finally:
        if progress is not None:
            progress.finish()


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
        written["picture"] = write_output(args.svg, lambda path: draw_curve(result, path, title))
    if args.csv is not None:
        written["steps"] = write_output(args.csv, result.to_csv)
    if written:
        print_written(written)
    return EXIT_OK


def _load_result(path: Path) -> RangeTestResult:
    try:
        return RangeTestResult.load(path)
    except FileNotFoundError as error:
        raise CommandError(f"no such result file: {path}") from error
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
    except (ValueError, TypeError) as error:
        raise CommandError(f"{path} is not a readable lr_widget result: {error}") from error


def _what_was_swept(result: RangeTestResult) -> str:
    model = result.metadata.get("model", "a model")
    optimizer = result.metadata.get("optimizer", "an optimizer")
    created = result.metadata.get("created")
    return f"{model} with {optimizer}" + (f", {created}" if created else "")


# -- lab and version --------------------------------------------------------------------------
def _command_lab(args: argparse.Namespace) -> int:
    return run_lab(
        args.notebook, args.port, open_browser=not args.no_browser, allow_root=args.allow_root
    )


def _command_version(args: argparse.Namespace) -> int:
    print(f"lr_widget {lr_widget.__version__}")
    print(f"torch {torch.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    return EXIT_OK
