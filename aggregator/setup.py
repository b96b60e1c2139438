"""Starting a standalone aggregator node (``pocfl aggregate``), without any terminal output.

:func:`connect_aggregator` connects and checks that the signing account is the project's aggregator;
:func:`load_circuit` loads a proven project's circuit setup; :func:`start_node` builds the
:class:`~aggregator.node.AggregatorNode`. Every chain or store read waits out outages
(:func:`pocfl.waiting.start_when_up`): a node started during one waits for it instead of exiting.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pocfl.errors import ConfigError
from pocfl.market import Market
from pocfl.waiting import start_when_up

if TYPE_CHECKING:
    from aggregator.node import AggregatorNode
    from aggregator.node_context import Progress
    from pocfl.updates import EncryptionKeyPair
    from zk.prover import CircuitShape, RoundCircuitSetup


def connect_aggregator(connect: Callable[[], Market], project: int, *, say: Callable[[str], None]) -> Market:
    """Connect (waiting out outages) and check that the market's account is the project's aggregator.

    Raises
    ------
    ConfigError
        Another account signs: the contract would refuse its posts.
    """
    market = start_when_up("connect to the chain", connect, say=say)
    sender = market.client.sender
    aggregator = start_when_up("read the project", lambda: market.client.project(project), say=say).params.aggregator
    if sender.lower() != aggregator.lower():
        raise ConfigError(
            f"{sender} is not the aggregator of project {project} ({aggregator}): sign with its key "
            "(--key ENV_VAR or --keystore FILE)"
        )
    return market


def _circuit_shape(market: Market, project: int) -> CircuitShape | None:
    from pocfl.rounds.inputs import load_manifest

    state = market.client.project(project)
    if int(state.params.verifier, 16) == 0:
        return None
    manifest = load_manifest(market, state)
    if manifest.proof is None:
        return None  # the node refuses such a project with a clear error
    from zk.prover import CircuitShape

    proof = manifest.proof
    return CircuitShape(proof.slots, proof.sketch_dim, proof.scale)


Loading = Callable[[str], AbstractContextManager[Callable[[str], None]]]
"""Wraps a slow step with its description; yields the callable that hears its progress (a CLI spinner)."""


def load_circuit(
    market: Market, project: int, cache: Path | None, *, loading: Loading, say: Callable[[str], None]
) -> RoundCircuitSetup | None:
    """The circuit setup of a proven project, from ``cache`` (None for a project without a verifier).

    Only a setup already in the cache is loaded (what ``pocfl deploy --with-verifier`` built: the same keys as the
    deployed verifier). ``loading`` wraps the loading, and only that: an unproven project loads nothing, so it
    says nothing about a circuit. ``say`` hears the outages waited out while reading the manifest.
    """
    shape = start_when_up("read the manifest", lambda: _circuit_shape(market, project), say=say)
    if shape is None:
        return None
    from zk.cache import default_cache_dir
    from zk.prover import RoundCircuitSetup

    with loading("loading the round circuit") as note:
        return RoundCircuitSetup.build(shape, cache or default_cache_dir(), progress=note, cached_only=True)


@dataclass(frozen=True)
class NodeOptions:
    """How the node runs, as the operator chose.

    Attributes
    ----------
    keypair
        The aggregator's encryption key (updates sealed to it are rejected without it).
    state_dir
        Where the node journals its progress.
    validation
        The revealed validation set, when the manifest names one by CID.
    poll
        Seconds between chain checks.
    """

    keypair: EncryptionKeyPair | None
    state_dir: Path
    validation: Path | None = None
    poll: float = 5.0


def start_node(
    market: Market,
    project: int,
    options: NodeOptions,
    *,
    from_block: int,
    clock: Callable[[], int],
    progress: Progress,
    zk_setup: RoundCircuitSetup | None,
    say: Callable[[str], None],
) -> AggregatorNode:
    """The project's aggregator node, once the chain and the store answer (it reads the project and manifest)."""
    from aggregator.node import AggregatorNode

    return start_when_up(
        "start the aggregator (project, manifest)",
        lambda: AggregatorNode(
            market,
            project,
            keypair=options.keypair,
            state_dir=options.state_dir,
            validation_file=options.validation,
            from_block=from_block,
            clock=clock,
            poll=options.poll,
            progress=progress,
            zk_setup=zk_setup,
        ),
        say=say,
    )


def missing_key_warning(node: AggregatorNode) -> str | None:
    """The warning for a node without the decryption key of a project whose trainers seal their updates."""
    if node.keypair is None and node.manifest.aggregator_public_key:
        return "no --decrypt-key: updates sealed to the aggregator's key will be rejected"
    return None


__all__ = ["NodeOptions", "connect_aggregator", "load_circuit", "missing_key_warning", "start_node"]
