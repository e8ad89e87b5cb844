"""Bad input is refused with an error naming the parameter, before any state changes."""

from __future__ import annotations

import math
import pickle
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lr_widget.find import find_lr
from lr_widget.results.jsonfile import DocumentError
from lr_widget.results.loading import load_result
from lr_widget.results.range_test import RangeTestResult
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer

BAD_SETTINGS = [
    (
        {"start_lr": 1.0, "end_lr": 0.1},
        ValueError,
        r"start_lr must be smaller than end_lr.*1\.0.*0\.1",
    ),
    ({"start_lr": 1.0, "end_lr": 1.0}, ValueError, r"start_lr must be smaller than end_lr"),
    ({"start_lr": 0.0}, ValueError, r"start_lr must be a finite number > 0, got 0\.0"),
    ({"start_lr": -1e-3}, ValueError, r"start_lr must be a finite number > 0, got -0\.001"),
    ({"end_lr": math.inf}, ValueError, r"end_lr must be a finite number > 0, got inf"),
    ({"start_lr": "1e-3"}, TypeError, r"start_lr must be a finite number > 0, got '1e-3'"),
    ({"num_steps": 1}, ValueError, r"num_steps must be an integer >= 2, got 1"),
    ({"num_steps": 10.0}, TypeError, r"num_steps must be an integer >= 2, got 10\.0"),
    ({"num_steps": 2.5}, TypeError, r"num_steps must be an integer >= 2, got 2\.5"),
    ({"num_steps": True}, TypeError, r"num_steps must be an integer >= 2, got True"),
    ({"num_steps": "100"}, TypeError, r"num_steps must be an integer >= 2, got '100'"),
    ({"start_lr": math.nan}, ValueError, r"start_lr must be a finite number > 0, got nan"),
    ({"end_lr": math.nan}, ValueError, r"end_lr must be a finite number > 0, got nan"),
    ({"start_lr": math.inf}, ValueError, r"start_lr must be a finite number > 0, got inf"),
    ({"end_lr": -math.inf}, ValueError, r"end_lr must be a finite number > 0, got -inf"),
    ({"start_lr": True}, TypeError, r"start_lr must be a finite number > 0, got True"),
    ({"mode": "cosine"}, ValueError, r"mode must be one of \('exp', 'linear'\), got 'cosine'"),
    ({"beta": 1.0}, ValueError, r"beta must be in \[0, 1\), got 1\.0"),
    ({"beta": -0.1}, ValueError, r"beta must be in \[0, 1\), got -0\.1"),
    ({"diverge_factor": 1.0}, ValueError, r"diverge_factor must be > 1 \(or math\.inf\), got 1\.0"),
    ({"batches_per_step": 0}, ValueError, r"batches_per_step must be an integer >= 1, got 0"),
    ({"accumulation_steps": 0}, ValueError, r"accumulation_steps must be an integer >= 1, got 0"),
    ({"max_grad_norm": 0.0}, ValueError, r"max_grad_norm must be a finite number > 0 or None"),
    (
        {"amp_dtype": torch.float32},
        ValueError,
        r"amp_dtype must be one of torch\.bfloat16, torch\.float16",
    ),
    ({"val_batches": 0}, ValueError, r"val_batches must be an integer >= 1, got 0"),
    ({"warmup": 3}, TypeError, r"unknown argument\(s\) warmup; valid sweep settings are"),
]


@pytest.mark.parametrize(("settings", "error", "message"), BAD_SETTINGS)
def test_bad_setting_names_the_parameter_and_changes_nothing(
    settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    with pytest.raises(error, match=message):
        find_lr(model, make_batches(), None, optimizer, **settings)
    assert_restored(before, model, optimizer)


def test_empty_loader_is_refused() -> None:
    model = make_classifier()
    before = capture(model)
    with pytest.raises(ValueError, match=r"train_data is empty"):
        find_lr(model, [])
    with pytest.raises(ValueError, match=r"train_data is empty: it yielded no batch"):
        find_lr(model, iter([]))
    empty_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 4)))
    with pytest.raises(ValueError, match=r"train_data is empty"):
        find_lr(model, empty_loader)
    assert_restored(before, model)


def test_empty_validation_data_is_refused() -> None:
    with pytest.raises(ValueError, match=r"val_data is empty"):
        find_lr(make_classifier(), make_batches(), val_data=[])


def test_train_data_that_is_not_iterable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"train_data must be a DataLoader or another iterable"):
        find_lr(make_classifier(), 42)  # type: ignore[call-overload]


def test_unreadable_batch_format_changes_nothing() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    with pytest.raises(TypeError, match=r"cannot read a batch of type int.*step_fn"):
        find_lr(model, [1, 2, 3], None, optimizer)
    assert_restored(before, model, optimizer)


def test_model_without_trainable_parameters_is_refused() -> None:
    model = make_classifier()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ValueError, match=r"model has no trainable parameters"):
        find_lr(model, make_batches())


def test_non_module_model_is_refused() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got function"):
        find_lr(lambda x: x, make_batches())  # type: ignore[call-overload]


def test_optimizer_without_the_models_parameters_is_refused() -> None:
    model, other = make_classifier(), make_classifier(seed=1)
    optimizer = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer holds none of the model's parameters"):
        find_lr(model, make_batches(), None, optimizer)


def test_non_scalar_loss_is_refused_and_changes_nothing() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, reduction="none")

    with pytest.raises(ValueError, match=r"loss_fn must return a scalar .*got shape \(32,\)"):
        find_lr(model, make_batches(), loss_fn, optimizer)
    assert_restored(before, model, optimizer)


