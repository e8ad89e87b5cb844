"""The ``lr-widget`` argument parser: every command, its options and their defaults.

Sweep defaults come from :class:`~lr_widget.results.settings.SweepSettings`, the engine's own, so
the command line and the engine cannot drift apart. ``args.command`` names the command;
:mod:`lr_widget.cli.main` runs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lr_widget.cli.lab import LAB_DEFAULT_PORT, QUICKSTART
from lr_widget.results.settings import MODES, SweepSettings

DEFAULT_OUT_DIR = Path("lr_widget_out")
RESULT_STEM = "range_test"


def build_parser(prog: str = "lr-widget") -> argparse.ArgumentParser:
    """The argument parser of every command; ``args.command`` names the command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="LR range tests from the command line: sweep, suggest, save, draw.",
        epilog="exit codes: 0 ok, 1 sweep error, 2 usage or configuration error, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    sweep = [_sweep_options(), common]
    commands.add_parser(
        "demo", parents=sweep, help="sweep the built-in demo task", description=_DEMO_HELP
    )
    run = commands.add_parser(
        "run", parents=sweep, help="sweep your model: MODULE:FUNCTION", description=_RUN_HELP
    )
    run.add_argument("target", metavar="MODULE:FUNCTION", help="e.g. train:setup or a/b.py:setup")
    _add_show_parser(commands, common)
    _add_lab_parser(commands, common)
    commands.add_parser(
        "version", parents=[common], help="print the versions of lr_widget, torch and Python"
    )
    return parser


_DEMO_HELP = (
    "Run an LR range test on the built-in demo (a seeded 3-class problem and an MLP), print "
    "the suggestions, save the result as JSON and a picture of the curve."
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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


_TRAIN_STEPS_HELP = (
    "optimizer steps of the training the LR is for: the default suggestion reads it (default: "
    "not known, {assumed:,} assumed)"
)


def _add_train_steps_option(group: Any) -> None:
    from lr_widget.suggestions.length import ASSUMED_TRAIN_STEPS

    text = _TRAIN_STEPS_HELP.format(assumed=ASSUMED_TRAIN_STEPS)
    group.add_argument("--train-steps", type=_positive_int, metavar="N", help=text)


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
    _add_train_steps_option(sweep)
    sweep.add_argument(
        "--repeats",
        type=_positive_int,
        metavar="K",
        help="run the sweep K times, seeded SEED + i, for the noise band and robust picks",
    )
    sweep.add_argument(
        "--confirm",
        action="store_true",
        help="then train short probes at 1/3, 1 and 3 times the minimum rule's LR and keep "
        "their verdict in the result",
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
    _add_picture_option(output, f"default DIR/{RESULT_STEM}.svg")
    return options


def _add_picture_option(group: Any, default: str) -> None:
    """``--picture PATH`` (alias ``--svg``): the curve drawn by matplotlib, format by suffix."""
    group.add_argument(
        "--picture",
        "--svg",
        type=Path,
        metavar="PATH",
        help=f"picture of the curve, .svg, .png or .pdf ({default}; needs matplotlib)",
    )
    group.add_argument(
        "--all-rules",
        action="store_true",
        help="mark every rule's suggestion on the picture, not only the suggested LR",
    )


def _add_show_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    show = commands.add_parser(
        "show",
        parents=[common],
        help="print the suggestions of a saved result",
        description="Load a result (one sweep or repeated sweeps) saved as JSON (never a "
        "pickle) and print its suggestions.",
    )
    show.add_argument(
        "result_path", type=Path, metavar="RESULT.json", help="a result saved by demo or run"
    )
    show.add_argument("--beta", type=float, help="re-smooth the curve with this beta first")
    _add_train_steps_option(show)
    _add_picture_option(show, "none unless asked")
    show.add_argument("--csv", type=Path, metavar="PATH", help="also write the steps as CSV")


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
        help=f"the notebook to open (default: the checkout's notebooks/{QUICKSTART}; from a pip "
        f"install, a copy of it in the current folder)",
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
