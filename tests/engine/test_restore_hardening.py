"""Restore that cannot half-happen (issue 27): a second sweep of a busy model is refused, every
tensor the optimizer holds comes back as the same object, a restore that fails in one part still
does every other, arguments fail before anything trains, and bad result files fail cleanly."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lr_widget.cli.main import main as cli_main
from lr_widget.engine.claims import SweepInProgressError
from lr_widget.engine.state import RestoreError, TrainingState
from lr_widget.engine.sweep import LRFinder
from lr_widget.find import find_lr
from lr_widget.results.jsonfile import MAX_DOCUMENT_BYTES, DocumentError
from lr_widget.results.loading import load_result
from lr_widget.results.range_test import RangeTestResult
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer


# -- 1. one sweep at a time per model ------------------------------------------------------------
def test_a_second_sweep_of_a_model_being_swept_is_refused_and_names_the_first() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    reached, release = threading.Event(), threading.Event()

    def hold(event: Any) -> None:
        if event.step == 2:
            reached.set()
            release.wait(timeout=30)

    first: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first.setdefault(
            "result", find_lr(model, make_batches(), None, optimizer, num_steps=20, callback=hold)
        ),
        name="first-sweep",
    )
    thread.start()
    assert reached.wait(timeout=30)
    try:
        with pytest.raises(SweepInProgressError, match="this model is being trained by a sweep"):
            find_lr(model, make_batches(), num_steps=5)
        with pytest.raises(SweepInProgressError, match="in thread 'first-sweep'"):
            LRFinder(model, make_batches(), optimizer=optimizer).run()
    finally:
        release.set()
        thread.join(timeout=30)
    assert first["result"].num_steps == 20
    assert_restored(before, model, optimizer)
    find_lr(model, make_batches(), None, optimizer, num_steps=5)  # free again once it ended


# -- 2. tensors outside the model ----------------------------------------------------------------
def test_tensors_the_optimizer_holds_but_the_model_does_not_are_restored() -> None:
    model = make_classifier()
    temperature = torch.nn.Parameter(torch.tensor(1.5))
    optimizer = torch.optim.SGD([*model.parameters(), temperature], lr=0.1, momentum=0.9)
    loss = temperature * 0 + 1.0
    loss.backward()
    value, grad = temperature.detach().clone(), temperature.grad.clone()  # type: ignore[union-attr]

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output / temperature, target)

    find_lr(model, make_batches(), loss_fn, optimizer, end_lr=1.0, num_steps=15)
    assert torch.equal(temperature.detach(), value)
    assert temperature.grad is not None
    assert torch.equal(temperature.grad, grad)
    assert temperature not in optimizer.state  # it had no momentum buffer before the sweep


# -- 3. buffers forward replaces, and a restore that fails in one part ---------------------------
class GrowingCache(torch.nn.Module):
    """A rotary-style cache that forward regrows, and a None buffer forward fills."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.register_buffer("cache", torch.arange(4.0))
        self.register_buffer("filled", None)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.cache = torch.arange(4.0 + self.calls)  # regrown: another object, another shape
        self.filled = torch.ones(2)
        self.register_buffer(f"added_{self.calls % 2}", torch.zeros(1))
        return self.linear(x)


def test_buffers_forward_regrows_fills_or_adds_come_back_as_they_were() -> None:
    model = GrowingCache()
    cache = model.cache
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warm_optimizer(model, optimizer)
    model.calls = 0
    model.cache, model.filled = cache, None  # as before the warm-up step
    for name in ("added_0", "added_1"):
        model._buffers.pop(name, None)
    before = capture(model, optimizer)
    find_lr(model, make_batches(), None, optimizer, num_steps=10)
    assert model.cache is cache
    assert torch.equal(model.cache, torch.arange(4.0))
    assert model.filled is None
    assert set(model._buffers) == {"cache", "filled"}
    assert_restored(before, model, optimizer)


