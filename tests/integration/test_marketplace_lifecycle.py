"""Whole project lifecycles, every ending included, with wei-exact bookkeeping on every backend.

Each test ends with everything withdrawn: the marketplace holds 0 wei and every party's balance moved by
exactly what it earned or lost, minus the gas it paid (read from the receipts).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from pocfl.chain import contract_errors as E  # noqa: N812 - short name for the many error classes
from pocfl.chain.types import CancelReason, ProjectStatus, RegistrationMode
from tests.helpers import Env, Ledger, Project, create_project, reverts, shares_of, submissions_digest

pytestmark = pytest.mark.integration

ETH = 10**18
THIRD = 333_333_333_333_333_333


def withdraw_everything(env: Env, p: Project, trainers: list[LocalAccount]) -> dict[str, int]:
    """Release stakes (if any), claim every credit, withdraw the owner's rest; returns what each got."""
    got: dict[str, int] = {}
    for t in trainers:
        if env.market.trainer(p.id, t.address).stake_held:
            r = env.client(t).release_stake(p.id)
            assert r.event("StakeReleased").args["amount"] == p.params.stake
        if env.market.credits(t.address):
            got[t.address], _ = env.client(t).claim()
        assert env.market.credits(t.address) == 0
    if p.state().escrow:
        got[p.owner.address], receipt = env.client(p.owner).withdraw_remaining(p.id)
        assert receipt.event("RemainingWithdrawn").args["to"] == p.owner.address
    state = p.state()
    assert (state.escrow, state.stakes_held) == (0, 0)
    return got


