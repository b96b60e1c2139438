"""Issue 14, "say why": a trainer rejected, flagged or paid nothing reads the rule, its statistic and its threshold,
from the round report alone (:func:`pocfl.rounds.report.explain_entry`)."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pytest

from aggregator.round import RoundConfig
from pocfl.rounds.report import EXPLANATION_LIMIT, SubmissionEntry, explain_entry

pytestmark = pytest.mark.unit

CONFIG: dict[str, Any] = asdict(RoundConfig())  # what the node writes (plus the history it adds)
ENTRY = SubmissionEntry(
    index=0,
    trainer="0x" + "1" * 40,
    cid="bafy",
    commitment="0x" + "0" * 64,
    status="scored",
    reason=None,
    outlier=False,
    score=12,
    value=1.2e-8,
    weight=0.5,
    ratio=1.1,
)


def why(config: dict[str, Any] = CONFIG, **fields: Any) -> str | None:
    return explain_entry(replace(ENTRY, **fields), config)


def test_a_paid_submission_needs_no_explanation() -> None:
    assert why() is None


def test_each_outlier_rule_names_its_statistic_and_threshold() -> None:
    norm = why(status="outlier", outlier=True, score=0, ratio=9.4)
    assert norm == (
        "outlier by the norm rule: the update's norm is 9.4 times the round's median norm, above the limit of 4 "
        "(trust.max_norm_ratio)"
    )
    direction = why(status="outlier", outlier=True, score=0, ratio=1.3)
    assert direction is not None and direction.startswith("outlier by the direction rule")
    assert "at or below -0.5 times the round's median (trust.min_trust)" in direction
    assert "1.3 times the median, was within the limit of 4" in direction
    assert why(status="outlier", outlier=True, score=0, ratio=0.0) == "outlier: a zero update (norm 0)"
    flag = why(CONFIG | {"rule": "flag"}, status="outlier", outlier=True, score=0, ratio=0.25)
    assert flag is not None and "Flag Aggregator" in flag and "reconstruction ratio 0.25" in flag
    proven = why(CONFIG | {"proof": {}}, status="outlier", outlier=True, score=0, ratio=0.0)
    assert proven is not None and "proven outlier rule" in proven


def test_screening_rejections_and_unpaid_rounds_are_explained() -> None:
    assert "below 0.01 times the median norm" in str(why(status="free_rider", score=0))
    assert "an earlier submission of this round reached 0.99" in str(why(status="copy", score=0))
    assert "an earlier round's public update reached 0.99" in str(why(status="stale", score=0))
    assert "within 2 standard errors of the noise (noise_z)" in str(why(status="unpaid", score=0))
    rejected = why(status="rejected", outlier=True, score=0, reason="CidMismatchError: the bytes are another CID")
    assert rejected == "rejected before scoring: CidMismatchError: the bytes are another CID"


def test_a_negative_score_says_the_model_did_worse_with_the_update() -> None:
    text = why(score=-9422461, value=-0.009422461)
    assert text == (
        "scored -9422461: its contribution value was -0.009422 (neg_loss on the owner's validation set): the model "
        "did worse with the update than without it; only scores above 0 are paid (score = value x 1e+09)"
    )
    assert "did no better" in str(why(score=0, value=0.0))


def test_a_hostile_report_gives_bounded_text_and_question_marks() -> None:
    odd = {"rule": "trust", "trust": {"max_norm_ratio": "x" * 10_000, "min_trust": [1]}, "metric": "\x00" * 99}
    text = why(odd, status="outlier", outlier=True, score=0, ratio=2.0)
    assert text is not None and "limit of ?" in text and "at or below ? times" in text
    long = why(odd, status="rejected", outlier=True, score=0, reason="\u00e9" * 5000)
    assert long is not None and len(long) <= EXPLANATION_LIMIT and long.isascii()
    assert "(? on the owner's" in str(why(odd, score=-1, value=-1.0))
