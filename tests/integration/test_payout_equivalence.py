"""pocfl.payouts.allocate predicts the contract's credits to the wei, on generated rounds.

Each example is a fresh project (inside a snapshot): 1..12 submitters, int128 scores including
negatives and the extremes, random outlier flags, budgets from 1 wei to 1e30 over 1..4 rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from pocfl.payouts import INT128_MAX, INT128_MIN, allocate, round_budget
from tests.helpers import N_TRAINERS, Env, create_project, isolated, shares_of

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    budget: int
    num_rounds: int
    scores: tuple[int, ...]
    outliers: tuple[bool, ...]


SCORES = st.one_of(
    st.integers(INT128_MIN, INT128_MAX),
    st.integers(-1_000, 1_000),
    st.integers(1, 10**18),
    st.sampled_from([INT128_MIN, INT128_MAX, -1, 0, 1]),
)
BUDGETS = st.one_of(st.integers(1, 10**30), st.integers(1, 10_000), st.sampled_from([1, 10**30]))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, N_TRAINERS))
    return Case(
        budget=draw(BUDGETS),
        num_rounds=draw(st.integers(1, 4)),
        scores=tuple(draw(st.lists(SCORES, min_size=n, max_size=n))),
        outliers=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
    )


def run_on_chain(env: Env, case: Case) -> None:
    trainers = env.trainers[: len(case.scores)]
    p = create_project(
        env, budget=case.budget, owner=env.whale, num_rounds=case.num_rounds, min_trainers=1, max_trainers=N_TRAINERS
    )
    p.register(*trainers)
    p.start()
    receipt = p.play_round(trainers, case.scores, case.outliers)

    budget_of_round = round_budget(case.budget, case.num_rounds)
    expected = allocate(budget_of_round, case.scores, case.outliers)
    note(f"round budget {budget_of_round}, expected {expected}")
    assert p.state().round_budget == budget_of_round
    credited = [e.args for e in receipt.events if e.name == "TrainerCredited"]
    assert [c["trainer"] for c in credited] == [t.address for t in trainers]
    assert shares_of(receipt) == list(expected.shares)
    posted = receipt.event("RoundPosted").args
    assert (posted["credited"], posted["unallocated"]) == (expected.credited, expected.unallocated)
    assert [env.market.credits(t.address) for t in trainers] == list(expected.shares)
    assert p.state().escrow == case.budget - expected.credited


@settings(max_examples=25, deadline=None)
@given(case=cases())
@example(case=Case(10**30, 1, (INT128_MAX,) * N_TRAINERS, (False,) * N_TRAINERS))
@example(case=Case(10**30, 3, (INT128_MAX, 1, INT128_MIN, 7), (False, False, False, True)))
@example(case=Case(1, 1, (1, 1), (False, False)))
@example(case=Case(2, 3, (5,), (False,)))  # round budget 0
@example(case=Case(10**18, 2, (-1, INT128_MIN, 0), (False, False, False)))
@example(case=Case(999, 1, (1, 1, 1, 1, 1, 1, 1), (False, True, False, True, False, False, False)))
def test_allocate_matches_contract(deployment: Env, case: Case) -> None:
    with isolated(deployment.chain):
        run_on_chain(deployment, case)
