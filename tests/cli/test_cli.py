"""The command line: demo, run, show, version; exit codes, messages, files written, progress."""

from __future__ import annotations

import io
import math
import pickle
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lr_widget
from lr_widget.cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SWEEP_ERROR, EXIT_USAGE
from lr_widget.cli.main import main
from lr_widget.cli.report import Progress, format_suggestions
from lr_widget.engine.recording import StepEvent
from lr_widget.engine.sweep import LRFinder
from lr_widget.results.confirmation import CONFIRM_RULE
from lr_widget.results.loading import load_result
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.suggestions.registry import DEFAULT_RULE, RULES

# A user's setup module. MODELS and INITIAL_STATES let a test compare the model after the run
# with its weights before; CALLS counts the calls of the user's loss function.
SETUP_SOURCE = '''
import copy

import torch

from tests.helpers import make_batches, make_classifier

MODELS = []
INITIAL_STATES = []
CALLS = {"loss_fn": 0}


def _remember(model):
    MODELS.append(model)
    INITIAL_STATES.append(copy.deepcopy(model.state_dict()))
    return model


def as_tuple():
    return _remember(make_classifier(seed=0)), make_batches(seed=0)


def counting_loss(output, target):
    CALLS["loss_fn"] += 1
    return torch.nn.functional.cross_entropy(output, target)


def as_dict():
    model = _remember(make_classifier(seed=0))
    return {
        "model": model,
        "loader": make_batches(seed=0),
        "loss_fn": counting_loss,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        "val_loader": make_batches(seed=1, count=2),
    }


def swapped():
    return make_batches(seed=0), make_classifier(seed=0)


def five_items():
    return (make_classifier(seed=0), make_batches(seed=0), None, None, None)


def dict_without_loader():
    return {"model": make_classifier(seed=0), "data": make_batches(seed=0)}


def returns_none():
    return None


def raises():
    raise RuntimeError("cannot find the data\\non line two")


not_callable = 42


class FailingModel(torch.nn.Module):
    """Works for a few forward passes, then raises ``error``."""

    def __init__(self, error, after=5):
        super().__init__()
        self.inner = make_classifier(seed=0)
        self.error = error
        self.after = after
        self.calls = 0

    def forward(self, inputs):
        self.calls += 1
        if self.calls > self.after:
            raise self.error
        return self.inner(inputs)


def fails_mid_sweep():
    model = _remember(FailingModel(ValueError("shape mismatch in layer 2")))
    return model, make_batches(seed=0)


def interrupted_mid_sweep():
    return _remember(FailingModel(KeyboardInterrupt())), make_batches(seed=0)
'''

FAST = ["--num-steps", "20", "--quiet"]


@pytest.fixture
def setup_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Write the user's setup module under a fresh name, importable from the current folder."""
    name = f"lrw_setup_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(SETUP_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # also restores sys.path as the CLI changes it
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(output: str) -> dict[str, list[str]]:
    """The suggestion table's rows by rule name: [marker, lr]."""
    rows = {}
    for line in output.splitlines():
        match = re.match(r"^(\*?)\s+(\w+)\s+(\S+)", line)
        if match and match.group(2) in RULES:
            rows[match.group(2)] = [match.group(1), match.group(3)]
    return rows