def test_loss_that_is_not_a_tensor_is_refused() -> None:
    with pytest.raises(TypeError, match=r"step_fn must return a scalar tensor, got a float"):
        find_lr(make_classifier(), make_batches(), step_fn=lambda model, batch: 1.0)


def test_loss_detached_from_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"does not require grad"):
        find_lr(make_classifier(), make_batches(), step_fn=lambda model, batch: torch.tensor(1.0))


def test_loss_that_cannot_be_inferred_names_loss_fn() -> None:
    data = [(x, x[:, 0]) for x, _ in make_batches()]  # float targets of the wrong shape
    with pytest.raises(ValueError, match=r"loss_fn is None and cannot be inferred"):
        find_lr(make_classifier(), data)


def test_non_callable_loss_fn_is_refused() -> None:
    with pytest.raises(TypeError, match=r"loss_fn must be callable or None, got 3"):
        find_lr(make_classifier(), make_batches(), 3)  # type: ignore[call-overload]


def test_bad_grad_scaler_is_refused() -> None:
    with pytest.raises(TypeError, match=r"grad_scaler must be a torch\.amp\.GradScaler"):
        find_lr(make_classifier(), make_batches(), grad_scaler="yes")  # type: ignore[arg-type]


def test_huge_num_steps_allocates_nothing_up_front() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    tracemalloc.start()
    try:
        result = find_lr(
            model, make_batches(), None, optimizer, num_steps=10**12,
            callback=lambda event: event.step == 3,
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.num_steps == 4
    assert result.settings["num_steps"] == 10**12
    assert peak < 2**22  # a schedule of 10**12 floats would be 8 TB; the sweep used < 4 MiB
    assert_restored(before, model, optimizer)


@pytest.mark.parametrize("swapped", ["loader", "list"])
def test_swapped_model_and_loader_are_named_and_change_nothing(swapped: str) -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    data: Any = make_batches()
    if swapped == "loader":
        dataset = torch.utils.data.TensorDataset(*(torch.cat(t) for t in zip(*data, strict=True)))
        data = torch.utils.data.DataLoader(dataset, batch_size=32)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module.*did you swap"):
        find_lr(data, model, None, optimizer)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"train_data .* got the module Sequential.*did you swap"):
        find_lr(model, model, None, optimizer)  # type: ignore[call-overload]
    assert_restored(before, model, optimizer)


@pytest.mark.parametrize(
    ("loss_fn", "error", "message"),
    [
        (lambda out, y: F.cross_entropy(out, y).item(), TypeError, r"loss_fn must return a scalar"
         r" tensor, got a float"),
        (lambda out, y: F.cross_entropy(out, y).detach(), ValueError, r"loss_fn returned a loss "
         r"that does not require grad"),
        (lambda out, y: F.cross_entropy(out.detach(), y), ValueError, r"does not require grad"),
    ],
    ids=["python float", "detached", "from detached output"],
)  # fmt: skip
def test_loss_that_cannot_train_is_refused_and_changes_nothing(
    loss_fn: Any, error: type[Exception], message: str
) -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    with pytest.raises(error, match=message):
        find_lr(model, make_batches(), loss_fn, optimizer)
    assert_restored(before, model, optimizer)


def test_loss_that_cannot_train_from_a_background_thread_changes_nothing() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            find_lr(model, make_batches(), lambda out, y: 0.5, optimizer)  # type: ignore[arg-type,return-value]
        except TypeError as error:
            errors.append(error)

    thread = threading.Thread(target=sweep)
    thread.start()
    thread.join(timeout=60)
    assert "loss_fn must return a scalar tensor, got a float" in str(errors[0])
    assert_restored(before, model, optimizer)


def _saved(tmp_path: Path) -> bytes:
    result = find_lr(make_classifier(), make_batches(), num_steps=5)
    return result.save(tmp_path / "good.json").read_bytes()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda good: good[: len(good) // 2], r"bad\.json is not valid JSON \(truncated\?\)"),
        (lambda good: b"", r"bad\.json is not valid JSON \(truncated\?\)"),
        (lambda good: good.replace(b'"losses": [', b'"losses": [NaN, ', 1), r"literal NaN"),
        (lambda good: good.replace(b'"losses": [', b'"losses": [Infinity, ', 1),
         r"literal Infinity"),
        (lambda good: good.replace(b'"losses": [', b'"losses": ["1.0", ', 1),
         r"bad\.json: losses must hold numbers, got '1\.0'"),
        (lambda good: good.replace(b'"lrs": [', b'"lrs": {"a": [', 1).replace(
            b'],\n "losses"', b']},\n "losses"', 1), r"bad\.json: lrs must be a list"),
        (lambda good: good.replace(b'"beta": 0.98', b'"beta": true', 1), r"bad\.json: beta must"),
        (lambda good: b'"just a string"', r"not an lr_widget .*got a str"),
        (lambda good: pickle.dumps({"lrs": [1.0]}, protocol=0), r"is a Python pickle, not JSON"),
        (lambda good: pickle.dumps({"lrs": [1.0]}, protocol=1), r"is a Python pickle, not JSON"),
        (lambda good: pickle.dumps({"lrs": [1.0]}), r"is a Python pickle, not JSON"),
    ],
    ids=["truncated", "empty", "NaN literal", "Infinity literal", "string loss", "lrs a dict",
         "bool beta", "a string", "pickle 0", "pickle 1", "pickle"],
)  # fmt: skip
def test_damaged_result_file_names_the_problem_and_is_left_alone(
    tmp_path: Path, damage: Any, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(damage(_saved(tmp_path)))
    content = bad.read_bytes()
    for load in (RangeTestResult.load, load_result):
        with pytest.raises(DocumentError, match=message):
            load(bad)
    assert bad.read_bytes() == content
