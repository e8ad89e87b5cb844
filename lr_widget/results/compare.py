"""Several range tests side by side: a labelled collection, its table, and its JSON file.

A :class:`Comparison` holds single runs (:class:`~lr_widget.results.range_test.RangeTestResult`) and
repeated ones (:class:`~lr_widget.results.repeated.RepeatedRangeTest`) under unique labels, in
order; the widget's "keep this run" adds to it and "clear" empties it. Each entry draws as a
:class:`~lr_widget.results.spread.NoiseBand` (a single run is a band of zero width), so one drawing
path serves both kinds. Results from different sweeps need not share an LR grid.

Files are strict JSON; :func:`load_result` reads either result kind by its ``"format"`` field,
and loading parses JSON only: it never runs code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from typing_extensions import Self

from lr_widget.results.jsonfile import DocumentError, JsonDocument
from lr_widget.results.loading import load_result, result_from_dict
from lr_widget.results.protocol import SweepResult
from lr_widget.results.spread import NoiseBand
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.registry import DEFAULT_RULE

COMPARISON_FORMAT_NAME = "lr_widget.comparison"
COMPARISON_FORMAT_VERSION = 1

AnyResult = SweepResult
"""A single or a repeated result (the :class:`~lr_widget.results.protocol.SweepResult` protocol)."""


@dataclass(frozen=True)
class ComparisonRow:
    """One line of :meth:`Comparison.table`: a label's default suggestion.

    ``low_lr``/``high_lr`` are the range of the runs' picks for a repeated result, else ``None``.
    """

    label: str
    runs: int
    suggestion: Suggestion
    low_lr: float | None
    high_lr: float | None
    stop: str

    def __str__(self) -> str:
        pick = "no suggestion" if self.suggestion.lr is None else f"{self.suggestion.lr:.2e}"
        spread = ""
        if self.low_lr is not None and self.high_lr is not None:
            spread = f" ({self.low_lr:.1e} to {self.high_lr:.1e})"
        runs = "1 run" if self.runs == 1 else f"{self.runs} runs"
        return f"{self.label}: {self.suggestion.rule} {pick}{spread}, {runs}, {self.stop}"


class Comparison(JsonDocument):
    """Labelled range-test results, in order, with unique labels.

    Parameters
    ----------
    results
        Single (:class:`RangeTestResult`) or repeated (:class:`RepeatedRangeTest`) results.
    labels
        One per result; ``None`` labels them ``"run 1"``, ``"run 2"``...

    Examples
    --------
    >>> from lr_widget import RangeTestResult
    >>> a = RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.0, 0.5])
    >>> b = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.9, 0.4])
    >>> comparison = Comparison([a], labels=["sgd"])
    >>> comparison.add(b, "adam")
    'adam'
    >>> comparison.labels
    ['sgd', 'adam']
    >>> Comparison.from_json(comparison.to_json()).labels
    ['sgd', 'adam']
    """

    format_name: ClassVar[str] = COMPARISON_FORMAT_NAME
    format_version: ClassVar[int] = COMPARISON_FORMAT_VERSION
    document_kind: ClassVar[str] = "comparison"

    def __init__(
        self, results: Iterable[AnyResult] = (), labels: Sequence[str] | None = None
    ) -> None:
        self._entries: list[tuple[str, AnyResult]] = []
        results = list(results)
        if labels is not None and len(labels) != len(results):
            raise ValueError(
                f"labels must have one entry per result, got {len(labels)} labels for "
                f"{len(results)} results"
            )
        for index, result in enumerate(results):
            self.add(result, None if labels is None else labels[index])

    # -- the collection ---------------------------------------------------------------------
    def add(self, result: AnyResult, label: str | None = None) -> str:
        """Append ``result`` under ``label`` (default: the next free ``"run N"``); return the
        label."""
        if not isinstance(result, SweepResult):
            raise TypeError(
                f"result must be a RangeTestResult or RepeatedRangeTest, got "
                f"{type(result).__name__}"
            )
        label = self._free_label() if label is None else label
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label must be a non-empty string, got {label!r}")
        if label in self.labels:
            raise ValueError(f"label {label!r} is already used; labels are {self.labels}")
        self._entries.append((label, result))
        return label

    def remove(self, key: str | int) -> AnyResult:
        """Remove and return the entry with label ``key`` (or at position ``key``)."""
        index = self._index(key)
        return self._entries.pop(index)[1]

    def clear(self) -> None:
        """Remove every entry."""
        self._entries.clear()

    @property
    def labels(self) -> list[str]:
        """The labels, in order."""
        return [label for label, _ in self._entries]

    @property
    def results(self) -> list[AnyResult]:
        """The results, in order."""
        return [result for _, result in self._entries]

    def items(self) -> list[tuple[str, AnyResult]]:
        """``(label, result)`` pairs, in order."""
        return list(self._entries)

    def __getitem__(self, key: str | int) -> AnyResult:
        return self._entries[self._index(key)][1]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, AnyResult]]:
        return iter(list(self._entries))

    def _index(self, key: str | int) -> int:
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(self._entries) <= key < len(self._entries):
                raise IndexError(f"index {key} is out of range for {len(self)} entries")
            return key % len(self._entries)
        if key not in self.labels:
            raise KeyError(f"no entry labelled {key!r}; labels are {self.labels}")
        return self.labels.index(key)

    def _free_label(self) -> str:
        number = len(self._entries) + 1
        while f"run {number}" in self.labels:
            number += 1
        return f"run {number}"

    # -- reading ----------------------------------------------------------------------------
    def bands(self) -> dict[str, NoiseBand]:
        """Each entry as a band to draw (zero width, ``count`` 1, for a single run)."""
        return {label: result.band() for label, result in self._entries}

    def suggestions(self, rule: str = DEFAULT_RULE) -> dict[str, Suggestion]:
        """Each entry's ``rule`` suggestion (the robust pick for a repeated result)."""
        return {label: result.suggest(rule) for label, result in self._entries}

    def table(self, rule: str = DEFAULT_RULE) -> list[ComparisonRow]:
        """One row per entry: its ``rule`` suggestion and, for repeats, the picks' range."""
        return [_row(label, result, rule) for label, result in self._entries]

    def summary(self, rule: str = DEFAULT_RULE) -> str:
        """The table as text, one entry per line."""
        if not self._entries:
            return "Comparison(empty)"
        return "\n".join([repr(self), *(f"  {row}" for row in self.table(rule))])

    def __repr__(self) -> str:
        return f"Comparison({len(self)} results: {', '.join(self.labels)})"

    # -- serialisation ----------------------------------------------------------------------
    def _to_fields(self) -> dict[str, Any]:
        """Every entry's label and ``result.to_dict()``."""
        return {
            "entries": [
                {"label": label, "result": result.to_dict()} for label, result in self._entries
            ],
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Self:
        entries = data.get("entries")
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise DocumentError("entries must be a list of {'label': ..., 'result': ...} objects")
        labels = [entry.get("label") for entry in entries]
        results = [result_from_dict(entry.get("result", {})) for entry in entries]
        return cls(results, labels)  # add() checks each label

    @classmethod
    def from_paths(
        cls, paths: Iterable[str | os.PathLike[str]], labels: Sequence[str] | None = None
    ) -> Comparison:
        """Compare result files of either kind; labels default to the file names' stems."""
        files = [Path(path) for path in paths]
        names = [file.stem for file in files] if labels is None else labels
        return cls([load_result(file) for file in files], names)


def _row(label: str, result: AnyResult, rule: str) -> ComparisonRow:
    spread = result.spreads().get(rule)
    stops = sorted({str(run.stop_reason) for run in result.runs})
    return ComparisonRow(
        label,
        len(result.runs),
        result.suggest(rule),
        None if spread is None else spread.low_lr,
        None if spread is None else spread.high_lr,
        "/".join(stops) or "no runs",
    )
