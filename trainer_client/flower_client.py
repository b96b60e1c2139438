"""The trainer as a Flower 1.42 ClientApp (Message API): each train message runs one marketplace round.

The update never travels in a Flower message: :meth:`TrainerClient.train_round` (the same call ``pocfl train``
makes) stores it in the content store and submits its CID and commitment on chain; the reply carries only the
receipt, so the aggregator scores what the chain records, never what Flower delivers. The message protocol is
the one of :mod:`pocfl.flower_keys` (one :class:`~flwr.app.ConfigRecord` under the key ``"pocfl"``)::

    query  server -> node   {"request": "trainer-address", "project-id": int}
           node -> server   {"trainer": "0x..", "project-id": int}
    train  server -> node   {"project-id": int, "round": int, "market": "0x..", "chain-id": int, ...}
           node -> server   {"trainer", "project-id", "round", "status", "cid", "commitment" (0x hex),
                             "encrypted", "tx-hash", "message"}  plus "skipped": reason for a late round
                            and a MetricRecord "metrics": num-examples, update-norm, local-accuracy, local-loss,
                            train-seconds

The train message's ``round`` is the **chain** round (Flower's ``server-round`` means nothing here; without
``round`` the project's current round is trained); ``project-id``, ``market`` and ``chain-id``, when present, must
match this node's, else the reply is an error. The model CID and hyper-parameters the server sends are not used:
the client derives both from the chain (:mod:`pocfl.rounds.inputs`), so a server cannot make it train on anything
else. Expected failures (project over, not registered, round not open in time, bad data or settings) come back as
an error reply whose reason names the error.

Settings, read from the SuperNode's ``node_config`` first, then the run's ``run_config``
(``[tool.flwr.app.config]`` or ``--run-config``); empty strings count as unset. The connection settings are the
ServerApp's names, so one run config serves both; trainer settings are per node:

- ``pocfl-project`` (required), ``pocfl-rpc`` (default ``$POCFL_RPC``), ``pocfl-market`` (default the
  ``pocfl-deployment`` file's, else ``<state dir>/deployments.json``), ``pocfl-ipfs`` (default ``$POCFL_IPFS``);
- ``pocfl-trainer-key-env``: the NAME of the environment variable holding the trainer's hex key (default
  ``POCFL_PRIVATE_KEY``), or ``pocfl-trainer-keystore`` (password in ``$POCFL_KEYSTORE_PASSWORD``);
- ``pocfl-data``: a path or spec for :func:`trainer_client.data.load_private_data` (required; the app's
  ``pyproject.toml`` defaults it to the digits demo share ``digits:part={partition-id}:of={num-partitions}``;
  a CSV of your own task is ``FILE.csv:part={partition-id}:of={num-partitions}`` in simulation, or its own file
  per SuperNode); ``pocfl-label-column`` for CSV files. The model is never configured here: the trainer builds it
  from the project's on-chain manifest, as ``pocfl train`` does;
- ``pocfl-seed`` (default the ``partition-id``, else 0); ``pocfl-attack`` (demo attackers,
  :func:`~trainer_client.client.parse_attack`); ``pocfl-trainer-state-dir`` (the journal's folder, default
  ``$POCFL_HOME``, else ``./.pocfl``); ``pocfl-wait-s`` (how long a message may wait for its round to open,
  default 30).

String settings may use the placeholders ``{partition-id}`` and ``{num-partitions}`` (simulation's node config),
e.g. ``pocfl-trainer-key-env = "TRAINER_KEY_{partition-id}"`` gives every simulated node its own key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, ConfigRecordValues, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from pocfl import flower_keys as fk
from pocfl.errors import ConfigError, PocflError
from trainer_client.client import TrainerClient
from trainer_client.progress import TrainerReporter
from trainer_client.results import RoundNotOpenError, RoundResult, RoundStatus

log = logging.getLogger(__name__)

ERROR_CODE = 2
"""``flwr.common.constant.ErrorCode.CLIENT_APP_RAISED_EXCEPTION``: an expected failure, explained in the reason."""

DEFAULT_KEY_ENV = "POCFL_PRIVATE_KEY"

SETTINGS: dict[str, str] = {
    "pocfl-trainer-key-env": "name of the variable holding the trainer's hex key (default POCFL_PRIVATE_KEY)",
    "pocfl-trainer-keystore": "the trainer's keystore file instead (password in $POCFL_KEYSTORE_PASSWORD)",
    "pocfl-data": "the trainer's data: FILE.csv / FILE.npz / image folder, FILE.csv:part=I:of=N, digits:part=I:of=N",
    "pocfl-label-column": "CSV label column, name or index (default label, else the last)",
    "pocfl-seed": "local training seed (default the partition-id, else 0)",
    "pocfl-attack": "demo attacker behaviour (trainer_client.client.parse_attack)",
    "pocfl-trainer-state-dir": "folder of the trainer's journal (default $POCFL_HOME, else ./.pocfl)",
    "pocfl-wait-s": "seconds a train message may wait for its round to open (default 30)",
}
"""The ClientApp's own settings (node config first, then run config), besides the connection settings it shares
with the ServerApp (:data:`aggregator.flower_server.SETTINGS`); docs/quickstart.md's table lists both."""

