"""The Flower message protocol of pocfl: the keys both Flower apps use, in one place.

:mod:`aggregator.flower_server` (the ServerApp) and :mod:`trainer_client.flower_client` (the ClientApp) exchange one
:class:`~flwr.app.ConfigRecord` under the key :data:`RECORD`; the update itself never travels in a message (it
goes through the content store and the chain)::

    query  server -> node   {REQUEST: ADDRESS_REQUEST, PROJECT_ID: int}
           node -> server   {TRAINER: "0x..", PROJECT_ID: int}
    train  server -> node   {PROJECT_ID: int, ROUND: int, MARKET: "0x..", CHAIN_ID: int,
                             MODEL_CID: str, HYPERPARAMS: HyperParams JSON, SUBMISSION_DEADLINE: int}
           node -> server   {TRAINER: "0x..", PROJECT_ID, ROUND, "status", CID: str, "commitment", ...}
                            (plus SKIPPED: reason for a late round)

The values are the wire names (``"pocfl"``, ``"trainer-address"``, ``"project-id"``, ...); changing one breaks
nodes of the other version.
"""

from __future__ import annotations

RECORD = "pocfl"
"""Key of the :class:`~flwr.app.ConfigRecord` every pocfl message carries."""

REQUEST = "request"
"""What a query asks for."""

ADDRESS_REQUEST = "trainer-address"
"""``request`` of the query that asks a node for its trainer address."""

TRAINER = "trainer"
"""The node's trainer address (query and train replies)."""

PROJECT_ID = "project-id"
"""The project the message is about; a node refuses a message for another project."""

ROUND = "round"
"""The **chain** round to train (Flower's ``server-round`` means nothing here)."""

MARKET = "market"
"""The marketplace contract's address; a node refuses a message for another deployment."""

CHAIN_ID = "chain-id"
"""The chain's id; a node refuses a message for another chain."""

MODEL_CID = "model-cid"
"""CID of the round's global model (informative: the client derives it from the chain)."""

HYPERPARAMS = "hyperparams"
"""The round's hyper-parameters as JSON (informative: the client derives them from the chain)."""

SUBMISSION_DEADLINE = "submission-deadline"
"""Unix time the round's submission window closes."""

CID = "cid"
"""CID of the submitted update (train reply)."""

SKIPPED = "skipped"
"""Why the node did not submit (train reply of a late round)."""
