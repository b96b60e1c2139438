"""``pocfl round``: round transactions for scripted rounds (submit, post, fail), ``fetch`` and ``show``.

Every CID these commands put on chain names bytes the content store (``--ipfs``) holds: files given with
``--update``, ``--model`` and ``--report`` are stored and pinned first, and CIDs given directly are refused unless
the store has them. ``round fetch`` reads a round's updates back, verified against their CIDs and commitments.
The work is :mod:`pocfl.rounds.actions`; the commands parse options and render its results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.chain.types import ZERO_BYTES32
from pocfl.cli.args import RoundArgAlias, one_value
from pocfl.cli.common import option, tx_doc
from pocfl.cli.output import eth, guarded, short
from pocfl.cli.parse import existing_file, parse_bytes32, parse_flags, parse_scores, read_bytes
from pocfl.cli.session import Session, connected
from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from pocfl.rounds.actions import Credit, FetchedRound, RoundPosting, RoundView, UpdateSubmission

app = typer.Typer(
    name="round",
    help="Submit updates, post or fail rounds, and inspect them (for scripts; the FL runtime does this itself).",
    no_args_is_help=True,
)

ProjectId = Annotated[int, typer.Argument(min=1, metavar="ID", help="Project id.")]
RoundOpt = Annotated[
    int | None, option("--round", min=0, metavar="N", help="Round number. Default: the current round.")
]

# --- round submit options ---
UpdateOpt = Annotated[
    Path | None,
    option(
        metavar="FILE", help="The plaintext update file (pocfl safetensors): stored and pinned, then its CID submitted."
    ),
]
EncryptToOpt = Annotated[
    str | None,
    option(
        metavar="HEX",
        help="Encrypt --update to this X25519 public key (the aggregator's, 32 bytes hex) before storing it.",
    ),
]
CidOpt = Annotated[
    str | None,
    option(metavar="CID", help="...or the CID of an update file already in the content store (needs --commitment)."),
]
CommitmentOpt = Annotated[
    str | None,
    option(
        metavar="0xHEX",
        help="32-byte commitment to the plaintext update. Default with --update: computed for this chain, "
        "marketplace, project, round and sender.",
    ),
]
FeatureCommitmentOpt = Annotated[
    str | None, option(metavar="0xHEX", help="32-byte commitment to the update's features (for proofs).")
]

# --- round post options ---
ScoresOpt = Annotated[
    str, typer.Option(metavar="S1,S2,...", help="One integer score per submission, in submission order.")
]
ModelOpt = Annotated[
    Path | None, option(metavar="FILE", help="The new global model file: stored and pinned, then its CID posted.")
]
ModelCidOpt = Annotated[
    str | None, option(metavar="CID", help="...or the CID of a model already in the content store.")
]
ReportOpt = Annotated[
    Path | None,
    option(metavar="FILE", help="The round report: stored and pinned; its root digest is posted as the report hash."),
]
ReportHashOpt = Annotated[
    str | None,
    option(
        metavar="0xHEX",
        help="...or (advanced) the report hash of a report already in the content store: the digest inside "
        "its CID. Default without either: no report (zero hash).",
    ),
]
OutliersOpt = Annotated[
    str | None, option(metavar="0,1,...", help="One 0/1 outlier flag per submission. Default: all 0.")
]
HyperparamsHashOpt = Annotated[
    str | None, option(metavar="0xHEX", help="32-byte hash of the next round's hyper-parameters.")
]
ProofFileOpt = Annotated[Path | None, option(metavar="FILE", help="Proof bytes for the project's verifier.")]


@app.command("submit")
@guarded
@connected(store=True, deadline=True)
def submit(
    project_id: ProjectId,
    update: UpdateOpt = None,
    encrypt_to: EncryptToOpt = None,
    cid: CidOpt = None,
    commitment: CommitmentOpt = None,
    feature_commitment: FeatureCommitmentOpt = None,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Trainer: store an update file and submit its CID and commitment for a round.

    With --update FILE the commitment binds the plaintext to this chain, marketplace, project, round and
    sender; --encrypt-to seals the stored file to the aggregator (the commitment still binds the plaintext).
    """
    from pocfl.rounds.actions import submit_update

    if (update is None) == (cid is None):
        raise ConfigError("give the update with exactly one of --update FILE or --cid CID")
    if cid is not None and commitment is None:
        raise ConfigError(
            "--cid needs --commitment 0xHEX (the commitment to the plaintext it holds); "
            "or pass --update FILE to have the commitment computed"
        )
    if encrypt_to is not None and update is None:
        raise ConfigError("--encrypt-to encrypts --update FILE; a --cid is submitted as the store holds it")
    result = submit_update(
        s,
        project_id,
        round_,
        commitment=parse_bytes32(commitment, "--commitment") if commitment is not None else None,
        feature_commitment=(
            parse_bytes32(feature_commitment, "--feature-commitment") if feature_commitment else ZERO_BYTES32
        ),
        recipient=parse_bytes32(encrypt_to, "--encrypt-to") if encrypt_to is not None else None,
        update=(update, read_bytes(update, "--update")) if update is not None else None,
        cid=cid,
    )
    s.out.result(
        _submission_document(result),
        lambda: s.out.print(
            f"Submitted {escape(result.cid)} ({result.size} bytes, "
            f"{'encrypted' if result.encrypted else 'not encrypted'}) to project {project_id}, round {result.round} "
            f"(#{result.index}); commitment 0x{result.commitment.hex()}."
        ),
    )


