"""The built-in demo: a small seeded task whose range test shows every phase of the curve.

The quickstart notebook, ``python -m lr_widget demo`` and the tests all use it, so it must run in
about a tenth of a second on a laptop CPU and need nothing from the network. The data is a
three-class Gaussian mixture: six clusters on a ring, opposite clusters sharing a class (so no
straight line separates the classes), with 5% of the labels replaced at random. The model is an
MLP 2-256-256-3 with BatchNorm.

Why these choices: a range test (AdamW, LR from 1e-7 to 10 over 100 steps, debiased EMA with
``beta=0.98``) smooths over about 50 steps, so the loss must fall quickly and far for the
smoothed curve to show a clear descent and minimum. Clusters that are easy to separate, a width
of 256 and BatchNorm give exactly that: a flat start up to about 1e-4, a descent to less than
half of the starting loss near 0.2, then a blow-up past four times the minimum before LR 10. The
label noise keeps the loss from reaching zero, as on real data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lr_widget.curves.arguments import require_int

NUM_CLASSES = 3
CLUSTERS_PER_CLASS = 2
RING_RADIUS = 3.0
CLUSTER_STD = 0.4
LABEL_NOISE = 0.05
HIDDEN_WIDTH = 256
# A quarter of the points are held out for validation.
VAL_DIVISOR = 4


@dataclass
class Demo:
    """A model, its data loaders and its loss: everything a range test needs.

    Attributes
    ----------
    model : torch.nn.Module
        A freshly initialised MLP (seeded).
    train_loader : torch.utils.data.DataLoader
        Shuffled with a seeded generator, so the batch order is reproducible.
    val_loader : torch.utils.data.DataLoader
        Not shuffled.
    loss_fn : Callable[[Tensor, Tensor], Tensor]
        Cross-entropy on logits and integer class targets.
    description : str
        One line that says what the task and the model are.

    Examples
    --------
    >>> demo = make_demo(seed=0)
    >>> inputs, targets = next(iter(demo.train_loader))
    >>> demo.loss_fn(demo.model(inputs), targets).item() > 0
    True
    """

    model: nn.Module
    train_loader: DataLoader[tuple[Tensor, ...]]
    val_loader: DataLoader[tuple[Tensor, ...]]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    description: str


def make_demo(seed: int = 0, num_samples: int = 4096, batch_size: int = 64) -> Demo:
    """Build the demo: seeded data, loaders and a fresh model.

    Parameters
    ----------
    seed : int
        Seeds the data, the label noise, the model's initial weights and the shuffling.
    num_samples : int
        Points in total; a quarter of them (rounded down) form the validation set.
    batch_size : int
        Batch size of both loaders; at least 2, since BatchNorm needs two samples per batch.
        The training loader drops its last, incomplete batch for the same reason.

    Returns
    -------
    Demo
        The same seed always gives the same weights and the same sequence of batches.

    Examples
    --------
    >>> demo = make_demo(seed=0)
    >>> len(demo.train_loader), len(demo.val_loader)
    (48, 16)
    >>> demo.description.split(":")[0]
    'ring'
    """
    require_int("seed", seed, 0)
    require_int("num_samples", num_samples, VAL_DIVISOR)
    require_int("batch_size", batch_size, 2)
    train_size = num_samples - num_samples // VAL_DIVISOR
    if batch_size > train_size:
        raise ValueError(
            f"batch_size must be at most the {train_size} training samples of "
            f"num_samples={num_samples}, got {batch_size!r}"
        )
    train, val = demo_data(seed, num_samples)
    shuffle_generator = torch.Generator().manual_seed(seed)
    return Demo(
        model=demo_model(seed),
        train_loader=DataLoader(
            train, batch_size=batch_size, shuffle=True, drop_last=True, generator=shuffle_generator
        ),
        val_loader=DataLoader(val, batch_size=batch_size, shuffle=False),
        loss_fn=nn.functional.cross_entropy,
        description=_describe(num_samples),
    )


def demo_model(seed: int = 0) -> nn.Module:
    """A fresh MLP 2-256-256-3 with BatchNorm and ReLU, initialised from ``seed``.

    The global torch RNG is left exactly as it was: the seed is applied inside a forked RNG.

    Parameters
    ----------
    seed : int
        Seeds the initial weights.

    Returns
    -------
    torch.nn.Module
        An ``nn.Sequential`` in training mode, producing one logit per class.

    Examples
    --------
    >>> model = demo_model(seed=0)
    >>> model(torch.zeros(4, 2)).shape
    torch.Size([4, 3])
    """
    require_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(2, HIDDEN_WIDTH),
            nn.BatchNorm1d(HIDDEN_WIDTH),
            nn.ReLU(),
            nn.Linear(HIDDEN_WIDTH, HIDDEN_WIDTH),
            nn.BatchNorm1d(HIDDEN_WIDTH),
            nn.ReLU(),
            nn.Linear(HIDDEN_WIDTH, NUM_CLASSES),
        )


def demo_data(seed: int = 0, num_samples: int = 4096) -> tuple[TensorDataset, TensorDataset]:
    """The demo's points and noisy labels, split into training and validation sets.

    Parameters
    ----------
    seed : int
        Seeds the points and the label noise; the global RNG is not used.
    num_samples : int
        Points in total; the last quarter (rounded down) is the validation set.

    Returns
    -------
    tuple of TensorDataset
        ``(train, val)``; inputs are float32 of shape ``(n, 2)``, targets int64 class indices.

    Examples
    --------
    >>> train, val = demo_data(seed=0, num_samples=100)
    >>> len(train), len(val)
    (75, 25)
    >>> train.tensors[0].dtype, train.tensors[1].dtype
    (torch.float32, torch.int64)
    """
    require_int("seed", seed, 0)
    require_int("num_samples", num_samples, VAL_DIVISOR)
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = _ring_mixture(generator, num_samples)
    labels = _add_label_noise(generator, labels)
    train_size = num_samples - num_samples // VAL_DIVISOR
    return (
        TensorDataset(inputs[:train_size], labels[:train_size]),
        TensorDataset(inputs[train_size:], labels[train_size:]),
    )


def _ring_mixture(generator: torch.Generator, num_samples: int) -> tuple[Tensor, Tensor]:
    """Points from Gaussian clusters evenly spaced on a ring; cluster ``k`` has class ``k % 3``."""
    num_clusters = NUM_CLASSES * CLUSTERS_PER_CLASS
    angles = torch.arange(num_clusters, dtype=torch.float32) * (2 * math.pi / num_clusters)
    centres = RING_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    clusters = torch.randint(0, num_clusters, (num_samples,), generator=generator)
    noise = CLUSTER_STD * torch.randn(num_samples, 2, generator=generator)
    return centres[clusters] + noise, clusters % NUM_CLASSES


def _add_label_noise(generator: torch.Generator, labels: Tensor) -> Tensor:
    """Replace a ``LABEL_NOISE`` fraction of the labels with uniformly random classes."""
    replaced = torch.rand(labels.shape, generator=generator) < LABEL_NOISE
    random_labels = torch.randint(0, NUM_CLASSES, labels.shape, generator=generator)
    return torch.where(replaced, random_labels, labels)


def _describe(num_samples: int) -> str:
    return (
        f"ring: {NUM_CLASSES}-class Gaussian mixture ({NUM_CLASSES * CLUSTERS_PER_CLASS} "
        f"clusters on a ring, {LABEL_NOISE:.0%} label noise), {num_samples:,} points, "
        f"MLP 2-{HIDDEN_WIDTH}-{HIDDEN_WIDTH}-{NUM_CLASSES} with BatchNorm"
    )
