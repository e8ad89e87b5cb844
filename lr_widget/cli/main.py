"""The ``lr-widget`` commands: demo, run, show, lab, version.

:func:`main` parses the arguments (:mod:`lr_widget.cli.parser`), runs the command and turns a
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

import torch

from lr_widget.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SWEEP_ERROR,
    EXIT_USAGE,
    CommandError,
    describe_error,
)
from lr_widget.cli.lab import run_lab
from lr_widget.cli.parser import RESULT_STEM, build_parser
from lr_widget.cli.report import (
    PLOTTING_NEEDS,
    Progress,
    can_plot,
    draw_curve,
    format_report,
    make_folder,
    print_written,
    require_plotting,
    write_output,
)
from lr_widget.cli.setup_loader import SweepSetup, load_setup_function, setup_from
from lr_widget.engine.runner import RangeTestRunner, make_runner
from lr_widget.engine.state import seed_everything
from lr_widget.find import confirm_result
from lr_widget.results.loading import load_result
from lr_widget.results.protocol import SweepResult
from lr_widget.results.settings import parse_settings
from lr_widget.version import __version__


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
        return int(COMMANDS[args.command](args))
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
    except SystemExit as error:  # exit code 0 would read as success with nothing swept
        raise CommandError(
            f"{args.target} called sys.exit({error.code!r}) instead of returning a setup"
        ) from error
    except Exception as error:
        raise CommandError(f"{args.target} raised {describe_error(error)}") from error
    return _sweep_and_report(setup_from(returned, args.target), args)


def _sweep_and_report(setup: SweepSetup, args: argparse.Namespace) -> int:
    runner = _build_runner(setup, args)
    paths = _output_paths(args)
    for path in paths.values():  # fail before the sweep, not after it
        make_folder(path)
    result = _run_sweep(runner, args)
    print(format_report(result, setup.description))
    writers: dict[str, Callable[[Path], object]] = {
        "result": result.save,
        "picture": lambda path: draw_curve(
            result, path, f"LR range test: {setup.source}", args.all_rules
        ),
        "steps": result.to_csv,
    }
    print_written({kind: write_output(path, writers[kind]) for kind, path in paths.items()})
    return EXIT_OK


def _output_paths(args: argparse.Namespace) -> dict[str, Path]:
    """The files to write; the default picture only where matplotlib can draw it."""
    paths = {"result": args.json or args.out / f"{RESULT_STEM}.json"}
    if args.picture is not None:
        require_plotting("--picture")
        paths["picture"] = args.picture
    elif can_plot():
        paths["picture"] = args.out / f"{RESULT_STEM}.svg"
    else:
        print(f"no picture: {PLOTTING_NEEDS}", file=sys.stderr)
    if args.csv is not None:
        paths["steps"] = args.csv
    return paths


def _build_runner(setup: SweepSetup, args: argparse.Namespace) -> RangeTestRunner:
    settings = {
        "start_lr": args.start_lr,
        "end_lr": args.end_lr,
        "num_steps": args.num_steps,
        "mode": args.mode,
        "beta": args.beta,
        "diverge_factor": args.diverge_factor,
        "batches_per_step": args.batches_per_step,
        "train_steps": args.train_steps,
    }
    try:
        parse_settings(settings)
    except (TypeError, ValueError) as error:
        raise CommandError(f"invalid sweep option: {error}") from error
    if args.val and setup.val_data is None:
        raise CommandError(
            f"--val needs validation data: return a dict with a 'val_loader' from {setup.source}"
        )
    val_data = setup.val_data if args.val else None
    repeated = {} if args.repeats is None else {"repeats": args.repeats, "seed": args.seed}
    try:
        return make_runner(
            setup.model,
            setup.train_data,
            setup.loss_fn,
            setup.optimizer,
            val_data=val_data,
            **repeated,
            **settings,
        )
    except (TypeError, ValueError) as error:
        raise CommandError(f"{setup.source} returned an unusable setup: {error}") from error


def _run_sweep(runner: RangeTestRunner, args: argparse.Namespace) -> SweepResult:
    progress = None if args.quiet else Progress(sys.stderr)
    try:
        result = runner.run(progress)
        if args.confirm:
            confirm_result(result, runner.finder, {})
        return result
    except KeyboardInterrupt as interrupt:
        raise CommandError(
            f"interrupted at {_where(runner)}; the model and optimizer were restored",
            EXIT_INTERRUPTED,
        ) from interrupt
    except Exception as error:
        raise CommandError(
            f"the sweep failed at {_where(runner)}: {describe_error(error)} (the model and "
            "optimizer were restored)",
            EXIT_SWEEP_ERROR,
        ) from error
    finally:
        if progress is not None:
            progress.finish()


def _where(runner: RangeTestRunner) -> str:
    """The step the current sweep had reached."""
    run = runner.finder.result
    return f"step {run.num_steps if run is not None else 0}"


# -- show -------------------------------------------------------------------------------------
def _command_show(args: argparse.Namespace) -> int:
    result = _load_result(args.result_path)
    if args.beta is not None:
        try:
            result = result.with_beta(args.beta)
        except ValueError as error:
            raise CommandError(f"invalid --beta: {error}") from error
    if args.train_steps is not None:
        result = result.with_train_steps(args.train_steps)
    try:
        report = format_report(result, f"{args.result_path}: {_what_was_swept(result)}")
    except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
        raise CommandError(f"{args.result_path} could not be read as a result: {error}") from error
    print(report)
    written = {}
    if args.picture is not None:
        require_plotting("--picture")
        title = f"LR range test: {args.result_path.name}"
        written["picture"] = write_output(
            args.picture, lambda path: draw_curve(result, path, title, args.all_rules)
        )
    if args.csv is not None:
        written["steps"] = write_output(args.csv, result.to_csv)
    if written:
        print_written(written)
    return EXIT_OK


def _load_result(path: Path) -> SweepResult:
    try:
        return load_result(path)
    except FileNotFoundError as error:
        raise CommandError(f"no such result file: {path}") from error
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
    except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
        raise CommandError(f"{path} is not a readable lr_widget result: {error}") from error


def _what_was_swept(result: SweepResult) -> str:
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
    print(f"lr_widget {__version__}")
    print(f"torch {torch.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _command_demo,
    "run": _command_run,
    "show": _command_show,
    "lab": _command_lab,
    "version": _command_version,
}
"""Each command's handler, by the name :func:`~lr_widget.cli.parser.build_parser` gives it."""
