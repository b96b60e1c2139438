"""Proven rounds with the real ezkl circuit: the EzklRoundVerifier adapter in front of the generated Halo2 verifier
accepts exactly the round the trainers' feature commitments and the posted flags and scores describe.

The circuit (K = 4 slots, k = 8) is set up once per session under a temporary folder (local SRS, test-only trust)
and each proof is made once: feature commitments bind no chain address, so both backends reuse them. The verifier
pair is deployed once per backend and rolled back at the end of the module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from eth_account.signers.local import LocalAccount

from pocfl.chain import contract_errors as E  # noqa: N812 - short name for the error classes
from pocfl.chain.types import ProjectStatus, Receipt, Submission
from pocfl.payouts import allocate
from tests.helpers import (
    INITIAL_CID,
    MODEL_CID,
    Env,
    Project,
    commitment,
    create_project,
    isolated,
    reverts,
    shares_of,
)
from zk.decision import empty_features, feature_seed, update_features
from zk.onchain import POST_GAS, VerifierDeployment, deploy_round_verifier, encode_round_proof
from zk.prover import CircuitShape, RoundCircuitSetup, RoundProof, feature_commitment

pytestmark = pytest.mark.integration

F64 = npt.NDArray[np.float64]
SHAPE = CircuitShape(slots=4, sketch_dim=8)
N = 3  # trainers per round: slot 3 is unused (zero features, rejected)
D = 300  # update dimension
# The seeds a real round would use; any fixed values do (the proofs must not depend on the backend's addresses).
SEED_CHAIN, SEED_MARKET, SEED_PROJECT = 31337, "0x" + "00" * 20, 1
# Round 0: trainer 2 flips its update's sign. Trainer 1's negative score goes on chain as a field element p - |s|.
SCORES_0 = (4915, -819, 2458)
# Round 1: trainer 0 scales its update by 100.
SCORES_1 = (3000, 5000, 1000)
UNIT = SHAPE.score_unit


def round_updates(round_: int) -> list[F64]:
    rng = np.random.default_rng(100 + round_)
    base = rng.normal(size=D)
    ups = [base + 0.3 * rng.normal(size=D) for _ in range(N)]
    if round_ == 0:
        ups[2] = -ups[2]
    else:
        ups[0] = 100.0 * ups[0]
    return ups


def round_features(round_: int) -> list[F64]:
    seed = feature_seed(SEED_CHAIN, SEED_MARKET, SEED_PROJECT, round_, INITIAL_CID if round_ == 0 else MODEL_CID)
    return [update_features(u, seed, SHAPE.sketch_dim, SHAPE.scale) for u in round_updates(round_)]


class ZkRounds:
    """The setup, the rounds' features and their proofs (each made on first use, then shared)."""

    def __init__(self, setup: RoundCircuitSetup) -> None:
        self.setup = setup
        self.features = {0: round_features(0), 1: round_features(1)}
        self.scores = {0: SCORES_0, 1: SCORES_1}

    def prove(self, features: Sequence[F64], scores: Sequence[int]) -> RoundProof:
        proof = self.setup.prove(features, [False] * len(features), scores)
        assert proof.ok
        return proof

    @cached_property
    def round0(self) -> RoundProof:
        return self.prove(self.features[0], SCORES_0)

    @cached_property
    def round1(self) -> RoundProof:
        return self.prove(self.features[1], SCORES_1)

    @cached_property
    def replaced(self) -> RoundProof:
        """Round 0 with the sign-flipper's features replaced by trainer 0's, so nobody is flagged."""
        f = self.features[0]
        return self.prove([f[0], f[1], f[0]], SCORES_0)


@pytest.fixture(scope="module")
def zk(tmp_path_factory: pytest.TempPathFactory) -> ZkRounds:
    return ZkRounds(RoundCircuitSetup.build(SHAPE, tmp_path_factory.mktemp("zk-circuit")))


@pytest.fixture(scope="module")
def verifier(deployment: Env, zk: ZkRounds, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifierDeployment]:
    """The verifier pair on this backend, deployed before the tests' snapshots and rolled back after the module."""
    with isolated(deployment.chain):
        work = Path(tmp_path_factory.mktemp("zk-verifier"))
        yield deploy_round_verifier(deployment.chain, deployment.deployer, zk.setup, work)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def trainers(env: Env) -> tuple[LocalAccount, ...]:
    return env.trainers[:N]


def submit_features(p: Project, features: Sequence[F64], order: Sequence[int] = range(N)) -> list[Submission]:
    """Trainer i submits with ``featureCommitment = feature_commitment(features[i])``, in ``order``."""
    r = p.state().current_round
    subs = p.submitted.setdefault(r, [])
    for i in order:
        t, f = trainers(p.env)[i], features[i]
        sub = Submission(t.address, commitment(p.id, r, t.address), feature_commitment(f, SHAPE.scale))
        p.env.client(t).submit(p.id, r, f"bafy-update-{r}-{t.address[2:10]}", sub.commitment, sub.feature_commitment)
        subs.append(sub)
    return list(subs)


