"""REPORT_MAX_SIZE is the honest worst case with a margin: the largest report an honest aggregator writes fits."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

import pytest

from aggregator.round import RoundConfig, status_name
from aggregator.shapley import Method, Status
from pocfl.rounds.inputs import HISTORY_ROUNDS
from pocfl.rounds.report import (
    CONFIG_MAX_JSON,
    MAX_CID_BYTES,
    MAX_SUBMISSIONS,
    REASON_LIMIT,
    REPORT_HONEST_MAX_SIZE,
    REPORT_MAX_SIZE,
    STATUSES,
    ReportError,
    RoundReport,
    SubmissionEntry,
    bounded_reason,
)

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "PocMarketplace.sol"
LONG_FLOAT = -1.2345678901234567e-300  # 24 characters, as long as a float's repr gets
BIG = 2**256 - 1
CID = "".join(chr(i % 32) for i in range(MAX_CID_BYTES))  # 128 bytes, control characters: 6 JSON bytes each
HEX32 = "0x" + "ab" * 32


def _longest(value: Any) -> Any:
    """``value`` (a config tree) with every number at its longest."""
    if isinstance(value, dict):
        return {k: _longest(v) for k, v in value.items()}
    if isinstance(value, bool | str):
        return value
    return BIG if isinstance(value, int) else LONG_FLOAT


def maximal_config() -> dict[str, Any]:
    proof = {
        "cid": CID,
        "settings_cid": CID,
        "vk_cid": CID,
        "circuit": f"K{BIG}-k{BIG}-s{BIG}-" + "f" * 64,
        "slots": BIG,
        "sketch_dim": BIG,
        "scale": BIG,
        "feature_seed": HEX32,
        "witness_hash": hex(BIG),
        "prove_seconds": LONG_FLOAT,
    }
    config = _longest(asdict(RoundConfig()))
    config["scoring"]["method"] = max(get_args(Method), key=len)
    return {**config, "proof": proof, "accuracy_history": [LONG_FLOAT] * HISTORY_ROUNDS}


def maximal_report() -> RoundReport:
    reason = bounded_reason('"\\' * REASON_LIMIT)  # echoed quotes and backslashes: 2 JSON bytes each
    entries = tuple(
        SubmissionEntry(
            index=i,
            trainer="0x" + "cd" * 20,
            cid=CID,
            commitment=HEX32,
            status=max(STATUSES, key=len),
            reason=reason,
            outlier=False,
            score=-(2**127),
            value=LONG_FLOAT,
            weight=LONG_FLOAT,
            ratio=LONG_FLOAT,
            encrypted=False,
            plaintext_cid=CID,
        )
        for i in range(MAX_SUBMISSIONS)
    )
    hyper = '{"batch_size":' + "9" * 4000 + "}"  # a hyper-parameter text at its reader's limit
    return RoundReport(
        BIG, BIG, BIG, "0x" + "ef" * 20, HEX32, CID, CID, HEX32, HEX32, hyper, hyper, HEX32,
        LONG_FLOAT, LONG_FLOAT, LONG_FLOAT, LONG_FLOAT, max(get_args(Method), key=len), BIG, entries,
        maximal_config(),
    )  # fmt: skip


def test_the_largest_honest_report_fits_under_the_limit_and_round_trips() -> None:
    report = maximal_report()
    assert len(report.submissions[0].reason or "") == REASON_LIMIT
    assert len(json.dumps(report.config, separators=(",", ":")).encode()) <= CONFIG_MAX_JSON
    data = report.to_json()
    assert len(data) <= REPORT_HONEST_MAX_SIZE < REPORT_MAX_SIZE
    assert len(data) > REPORT_HONEST_MAX_SIZE * 0.9, "the bound is tight: the limit is not a guess"
    assert RoundReport.from_json(data) == report


def test_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(ReportError, match=f"over the limit of {REPORT_MAX_SIZE} bytes"):
        RoundReport.from_json(b" " * (REPORT_MAX_SIZE + 1))


def test_the_bound_uses_the_contract_and_aggregator_constants() -> None:
    source = CONTRACT.read_text()
    assert re.search(rf"MAX_TRAINERS = {MAX_SUBMISSIONS};", source)
    assert re.search(rf"MAX_CID_LENGTH = {MAX_CID_BYTES};", source)
    assert {status_name(s) for s in Status} | {"rejected", "unpaid"} <= set(STATUSES)  # unpaid: aggregator.round
    assert max(len(m) for m in get_args(Method)) <= 32  # the room REPORT_FIXED_MAX_JSON gives the method name


def test_a_report_over_the_limit_is_never_written() -> None:
    # A future field could outgrow the bound: the writer refuses rather than posting a report nobody can read.
    report = dataclasses.replace(maximal_report(), config={"pad": "x" * REPORT_MAX_SIZE})
    with pytest.raises(ReportError, match="exceeds the readers' limit"):
        report.to_json()
