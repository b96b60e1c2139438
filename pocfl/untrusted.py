"""Untrusted input: screen JSON before parsing it, quote text before echoing it.

Everything a trainer, the chain or the content store hands us is untrusted: update headers, manifests, round
reports, hyper-parameters, proofs, IPFS node answers. Two rules keep such input from crashing or bloating a
round:

- **JSON is screened before it is parsed** (:func:`screen_json`, :func:`loads_untrusted`). CPython's JSON
  decoder recurses once per nesting level and only stops at ``sys.getrecursionlimit()``; py_ecc raises that
  limit to 100,000 on import, so a 200 KB document of nested brackets overflows the C stack (a segmentation
  fault, not an exception). The screen measures size and nesting depth in one linear, non-recursive pass
  (strings skipped by a regular expression, brackets summed with numpy), whatever the recursion limit is.
- **Untrusted text is quoted, never echoed** (:func:`quote`, :func:`clip`): at most a fixed number of
  printable ASCII characters, with non-ASCII and control characters escaped and an ellipsis marker where it
  was cut. A message, a rejection reason or a report field is then bounded by the code, not by the input.
"""

from __future__ import annotations

import json
import re
import reprlib
from typing import Any

import numpy as np

from pocfl.errors import PocflError

DEFAULT_MAX_DEPTH = 32
"""Deepest nesting accepted by default: far above any pocfl document, far below the C stack's reach."""

QUOTE_LIMIT = 80
"""Most characters :func:`quote` renders of one untrusted value."""

ELLIPSIS = "..."
"""Marks where :func:`clip` cut a text."""

_CHUNK = 1 << 16  # bytes of brackets summed at once: bounds the scan's own memory (8 bytes each)
# A JSON string: a quote, runs of plain characters and escape pairs, a quote. Possessive quantifiers never
# backtrack, so one string costs time linear in its length (``re`` keeps no recursion of its own).
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 opens, -1 (as int8) closes
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class UntrustedJsonError(PocflError, ValueError):
    """Untrusted JSON was refused before or while parsing (a ``ValueError``, as ``json.loads`` raises)."""


class JsonTooLargeError(UntrustedJsonError):
    """The document is longer than the caller's size limit."""


class JsonTooDeepError(UntrustedJsonError):
    """The document nests arrays and objects deeper than the caller's depth limit."""


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")  # brackets and quotes are ASCII in any case
    return bytes(data)


