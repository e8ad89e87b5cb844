"""Where a quality task's training starts, beyond a freshly initialised model.

Two situations a user brings to an LR finder that a fresh model does not show:

* **fine-tuning**: a body pre-trained on a related task, with a fresh head for the new one. The
  body is trained here, locally and deterministically (:data:`PRETRAIN_SEED`, a fixed optimizer
  and length), once per process; each seed then draws only its own head.
* **mid-training**: the model *and its optimizer* part way through training (a checkpoint after
  a fixed warm-up at a common default LR); the range test and the rest of the run both start
  there, with the optimizer's state kept and only its LR changed.

Nothing here is downloaded: the pre-training data are other slices of the benchmark's own data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from benchmarks import task_data as td
from benchmarks.task_data import TaskData

__all__ = [
    "PRETRAIN_SEED",
    "PRETRAIN_TEXT_MODULES",
    "Pretraining",
    "digit_images_subset",
    "digits_subset",
    "fine_tuned",
    "head_name",
    "pretraining_text_data",
    "tabular_halves",
    "train_for",
]

PRETRAIN_SEED = 20261207
"""The seed of every pre-training run (weights and data order), whatever the task's seed."""
PRETRAIN_TEXT_MODULES = ("typing", "dataclasses", "inspect")
"""Standard-library sources a fine-tuned language model is pre-trained on (the fine-tuning text
is :data:`benchmarks.task_data.TEXT_MODULES`, a different code base)."""


# -- data of the pre-training and fine-tuning halves --------------------------------------------
def _rows_of_classes(data: TaskData, classes: tuple[int, ...]) -> TaskData:
    """Only the rows of ``classes``, relabelled ``0 .. len(classes) - 1``."""
    relabel = torch.full((int(data.sizes["classes"]),), -1, dtype=torch.long)
    relabel[list(classes)] = torch.arange(len(classes))

    def keep(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        rows = relabel[y] >= 0
        return x[rows], relabel[y[rows]]

    train_x, train_y = keep(data.train_x, data.train_y)
    val_x, val_y = keep(data.val_x, data.val_y)
    return TaskData(train_x, train_y, val_x, val_y, data.sizes | {"classes": len(classes)})


def digits_subset(classes: tuple[int, ...]) -> TaskData:
    """The flat 64-pixel digits of ``classes`` only (relabelled from 0)."""
    return _rows_of_classes(td.digits_data(), classes)


def digit_images_subset(classes: tuple[int, ...]) -> TaskData:
    """The 1x8x8 digit images of ``classes`` only (relabelled from 0)."""
    return _rows_of_classes(td.digit_images_data(), classes)


def tabular_halves(part: str) -> TaskData:
    """The generated 4-class table, split in two by training row.

    ``"pretrain"``: the first half of the training rows with the classes merged in pairs
    ({0, 1} and {2, 3}), a related but coarser task. ``"finetune"``: the second half with all
    four classes. Both keep the whole validation set (merged likewise for pre-training).
    """
    data = td.tabular_data()
    half = len(data.train_x) // 2
    if part == "finetune":
        x, y = data.train_x[half:], data.train_y[half:]
        return TaskData(x, y, data.val_x, data.val_y, data.sizes)
    if part != "pretrain":
        raise ValueError(f"part must be 'pretrain' or 'finetune', got {part!r}")
    return TaskData(
        data.train_x[:half], data.train_y[:half] // 2, data.val_x, data.val_y // 2,
        data.sizes | {"classes": 2},
    )  # fmt: skip


def pretraining_text_data() -> TaskData:
    """Character windows of :data:`PRETRAIN_TEXT_MODULES` in the alphabet of the fine-tuning
    text (:func:`benchmarks.task_data.text_data`); characters outside it are dropped."""
    alphabet = sorted(set(td.source_text(td.TEXT_MODULES)))
    code_of = {char: code for code, char in enumerate(alphabet)}
    text = td.source_text(PRETRAIN_TEXT_MODULES)
    codes = torch.tensor([code_of[char] for char in text if char in code_of], dtype=torch.long)
    return td.windows_of(codes, len(alphabet))


# -- pre-training --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pretraining:
    """How a body is pre-trained: its data, model builder, optimizer, LR, steps and batch size."""

    name: str
    load_data: Callable[[], TaskData]
    build_model: Callable[[TaskData], nn.Module]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    lr: float
    steps: int
    batch_size: int
    momentum: float = 0.0
    """SGD with this momentum when positive, else Adam."""


def head_name(model: nn.Module) -> str:
    """The qualified name of ``model``'s last ``nn.Linear``: its head.

    >>> head_name(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    '2'
    """
    names: list[str] = [
        name for name, module in model.named_modules() if isinstance(module, nn.Linear)
    ]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head")
    return names[-1]


def train_for(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    steps: int,
) -> None:
    """Train ``model`` for ``steps`` steps on ``batches``, recording nothing: the pre-training of
    a fine-tuned body and the warm-up of a mid-training checkpoint."""
    model.train()
    for _ in range(steps):
        inputs, targets = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def _batches(
    data: TaskData, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        order = torch.randperm(len(data.train_x), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = order[start : start + batch_size]
            yield data.train_x[rows], data.train_y[rows]


@functools.cache
def _pretrained_body(plan: Pretraining) -> dict[str, Tensor]:
    """The pre-trained weights of ``plan``'s model, without its head (computed once a process)."""
    with torch.random.fork_rng():  # the caller's seeded RNG stream is left as it was
        torch.manual_seed(PRETRAIN_SEED)
        data = plan.load_data()
        model = plan.build_model(data)
        parameters = model.parameters()
        optimizer: torch.optim.Optimizer = (
            torch.optim.SGD(parameters, lr=plan.lr, momentum=plan.momentum)
            if plan.momentum > 0
            else torch.optim.Adam(parameters, lr=plan.lr)
        )
        batches = _batches(data, plan.batch_size, torch.Generator().manual_seed(PRETRAIN_SEED))
        train_for(model, optimizer, batches, plan.loss_fn, plan.steps)
        head = head_name(model) + "."
        return {
            name: value.detach().clone()
            for name, value in model.state_dict().items()
            if not name.startswith(head)
        }


def fine_tuned(
    plan: Pretraining, build_model: Callable[[TaskData], nn.Module]
) -> Callable[[TaskData], nn.Module]:
    """A model builder: ``build_model(data)`` (seeded by the caller, so its head is that seed's)
    with every weight but the head's replaced by the body pre-trained by ``plan``."""

    def build(data: TaskData) -> nn.Module:
        model = build_model(data)
        body = _pretrained_body(plan)
        missing, unexpected = model.load_state_dict(body, strict=False)
        head = head_name(model) + "."
        if unexpected or any(not name.startswith(head) for name in missing):
            raise ValueError(f"{plan.name}: the pre-trained body does not fit the model")
        return model

    return build