def test_full_lifecycle_with_stakes(env: Env) -> None:
    t0, t1, t2, t3 = env.trainers[:4]
    stake = 10**17
    budget = 3 * ETH + 1  # the 1 wei remainder of budget / numRounds is never allocated
    ledger = Ledger(env.chain, [env.owner.address, env.aggregator.address] + [t.address for t in (t0, t1, t2, t3)])

    p = create_project(env, budget=budget, stake=stake, num_rounds=3, min_trainers=3)
    created = p.receipt.event("ProjectCreated").args
    assert (created["projectId"], created["budget"], created["owner"]) == (p.id, budget, env.owner.address)
    p.register(t0, t1, t2, t3)
    state = p.state()
    assert (state.trainer_count, state.stakes_held, state.round_budget) == (4, 4 * stake, ETH)
    assert env.market.balance() == budget + 4 * stake

    p.start()
    p.submit(t0, t1, t2, t3)
    # Recorded submissions, their order and the digest agree with what the trainers sent.
    assert env.market.submissions(p.id, 0) == p.submitted[0]
    digest = submissions_digest(env.chain.chain_id, env.market.address, p.id, 0, p.submitted[0])
    assert p.state().submissions_digest == digest
    assert env.market.trainer(p.id, t3.address).submitted_current_round
    p.close_submissions()
    r0 = p.post([3, 1, 0, -5])
    assert shares_of(r0) == [3 * ETH // 4, ETH // 4, 0, 0]
    posted = r0.event("RoundPosted").args
    assert (posted["round"], posted["credited"], posted["unallocated"], posted["proven"]) == (0, ETH, 0, False)
    opened = r0.event("RoundOpened").args
    assert opened["round"] == 1 and opened["submissionDeadline"] == opened["openedAt"] + p.params.submission_window
    assert digest != p.state().submissions_digest  # round 1 restarted the chain from its own seed

    # Claims may happen mid-project.
    amount, receipt = env.client(t0).claim()
    assert amount == 3 * ETH // 4
    assert receipt.event("Claimed").args == {"account": t0.address, "to": t0.address, "amount": amount}

    r1 = p.play_round([t0, t1, t2], [1, 1, 1], [False, False, True])  # t3 skips, t2 is an outlier
    assert shares_of(r1) == [ETH // 2, ETH // 2, 0]
    assert env.market.trainer(p.id, t2.address).submitted_current_round is False  # round 2 is open

    r2 = p.play_round([t0, t1, t2, t3], [1, 1, 1, 0])
    assert shares_of(r2) == [THIRD, THIRD, THIRD, 0]
    assert (r2.event("RoundPosted").args["credited"], r2.event("RoundPosted").args["unallocated"]) == (3 * THIRD, 1)
    assert any(e.name == "ProjectFinished" for e in r2.events)
    state = p.state()
    assert (state.status, state.escrow, state.current_round) == (ProjectStatus.FINISHED, 2, 2)

    got = withdraw_everything(env, p, [t0, t1, t2, t3])
    assert got == {
        t0.address: ETH // 2 + THIRD + stake,
        t1.address: ETH // 4 + ETH // 2 + THIRD + stake,
        t2.address: THIRD + stake,
        t3.address: stake,
        env.owner.address: 2,  # remainder wei + round 2's dust wei
    }
    assert env.market.balance() == 0
    ledger.assert_net(
        {
            env.owner.address: -budget + 2,
            env.aggregator.address: 0,
            t0.address: 3 * ETH // 4 + ETH // 2 + THIRD,
            t1.address: ETH // 4 + ETH // 2 + THIRD,
            t2.address: THIRD,
            t3.address: 0,
        }
    )


def test_failed_round_then_project_proceeds(env: Env) -> None:
    t0, t1 = env.trainers[:2]
    ledger = Ledger(env.chain, [env.owner.address, env.outsider.address, t0.address, t1.address])
    p = create_project(env, budget=3 * ETH)
    p.register(t0, t1)
    p.start()
    p.submit(t0, t1)  # submitted, but the aggregator never posts

    failed = p.fail()
    args = failed.event("RoundFailed").args
    assert (args["round"], args["caller"], args["consecutiveFailures"]) == (0, env.outsider.address, 1)
    opened = failed.event("RoundOpened").args
    state = p.state()
    assert (state.current_round, state.failed_rounds, state.consecutive_failures) == (1, 1, 1)
    assert (state.round_opened_at, state.submission_count, state.escrow) == (opened["openedAt"], 0, 3 * ETH)

    r1 = p.play_round([t0, t1], [1, 1])
    assert shares_of(r1) == [ETH // 2, ETH // 2]
    assert p.state().consecutive_failures == 0  # a posted round resets the count

    last = p.fail()  # a single failure of the last round finishes the project
    assert last.event("RoundFailed").args["consecutiveFailures"] == 1
    assert [e.name for e in last.events] == ["RoundFailed", "ProjectFinished"]
    state = p.state()
    assert (state.status, state.failed_rounds, state.escrow) == (ProjectStatus.FINISHED, 2, 2 * ETH)

    assert withdraw_everything(env, p, [t0, t1]) == {
        t0.address: ETH // 2,
        t1.address: ETH // 2,
        env.owner.address: 2 * ETH,
    }
    assert env.market.balance() == 0
    ledger.assert_net({env.owner.address: -ETH, env.outsider.address: 0, t0.address: ETH // 2, t1.address: ETH // 2})


@pytest.mark.parametrize("settled_first", [False, True])
def test_two_consecutive_failures_cancel(env: Env, settled_first: bool) -> None:
    t0, t1 = env.trainers[:2]
    stake = 10**16
    ledger = Ledger(env.chain, [env.owner.address, t0.address, t1.address])
    p = create_project(env, budget=4 * ETH, num_rounds=4, stake=stake)
    p.register(t0, t1)
    p.start()
    earned = {t0.address: 0, t1.address: 0}
    if settled_first:
        r0 = p.play_round([t0, t1], [1, 3])
        earned = {t0.address: ETH // 4, t1.address: 3 * ETH // 4}
        assert shares_of(r0) == list(earned.values())
    first = p.state().current_round
    p.fail()
    second = p.fail()
    assert second.event("RoundFailed").args["consecutiveFailures"] == 2
    cancel = second.event("ProjectCancelled").args
    assert (cancel["caller"], cancel["reason"]) == (env.outsider.address, CancelReason.AGGREGATOR_TIMEOUT)
    state = p.state()
    assert (state.status, state.current_round, state.failed_rounds) == (ProjectStatus.CANCELLED, first + 1, 2)
    with reverts(E.ProjectNotActive, projectId=p.id, status=ProjectStatus.CANCELLED):
        p.submit(t0, round_=first + 1)

    spent = sum(earned.values())
    got = withdraw_everything(env, p, [t0, t1])
    assert got[env.owner.address] == 4 * ETH - spent  # everything unearned, unspent rounds included
    assert env.market.balance() == 0
    ledger.assert_net({env.owner.address: -spent, **earned})


@pytest.mark.parametrize("num_rounds", [1, 2])
def test_failure_of_last_round_finishes(env: Env, num_rounds: int) -> None:
    # With two rounds the last failure is also the second in a row: the project finishes, not cancels.
    t0, t1 = env.trainers[:2]
    ledger = Ledger(env.chain, [env.owner.address])
    p = create_project(env, budget=ETH, num_rounds=num_rounds)
    p.register(t0, t1)
    p.start()
    for _ in range(num_rounds - 1):
        p.fail()
    last = p.fail()
    assert last.event("RoundFailed").args["consecutiveFailures"] == num_rounds
    assert [e.name for e in last.events] == ["RoundFailed", "ProjectFinished"]
    assert p.state().status == ProjectStatus.FINISHED
    assert withdraw_everything(env, p, [t0, t1]) == {env.owner.address: ETH}
    assert env.market.balance() == 0
    ledger.assert_net({env.owner.address: 0})


def test_owner_cancel_before_start_refunds_everything(
    env: Env, funded_accounts: Callable[..., list[LocalAccount]]
) -> None:
    t0, t1, t2 = funded_accounts(3)
    stake = 5 * 10**16
    ledger = Ledger(env.chain, [env.owner.address, t0.address, t1.address, t2.address])
    p = create_project(env, budget=2 * ETH, stake=stake)
    p.register(t0, t1, t2)
    left = env.client(t2).leave(p.id)  # leaving before the start credits the stake back at once
    assert left.event("TrainerLeft").args["stakeCredited"] == stake
    assert (p.state().trainer_count, p.state().stakes_held) == (2, 2 * stake)

    cancel = env.client(env.owner).cancel(p.id).event("ProjectCancelled").args
    assert (cancel["caller"], cancel["reason"]) == (env.owner.address, CancelReason.OWNER)
    got = withdraw_everything(env, p, [t0, t1, t2])
    assert got == {t0.address: stake, t1.address: stake, t2.address: stake, env.owner.address: 2 * ETH}
    assert env.market.balance() == 0
    ledger.assert_net(dict.fromkeys(ledger.accounts, 0))


def test_undersubscribed_start_cancellable_by_anyone(env: Env) -> None:
    t0, t1 = env.trainers[:2]
    stake = 10**16
    ledger = Ledger(env.chain, [env.owner.address, env.outsider.address, t0.address, t1.address])
    p = create_project(env, budget=ETH, stake=stake, min_trainers=3)
    p.register(t0, t1)
    p.start()
    assert p.state().phase(env.chain.now()) == "undersubscribed"
    cancel = env.client(env.outsider).cancel(p.id).event("ProjectCancelled").args
    assert (cancel["caller"], cancel["reason"]) == (env.outsider.address, CancelReason.UNDERSUBSCRIBED)
    assert withdraw_everything(env, p, [t0, t1]) == {t0.address: stake, t1.address: stake, env.owner.address: ETH}
    assert env.market.balance() == 0
    ledger.assert_net(dict.fromkeys(ledger.accounts, 0))


@pytest.mark.parametrize(
    ("scores", "outliers"),
    [([0, -1, -(2**127)], [False] * 3), ([5, 7, 2**127 - 1], [True] * 3), ([-3, 9, 0], [False, True, False])],
    ids=["non-positive", "all-outliers", "mixed"],
)
def test_round_without_positive_weight_credits_nothing(env: Env, scores: list[int], outliers: list[bool]) -> None:
    trainers = list(env.trainers[:3])
    ledger = Ledger(env.chain, [env.owner.address] + [t.address for t in trainers])
    p = create_project(env, budget=ETH, num_rounds=1)
    p.register(*trainers)
    p.start()
    r = p.play_round(trainers, scores, outliers)
    credited = [e.args for e in r.events if e.name == "TrainerCredited"]
    assert [(c["trainer"], c["score"], c["outlier"], c["amount"]) for c in credited] == [
        (t.address, s, o, 0) for t, s, o in zip(trainers, scores, outliers, strict=True)
    ]
    posted = r.event("RoundPosted").args
    assert (posted["credited"], posted["unallocated"]) == (0, ETH)
    assert all(env.market.credits(t.address) == 0 for t in trainers)
    assert withdraw_everything(env, p, trainers) == {env.owner.address: ETH}
    assert env.market.balance() == 0
    ledger.assert_net(dict.fromkeys(ledger.accounts, 0))


def test_rounding_dust_returns_to_owner(env: Env) -> None:
    t0, t1, t2 = env.trainers[:3]
    ledger = Ledger(env.chain, [env.owner.address, t0.address, t1.address, t2.address])
    p = create_project(env, budget=1000, num_rounds=3)  # round budget 333, remainder 1
    p.register(t0, t1, t2)
    p.start()
    r0 = p.play_round([t0, t1], [1, 1])
    r1 = p.play_round([t0, t1, t2], [1, 2, 4])
    r2 = p.play_round([t2], [10**30])
    assert [shares_of(r) for r in (r0, r1, r2)] == [[166, 166], [47, 95, 190], [333]]
    assert [r.event("RoundPosted").args["unallocated"] for r in (r0, r1, r2)] == [1, 1, 0]
    got = withdraw_everything(env, p, [t0, t1, t2])
    assert got == {t0.address: 213, t1.address: 261, t2.address: 523, env.owner.address: 3}
    assert env.market.balance() == 0
    ledger.assert_net({env.owner.address: -997, t0.address: 213, t1.address: 261, t2.address: 523})


@pytest.mark.parametrize("to_other", [False, True])
def test_claim_across_several_projects(env: Env, to_other: bool) -> None:
    t0, t1 = env.trainers[:2]
    stake = 10**15
    ledger = Ledger(env.chain, [t0.address, env.outsider.address])
    # Three projects of two owners; t0 earns in each, plus a stake credited back by leaving a fourth.
    projects = [
        create_project(env, budget=ETH, num_rounds=1),
        create_project(env, budget=2 * ETH, num_rounds=2, owner=env.whale),
        create_project(env, budget=7, num_rounds=1, stake=stake),
    ]
    spare = create_project(env, stake=stake)
    spare.register(t0)
    env.client(t0).leave(spare.id)
    for p in projects:
        p.register(t0, t1)
    for p in projects:
        p.start()
        p.submit(t0, t1)
    for p in projects:
        p.close_submissions()
        p.post([2, 1])
    expected = 2 * ETH // 3 + 2 * ETH // 3 + 4 + stake  # t0's shares of 1e18, 1e18 and 7 wei, plus the stake
    assert env.market.credits(t0.address) == expected

    to = env.outsider.address if to_other else t0.address
    amount, receipt = env.client(t0).claim(to=env.outsider.address if to_other else None)
    assert amount == expected
    assert receipt.event("Claimed").args == {"account": t0.address, "to": to, "amount": expected}
    assert [e.name for e in receipt.events] == ["Claimed"]  # one transfer for everything
    with reverts(E.NothingToWithdraw, account=t0.address):
        env.client(t0).claim()
    # t0 paid two stakes: the spare one came back inside the claim, the third project's is still held.
    ledger.assert_net(
        {t0.address: (0 if to_other else expected) - 2 * stake, env.outsider.address: expected if to_other else 0}
    )


def test_allowlisted_project_lifecycle(env: Env) -> None:
    t0, t1, t2 = env.trainers[:3]
    p = create_project(env, budget=ETH, num_rounds=1, registration_mode=RegistrationMode.ALLOWLIST)
    allowed = env.client(env.owner).allow_trainers(p.id, [t0.address, t1.address])
    assert [e.args["trainer"] for e in allowed.events] == [t0.address, t1.address]
    assert env.market.trainer(p.id, t0.address).allowed and not env.market.trainer(p.id, t2.address).allowed
    p.register(t0, t1)
    p.start()
    assert shares_of(p.play_round([t1, t0], [1, 1])) == [ETH // 2, ETH // 2]
    assert withdraw_everything(env, p, [t0, t1]) == {t0.address: ETH // 2, t1.address: ETH // 2}
    assert env.market.balance() == 0


def test_clock_and_snapshots(env: Env) -> None:
    # The lifecycles above lean on these controls behaving the same on every backend.
    start = env.chain.now()
    assert env.chain.increase_time(1000) - start in range(1000, 1003)  # anvil's wall clock may tick
    before = env.chain.now()
    assert env.chain.increase_time(1) - before in range(1, 3)
    snapshot = env.chain.snapshot()
    p = create_project(env, budget=ETH)
    env.chain.increase_time(5000)
    env.chain.revert(snapshot)
    assert env.chain.now() < p.params.start_time - 100
    assert env.market.project_count() == p.id - 1
    assert env.chain.w3.eth.get_balance(env.owner.address) > ETH
