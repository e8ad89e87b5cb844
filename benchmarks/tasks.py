"""Small but real training tasks that run on a CPU, for the suggestion-quality benchmark.

Each :class:`Task` fixes its data (seeded, generated or shipped by a package: no downloads), a
model family, an optimizer and a batch size. :func:`train_at_lr` trains a fresh model at one
constant LR for the task's budget and returns the validation loss; the best LR of a task is the
one with the lowest mean validation loss over seeds, and a suggestion's regret is measured against
it by training at the suggested LR directly.

The text tasks read the source of two standard-library modules (shipped with Python itself);
the tabular and image tasks use scikit-learn's bundled datasets (no download) and raise
``ModuleNotFoundError`` without scikit-learn.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

__all__ = [
    "TASKS",
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

DATA_SEED = 0
VAL_FRACTION = 0.25
TEXT_MODULES = ("argparse", "textwrap")
TEXT_SEQ_LEN = 32


class TensorPairs:
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
) -> DataLoader:
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
class TaskData:
    """Train and validation tensors of one task, plus sizes the model needs."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    sizes: dict[str, int] = field(default_factory=dict)


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

    def train_loader(self, data: TaskData, seed: int) -> DataLoader:
        """The shuffled training loader for ``seed``."""
        return batch_loader(data.train_x, data.train_y, self.batch_size, seed)

    def val_loader(self, data: TaskData) -> DataLoader:
        """The validation set in fixed order, in batches of the task's batch size."""
        return batch_loader(data.val_x, data.val_y, self.batch_size, 0, shuffle=False)

    def fresh_model(self, data: TaskData, seed: int) -> nn.Module:
        """A newly initialised model; the same ``seed`` gives the same weights."""
        torch.manual_seed(seed)
        return self.build_model(data)


# -- data ---------------------------------------------------------------------------------------
def _split(inputs: np.ndarray, targets: np.ndarray, target_dtype: torch.dtype) -> TaskData:
    """Shuffle rows with ``DATA_SEED`` and hold out ``VAL_FRACTION`` of them for validation."""
    order = np.random.default_rng(DATA_SEED).permutation(len(inputs))
    cut = len(inputs) - int(len(inputs) * VAL_FRACTION)
    x = torch.as_tensor(inputs[order], dtype=torch.float32)
    y = torch.as_tensor(targets[order]).to(target_dtype)
    return TaskData(x[:cut], y[:cut], x[cut:], y[cut:], {"features": x.shape[1]})


def _standardise(data: TaskData) -> TaskData:
    """Scale features with the training set's mean and standard deviation."""
    mean, std = data.train_x.mean(0), data.train_x.std(0).clamp_min(1e-6)
    return TaskData(
        (data.train_x - mean) / std, data.train_y, (data.val_x - mean) / std, data.val_y, data.sizes
    )


def digits_data() -> TaskData:
    """scikit-learn's 1,797 8x8 handwritten digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _split(digits.data / 16.0, digits.target, torch.long)


def digit_images_data() -> TaskData:
    """The digits as 1x8x8 images for a CNN."""
    data = digits_data()
    return TaskData(
        data.train_x.reshape(-1, 1, 8, 8),
        data.train_y,
        data.val_x.reshape(-1, 1, 8, 8),
        data.val_y,
        data.sizes,
    )


def cancer_data() -> TaskData:
    """scikit-learn's breast-cancer table (569 rows, 30 features), standardised."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    return _standardise(_split(table.data, table.target, torch.long))


def diabetes_data() -> TaskData:
    """scikit-learn's diabetes regression (442 rows, 10 features); standardised target."""
    from sklearn.datasets import load_diabetes

    table = load_diabetes()
    target = (table.target - table.target.mean()) / table.target.std()
    data = _standardise(_split(table.data, target[:, None], torch.float32))
    return data


