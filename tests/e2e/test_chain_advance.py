"""`pocfl chain advance --to POINT --project N`: the clock lands exactly on a point of the current round.

A relative advance computed from a stale "now" overshoots (twice a whole window was skipped that way); the exact
form never does, and never moves the clock backwards.
"""

from __future__ import annotations

import pytest

from pocfl.chain.backends import Chain
from pocfl.chain.client import MarketplaceClient
from tests.e2e.conftest import Actors, Cli, Files
from tests.e2e.test_cli import create_project

pytestmark = pytest.mark.e2e


def test_advance_to_the_points_of_the_current_round(cli: Cli, actors: Actors, anvil_chain: Chain, files: Files) -> None:
    owner = ("--key", actors.owner.env)
    market = MarketplaceClient(anvil_chain, cli.json("deploy", *owner)["address"])
    pid = create_project(cli, owner, actors.aggregator.address, model=files.model(), stake="0", min_trainers="1")
    state = market.project(pid)
    points = {
        "start": state.params.start_time,
        "submission-close": state.params.start_time + state.params.submission_window,
        "aggregation-close": state.params.start_time + state.params.submission_window + state.params.aggregation_window,
    }
    cli("register", str(pid), "--key", actors.t1.env)
    for point, timestamp in points.items():
        moved = cli.json("chain", "advance", "--to", point, "--project", str(pid))
        assert moved["timestamp"] == timestamp == anvil_chain.now(), point
    assert market.project(pid).submission_deadline == points["submission-close"]

    again = cli.json("chain", "advance", "--to", "start", "--project", str(pid))  # already past: not moved
    assert again["advanced"] == 0 and again["timestamp"] == anvil_chain.now()
    absolute = anvil_chain.now() + 50
    assert cli.json("chain", "advance", "--to", str(absolute))["timestamp"] == absolute

    assert "needs --project" in cli.json("chain", "advance", "--to", "start", code=1)["message"]
    assert "one of them" in cli.json("chain", "advance", "5", "--to", "start", code=1)["message"]
    assert "must be one of" in cli.json("chain", "advance", "--to", "later", code=1)["message"]
