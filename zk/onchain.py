"""Deploy a round circuit's verifier pair and encode proofs for ``postRound``.

The ezkl-generated ``Halo2Verifier`` depends on the verifying key (and so on the SRS and the circuit shape), so it is
generated and compiled here with the pinned solcjs (Node.js is needed for this step only), then wrapped by the
committed ``EzklRoundVerifier`` adapter, whose address a project sets as its ``verifier``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount

from pocfl.chain.backends import Chain
from pocfl.chain.client import ContractClient, deploy_contract
from pocfl.contracts.build import compile_source
from pocfl.errors import ChainError, PocflError
from pocfl.untrusted import UntrustedJsonError, loads_untrusted, quote
from zk.decision import empty_features
from zk.prover import RoundCircuitSetup, RoundProof, feature_commitment

__all__ = [
    "POST_GAS",
    "ProofFormatError",
    "VerifierDeployment",
    "deploy_round_verifier",
    "encode_round_proof",
    "encode_round_proof_json",
    "load_round_proof",
]

POST_GAS = 6_000_000
"""Explicit gas of a proven ``postRound``: eth-tester's ``estimate_gas`` re-runs the pairing check (10-40 s)."""
VERIFIER_DEPLOY_GAS = 8_000_000
PROOF_MAX_SIZE = 16 << 20
"""Largest stored proof JSON read (a K=10 round proof with its ezkl JSON is well under 1 MiB)."""
MAX_SLOTS = 256
"""The rejection mask is a uint256: at most 256 slots."""


class ProofFormatError(PocflError, ValueError):
    """A stored round proof (JSON from the content store) is malformed; a ``ValueError``."""


@dataclass(frozen=True)
class VerifierDeployment:
    """Addresses and shape of a deployed verifier pair."""

    adapter: str
    halo2: str
    slots: int
    sketch_dim: int
    scale: int
    circuit: str
    halo2_runtime_bytes: int
    deploy_gas: int
    tx_hashes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def deploy_round_verifier(
    chain: Chain, account: LocalAccount, setup: RoundCircuitSetup, work_dir: Path
) -> VerifierDeployment:
    """Generate, compile and deploy ``setup``'s Halo2 verifier and an ``EzklRoundVerifier`` adapter in front of it."""
    sol = setup.solidity_verifier(work_dir)
    compiled = compile_source("Halo2Verifier.sol", sol.read_text(), "Halo2Verifier")
    (work_dir / "Halo2Verifier.json").write_text(json.dumps(compiled))
    runtime = (len(compiled["deployedBytecode"]) - 2) // 2
    if runtime > 24_576:
        raise ChainError(f"the generated verifier is {runtime} bytes, above the 24,576-byte code-size limit")
    factory = chain.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    deployer = ContractClient(chain, "0x" + "00" * 20, compiled["abi"], account)
    receipt = deployer.transact(factory.constructor(), gas=VERIFIER_DEPLOY_GAS)  # type: ignore[arg-type]
    if receipt.contract_address is None:
        raise ChainError("the Halo2 verifier deployment produced no contract address")
    halo2 = receipt.contract_address
    shape = setup.shape
    empty = int.from_bytes(feature_commitment(empty_features(shape.sketch_dim), shape.scale), "big")
    adapter, receipt2 = deploy_contract(
        chain, account, "EzklRoundVerifier", (halo2, shape.slots, 1 << setup.output_scale, empty), gas=2_000_000
    )
    return VerifierDeployment(
        adapter=adapter,
        halo2=halo2,
        slots=shape.slots,
        sketch_dim=shape.sketch_dim,
        scale=shape.scale,
        circuit=shape.key,
        halo2_runtime_bytes=runtime,
        deploy_gas=receipt.gas_used + receipt2.gas_used,
        tx_hashes=(receipt.tx_hash, receipt2.tx_hash),
    )


def encode_round_proof(proof: RoundProof) -> bytes:
    """``abi.encode(bytes halo2Proof, uint256 witnessHash, uint256 rejectedMask)``, the ``proof`` of ``postRound``."""
    return _encode(proof.proof, proof.witness_hash, proof.rejected)


def encode_round_proof_json(data: object) -> bytes:
    """:func:`encode_round_proof` of a stored :meth:`zk.prover.RoundProof.to_json` (a restarted node re-posting).

    Raises
    ------
    ProofFormatError
        Not an object with a hex ``proof``, a hex ``witness_hash`` below ``2**256`` and a ``rejected`` list of at
        most 256 booleans.
    """
    if not isinstance(data, dict) or not {"proof", "witness_hash", "rejected"} <= set(data):
        raise ProofFormatError(f"not a stored round proof: {quote(data)}")
    proof, witness, rejected = data["proof"], data["witness_hash"], data["rejected"]
    try:
        blob = bytes.fromhex(proof.removeprefix("0x"))
        witness_hash = int(witness, 16)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ProofFormatError(f"proof {quote(proof)} or witness_hash {quote(witness)} is not hex") from exc
    if not 0 <= witness_hash < 1 << 256:
        raise ProofFormatError(f"witness_hash {quote(witness)} is not a uint256")
    if not isinstance(rejected, list) or len(rejected) > MAX_SLOTS or not all(isinstance(r, bool) for r in rejected):
        raise ProofFormatError(f"rejected {quote(rejected)} is not a list of at most {MAX_SLOTS} booleans")
    return _encode(blob, witness_hash, rejected)


def load_round_proof(data: bytes) -> bytes:
    """:func:`encode_round_proof_json` of stored proof bytes, screened (:mod:`pocfl.untrusted`) before parsing.

    Raises
    ------
    ProofFormatError
        Too large, too deep, not JSON, or not a round proof.
    """
    try:
        return encode_round_proof_json(loads_untrusted(data, max_size=PROOF_MAX_SIZE, what="the stored proof"))
    except UntrustedJsonError as exc:
        raise ProofFormatError(str(exc)) from exc


def _encode(proof: bytes, witness_hash: int, rejected: Sequence[bool]) -> bytes:
    mask = sum(1 << i for i, r in enumerate(rejected) if r)
    return encode(["bytes", "uint256", "uint256"], [proof, witness_hash, mask])
