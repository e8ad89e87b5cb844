"""Reading batches: cycling a loader, moving batches to a device, and turning one into a loss.

Supported without help: ``(x, y)``, ``(x1, x2, ..., y)``, a single tensor or dict whose model
output carries its own loss, and dicts such as ``{"input_ids": ..., "labels": ...}``. A model
output may carry its own loss as a ``.loss`` attribute or a ``"loss"`` key (as Hugging Face models
do); otherwise ``loss_fn(prediction, target)`` is used, inferred when not given. Anything else goes
through a user ``step_fn(model, batch) -> loss``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F

LossFn = Callable[[Any, Any], torch.Tensor]
StepFn = Callable[[torch.nn.Module, Any], torch.Tensor]

# Keys of a dict batch that hold the target, in order of preference.
TARGET_KEYS: tuple[str, ...] = ("labels", "label", "targets", "target", "y")


class BatchStream:
    """An endless stream of batches: iterates ``data`` again each time it runs out.

    Raises ``ValueError`` naming ``data_name`` if the data yields no batch at all, or runs out and
    cannot be restarted (a one-shot iterator or generator).
    """

    def __init__(self, data: Iterable[Any], data_name: str = "train_data") -> None:
        self._data = data
        self._name = data_name
        self._iterator: Iterator[Any] | None = None
        self._yielded_this_pass = 0
        self.batches_seen = 0
        self.batch_rows: int | None = None
        """Samples in the first batch (:func:`batch_rows`), once one has been read."""

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._data)
        try:
            batch = next(self._iterator)
        except StopIteration:
            if self._yielded_this_pass == 0:
                raise self._exhausted_error() from None
            self._yielded_this_pass = 0
            self._iterator = iter(self._data)
            return next(self)
        if not self.batches_seen:
            self.batch_rows = batch_rows(batch)
        self._yielded_this_pass += 1
        self.batches_seen += 1
        return batch

    def _exhausted_error(self) -> ValueError:
        if self.batches_seen == 0:
            return ValueError(
                f"{self._name} is empty: it yielded no batch; pass a DataLoader or any "
                "re-iterable with at least one batch"
            )
        return ValueError(
            f"{self._name} ran out after {self.batches_seen} batches and cannot be restarted "
            f"(it is a one-shot iterator, {type(self._data).__name__}); pass a DataLoader, a "
            "list, or any object that can be iterated again"
        )


def batch_rows(batch: Any) -> int | None:
    """Samples in ``batch``: the leading dimension of its first tensor (nested tuples, lists
    and mappings searched in order), or ``None`` when it holds no tensor with a dimension.

    >>> batch_rows((torch.zeros(16, 3), torch.zeros(16)))
    16
    >>> batch_rows({"input_ids": torch.zeros(4, 128, dtype=torch.long)}), batch_rows("text")
    (4, None)
    """
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(items, (tuple, list)) or isinstance(batch, Mapping):
        for item in items:
            rows = batch_rows(item)
            if rows is not None:
                return rows
    return None


def batch_sizes(rows: int | None, accumulation_steps: int, ranks: int) -> dict[str, int | None]:
    """What one optimizer step of the sweep saw, for a result's metadata: ``batch_size``
    (samples in one micro-batch on one rank) and ``effective_batch_size`` (times the
    accumulated micro-batches and the ranks), ``None`` where the batches' size is not known.

    The LR found holds for this effective batch size: a larger one usually takes a larger LR.

    >>> batch_sizes(32, accumulation_steps=2, ranks=4)
    {'batch_size': 32, 'effective_batch_size': 256}
    """
    effective = None if rows is None else rows * accumulation_steps * ranks
    return {"batch_size": rows, "effective_batch_size": effective}


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in ``batch`` (nested tuples, lists, dicts, objects with ``.to``) to
    ``device``; pinned tensors are copied with ``non_blocking=True``."""
    if isinstance(batch, torch.Tensor):
        if batch.device == device:
            return batch
        return batch.to(device, non_blocking=batch.is_pinned())
    if type(batch) is tuple or type(batch) is list:  # the common (x, y): nothing to rebuild
        for item in batch:
            if not (isinstance(item, torch.Tensor) and item.device == device):
                break
        else:
            return batch
    if isinstance(batch, Mapping):
        if hasattr(batch, "to") and not isinstance(batch, dict):
            return batch.to(device)  # e.g. transformers' BatchEncoding
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(item, device) for item in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(item, device) for item in batch)
    return batch