# -- the module entry point -------------------------------------------------------------------
def test_python_m_lr_widget_demo_writes_json_svg_and_prints_the_table(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "lr_widget", "demo", "--num-steps", "40", "--out", "tmp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == EXIT_OK, completed.stderr
    result = RangeTestResult.load(tmp_path / "tmp" / "range_test.json")
    assert result.settings["num_steps"] == 40
    assert 10 <= result.num_steps <= 40
    assert len(result.losses) == result.num_steps
    assert result.lrs[0] == pytest.approx(1e-7)
    svg = ElementTree.parse(tmp_path / "tmp" / "range_test.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    legend = "".join(svg.itertext())
    answer = result.suggestion
    assert answer.lr is not None
    assert f"suggested {answer.lr:.1e}" in legend  # the answer, labelled on the picture
    assert set(table_rows(completed.stdout)) == set(RULES)
    assert str(Path("tmp") / "range_test.json") in completed.stdout
    assert str(Path("tmp") / "range_test.svg") in completed.stdout
    # Not a terminal: plain progress lines, every tenth of the sweep, on stderr only.
    assert "step 4/40" in completed.stderr
    assert "\r" not in completed.stderr
    assert not re.search(r"^step \d+/40", completed.stdout, re.MULTILINE)


# -- demo -------------------------------------------------------------------------------------
def test_demo_table_matches_the_saved_result_and_marks_the_default_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "demo", "--num-steps", "30", "--quiet", "--out", tmp_path / "out",
        "--json", tmp_path / "a.json", "--svg", tmp_path / "pics" / "a.svg",
        "--csv", tmp_path / "a.csv",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert err == ""  # --quiet: no progress
    result = RangeTestResult.load(tmp_path / "a.json")
    rows = table_rows(out)
    for rule, suggestion in result.suggestions().items():
        expected = "no" if suggestion.lr is None else f"{suggestion.lr:.2e}"
        assert rows[rule] == ["*" if rule == DEFAULT_RULE else "", expected]
    assert (tmp_path / "pics" / "a.svg").is_file()
    assert len((tmp_path / "a.csv").read_text().splitlines()) == result.num_steps + 1
    assert not (tmp_path / "out").exists()  # every file had its own path


def test_demo_val_follows_the_validation_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "demo", *FAST, "--val", "--out", tmp_path)
    assert code == EXIT_OK, err
    result = RangeTestResult.load(tmp_path / "range_test.json")
    assert result.val_losses is not None
    assert len(result.val_losses) == result.num_steps
    assert "blow-up cut) of the validation loss" in out  # the rules read the validation curve


def test_demo_sweeps_on_one_thread_and_restores_the_thread_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = torch.get_num_threads()
    seen: list[int] = []
    original_run = LRFinder.run

    def recording_run(self: LRFinder, *args: Any, **kwargs: Any) -> RangeTestResult:
        seen.append(torch.get_num_threads())
        return original_run(self, *args, **kwargs)

    monkeypatch.setattr(LRFinder, "run", recording_run)
    torch.set_num_threads(3)
    try:
        code, _, err = run_cli(capsys, "demo", *FAST, "--out", tmp_path)
        assert code == EXIT_OK, err
        assert seen == [1]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(previous)


def test_sweep_options_reach_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "demo", "--quiet", "--out", tmp_path, "--start-lr", "1e-5", "--end-lr", "0.1",
        "--num-steps", "12", "--mode", "linear", "--beta", "0.5", "--diverge-factor", "inf",
        "--batches-per-step", "2",
    )  # fmt: skip
    assert code == EXIT_OK, err
    result = RangeTestResult.load(tmp_path / "range_test.json")
    assert result.lrs == pytest.approx(np.linspace(1e-5, 0.1, 12).tolist())
    assert result.beta == 0.5
    assert result.settings["diverge_factor"] == math.inf
    assert result.settings["batches_per_step"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start-lr", "1", "--end-lr", "0.1"], "start_lr must be smaller than end_lr"),
        (["--num-steps", "1"], "num_steps must be an integer >= 2"),
        (["--beta", "1.5"], "beta must be in [0, 1)"),
    ],
)
def test_invalid_sweep_options_are_usage_errors_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, "demo", "--quiet", "--out", tmp_path, *argv)
    assert code == EXIT_USAGE
    assert message in err
    assert err.count("\n") == 1
    assert out == ""
    assert not tmp_path.joinpath("range_test.json").exists()


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "demo", "--num-steps", "many")[0] == EXIT_USAGE
    assert run_cli(capsys, "demo", "--seed", "-1")[0] == EXIT_USAGE
    assert run_cli(capsys)[0] == EXIT_USAGE
    assert run_cli(capsys, "frobnicate")[0] == EXIT_USAGE


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == EXIT_OK
    for command in ("demo", "run", "show", "lab", "version"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), command


def test_an_unwritable_output_folder_is_a_usage_error_before_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, out, err = run_cli(capsys, "demo", "--out", blocker / "out")
    assert code == EXIT_USAGE
    assert f"cannot write {blocker / 'out'}" in err
    assert "step " not in err  # no progress: the sweep did not start
    assert out == ""


# -- run --------------------------------------------------------------------------------------
def test_run_sweeps_the_model_and_loader_a_function_returns(
    setup_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "run", f"{setup_module}:as_tuple", *FAST)
    assert code == EXIT_OK, err
    result = RangeTestResult.load(tmp_path / "lr_widget_out" / "range_test.json")
    assert result.metadata["model"] == "Sequential"
    assert result.metadata["optimizer"] == "AdamW"  # the engine's default
    assert result.settings["num_steps"] == 20
    assert set(table_rows(out)) == set(RULES)
    assert (tmp_path / "lr_widget_out" / "range_test.svg").is_file()