class FailingScheduler:
    """An LR scheduler whose state cannot be loaded back: one part of the restore fails."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def state_dict(self) -> dict[str, Any]:
        return {"step": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise self.error


def test_a_part_that_fails_to_restore_is_reported_after_every_other_part_is_restored() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    state = TrainingState.capture(model, optimizer, scheduler=FailingScheduler(ValueError("x")))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    for group in optimizer.param_groups:
        group["lr"] = 10.0
    torch.manual_seed(123)
    with pytest.raises(RestoreError, match="LR scheduler: ValueError: x") as raised:
        state.restore()
    assert raised.value.failures == [("LR scheduler", "ValueError: x")]
    assert_restored(before, model, optimizer)  # parameters, optimizer (its lr), RNG: all back


def test_a_keyboard_interrupt_during_restore_does_not_cut_it_short() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    state = TrainingState.capture(model, optimizer, scheduler=FailingScheduler(KeyboardInterrupt()))
    with torch.no_grad():
        model[0].weight.add_(1.0)  # type: ignore[index]
    torch.manual_seed(7)  # the RNG streams come after the scheduler
    with pytest.raises(KeyboardInterrupt):
        state.restore()
    assert_restored(before, model, optimizer)


# -- 4. the optimizer's objects, dtypes and identities -------------------------------------------
class MasterCopySGD(torch.optim.Optimizer):
    """Plain SGD on bf16 weights through an fp32 master copy held in the optimizer's state."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "master" not in state:
                    state["master"] = param.detach().float()
                state["master"].add_(param.grad.float(), alpha=-group["lr"])
                param.copy_(state["master"])


def test_optimizer_state_comes_back_as_the_same_objects_with_their_dtypes() -> None:
    model = make_classifier().to(torch.bfloat16)
    optimizer = MasterCopySGD(model.parameters(), lr=0.01)
    inputs = make_batches()[0][0].to(torch.bfloat16)
    model(inputs).float().sum().backward()
    optimizer.step()
    masters = {id(p): optimizer.state[p]["master"] for p in model.parameters()}
    groups = list(optimizer.param_groups)
    saved = {key: tensor.clone() for key, tensor in masters.items()}

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return F.cross_entropy(model(batch[0].to(torch.bfloat16)).float(), batch[1])

    find_lr(model, make_batches(), optimizer=optimizer, step_fn=step_fn, num_steps=8)
    assert optimizer.param_groups == groups
    assert all(a is b for a, b in zip(optimizer.param_groups, groups, strict=True))
    for param in model.parameters():
        master = optimizer.state[param]["master"]
        assert master is masters[id(param)]
        assert master.dtype == torch.float32
        assert torch.equal(master, saved[id(param)])


def test_a_tensor_lr_the_user_holds_is_restored_in_place() -> None:
    model = make_classifier()
    lr = torch.tensor(1e-3)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    find_lr(model, make_batches(), None, optimizer, num_steps=8)
    assert optimizer.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(1e-3)


def test_a_sweep_under_inference_mode_leaves_no_inference_tensors() -> None:
    model = make_classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"inference_mode\(\) is on"):
        find_lr(model, make_batches(), None, optimizer, num_steps=5)
    assert_restored(before, model, optimizer)
    snapshot = TrainingState.capture(model, optimizer)
    with torch.inference_mode():  # a restore from inside it puts back the same, normal tensors
        optimizer.state.clear()
        snapshot.restore()
    assert_restored(before, model, optimizer)
    tensors = [*model.parameters(), *(v for s in optimizer.state.values() for v in s.values())]
    assert not any(t.is_inference() for t in tensors if isinstance(t, torch.Tensor))
    inputs, targets = make_batches()[0]
    F.cross_entropy(model(inputs), targets).backward()
    optimizer.step()  # the user's next step works


# -- 5. arguments checked before anything trains --------------------------------------------------
class CountingLoss:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.cross_entropy(output, target)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"callback": 5}, TypeError, "callback must be a function"),
        ({"stop_event": True}, TypeError, "stop_event must be a threading.Event"),
        ({"save_to": 3.5}, TypeError, "save_to must be a path"),
        ({"save_to": "/no/such/folder/sweep.json"}, ValueError, "folder '/no/such/folder' does"),
        ({"save_to": "."}, ValueError, "save_to must be a file path, got the folder"),
    ],
)
def test_bad_arguments_fail_before_any_step(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    model, loss = make_classifier(), CountingLoss()
    before = capture(model)
    with pytest.raises(error, match=message):
        find_lr(model, make_batches(), loss, num_steps=10, **options)
    assert loss.calls == 0
    assert_restored(before, model)


def test_confirm_with_a_closure_optimizer_probes_through_the_closure_and_restores() -> None:
    """The probes take the sweep's own step: LBFGS is stepped through a closure, as in the sweep."""
    model = make_classifier()
    # A short history: curvature pairs from the sweep's tiny first LRs would shrink every later
    # direction, and the loss would not move before the sweep ends (LBFGS's own scaling).
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=2, history_size=1)
    before = capture(model, optimizer)
    result = find_lr(
        model, make_batches(), None, optimizer, num_steps=30, start_lr=1e-3, end_lr=100.0,
        confirm={"steps": 4, "factors": [0.5, 1.0]},
    )  # fmt: skip
    assert result.confirmation is not None
    assert [len(probe.losses) for probe in result.confirmation.probes] == [4, 4]
    assert all(math.isfinite(loss) for probe in result.confirmation.probes for loss in probe.losses)
    assert_restored(before, model, optimizer)


