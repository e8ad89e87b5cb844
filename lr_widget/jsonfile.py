"""Strict-JSON documents: text and files for any class with ``to_dict`` / ``from_dict``.

Results, repeated results and comparisons are saved as strict JSON (no ``NaN`` literals, no
pickles): loading a file someone sent you parses text and runs no code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from typing_extensions import Self

__all__ = ["JsonDocument"]


class JsonDocument:
    """Mixin: :meth:`to_json`, :meth:`from_json`, :meth:`save` and :meth:`load` built on the
    subclass's ``to_dict`` and ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dictionary of the document."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a document from :meth:`to_dict`'s output, checking its shape."""
        raise NotImplementedError

    def to_json(self, indent: int | None = 1) -> str:
        """Strict JSON text (no NaN literals)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Parse :meth:`to_json`'s output. Plain JSON parsing: it never runs code."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the document as JSON to ``path`` and return the path."""
        target = Path(path)
        target.write_text(self.to_json(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a document saved with :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
