"""``pocfl audit``: recompute every posted round of a project from public data and reconcile its payouts.

Reads the chain's events and the artifacts their CIDs name (every read verified), re-runs each round's decision
with the aggregator's own functions and compares with what the contract recorded and what trainers claimed (see
:mod:`pocfl.audit`). Prints a per-round and a per-trainer table, writes PNG figures, a self-contained HTML page and
the JSON document into ``--out`` (default ``<state dir>/audit/project-<id>/``; written into a fresh folder and
renamed into place, the previous report kept as ``<out>.previous``), and exits 1 with every difference listed when
anything does not match. Every posted rejection is re-checked (``--extra-ipfs`` stores, ``--evidence`` files from
trainers); one that can be neither confirmed nor disproved is listed as unchecked (``--strict`` fails on it). A
store that holds none of the project's objects is refused before anything is written (wrong ``--ipfs``?).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.cli import args
from pocfl.cli.args import ProjectArg, ProjectOptAlias
from pocfl.cli.common import option
from pocfl.cli.output import Output, eth, guarded
from pocfl.cli.session import Session, connected

if TYPE_CHECKING:
    from pocfl.audit import AuditResult
    from pocfl.audit.report import AuditFiles


VERDICT_COLOURS = {"verified": "green", "mismatch": "red", "unverifiable": "yellow", "unchecked": "yellow"}


ValidationOpt = Annotated[
    Path | None,
    option(
        "--validation",
        metavar="FILE",
        help="The owner's revealed validation set (NPZ with X and y), for projects without a public recipe; "
        "checked against the on-chain validationSetCommitment.",
    ),
]
OutOpt = Annotated[
    Path | None,
    option(
        "--out",
        metavar="DIR",
        help="Where to write the figures, audit.html and audit.json. Default: <state dir>/audit/project-<ID>/.",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail on rounds that cannot be recomputed and on rejections that cannot be checked (a sealed update "
        "never revealed, an object nobody can read).",
    ),
]
EvidenceOpt = Annotated[
    list[Path] | None,
    option(
        "--evidence",
        metavar="FILE",
        help="A trainer's evidence file (pocfl-evidence/1 JSON, saved by `pocfl train` when its update was "
        "rejected or flagged): its plaintext is checked against the on-chain commitment and can disprove a "
        "rejection. Repeatable.",
    ),
]
ExtraIpfsOpt = Annotated[
    list[str] | None,
    option(
        "--extra-ipfs",
        metavar="URL|DIR",
        help="Another content store to look for rejected updates the main store lacks (an IPFS RPC URL or an "
        "embedded store directory). Repeatable.",
    ),
]


@guarded
@connected(sign=False, store=True)
def audit(
    project: ProjectArg = None,
    validation: ValidationOpt = None,
    out: OutOpt = None,
    strict: StrictOpt = False,
    evidence: EvidenceOpt = None,
    extra_ipfs: ExtraIpfsOpt = None,
    project_alias: ProjectOptAlias = None,
    *,
    s: Session,
) -> None:
    """Recompute every posted round of a project from public data and reconcile its payouts to the wei.

    Checks each round's report against its on-chain hash and submissions, re-validates every update (sealed ones
    through their revealed plaintext), re-runs outlier filtering, scoring and aggregation with the chain-derived
    seeds, and compares flags, scores, statuses, the new model's CID, the next hyper-parameters' hash and every
    credit, then the escrow and each trainer's credited, claimed and pending wei. Exits 1 listing every
    difference, e.g. "round 2, submission 3 (0xabc…): posted score 51234, recomputed 49870".
    """
    from pocfl.audit.entry import run_audit

    project_id = args.project_id(project, project_alias)
    run = run_audit(
        s,
        project_id,
        out_dir=out,
        validation=validation,
        strict=strict,
        evidence=evidence or [],
        extra_stores=extra_ipfs or [],
        status=s.out.status,
    )
    files, mismatch = run.files, run.mismatch
    document = run.result.to_json()
    document["files"] = {
        "out": str(files.out_dir),
        "html": str(files.html),
        "json": str(files.json),
        "figures": [str(p) for p in files.figures],
    }
    if mismatch is not None:
        document["error"] = "AuditMismatchError"
        document["message"] = str(mismatch)
    s.out.result(document, lambda: _human(s.out, run.result, files))
    if mismatch is not None:
        if not s.out.as_json:
            s.out.fail(mismatch)
        raise typer.Exit(1)


def _human(out: Output, result: AuditResult, files: AuditFiles) -> None:
    out.print(
        f"[bold]Audit of project {result.project_id}[/bold] on chain {result.chain_id}, marketplace "
        f"{result.market} ({result.status}): budget {eth(result.budget)} ETH over {result.num_rounds} rounds; "
        f"manifest {escape(result.manifest_cid)}; validation set: {escape(result.validation or 'unavailable')}"
    )
    out.print(
        "Proofs: rounds proven on chain by verifier " + result.verifier
        if result.proofs == "verifier"
        else "Proofs: the project has no verifier; results are unproven (recomputed only)."
    )
    rounds = Table("round", "state", "verdict", "proven", "subs", "accuracy", "credited (wei)", "unallocated (wei)")
    for r in result.rounds:
        colour = VERDICT_COLOURS.get(r.verdict)
        rounds.add_row(
            str(r.round),
            r.state,
            f"[{colour}]{r.verdict}[/{colour}]" if colour else r.verdict,
            "" if r.proven is None else ("yes" if r.proven else "no"),
            str(len(r.submissions)),
            "" if r.accuracy is None else f"{100 * r.accuracy:.2f}%",
            str(r.credited_wei),
            str(r.unallocated_wei),
        )
    out.table(rounds)
    trainers = Table(
        "trainer",
        "rounds",
        "total score",
        "outliers",
        "credited (wei)",
        "recomputed (wei)",
        "claimed (wei)",
        "pending (wei)",
        title="Payouts per trainer (claimed and pending: whole account)",
    )
    for t in result.trainers:
        expected = str(t.expected_wei) if t.expected_wei == t.credited_wei else f"[red]{t.expected_wei}[/red]"
        trainers.add_row(
            t.trainer,
            str(t.rounds),
            str(t.total_score),
            str(t.outliers),
            str(t.credited_wei),
            expected,
            str(t.claimed_wei),
            str(t.pending_wei),
        )
    out.table(trainers)
    for warning in result.warnings:
        out.warn(warning)
    for line in result.evidence:
        out.print(f"Evidence: {escape(line)}")
    if result.unchecked:
        n = len(result.unchecked)
        out.print(
            f"[bold yellow]{n} rejection{'s' if n != 1 else ''} unchecked[/bold yellow]: the audit can neither "
            "confirm nor disprove them (the trainer may hold evidence: `pocfl audit --evidence FILE`; --strict fails "
            "on them):"
        )
        for line in result.unchecked:
            out.print(f"  [yellow]-[/yellow] {escape(line)}")
    out.print(f"Report: {escape(str(files.html))} (figures and audit.json in {escape(str(files.out_dir))})")
    if result.ok:
        checked = [r.round for r in result.rounds if r.verdict in ("verified", "unchecked")]
        caveat = f", but {len(result.unchecked)} rejection(s) unchecked (listed above)" if result.unchecked else ""
        out.print(
            f"[green]No difference[/green]{caveat}: rounds {checked} recomputed bit for bit; credits, claims and "
            "escrow reconcile to the wei."
        )
