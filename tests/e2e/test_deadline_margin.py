"""``--deadline-margin`` / ``$POCFL_DEADLINE_MARGIN``: window-bound transactions too close to their deadline by the
chain's clock are not sent (no transaction, no gas), ``cancel`` of a subscribed project included."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocfl.chain.backends import Chain
from tests.e2e.conftest import Actors, Cli

START_IN = 600
WIDE = str(START_IN + 100)  # a margin wider than the time left before the start


def test_margin_option_and_variable_refuse_transactions_near_their_deadline(
    cli: Cli, actors: Actors, anvil_chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "manifest.json"
    cli("project", "manifest", str(manifest), rpc=False)
    cli("deploy", "--key", actors.owner.env)
    created = cli.json(
        "project", "create", "--key", actors.owner.env, "--aggregator", actors.aggregator.address,
        "--manifest", str(manifest), "--budget", "1", "--rounds", "1", "--submission-window", "60",
        "--aggregation-window", "60", "--start-in", str(START_IN), "--min-trainers", "1", "--max-trainers", "3",
    )  # fmt: skip
    pid = str(created["project_id"])
    nonce = anvil_chain.w3.eth.get_transaction_count(actors.t1.address)

    refused = cli.json("register", pid, "--key", actors.t1.env, "--deadline-margin", WIDE, code=1)
    assert refused["error"] == "DeadlineTooCloseError" and f"margin {WIDE} s" in refused["message"]
    monkeypatch.setenv("POCFL_DEADLINE_MARGIN", WIDE)
    assert cli.json("register", pid, "--key", actors.t1.env, code=1)["error"] == "DeadlineTooCloseError"
    assert anvil_chain.w3.eth.get_transaction_count(actors.t1.address) == nonce  # nothing was sent
    monkeypatch.delenv("POCFL_DEADLINE_MARGIN")
    cli.json("register", pid, "--key", actors.t1.env)  # the default margin (4 s) is far from the start

    # Subscribed, the project can only be cancelled by its owner before the start: the same check applies.
    owner_nonce = anvil_chain.w3.eth.get_transaction_count(actors.owner.address)
    refused = cli.json("project", "cancel", pid, "--key", actors.owner.env, "--deadline-margin", WIDE, code=1)
    assert refused["error"] == "DeadlineTooCloseError" and "cancel" in refused["message"]
    assert anvil_chain.w3.eth.get_transaction_count(actors.owner.address) == owner_nonce
    cli.json("project", "cancel", pid, "--key", actors.owner.env)
