"""The circuit cache: compiled circuits and keys, trusted only when they are the user's own and hash as recorded.

A cached circuit decides what the auditor recomputes and what the aggregator proves, so a file planted in the
cache would be trusted as the project's circuit. The rules:

- **Location.** By default ``<state dir>/zk`` (``$POCFL_HOME/zk``, else ``./.pocfl/zk``): the same folder as
  ``pocfl deploy --with-verifier`` and ``pocfl aggregate`` use, never a shared folder under the system temp dir.
- **Folder.** Created with mode 0700. A cache folder, entry folder or file that is not owned by the current user,
  is a symbolic link, or is writable by group or others is refused with :class:`UnsafeCacheError` (nothing in it
  is read; the caller decides whether to fail or compile into a private temporary folder instead).
- **Content.** Every entry (one folder per circuit) has a ``manifest.json`` with the sha256 of each of its files,
  written when the entry is built. On reuse every file is hashed again; a missing manifest, a missing file or a
  mismatch makes the entry unusable (:class:`Lookup` says which), and the caller rebuilds it or refuses.

Everything here works on plain files, so it is tested without ezkl.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pocfl.deployment import state_dir
from pocfl.errors import PocflError
from pocfl.fsutil import PRIVATE, write_json_atomic

__all__ = [
    "MANIFEST",
    "Lookup",
    "UnsafeCacheError",
    "check_entry",
    "default_cache_dir",
    "record_entry",
    "secure_dir",
    "sha256_file",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "pocfl-zk-cache/1"
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


class UnsafeCacheError(PocflError):
    """A cache folder or file another user could have written (wrong owner, group/world-writable, a symlink)."""


class Lookup(enum.Enum):
    """What :func:`check_entry` found."""

    HIT = "verified"
    """Every file is present, private and hashes as the manifest records."""
    MISSING = "missing"
    """No entry, or an incomplete one."""
    UNRECORDED = "no manifest"
    """Every file is present and private, but there is no manifest (an entry from before manifests)."""
    MISMATCH = "hash mismatch"
    """A file differs from its recorded hash, or the manifest is malformed or names other files."""


@dataclass(frozen=True)
class EntryCheck:
    """The outcome of :func:`check_entry`, with a reason for anything but a hit."""

    status: Lookup
    reason: str = ""


def default_cache_dir() -> Path:
    """``<state dir>/zk``: the user's own circuit cache (the state dir is ``$POCFL_HOME``, else ``./.pocfl``)."""
    return state_dir() / "zk"


def _check_owned(path: Path, st: os.stat_result, kind: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCacheError(f"circuit cache {kind} {path} is a symbolic link; refusing to trust it")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeCacheError(
            f"circuit cache {kind} {path} belongs to user {st.st_uid}, not to you ({os.getuid()}): "
            "use a folder of your own (--zk-cache DIR or $POCFL_HOME)"
        )
    if st.st_mode & _WRITABLE_BY_OTHERS:
        raise UnsafeCacheError(
            f"circuit cache {kind} {path} has mode {stat.S_IMODE(st.st_mode):04o}, writable by others; "
            f"run: chmod go-w {path}"
        )


def secure_dir(path: Path) -> Path:
    """Create the cache folder (mode 0700) if missing, and check that only its owner, the current user, can write it.

    Raises
    ------
    UnsafeCacheError
        It is a symlink, belongs to someone else, is group/world-writable, or is not a folder.
    """
    with contextlib.suppress(FileExistsError):  # a file there is refused below
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the mode applies to the cache folder itself
    st = path.lstat()
    _check_owned(path, st, "folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCacheError(f"circuit cache {path} is not a folder")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed (proving keys are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def record_entry(directory: Path, files: Iterable[str]) -> dict[str, str]:
    """Make an entry's files private to their owner and record their sha256 in its manifest (mode 0600).

    Called on a freshly built entry (before it is renamed into the cache). Returns the recorded hashes.
    """
    os.chmod(directory, 0o700)
    hashes: dict[str, str] = {}
    for name in files:
        path = directory / name
        os.chmod(path, stat.S_IMODE(path.lstat().st_mode) & ~_WRITABLE_BY_OTHERS)  # ezkl's files follow the umask
        hashes[name] = sha256_file(path)
    write_json_atomic(directory / MANIFEST, {"format": MANIFEST_FORMAT, "sha256": hashes}, mode=PRIVATE)
    return hashes


def _recorded(directory: Path) -> dict[str, str] | None:
    """The manifest's hashes; None when it is malformed."""
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    hashes = data.get("sha256") if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        return None
    return {str(k): v for k, v in hashes.items()}


def check_entry(directory: Path, files: Iterable[str], *, expect: Mapping[str, str] | None = None) -> EntryCheck:
    """Whether the cache entry ``directory`` holds ``files`` exactly as its manifest recorded them.

    Parameters
    ----------
    directory
        The entry folder (inside a folder :func:`secure_dir` accepted).
    files
        The files the entry must have.
    expect
        Hashes some files must have whatever the manifest says (the entry's key, e.g. the published settings).

    Raises
    ------
    UnsafeCacheError
        The entry, its manifest or one of its files is not the user's own, or is writable by others.
    """
    names = list(files)
    try:
        _check_owned(directory, directory.lstat(), "entry")
    except FileNotFoundError:
        return EntryCheck(Lookup.MISSING, f"no entry {directory}")
    for name in [*names, MANIFEST]:
        try:
            st = (directory / name).lstat()
        except FileNotFoundError:
            if name == MANIFEST:
                return EntryCheck(Lookup.UNRECORDED, f"{directory} has no {MANIFEST}")
            return EntryCheck(Lookup.MISSING, f"{directory} lacks {name}")
        _check_owned(directory / name, st, "file")
        if not stat.S_ISREG(st.st_mode):
            return EntryCheck(Lookup.MISMATCH, f"{directory / name} is not a regular file")
    recorded = _recorded(directory)
    if recorded is None or sorted(recorded) != sorted(names):
        return EntryCheck(Lookup.MISMATCH, f"{directory / MANIFEST} is malformed or names other files")
    for name in names:
        actual = sha256_file(directory / name)
        if actual != recorded[name] or (expect is not None and name in expect and actual != expect[name]):
            return EntryCheck(Lookup.MISMATCH, f"{directory / name} does not hash as recorded (tampered or corrupt)")
    return EntryCheck(Lookup.HIT)
