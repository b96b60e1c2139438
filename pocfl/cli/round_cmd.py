"""``pocfl round``: round transactions for scripted rounds (submit, post, fail), ``fetch`` and ``show``.

Every CID these commands put on chain names bytes the content store (``--ipfs``) holds: files given with
``--update``, ``--model`` and ``--report`` are stored and pinned first, and CIDs given directly are refused unless
the store has them. ``round fetch`` reads a round's updates back, verified against their CIDs and commitments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.chain.types import ZERO_BYTES32, ProjectStatus, RoundPost
from pocfl.cli.common import project_events, tx_doc
from pocfl.cli.output import eth, guarded, short
from pocfl.cli.parse import (
    existing_file,
    parse_bytes32,
    parse_flags,
    parse_scores,
    read_bytes,
    store_holds,
    stored_cid,
)
from pocfl.cli.session import (
    Session,
    connected,
)
from pocfl.errors import ConfigError, PocflError

if TYPE_CHECKING:
    from pocfl.market import Market, SubmittedUpdate
    from pocfl.store import ContentStore
    from pocfl.updates import EncryptionKeyPair

app = typer.Typer(
    name="round",
    help="Submit updates, post or fail rounds, and inspect them (for scripts; the FL runtime does this itself).",
    no_args_is_help=True,
)

ProjectId = Annotated[int, typer.Argument(min=1, metavar="ID", help="Project id.")]
RoundOpt = Annotated[
    int | None,
    typer.Option("--round", min=0, metavar="N", help="Round number. Default: the current round.", show_default=False),
]


@app.command("submit")
@guarded
@connected(store=True, deadline=True)
def submit(
    project_id: ProjectId,
    update: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The plaintext update file (pocfl safetensors): stored and pinned, then its CID submitted.",
            show_default=False,
        ),
    ] = None,
    encrypt_to: Annotated[
        str | None,
        typer.Option(
            metavar="HEX",
            help="Encrypt --update to this X25519 public key (the aggregator's, 32 bytes hex) before storing it.",
            show_default=False,
        ),
    ] = None,
    cid: Annotated[
        str | None,
        typer.Option(
            metavar="CID",
            help="...or the CID of an update file already in the content store (needs --commitment).",
            show_default=False,
        ),
    ] = None,
    commitment: Annotated[
        str | None,
        typer.Option(
            metavar="0xHEX",
            help="32-byte commitment to the plaintext update. Default with --update: computed for this chain, "
            "marketplace, project, round and sender.",
            show_default=False,
        ),
    ] = None,
    feature_commitment: Annotated[
        str | None, typer.Option(metavar="0xHEX", help="32-byte commitment to the update's features (for proofs).")
    ] = None,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Trainer: store an update file and submit its CID and commitment for a round.

    With --update FILE the commitment binds the plaintext to this chain, marketplace, project, round and
    sender; --encrypt-to seals the stored file to the aggregator (the commitment still binds the plaintext).
    """
    from pocfl.updates import encrypt_update, is_encrypted, update_commitment

    if (update is None) == (cid is None):
        raise ConfigError("give the update with exactly one of --update FILE or --cid CID")
    if cid is not None and commitment is None:
        raise ConfigError(
            "--cid needs --commitment 0xHEX (the commitment to the plaintext it holds); "
            "or pass --update FILE to have the commitment computed"
        )
    if encrypt_to is not None and update is None:
        raise ConfigError("--encrypt-to encrypts --update FILE; a --cid is submitted as the store holds it")
    commit = parse_bytes32(commitment, "--commitment") if commitment is not None else None
    features = parse_bytes32(feature_commitment, "--feature-commitment") if feature_commitment else ZERO_BYTES32
    recipient = parse_bytes32(encrypt_to, "--encrypt-to") if encrypt_to is not None else None
    plaintext = read_bytes(update, "--update") if update is not None else None
    if plaintext is not None:
        assert update is not None
        if is_encrypted(plaintext):
            if recipient is not None:
                raise ConfigError(f"--update {update} is already encrypted: drop --encrypt-to")
            if commit is None:
                raise ConfigError(
                    f"--update {update} is an encrypted envelope, but the commitment binds the plaintext: submit "
                    "the plaintext with --encrypt-to HEX, or give --commitment 0xHEX"
                )
        else:
            _check_update_file(plaintext, update)
    sm = s.store_market()
    m = sm.client
    r = round_ if round_ is not None else m.project(project_id).current_round
    computed = plaintext is not None and commit is None
    if plaintext is None:
        assert cid is not None and commit is not None
        stored = stored_cid(sm.store, cid, "--cid", "--update FILE")
        payload = sm.fetch(stored, max_size=max_payload())  # the whole object is there and intact
        receipt = m.submit(project_id, r, stored, commit, features)
    else:
        if commit is None:
            commit = update_commitment(
                plaintext,
                chain_id=s.chain().chain_id,
                market=m.address,
                project_id=project_id,
                round=r,
                trainer=m.sender,
            )
        payload = encrypt_update(plaintext, recipient) if recipient is not None else plaintext
        stored, receipt = sm.submit_update(project_id, r, payload, commit, features)
    encrypted = is_encrypted(payload)
    index = int(receipt.event("UpdateSubmitted").args["index"])
    document = {
        "project_id": project_id,
        "round": r,
        "index": index,
        "trainer": m.sender,
        "cid": stored,
        "size": len(payload),
        "encrypted": encrypted,
        "commitment": commit,
        "commitment_computed": computed,
        "store": sm.store.location,
        "tx": tx_doc(receipt),
    }
    s.out.result(
        document,
        lambda: s.out.print(
            f"Submitted {escape(stored)} ({len(payload)} bytes, {'encrypted' if encrypted else 'not encrypted'}) "
            f"to project {project_id}, round {r} (#{index}); commitment 0x{commit.hex()}."
        ),
    )


