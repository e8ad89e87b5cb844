"""Strict-JSON documents: the one place where saved files are read, checked and dispatched.

Results, repeated results, comparisons and curvature estimates are saved as strict JSON: no
``NaN`` literals (non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``), never a pickle. Every document starts with ``{"format": ..., "version": ...}``;
:func:`document_from_dict` checks that header once for every kind and hands the rest to the
kind's ``_from_fields``. Loading a file someone sent you parses text and runs no code: a pickle
renamed ``.json``, a truncated file, a ``NaN`` literal or a field of the wrong type is refused
with a :class:`DocumentError` that says which.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from typing_extensions import Self

__all__ = [
    "DocumentError",
    "JsonDocument",
    "decode_floats",
    "decode_tree",
    "document_from_dict",
    "encode_float",
    "encode_floats",
    "encode_tree",
    "load_document",
    "parse_document",
    "require_mapping",
]

Document = TypeVar("Document", bound="JsonDocument")

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# The first byte of every pickle since protocol 2.
_PICKLE_PROTOCOL_BYTE = 0x80
# Protocols 0 and 1 start with an opcode (MARK, EMPTY_DICT, EMPTY_LIST, GLOBAL) that no JSON text
# starts with, and every pickle ends with the STOP opcode "."; no JSON text ends with it.
_OLD_PICKLE_STARTS = (b"(", b"}", b"]", b"c")


class DocumentError(ValueError):
    """A saved document that cannot be read: not JSON, not strict JSON, or not the kind asked."""


class JsonDocument:
    """Base of every saved document: header, strict-JSON text, files.

    A subclass names its ``format_name``, ``format_version`` and ``document_kind`` (for
    messages) and implements ``_to_fields`` and ``_from_fields``; this class adds the header,
    checks it on the way back in, and gives :meth:`to_json`, :meth:`from_json`, :meth:`save`
    and :meth:`load`.
    """

    format_name: ClassVar[str]
    format_version: ClassVar[int]
    document_kind: ClassVar[str]

    def _to_fields(self) -> dict[str, Any]:
        """The document's own fields as strict-JSON-safe values."""
        raise NotImplementedError

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from a header-checked mapping, checking every field's type."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dictionary: the header, then the document's fields."""
        return {"format": self.format_name, "version": self.format_version, **self._to_fields()}

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Rebuild a document from :meth:`to_dict`'s output, checking its header and shape."""
        return document_from_dict(data, (cls,))

    def to_json(self, indent: int | None = 1) -> str:
        """Strict JSON text (no NaN literals)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Parse :meth:`to_json`'s output. Plain JSON parsing: it never runs code."""
        return document_from_dict(parse_document(text), (cls,))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the document as JSON to ``path`` and return the path."""
        target = Path(path)
        target.write_text(self.to_json(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a document saved with :meth:`save`."""
        return load_document(path, (cls,))


def parse_document(content: str | bytes, source: str = "the document") -> Any:
    """Parse strict JSON, refusing pickles, non-UTF-8 bytes and ``NaN``/``Infinity`` literals.

    >>> parse_document('{"lrs": [NaN]}')
    Traceback (most recent call last):
        ...
    lr_widget.jsonfile.DocumentError: the document is not strict JSON: it holds the literal NaN ...
    """
    if isinstance(content, bytes):
        if content[:1] == bytes([_PICKLE_PROTOCOL_BYTE]) or _old_pickle(content):
            raise DocumentError(
                f"{source} is a Python pickle, not JSON; lr_widget never loads pickles (loading "
                "one can run any code)"
            )
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"{error.reason} at byte {error.start}"
            raise DocumentError(f"{source} is not UTF-8 text: {reason}") from None
    try:
        return json.loads(content, parse_constant=_refuse_constant)
    except _NonStrictJsonError as error:
        raise DocumentError(
            f"{source} is not strict JSON: it holds the literal {error} (lr_widget writes "
            'non-finite numbers as the strings "NaN", "Infinity", "-Infinity")'
        ) from None
    except json.JSONDecodeError as error:
        # Every saved document is one object: text that does not end with its brace was cut.
        damage = "" if content.rstrip().endswith(("}", "]")) else " (truncated?)"
        raise DocumentError(
            f"{source} is not valid JSON{damage}: {error.msg} (line {error.lineno}, column "
            f"{error.colno})"
        ) from None