def test_run_uses_the_loss_fn_and_optimizer_of_a_returned_dict(
    setup_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "run", f"{setup_module}:as_dict", *FAST, "--val")
    assert code == EXIT_OK, err
    result = RangeTestResult.load(tmp_path / "lr_widget_out" / "range_test.json")
    assert result.metadata["optimizer"] == "SGD"
    assert result.metadata["loss"] == "counting_loss"
    assert sys.modules[setup_module].CALLS["loss_fn"] >= result.num_steps
    assert result.val_losses is not None


def test_run_accepts_a_path_to_a_python_file(
    setup_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere" / "my_setup_file.py"
    target.parent.mkdir()
    target.write_text(SETUP_SOURCE, encoding="utf-8")
    try:
        code, _, err = run_cli(capsys, "run", f"{target}:as_tuple", *FAST, "--out", tmp_path)
    finally:
        sys.modules.pop("my_setup_file", None)
    assert code == EXIT_OK, err
    assert RangeTestResult.load(tmp_path / "range_test.json").num_steps >= 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nocolon", "expected MODULE:FUNCTION"),
        ("{module}:", "expected MODULE:FUNCTION"),
        ("no_such_module_4f1c:setup", "no module named 'no_such_module_4f1c'"),
        ("missing_file_4f1c.py:setup", "no such file: missing_file_4f1c.py"),
        ("{module}:nowhere", "has no function 'nowhere'"),
        ("{module}:not_callable", "is not callable: it is int 42"),
        ("{module}:raises", "raised RuntimeError: cannot find the data on line two"),
        ("{module}:returns_none", "must return (model, loader[, loss_fn, optimizer])"),
        ("{module}:five_items", "it returned a tuple of 5 items"),
        ("{module}:dict_without_loader", "lacks ['loader']"),
        ("{module}:swapped", "model must be a torch.nn.Module, got list"),
    ],
)
def test_setup_problems_exit_2_with_one_line_naming_the_problem(
    setup_module: str, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    code, out, err = run_cli(capsys, "run", target.format(module=setup_module), *FAST)
    assert code == EXIT_USAGE
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("lr-widget: error: ")
    assert "Traceback" not in err
    assert out == ""


def test_val_without_validation_data_is_a_usage_error(
    setup_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "run", f"{setup_module}:as_tuple", *FAST, "--val")
    assert code == EXIT_USAGE
    assert "--val needs validation data" in err


def test_traceback_flag_shows_the_users_traceback(
    setup_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "run", f"{setup_module}:raises", "--traceback")
    assert code == EXIT_USAGE
    assert "Traceback (most recent call last)" in err
    assert 'raise RuntimeError("cannot find the data' in err
    assert err.rstrip().splitlines()[-1].startswith("lr-widget: error: ")


def test_model_failing_mid_sweep_exits_1_and_leaves_the_weights_restored(
    setup_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "run", f"{setup_module}:fails_mid_sweep", *FAST)
    assert code == EXIT_SWEEP_ERROR
    assert "the sweep failed at step 5: ValueError: shape mismatch in layer 2" in err
    assert err.count("\n") == 1
    assert out == ""
    module = sys.modules[setup_module]
    for name, tensor in module.MODELS[-1].state_dict().items():
        assert torch.equal(tensor, module.INITIAL_STATES[-1][name]), name


def test_interrupt_mid_sweep_exits_130_and_leaves_the_weights_restored(
    setup_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "run", f"{setup_module}:interrupted_mid_sweep", *FAST)
    assert code == EXIT_INTERRUPTED
    assert "interrupted at step 5" in err
    module = sys.modules[setup_module]
    for name, tensor in module.MODELS[-1].state_dict().items():
        assert torch.equal(tensor, module.INITIAL_STATES[-1][name]), name


# -- progress ---------------------------------------------------------------------------------
def event(step: int, num_steps: int, loss: float = 0.5) -> StepEvent:
    return StepEvent(step, num_steps, 1e-3 * (step + 1), loss, loss, None, None, step + 1.0)


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interactive=True, refresh_s=0.0)
    progress(event(0, 3, loss=123456.0))
    progress(event(1, 3))
    assert "\n" not in stream.getvalue()
    progress(event(2, 3))
    progress.finish()
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert [frame.split()[1] for frame in frames] == ["1/3", "2/3", "3/3"]
    assert len(frames[1]) == len(frames[0])  # the shorter line wipes the longer one
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_progress_elsewhere_writes_a_line_every_tenth_and_the_last() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interactive=False)
    for step in range(17):  # a sweep of 20 steps that diverges at step 16
        progress(event(step, 20))
    progress.finish()
    steps = [line.split()[1] for line in stream.getvalue().splitlines()]
    assert steps == ["2/20", "4/20", "6/20", "8/20", "10/20", "12/20", "14/20", "16/20", "17/20"]
    assert "\r" not in stream.getvalue()


