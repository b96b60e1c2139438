"""The audit quotes what reports say: a hostile report cannot grow the audit's messages or values beyond a bound."""

from __future__ import annotations

import json

from pocfl.audit import MESSAGE_LIMIT, VALUE_LIMIT, RoundAudit, SubmissionAudit
from pocfl.audit.reports import check_report
from pocfl.audit.result import ProjectRef
from pocfl.audit.run import finish_round
from pocfl.market import SubmittedUpdate
from pocfl.rounds.report import RoundReport, SubmissionEntry

MARKET = "0x" + "11" * 20
TRAINER = "0x" + "22" * 20
HUGE = "é\u202e\x1b[31m\n" * 50_000  # 200,000 characters: non-ASCII, bidi override, terminal escape, newline
BIG_INT = 10**4000


def hostile_report() -> RoundReport:
    entry = SubmissionEntry(
        index=0,
        trainer=HUGE,
        cid=HUGE,
        commitment=HUGE,
        status=HUGE,
        reason=HUGE,
        outlier=False,
        score=BIG_INT,
        value=0.0,
        weight=0.0,
        ratio=0.0,
        plaintext_cid=HUGE,
    )
    return RoundReport(
        project_id=BIG_INT,
        round=BIG_INT,
        chain_id=BIG_INT,
        market=HUGE,
        submissions_digest=HUGE,
        model_in=HUGE,
        model_out=HUGE,
        shapley_seed=HUGE,
        sketch_seed=HUGE,
        hyperparams=HUGE,
        next_hyperparams=HUGE,
        next_hyperparams_hash=HUGE,
        accuracy_before=0.0,
        loss_before=0.0,
        accuracy=0.0,
        loss=0.0,
        shapley_method=HUGE,
        shapley_evaluations=BIG_INT,
        submissions=(entry, entry),
        config={"accuracy_history": [HUGE] * 1000},
    )


def test_a_hostile_report_yields_bounded_ascii_differences() -> None:
    ref = ProjectRef(project_id=1, chain_id=31337, market=MARKET)
    r = 0
    u = SubmittedUpdate(0, TRAINER, "bafy", b"\x01" * 32, b"\x02" * 32, 1)
    posted = RoundAudit(r, "posted", "posted", model_cid="bafy-model", hyperparams_hash="0x" + "33" * 32)
    posted.submissions.append(SubmissionAudit(0, TRAINER, "bafy", "0x" + "01" * 32, posted_score=1))

    differences = check_report(ref, r, hostile_report(), posted, [u], b"\x04" * 32)
    warnings = finish_round(posted, bool(differences), "the report's submissions differ from the chain's")

    fields = {d.field for d in differences}
    assert {"report", "digest", "model_cid", "hyperparams_hash", "hyperparams", "submissions"} <= fields
    texts = [d.message for d in differences] + warnings + posted.notes + [posted.unverifiable or ""]
    for text in texts:  # the report's text comes through escaped (the audit's own sentences may say "…")
        assert len(text) <= MESSAGE_LIMIT and text.isprintable(), text[:200]
        assert not any(c in text for c in "é\u202e\x1b\n"), text[:200]
    for d in differences:
        for value in (d.posted, d.recomputed):
            # At most VALUE_LIMIT printable ASCII characters; JSON may double a backslash and adds two quotes.
            assert len(json.dumps(value)) <= 2 * VALUE_LIMIT + 2, str(value)[:200]
            assert json.dumps(value, ensure_ascii=False).isascii()
    # The whole audit stays small whatever the report held (~8 MB of text here).
    assert sum(len(t) for t in texts) < 64 * MESSAGE_LIMIT