def json_depth(data: bytes | bytearray | memoryview | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text, brackets inside strings not counted.

    Linear time, no recursion: strings are cut out by a regular expression, every other byte but brackets is
    dropped, and the running sum of ``+1`` (open) and ``-1`` (close) is taken in chunks. Unbalanced or
    otherwise invalid text still gets a number (the parser refuses it afterwards); an unterminated string
    counts its brackets, which can only make the screen stricter.
    """
    skeleton = _STRING.sub(b"", _as_bytes(data)).translate(_STEPS, _NOT_BRACKETS)
    deepest = level = 0
    for start in range(0, len(skeleton), _CHUNK):
        steps = np.frombuffer(skeleton, dtype=np.int8, count=min(_CHUNK, len(skeleton) - start), offset=start)
        levels = np.cumsum(steps, dtype=np.int64) + level
        deepest = max(deepest, int(levels.max()))
        level = int(levels[-1])
    return deepest


def _check_size(size: int, max_size: int, what: str) -> None:
    if size > max_size:
        raise JsonTooLargeError(f"{what} is {size} bytes, over the limit of {max_size} bytes")


def screen_json(
    data: bytes | bytearray | memoryview | str, *, max_size: int, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "JSON"
) -> None:
    """Refuse a JSON text that is too large or too deeply nested to parse safely; call before parsing.

    Parameters
    ----------
    data
        The untrusted text: UTF-8 bytes (decode anything else first: the scan reads bytes) or a ``str``;
        ``max_size`` counts its UTF-8 bytes.
    max_size
        Most bytes accepted.
    max_depth
        Most nested levels of arrays and objects accepted (``{}`` is 1, ``{"a":[]}`` is 2).
    what
        Names the document in messages (``"header"``, ``"the project manifest"``).

    Raises
    ------
    JsonTooLargeError, JsonTooDeepError
        Over a limit; the message gives the figures, never the content.
    """
    if isinstance(data, str):
        _check_size(len(data), max_size, what)  # a character is at least one byte: refuse before encoding
        size = len(data.encode("utf-8", "surrogatepass"))
    else:
        size = memoryview(data).nbytes
    _check_size(size, max_size, what)
    depth = json_depth(data)
    if depth > max_depth:
        raise JsonTooDeepError(f"{what} nests JSON {depth} levels deep, more than the {max_depth} allowed")


def loads_untrusted(
    data: bytes | bytearray | memoryview | str,
    *,
    max_size: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "JSON",
    **decoder: Any,
) -> Any:
    """``json.loads`` of untrusted text after :func:`screen_json`; every failure is an :class:`UntrustedJsonError`.

    Parameters
    ----------
    decoder
        Passed to ``json.loads`` (``object_pairs_hook``, ``parse_constant``...). An exception a hook raises
        on purpose (a ``PocflError``) goes through unchanged.

    Raises
    ------
    JsonTooLargeError, JsonTooDeepError
        See :func:`screen_json`.
    UntrustedJsonError
        Not valid JSON, or not UTF-8.
    """
    if isinstance(data, str):
        text = data
    else:
        # JSON from the network is UTF-8; json.loads would also guess UTF-16/32, where a bracket byte can hide
        # inside another character, so anything else is refused before the byte-level screen.
        _check_size(memoryview(data).nbytes, max_size, what)
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedJsonError(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    screen_json(text if isinstance(data, str) else data, max_size=max_size, max_depth=max_depth, what=what)
    try:
        return json.loads(text, **decoder)
    except PocflError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int() of a huge literal
        raise UntrustedJsonError(f"{what} is not JSON: {clip(str(exc), 2 * QUOTE_LIMIT)}") from exc


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def clip(text: str, limit: int) -> str:
    r"""``text`` as at most ``limit`` printable ASCII characters: others escaped (``\xe9``), cut with ``...``.

    Reads only the first ``limit`` characters, so it is cheap on any input. Printable ASCII text of at most
    ``limit`` characters comes back unchanged (so clipping twice is clipping once).
    """
    escaped = _UNPRINTABLE.sub(_escape, text[: limit + 1])
    if len(escaped) <= limit and len(text) <= limit:
        return escaped
    return escaped[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def _bounded_repr(limit: int) -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 2, 4, 6, 6, 6
    r.maxstring = r.maxother = r.maxlong = limit
    return r


_REPR = _bounded_repr(QUOTE_LIMIT)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A ``repr``-like rendering of an untrusted value for a message: bounded, ASCII, escaped.

    Strings keep their quotes (``'fc1.weight'``); long strings, lists and dicts are abridged; the result has at
    most ``limit`` characters. Use it wherever a message would say ``{value!r}`` of something read from input.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value[: limit + 1])
    return clip(_REPR.repr(value), limit)


def load_document(
    data: bytes | bytearray | memoryview | str,
    fmt: str,
    noun: str,
    error: type[PocflError],
    *,
    max_size: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> dict[str, Any]:
    """An untrusted pocfl JSON document: :func:`loads_untrusted`, then an object whose ``format`` is ``fmt``.

    Parameters
    ----------
    fmt
        The ``format`` value expected.
    noun
        What the document is (``"round report"``), for the messages.
    error
        Raised, with the message, on every failure.
    """
    try:
        raw: Any = loads_untrusted(data, max_size=max_size, max_depth=max_depth, what=f"the {noun}")
    except UntrustedJsonError as exc:
        raise error(str(exc)) from exc
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise error(f"not a pocfl {noun} (format {quote(got)}, expected {fmt!r})")
    return raw


__all__ = [
    "DEFAULT_MAX_DEPTH",
    "ELLIPSIS",
    "QUOTE_LIMIT",
    "JsonTooDeepError",
    "JsonTooLargeError",
    "UntrustedJsonError",
    "clip",
    "json_depth",
    "load_document",
    "loads_untrusted",
    "quote",
    "screen_json",
]