def max_payload() -> int:
    """Largest update object fetched: the update format's default cap plus an envelope's overhead."""
    from pocfl.market import MAX_PAYLOAD_SIZE

    return MAX_PAYLOAD_SIZE


def _check_update_file(data: bytes, path: Path) -> None:
    """Refuse a file no aggregator could decode: not safetensors, or not tagged as a pocfl update."""
    from pocfl.updates import FORMAT_NAME, CorruptUpdateError, read_safetensors
    from pocfl.updates.format import FORMAT_KEY

    try:
        _tensors, metadata = read_safetensors(data)
    except CorruptUpdateError as exc:
        raise CorruptUpdateError(f"--update {path} is not a pocfl update file: {exc}") from None
    if metadata.get(FORMAT_KEY) != FORMAT_NAME:
        raise CorruptUpdateError(
            f"--update {path} is a safetensors file but not a pocfl update (no pocfl.format={FORMAT_NAME} "
            "metadata): write it with pocfl.updates.encode_update"
        )


@app.command("post")
@guarded
@connected(store=True, deadline=True)
def post(
    project_id: ProjectId,
    scores: Annotated[
        str, typer.Option(metavar="S1,S2,...", help="One integer score per submission, in submission order.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The new global model file: stored and pinned, then its CID posted.",
            show_default=False,
        ),
    ] = None,
    model_cid: Annotated[
        str | None,
        typer.Option(metavar="CID", help="...or the CID of a model already in the content store.", show_default=False),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The round report: stored and pinned; its root digest is posted as the report hash.",
            show_default=False,
        ),
    ] = None,
    report_hash: Annotated[
        str | None,
        typer.Option(
            metavar="0xHEX",
            help="...or (advanced) the report hash of a report already in the content store: the digest inside "
            "its CID. Default without either: no report (zero hash).",
            show_default=False,
        ),
    ] = None,
    outliers: Annotated[
        str | None,
        typer.Option(
            metavar="0,1,...", help="One 0/1 outlier flag per submission. Default: all 0.", show_default=False
        ),
    ] = None,
    hyperparams_hash: Annotated[
        str | None, typer.Option(metavar="0xHEX", help="32-byte hash of the next round's hyper-parameters.")
    ] = None,
    proof_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Proof bytes for the project's verifier.")
    ] = None,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Aggregator: store the new model and the round report, post scores and outlier flags.

    The contract credits the round budget. The model's CID and the report's hash go on chain only once the
    content store holds their bytes.
    """
    from pocfl.market import report_hash as root_digest

    if (model is None) == (model_cid is None):
        raise ConfigError("give the new global model with exactly one of --model FILE or --model-cid CID")
    if report is not None and report_hash is not None:
        raise ConfigError("give at most one of --report FILE and --report-hash 0xHEX")
    score_values = parse_scores(scores)
    flags = parse_flags(outliers) if outliers is not None else None
    digest = parse_bytes32(report_hash, "--report-hash") if report_hash else None
    hyper = parse_bytes32(hyperparams_hash, "--hyperparams-hash") if hyperparams_hash else ZERO_BYTES32
    proof = read_bytes(proof_file, "--proof-file") if proof_file else b""
    model_file = existing_file(model, "--model") if model is not None else None
    report_file = existing_file(report, "--report") if report is not None else None
    sm = s.store_market()
    m = sm.client
    r = round_ if round_ is not None else m.project(project_id).current_round
    submissions = [u.submission for u in sm.submitted_updates(project_id, r, from_block=s.from_block)]
    n = len(submissions)
    if flags is None:
        flags = (False,) * n
    if len(score_values) != n or len(flags) != n:
        raise ConfigError(
            f"round {r} of project {project_id} has {n} submissions but {len(score_values)} scores and "
            f"{len(flags)} outlier flags: give one of each per submission, in submission order "
            f"(see `pocfl round show {project_id} {r}`)"
        )
    # Refuse CIDs and hashes the store lacks before storing anything or sending a transaction.
    model_ref = stored_cid(sm.store, model_cid, "--model-cid", "--model FILE") if model_cid else None
    report_cid = _stored_report(sm.store, digest) if digest is not None else None
    if model_file is not None and report_file is not None:
        round_post, receipt = sm.post_round(
            project_id,
            r,
            model=model_file,
            report=report_file,
            submissions=submissions,
            scores=score_values,
            outliers=flags,
            hyperparams_hash=hyper,
            proof=proof,
        )
        report_cid = _report_cid(sm.store, round_post.report_hash)
    else:
        if report_file is not None:
            report_cid = sm.publish(report_file)
        round_post = RoundPost(
            model_cid=model_ref if model_ref is not None else sm.publish(_present(model_file)),
            submissions=tuple(submissions),
            scores=score_values,
            outliers=flags,
            report_hash=root_digest(report_cid) if report_cid is not None else (digest or ZERO_BYTES32),
            hyperparams_hash=hyper,
        )
        receipt = m.post_round(project_id, r, round_post, proof)
    posted = receipt.event("RoundPosted").args
    credits = [
        {
            "trainer": str(e.args["trainer"]),
            "score": int(e.args["score"]),
            "outlier": bool(e.args["outlier"]),
            "amount_wei": int(e.args["amount"]),
        }
        for e in receipt.events
        if e.name == "TrainerCredited"
    ]
    finished = any(e.name == "ProjectFinished" for e in receipt.events)
    document = {
        "project_id": project_id,
        "round": r,
        "model_cid": round_post.model_cid,
        "report_hash": round_post.report_hash,
        "report_cid": report_cid,
        "credited_wei": int(posted["credited"]),
        "unallocated_wei": int(posted["unallocated"]),
        "proven": bool(posted["proven"]),
        "finished": finished,
        "credits": credits,
        "store": sm.store.location,
        "tx": tx_doc(receipt),
    }

    def human() -> None:
        s.out.print(f"Posted round {r} of project {project_id}: credited {eth(int(posted['credited']))} ETH.")
        s.out.print(f"model {escape(round_post.model_cid)}; report {escape(report_cid or 'none')}")
        s.out.table(_credit_table(credits))
        if finished:
            s.out.print("That was the last round: the project is finished.")

    s.out.result(document, human)


def _present(path: Path | None) -> Path:
    assert path is not None
    return path


def _report_cid(store: ContentStore, digest: bytes) -> str | None:
    """The CID under which the store holds the report with this hash (``None``: zero hash or not held)."""
    from pocfl.market import report_cids

    if digest == ZERO_BYTES32:
        return None
    return next((cid for cid in report_cids(digest) if store_holds(store, cid)), None)


def _stored_report(store: ContentStore, digest: bytes) -> str | None:
    """Check a ``--report-hash`` names a report in the store; its CID (``None`` for the zero hash)."""
    from pocfl.market import report_cids
    from pocfl.store import ObjectNotFoundError

    if digest == ZERO_BYTES32:
        return None
    cid = _report_cid(store, digest)
    if cid is None:
        err = ObjectNotFoundError(report_cids(digest)[0], store.location)
        err.args = (
            f"--report-hash 0x{digest.hex()} names no report in the content store {store.location} (as "
            f"{' or '.join(report_cids(digest))}): store it first with `pocfl store put FILE` (same --ipfs), "
            "or pass --report FILE",
        )
        raise err
    return cid


@app.command("fetch")
@guarded
@connected(store=True)
def fetch(
    project_id: ProjectId,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Directory for the updates, one <index>-<trainer>.bin per submission (created if missing).",
        ),
    ],
    decrypt_key: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The aggregator's encryption key file: decrypt encrypted updates and check their commitments.",
            show_default=False,
        ),
    ] = None,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Fetch a round's updates into DIR, each verified against its CID and (once readable) its commitment.

    A file is written only once its bytes match the CID on chain and, for a plaintext or decrypted update,
    the commitment (recomputed for the submitting trainer). Encrypted updates are written as they are unless
    --decrypt-key is given. One row per submission says ok or names the error (CidMismatchError,
    ObjectNotFoundError, CommitmentMismatchError, WrongRecipientError, ...); one bad submission never stops
    the others, and the command exits 1 if any failed.
    """
    from pocfl.updates import EncryptionKeyPair

    keypair = EncryptionKeyPair.load(decrypt_key) if decrypt_key is not None else None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot create {out_dir}: {exc.strerror or exc}") from None
    sm = s.store_market(signer=False)
    r = round_ if round_ is not None else sm.client.project(project_id).current_round
    updates = sm.submitted_updates(project_id, r, from_block=s.from_block)
    chain_id = s.chain().chain_id
    rows = [_fetch_one(sm, u, project_id, r, chain_id, out_dir, keypair) for u in updates]
    failed = sum(1 for row in rows if not row["ok"])
    document = {
        "project_id": project_id,
        "round": r,
        "out": str(out_dir),
        "store": sm.store.location,
        "ok": len(rows) - failed,
        "failed": failed,
        "submissions": rows,
    }

    def human() -> None:
        s.out.print(
            f"[bold]Project {project_id}, round {r}[/bold]: {len(rows)} submissions from "
            f"{escape(sm.store.location)} into {escape(str(out_dir))}: {len(rows) - failed} ok, {failed} failed"
        )
        if not rows:
            return
        table = Table("#", "trainer", "cid", "size", "encrypted", "commitment", "status")
        for row in rows:
            status = "[green]ok[/green]" if row["ok"] else f"[red]{row['error']['error']}[/red] (below)"
            table.add_row(
                str(row["index"]),
                short(row["trainer"]),
                escape(row["cid"]),
                "" if row["size"] is None else str(row["size"]),
                _yes_no(row["encrypted"], "decrypted" if row["decrypted"] else "yes"),
                "verified" if row["commitment_verified"] else ("not checked" if row["ok"] else "-"),
                status,
            )
        s.out.table(table)
        for row in rows:
            if not row["ok"]:
                error = row["error"]
                s.out.print(
                    f"#{row['index']} ({row['trainer']}): [red]{error['error']}[/red]: {escape(error['message'])}"
                )
        if keypair is None and any(row["encrypted"] for row in rows):
            s.out.print("Encrypted updates were written as stored: pass --decrypt-key FILE to open and check them.")

    s.out.result(document, human)
    if failed:
        raise typer.Exit(1)