def test_progress_line_shows_lr_loss_and_eta() -> None:
    line = io.StringIO()
    Progress(line, interactive=False)(StepEvent(9, 10, 2.5e-4, 0.123, 0.1, 0.2, 0.2, 90.0))
    assert line.getvalue() == "step 10/10  lr 2.50e-04  loss 0.123  val 0.2  ETA 0s\n"
    long = io.StringIO()
    Progress(long, interactive=False)(StepEvent(0, 10, 1e-7, 1.0, 1.0, None, None, 10.0))
    assert long.getvalue().endswith("ETA 1m30s\n")


# -- show -------------------------------------------------------------------------------------
def noisy_result() -> RangeTestResult:
    """A noisy curve whose suggestions change with the smoothing."""
    rng = np.random.default_rng(0)
    log_lrs = np.linspace(-6, 0, 100)
    losses = 2 - np.tanh(log_lrs + 3) + np.exp(3 * (log_lrs + 0.5)).clip(max=50)
    losses += rng.normal(0, 0.25, 100)
    return RangeTestResult(lrs=(10**log_lrs).tolist(), losses=losses.tolist(), beta=0.98)


def test_show_prints_the_table_of_a_saved_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = noisy_result()
    path = result.save(tmp_path / "sweep.json")
    code, out, err = run_cli(capsys, "show", path)
    assert code == EXIT_OK, err
    assert format_suggestions(result) in out
    assert "beta 0.98" in out


def test_show_beta_resmooths_before_suggesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = noisy_result()
    path = result.save(tmp_path / "sweep.json")
    resmoothed = result.with_beta(0.5)
    # beta smooths the drawn EMA curve only: the rules read the lag-free curve of the raw losses.
    assert resmoothed.suggestion == result.suggestion
    code, out, err = run_cli(
        capsys, "show", path, "--beta", "0.5", "--svg", tmp_path / "c.svg",
        "--csv", tmp_path / "c.csv",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert format_suggestions(resmoothed) in out
    rows = list(csv_rows(tmp_path / "c.csv"))
    assert float(rows[1]["smoothed_loss"]) == pytest.approx(resmoothed.smoothed_losses[1])
    ElementTree.parse(tmp_path / "c.svg")
    assert RangeTestResult.load(path).beta == 0.98  # the file itself is not changed


def test_show_train_steps_reads_the_default_for_that_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = noisy_result()
    path = result.save(tmp_path / "sweep.json")
    code, out, err = run_cli(capsys, "show", path, "--train-steps", "20000")
    assert code == EXIT_OK, err
    assert format_suggestions(result.with_train_steps(20_000)) in out
    assert "20,000 training steps" in out
    code, _, err = run_cli(capsys, "show", path, "--train-steps", "0")
    assert code != EXIT_OK
    assert "--train-steps: must be an integer >= 1, got '0'" in err


def test_demo_takes_the_training_length_into_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "demo", "--quiet", "--train-steps", "700", "--out", tmp_path, "--num-steps", "40"
    )
    assert code == EXIT_OK, err
    assert "700 training steps" in out
    saved = RangeTestResult.load(tmp_path / "range_test.json")
    assert saved.train_steps == 700


def test_demo_repeats_runs_seeded_sweeps_and_saves_the_repeated_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "demo", "--num-steps", "30", "--repeats", "3", "--seed", "5", "--out", tmp_path
    )
    assert code == EXIT_OK, err
    saved = load_result(tmp_path / "range_test.json")
    assert isinstance(saved, RepeatedRangeTest)
    assert saved.seeds == [5, 6, 7]
    assert "3 runs from lr 1.00e-07" in out
    assert format_suggestions(saved) in out
    assert "run 1/3  step 3/30" in err  # progress names the run
    assert "run 3/3  step" in err