def infer_loss_fn(prediction: torch.Tensor, target: Any) -> tuple[LossFn, str]:
    """Choose a loss for ``prediction`` and ``target`` when the user gave none.

    Integer class targets get cross-entropy (``(N, C)`` vs ``(N,)``, ``(N, C, d...)`` vs
    ``(N, d...)``, or a language model's ``(N, T, C)`` vs ``(N, T)``); floating targets of the
    prediction's shape get mean squared error. Anything else raises ``ValueError`` asking for a
    ``loss_fn``.
    """
    if not isinstance(target, torch.Tensor):
        raise ValueError(
            f"loss_fn is None and the target is a {type(target).__name__}, not a tensor: cannot "
            "infer a loss; pass loss_fn=... or step_fn=..."
        )
    if target.is_floating_point():
        if target.shape == prediction.shape:
            return F.mse_loss, "mse_loss (inferred: float targets of the output's shape)"
        raise ValueError(
            f"loss_fn is None and cannot be inferred: float targets of shape "
            f"{tuple(target.shape)} do not match the output's shape {tuple(prediction.shape)} "
            "(MSE needs equal shapes); pass loss_fn=..."
        )
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        if prediction.ndim == target.ndim + 1 and prediction.shape[:-1] == target.shape:
            if prediction.ndim == 2:
                return _cross_entropy, "cross_entropy (inferred: integer class targets)"
            return _cross_entropy_last_dim, "cross_entropy (inferred: integer targets per token)"
        if (
            prediction.ndim == target.ndim + 1
            and prediction.shape[0] == target.shape[0]
            and prediction.shape[2:] == target.shape[1:]
        ):
            return _cross_entropy, "cross_entropy (inferred: integer class targets per position)"
    raise ValueError(
        f"loss_fn is None and cannot be inferred for an output of shape "
        f"{tuple(prediction.shape)} ({prediction.dtype}) and a target of shape "
        f"{tuple(target.shape)} ({target.dtype}); cross-entropy needs integer class targets, MSE "
        "float targets of the output's shape; pass loss_fn=..."
    )


