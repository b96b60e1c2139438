"""The round report checks of the audit.

:func:`read_report` fetches the object named by ``RoundPosted.reportHash`` by its CID (so its bytes are the ones
the chain fixed) and parses it; :func:`check_report` checks that it describes this round (project, round, chain,
market, submissions digest, output model, next hyper-parameters and their hash) and that its submission list
equals the ``UpdateSubmitted`` events and its scores and flags the ``TrainerCredited`` events;
:func:`check_config` checks the settings it says the round ran with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from aggregator.round import RoundConfig
from pocfl.audit.result import Difference, Findings, ProjectRef, RoundAudit, error_text, same_hex, to_hex
from pocfl.chain.types import ZERO_BYTES32, EventRecord
from pocfl.errors import PocflError
from pocfl.market import Market, SubmittedUpdate, report_cids
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.report import REPORT_MAX_SIZE, ReportError, RoundReport
from pocfl.store import StoreUnavailableError
from pocfl.untrusted import quote


def read_report(
    market: Market, project_id: int, r: int, posted: EventRecord, audit: RoundAudit
) -> tuple[RoundReport | None, list[Difference]]:
    """The round's report, verified by its CID (None, with a difference, when there is none or it is unreadable).

    Sets ``audit.report_cid``.

    Raises
    ------
    StoreUnavailableError
        The store could not be reached (transient: nothing can be concluded, try again).
    """
    out = Findings(project_id)
    args = posted.args
    report = None
    if bytes(args["reportHash"]) == ZERO_BYTES32:
        out.diff(r, "report", "no report posted (zero reportHash): the round cannot be recomputed")
    else:
        try:
            audit.report_cid, data = market.fetch_report(bytes(args["reportHash"]), max_size=REPORT_MAX_SIZE)
            report = RoundReport.from_json(data)
        except ReportError as exc:
            out.diff(r, "report", f"report {audit.report_cid}: {error_text(exc)}")
        except StoreUnavailableError:
            raise  # transient: nothing can be concluded, try again
        except PocflError as exc:
            cid = audit.report_cid or " or ".join(report_cids(bytes(args["reportHash"])))
            out.diff(
                r,
                "report",
                f"the report with reportHash {audit.report_hash} ({cid}) cannot be read verified: "
                f"{type(exc).__name__}: {error_text(exc)}",
            )
    return report, out.differences


def check_report(
    ref: ProjectRef, r: int, report: RoundReport, audit: RoundAudit, subs: Sequence[SubmittedUpdate], digest: bytes
) -> list[Difference]:
    """The report describes round ``r`` of the audited project and lists its on-chain submissions and credits.

    Sets ``audit.model_in`` (as reported). Every value the report holds is quoted, so a hostile report yields
    bounded differences.
    """
    out = Findings(ref.project_id)
    audit.model_in = report.model_in
    _check_header(out, ref, r, report, audit, digest)
    _check_submissions(out, r, report, audit, subs)
    return out.differences


def _check_header(
    out: Findings, ref: ProjectRef, r: int, report: RoundReport, audit: RoundAudit, digest: bytes
) -> None:
    cid = audit.report_cid
    header: list[tuple[str, object, object]] = [
        ("project_id", report.project_id, ref.project_id),
        ("round", report.round, r),
        ("chain_id", report.chain_id, ref.chain_id),
    ]
    for name, got, want in header:
        if got != want:
            out.diff(
                r, "report", f"report {cid} says {name} {quote(got)}, the chain {want}", posted=got, recomputed=want
            )
    if str(report.market).lower() != ref.market.lower():
        out.diff(r, "report", f"report {cid} names market {quote(report.market)}, audited {ref.market}")
    if not same_hex(report.submissions_digest, to_hex(digest)):
        out.diff(
            r,
            "digest",
            f"report {cid} has submissions digest {quote(report.submissions_digest)}, the chain's events fold to "
            f"{to_hex(digest)}",
            posted=report.submissions_digest,
            recomputed=to_hex(digest),
        )
    if report.model_out != audit.model_cid:
        out.diff(
            r,
            "model_cid",
            f"report {cid} names new model {quote(report.model_out)}, RoundPosted {quote(audit.model_cid)}",
            posted=audit.model_cid,
            recomputed=report.model_out,
        )
    if not same_hex(report.next_hyperparams_hash, audit.hyperparams_hash):
        out.diff(
            r,
            "hyperparams_hash",
            f"report {cid} has next_hyperparams_hash {quote(report.next_hyperparams_hash)}, RoundPosted "
            f"{audit.hyperparams_hash}",
        )
    try:
        next_hash = to_hex(HyperParams.from_json(report.next_hyperparams).hash())
        if not same_hex(next_hash, audit.hyperparams_hash):
            out.diff(
                r,
                "hyperparams_hash",
                f"report {cid}'s next_hyperparams hash to {next_hash}, RoundPosted has {audit.hyperparams_hash}",
                posted=audit.hyperparams_hash,
                recomputed=next_hash,
            )
    except (ValueError, TypeError) as exc:
        out.diff(
            r, "hyperparams", f"report {cid}: next_hyperparams {quote(report.next_hyperparams)}: {quote(str(exc))}"
        )


def _check_submissions(
    out: Findings, r: int, report: RoundReport, audit: RoundAudit, subs: Sequence[SubmittedUpdate]
) -> None:
    cid = audit.report_cid
    if len(report.submissions) != len(subs):
        out.diff(
            r,
            "submissions",
            f"report {cid} lists {len(report.submissions)} submissions, the chain has {len(subs)}",
            posted=len(subs),
            recomputed=len(report.submissions),
        )
    for i, (entry, u) in enumerate(zip(report.submissions, subs, strict=False)):
        fields: tuple[tuple[str, object, object], ...] = (
            ("index", entry.index, u.index),
            ("trainer", str(entry.trainer).lower(), u.trainer.lower()),
            ("cid", entry.cid, u.cid),
            ("commitment", str(entry.commitment).lower().removeprefix("0x"), u.commitment.hex()),
        )
        for name, got, want in fields:
            if got != want:
                out.diff(
                    r,
                    "submissions",
                    f"report {cid} lists {name} {quote(got)}, UpdateSubmitted has {quote(want)}",
                    index=i,
                    trainer=u.trainer,
                    posted=want,
                    recomputed=got,
                )
    for entry, s in zip(report.submissions, audit.submissions, strict=False):
        if s.posted_score is not None and (entry.score, entry.outlier) != (s.posted_score, s.posted_outlier):
            out.at(r, s).diff(
                "report",
                f"report {cid} records score {quote(entry.score)} and outlier {quote(entry.outlier)}, "
                f"the chain credited score {s.posted_score} and outlier {s.posted_outlier}",
            )


def check_config(
    project_id: int, r: int, report: RoundReport, audit: RoundAudit, config: RoundConfig, history: Sequence[float]
) -> list[Difference]:
    """The settings the report says the round ran with must be the manifest's (and the history the rule's)."""
    out = Findings(project_id)
    expected: dict[str, Any] = json.loads(json.dumps(asdict(config)))
    for key, want in expected.items():
        got = report.config.get(key)
        if got != want:
            out.diff(
                r,
                "config",
                f"report {audit.report_cid} ran with {key}={quote(got)}, the manifest fixes {json.dumps(want)}",
                posted=got,
                recomputed=want,
            )
    if "accuracy_history" in report.config and report.config["accuracy_history"] != list(history):
        out.diff(
            r,
            "config",
            f"report {audit.report_cid} used accuracy history {quote(report.config['accuracy_history'])}, "
            f"the posted reports give {list(history)}",
        )
    return out.differences
