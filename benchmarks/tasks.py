"""Small but real training tasks that run on a CPU, for the suggestion-quality benchmark.

Each :class:`Task` fixes its data (seeded, generated or shipped by a package: no downloads, see
:mod:`benchmarks.task_data`), a model (:mod:`benchmarks.task_models`), an optimizer and a batch
size. :func:`train_at_lr` trains a fresh model at one LR, constant or as the peak of a one-cycle
schedule, for the task's budget and returns the validation loss and the first training losses;
the best LR of a task is the one with the lowest mean validation loss over seeds.

The tabular and image tasks raise ``ModuleNotFoundError`` without scikit-learn, the Hugging Face
task without transformers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from benchmarks import task_data as td
from benchmarks import task_models as tm
from benchmarks import task_starts as ts
from benchmarks.task_data import TEXT_SEQ_LEN, TaskData

__all__ = [
    "SCHEDULES",
    "TASKS",
    "TEXT_SEQ_LEN",
    "Task",
    "TaskData",
    "TensorPairs",
    "TrainOutcome",
    "batch_loader",
    "get_task",
    "initial_val_loss",
    "log_grid",
    "train_at_lr",
    "val_loss",
]

SCHEDULES = ("constant", "one-cycle")
"""How :func:`train_at_lr` uses its LR: constant, or as the peak of a one-cycle schedule."""
RECORDED_TRAIN_LOSSES = 40
"""Training losses kept from the start of each run: the probes a confirmation step would run."""


class TensorPairs(Dataset[tuple[Tensor, Tensor]]):
    """A dataset of ``(x, y)`` rows indexed by a whole list of row numbers at once.

    With ``DataLoader(..., batch_size=None, sampler=BatchSampler(...))`` each batch is one tensor
    indexing operation rather than ``batch_size`` item lookups and a collate: the loader costs
    microseconds, so a speed benchmark measures the finders, not the data pipeline.
    """

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        if len(inputs) != len(targets):
            raise ValueError(
                f"inputs and targets differ in length: {len(inputs)} != {len(targets)}"
            )
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, rows: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(rows)  # one conversion, not one per indexing
        return self.inputs[index], self.targets[index]


def batch_loader(
    inputs: Tensor, targets: Tensor, batch_size: int, seed: int, shuffle: bool = True
) -> DataLoader[tuple[Tensor, Tensor]]:
    """A torch ``DataLoader`` of shuffled ``(x, y)`` batches (last partial batch dropped).

    A real ``DataLoader`` because every anchor insists on one; shuffling is seeded, so two
    loaders built with the same seed yield the same batches in the same order.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = range(len(inputs))
    sampler = RandomSampler(rows, generator=generator) if shuffle else rows
    batches = BatchSampler(sampler, batch_size, drop_last=len(inputs) >= batch_size)
    return DataLoader(TensorPairs(inputs, targets), batch_size=None, sampler=batches)