def _fetch_one(
    sm: Market,
    u: SubmittedUpdate,
    project_id: int,
    round_: int,
    chain_id: int,
    out_dir: Path,
    keypair: EncryptionKeyPair | None,
) -> dict[str, Any]:
    """Fetch, decrypt and check one submission; a row with ``ok`` or the error (never raises a pocfl error)."""
    from pocfl.store.base import atomic_file

    row: dict[str, Any] = {
        "index": u.index,
        "trainer": u.trainer,
        "cid": u.cid,
        "commitment": u.commitment,
        "size": None,
        "encrypted": None,
        "decrypted": False,
        "commitment_verified": False,
        "file": None,
        "ok": False,
        "error": None,
    }
    try:
        opened = sm.open_update(u, project_id, round_, keypair, max_size=max_payload())
        row["size"] = len(opened.payload)
        row["encrypted"] = opened.encrypted
        row["decrypted"] = opened.encrypted and opened.plaintext is not None
        row["commitment_verified"] = opened.plaintext is not None
        plaintext, data = opened.plaintext, opened.payload
        dest = out_dir / f"{u.index}-{u.trainer}.bin"
        with atomic_file(dest) as f:
            f.write(plaintext if plaintext is not None else data)
        row.update(file=str(dest), ok=True)
    except (PocflError, OSError) as exc:
        row["error"] = {"error": type(exc).__name__, "message": str(exc)}
    return row


