"""The benchmark's datasets: seeded, generated or shipped with a package, never downloaded.

Tabular and image data come from scikit-learn's bundled datasets and generators (importing
this module's loaders raises ``ModuleNotFoundError`` without scikit-learn); text is the source of
a few standard-library modules, shipped with Python itself.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATA_SEED",
    "TEXT_MODULES",
    "TEXT_SEQ_LEN",
    "VAL_FRACTION",
    "TaskData",
    "cancer_data",
    "diabetes_data",
    "digit_images_data",
    "digits_data",
    "friedman_data",
    "moons_data",
    "source_text",
    "tabular_data",
    "text_data",
    "windows_of",
    "wine_data",
]

DATA_SEED = 0
VAL_FRACTION = 0.25
TEXT_MODULES = ("argparse", "textwrap")
TEXT_SEQ_LEN = 32


@dataclass(frozen=True)
class TaskData:
    """Train and validation tensors of one task, plus sizes the model needs."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    sizes: dict[str, int] = field(default_factory=dict)


def _split(inputs: np.ndarray, targets: np.ndarray, target_dtype: torch.dtype) -> TaskData:
    """Shuffle rows with ``DATA_SEED`` and hold out ``VAL_FRACTION`` of them for validation."""
    order = np.random.default_rng(DATA_SEED).permutation(len(inputs))
    cut = len(inputs) - int(len(inputs) * VAL_FRACTION)
    x = torch.as_tensor(inputs[order], dtype=torch.float32)
    y = torch.as_tensor(targets[order]).to(target_dtype)
    sizes = {"features": x.shape[1], "classes": int(targets.max()) + 1}
    return TaskData(x[:cut], y[:cut], x[cut:], y[cut:], sizes)


def _standardise(data: TaskData) -> TaskData:
    """Scale features with the training set's mean and standard deviation."""
    mean, std = data.train_x.mean(0), data.train_x.std(0).clamp_min(1e-6)
    return TaskData(
        (data.train_x - mean) / std, data.train_y, (data.val_x - mean) / std, data.val_y, data.sizes
    )


def _regression(inputs: np.ndarray, target: np.ndarray) -> TaskData:
    """Standardised features and a standardised one-column target."""
    scaled = (target - target.mean()) / target.std()
    return _standardise(_split(inputs, scaled[:, None], torch.float32))


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


def wine_data() -> TaskData:
    """scikit-learn's wine table (178 rows, 13 features, 3 classes), standardised."""
    from sklearn.datasets import load_wine

    table = load_wine()
    return _standardise(_split(table.data, table.target, torch.long))


def diabetes_data() -> TaskData:
    """scikit-learn's diabetes regression (442 rows, 10 features); standardised target."""
    from sklearn.datasets import load_diabetes

    table = load_diabetes()
    return _regression(table.data, table.target)


def friedman_data() -> TaskData:
    """Friedman #1 regression (2,000 rows, 10 features, noise 1), generated with a fixed seed."""
    from sklearn.datasets import make_friedman1

    inputs, target = make_friedman1(2000, 10, noise=1.0, random_state=DATA_SEED)
    return _regression(inputs, target)


def moons_data() -> TaskData:
    """Two interleaved half-moons (2,000 points, noise 0.25), generated with a fixed seed."""
    from sklearn.datasets import make_moons

    inputs, target = make_moons(2000, noise=0.25, random_state=DATA_SEED)
    return _standardise(_split(inputs, target, torch.long))


def tabular_data() -> TaskData:
    """A generated tabular problem: 3,000 rows, 24 features (8 informative), 4 classes."""
    from sklearn.datasets import make_classification

    inputs, target = make_classification(
        3000, 24, n_informative=8, n_redundant=6, n_classes=4, flip_y=0.05,
        random_state=DATA_SEED,
    )  # fmt: skip
    return _standardise(_split(inputs, target, torch.long))


def source_text(modules: tuple[str, ...]) -> str:
    """The source code of the standard-library ``modules``, concatenated."""
    return "".join(inspect.getsource(importlib.import_module(name)) for name in modules)


def windows_of(codes: Tensor, vocab: int, seq_len: int = TEXT_SEQ_LEN) -> TaskData:
    """Non-overlapping windows of ``seq_len + 1`` character codes; targets are the inputs shifted
    by one. The last windows (not a random sample) are the validation set, so no validation
    character is ever trained on."""
    windows = codes[: len(codes) // (seq_len + 1) * (seq_len + 1)].reshape(-1, seq_len + 1)
    cut = len(windows) - int(len(windows) * VAL_FRACTION)
    x, y = windows[:, :-1], windows[:, 1:]
    return TaskData(x[:cut], y[:cut], x[cut:], y[cut:], {"vocab": vocab})


def text_data(seq_len: int = TEXT_SEQ_LEN) -> TaskData:
    """Character-level language modelling on the source of a few standard-library modules
    (:data:`TEXT_MODULES`), in windows of ``seq_len + 1`` characters (see :func:`windows_of`)."""
    text = source_text(TEXT_MODULES)
    code_of = {char: code for code, char in enumerate(sorted(set(text)))}
    codes = torch.tensor([code_of[char] for char in text], dtype=torch.long)
    return windows_of(codes, len(code_of), seq_len)