def test_a_result_that_cannot_be_saved_is_still_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, path: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RangeTestResult, "save", refuse)
    with pytest.warns(RuntimeWarning, match="could not be saved to .*sweep.json.*No space left"):
        result = find_lr(
            make_classifier(), make_batches(), num_steps=10, save_to=tmp_path / "sweep.json"
        )
    assert result.num_steps == 10


# -- 6. a callback's answer ----------------------------------------------------------------------
def test_a_callback_returning_a_tensor_of_several_values_fails_and_restores() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    finder = LRFinder(model, make_batches(), optimizer=optimizer, num_steps=20)
    with pytest.raises(TypeError, match=r"callback must return True .* a tensor of 3 values"):
        finder.run(callback=lambda event: torch.ones(3))
    assert not finder.running
    assert_restored(before, model, optimizer)
    stopped = finder.run(callback=lambda event: torch.tensor(event.step >= 4))
    assert stopped.num_steps == 5


# -- 7. result files -----------------------------------------------------------------------------
def _saved(tmp_path: Path, **changes: Any) -> Path:
    document = json.loads(RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0]).to_json())
    document.update(changes)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lrs": [1e-4, -1e-3, 1e-2]}, "lrs must be finite numbers > 0, got -0.001"),
        ({"lrs": [1e-4, 1e-2, 1e-3]}, r"lrs must increase strictly.*lrs\[2\] = 0.001"),
        ({"lrs": [1e-4, 1e-3, 1e-3]}, "lrs must increase strictly"),
        ({"lrs": [1e-4, "NaN", 1e-2]}, "lrs must be finite numbers > 0, got nan"),
        ({"lrs": [1e-4, 1e-3, "Infinity"]}, "lrs must be finite numbers > 0, got inf"),
        ({"lrs": [10**400, 1.0, 2.0]}, "lrs holds a number too large for a float"),
        ({"beta": 10**400}, "sweep.json"),
        ({"beta": "high"}, "beta must be a number"),
        ({"settings": [1, 2]}, "settings must be a JSON object"),
        ({"version": -1}, "unsupported range-test result version -1"),
        ({"metadata": {"confirmation": {"probes": 3}}}, "the saved confirmation is unusable"),
        ({"confirmation": {"probes": 3}}, "the saved confirmation is unusable"),
        ({"settings": {"num_steps": 1}}, "settings are not valid: num_steps must be"),
        ({"settings": {"beta": "high"}}, "settings are not valid: beta must be"),
    ],
)
def test_a_bad_field_is_refused_naming_the_file(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DocumentError, match=message):
        load_result(_saved(tmp_path, **changes))


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    text = path.read_text()
    path.write_text(text[:-1] + ', "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DocumentError, match=r"sweep\.json.*nested"):
        load_result(path)
    deep: Any = 1
    for _ in range(65):
        deep = [deep]
    path.write_text(json.dumps(json.loads(text) | {"metadata": {"a": deep}}))
    with pytest.raises(DocumentError, match="nested more than 64 levels deep"):
        load_result(path)


def test_only_bounded_regular_files_are_read(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    started = time.perf_counter()
    with pytest.raises(DocumentError, match=r"zero\.json is not a regular file \(a device\)"):
        load_result(link)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(DocumentError, match=r"pipe\.json is not a regular file \(a FIFO\)"):
        load_result(fifo)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(DocumentError, match=r"huge\.json is 67,108,865 bytes"):
        load_result(huge)
    assert time.perf_counter() - started < 5


def test_a_utf8_bom_is_read(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_result(path).lrs == [1e-4, 1e-3, 1e-2]


def test_show_answers_a_bad_file_with_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for changes in ({"lrs": [1e-4, 1e-2, 1e-3]}, {"lrs": [10**400, 1.0, 2.0]}, {"version": -3}):
        path = _saved(tmp_path, **changes)
        code = cli_main(["show", str(path)])
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err


# -- 8. smaller ----------------------------------------------------------------------------------
def test_a_model_without_parameters_is_told_so() -> None:
    with pytest.raises(ValueError, match="model has no parameters at all"):
        find_lr(torch.nn.ReLU(), make_batches())


class UnsizedLoader:
    def __init__(self) -> None:
        self.batches = make_batches()

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        raise NotImplementedError


def test_a_loader_whose_len_raises_not_implemented_is_unsized() -> None:
    result = find_lr(make_classifier(), UnsizedLoader(), num_steps=10)
    assert result.num_steps == 10


def test_run_reports_a_setup_that_calls_sys_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = tmp_path / "exiting.py"
    setup.write_text("import sys\n\ndef setup():\n    sys.exit(0)\n")
    code = cli_main(["run", f"{setup}:setup", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "called sys.exit(0)" in capsys.readouterr().err


def test_closing_a_widget_inside_a_hung_batch_returns_and_says_it_will_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lr_widget.widget import widget as widget_module
    from tests.widget.scripted import ScriptedStep, Setup

    monkeypatch.setattr(widget_module, "CLOSE_WAIT_S", 0.3)
    setup = Setup()
    step = ScriptedStep(hold_at=2)
    w = setup.widget(step)
    before = capture(setup.model, setup.optimizer)
    w.run()
    step.wait_until_held()
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w.close()
    assert time.perf_counter() - started < 3
    assert any("as soon as that batch returns" in str(item.message) for item in caught)
    step.release()
    assert w.session.join(timeout=30)
    assert_restored(before, setup.model, setup.optimizer)


def test_a_second_widget_on_a_model_being_swept_shows_why_it_cannot_sweep() -> None:
    from lr_widget.widget.controls import STATUS_CLASS
    from tests.widget.scripted import ScriptedStep, Setup

    setup = Setup()
    before = capture(setup.model, setup.optimizer)
    holding = ScriptedStep(hold_at=2)
    first = setup.widget(holding)
    try:
        first.run()
        holding.wait_until_held()
        second = setup.widget(ScriptedStep())  # the cell re-run: same model, same optimizer
        second.run()
        with pytest.raises(SweepInProgressError, match="being trained by a sweep"):
            second.wait()
        assert isinstance(second.error, SweepInProgressError)
        assert "is being trained by a sweep" in second.controls.status.value
        assert STATUS_CLASS in second.controls.status._dom_classes
    finally:
        holding.release()
        first.wait()
        setup.close()
    assert_restored(before, setup.model, setup.optimizer)


def test_the_readme_states_the_limits_the_code_enforces() -> None:
    from lr_widget.results.jsonfile import MAX_NESTING
    from lr_widget.widget.widget import CLOSE_WAIT_S

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme.split())
    assert f"`w.close()` waits at most {CLOSE_WAIT_S:g} s" in text
    assert f"regular files of at most {MAX_DOCUMENT_BYTES // 2**20} MiB" in text
    assert f"nested at most {MAX_NESTING} levels" in text


class Rewiring(torch.nn.Module):
    """forward swaps a submodule, adds one, freezes a weight and edits the optimizer defaults."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(4, 3)
        self.head = torch.nn.Identity()
        self.optimizer: torch.optim.Optimizer | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(x))
        self.head = torch.nn.Identity()  # another object
        self.extra = torch.nn.Linear(1, 1)  # a submodule that was not there
        self.body.bias.requires_grad_(False)
        if self.optimizer is not None:
            self.optimizer.defaults["lr"] = 123.0
        return out


def test_submodules_flags_and_defaults_changed_by_forward_come_back() -> None:
    model = Rewiring()
    head = model.head
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.optimizer = optimizer
    defaults = dict(optimizer.defaults)
    before = capture(model, optimizer)
    find_lr(model, make_batches(), None, optimizer, num_steps=6)
    assert model.head is head
    assert "extra" not in model._modules
    assert model.body.bias.requires_grad
    assert optimizer.defaults == defaults
    assert_restored(before, model, optimizer)


def test_lbfgs_history_lists_are_restored_as_copies_on_the_parameters_device() -> None:
    model = make_classifier()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.1, history_size=3)
    inputs, targets = make_batches()[0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
    before = capture(model, optimizer)
    history = optimizer.state[optimizer.param_groups[0]["params"][0]]["old_dirs"]
    assert len(history) > 0
    find_lr(model, make_batches(), None, optimizer, num_steps=6)
    assert_restored(before, model, optimizer)
    optimizer.step(closure)  # and it goes on training from there