def text_data(seq_len: int = TEXT_SEQ_LEN) -> TaskData:
    """Character-level language modelling on the source of a few standard-library modules.

    Non-overlapping windows of ``seq_len + 1`` characters; targets are inputs shifted by one.
    The last windows of the text (not a random sample) are the validation set, so no validation
    character is ever trained on.
    """
    import importlib

    text = "".join(inspect.getsource(importlib.import_module(name)) for name in TEXT_MODULES)
    code_of = {char: code for code, char in enumerate(sorted(set(text)))}
    codes = torch.tensor([code_of[char] for char in text], dtype=torch.long)
    windows = codes[: len(codes) // (seq_len + 1) * (seq_len + 1)].reshape(-1, seq_len + 1)
    cut = len(windows) - int(len(windows) * VAL_FRACTION)
    x, y = windows[:, :-1], windows[:, 1:]
    return TaskData(x[:cut], y[:cut], x[cut:], y[cut:], {"vocab": len(code_of)})


# -- models -------------------------------------------------------------------------------------
def mlp(data: TaskData, hidden: int = 128, outputs: int = 10) -> nn.Module:
    """A two-hidden-layer ReLU MLP."""
    return nn.Sequential(
        nn.Linear(data.sizes["features"], hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, outputs),
    )


def small_regressor(data: TaskData, hidden: int = 64) -> nn.Module:
    """A one-hidden-layer tanh MLP with one output."""
    return nn.Sequential(nn.Linear(data.sizes["features"], hidden), nn.Tanh(), nn.Linear(hidden, 1))


def linear_classifier(data: TaskData, classes: int = 2) -> nn.Module:
    """Logistic (softmax) regression: one linear layer, convex with cross-entropy."""
    return nn.Linear(data.sizes["features"], classes)


def cnn_with_batchnorm(data: TaskData, classes: int = 10) -> nn.Module:
    """Two conv-BatchNorm-ReLU blocks, a max-pool and a linear head, for 1x8x8 images."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, classes),
    )


class CharLSTM(nn.Module):
    """Embedding, one LSTM layer and a linear read-out over the alphabet."""

    def __init__(self, vocab: int, embedding: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden, _ = self.lstm(self.embed(tokens))
        return self.head(hidden)


class CharTransformer(nn.Module):
    """A two-layer causal pre-norm transformer with learned positions."""

    def __init__(self, vocab: int, width: int = 48, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(TEXT_SEQ_LEN, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length)
        hidden = self.embed(tokens) + self.position[:length]
        return self.head(self.norm(self.blocks(hidden, mask=mask, is_causal=True)))


def token_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over every position of a ``(batch, time, vocab)`` output."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


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


# -- the suite ----------------------------------------------------------------------------------
TASKS: tuple[Task, ...] = (
    Task(
        "digits-mlp", "MLP", "Adam", 32, 160, digits_data, mlp, adam, F.cross_entropy,
        "sklearn digits, MLP 64-128-128-10, Adam, batch 32, 160 steps",
    ),
    Task(
        "digits-cnn-bn", "CNN + BatchNorm", "SGD momentum 0.9", 64, 120, digit_images_data,
        cnn_with_batchnorm, sgd_momentum, F.cross_entropy,
        "sklearn digits as 8x8 images, 2 conv+BN blocks, SGD(0.9), batch 64, 120 steps",
    ),
    Task(
        "cancer-logreg", "logistic regression (convex)", "SGD momentum 0.9", 16, 120,
        cancer_data, linear_classifier, sgd_momentum, F.cross_entropy,
        "sklearn breast cancer, standardised, logistic regression, SGD(0.9), batch 16, 120 steps",
    ),
    Task(
        "diabetes-mlp", "MLP regression (MSE)", "Adam", 16, 120, diabetes_data,
        small_regressor, adam, F.mse_loss,
        "sklearn diabetes, standardised target, MLP 10-64-1 tanh, Adam, batch 16, 120 steps",
    ),
    Task(
        "text-lstm", "LSTM language model", "Adam", 32, 150, text_data,
        lambda data: CharLSTM(data.sizes["vocab"]), adam, token_cross_entropy,
        "char-level LM on stdlib source, LSTM 64, Adam, batch 32 x 32 chars, 150 steps",
    ),
    Task(
        "text-transformer", "transformer language model", "AdamW (wd 0.01)", 16, 150, text_data,
        lambda data: CharTransformer(data.sizes["vocab"]), adamw, token_cross_entropy,
        "char-level LM on stdlib source, 2-layer causal transformer d=48, AdamW, batch 16 x 32 "
        "chars, 150 steps",
    ),
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
    training at all, never better).
    """

    lr: float
    seed: int
    val_loss: float
    initial_val_loss: float
    diverged: bool

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
    """The validation loss of the untrained model of ``seed``."""
    return val_loss(task, task.fresh_model(data, seed), data)


def _cycle(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        yield from loader


def train_at_lr(task: Task, data: TaskData, lr: float, seed: int) -> TrainOutcome:
    """Train a fresh model (``seed``) at constant ``lr`` for ``task.train_steps`` steps.

    Stops early, as diverged, at the first non-finite training loss.
    """
    model = task.fresh_model(data, seed)
    start = val_loss(task, model, data)
    optimizer = task.make_optimizer(model.parameters(), lr)
    batches = _cycle(task.train_loader(data, seed))
    model.train()
    for _ in range(task.train_steps):
        inputs, targets = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model(inputs), targets)
        if not torch.isfinite(loss):
            return TrainOutcome(lr, seed, math.inf, start, diverged=True)
        loss.backward()
        optimizer.step()
    final = val_loss(task, model, data)
    return TrainOutcome(lr, seed, final, start, diverged=not math.isfinite(final))


def log_grid(low: float, high: float, per_decade: int) -> list[float]:
    """LRs from ``low`` to ``high`` inclusive, ``per_decade`` points per decade of LR."""
    decades = math.log10(high / low)
    count = round(decades * per_decade) + 1
    return [float(lr) for lr in np.logspace(math.log10(low), math.log10(high), count)]
