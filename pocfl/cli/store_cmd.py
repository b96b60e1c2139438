"""``pocfl store``: put files into the content store, fetch them back verified, check and pin CIDs.

Every command works on the store named by ``--ipfs`` (``$POCFL_IPFS``, else the embedded store in
``<state dir>/store``); see :func:`pocfl.store.open_store`. Every read is checked against its CID: a fetched
object that hashes to another CID is never written to the output (``CidMismatchError``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.cli.common import option
from pocfl.cli.output import Output, error_message, guarded, kv_table
from pocfl.cli.session import IpfsOpt, JsonOpt
from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from pocfl.store import ContentStore

app = typer.Typer(
    name="store",
    help="Put files into the content store (embedded or an IPFS node), fetch them back verified, check and pin CIDs.",
    no_args_is_help=True,
)

DEFAULT_MAX_SIZE = 1 << 30
"""Default cap on one fetched object; equals ``pocfl.store.DEFAULT_MAX_SIZE`` (not imported: keeps startup fast)."""

CidsArg = Annotated[list[str], typer.Argument(metavar="CID...", help="Content identifiers (CIDv1 or CIDv0).")]
FilesArg = Annotated[
    list[Path],
    typer.Argument(metavar="FILE...", exists=True, dir_okay=False, readable=True, help="Files to read."),
]
MaxSizeOpt = Annotated[
    int,
    typer.Option(
        "--max-size", min=1, metavar="BYTES", help="Refuse an object larger than BYTES (checked while reading)."
    ),
]
FetchTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        metavar="SECONDS",
        help="Seconds an IPFS node may search for an object it does not hold before it counts as missing.",
    ),
]
DEFAULT_FETCH_TIMEOUT = 30.0


@contextmanager
def _open(ipfs: str | None, fetch_timeout: float = DEFAULT_FETCH_TIMEOUT) -> Iterator[ContentStore]:
    """The store named by ``--ipfs`` (``$POCFL_IPFS``, else embedded), closed on exit."""
    from pocfl.store import open_store

    store = open_store(ipfs, fetch_timeout=fetch_timeout)
    try:
        yield store
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------------
# put / get
# ---------------------------------------------------------------------------------------------------


def _files_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("cid", "size (bytes)", "file")
    for row in rows:
        table.add_row(row["cid"], str(row["size"]), escape(row["path"]))
    return table


@app.command("put")
@guarded
def put(files: FilesArg, ipfs: IpfsOpt = None, json_out: JsonOpt = False) -> None:
    """Store files (streamed from disk) and pin them; print each file's CID and size."""
    from pocfl.store_ops import put_files

    out = Output(json_out)
    with _open(ipfs) as store:
        rows = [asdict(f) for f in put_files(store, files)]
        location = store.location

    def human() -> None:
        out.table(_files_table(rows))
        out.print(f"stored and pinned in {escape(location)}")

    out.result(rows, human)