SHARED_SETTINGS = ("pocfl-project", "pocfl-rpc", "pocfl-market", "pocfl-deployment", "pocfl-ipfs")
"""The connection settings the ClientApp reads under the ServerApp's names (one run config serves both)."""

DEFAULT_WAIT_S = 30.0
WAIT_POLL_S = 1.0

ClientFactory = Callable[[Context], TrainerClient]

app = ClientApp()

_clients: dict[tuple[Any, ...], tuple[TrainerClient, Any]] = {}
_factory: ClientFactory | None = None


def set_client_factory(factory: ClientFactory | None) -> None:
    """Build clients with ``factory(context)`` instead of from the settings (tests, embedding); None restores."""
    global _factory
    _factory = factory


def reset() -> None:
    """Forget the factory and the cached clients, closing their connections."""
    global _factory
    _factory = None
    for _, session in _clients.values():
        session.close()
    _clients.clear()


def setting(context: Context, key: str, default: Any = None) -> Any:
    """A setting from the node config, else the run config, else ``default``; placeholders filled in strings."""
    for source in (context.node_config, context.run_config):
        value = source.get(key)
        if value is not None and value != "":
            return _fill(value, context.node_config) if isinstance(value, str) else value
    return _fill(default, context.node_config) if isinstance(default, str) else default


def _fill(text: str, node_config: Mapping[str, Any]) -> str:
    for name in ("partition-id", "num-partitions"):
        if "{" + name + "}" in text:
            if name not in node_config:
                raise ConfigError(f"setting {text!r} uses {{{name}}}, which this node's config does not have")
            text = text.replace("{" + name + "}", str(node_config[name]))
    return text


def client_from_settings(context: Context) -> TrainerClient:
    """Open the chain, the store and the data the settings name, and build the trainer (cached per settings).

    The same start as ``pocfl train`` (:func:`trainer_client.setup.prepare_trainer`): the trainer reads the model,
    its preprocessing and the training recipe from the project's on-chain manifest; nothing here names a model.
    """
    from pocfl.connection import Connection
    from pocfl.deployment import default_deployment_file, state_dir
    from trainer_client.setup import prepare_trainer

    project = setting(context, "pocfl-project")
    if project is None:
        raise ConfigError("set pocfl-project (the project id) in the run config or the node config")
    data = setting(context, "pocfl-data")
    if data is None:
        raise ConfigError(
            "set pocfl-data (a .csv, .npz, image folder, FILE.csv:part=I:of=N or digits:part=I:of=N) in the node "
            "or run config"
        )
    key: tuple[Any, ...] = (
        int(project),
        setting(context, "pocfl-rpc"),
        setting(context, "pocfl-market"),
        setting(context, "pocfl-deployment"),
        setting(context, "pocfl-ipfs"),
        str(setting(context, "pocfl-trainer-key-env", DEFAULT_KEY_ENV)),
        setting(context, "pocfl-trainer-keystore"),
        str(data),
        setting(context, "pocfl-label-column"),
        int(setting(context, "pocfl-seed", context.node_config.get("partition-id", 0))),
        setting(context, "pocfl-attack"),
        setting(context, "pocfl-trainer-state-dir"),
    )
    cached = _clients.get(key)
    if cached is not None:
        return cached[0]
    project_id, rpc, market, deployment, ipfs, key_env, keystore, spec, label, seed, attack, journal_dir = key
    session = Connection(
        rpc_setting=rpc,
        key=key_env,
        keystore=Path(keystore) if keystore else None,
        deployment_file=Path(deployment) if deployment else default_deployment_file(),
        market_override=market,
        ipfs=ipfs,
    )
    try:  # the start of `pocfl train`: data, then the chain and the project, outages waited out
        prepared = prepare_trainer(
            session.store_market, project_id, spec, label_column=label, attack=attack, say=log.info
        )
        client = prepared.start(
            seed=seed,
            state_dir=Path(journal_dir) if journal_dir else state_dir(),
            reporter=TrainerReporter(),
            from_block=session.from_block,
            say=log.info,
        )
    except BaseException:
        session.close()
        raise
    _clients[key] = (client, session)  # the session keeps the connections open for the next message
    return client