def test_demo_confirm_probes_around_the_minimum_rule_and_keeps_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "demo", "--num-steps", "40", "--quiet", "--confirm", "--out", tmp_path
    )
    assert code == EXIT_OK, err
    saved = RangeTestResult.load(tmp_path / "range_test.json")
    confirmation = saved.confirmation
    assert confirmation is not None
    assert confirmation.suggested_lr == pytest.approx(saved.suggest(CONFIRM_RULE).lr)
    assert len(confirmation.probes) == 3
    assert f"confirmation: {confirmation.reason}" in out


def test_show_reads_a_repeated_result_and_draws_its_band(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [noisy_result().with_beta(0.9) for _ in range(3)]
    repeated = RepeatedRangeTest(runs, seeds=[0, 1, 2], repeats=3)
    path = repeated.save(tmp_path / "repeats.json")
    code, out, err = run_cli(
        capsys, "show", path, "--picture", tmp_path / "band.png", "--csv", tmp_path / "r.csv"
    )
    assert code == EXIT_OK, err
    assert "3 runs from lr 1.00e-06" in out
    assert "the median of the runs' picks" in out
    assert format_suggestions(repeated) in out
    assert (tmp_path / "band.png").read_bytes().startswith(b"\x89PNG")
    rows = csv_rows(tmp_path / "r.csv")
    assert len(rows) == 100
    assert float(rows[5]["median"]) == pytest.approx(repeated.median[5])


def test_without_matplotlib_the_default_picture_is_skipped_and_an_asked_one_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec then finds nothing
    code, _out, err = run_cli(capsys, "demo", "--num-steps", "20", "--quiet", "--out", tmp_path)
    assert code == EXIT_OK, err
    assert "no picture: drawing the curve needs matplotlib" in err
    assert (tmp_path / "range_test.json").is_file()
    assert not (tmp_path / "range_test.svg").exists()
    code, _, err = run_cli(capsys, "demo", "--quiet", "--picture", tmp_path / "x.svg")
    assert code == EXIT_USAGE
    assert "--picture: drawing the curve needs matplotlib" in err


def csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "no such result file"),
        (lambda path: path.write_text("{not json"), "is not a readable lr_widget result"),
        (lambda path: path.write_text('{"format": "other"}'), "not an lr_widget result"),
        (
            lambda path: path.write_text('{"format": "lr_widget.range_test", "version": 1}'),
            "the result document has no lrs or losses field",
        ),
        (lambda path: path.write_bytes(pickle.dumps(noisy_result())), "is a Python pickle"),
        (lambda path: path.write_text(noisy_result().to_json()[:500]), "(truncated?)"),
        (
            lambda path: path.write_text(noisy_result().to_json().replace("0.98", "NaN", 1)),
            "literal NaN",
        ),
        (
            lambda path: path.write_text(noisy_result().to_json().replace('"lrs": [', '"lrs": "')),
            "not valid JSON",
        ),
    ],
)
def test_show_refuses_missing_and_foreign_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write: Callable[[Path], object] | None,
    message: str,
) -> None:
    path = tmp_path / "result.json"
    if write is not None:
        write(path)
    code, out, err = run_cli(capsys, "show", path)
    assert code == EXIT_USAGE
    assert message in err
    assert err.count("\n") == 1
    assert out == ""


def test_a_closed_stdout_ends_quietly_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = noisy_result().save(tmp_path / "sweep.json")

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    with (tmp_path / "devnull_target").open("w") as target:
        pipe = ClosedPipe()
        monkeypatch.setattr(pipe, "fileno", target.fileno)
        monkeypatch.setattr(sys, "stdout", pipe)
        code = main(["show", str(path)])
    assert code == EXIT_SWEEP_ERROR
    assert "Traceback" not in capsys.readouterr().err


def test_show_rejects_an_invalid_beta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = noisy_result().save(tmp_path / "sweep.json")
    code, _, err = run_cli(capsys, "show", path, "--beta", "1")
    assert code == EXIT_USAGE
    assert "beta must be in [0, 1)" in err


# -- version ----------------------------------------------------------------------------------
def test_version_prints_lr_widget_torch_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "version")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0] == f"lr_widget {lr_widget.__version__}"
    assert lines[1] == f"torch {torch.__version__}"
    assert lines[2].startswith(f"python {sys.version.split()[0]}")
