"""The record of the local node started by ``pocfl chain up``: re-exported from :mod:`pocfl.local_node`.

The record is read by the :class:`pocfl.connection.Connection` of every entry point (the CLI, the Flower apps), so it
lives outside the CLI; the commands keep importing it from here.
"""

from __future__ import annotations

from pocfl.local_node import (
    NODE_FILE,
    NodeRecord,
    is_anvil,
    live_node,
    node_file,
    pid_alive,
    read_node,
    remove_node,
    write_json_atomic,
    write_node,
)
from pocfl.rpc import node_chain_id

__all__ = [
    "NODE_FILE",
    "NodeRecord",
    "is_anvil",
    "live_node",
    "node_chain_id",
    "node_file",
    "pid_alive",
    "read_node",
    "remove_node",
    "write_json_atomic",
    "write_node",
]