def _client(context: Context) -> TrainerClient:
    return _factory(context) if _factory is not None else client_from_settings(context)


def _record(msg: Message) -> ConfigRecord:
    if not msg.has_content():
        return ConfigRecord()
    records = msg.content.config_records
    return records[fk.RECORD] if fk.RECORD in records else ConfigRecord()


def _check_addressed_to(record: ConfigRecord, client: TrainerClient) -> None:
    """Refuse a message meant for another project or deployment (a node wired to the wrong chain or contract)."""
    checks = (
        (fk.PROJECT_ID, client.project_id, lambda v: int(str(v))),
        (fk.CHAIN_ID, client.chain_id, lambda v: int(str(v))),
        (fk.MARKET, client.market_address.lower(), lambda v: str(v).lower()),
    )
    for name, ours, parse in checks:
        if name in record and parse(record[name]) != ours:
            raise ConfigError(f"the message is for {name} {parse(record[name])}, this node trains {name} {ours}")


def _train_round(client: TrainerClient, round_: int, wait_s: float) -> RoundResult:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return client.train_round(round_)
        except RoundNotOpenError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(WAIT_POLL_S)


def reply_content(result: RoundResult) -> RecordDict:
    """The reply's records for a round result (see the module docstring)."""
    fields: dict[str, ConfigRecordValues] = {
        fk.TRAINER: result.trainer,
        fk.PROJECT_ID: result.project_id,
        fk.ROUND: result.round,
        "status": result.status.value,
        fk.CID: result.cid or "",
        "commitment": "" if result.commitment is None else "0x" + result.commitment.hex(),
        "encrypted": bool(result.encrypted),
        "tx-hash": result.tx_hash or "",
        "message": result.message,
    }
    if result.status is RoundStatus.LATE:
        fields[fk.SKIPPED] = result.message
    metrics: dict[str, int | float | list[int] | list[float]] = {"num-examples": result.num_examples}
    for name, value in (
        ("update-norm", result.update_norm),
        ("local-accuracy", result.local_accuracy),
        ("local-loss", result.local_loss),
        ("train-seconds", result.timings.get("train")),
    ):
        if value is not None:
            metrics[name] = float(value)
    return RecordDict({fk.RECORD: ConfigRecord(fields), "metrics": MetricRecord(metrics)})


def _error(msg: Message, err: PocflError) -> Message:
    return Message(Error(code=ERROR_CODE, reason=f"{type(err).__name__}: {err}"), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Answer the server's ``trainer-address`` query with this node's trainer address."""
    try:
        client = _client(context)
        record = _record(msg)
        if record.get(fk.REQUEST) != fk.ADDRESS_REQUEST:
            raise ConfigError(
                f"unknown query {str(record.get(fk.REQUEST))!r}; this node answers {fk.ADDRESS_REQUEST!r}"
            )
        _check_addressed_to(record, client)
    except PocflError as err:
        return _error(msg, err)
    answer = ConfigRecord({fk.TRAINER: client.address, fk.PROJECT_ID: client.project_id})
    return Message(RecordDict({fk.RECORD: answer}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Run one marketplace round for this node's trainer and reply with the submission's CID and commitment."""
    try:
        client = _client(context)
        record = _record(msg)
        _check_addressed_to(record, client)
        round_ = int(str(record[fk.ROUND])) if fk.ROUND in record else client.project().current_round
        result = _train_round(client, round_, float(setting(context, "pocfl-wait-s", DEFAULT_WAIT_S)))
    except PocflError as err:
        return _error(msg, err)
    return Message(reply_content(result), reply_to=msg)
