"""Hugging Face ``transformers`` models, built from tiny configs with random weights (no download).

GPT-2 trains as a language model on dict batches whose ``labels`` make it return its own loss;
BERT classifies sequences batched by ``DataCollatorWithPadding`` over a word-level tokenizer built
here from a small vocabulary. Neither passes a ``loss_fn``: the engine takes the output's
``.loss``. Each sweep restores the model, the optimizer and the RNG streams bit for bit.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from lr_widget.find import find_lr
from tests.helpers import assert_restored, capture

transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is in the test extra")

SWEEP: dict[str, Any] = {"start_lr": 1e-5, "end_lr": 1.0, "num_steps": 10}
WORDS = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "log", "big", "small", "red",
    "blue", "fast", "slow",
]  # fmt: skip


def _warm(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any) -> None:
    """Two real steps, so AdamW has moments to restore."""
    for _ in range(2):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_gpt2_language_model_on_dict_batches_uses_its_own_loss_and_restores() -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    model.train()
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        tokens = torch.randint(0, 64, (4, 12), generator=generator)
        batches.append({"input_ids": tokens, "attention_mask": torch.ones_like(tokens),
                        "labels": tokens})  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters())
    _warm(model, optimizer, batches[0])
    before = capture(model, optimizer)
    result = find_lr(model, batches, None, optimizer, **SWEEP)
    assert result.metadata["loss"] == "the model's own loss"
    assert result.num_steps >= 3
    assert result.losses[0] == pytest.approx(4.16, abs=0.3)  # about log(64) at random weights
    assert_restored(before, model, optimizer)


def _tiny_tokenizer() -> Any:
    """A word-level tokenizer over ``WORDS``, wrapped as a PreTrainedTokenizerFast."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: index for index, token in enumerate([*special, *WORDS])}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    core.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip


def _sentences(count: int) -> list[dict[str, Any]]:
    """Examples of several lengths, labelled by whether "cat" or "dog" or neither appears."""
    rng = random.Random(0)
    examples = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
        label = 0 if "cat" in words else 1 if "dog" in words else 2
        examples.append({"text": " ".join(words), "label": label})
    return examples


def test_bert_classifier_through_a_padding_collator_restores() -> None:
    tokenizer = _tiny_tokenizer()
    encoded = [
        {**tokenizer(example["text"]), "label": example["label"]} for example in _sentences(32)
    ]
    collator = transformers.DataCollatorWithPadding(tokenizer, return_tensors="pt")
    loader: DataLoader[Any] = DataLoader(encoded, batch_size=8, collate_fn=collator)  # type: ignore[arg-type]
    first = next(iter(loader))
    assert "labels" in first  # the collator renames label -> labels
    assert len({len(example["input_ids"]) for example in encoded}) > 1  # padding really pads
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())
    _warm(model, optimizer, dict(first))
    before = capture(model, optimizer)
    result = find_lr(model, loader, None, optimizer, **SWEEP)
    assert result.metadata["loss"] == "the model's own loss"
    assert result.num_steps >= 3
    assert_restored(before, model, optimizer)
