"""Reading a saved result of either kind, single or repeated, by the format name in its file."""

from __future__ import annotations

import os
from typing import Any

from lr_widget.results.jsonfile import document_from_dict, load_document
from lr_widget.results.protocol import SweepResult
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest

RESULT_KINDS: tuple[type[SweepResult], ...] = (RangeTestResult, RepeatedRangeTest)
"""The kinds of saved result :func:`load_result` reads."""


def result_from_dict(data: Any) -> SweepResult:
    """Rebuild a single or repeated result from its ``to_dict()`` output, by its format name."""
    return document_from_dict(data, RESULT_KINDS)


def load_result(path: str | os.PathLike[str]) -> SweepResult:
    """Read a result file saved by either result kind's ``save()``: JSON only, never a pickle."""
    return load_document(path, RESULT_KINDS)