def zk_project(env: Env, verifier: VerifierDeployment, zk: ZkRounds, order: Sequence[int] = range(N)) -> Project:
    """A project verified by the ezkl adapter, in round 0's aggregation window, each trainer having submitted its
    round-0 features (trainer ``order[0]`` first)."""
    p = create_project(env, verifier=verifier.adapter)
    p.register(*trainers(env))
    p.start()
    submit_features(p, zk.features[0], order)
    p.close_submissions()
    return p


def post(
    p: Project,
    proof: RoundProof,
    scores: Sequence[int] | None = None,
    outliers: Sequence[bool] | None = None,
) -> Receipt:
    """Post the current round with ``proof``; the results default to the proven ones (used slots only)."""
    r = p.state().current_round
    n = len(p.submitted[r])
    results = p.round_post(
        proof.scores[:n] if scores is None else scores, proof.outliers[:n] if outliers is None else outliers
    )
    client = p.env.client(p.env.aggregator)
    return client.post_round(p.id, r, results, encode_round_proof(proof), gas=POST_GAS)


def rejected_post(
    p: Project,
    verifier: VerifierDeployment,
    proof: RoundProof,
    scores: Sequence[int] | None = None,
    outliers: Sequence[bool] | None = None,
    *,
    case: str = "",
) -> None:
    """The post reverts ProofRejected, and nothing moved: same round, same escrow, no credit."""
    before = p.state()
    credits = [p.env.market.credits(t.address) for t in trainers(p.env)]
    try:
        with reverts(E.ProofRejected, projectId=p.id, round=before.current_round, verifier=verifier.adapter):
            post(p, proof, scores, outliers)
    except BaseException as exc:
        exc.add_note(f"case: {case}")
        raise
    after = p.state()
    assert (after.current_round, after.escrow, after.status) == (
        before.current_round,
        before.escrow,
        ProjectStatus.ACTIVE,
    ), case
    assert [p.env.market.credits(t.address) for t in trainers(p.env)] == credits, case


def assert_proven_post(p: Project, receipt: Receipt, proof: RoundProof, escrow_before: int) -> list[int]:
    """RoundPosted is proven and the credits are allocate() of the proven results; returns the shares."""
    posted = receipt.event("RoundPosted").args
    expected = allocate(p.state().round_budget, proof.scores[:N], proof.outliers[:N])
    assert posted["proven"] is True
    assert (posted["credited"], posted["unallocated"]) == (expected.credited, expected.unallocated)
    assert shares_of(receipt) == list(expected.shares)
    assert p.state().escrow == escrow_before - expected.credited
    return list(expected.shares)


# ---------------------------------------------------------------------------------------------
# Off chain
# ---------------------------------------------------------------------------------------------


def test_proofs_carry_the_decision(zk: ZkRounds) -> None:
    p0, p1 = zk.round0, zk.round1
    assert p0.outliers == (False, False, True, True)  # the sign-flipper and the unused slot
    assert p0.scores == (SCORES_0[0], SCORES_0[1], 0, 0)
    assert p1.outliers == (True, False, False, True)  # the x100 trainer and the unused slot
    assert p1.scores == (0, SCORES_1[1], SCORES_1[2], 0)
    for proof in (p0, p1):
        assert proof.ok and proof.rejected == (False, False, False, True)
        assert len(proof.instances) == SHAPE.num_instances
        assert proof.witness_hash == proof.instances[SHAPE.slots]
    assert zk.replaced.outliers == (False, False, False, True)


def test_offchain_verification(zk: ZkRounds) -> None:
    proof = zk.round0
    assert zk.setup.verify(proof)
    k = SHAPE.slots
    # A feature hash, the witness hash, ok, an outlier flag, a score, a rejection flag.
    for index in (0, k, k + 1, k + 2 + 2, 2 * k + 2, 3 * k + 2 + 3):
        instances = list(proof.instances)
        instances[index] = (instances[index] + 1) % (2**254)
        assert not zk.setup.verify(dataclasses.replace(proof, instances=tuple(instances))), index
    flipped = bytes([proof.proof[0] ^ 1]) + proof.proof[1:]
    assert not zk.setup.verify(dataclasses.replace(proof, proof=flipped))
    assert not zk.setup.verify(dataclasses.replace(proof, proof=zk.round1.proof))
    assert zk.setup.verify(proof)  # the original is untouched


@pytest.mark.parametrize("round_", [0, 1])
def test_feature_commitments_are_the_public_instances(zk: ZkRounds, round_: int) -> None:
    proof = zk.round0 if round_ == 0 else zk.round1
    for i, f in enumerate(zk.features[round_]):
        assert proof.instances[i] == int.from_bytes(feature_commitment(f, SHAPE.scale), "big")
    empty = int.from_bytes(feature_commitment(empty_features(SHAPE.sketch_dim), SHAPE.scale), "big")
    assert proof.instances[N : SHAPE.slots] == (empty,) * (SHAPE.slots - N)


