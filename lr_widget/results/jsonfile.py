"""Strict-JSON documents: the one place where saved files are read, checked and dispatched.

Results, repeated results, comparisons and curvature estimates are saved as strict JSON: no
``NaN`` literals (non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``), never a pickle. Every document starts with ``{"format": ..., "version": ...}``;
:func:`document_from_dict` checks that header once for every kind and hands the rest to the
kind's ``_from_fields``. Loading a file someone sent you parses text and runs no code: a pickle
renamed ``.json``, a truncated file, a ``NaN`` literal or a field of the wrong type is refused
with a :class:`DocumentError` that says which. Reading is bounded too: only regular files (not a
FIFO that never ends, not a link to ``/dev/zero``), at most :data:`MAX_DOCUMENT_BYTES`, nested at
most :data:`MAX_NESTING` levels deep.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from typing_extensions import Self

Document = TypeVar("Document", bound="JsonDocument")

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
MAX_DOCUMENT_BYTES = 64 * 2**20
"""The largest file read as a document (a 10,000-step sweep repeated 10 times is ~4 MiB)."""
MAX_NESTING = 64
"""The deepest nesting of objects and lists a document may have."""
_UTF8_BOM = b"\xef\xbb\xbf"
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
    lr_widget.results.jsonfile.DocumentError: the document is not strict JSON: it holds the literal
    NaN ...
    """
    if isinstance(content, bytes):
        content = content.removeprefix(_UTF8_BOM)  # Windows editors write one; it is UTF-8 still
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
    content = content.removeprefix("\ufeff")
    try:
        parsed = json.loads(content, parse_constant=_refuse_constant)
    except RecursionError:
        raise DocumentError(f"{source} is nested too deeply to be an lr_widget document") from None
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
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise DocumentError(f"{source} is not an lr_widget document: {error}") from None
    if _nesting(parsed) > MAX_NESTING:
        raise DocumentError(
            f"{source} is nested more than {MAX_NESTING} levels deep, deeper than any lr_widget "
            "document"
        )
    return parsed


def _nesting(value: Any) -> int:
    """How deeply objects and lists nest in ``value`` (0 for a plain value), iteratively."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


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
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= kind.format_version
    ):
        shown = repr(version) if len(repr(version)) < 40 else f"{repr(version)[:37]}..."
        raise DocumentError(
            f"unsupported {kind.document_kind} version {shown}; this lr_widget reads versions "
            f"1 to {kind.format_version}"
        )
    try:
        return kind._from_fields(data)
    except (OverflowError, RecursionError, TypeError, AttributeError) as error:
        raise DocumentError(f"a field of the {kind.document_kind} is unusable: {error}") from None


def load_document(path: str | os.PathLike[str], kinds: Sequence[type[Document]]) -> Document:
    """Read the document saved at ``path``, of one of ``kinds`` (see :func:`document_from_dict`).

    Raises ``FileNotFoundError``/``OSError`` when the file cannot be read, and
    :class:`DocumentError` (a ``ValueError``) naming the file when its content is not a document
    of those kinds.
    """
    file = Path(path)
    content = read_bounded(file)
    try:
        return document_from_dict(parse_document(content, f"{file.name}"), kinds)
    except (TypeError, ValueError) as error:  # a field check of the kind, or the header's
        if isinstance(error, DocumentError) and str(error).startswith(file.name):
            raise
        raise DocumentError(f"{file.name}: {error}") from error


def read_bounded(file: Path, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of ``file``, if it is a regular file of at most ``limit`` bytes.

    Opened without blocking (a FIFO would wait for a writer forever) and checked before reading
    (a link to ``/dev/zero`` never ends); :class:`DocumentError` otherwise.
    """
    descriptor = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(f"{file.name} is not a regular file ({_file_kind(info.st_mode)})")
        if info.st_size > limit:
            raise DocumentError(
                f"{file.name} is {info.st_size:,} bytes; lr_widget reads documents of at most "
                f"{limit:,} bytes"
            )
        content = handle.read(limit + 1)
    if len(content) > limit:  # it grew while being read
        raise DocumentError(f"{file.name} is over {limit:,} bytes")
    return content


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a device",
             stat.S_ISBLK: "a device", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


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
            try:
                decoded.append(float(value))
            except OverflowError:
                raise DocumentError(f"{name} holds a number too large for a float") from None
        else:
            shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:37]}..."
            raise DocumentError(f"{name} must hold numbers, got {shown}")
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
