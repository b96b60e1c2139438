"""Atomic file writes: the one place pocfl replaces a file (records, journals, keys, fetched objects).

A write goes to a unique temporary file in the destination's folder (same file system, so the rename is atomic),
created with its final mode (never widened after the secret is in it), is fsynced, then renamed over the
destination. Readers see the old file or the new one, never half of one; on any failure the temporary file is
removed and the destination is untouched. ``exclusive=True`` publishes with a hard link instead of a rename, which
fails when the destination exists (no check-then-write race): nothing is ever overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_writer", "publish_file", "write_bytes_atomic", "write_json_atomic"]

PRIVATE = 0o600
"""Mode of files only their owner may read (keys, journals)."""
PUBLIC = 0o644
"""Mode of files anyone may read (deployment records, manifests)."""


def publish_file(tmp: str | Path, dest: Path, *, exclusive: bool = False) -> None:
    """Move the complete file ``tmp`` to ``dest`` (same file system) atomically.

    Raises
    ------
    FileExistsError
        ``exclusive`` and ``dest`` exists; ``tmp`` is left for the caller to remove.
    """
    if not exclusive:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)  # atomic create-if-absent: EEXIST instead of a silent overwrite
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FUSE file systems): reserve the name, then rename
        os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(dest)  # the empty placeholder is ours
            raise
        return
    os.unlink(tmp)


@contextmanager
def atomic_writer(path: str | Path, *, mode: int = PUBLIC, exclusive: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` when the block exits normally.

    Parameters
    ----------
    path
        Destination; its folder is created if missing.
    mode
        Permissions of the new file, set on the empty file before anything is written (umask does not apply).
    exclusive
        Refuse to replace an existing ``path`` (:class:`FileExistsError`, raised at publication).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            if mode != PRIVATE and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish_file(tmp, dest, exclusive=exclusive)
    finally:
        Path(tmp).unlink(missing_ok=True)  # already gone after a successful publication


def write_bytes_atomic(path: str | Path, data: bytes, *, mode: int = PUBLIC, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`); returns ``path``."""
    with atomic_writer(path, mode=mode, exclusive=exclusive) as f:
        f.write(data)
    return Path(path)


def write_json_atomic(
    path: str | Path,
    document: Any,
    *,
    mode: int = PUBLIC,
    exclusive: bool = False,
    indent: int | None = 2,
    sort_keys: bool = False,
) -> Path:
    """Write ``document`` as JSON (plus a newline) to ``path`` atomically; serialised before any file is made."""
    text = json.dumps(document, indent=indent, sort_keys=sort_keys) + "\n"
    return write_bytes_atomic(path, text.encode(), mode=mode, exclusive=exclusive)
