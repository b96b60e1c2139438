"""The aggregator node as a Flower 1.42 ServerApp (Message API): Flower carries the round trigger, not the updates.

A thin wrapper around :class:`aggregator.node.AggregatorNode`. Updates still travel through the content store and
the chain (trainers store them and submit CID + commitment on chain); Flower only tells trainers when to train and
from which global model, and runs the marketplace round once they replied:

``configure_train``
    Asks every connected node for its trainer address (a ``query`` message, see
    :data:`pocfl.flower_keys.ADDRESS_REQUEST`), keeps the nodes whose address is registered in the project on
    chain, and sends each a ``train`` message with the round, the global model's CID, the hyper-parameters and the
    submission deadline (no arrays).
``aggregate_train``
    Calls :meth:`AggregatorNode.run_round` for the round (it waits for the submission deadline, reads the
    submissions from the chain, validates, scores, stores and posts), and returns the round's metrics. The
    replies themselves are only logged: what counts is what is on chain.

Message contents (one :class:`~flwr.app.ConfigRecord` under the key ``"pocfl"``; the keys are those of
:mod:`pocfl.flower_keys`)::

    query  server -> node   {"request": "trainer-address", "project-id": int}
           node -> server   {"trainer": "0x..."}
    train  server -> node   {"project-id": int, "round": int, "market": "0x..", "chain-id": int,
                             "model-cid": str, "hyperparams": HyperParams JSON, "submission-deadline": int}
           node -> server   {"trainer": "0x..", "cid": str}  (or {"trainer": .., "skipped": reason})

Run config of the ServerApp (``[tool.flwr.app.config]`` or ``--run-config``): the keys of :data:`SETTINGS`
(docs/quickstart.md lists them, a test keeps the two equal). The model, its validation recipe and the scoring
come from the project's on-chain manifest, which :class:`AggregatorNode` reads, as ``pocfl aggregate`` does.

Filtering on registered addresses saves work, it is not a security boundary: a node may claim any address, but
only a registered key can submit on chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    MetricRecordValues,
    RecordDict,
)
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from aggregator.node import AggregatorNode, RoundOutcome
from pocfl import flower_keys as fk
from pocfl.chain.types import ProjectStatus
from pocfl.errors import ConfigError
from pocfl.rounds.inputs import global_model, round_hyperparams

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3600.0
NODE_POLL_S = 2.0
"""Seconds between the node's chain checks while it waits out a round (``pocfl aggregate --poll``'s role)."""

SETTINGS: dict[str, str] = {
    "pocfl-project": "the on-chain project id (required)",
    "pocfl-rpc": "chain JSON-RPC URL (default $POCFL_RPC)",
    "pocfl-market": "marketplace address (default the deployment file's)",
    "pocfl-deployment": "deployment file (default <state dir>/deployments.json)",
    "pocfl-ipfs": "IPFS API URL or store folder (default $POCFL_IPFS)",
    "pocfl-key-env": "name of the variable holding the aggregator's hex key (default POCFL_PRIVATE_KEY)",
    "pocfl-keystore": "the aggregator's keystore file instead (password in $POCFL_KEYSTORE_PASSWORD)",
    "pocfl-password-file": "file whose first line is the keystore's password",
    "pocfl-decrypt-key": "the aggregator's encryption key file (for sealed updates)",
    "pocfl-validation": "the revealed validation set, when the manifest names one by CID",
    "pocfl-state-dir": "folder of the aggregator's journal",
    "pocfl-timeout": "seconds to wait for the trainers' train replies (default 3600)",
}
"""The ServerApp's run config; the connection keys (project to ipfs) are the ClientApp's too."""


def _config(message: Message) -> ConfigRecord | None:
    if message.has_error() or fk.RECORD not in message.content.config_records:
        return None
    return message.content.config_records[fk.RECORD]


class MarketplaceStrategy(Strategy):
    """A Flower strategy whose rounds are the project's on-chain rounds.

    Parameters
    ----------
    node
        The aggregator node that posts the rounds.
    query_timeout
        Seconds to wait for nodes to say who they are.
    """

    def __init__(self, node: AggregatorNode, *, query_timeout: float = 60.0) -> None:
        self.node = node
        self.query_timeout = query_timeout
        self.round: int | None = None
        self.outcomes: list[RoundOutcome] = []
        self.selected: dict[int, str] = {}

    # --- node selection -------------------------------------------------------------------------------------

    def trainer_addresses(self, grid: Grid) -> dict[int, str]:
        """Ask every connected node for its trainer address; ``{node_id: address}`` of those that answered."""
        pid = self.node.project_id
        queries = [
            grid.create_message(
                RecordDict({fk.RECORD: ConfigRecord({fk.REQUEST: fk.ADDRESS_REQUEST, fk.PROJECT_ID: pid})}),
                MessageType.QUERY,
                node_id,
                "pocfl-address",
            )
            for node_id in grid.get_node_ids()
        ]
        addresses: dict[int, str] = {}
        for reply in grid.send_and_receive(queries, timeout=self.query_timeout):
            record = _config(reply)
            trainer = record.get(fk.TRAINER) if record is not None else None
            if isinstance(trainer, str):
                addresses[reply.metadata.src_node_id] = trainer
        return addresses

    def registered_nodes(self, grid: Grid) -> dict[int, str]:
        """The connected nodes whose trainer address is registered in the project on chain."""
        client = self.node.client
        out: dict[int, str] = {}
        for node_id, address in self.trainer_addresses(grid).items():
            try:
                registered = client.trainer(self.node.project_id, address).registered
            except (ValueError, TypeError):  # not an address
                registered = False
            if registered:
                out[node_id] = address
            else:
                log.info("node %s claims trainer %s, not registered in project %s", node_id, address, client.address)
        return out

    # --- Strategy -------------------------------------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Train messages for the registered nodes, for the project's current on-chain round."""
        del arrays  # the global model travels by CID
        state = self.node.state()
        if state.status != ProjectStatus.ACTIVE:
            self.round = None
            return []
        r = state.current_round
        self.round = r
        market = self.node.market
        model_cid, _ = global_model(market, self.node.manifest, state, r, from_block=self.node.from_block)
        hyper = round_hyperparams(market, self.node.manifest, self.node.project_id, r, from_block=self.node.from_block)
        content = {
            **dict(config),
            fk.PROJECT_ID: self.node.project_id,
            fk.ROUND: r,
            fk.MARKET: self.node.client.address,
            fk.CHAIN_ID: self.node.client.chain.chain_id,
            fk.MODEL_CID: model_cid,
            fk.HYPERPARAMS: hyper.to_json(),
            fk.SUBMISSION_DEADLINE: state.submission_deadline,
        }
        self.selected = self.registered_nodes(grid)
        log.info("round %s (Flower round %s): training on %s registered node(s)", r, server_round, len(self.selected))
        return [
            grid.create_message(RecordDict({fk.RECORD: ConfigRecord(content)}), MessageType.TRAIN, node_id, str(r))
            for node_id in sorted(self.selected)
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Run the marketplace round (wait, validate, score, store, post); return its metrics."""
        for reply in replies:
            record = _config(reply)
            log.info("round %s: node %s replied %s", self.round, reply.metadata.src_node_id, dict(record or {}))
        if self.round is None:
            return None, None
        outcome = self.node.run_round(self.round)
        self.outcomes.append(outcome)
        metrics: dict[str, MetricRecordValues] = {"round": outcome.round, "posted": int(outcome.report is not None)}
        if outcome.report is not None:
            report = outcome.report
            metrics |= {
                "accuracy": report.accuracy,
                "loss": report.loss,
                "submissions": len(report.submissions),
                "rejected": sum(e.status == "rejected" for e in report.submissions),
                "outliers": sum(e.outlier for e in report.submissions),
            }
        if outcome.credited is not None:
            metrics["credited-gwei"] = outcome.credited / 1e9
        return None, MetricRecord(metrics)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """No federated evaluation: the aggregator evaluates on the owner's validation set."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Nothing to aggregate."""
        return None

    def summary(self) -> None:
        """Log what the strategy runs."""
        log.info("pocfl marketplace strategy: project %s on %s", self.node.project_id, self.node.client.address)


# --- the ServerApp ----------------------------------------------------------------------------------------------


def _opt(run_config: dict[str, Any], key: str) -> str | None:
    value = run_config.get(key)
    return str(value) if value not in (None, "") else None


@contextmanager
def _logged(step: str) -> Iterator[Callable[[str], None]]:
    """:data:`aggregator.setup.Loading` for a process without a terminal: the step and its progress go to the log."""
    log.info("%s", step)
    yield lambda text: log.info("%s: %s", step, text)


def _silent(stage: str, done: int, total: int) -> None:
    """No progress bars in a ServerApp (the round's metrics are its report)."""


def node_from_run_config(run_config: dict[str, Any]) -> tuple[AggregatorNode, AbstractContextManager[Any]]:
    """Open the chain, the store and the node the run config names (see :data:`SETTINGS`).

    The same start as ``pocfl aggregate`` (:mod:`aggregator.setup`): it checks that the key signs as the project's
    aggregator, loads a proven project's circuit from the default cache, and builds the node, which reads the
    project's manifest (model, validation, scoring); chain and store outages are waited out.

    Returns
    -------
    node, closer
        The node, and a context manager that closes the connections.

    Raises
    ------
    ConfigError
        ``pocfl-project`` is missing, the connection options are wrong, or the key is not the aggregator's.
    """
    from aggregator.setup import NodeOptions, connect_aggregator, load_circuit, start_node
    from pocfl.connection import Connection, chain_now
    from pocfl.deployment import state_dir
    from pocfl.updates import EncryptionKeyPair

    project = run_config.get("pocfl-project")
    if project is None:
        raise ConfigError("the ServerApp needs run config pocfl-project (the project id)")
    project_id = int(project)
    session = Connection.from_settings(run_config)
    try:
        key_file = _opt(run_config, "pocfl-decrypt-key")
        validation = _opt(run_config, "pocfl-validation")
        options = NodeOptions(
            keypair=EncryptionKeyPair.load(key_file) if key_file else None,
            state_dir=Path(_opt(run_config, "pocfl-state-dir") or state_dir() / "aggregator"),
            validation=Path(validation) if validation else None,
            poll=NODE_POLL_S,
        )
        market = connect_aggregator(session.store_market, project_id, say=log.info)
        node = start_node(
            market,
            project_id,
            options,
            from_block=session.from_block,
            clock=lambda: chain_now(session.chain()),
            progress=_silent,
            zk_setup=load_circuit(market, project_id, None, loading=_logged, say=log.info),
            say=log.info,
        )
    except BaseException:
        session.close()
        raise
    return node, session


NodeFactory = Callable[[dict[str, Any]], tuple[AggregatorNode, AbstractContextManager[Any]]]

app = ServerApp()


def run(grid: Grid, context: Context, factory: NodeFactory = node_from_run_config) -> list[RoundOutcome]:
    """The ServerApp's body: one Flower round per remaining on-chain round.

    Parameters
    ----------
    grid, context
        As Flower passes them.
    factory
        Builds the node from ``context.run_config`` (tests pass one bound to their chain).
    """
    node, closer = factory(dict(context.run_config))
    with closer:
        state = node.state()
        remaining = state.params.num_rounds - state.current_round if state.status == ProjectStatus.ACTIVE else 0
        strategy = MarketplaceStrategy(node)
        if remaining > 0:
            timeout = float(context.run_config.get("pocfl-timeout", DEFAULT_TIMEOUT))
            strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=remaining, timeout=timeout)
        return strategy.outcomes


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point Flower calls (``serverapp = "aggregator.flower_server:app"``)."""
    run(grid, context)