def _yes_no(value: bool | None, yes: str = "yes") -> str:
    return "?" if value is None else (yes if value else "no")


def _credit_table(credits: list[dict[str, Any]]) -> Table:
    table = Table("trainer", "score", "outlier", "credited (wei)")
    for c in credits:
        table.add_row(c["trainer"], str(c["score"]), "yes" if c["outlier"] else "no", str(c["amount_wei"]))
    return table


@app.command("fail")
@guarded
@connected()
def fail(
    project_id: ProjectId,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Anyone: mark a round failed once its aggregation deadline passed without results."""
    m = s.market()
    r = round_ if round_ is not None else m.project(project_id).current_round
    receipt = m.fail_round(project_id, r)
    cancelled = any(e.name == "ProjectCancelled" for e in receipt.events)
    st = m.project(project_id)
    s.out.result(
        {
            "project_id": project_id,
            "round": r,
            "cancelled": cancelled,
            "status": st.status.name.lower(),
            "tx": tx_doc(receipt),
        },
        lambda: s.out.print(
            f"Failed round {r} of project {project_id}"
            + ("; two failures in a row cancelled the project." if cancelled else ".")
        ),
    )


@app.command("show")
@guarded
@connected(store=True)
def show(
    project_id: ProjectId,
    round_number: Annotated[
        int | None, typer.Argument(min=0, metavar="ROUND", help="Default: the current round.", show_default=False)
    ] = None,
    *,
    s: Session,
) -> None:
    """Show a round: its submissions (CIDs, commitments) and, once posted, scores, outliers and credits.

    ``stored`` says whether the content store holds each CID (checked without fetching; ``null`` when the
    store cannot be asked).
    """
    m = s.market(signer=False)
    store = s.store()
    st = m.project(project_id)
    r = round_number if round_number is not None else st.current_round
    if r >= st.params.num_rounds:
        raise ConfigError(f"project {project_id} has rounds 0 to {st.params.num_rounds - 1}, not {r}")
    start = s.from_block
    subs = sorted(
        project_events(m, "UpdateSubmitted", start, projectId=project_id, round=r),
        key=lambda e: int(e.args["index"]),
    )
    posted = project_events(m, "RoundPosted", start, projectId=project_id, round=r)
    failed = project_events(m, "RoundFailed", start, projectId=project_id, round=r)
    # postRound emits one TrainerCredited per submission, in submission order.
    credited = dict(enumerate(project_events(m, "TrainerCredited", start, projectId=project_id, round=r)))
    if posted:
        state = "posted"
    elif failed:
        state = "failed"
    elif r == st.current_round and st.status == ProjectStatus.ACTIVE:
        state = "open"
    else:
        state = "not reached"
    rows: list[dict[str, Any]] = []
    for e in subs:
        row: dict[str, Any] = {
            "index": int(e.args["index"]),
            "trainer": str(e.args["trainer"]),
            "cid": e.args["cid"],
            "stored": store_holds(store, str(e.args["cid"])),
            "commitment": e.args["commitment"],
            "feature_commitment": e.args["featureCommitment"],
        }
        c = credited.get(int(e.args["index"]))
        if c is not None:
            row.update(score=int(c.args["score"]), outlier=bool(c.args["outlier"]), credited_wei=int(c.args["amount"]))
        rows.append(row)
    document: dict[str, Any] = {"project_id": project_id, "round": r, "state": state, "submissions": rows}
    if posted:
        a = posted[0].args
        report_cid = _report_cid(store, bytes(a["reportHash"]))
        document.update(
            model_cid=a["modelCid"],
            model_stored=store_holds(store, str(a["modelCid"])),
            report_hash=a["reportHash"],
            report_cid=report_cid,
            report_stored=report_cid is not None if bytes(a["reportHash"]) != ZERO_BYTES32 else None,
            hyperparams_hash=a["hyperparamsHash"],
            credited_wei=int(a["credited"]),
            unallocated_wei=int(a["unallocated"]),
            proven=bool(a["proven"]),
        )
    if failed:
        document["failed_by"] = str(failed[0].args["caller"])

    def human() -> None:
        s.out.print(f"[bold]Project {project_id}, round {r}[/bold]: {state}, {len(rows)} submissions")
        columns = ["#", "trainer", "cid", "stored", "commitment"]
        if posted:
            columns += ["score", "outlier", "credited (wei)"]
        table = Table(*columns)
        for row in rows:
            cells = [
                str(row["index"]),
                short(row["trainer"]),
                escape(row["cid"]),
                _yes_no(row["stored"]),
                short_hex(row["commitment"]),
            ]
            if posted:
                cells += [
                    str(row.get("score", "")),
                    "yes" if row.get("outlier") else "no",
                    str(row.get("credited_wei", 0)),
                ]
            table.add_row(*cells)
        if rows:
            s.out.table(table)
        if posted:
            report = document["report_cid"] or ("none" if document["report_stored"] is None else "not stored")
            s.out.print(
                f"model {escape(str(document['model_cid']))} (stored: {_yes_no(document['model_stored'])}); "
                f"report {escape(str(report))}; credited {eth(int(document['credited_wei']))} ETH, "
                f"{document['unallocated_wei']} wei unallocated"
            )
        if failed:
            s.out.print(f"failed by {short(str(document['failed_by']))}: its budget stays in escrow")

    s.out.result(document, human)


def short_hex(value: Any) -> str:
    """``0x1234…cdef`` of bytes or a hex string."""
    text = "0x" + value.hex() if isinstance(value, bytes) else str(value)
    return f"{text[:10]}…{text[-6:]}" if len(text) > 20 else text
