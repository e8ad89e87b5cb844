"""The benchmark's models: tiny versions of the families people train, each a plain
``nn.Module`` built from a :class:`~benchmarks.task_data.TaskData`'s sizes."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from benchmarks.task_data import TEXT_SEQ_LEN, TaskData

__all__ = [
    "CharLSTM",
    "CharRNN",
    "CharTransformer",
    "TinyGPT2",
    "TinyResNet",
    "cnn",
    "linear_model",
    "mlp",
    "small_regressor",
    "token_cross_entropy",
]


def mlp(data: TaskData, hidden: int = 128, batchnorm: bool = False) -> nn.Module:
    """A two-hidden-layer ReLU MLP (optionally with BatchNorm after each hidden layer)."""

    def block(width_in: int) -> list[nn.Module]:
        norm: list[nn.Module] = [nn.BatchNorm1d(hidden)] if batchnorm else []
        return [nn.Linear(width_in, hidden), *norm, nn.ReLU()]

    return nn.Sequential(
        *block(data.sizes["features"]), *block(hidden), nn.Linear(hidden, data.sizes["classes"])
    )


def small_regressor(data: TaskData, hidden: int = 64) -> nn.Module:
    """A one-hidden-layer tanh MLP with one output."""
    return nn.Sequential(nn.Linear(data.sizes["features"], hidden), nn.Tanh(), nn.Linear(hidden, 1))


def linear_model(data: TaskData) -> nn.Module:
    """One linear layer: logistic (softmax) regression with cross-entropy, linear regression with
    MSE (a regression target has one column; ``classes`` is then ignored)."""
    outputs = 1 if data.train_y.is_floating_point() else data.sizes["classes"]
    return nn.Linear(data.sizes["features"], outputs)


def cnn(data: TaskData, batchnorm: bool = True) -> nn.Module:
    """Two conv(-BatchNorm)-ReLU blocks, a max-pool and a linear head, for 1x8x8 images."""

    def block(channels_in: int, channels_out: int) -> list[nn.Module]:
        norm: list[nn.Module] = [nn.BatchNorm2d(channels_out)] if batchnorm else []
        return [nn.Conv2d(channels_in, channels_out, 3, padding=1), *norm, nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), *block(16, 32), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, data.sizes["classes"]),
    )  # fmt: skip


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(x + self.norm2(self.conv2(out)))


class TinyResNet(nn.Module):
    """A stem, two residual blocks of 16 channels, global average pooling and a linear head."""

    def __init__(self, classes: int, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.blocks = nn.Sequential(_ResidualBlock(channels), _ResidualBlock(channels))
        self.head = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))
        return logits


class CharLSTM(nn.Module):
    """Embedding, one LSTM layer and a linear read-out over the alphabet."""

    def __init__(self, vocab: int, embedding: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden, _ = self.lstm(self.embed(tokens))
        logits: Tensor = self.head(hidden)
        return logits


class CharRNN(nn.Module):
    """Embedding, one GRU layer and a linear read-out over the alphabet."""

    def __init__(self, vocab: int, embedding: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding)
        self.gru = nn.GRU(embedding, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden, _ = self.gru(self.embed(tokens))
        logits: Tensor = self.head(hidden)
        return logits


class CharTransformer(nn.Module):
    """A two-layer causal pre-norm transformer with learned positions."""

    def __init__(self, vocab: int, width: int = 48, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch_randn_positions(width))
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
        logits: Tensor = self.head(self.norm(self.blocks(hidden, mask=mask, is_causal=True)))
        return logits


def torch_randn_positions(width: int) -> Tensor:
    """Learned-position initialisation: N(0, 0.02^2), one row per position."""
    import torch

    return torch.randn(TEXT_SEQ_LEN, width) * 0.02


class TinyGPT2(nn.Module):
    """Hugging Face's GPT-2 built from a config (2 layers, width 32, random weights: nothing is
    downloaded), returning the logits."""

    def __init__(self, vocab: int, width: int = 32, layers: int = 2, heads: int = 2) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=vocab, n_positions=TEXT_SEQ_LEN, n_embd=width, n_layer=layers,
            n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
            eos_token_id=None,
        )  # fmt: skip
        self.gpt2 = GPT2LMHeadModel(config)

    def forward(self, tokens: Tensor) -> Tensor:
        logits: Tensor = self.gpt2(input_ids=tokens).logits
        return logits


def token_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over every position of a ``(batch, time, vocab)`` output."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