@dataclass(frozen=True)
class Task:
    """One training task: data, model family, optimizer, batch size and training budget.

    ``make_optimizer(parameters, lr)`` builds the optimizer at a constant LR; ``loss_fn`` maps
    ``(model output, target)`` to a scalar; ``train_steps`` is the budget of :func:`train_at_lr`.
    """

    name: str
    family: str
    optimizer_name: str
    batch_size: int
    train_steps: int
    load_data: Callable[[], TaskData]
    build_model: Callable[[TaskData], nn.Module]
    make_optimizer: Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    description: str
    one_cycle: bool = False
    """Whether the task also gets one-cycle ground truth."""
    start: str = "fresh"
    """Where training starts: ``"fresh"`` (a new model), ``"fine-tune"`` (a pre-trained body with
    a fresh head, built by ``build_model``) or ``"mid-training"`` (a checkpoint after
    ``warm_up_steps`` at ``warm_up_lr``, optimizer state included)."""
    warm_up_steps: int = 0
    warm_up_lr: float = 0.0

    def train_loader(self, data: TaskData, seed: int) -> DataLoader[tuple[Tensor, Tensor]]:
        """The shuffled training loader for ``seed``."""
        return batch_loader(data.train_x, data.train_y, self.batch_size, seed)

    def val_loader(self, data: TaskData) -> DataLoader[tuple[Tensor, Tensor]]:
        """The validation set in fixed order, in batches of the task's batch size."""
        return batch_loader(data.val_x, data.val_y, self.batch_size, 0, shuffle=False)

    def fresh_model(self, data: TaskData, seed: int) -> nn.Module:
        """A newly initialised model; the same ``seed`` gives the same weights."""
        torch.manual_seed(seed)
        return self.build_model(data)

    def starting_point(
        self, data: TaskData, seed: int, lr: float
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The model and optimizer (at ``lr``) a run of ``seed`` starts from.

        A fresh model and a new optimizer, except for a mid-training task: the model and
        optimizer state of the warm-up checkpoint (:func:`warm_up_checkpoint`), with only the
        optimizer's LR set to ``lr``. Every call builds new objects: runs never share state.
        """
        model = self.fresh_model(data, seed)
        optimizer = self.make_optimizer(model.parameters(), lr)
        if self.start == "mid-training":
            model_state, optimizer_state = warm_up_checkpoint(self, data, seed)
            model.load_state_dict(model_state)
            optimizer.load_state_dict(optimizer_state)
            for group in optimizer.param_groups:
                group["lr"] = lr
        return model, optimizer


# -- optimizers ---------------------------------------------------------------------------------
def adam(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with torch's defaults."""
    return torch.optim.Adam(parameters, lr=lr)


def adamw(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """AdamW, weight decay 0.01."""
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)


def sgd_momentum(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9."""
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9)


def sgd(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Plain SGD, no momentum."""
    return torch.optim.SGD(parameters, lr=lr)


_OPTIMIZERS = {
    "Adam": adam, "AdamW (wd 0.01)": adamw, "SGD momentum 0.9": sgd_momentum, "SGD": sgd,
}  # fmt: skip


def _task(
    name: str, family: str, optimizer: str, batch: int, steps: int,
    load: Callable[[], TaskData], build: Callable[[TaskData], nn.Module],
    loss: Callable[[Tensor, Tensor], Tensor], about: str, one_cycle: bool = False,
    start: str = "fresh", warm_up: tuple[int, float] = (0, 0.0),
) -> Task:  # fmt: skip
    description = f"{about}, {optimizer}, batch {batch}, {steps} steps"
    if warm_up[0]:
        description += f", from a checkpoint after {warm_up[0]} steps at LR {warm_up[1]:g}"
    return Task(
        name, family, optimizer, batch, steps, load, build, _OPTIMIZERS[optimizer], loss,
        description, one_cycle, start, *warm_up,
    )  # fmt: skip


def _vocab(model: Callable[[int], nn.Module]) -> Callable[[TaskData], nn.Module]:
    return lambda data: model(data.sizes["vocab"])


_CE, _MSE, _TOKENS = F.cross_entropy, F.mse_loss, tm.token_cross_entropy
_LOW_DIGITS, _HIGH_DIGITS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
_DIGITS_BODY = ts.Pretraining(
    "digits 0-4 MLP", lambda: ts.digits_subset(_LOW_DIGITS), tm.mlp, _CE, 1e-3, 400, 32
)
_DIGIT_IMAGES_BODY = ts.Pretraining(
    "digits 0-4 CNN", lambda: ts.digit_images_subset(_LOW_DIGITS), tm.cnn, _CE, 0.03, 300, 64,
    momentum=0.9,
)  # fmt: skip
_TABULAR_BODY = ts.Pretraining(
    "table, classes merged in pairs", lambda: ts.tabular_halves("pretrain"),
    lambda data: tm.mlp(data, batchnorm=True), _CE, 1e-3, 400, 64,
)  # fmt: skip
_TEXT_BODY = ts.Pretraining(
    "LSTM on other stdlib source", ts.pretraining_text_data, _vocab(tm.CharLSTM), _TOKENS,
    3e-3, 600, 32,
)  # fmt: skip


# -- the suite ----------------------------------------------------------------------------------
TASKS: tuple[Task, ...] = (
    _task("digits-mlp", "MLP", "Adam", 32, 160, td.digits_data, tm.mlp, _CE,
          "sklearn digits, MLP 64-128-128-10", one_cycle=True),
    _task("digits-mlp-b128", "MLP", "Adam", 128, 100, td.digits_data, tm.mlp, _CE,
          "sklearn digits, MLP 64-128-128-10"),
    _task("digits-mlp-sgd", "MLP", "SGD", 32, 160, td.digits_data, tm.mlp, _CE,
          "sklearn digits, MLP 64-128-128-10"),
    _task("digits-logreg", "softmax regression (convex)", "Adam", 32, 120, td.digits_data,
          tm.linear_model, _CE, "sklearn digits, softmax regression"),
    _task("digits-cnn-bn", "CNN + BatchNorm", "SGD momentum 0.9", 64, 120, td.digit_images_data,
          tm.cnn, _CE, "sklearn digits as 8x8 images, 2 conv+BN blocks", one_cycle=True),
    _task("digits-cnn", "CNN without BatchNorm", "Adam", 64, 120, td.digit_images_data,
          lambda data: tm.cnn(data, batchnorm=False), _CE,
          "sklearn digits as 8x8 images, 2 conv blocks, no BatchNorm"),
    _task("digits-resnet", "small ResNet", "SGD momentum 0.9", 32, 100, td.digit_images_data,
          lambda data: tm.TinyResNet(data.sizes["classes"]), _CE,
          "sklearn digits as 8x8 images, ResNet with 2 residual blocks of 16 channels",
          one_cycle=True),
    _task("cancer-logreg", "logistic regression (convex)", "SGD momentum 0.9", 16, 120,
          td.cancer_data, tm.linear_model, _CE, "sklearn breast cancer, logistic regression",
          one_cycle=True),
    _task("cancer-mlp-sgd-b64", "MLP", "SGD", 64, 120, td.cancer_data, tm.mlp, _CE,
          "sklearn breast cancer, MLP 30-128-128-2"),
    _task("wine-mlp", "MLP (tabular)", "AdamW (wd 0.01)", 16, 100, td.wine_data, tm.mlp, _CE,
          "sklearn wine, MLP 13-128-128-3"),
    _task("tabular-mlp-bn", "MLP + BatchNorm (tabular)", "AdamW (wd 0.01)", 64, 120,
          td.tabular_data, lambda data: tm.mlp(data, batchnorm=True), _CE,
          "generated 24-feature 4-class table, MLP with BatchNorm", one_cycle=True),
    _task("moons-mlp", "MLP", "SGD momentum 0.9", 32, 150, td.moons_data,
          lambda data: tm.mlp(data, hidden=32), _CE, "sklearn two moons, MLP 2-32-32-2"),
    _task("diabetes-mlp", "MLP regression (MSE)", "Adam", 16, 120, td.diabetes_data,
          tm.small_regressor, _MSE, "sklearn diabetes, standardised target, MLP 10-64-1 tanh"),
    _task("diabetes-linear", "linear regression (convex)", "SGD", 32, 100, td.diabetes_data,
          tm.linear_model, _MSE, "sklearn diabetes, standardised target, linear regression"),
    _task("friedman-mlp", "MLP regression (MSE)", "SGD momentum 0.9", 64, 120, td.friedman_data,
          tm.small_regressor, _MSE, "sklearn Friedman #1, MLP 10-64-1 tanh", one_cycle=True),
    _task("text-lstm", "LSTM language model", "Adam", 32, 150, td.text_data,
          _vocab(tm.CharLSTM), _TOKENS, "char-level LM on stdlib source, LSTM 64",
          one_cycle=True),
    _task("text-gru", "GRU language model", "SGD momentum 0.9", 32, 150, td.text_data,
          _vocab(tm.CharRNN), _TOKENS, "char-level LM on stdlib source, GRU 64"),
    _task("text-transformer", "transformer language model", "AdamW (wd 0.01)", 16, 150,
          td.text_data, _vocab(tm.CharTransformer), _TOKENS,
          "char-level LM on stdlib source, 2-layer causal transformer d=48", one_cycle=True),
    _task("text-transformer-b64", "transformer language model", "Adam", 64, 60,
          td.text_data, _vocab(tm.CharTransformer), _TOKENS,
          "char-level LM on stdlib source, 2-layer causal transformer d=48"),
    _task("hf-gpt2-tiny", "Hugging Face GPT-2 (from a config)", "AdamW (wd 0.01)", 16, 100,
          td.text_data, _vocab(tm.TinyGPT2), _TOKENS,
          "char-level LM on stdlib source, transformers GPT2LMHeadModel 2 layers d=32, random "
          "init"),
    # Fine-tuning: a body pre-trained on a related task (task_starts), a fresh head.
    _task("digits-mlp-finetune", "fine-tuned MLP", "Adam", 32, 100,
          lambda: ts.digits_subset(_HIGH_DIGITS), ts.fine_tuned(_DIGITS_BODY, tm.mlp), _CE,
          "digits 5-9, MLP whose body was pre-trained on digits 0-4", start="fine-tune"),
    _task("tabular-finetune", "fine-tuned MLP + BatchNorm", "AdamW (wd 0.01)", 64, 100,
          lambda: ts.tabular_halves("finetune"),
          ts.fine_tuned(_TABULAR_BODY, lambda data: tm.mlp(data, batchnorm=True)), _CE,
          "generated table (second half, 4 classes), body pre-trained on the first half with "
          "classes merged in pairs", start="fine-tune"),
    _task("digits-cnn-finetune", "fine-tuned CNN + BatchNorm", "SGD momentum 0.9", 32, 100,
          lambda: ts.digit_images_subset(_HIGH_DIGITS), ts.fine_tuned(_DIGIT_IMAGES_BODY, tm.cnn),
          _CE, "digit images 5-9, CNN whose body was pre-trained on digits 0-4",
          start="fine-tune"),
    _task("text-lstm-finetune", "fine-tuned LSTM language model", "Adam", 32, 100,
          td.text_data, ts.fine_tuned(_TEXT_BODY, _vocab(tm.CharLSTM)), _TOKENS,
          "char-level LM on argparse+textwrap, LSTM pre-trained on typing, dataclasses and "
          "inspect source", start="fine-tune"),
    # Mid-training: the range test and the rest of the run start from a checkpoint.
    _task("digits-mlp-mid", "MLP, mid-training", "Adam", 32, 100, td.digits_data, tm.mlp, _CE,
          "sklearn digits, MLP 64-128-128-10", start="mid-training", warm_up=(300, 1e-3)),
    _task("friedman-mlp-mid", "MLP regression, mid-training", "SGD momentum 0.9", 64, 100,
          td.friedman_data, tm.small_regressor, _MSE, "sklearn Friedman #1, MLP 10-64-1 tanh",
          start="mid-training", warm_up=(300, 0.01)),
    _task("digits-cnn-bn-mid", "CNN + BatchNorm, mid-training", "SGD momentum 0.9", 64, 100,
          td.digit_images_data, tm.cnn, _CE, "sklearn digits as 8x8 images, 2 conv+BN blocks",
          start="mid-training", warm_up=(200, 0.01)),
    _task("text-lstm-mid", "LSTM language model, mid-training", "Adam", 32, 100, td.text_data,
          _vocab(tm.CharLSTM), _TOKENS, "char-level LM on stdlib source, LSTM 64",
          start="mid-training", warm_up=(300, 1e-3)),
)  # fmt: skip


def get_task(name: str) -> Task:
    """The task called ``name``."""
    for task in TASKS:
        if task.name == name:
            return task
    raise KeyError(f"no task {name!r}; tasks are {[task.name for task in TASKS]}")


# -- training -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainOutcome:
    """The validation loss after training at one LR, and whether the run diverged.

    ``score`` is what the benchmark ranks by: the validation loss, or the initial validation loss
    when the run diverged or ended worse than it started (a diverged run is as good as not
    training at all, never better). ``train_losses`` holds the first
    ``RECORDED_TRAIN_LOSSES`` training losses (fewer if the run diverged).
    ``checkpoint_val_losses`` holds ``(step, validation loss)`` at each checkpoint the run
    reached (see :func:`train_at_lr`); ``diverged_at`` the step whose loss was non-finite.
    :func:`benchmarks.budget_cache.run_score` scores a run at any of its checkpoints.
    """

    lr: float
    seed: int
    val_loss: float
    initial_val_loss: float
    diverged: bool
    train_losses: tuple[float, ...] = ()
    schedule: str = "constant"
    checkpoint_val_losses: tuple[tuple[int, float], ...] = ()
    diverged_at: int | None = None
    block_train_losses: tuple[float, ...] = ()
    """Mean training loss of each block of ``TRAIN_LOSS_BLOCK`` steps, from the start."""

    @property
    def score(self) -> float:
        if self.diverged or not math.isfinite(self.val_loss):
            return self.initial_val_loss
        return min(self.val_loss, self.initial_val_loss)


@torch.no_grad()
def val_loss(task: Task, model: nn.Module, data: TaskData) -> float:
    """Mean validation loss of ``model`` over the whole validation set (in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for inputs, targets in task.val_loader(data):
            total += float(task.loss_fn(model(inputs), targets)) * len(inputs)
            count += len(inputs)
        return total / count
    finally:
        model.train(was_training)


def initial_val_loss(task: Task, data: TaskData, seed: int) -> float:
    """The validation loss of the model of ``seed`` where its runs start."""
    model, _ = task.starting_point(data, seed, 1e-3)
    return val_loss(task, model, data)


def _cycle(loader: DataLoader[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        yield from loader


def one_cycle(optimizer: torch.optim.Optimizer, peak_lr: float, steps: int) -> object:
    """fastai's ``fit_one_cycle`` LR shape: cosine warm-up over the first quarter from
    ``peak_lr / 25``, cosine annealing to ``peak_lr / 1e5`` (momentum left alone)."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak_lr, total_steps=steps, pct_start=0.25, anneal_strategy="cos",
        cycle_momentum=False, div_factor=25.0, final_div_factor=4e3,
    )  # fmt: skip


_WARM_UP_DATA_ORDER = 7919
"""Added to the seed for the warm-up's data order, so the rest of the run reads other batches."""
_checkpoints: dict[tuple[str, int, int, float], tuple[dict[str, Tensor], dict[str, object]]] = {}


def warm_up_checkpoint(
    task: Task, data: TaskData, seed: int
) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Model and optimizer state after ``task.warm_up_steps`` at ``task.warm_up_lr`` from the
    fresh model of ``seed`` (computed once a process; each call returns fresh copies)."""
    key = (task.name, seed, task.warm_up_steps, task.warm_up_lr)
    if key not in _checkpoints:
        with torch.random.fork_rng():
            model = task.fresh_model(data, seed)
            optimizer = task.make_optimizer(model.parameters(), task.warm_up_lr)
            batches = _cycle(task.train_loader(data, seed + _WARM_UP_DATA_ORDER))
            ts.train_for(model, optimizer, batches, task.loss_fn, task.warm_up_steps)
        _checkpoints[key] = (model.state_dict(), optimizer.state_dict())
    model_state, optimizer_state = _checkpoints[key]
    # load_state_dict keeps tensors it need not cast: copies, so no run trains the cached ones.
    return copy.deepcopy(model_state), copy.deepcopy(optimizer_state)


TRAIN_LOSS_BLOCK = 10
"""Steps per block of :attr:`TrainOutcome.block_train_losses`."""


def train_at_lr(
    task: Task,
    data: TaskData,
    lr: float,
    seed: int,
    schedule: str = "constant",
    steps: int | None = None,
    checkpoints: Iterable[int] = (),
    recorded_blocks: int = 0,
) -> TrainOutcome:
    """Train the model of ``seed`` from its starting point at ``lr`` for ``steps`` steps
    (default ``task.train_steps``).

    ``schedule`` is ``"constant"`` or ``"one-cycle"`` (``lr`` is then the peak, see
    :func:`one_cycle`). Stops early, as diverged, at the first non-finite training loss. At each
    of ``checkpoints`` (steps, at most ``steps``) the validation loss is recorded: at constant LR
    one long run gives the outcome of every shorter one, since its first steps are theirs. The
    mean training loss of each of the first ``recorded_blocks`` blocks of
    :data:`TRAIN_LOSS_BLOCK` steps is recorded too (what a probe of that length would read).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    total = task.train_steps if steps is None else steps
    marks = sorted(set(checkpoints))
    if marks and not 1 <= marks[0] <= marks[-1] <= total:
        raise ValueError(f"checkpoints must lie in 1..{total}, got {marks}")
    model, optimizer = task.starting_point(data, seed, lr)
    start = val_loss(task, model, data)
    scheduler = one_cycle(optimizer, lr, total) if schedule == "one-cycle" else None
    batches = _cycle(task.train_loader(data, seed))
    recorded: list[float] = []
    at_checkpoints: list[tuple[int, float]] = []
    block_sums: list[float] = []
    model.train()
    for step in range(1, total + 1):
        inputs, targets = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model(inputs), targets)
        if not torch.isfinite(loss):
            return TrainOutcome(
                lr, seed, math.inf, start, True, tuple(recorded), schedule,
                tuple(at_checkpoints), step, _block_means(block_sums, step - 1),
            )  # fmt: skip
        value = float(loss.detach())
        if len(recorded) < RECORDED_TRAIN_LOSSES:
            recorded.append(value)
        block = (step - 1) // TRAIN_LOSS_BLOCK
        if block < recorded_blocks:
            if block == len(block_sums):
                block_sums.append(0.0)
            block_sums[block] += value
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()  # type: ignore[attr-defined]
        if marks and step == marks[len(at_checkpoints)]:
            at_checkpoints.append((step, val_loss(task, model, data)))
    final = at_checkpoints[-1][1] if marks and marks[-1] == total else val_loss(task, model, data)
    return TrainOutcome(
        lr, seed, final, start, not math.isfinite(final), tuple(recorded), schedule,
        tuple(at_checkpoints), None, _block_means(block_sums, total),
    )  # fmt: skip


def _block_means(sums: list[float], steps_done: int) -> tuple[float, ...]:
    """Block sums to means, complete blocks only (a block cut short by divergence is left out)."""
    return tuple(total / TRAIN_LOSS_BLOCK for total in sums[: steps_done // TRAIN_LOSS_BLOCK])


def log_grid(low: float, high: float, per_decade: int) -> list[float]:
    """LRs from ``low`` to ``high`` inclusive, ``per_decade`` points per decade of LR."""
    decades = math.log10(high / low)
    count = round(decades * per_decade) + 1
    return [float(lr) for lr in np.logspace(math.log10(low), math.log10(high), count)]
