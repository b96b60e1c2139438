"""Every reachable custom error of PocMarketplace, with its exact arguments, on every backend.

ProofRejected lives in test_verifier_path.py and ReentrantCall in test_reentrancy.py;
test_every_error_is_exercised checks that together the suites name every error in the ABI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pocfl.chain import contract_errors as E  # noqa: N812 - short name for the many error classes
from pocfl.chain.contract_errors import ALL_ERRORS
from pocfl.chain.types import ZERO_ADDRESS, ProjectStatus, RegistrationMode, RoundPost, Submission
from pocfl.contracts import marketplace_abi
from tests.helpers import (
    MODEL_CID,
    WINDOW,
    Env,
    Project,
    between,
    create_project,
    reverts,
    standard_params,
    submissions_digest,
    warp_to,
)

pytestmark = pytest.mark.integration

NewProject = Callable[..., Project]


@pytest.fixture
def running(env: Env, new_project: NewProject) -> Project:
    """Round 0 open, three trainers registered."""
    p = new_project()
    p.register(*env.trainers[:3])
    p.start()
    return p


@pytest.fixture
def aggregating(env: Env, running: Project) -> Project:
    """Round 0 with three submissions, submission window closed: the aggregator may post."""
    running.submit(*env.trainers[:3])
    running.close_submissions()
    return running


def finished(env: Env, new_project: NewProject, **overrides: object) -> Project:
    """A one-round project whose only round was posted (empty), so it is Finished."""
    p = new_project(num_rounds=1, min_trainers=1, **overrides)
    p.register(env.trainers[0])
    p.start()
    p.close_submissions()
    p.post([])
    assert p.state().status == ProjectStatus.FINISHED
    return p


def cancelled(env: Env, new_project: NewProject) -> Project:
    p = new_project()
    env.client(env.owner).cancel(p.id)
    assert p.state().status == ProjectStatus.CANCELLED
    return p


# ---------------------------------------------------------------------------------------------
# createProject parameters
# ---------------------------------------------------------------------------------------------


def test_zero_budget(env: Env) -> None:
    with reverts(E.ZeroBudget):
        env.market.create_project(standard_params(env), 0)


def test_budget_too_large(env: Env) -> None:
    with reverts(E.BudgetTooLarge, budget=2**128):
        env.client(env.whale).create_project(standard_params(env), 2**128)
    # The largest budget that fits is accepted. Estimated only: anvil's pool refuses any transaction
    # whose value plus fee reaches 2**128 before the contract sees it.
    create = env.market.contract.functions.createProject(standard_params(env).to_abi())
    assert create.estimate_gas({"from": env.whale.address, "value": 2**128 - 1}) > 0


def test_zero_aggregator(env: Env) -> None:
    with reverts(E.ZeroAggregator):
        env.market.create_project(standard_params(env, aggregator=ZERO_ADDRESS), 1)


@pytest.mark.parametrize("offset", [0, -1, -(10**6)])
def test_start_time_in_past(env: Env, offset: int) -> None:
    # eth-tester stamps the pending block with the wall clock: allow for a slow, shared machine
    start = env.chain.now() + offset
    with reverts(E.StartTimeInPast, startTime=start, nowTimestamp=between(env.chain.now(), env.chain.now() + 300)):
        env.market.create_project(standard_params(env, start_time=start), 1)


def test_invalid_rounds(env: Env) -> None:
    with reverts(E.InvalidRounds, numRounds=0):
        env.market.create_project(standard_params(env, num_rounds=0), 1)


@pytest.mark.parametrize(("submission", "aggregation"), [(0, WINDOW), (WINDOW, 0), (0, 0)])
def test_invalid_windows(env: Env, submission: int, aggregation: int) -> None:
    with reverts(E.InvalidWindows, submissionWindow=submission, aggregationWindow=aggregation):
        params = standard_params(env, submission_window=submission, aggregation_window=aggregation)
        env.market.create_project(params, 1)


@pytest.mark.parametrize(("low", "high"), [(0, 8), (5, 4), (1, 513), (513, 513)])
def test_invalid_trainer_bounds(env: Env, low: int, high: int) -> None:
    with reverts(E.InvalidTrainerBounds, minTrainers=low, maxTrainers=high):
        env.market.create_project(standard_params(env, min_trainers=low, max_trainers=high), 1)


def test_trainer_bounds_limits_accepted(env: Env) -> None:
    p = create_project(env, min_trainers=512, max_trainers=512)
    assert (p.state().params.min_trainers, p.state().params.max_trainers) == (512, 512)


@pytest.mark.parametrize("cid", ["", "b" * 129])
def test_invalid_initial_cid(env: Env, cid: str) -> None:
    with reverts(E.InvalidCid, length=len(cid)):
        env.market.create_project(standard_params(env, initial_model_cid=cid), 1)


def test_longest_cid_accepted(env: Env) -> None:
    p = create_project(env, initial_model_cid="b" * 128)
    assert p.state().model_cid == "b" * 128


def test_start_time_overflowing_deadlines_is_refused(env: Env) -> None:
    # Round 0's deadlines must fit uint64, or every later call would panic on overflow.
    count = env.market.project_count()
    params = standard_params(env, start_time=2**64 - 10)
    with reverts(
        E.ScheduleOverflow,
        startTime=2**64 - 10,
        submissionWindow=params.submission_window,
        aggregationWindow=params.aggregation_window,
    ):
        env.market.create_project(params, 1)
    assert env.market.project_count() == count


# ---------------------------------------------------------------------------------------------
# Unknown and inactive projects
# ---------------------------------------------------------------------------------------------

CALLS_ON_PROJECT: dict[str, Callable[[Env, int], object]] = {
    "register": lambda env, pid: env.client(env.trainers[0]).register(pid, 0),
    "leave": lambda env, pid: env.client(env.trainers[0]).leave(pid),
    "submit": lambda env, pid: env.client(env.trainers[0]).submit(pid, 0, "cid", b"\x01" * 32),
    "postRound": lambda env, pid: env.client(env.aggregator).post_round(pid, 0, RoundPost(MODEL_CID, (), (), ())),
    "failRound": lambda env, pid: env.client(env.outsider).fail_round(pid, 0),
    "cancel": lambda env, pid: env.client(env.owner).cancel(pid),
    "allowTrainers": lambda env, pid: env.client(env.owner).allow_trainers(pid, [env.outsider.address]),
    "withdrawRemaining": lambda env, pid: env.client(env.owner).withdraw_remaining(pid),
    "releaseStake": lambda env, pid: env.client(env.trainers[0]).release_stake(pid),
    "getProject": lambda env, pid: env.market.project(pid),
    "getTrainer": lambda env, pid: env.market.trainer(pid, env.trainers[0].address),
}


@pytest.mark.parametrize("call", sorted(CALLS_ON_PROJECT))
def test_project_not_found(env: Env, new_project: NewProject, call: str) -> None:
    new_project()
    for missing in (0, 2):
        with reverts(E.ProjectNotFound, projectId=missing):
            CALLS_ON_PROJECT[call](env, missing)


ACTIVE_ONLY = ["register", "leave", "submit", "postRound", "failRound", "cancel", "allowTrainers"]


@pytest.mark.parametrize("call", ACTIVE_ONLY)
def test_project_not_active_when_cancelled(env: Env, new_project: NewProject, call: str) -> None:
    p = cancelled(env, new_project)
    with reverts(E.ProjectNotActive, projectId=p.id, status=ProjectStatus.CANCELLED):
        CALLS_ON_PROJECT[call](env, p.id)


@pytest.mark.parametrize("call", ["submit", "postRound", "failRound", "cancel"])
def test_project_not_active_when_finished(env: Env, new_project: NewProject, call: str) -> None:
    p = finished(env, new_project)
    with reverts(E.ProjectNotActive, projectId=p.id, status=ProjectStatus.FINISHED):
        CALLS_ON_PROJECT[call](env, p.id)


@pytest.mark.parametrize("call", ["withdrawRemaining", "releaseStake"])
def test_project_not_ended(env: Env, running: Project, call: str) -> None:
    with reverts(E.ProjectNotEnded, projectId=running.id, status=ProjectStatus.ACTIVE):
        CALLS_ON_PROJECT[call](env, running.id)


# ---------------------------------------------------------------------------------------------
# Owner
# ---------------------------------------------------------------------------------------------


def test_not_owner_allow_trainers(env: Env, new_project: NewProject) -> None:
    p = new_project(registration_mode=RegistrationMode.ALLOWLIST)
    with reverts(E.NotOwner, projectId=p.id, caller=env.outsider.address, owner=env.owner.address):
        env.client(env.outsider).allow_trainers(p.id, [env.outsider.address])


def test_not_owner_withdraw_remaining(env: Env, new_project: NewProject) -> None:
    p = cancelled(env, new_project)
    with reverts(E.NotOwner, projectId=p.id, caller=env.aggregator.address, owner=env.owner.address):
        env.client(env.aggregator).withdraw_remaining(p.id, env.aggregator.address)


def test_not_allowlist_mode(env: Env, new_project: NewProject) -> None:
    p = new_project()
    with reverts(E.NotAllowlistMode, projectId=p.id):
        env.client(env.owner).allow_trainers(p.id, [env.trainers[0].address])


def test_cancel_refused_to_others_before_start(env: Env, new_project: NewProject) -> None:
    p = new_project()
    with reverts(E.CannotCancel, projectId=p.id, caller=env.outsider.address):
        env.client(env.outsider).cancel(p.id)


@pytest.mark.parametrize("who", ["owner", "outsider"])
def test_cancel_refused_once_training_started(env: Env, running: Project, who: str) -> None:
    caller = getattr(env, who)
    with reverts(E.CannotCancel, projectId=running.id, caller=caller.address):
        env.client(caller).cancel(running.id)


def test_cancel_refused_after_a_round_was_settled(env: Env, aggregating: Project) -> None:
    aggregating.post([1, 1, 1])
    with reverts(E.CannotCancel, projectId=aggregating.id, caller=env.owner.address):
        env.client(env.owner).cancel(aggregating.id)


def test_nothing_to_withdraw_for_owner(env: Env, new_project: NewProject) -> None:
    # One round, fully credited (budget divisible, one positive score): no escrow is left.
    p = new_project(num_rounds=1, min_trainers=1, budget=10**18)
    p.register(env.trainers[0])
    p.start()
    p.play_round([env.trainers[0]], [7])
    with reverts(E.NothingToWithdraw, account=env.owner.address):
        env.client(env.owner).withdraw_remaining(p.id)


def test_nothing_to_withdraw_twice(env: Env, new_project: NewProject) -> None:
    p = cancelled(env, new_project)
    amount, _ = env.client(env.owner).withdraw_remaining(p.id)
    assert amount == p.budget
    with reverts(E.NothingToWithdraw, account=env.owner.address):
        env.client(env.owner).withdraw_remaining(p.id)


def test_withdraw_remaining_to_zero_recipient(env: Env, new_project: NewProject) -> None:
    p = cancelled(env, new_project)
    with reverts(E.ZeroRecipient):
        env.client(env.owner).withdraw_remaining(p.id, ZERO_ADDRESS)


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["register", "leave", "allowTrainers"])
def test_registration_closed(env: Env, new_project: NewProject, call: str) -> None:
    p = new_project(registration_mode=RegistrationMode.ALLOWLIST)
    env.client(env.owner).allow_trainers(p.id, [env.trainers[0].address])
    p.register(env.trainers[0])
    p.start()
    with reverts(E.RegistrationClosed, projectId=p.id, startTime=p.params.start_time):
        CALLS_ON_PROJECT[call](env, p.id)


def test_not_allowlisted(env: Env, new_project: NewProject) -> None:
    p = new_project(registration_mode=RegistrationMode.ALLOWLIST)
    env.client(env.owner).allow_trainers(p.id, [env.trainers[0].address])
    p.register(env.trainers[0])
    with reverts(E.NotAllowlisted, projectId=p.id, trainer=env.trainers[1].address):
        p.register(env.trainers[1])


def test_already_registered(env: Env, new_project: NewProject) -> None:
    p = new_project()
    p.register(env.trainers[0])
    with reverts(E.AlreadyRegistered, projectId=p.id, trainer=env.trainers[0].address):
        p.register(env.trainers[0])


def test_project_full(env: Env, new_project: NewProject) -> None:
    p = new_project(min_trainers=1, max_trainers=2)
    p.register(*env.trainers[:2])
    with reverts(E.ProjectFull, projectId=p.id, maxTrainers=2):
        p.register(env.trainers[2])
    # A place freed by leaving can be taken again.
    env.client(env.trainers[0]).leave(p.id)
    p.register(env.trainers[2])
    assert p.state().trainer_count == 2


@pytest.mark.parametrize(("stake", "sent"), [(10**17, 0), (10**17, 10**17 - 1), (10**17, 10**17 + 1), (0, 1)])
def test_wrong_stake(env: Env, new_project: NewProject, stake: int, sent: int) -> None:
    p = new_project(stake=stake)
    with reverts(E.WrongStake, projectId=p.id, expected=stake, sent=sent):
        env.client(env.trainers[0]).register(p.id, sent)


def test_unregistered_cannot_submit(env: Env, running: Project) -> None:
    stranger = env.trainers[5]
    with reverts(E.NotRegistered, projectId=running.id, trainer=stranger.address):
        env.client(stranger).submit(running.id, 0, "cid", b"\x01" * 32)


def test_unregistered_cannot_leave(env: Env, new_project: NewProject) -> None:
    p = new_project()
    with reverts(E.NotRegistered, projectId=p.id, trainer=env.trainers[0].address):
        env.client(env.trainers[0]).leave(p.id)


def test_left_trainer_is_not_registered(env: Env, new_project: NewProject) -> None:
    p = new_project()
    p.register(*env.trainers[:3])
    env.client(env.trainers[0]).leave(p.id)
    p.start()
    with reverts(E.NotRegistered, projectId=p.id, trainer=env.trainers[0].address):
        p.submit(env.trainers[0])


# ---------------------------------------------------------------------------------------------
# Submissions
# ---------------------------------------------------------------------------------------------


def test_round_not_open_for_submit(env: Env, new_project: NewProject) -> None:
    p = new_project()
    p.register(*env.trainers[:2])
    with reverts(E.RoundNotOpen, projectId=p.id, round=0, opensAt=p.params.start_time):
        p.submit(env.trainers[0], round_=0)


def test_round_not_open_for_fail(env: Env, new_project: NewProject) -> None:
    p = new_project()
    with reverts(E.RoundNotOpen, projectId=p.id, round=0, opensAt=p.params.start_time):
        env.client(env.outsider).fail_round(p.id, 0)


def test_not_enough_trainers(env: Env, new_project: NewProject) -> None:
    p = new_project(min_trainers=3)
    p.register(*env.trainers[:2])
    p.start()
    with reverts(E.NotEnoughTrainers, projectId=p.id, registered=2, minTrainers=3):
        p.submit(env.trainers[0], round_=0)
    warp_to(env.chain, p.state().submission_deadline)
    with reverts(E.NotEnoughTrainers, projectId=p.id, registered=2, minTrainers=3):
        p.post([], round_=0)
    warp_to(env.chain, p.state().aggregation_deadline)
    with reverts(E.NotEnoughTrainers, projectId=p.id, registered=2, minTrainers=3):
        env.client(env.outsider).fail_round(p.id, 0)


def test_wrong_round_future(env: Env, running: Project) -> None:
    with reverts(E.WrongRound, projectId=running.id, round=1, currentRound=0):
        running.submit(env.trainers[0], round_=1)
    with reverts(E.WrongRound, projectId=running.id, round=2, currentRound=0):
        env.client(env.outsider).fail_round(running.id, 2)


def test_wrong_round_past(env: Env, aggregating: Project) -> None:
    aggregating.post([1, 2, 3])
    with reverts(E.WrongRound, projectId=aggregating.id, round=0, currentRound=1):
        aggregating.submit(env.trainers[0], round_=0)
    aggregating.close_submissions()
    with reverts(E.WrongRound, projectId=aggregating.id, round=0, currentRound=1):
        aggregating.post([1, 2, 3], round_=0)


def test_late_submission(env: Env, running: Project) -> None:
    deadline = running.state().submission_deadline
    now = warp_to(env.chain, deadline)
    with reverts(
        E.SubmissionWindowClosed, projectId=running.id, round=0, deadline=deadline, nowTimestamp=between(now, now + 10)
    ):
        running.submit(env.trainers[0])


def test_duplicate_submission(env: Env, running: Project) -> None:
    running.submit(env.trainers[0])
    with reverts(E.AlreadySubmitted, projectId=running.id, round=0, trainer=env.trainers[0].address):
        running.submit(env.trainers[0])
    # A new round accepts the same trainer again.
    running.close_submissions()
    running.post([1])
    running.submit(env.trainers[0])
    assert len(env.market.submissions(running.id, 1)) == 1


@pytest.mark.parametrize("cid", ["", "x" * 129])
def test_invalid_submission_cid(env: Env, running: Project, cid: str) -> None:
    with reverts(E.InvalidCid, length=len(cid)):
        env.client(env.trainers[0]).submit(running.id, 0, cid, b"\x01" * 32)


# ---------------------------------------------------------------------------------------------
# Posting and failing rounds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "outsider"])
def test_not_aggregator(env: Env, aggregating: Project, who: str) -> None:
    caller = getattr(env, who)
    post = aggregating.round_post([1, 1, 1])
    with reverts(E.NotAggregator, projectId=aggregating.id, caller=caller.address, aggregator=env.aggregator.address):
        env.client(caller).post_round(aggregating.id, 0, post)


def test_post_before_window(env: Env, running: Project) -> None:
    running.submit(*env.trainers[:3])
    with reverts(E.SubmissionWindowOpen, projectId=running.id, round=0, closesAt=running.state().submission_deadline):
        running.post([1, 1, 1])


def test_post_after_window(env: Env, aggregating: Project) -> None:
    deadline = aggregating.state().aggregation_deadline
    aggregating.expire()
    with reverts(E.AggregationWindowClosed, projectId=aggregating.id, round=0, deadline=deadline):
        aggregating.post([1, 1, 1])


def test_fail_before_aggregation_deadline(env: Env, aggregating: Project) -> None:
    deadline = aggregating.state().aggregation_deadline
    with reverts(E.AggregationWindowOpen, projectId=aggregating.id, round=0, deadline=deadline):
        env.client(env.outsider).fail_round(aggregating.id, 0)


@pytest.mark.parametrize("cid", ["", "m" * 129])
def test_invalid_model_cid(env: Env, aggregating: Project, cid: str) -> None:
    post = RoundPost(cid, tuple(aggregating.submitted[0]), (1, 1, 1), (False,) * 3)
    with reverts(E.InvalidCid, length=len(cid)):
        env.client(env.aggregator).post_round(aggregating.id, 0, post)


def _post_raw(env: Env, p: Project, subs: list[Submission], scores: list[int], outliers: list[bool]) -> None:
    env.client(env.aggregator).post_round(p.id, 0, RoundPost(MODEL_CID, tuple(subs), tuple(scores), tuple(outliers)))


def test_submission_count_mismatch(env: Env, aggregating: Project) -> None:
    subs = aggregating.submitted[0]
    with reverts(E.SubmissionCountMismatch, projectId=aggregating.id, round=0, expected=3, given=2):
        _post_raw(env, aggregating, subs[:2], [1, 1], [False, False])
    extra = [*subs, Submission(env.outsider.address, b"\x09" * 32)]
    with reverts(E.SubmissionCountMismatch, projectId=aggregating.id, round=0, expected=3, given=4):
        _post_raw(env, aggregating, extra, [1] * 4, [False] * 4)


@pytest.mark.parametrize(
    ("scores", "outliers"),
    [([1, 1], [False] * 3), ([1] * 4, [False] * 3), ([1] * 3, [False] * 2), ([1] * 3, [True] * 4)],
)
def test_length_mismatch(env: Env, aggregating: Project, scores: list[int], outliers: list[bool]) -> None:
    with reverts(E.LengthMismatch, submissions=3, scores=len(scores), outliers=len(outliers)):
        _post_raw(env, aggregating, aggregating.submitted[0], scores, outliers)


def _forge(env: Env, subs: list[Submission], how: str) -> list[Submission]:
    forged = list(subs)
    if how == "order":
        forged[0], forged[1] = forged[1], forged[0]
    elif how == "trainer":
        forged[2] = Submission(env.outsider.address, subs[2].commitment, subs[2].feature_commitment)
    elif how == "commitment":
        forged[1] = Submission(subs[1].trainer, b"\xee" * 32, subs[1].feature_commitment)
    elif how == "feature_commitment":
        forged[1] = Submission(subs[1].trainer, subs[1].commitment, b"\xee" * 32)
    return forged


@pytest.mark.parametrize("how", ["order", "trainer", "commitment", "feature_commitment"])
def test_submissions_mismatch(env: Env, aggregating: Project, how: str) -> None:
    subs = aggregating.submitted[0]
    chain_id, market = env.chain.chain_id, env.market.address
    expected = submissions_digest(chain_id, market, aggregating.id, 0, subs)
    # The Python digest of the honest list is the contract's; the forged one is what it computed.
    assert expected == aggregating.state().submissions_digest
    forged = _forge(env, subs, how)
    computed = submissions_digest(chain_id, market, aggregating.id, 0, forged)
    with reverts(E.SubmissionsMismatch, projectId=aggregating.id, round=0, expected=expected, computed=computed):
        _post_raw(env, aggregating, forged, [1, 1, 1], [False] * 3)


def test_submissions_of_another_round_mismatch(env: Env, aggregating: Project) -> None:
    # Round 0's list replayed for round 1 (same trainers, same count): the digest is seeded per round.
    aggregating.post([1, 1, 1])
    aggregating.submit(*env.trainers[:3])
    aggregating.close_submissions()
    stale = aggregating.submitted[0]
    expected = aggregating.state().submissions_digest
    computed = submissions_digest(env.chain.chain_id, env.market.address, aggregating.id, 1, stale)
    post = RoundPost(MODEL_CID, tuple(stale), (1, 1, 1), (False,) * 3)
    with reverts(E.SubmissionsMismatch, projectId=aggregating.id, round=1, expected=expected, computed=computed):
        env.client(env.aggregator).post_round(aggregating.id, 1, post)


# ---------------------------------------------------------------------------------------------
# Stakes, claims and transfers
# ---------------------------------------------------------------------------------------------


def test_nothing_to_claim(env: Env) -> None:
    with reverts(E.NothingToWithdraw, account=env.outsider.address):
        env.client(env.outsider).claim()
    with reverts(E.NothingToWithdraw, account=env.outsider.address):
        env.client(env.outsider).claim(to=env.owner.address)


def test_claim_to_zero_recipient(env: Env, aggregating: Project) -> None:
    aggregating.post([1, 1, 1])
    with reverts(E.ZeroRecipient):
        env.client(env.trainers[0]).claim(to=ZERO_ADDRESS)


def test_no_stake_held_without_stake(env: Env, new_project: NewProject) -> None:
    p = new_project()
    p.register(env.trainers[0])
    env.client(env.owner).cancel(p.id)
    with reverts(E.NoStakeHeld, projectId=p.id, trainer=env.trainers[0].address):
        env.client(env.trainers[0]).release_stake(p.id)


def test_no_stake_held_twice_or_for_strangers(env: Env, new_project: NewProject) -> None:
    p = new_project(stake=10**16)
    p.register(env.trainers[0])
    env.client(env.owner).cancel(p.id)
    env.client(env.trainers[0]).release_stake(p.id)
    with reverts(E.NoStakeHeld, projectId=p.id, trainer=env.trainers[0].address):
        env.client(env.trainers[0]).release_stake(p.id)
    with reverts(E.NoStakeHeld, projectId=p.id, trainer=env.outsider.address):
        env.client(env.outsider).release_stake(p.id)


def test_no_stake_held_after_leaving(env: Env, new_project: NewProject) -> None:
    # Leaving already credited the stake back.
    p = new_project(stake=10**16)
    p.register(env.trainers[0])
    env.client(env.trainers[0]).leave(p.id)
    assert env.market.credits(env.trainers[0].address) == 10**16
    env.client(env.owner).cancel(p.id)
    with reverts(E.NoStakeHeld, projectId=p.id, trainer=env.trainers[0].address):
        env.client(env.trainers[0]).release_stake(p.id)


def test_transfer_failed_keeps_the_credit(env: Env, new_project: NewProject) -> None:
    rejecter = env.deploy_helper("EtherRejecter")
    p = new_project(num_rounds=1, min_trainers=2, budget=10**18)
    p.register(env.trainers[0])
    rejecter.transact(rejecter.contract.functions.register(p.id))
    p.start()
    env.client(env.trainers[0]).submit(p.id, 0, "cid", b"\x01" * 32)
    rejecter.transact(rejecter.contract.functions.submit(p.id, 0, "cid", b"\x02" * 32))
    p.close_submissions()
    subs = env.market.submissions(p.id, 0)
    env.client(env.aggregator).post_round(p.id, 0, RoundPost(MODEL_CID, tuple(subs), (1, 3), (False, False)))
    owed = 750_000_000_000_000_000
    assert env.market.credits(rejecter.address) == owed

    with reverts(E.TransferFailed, to=rejecter.address, amount=owed):
        rejecter.transact(rejecter.contract.functions.claimSelf())
    assert env.market.credits(rejecter.address) == owed
    # claimTo lets the rejecting account withdraw elsewhere.
    before = env.chain.w3.eth.get_balance(env.outsider.address)
    rejecter.transact(rejecter.contract.functions.claimTo(env.outsider.address))
    assert env.chain.w3.eth.get_balance(env.outsider.address) - before == owed
    assert env.market.credits(rejecter.address) == 0


def test_transfer_failed_on_withdraw_remaining(env: Env, new_project: NewProject) -> None:
    rejecter = env.deploy_helper("EtherRejecter")
    p = cancelled(env, new_project)
    with reverts(E.TransferFailed, to=rejecter.address, amount=p.budget):
        env.client(env.owner).withdraw_remaining(p.id, rejecter.address)
    assert p.state().escrow == p.budget
    amount, _ = env.client(env.owner).withdraw_remaining(p.id)
    assert amount == p.budget


# ---------------------------------------------------------------------------------------------
# Decoding on every path
# ---------------------------------------------------------------------------------------------


def test_mined_revert_is_decoded(env: Env, running: Project) -> None:
    # An explicit gas limit skips estimation, so the failing transaction reaches the node (and is mined
    # on anvil); the client replays it to recover the named error.
    with reverts(E.WrongRound, projectId=running.id, round=7, currentRound=0):
        env.client(env.trainers[0]).submit(running.id, 7, "cid", b"\x01" * 32, gas=300_000)


def test_mined_late_submission_is_decoded_at_its_own_block_time(env: Env, running: Project) -> None:
    # The failing transaction lands in the first block at the deadline while its parent block is still
    # inside the window: the replay must run with the failing block's timestamp to find the reason.
    deadline = running.state().submission_deadline
    warp_to(env.chain, deadline - 1)
    if env.chain.kind == "rpc":
        env.chain.control.rpc("evm_setNextBlockTimestamp", [deadline])  # eth-tester's next block is +1 s anyway
    with reverts(E.SubmissionWindowClosed, projectId=running.id, round=0, deadline=deadline, nowTimestamp=deadline):
        env.client(env.trainers[0]).submit(running.id, 0, "cid", b"\x01" * 32, gas=300_000)


def test_every_error_is_exercised() -> None:
    names_in_abi = {item["name"] for item in marketplace_abi() if item["type"] == "error"}
    assert names_in_abi == {cls.__name__ for cls in ALL_ERRORS}
    here = Path(__file__).parent
    sources = "".join(
        (here / f).read_text() for f in ("test_marketplace_reverts.py", "test_verifier_path.py", "test_reentrancy.py")
    )
    used = set(re.findall(r"\bE\.(\w+)", sources))
    assert names_in_abi - used == set(), "errors without a revert test"