def _cross_entropy(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(prediction.float(), target.long())


def _cross_entropy_last_dim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    classes = prediction.shape[-1]
    return F.cross_entropy(prediction.reshape(-1, classes).float(), target.reshape(-1).long())


def own_loss(output: Any) -> torch.Tensor | None:
    """The loss a model output carries itself (``.loss`` or ``["loss"]``), if any."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def prediction_of(output: Any) -> torch.Tensor:
    """The tensor to compare with the target: the output itself, its ``logits``, or its first
    element."""
    if isinstance(output, torch.Tensor):
        return output
    logits = (
        output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    )
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"the model returned a {type(output).__name__} with no loss and no tensor to pass to "
        "loss_fn; return a tensor, an object with .loss or .logits, or pass step_fn=..."
    )


class LossComputer:
    """Turns one batch (already on the model's device) into a scalar loss tensor."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn | None = None,
        step_fn: StepFn | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.step_fn = step_fn
        self.loss_name: str | None = None if loss_fn is None else _name_of(loss_fn)
        self._inferred: LossFn | None = None
        self._accepts: dict[str, bool] = {}
        self._source = "loss_fn" if loss_fn is not None else "the loss"

    def __call__(self, batch: Any, require_grad: bool = True) -> torch.Tensor:
        """The scalar loss of ``batch``; ``require_grad=False`` for evaluation under no_grad."""
        if self.step_fn is not None:
            return check_scalar_loss(self.step_fn(self.model, batch), "step_fn", require_grad)
        if (type(batch) is tuple or type(batch) is list) and len(batch) >= 2:  # checked first:
            return check_scalar_loss(self._tuple_loss(batch), self._source, require_grad)  # fast
        if isinstance(batch, Mapping):
            loss = self._dict_batch_loss(batch)
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            output = self.model(*batch[:-1])
            loss = self._loss(output, batch[-1])
        elif isinstance(batch, torch.Tensor) or (isinstance(batch, (tuple, list)) and batch):
            inputs = batch if isinstance(batch, torch.Tensor) else batch[0]
            loss = self._loss(self.model(inputs), None)
        else:
            raise TypeError(
                f"cannot read a batch of type {type(batch).__name__}; batches may be (x, y), "
                "(x1, ..., y), a dict, or a tensor whose model output has a loss; for anything "
                "else pass step_fn=lambda model, batch: loss"
            )
        return check_scalar_loss(loss, self._source, require_grad)

    def _tuple_loss(self, batch: tuple[Any, ...] | list[Any]) -> torch.Tensor:
        """``(x1, ..., y)``: the loss of the model's output on the inputs against ``y``.

        The path every step of the usual sweep takes, so it decides as little as it can: a
        plain tensor output with the loss already inferred goes straight to that loss.
        """
        output = self.model(*batch[:-1])
        if self.loss_fn is not None:
            return self.loss_fn(output, batch[-1])
        if self._inferred is not None and type(output) is torch.Tensor:
            return self._inferred(output, batch[-1])
        return self._loss(output, batch[-1])

    def _dict_batch_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        target_key = next((key for key in TARGET_KEYS if key in batch), None)
        if target_key is None or self._model_accepts(target_key):
            output = self.model(**batch)
            return self._loss(output, None if target_key is None else batch[target_key])
        inputs = {key: value for key, value in batch.items() if key != target_key}
        return self._loss(self.model(**inputs), batch[target_key])

    def _loss(self, output: Any, target: Any) -> torch.Tensor:
        carried = own_loss(output)
        if carried is not None and self.loss_fn is None:
            self.loss_name = "the model's own loss"
            return carried
        if target is None:
            raise ValueError(
                "cannot find a loss: the batch has no target (a last tuple element or a "
                f"{'/'.join(TARGET_KEYS)} key) and the model output carries no loss; pass "
                "step_fn=lambda model, batch: loss"
            )
        loss_fn = self.loss_fn or self._inferred
        if loss_fn is None:
            loss_fn, self.loss_name = infer_loss_fn(prediction_of(output), target)
            self._inferred = loss_fn
        return loss_fn(prediction_of(output) if self.loss_fn is None else output, target)

    def _model_accepts(self, name: str) -> bool:
        if name not in self._accepts:
            module = getattr(self.model, "module", self.model)  # look through DDP / DataParallel
            try:
                parameters = inspect.signature(module.forward).parameters
            except (TypeError, ValueError):
                parameters = {}  # type: ignore[assignment]
            self._accepts[name] = name in parameters
        return self._accepts[name]


def check_scalar_loss(loss: Any, source: str, require_grad: bool = True) -> torch.Tensor:
    """Return ``loss`` as a 0-d tensor, or raise naming ``source`` if it is not a scalar tensor."""
    if type(loss) is torch.Tensor and loss.dim() == 0 and (loss.requires_grad or not require_grad):
        return loss  # what every step of a working sweep returns: one test, then done
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{source} must return a scalar tensor, got a {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"{source} must return a scalar (one-element) loss tensor, got shape "
            f"{tuple(loss.shape)}; reduce it, e.g. with reduction='mean'"
        )
    if require_grad and not loss.requires_grad:
        raise ValueError(
            f"{source} returned a loss that does not require grad: it does not depend on the "
            "model's trainable parameters (or was computed under torch.no_grad())"
        )
    return loss if loss.dim() == 0 else loss.reshape(())  # a view would add a graph node


def _name_of(function: Callable[..., Any]) -> str:
    return getattr(function, "__name__", None) or type(function).__name__