def _old_pickle(content: bytes) -> bool:
    """Whether ``content`` looks like a protocol 0 or 1 pickle (it cannot be JSON either way)."""
    return content[:1] in _OLD_PICKLE_STARTS and content.rstrip().endswith(b".")


class _NonStrictJsonError(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonStrictJsonError(name)


def document_from_dict(data: Any, kinds: Sequence[type[Document]]) -> Document:
    """Rebuild a document of one of ``kinds``, chosen by its ``"format"`` field.

    The header check, for every kind: ``data`` must be a JSON object whose format is one of
    ``kinds``' and whose version this lr_widget reads.
    """
    by_format = {kind.format_name: kind for kind in kinds}
    found = data.get("format") if isinstance(data, Mapping) else None
    kind = by_format.get(found) if isinstance(found, str) else None
    if kind is None:
        formats = " or ".join(repr(name) for name in by_format)
        got = f"format {found!r}" if isinstance(data, Mapping) else f"a {type(data).__name__}"
        what = kinds[0].document_kind if len(kinds) == 1 else "result"
        raise DocumentError(f"not an lr_widget {what} (expected format {formats}, got {got})")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version > kind.format_version:
        raise DocumentError(
            f"unsupported {kind.document_kind} version {version!r}; this lr_widget reads versions "
            f"up to {kind.format_version}"
        )
    return kind._from_fields(data)


def load_document(path: str | os.PathLike[str], kinds: Sequence[type[Document]]) -> Document:
    """Read the document saved at ``path``, of one of ``kinds`` (see :func:`document_from_dict`).

    Raises ``FileNotFoundError``/``OSError`` when the file cannot be read, and
    :class:`DocumentError` (a ``ValueError``) naming the file when its content is not a document
    of those kinds.
    """
    file = Path(path)
    content = file.read_bytes()
    try:
        return document_from_dict(parse_document(content, f"{file.name}"), kinds)
    except (TypeError, ValueError) as error:  # a field check of the kind, or the header's
        if isinstance(error, DocumentError) and str(error).startswith(file.name):
            raise
        raise DocumentError(f"{file.name}: {error}") from error


# -- values -----------------------------------------------------------------------------------
def encode_float(value: float) -> float | str:
    """A float as strict JSON: itself if finite, else ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def encode_floats(values: Sequence[float]) -> list[float | str]:
    """Every value through :func:`encode_float`."""
    return [encode_float(value) for value in values]


def decode_floats(values: Any, name: str) -> list[float]:
    """A JSON list of numbers (non-finite ones as strings) back to floats; ``name`` for errors."""
    if not isinstance(values, list):
        raise DocumentError(f"{name} must be a list of numbers, got {type(values).__name__}")
    decoded = []
    for value in values:
        if isinstance(value, str) and value in _NON_FINITE:
            decoded.append(_NON_FINITE[value])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            decoded.append(float(value))
        else:
            raise DocumentError(f"{name} must hold numbers, got {value!r}")
    return decoded


def encode_tree(value: Any) -> Any:
    """Nested dicts and lists made strict-JSON-safe (non-finite floats and unknown objects as
    strings)."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {str(key): encode_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_tree(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def decode_tree(value: Any) -> Any:
    """The inverse of :func:`encode_tree` for non-finite floats."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, Mapping):
        return {key: decode_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_tree(item) for item in value]
    return value


def require_mapping(value: Any, name: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else a :class:`DocumentError` naming ``name``."""
    if not isinstance(value, Mapping):
        raise DocumentError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value
