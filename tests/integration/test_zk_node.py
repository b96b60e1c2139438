"""The aggregator node on a proven project: it checks each update against its on-chain feature commitment, proves
the round, and the contract verifies it; ``pocfl audit`` recomputes it from the published circuit settings.

A trainer whose ``featureCommitment`` does not describe its update (here: it commits to another trainer's features)
is rejected with ``FeatureCommitmentMismatch`` and recorded in the report; the round is still proven and paid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aggregator.node import AggregatorNode
from pocfl.audit import audit_project
from pocfl.errors import ConfigError
from pocfl.manifest import ProjectManifest, ProofConfig
from pocfl.market import Market, SubmittedUpdate
from pocfl.rounds.inputs import ValidatedUpdate, global_model, validate_submission
from pocfl.rounds.report import RoundReport
from pocfl.updates import decode_update
from tests.helpers import Env, warp_to
from tests.integration.test_aggregator_node import BUDGET, Setup, make_setup
from zk.decision import feature_seed, update_features
from zk.onchain import deploy_round_verifier
from zk.prover import CircuitShape, RoundCircuitSetup, feature_commitment

pytestmark = pytest.mark.integration

SHAPE = CircuitShape(slots=4, sketch_dim=8)


@pytest.fixture(scope="module")
def zk_setup(tmp_path_factory: pytest.TempPathFactory) -> RoundCircuitSetup:
    return RoundCircuitSetup.build(SHAPE, tmp_path_factory.mktemp("zk"))


def proven_setup(env: Env, tmp_path: Path, zk_setup: RoundCircuitSetup) -> Setup:
    """A 1-round project of 4 trainers whose verifier is an EzklRoundVerifier and whose manifest has `proof`."""
    deployed = deploy_round_verifier(env.chain, env.deployer, zk_setup, tmp_path / "verifier")
    s = make_setup(env, tmp_path, 0, num_rounds=1)  # a template: its manifest and store, a project we do not use
    manifest = ProjectManifest(
        name=s.manifest.name,
        model=s.manifest.model,
        training=s.manifest.training,
        validation=s.manifest.validation,
        aggregator_public_key=s.manifest.aggregator_public_key,
        proof=ProofConfig(SHAPE.slots, SHAPE.sketch_dim, SHAPE.scale),
    )
    owner = Market(env.client(env.owner), s.store)
    from tests.helpers import standard_params

    params = standard_params(env, num_rounds=1, max_trainers=SHAPE.slots, verifier=deployed.adapter)
    project_id, _ = owner.create_project(params, BUDGET, initial_model=manifest.to_json())
    for t in env.trainers[: SHAPE.slots]:
        env.client(t).register(project_id)
    warp_to(env.chain, params.start_time)
    return Setup(env, s.store, project_id, manifest, s.spec, s.key, s.data, s.state_dir)


def features_of(s: Setup, plaintext: bytes, round_: int) -> bytes:
    market = s.market(s.env.trainers[0])
    model_cid, _ = global_model(market, s.manifest, s.project_id, round_)
    vector = s.spec.flatten(decode_update(plaintext, s.spec).tensors)
    seed = feature_seed(s.env.chain.chain_id, s.env.market.address, s.project_id, round_, model_cid)
    return feature_commitment(update_features(vector, seed, SHAPE.sketch_dim, SHAPE.scale))


def test_a_lying_feature_commitment_is_rejected_and_the_round_is_proven(
    env: Env, tmp_path: Path, zk_setup: RoundCircuitSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POCFL_HOME", str(tmp_path / "home"))  # the audit's circuit cache: <state dir>/zk
    s = proven_setup(env, tmp_path, zk_setup)
    updates = [s.train(i, 0) for i in range(4)]
    commitments = [features_of(s, u, 0) for u in updates]
    commitments[3] = commitments[0]  # trainer 3 claims trainer 0's features for its own update
    for i, (plaintext, fc) in enumerate(zip(updates, commitments, strict=True)):
        trainer = env.trainers[i]
        s.market(trainer).submit_update(
            s.project_id, 0, plaintext, s.commit(plaintext, trainer.address, 0), feature_commitment=fc
        )
    s.close()
    node = AggregatorNode(
        s.market(env.aggregator), s.project_id, keypair=s.key, state_dir=s.state_dir, zk_setup=zk_setup
    )
    outcome = node.run_round(0)
    assert outcome.status == "posted" and outcome.report is not None
    posted = env.market.events("RoundPosted", from_block=outcome.block or 0, projectId=s.project_id)
    assert [bool(e.args["proven"]) for e in posted] == [True]
    report: RoundReport = outcome.report
    liar = report.submissions[3]
    assert liar.status == "rejected" and liar.outlier and liar.score == 0
    assert liar.reason is not None and liar.reason.startswith("FeatureCommitmentMismatch")
    assert all(not e.outlier for e in report.submissions[:3])
    proof = report.config["proof"]
    assert {"cid", "settings_cid", "vk_cid", "circuit", "feature_seed"} <= set(proof)
    assert proof["circuit"] == SHAPE.key
    credits = {e.args["trainer"]: int(e.args["amount"]) for e in env.market.events("TrainerCredited")}
    assert credits[env.trainers[3].address] == 0
    audit = audit_project(s.market(env.outsider), s.project_id)
    assert audit.ok, [str(d) for d in audit.differences]
    assert audit.warnings == []
    (entry,) = (tmp_path / "home" / "zk").glob(f"{SHAPE.key}-eval-*")  # compiled, recorded, private
    assert (entry / "manifest.json").is_file() and (tmp_path / "home" / "zk").stat().st_mode & 0o777 == 0o700


def test_a_proven_project_needs_the_circuit_setup(env: Env, tmp_path: Path, zk_setup: RoundCircuitSetup) -> None:
    s = proven_setup(env, tmp_path, zk_setup)
    for i in range(3):
        plaintext = s.train(i, 0)
        trainer = env.trainers[i]
        s.market(trainer).submit_update(
            s.project_id,
            0,
            plaintext,
            s.commit(plaintext, trainer.address, 0),
            feature_commitment=features_of(s, plaintext, 0),
        )
    s.close()
    node = AggregatorNode(s.market(env.aggregator), s.project_id, keypair=s.key, state_dir=s.state_dir)
    with pytest.raises(ConfigError, match="zk-cache"):
        node.run_round(0)
    assert env.market.project(s.project_id).current_round == 0, "nothing was posted"


def test_a_proven_round_that_censors_a_valid_update_is_a_difference_in_the_audit(
    env: Env, tmp_path: Path, zk_setup: RoundCircuitSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rejection mask is a free input of the proof: the contract accepts the round, the audit must not.
    s = proven_setup(env, tmp_path, zk_setup)
    updates = [s.train(i, 0) for i in range(4)]
    for i, plaintext in enumerate(updates):
        trainer = env.trainers[i]
        s.market(trainer).submit_update(
            s.project_id,
            0,
            plaintext,
            s.commit(plaintext, trainer.address, 0),
            feature_commitment=features_of(s, plaintext, 0),
        )
    s.close()
    victim = env.trainers[2].address

    def censoring(market: Any, u: SubmittedUpdate, *args: Any, **kwargs: Any) -> ValidatedUpdate:
        v = validate_submission(market, u, *args, **kwargs)
        return ValidatedUpdate(u, None, "ObjectNotFoundError: not found", False, None) if u.trainer == victim else v

    monkeypatch.setattr("aggregator.preparing.validate_submission", censoring)
    node = AggregatorNode(
        s.market(env.aggregator), s.project_id, keypair=s.key, state_dir=s.state_dir, zk_setup=zk_setup
    )
    outcome = node.run_round(0)
    monkeypatch.undo()
    posted = env.market.events("RoundPosted", from_block=outcome.block or 0, projectId=s.project_id)
    assert [bool(e.args["proven"]) for e in posted] == [True]  # the chain cannot tell

    audit = audit_project(s.market(env.outsider), s.project_id)
    false = [d for d in audit.differences if "false rejection" in d.message]
    assert [(d.round, d.index, d.trainer) for d in false] == [(0, 2, victim)]
    assert audit.rounds[0].verdict == "mismatch"