def test_replaced_proof_commits_to_the_replacement(zk: ZkRounds) -> None:
    f = zk.features[0]
    commitments = [int.from_bytes(feature_commitment(x, SHAPE.scale), "big") for x in (f[0], f[1], f[0])]
    assert list(zk.replaced.instances[:N]) == commitments
    assert zk.setup.verify(zk.replaced)  # a valid proof, of a round nobody submitted


@pytest.mark.parametrize("round_", [0, 1])
def test_evaluate_equals_the_proven_outliers(zk: ZkRounds, round_: int) -> None:
    proof = zk.round0 if round_ == 0 else zk.round1
    feats = zk.features[round_]
    assert zk.setup.evaluate(feats, [False] * N) == proof.outliers[:N]
    # ... and the float reference agrees (the round is far from every threshold).
    assert zk.setup.decide(feats, [False] * N, zk.scores[round_]).outliers == proof.outliers


# ---------------------------------------------------------------------------------------------
# On chain
# ---------------------------------------------------------------------------------------------


def test_verifier_deployment(env: Env, verifier: VerifierDeployment) -> None:
    assert verifier.slots == SHAPE.slots and verifier.sketch_dim == SHAPE.sketch_dim
    assert 0 < verifier.halo2_runtime_bytes <= 24_576
    assert len(env.chain.w3.eth.get_code(verifier.adapter)) > 0  # type: ignore[arg-type]


def test_valid_round_posts_proven(env: Env, verifier: VerifierDeployment, zk: ZkRounds) -> None:
    p = zk_project(env, verifier, zk)
    proof = zk.round0
    for i, sub in enumerate(p.submitted[0]):
        assert int.from_bytes(sub.feature_commitment, "big") == proof.instances[i]
    escrow = p.state().escrow
    receipt = post(p, proof)
    assert p.round_post(proof.scores[:N], proof.outliers[:N]).scores == (4915, -819, 0)
    shares = assert_proven_post(p, receipt, proof, escrow)
    assert shares == [p.state().round_budget, 0, 0]  # trainer 1 scored negative, trainer 2 is an outlier
    assert p.state().current_round == 1
    assert [env.market.credits(t.address) for t in trainers(env)] == shares


# Each changes one posted value away from what round 0's proof binds.
TAMPERED_RESULTS = {
    "honest-score-raised": ((SCORES_0[0] + 1, SCORES_0[1], 0), (False, False, True)),
    "outlier-score-restored": (SCORES_0, (False, False, True)),
    "outlier-unflagged": ((SCORES_0[0], SCORES_0[1], 0), (False, False, False)),
    "honest-flagged": ((SCORES_0[0], SCORES_0[1], 0), (True, False, True)),
}


def test_tampered_results_rejected(env: Env, verifier: VerifierDeployment, zk: ZkRounds) -> None:
    p = zk_project(env, verifier, zk)
    for what, (scores, outliers) in TAMPERED_RESULTS.items():
        assert (scores, outliers) != (zk.round0.scores[:N], zk.round0.outliers[:N])
        rejected_post(p, verifier, zk.round0, scores, outliers, case=what)


def test_proof_over_other_features_rejected(env: Env, verifier: VerifierDeployment, zk: ZkRounds) -> None:
    """Valid proofs with their own results, each over features other than the ones committed in that slot."""
    # Trainers 1 and 0 submitted in swapped order: round 0's proof binds trainer 0's features to slot 0.
    swapped = zk_project(env, verifier, zk, order=(1, 0, 2))
    rejected_post(swapped, verifier, zk.round0, case="slots-permuted")
    # The sign-flipper's features replaced by trainer 0's (nobody flagged): no trainer committed that round.
    p = zk_project(env, verifier, zk)
    rejected_post(p, verifier, zk.replaced, case="features-replaced")


def test_replayed_proof_rejected(env: Env, verifier: VerifierDeployment, zk: ZkRounds) -> None:
    p = zk_project(env, verifier, zk)
    assert post(p, zk.round0).event("RoundPosted").args["proven"] is True
    credits = [env.market.credits(t.address) for t in trainers(env)]
    submit_features(p, zk.features[1])
    p.close_submissions()
    assert p.state().current_round == 1
    # Round 0's proof and results with round 1's submissions.
    rejected_post(p, verifier, zk.round0)
    # Round 1's own proof goes through.
    escrow = p.state().escrow
    shares = assert_proven_post(p, post(p, zk.round1), zk.round1, escrow)
    totals = [c + s for c, s in zip(credits, shares, strict=True)]
    assert [env.market.credits(t.address) for t in trainers(env)] == totals


MASKS = {
    "unused-slot-missing": (False, False, False, False),
    "bit-beyond-the-slots": (False, False, False, True, True),
    "used-slot-marked": (True, False, False, True),
}


def test_bad_rejection_mask_rejected(env: Env, verifier: VerifierDeployment, zk: ZkRounds) -> None:
    p = zk_project(env, verifier, zk)
    for what, mask in MASKS.items():
        proof = dataclasses.replace(zk.round0, rejected=mask)
        rejected_post(p, verifier, proof, zk.round0.scores[:N], zk.round0.outliers[:N], case=what)
    assert post(p, zk.round0).event("RoundPosted").args["proven"] is True  # the right mask still goes through
