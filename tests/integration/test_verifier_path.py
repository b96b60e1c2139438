"""Projects with a verifier: only a proof bound to exactly this project, round, submission list, scores
and outlier flags lets results through (CommitmentRoundVerifier, proof = keccak of those inputs)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from pocfl.chain import contract_errors as E  # noqa: N812 - short name for the many error classes
from pocfl.chain.types import ProjectStatus
from pocfl.payouts import allocate
from tests.helpers import Env, Project, commitment_proof, create_project, reverts, shares_of, submissions_digest

pytestmark = pytest.mark.integration

ETH = 10**18
SCORES = (5, -2, 3)
OUTLIERS = (False, False, True)


def proven_project(env: Env, **overrides: object) -> Project:
    """A verifier project in its aggregation window, three submissions recorded."""
    overrides.setdefault("verifier", env.verifier)
    p = create_project(env, **overrides)
    p.register(*env.trainers[:3])
    p.start()
    p.submit(*env.trainers[:3])
    p.close_submissions()
    return p


def proof_for(p: Project, round_: int) -> bytes:
    """The valid proof of SCORES/OUTLIERS for the project's current submissions."""
    return commitment_proof(p.id, round_, p.state().submissions_digest, SCORES, OUTLIERS)


def assert_nothing_posted(env: Env, p: Project, round_: int) -> None:
    state = p.state()
    assert (state.current_round, state.escrow, state.status) == (round_, p.budget, ProjectStatus.ACTIVE)
    assert all(env.market.credits(t.address) == 0 for t in env.trainers[:3])


def test_valid_proof_posts(env: Env) -> None:
    p = proven_project(env)
    # The digest the proof binds is the contract's hash chain, rebuilt here from the submissions.
    digest = submissions_digest(env.chain.chain_id, env.market.address, p.id, 0, p.submitted[0])
    assert p.state().submissions_digest == digest
    receipt = p.post(SCORES, OUTLIERS, proof=commitment_proof(p.id, 0, digest, SCORES, OUTLIERS))
    posted = receipt.event("RoundPosted").args
    expected = allocate(p.state().round_budget, SCORES, OUTLIERS)
    assert posted["proven"] is True
    assert (posted["credited"], posted["unallocated"]) == (expected.credited, expected.unallocated)
    assert shares_of(receipt) == list(expected.shares) == [ETH, 0, 0]
    assert env.market.credits(env.trainers[0].address) == ETH


def test_project_without_verifier_ignores_the_proof(env: Env) -> None:
    p = create_project(env)
    p.register(*env.trainers[:2])
    p.start()
    p.submit(*env.trainers[:2])
    p.close_submissions()
    receipt = p.post([1, 1], proof=b"garbage")
    assert receipt.event("RoundPosted").args["proven"] is False


TAMPERED = {
    "score": ((5, -2, 4), OUTLIERS),
    "outlier-flag": (SCORES, (False, True, True)),
    "all-scores": ((1, 1, 1), OUTLIERS),
}


@pytest.mark.parametrize("what", sorted(TAMPERED))
def test_tampered_results_rejected(env: Env, what: str) -> None:
    p = proven_project(env)
    proof = proof_for(p, 0)
    scores, outliers = TAMPERED[what]
    with reverts(E.ProofRejected, projectId=p.id, round=0, verifier=env.verifier):
        p.post(scores, outliers, proof=proof)
    assert_nothing_posted(env, p, 0)
    # The honest results still go through with the same proof.
    assert p.post(SCORES, OUTLIERS, proof=proof).event("RoundPosted").args["proven"] is True


def test_proof_replayed_in_another_round_rejected(env: Env) -> None:
    p = proven_project(env)
    round0_proof = proof_for(p, 0)
    p.post(SCORES, OUTLIERS, proof=round0_proof)
    p.submit(*env.trainers[:3])
    p.close_submissions()
    with reverts(E.ProofRejected, projectId=p.id, round=1, verifier=env.verifier):
        p.post(SCORES, OUTLIERS, proof=round0_proof)
    # Nor does a proof that claims round 1 but binds round 0's digest.
    round0_digest = submissions_digest(env.chain.chain_id, env.market.address, p.id, 0, p.submitted[0])
    stale = commitment_proof(p.id, 1, round0_digest, SCORES, OUTLIERS)
    with reverts(E.ProofRejected, projectId=p.id, round=1, verifier=env.verifier):
        p.post(SCORES, OUTLIERS, proof=stale)
    assert p.state().current_round == 1
    assert p.post(SCORES, OUTLIERS, proof=proof_for(p, 1)).event("RoundPosted").args["proven"] is True


def test_proof_for_another_project_rejected(env: Env) -> None:
    a = proven_project(env)
    b = proven_project(env)
    with reverts(E.ProofRejected, projectId=b.id, round=0, verifier=env.verifier):
        b.post(SCORES, OUTLIERS, proof=proof_for(a, 0))
    # Even a proof over b's own digest but a's project id.
    with reverts(E.ProofRejected, projectId=b.id, round=0, verifier=env.verifier):
        b.post(SCORES, OUTLIERS, proof=commitment_proof(a.id, 0, b.state().submissions_digest, SCORES, OUTLIERS))
    assert_nothing_posted(env, b, 0)
    assert b.post(SCORES, OUTLIERS, proof=proof_for(b, 0)).event("RoundPosted").args["proven"] is True


@pytest.mark.parametrize(
    "make_proof",
    [
        lambda good: b"",
        lambda good: os.urandom(32),
        lambda good: good[:31],
        lambda good: good + b"\x00",
        lambda good: bytes([good[0] ^ 1]) + good[1:],
    ],
    ids=["empty", "random", "short", "long", "one-bit-flipped"],
)
def test_garbage_proof_rejected(env: Env, make_proof: Callable[[bytes], bytes]) -> None:
    p = proven_project(env)
    with reverts(E.ProofRejected, projectId=p.id, round=0, verifier=env.verifier):
        p.post(SCORES, OUTLIERS, proof=make_proof(proof_for(p, 0)))
    assert_nothing_posted(env, p, 0)


@pytest.mark.parametrize("kind", ["account-without-code", "contract-without-verifyRound"])
def test_broken_verifier_rejects(env: Env, kind: str) -> None:
    # A verifier address with no code answers nothing; one without the function reverts. Both must
    # surface as ProofRejected (not an empty revert), so the aggregator sees why and the round can fail.
    verifier = env.outsider.address if kind == "account-without-code" else env.deploy_helper("EtherRejecter").address
    p = proven_project(env, verifier=verifier)
    with reverts(E.ProofRejected, projectId=p.id, round=0, verifier=verifier):
        p.post(SCORES, OUTLIERS, proof=proof_for(p, 0))
    assert_nothing_posted(env, p, 0)