@app.command("get")
@guarded
def get(
    cid: Annotated[str, typer.Argument(metavar="CID", help="Content identifier of the object to fetch.")],
    output: Annotated[
        Path | None,
        option(
            "--output",
            "-o",
            metavar="FILE",
            dir_okay=False,
            help="Write the object to FILE (only once its CID checks out). Default: raw bytes on stdout.",
        ),
    ] = None,
    max_size: MaxSizeOpt = DEFAULT_MAX_SIZE,
    timeout: FetchTimeoutOpt = DEFAULT_FETCH_TIMEOUT,
    ipfs: IpfsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch an object and check that its bytes hash to CID before writing them anywhere.

    Without -o the raw bytes go to stdout (redirect or pipe them; a terminal is refused).
    """
    from pocfl.store import canonical_cid
    from pocfl.store_ops import fetched

    out = Output(json_out)
    if output is None and json_out:
        raise ConfigError("--json describes the written file: give -o FILE as well")
    if output is None and sys.stdout.isatty():
        raise ConfigError("refusing to write raw object bytes to a terminal: give -o FILE or redirect stdout")
    with _open(ipfs, timeout) as store:
        if output is None:
            with fetched(store, cid, max_size) as tmp, open(tmp, "rb") as src:
                sink = sys.stdout.buffer
                shutil.copyfileobj(src, sink)
                sink.flush()
            return
        path = store.get_file(cid, output, max_size=max_size)
    size = path.stat().st_size
    out.result(
        {"cid": canonical_cid(cid), "path": str(path), "size": size},
        lambda: out.print(f"Wrote {size} bytes to {escape(str(path))} (CID verified)."),
    )


# ---------------------------------------------------------------------------------------------------
# has / pin / cid / verify
# ---------------------------------------------------------------------------------------------------


@app.command("has")
@guarded
def has(cids: CidsArg, ipfs: IpfsOpt = None, json_out: JsonOpt = False) -> None:
    """Tell whether the store holds each CID (no verification, no network search). Exits 1 if any is missing."""
    from pocfl.store import canonical_cid

    out = Output(json_out)
    with _open(ipfs) as store:
        rows = [{"cid": canonical_cid(value), "present": store.has(value)} for value in cids]
    _cid_rows(out, rows, "present", lambda row: "yes" if row["present"] else "[red]no[/red]", ok="present")


@app.command("pin")
@guarded
def pin(
    cids: CidsArg, timeout: FetchTimeoutOpt = DEFAULT_FETCH_TIMEOUT, ipfs: IpfsOpt = None, json_out: JsonOpt = False
) -> None:
    """Keep objects from garbage collection; stops at the first CID that cannot be pinned.

    The embedded store keeps every object: there it only checks that each CID is present.
    """
    from pocfl.store_ops import pin_cids

    out = Output(json_out)
    with _open(ipfs, timeout) as store:
        pinned = pin_cids(store, cids)

    def human() -> None:
        for value in pinned:
            out.print(f"pinned {value}")

    out.result([{"cid": value, "pinned": True} for value in pinned], human)


@app.command("cid")
@guarded
def cid(
    files: FilesArg,
    cid_version: Annotated[
        int,
        typer.Option(
            "--cid-version",
            min=0,
            max=1,
            metavar="0|1",
            help="1: what pocfl stores (raw leaves, base32 'b...'); 0: Kubo's historic 'Qm...' CIDs.",
        ),
    ] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Compute files' CIDs locally, exactly as `ipfs add` gives them, without storing anything."""
    from pocfl.store_ops import compute_cids

    out = Output(json_out)
    rows = [asdict(f) for f in compute_cids(files, cid_version)]
    out.result(rows, lambda: out.table(_files_table(rows)))


@app.command("verify")
@guarded
def verify(
    cids: CidsArg,
    max_size: MaxSizeOpt = DEFAULT_MAX_SIZE,
    timeout: FetchTimeoutOpt = DEFAULT_FETCH_TIMEOUT,
    ipfs: IpfsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch each object and check its CID, reporting every CID (not only the first failure). Exits 1 if any fails.

    A corrupted object in the embedded store is moved to its quarantine/ folder on the way; putting the right
    bytes again repairs it. An unreachable IPFS node stops the whole command.
    """
    from pocfl.store_ops import verify_cids

    out = Output(json_out)
    with _open(ipfs, timeout) as store:
        checks = verify_cids(store, cids, max_size)
    rows: list[dict[str, Any]] = [
        {"cid": c.cid, "ok": True, "size": c.size}
        if c.error is None
        else {"cid": c.cid, "ok": False, "error": type(c.error).__name__, "message": error_message(c.error)}
        for c in checks
    ]
    _cid_rows(out, rows, "result", _verify_cell, ok="ok")


def _verify_cell(row: dict[str, Any]) -> str:
    return f"ok ({row['size']} bytes)" if row["ok"] else f"[red]{row['error']}[/red]: {escape(row['message'])}"


def _cid_rows(
    out: Output, rows: list[dict[str, Any]], column: str, cell: Callable[[dict[str, Any]], str], *, ok: str
) -> None:
    """Emit one row per CID (a table of CID and ``cell`` under ``column``); exit 1 unless every row is ``ok``."""

    def human() -> None:
        table = Table("cid", column)
        for row in rows:
            table.add_row(escape(str(row["cid"])), cell(row))
        out.table(table)

    out.result(rows, human)
    if not all(row[ok] for row in rows):
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------------


@app.command("info")
@guarded
def info(ipfs: IpfsOpt = None, json_out: JsonOpt = False) -> None:
    """Show which content store the commands use and where it is. Exits 1 when an IPFS node does not answer."""
    from pocfl.store_ops import describe_store

    out = Output(json_out)
    with _open(ipfs) as store:
        found = describe_store(store, ipfs)
    doc: dict[str, Any] = {"spec": found.spec, "location": found.location, "backend": found.backend}
    rows: list[tuple[str, Any]] = []
    if found.backend == "ipfs" and found.error is None:
        doc.update(version=found.version, answering=True)
        rows.append(("node", f"answers, version {found.version}"))
    elif found.backend == "ipfs":
        assert found.error is not None
        doc.update(answering=False, error=error_message(found.error))
        rows.append(("node", f"not answering: {doc['error']}"))
    elif found.backend == "embedded":
        doc.update(objects=found.objects, quarantined=found.quarantined)
        rows += [("objects", found.objects), ("quarantined", found.quarantined)]
    rows = [("backend", doc["backend"]), ("spec", doc["spec"]), ("location", doc["location"]), *rows]
    out.result(doc, lambda: out.table(kv_table(rows)))
    if doc.get("answering") is False:
        raise typer.Exit(1)
