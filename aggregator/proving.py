"""Proven rounds: each update checked against its committed features, then the round's flags and scores proven.

Only projects with a verifier prove their rounds; ``zk`` is imported on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aggregator.node_context import NodeContext
from aggregator.round import RoundDecision
from pocfl.errors import ConfigError, PocflError
from pocfl.manifest import ProofConfig
from pocfl.rounds.inputs import RoundInputError, ValidatedUpdate
from pocfl.rounds.report import RoundReport

if TYPE_CHECKING:
    from zk.prover import RoundCircuitSetup


@dataclass
class ZkInputs:
    """A proven round's circuit inputs: per submission, its committed features and whether it was rejected."""

    setup: RoundCircuitSetup
    features: list[Any]
    rejected: list[bool]
    seed: bytes

    def flags(self) -> tuple[bool, ...]:
        """The outlier flags the circuit computes from these inputs."""
        return self.setup.evaluate(self.features, self.rejected)


def check_setup(proof: ProofConfig, setup: RoundCircuitSetup | None) -> None:
    """Raise :class:`ConfigError` when ``setup`` is not the circuit of the manifest's ``proof`` shape."""
    if setup is not None and (setup.shape.slots, setup.shape.sketch_dim, setup.shape.scale) != (
        proof.slots,
        proof.sketch_dim,
        proof.scale,
    ):
        raise ConfigError(f"the circuit setup {setup.shape} does not match the manifest's proof {proof}")


class RoundProver:
    """Checks a proven project's updates against their feature commitments and proves its decisions.

    Parameters
    ----------
    ctx
        The node's shared context.
    proof
        The manifest's ``proof`` section.
    setup
        The round circuit whose verifier the project uses; None fails at the first round that needs it.

    Raises
    ------
    ConfigError
        ``setup`` is not the circuit of the manifest's ``proof`` shape.
    """

    def __init__(self, ctx: NodeContext, proof: ProofConfig, setup: RoundCircuitSetup | None) -> None:
        check_setup(proof, setup)
        self.ctx, self.setup = ctx, setup

    def committed_features(
        self, r: int, validated: list[ValidatedUpdate], model_in: str
    ) -> tuple[list[ValidatedUpdate], ZkInputs]:
        """Each accepted update's features, checked against its on-chain ``featureCommitment``.

        A mismatch (or no commitment) rejects the submission with a named reason: the circuit only sees committed
        features, so an update whose commitment does not describe it must not be aggregated.
        """
        from zk.commitment import committed_features
        from zk.decision import feature_seed

        ctx = self.ctx
        if self.setup is None:
            raise ConfigError(
                f"project {ctx.project_id} has a verifier: pass the circuit setup (`pocfl aggregate --zk-cache DIR`)"
            )
        shape = self.setup.shape
        if len(validated) > shape.slots:
            raise RoundInputError(f"round {r}: {len(validated)} submissions exceed the circuit's {shape.slots} slots")
        seed = feature_seed(ctx.client.chain.chain_id, ctx.client.address, ctx.project_id, r, model_in)
        cf = committed_features(
            [v.vector for v in validated],
            [v.submitted.feature_commitment for v in validated],
            seed,
            dim=shape.sketch_dim,
            scale=shape.scale,
        )
        out = [
            v if why is None else replace(v, vector=None, reason=why)
            for v, why in zip(validated, cf.reasons, strict=True)
        ]
        return out, ZkInputs(self.setup, cf.features, cf.rejected, seed)

    def prove(self, r: int, zk: ZkInputs, decision: RoundDecision) -> tuple[bytes, dict[str, Any]]:
        """Prove the round's flags and scores; check the proof says exactly what will be posted; store it.

        Returns ``postRound``'s proof argument and the report's ``proof`` section.
        """
        from zk.onchain import encode_round_proof

        ctx = self.ctx
        ctx.say(f"round {r}: proving (circuit {zk.setup.shape.key})")
        proof = zk.setup.prove(zk.features, zk.rejected, decision.scores)
        n = len(zk.features)
        if not proof.ok or proof.outliers[:n] != decision.outliers or proof.scores[:n] != decision.scores:
            raise RoundInputError(
                f"round {r}: the proof does not state the decision (ok={proof.ok}, proven outliers "
                f"{proof.outliers[:n]} vs {decision.outliers}, scores {proof.scores[:n]} vs {decision.scores})"
            )
        proof_cid = ctx.market.publish(json.dumps(proof.to_json(), sort_keys=True).encode())
        # The settings and verifying key let anyone rebuild the circuit (audit) and check the proof off chain.
        settings_cid = ctx.market.publish(zk.setup.settings_path.read_bytes())
        vk_cid = ctx.market.publish(zk.setup.vk_path.read_bytes())
        ctx.say(f"round {r}: proved in {proof.prove_seconds:.1f} s", 1, 1)
        shape = zk.setup.shape
        info = {
            "cid": proof_cid,
            "settings_cid": settings_cid,
            "vk_cid": vk_cid,
            "circuit": shape.key,
            "slots": shape.slots,
            "sketch_dim": shape.sketch_dim,
            "scale": shape.scale,
            "feature_seed": "0x" + zk.seed.hex(),
            "witness_hash": hex(proof.witness_hash),
            "prove_seconds": round(proof.prove_seconds, 3),
        }
        return encode_round_proof(proof), info


def stored_proof(ctx: NodeContext, report: RoundReport) -> bytes | None:
    """``postRound``'s proof argument read back from the proof a stored report names; None when unreadable."""
    proof_info = report.config.get("proof") if isinstance(report.config, dict) else None
    if not isinstance(proof_info, dict):
        return None
    from zk.onchain import load_round_proof

    try:
        return load_round_proof(ctx.market.fetch(str(proof_info["cid"])))
    except (KeyError, ValueError, PocflError):
        return None
