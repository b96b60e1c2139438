"""The round report of a decision (:func:`build_report`) and the post it stands for (:func:`round_post_of`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from aggregator.node_records import hex0x
from aggregator.round import RoundConfig, RoundDecision
from pocfl.chain.types import RoundPost
from pocfl.market import SubmittedUpdate, report_hash
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.inputs import ValidatedUpdate
from pocfl.rounds.report import RoundReport, SubmissionEntry, bounded_reason
from pocfl.store import compute_cid

MEASURED = ("accuracy_before", "loss_before", "accuracy", "loss", "shapley_method", "shapley_evaluations")
"""The decision's measurements the report carries under the same names."""


def build_report(
    *,
    project_id: int,
    round_: int,
    chain_id: int,
    market: str,
    digest: bytes,
    model_in: str,
    model_out: str,
    seeds_shapley: bytes,
    seeds_sketch: bytes,
    hyperparams: HyperParams,
    decision: RoundDecision,
    validated: Sequence[ValidatedUpdate],
    config: RoundConfig,
    extra_config: dict[str, Any] | None = None,
) -> RoundReport:
    """The round report of a decision (every per-submission field in submission order).

    ``plaintext_cid`` is the CID of each decrypted plaintext (revealed by the node before it posts: the
    submission window is closed by then); ``config`` holds :class:`RoundConfig` as a dict plus
    ``extra_config`` (the node adds the accuracy history and the rounds whose deltas fed the screening).
    """
    entries = tuple(
        SubmissionEntry(
            index=v.submitted.index,
            trainer=v.submitted.trainer,
            cid=v.submitted.cid,
            commitment=hex0x(v.submitted.commitment),
            status=decision.statuses[i],
            reason=None if v.reason is None else bounded_reason(v.reason),  # whoever made it: bounded here
            outlier=decision.outliers[i],
            score=decision.scores[i],
            value=decision.values[i],
            weight=decision.weights[i],
            ratio=decision.ratios[i],
            encrypted=v.encrypted,
            plaintext_cid=compute_cid(v.plaintext) if v.plaintext is not None else None,
        )
        for i, v in enumerate(validated)
    )
    nxt = decision.next_hyperparams
    return RoundReport(
        project_id=project_id,
        round=round_,
        chain_id=chain_id,
        market=market,
        submissions_digest=hex0x(digest),
        model_in=model_in,
        model_out=model_out,
        shapley_seed=hex0x(seeds_shapley),
        sketch_seed=hex0x(seeds_sketch),
        hyperparams=hyperparams.to_json(),
        next_hyperparams=nxt.to_json(),
        next_hyperparams_hash=hex0x(nxt.hash()),
        **{name: getattr(decision, name) for name in MEASURED},
        submissions=entries,
        config={**asdict(config), **(extra_config or {})},
    )


def round_post_of(report: RoundReport, updates: Sequence[SubmittedUpdate], report_cid: str) -> RoundPost:
    """The :class:`RoundPost` a report stands for (what the node posts, for checks and audits)."""
    return RoundPost(
        model_cid=report.model_out,
        submissions=tuple(u.submission for u in updates),
        scores=tuple(s.score for s in report.submissions),
        outliers=tuple(s.outlier for s in report.submissions),
        report_hash=report_hash(report_cid),
        hyperparams_hash=HyperParams.from_json(report.next_hyperparams).hash(),
    )
