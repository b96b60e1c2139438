"""The next-round hyper-parameter rule and its canonical encoding/hash (pocfl.rounds.hyperparams)."""

from __future__ import annotations

import json

import pytest
from eth_hash.auto import keccak as eth_hash_keccak
from hypothesis import given
from hypothesis import strategies as st

from pocfl.rounds.hyperparams import (
    HyperParamRule,
    HyperParams,
    Trend,
    next_hyperparams,
    trend,
)

pytestmark = pytest.mark.unit

LRS = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False, allow_infinity=False)
PARAMS = st.builds(
    HyperParams,
    round=st.integers(0, 10**6),
    learning_rate=LRS,
    local_epochs=st.integers(1, 50),
    batch_size=st.integers(1, 4096),
)
HISTORIES = st.lists(st.floats(0.0, 1.0, allow_nan=False), max_size=12)


def test_canonical_json_is_sorted_compact_and_fixed_format() -> None:
    h = HyperParams(round=3, learning_rate=0.05, local_epochs=2, batch_size=32)
    text = h.to_json()
    assert text == ('{"batch_size":32,"learning_rate":5.000000000e-02,"local_epochs":2,"round":3,"version":1}')
    assert list(json.loads(text)) == sorted(json.loads(text))
    # the hash is keccak256 of the UTF-8 text, as Solidity's keccak256(bytes(text)) computes it
    assert h.hash() == eth_hash_keccak(text.encode())
    assert len(h.hash()) == 32


@given(PARAMS)
def test_json_round_trip_is_exact_and_stable(h: HyperParams) -> None:
    text = h.to_json()
    back = HyperParams.from_json(text)
    assert back == h
    assert back.to_json() == text
    assert back.hash() == h.hash()


@given(PARAMS, LRS)
def test_hash_binds_every_field(h: HyperParams, lr: float) -> None:
    other = HyperParams(h.round, lr, h.local_epochs, h.batch_size)
    assert (other.hash() == h.hash()) == (other == h)
    assert HyperParams(h.round + 1, h.learning_rate, h.local_epochs, h.batch_size).hash() != h.hash()


def test_learning_rate_is_quantised_to_ten_significant_digits() -> None:
    h = HyperParams(0, 0.1 + 0.2, 1, 1)  # 0.30000000000000004
    assert h.learning_rate == 0.3
    assert h == HyperParams(0, 0.3, 1, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"round": -1, "learning_rate": 0.1, "local_epochs": 1, "batch_size": 1},
        {"round": 0, "learning_rate": 0.0, "local_epochs": 1, "batch_size": 1},
        {"round": 0, "learning_rate": float("nan"), "local_epochs": 1, "batch_size": 1},
        {"round": 0, "learning_rate": 0.1, "local_epochs": 0, "batch_size": 1},
        {"round": 0, "learning_rate": 0.1, "local_epochs": 1, "batch_size": 0},
    ],
)
def test_invalid_hyperparams_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HyperParams(**kwargs)  # type: ignore[arg-type]


def test_non_int_fields_and_bad_json_are_rejected() -> None:
    with pytest.raises(TypeError):
        HyperParams(0, 0.1, 1.5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        HyperParams(0, 0.1, True, 1)
    with pytest.raises(ValueError, match="expected keys"):
        HyperParams.from_json('{"round":0,"learning_rate":0.1,"local_epochs":1,"batch_size":1,"extra":1}')


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], Trend.WARMUP),
        ([0.5], Trend.WARMUP),
        ([0.5, 0.6], Trend.IMPROVING),
        ([0.5, 0.501], Trend.STALLED),
        ([0.5, 0.5], Trend.STALLED),
        ([0.5, 0.495], Trend.STALLED),
        ([0.5, 0.48], Trend.STALLED),  # 2 points: inside a small validation set's noise
        ([0.5, 0.44], Trend.DROPPED),
        # progress is measured against the best earlier round, not the previous one
        ([0.7, 0.5, 0.6], Trend.DROPPED),
        ([0.6, 0.5, 0.65], Trend.IMPROVING),
    ],
)
def test_trend(history: list[float], expected: Trend) -> None:
    assert trend(history) is expected


def test_rule_steps() -> None:
    h = HyperParams(round=4, learning_rate=0.2, local_epochs=3, batch_size=16)
    improving = next_hyperparams(h, [0.5, 0.6])
    assert (improving.round, improving.learning_rate, improving.local_epochs) == (5, 0.2, 3)
    stalled = next_hyperparams(h, [0.6, 0.6])
    assert (stalled.learning_rate, stalled.local_epochs) == (0.2, 3)
    dropped = next_hyperparams(h, [0.6, 0.4])
    assert (dropped.learning_rate, dropped.local_epochs) == (0.2, 2)
    assert dropped.batch_size == 16


def test_rule_floors_and_ceilings() -> None:
    rule = HyperParamRule(lr_min=0.01, lr_max=0.5, min_epochs=2, max_epochs=4)
    low = HyperParams(0, 0.005, 2, 8)
    assert next_hyperparams(low, [0.9, 0.1], rule) == HyperParams(1, 0.01, 2, 8)
    high = HyperParams(0, 3.0, 9, 8)  # out-of-range input is pulled back into range
    assert next_hyperparams(high, [0.1, 0.9], rule) == HyperParams(1, 0.5, 4, 8)


@given(PARAMS, HISTORIES)
def test_rule_properties(h: HyperParams, history: list[float]) -> None:
    rule = HyperParamRule()
    nxt = next_hyperparams(h, history, rule)
    assert nxt == next_hyperparams(h, history, rule)  # deterministic
    assert nxt.round == h.round + 1
    assert rule.lr_min <= nxt.learning_rate <= rule.lr_max
    assert rule.min_epochs <= nxt.local_epochs <= rule.max_epochs
    # never speeds up: the learning rate only grows when it was below the floor
    assert nxt.learning_rate <= max(h.learning_rate, rule.lr_min)
    assert nxt.local_epochs <= max(h.local_epochs, rule.min_epochs)


@given(st.lists(st.floats(0.0, 1.0), max_size=30))
def test_learning_rate_never_collapses(history: list[float]) -> None:
    # issue 12: stalls and noisy drops used to halve the rate down to lr_min; now no history moves it
    h = HyperParams(round=0, learning_rate=0.1, local_epochs=2, batch_size=16)
    for t in range(len(history)):
        h = next_hyperparams(h, history[: t + 1])
    assert h.learning_rate == 0.1
    assert h.local_epochs >= 1


def test_invalid_rule_and_history() -> None:
    with pytest.raises(ValueError):
        HyperParamRule(decay=0.0)
    with pytest.raises(ValueError):
        HyperParamRule(min_epochs=3, max_epochs=2)
    with pytest.raises(ValueError, match="finite"):
        trend([0.5, float("nan")])