def _submission_document(result: UpdateSubmission) -> dict[str, Any]:
    """The ``round submit --json`` document."""
    return {
        "project_id": result.project_id,
        "round": result.round,
        "index": result.index,
        "trainer": result.trainer,
        "cid": result.cid,
        "size": result.size,
        "encrypted": result.encrypted,
        "commitment": result.commitment,
        "commitment_computed": result.commitment_computed,
        "store": result.store,
        "tx": tx_doc(result.receipt),
    }


@app.command("post")
@guarded
@connected(store=True, deadline=True)
def post(
    project_id: ProjectId,
    scores: ScoresOpt,
    model: ModelOpt = None,
    model_cid: ModelCidOpt = None,
    report: ReportOpt = None,
    report_hash: ReportHashOpt = None,
    outliers: OutliersOpt = None,
    hyperparams_hash: HyperparamsHashOpt = None,
    proof_file: ProofFileOpt = None,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Aggregator: store the new model and the round report, post scores and outlier flags.

    The contract credits the round budget. The model's CID and the report's hash go on chain only once the
    content store holds their bytes.
    """
    from pocfl.rounds.actions import RoundResults, post_round

    if (model is None) == (model_cid is None):
        raise ConfigError("give the new global model with exactly one of --model FILE or --model-cid CID")
    if report is not None and report_hash is not None:
        raise ConfigError("give at most one of --report FILE and --report-hash 0xHEX")
    results = RoundResults(
        scores=parse_scores(scores),
        outliers=parse_flags(outliers) if outliers is not None else None,
        report_hash=parse_bytes32(report_hash, "--report-hash") if report_hash else None,
        hyperparams_hash=parse_bytes32(hyperparams_hash, "--hyperparams-hash") if hyperparams_hash else ZERO_BYTES32,
        proof=read_bytes(proof_file, "--proof-file") if proof_file else b"",
        model=existing_file(model, "--model") if model is not None else None,
        report=existing_file(report, "--report") if report is not None else None,
        model_cid=model_cid,
    )
    posting = post_round(s, project_id, round_, results)
    s.out.result(_posting_document(posting), lambda: _render_posting(s, posting))


def _posting_document(posting: RoundPosting) -> dict[str, Any]:
    """The ``round post --json`` document."""
    return {
        "project_id": posting.project_id,
        "round": posting.round,
        "model_cid": posting.post.model_cid,
        "report_hash": posting.post.report_hash,
        "report_cid": posting.report_cid,
        "credited_wei": posting.credited_wei,
        "unallocated_wei": posting.unallocated_wei,
        "proven": posting.proven,
        "finished": posting.finished,
        "credits": [_credit_document(c) for c in posting.credits],
        "store": posting.store,
        "tx": tx_doc(posting.receipt),
    }


def _credit_document(c: Credit) -> dict[str, Any]:
    return {"trainer": c.trainer, "score": c.score, "outlier": c.outlier, "amount_wei": c.amount_wei}


def _render_posting(s: Session, posting: RoundPosting) -> None:
    s.out.print(
        f"Posted round {posting.round} of project {posting.project_id}: credited {eth(posting.credited_wei)} ETH."
    )
    s.out.print(f"model {escape(posting.post.model_cid)}; report {escape(posting.report_cid or 'none')}")
    table = Table("trainer", "score", "outlier", "credited (wei)")
    for c in posting.credits:
        table.add_row(c.trainer, str(c.score), "yes" if c.outlier else "no", str(c.amount_wei))
    s.out.table(table)
    if posting.finished:
        s.out.print("That was the last round: the project is finished.")


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
        option(
            metavar="FILE",
            help="The aggregator's encryption key file: decrypt encrypted updates and check their commitments.",
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
    from dataclasses import asdict

    from pocfl.rounds.actions import fetch_round
    from pocfl.updates import EncryptionKeyPair

    keypair = EncryptionKeyPair.load(decrypt_key) if decrypt_key is not None else None
    fetched = fetch_round(s, project_id, round_, out_dir, keypair)
    document = {
        "project_id": project_id,
        "round": fetched.round,
        "out": str(out_dir),
        "store": fetched.store,
        "ok": len(fetched.updates) - fetched.failed,
        "failed": fetched.failed,
        "submissions": [asdict(u) for u in fetched.updates],
    }
    s.out.result(document, lambda: _render_fetched(s, fetched, decrypting=keypair is not None))
    if fetched.failed:
        raise typer.Exit(1)


def _render_fetched(s: Session, fetched: FetchedRound, *, decrypting: bool) -> None:
    rows = fetched.updates
    s.out.print(
        f"[bold]Project {fetched.project_id}, round {fetched.round}[/bold]: {len(rows)} submissions from "
        f"{escape(fetched.store)} into {escape(str(fetched.out))}: {len(rows) - fetched.failed} ok, "
        f"{fetched.failed} failed"
    )
    if not rows:
        return
    table = Table("#", "trainer", "cid", "size", "encrypted", "commitment", "status")
    for row in rows:
        status = "[green]ok[/green]" if row.error is None else f"[red]{row.error.error}[/red] (below)"
        table.add_row(
            str(row.index),
            short(row.trainer),
            escape(row.cid),
            "" if row.size is None else str(row.size),
            _yes_no(row.encrypted, "decrypted" if row.decrypted else "yes"),
            "verified" if row.commitment_verified else ("not checked" if row.ok else "-"),
            status,
        )
    s.out.table(table)
    for row in rows:
        if row.error is not None:
            s.out.print(f"#{row.index} ({row.trainer}): [red]{row.error.error}[/red]: {escape(row.error.message)}")
    if not decrypting and any(row.encrypted for row in rows):
        s.out.print("Encrypted updates were written as stored: pass --decrypt-key FILE to open and check them.")


def _yes_no(value: bool | None, yes: str = "yes") -> str:
    return "?" if value is None else (yes if value else "no")


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
    from pocfl.rounds.actions import fail_round

    failure = fail_round(s, project_id, round_)
    s.out.result(
        {
            "project_id": project_id,
            "round": failure.round,
            "cancelled": failure.cancelled,
            "status": failure.status,
            "tx": tx_doc(failure.receipt),
        },
        lambda: s.out.print(
            f"Failed round {failure.round} of project {project_id}"
            + ("; two failures in a row cancelled the project." if failure.cancelled else ".")
        ),
    )


@app.command("show")
@guarded
@connected(store=True)
def show(
    project_id: ProjectId,
    round_positional: RoundArgAlias = None,
    round_: RoundOpt = None,
    *,
    s: Session,
) -> None:
    """Show a round: its submissions (CIDs, commitments) and, once posted, scores, outliers and credits.

    ``stored`` says whether the content store holds each CID (checked without fetching; ``null`` when the
    store cannot be asked).
    """
    from pocfl.rounds.actions import show_round

    view = show_round(s, project_id, one_value("--round", round_, round_positional, "ROUND"))
    s.out.result(view.to_json(), lambda: _render_round(s, view))


def _render_round(s: Session, view: RoundView) -> None:
    posted = view.posted
    s.out.print(
        f"[bold]Project {view.project_id}, round {view.round}[/bold]: {view.state}, {len(view.submissions)} submissions"
    )
    columns = ["#", "trainer", "cid", "stored", "commitment"]
    if posted:
        columns += ["score", "outlier", "credited (wei)"]
    table = Table(*columns)
    for row in view.submissions:
        cells = [str(row.index), short(row.trainer), escape(row.cid), _yes_no(row.stored), short_hex(row.commitment)]
        if posted:
            cells += [
                "" if row.score is None else str(row.score),
                "yes" if row.outlier else "no",
                str(row.credited_wei if row.credited_wei is not None else 0),
            ]
        table.add_row(*cells)
    if view.submissions:
        s.out.table(table)
    if posted:
        report = posted.report_cid or ("none" if posted.report_stored is None else "not stored")
        s.out.print(
            f"model {escape(str(posted.model_cid))} (stored: {_yes_no(posted.model_stored)}); "
            f"report {escape(str(report))}; credited {eth(posted.credited_wei)} ETH, "
            f"{posted.unallocated_wei} wei unallocated"
        )
    if view.failed_by is not None:
        s.out.print(f"failed by {short(view.failed_by)}: its budget stays in escrow")


def short_hex(value: Any) -> str:
    """``0x1234…cdef`` of bytes or a hex string."""
    text = "0x" + value.hex() if isinstance(value, bytes) else str(value)
    return f"{text[:10]}…{text[-6:]}" if len(text) > 20 else text
