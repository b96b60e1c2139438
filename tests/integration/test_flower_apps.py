"""The Flower apps built from settings alone, as Flower builds them, on a non-digits project (issue 14).

A wine project (13 features, 3 classes) made with :func:`pocfl.fl_project.manifest_from_data`, the function
behind ``pocfl project manifest --validation``; then the ServerApp's node and a simulated ClientApp are built from
a run config / node config mapping (no Flower runtime): both take the model from the on-chain manifest, and the
ClientApp trains a round on its share of a wine CSV (``FILE.csv:part={partition-id}:of={num-partitions}``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, RecordDict

from aggregator import flower_server
from pocfl.errors import ConfigError
from pocfl.fl_project import manifest_from_data
from pocfl.manifest import TrainingConfig
from pocfl.market import Market
from pocfl.store import EmbeddedStore
from tests.helpers import Env, flower_message, standard_params, warp_to
from trainer_client import flower_client

Setting = bool | float | int | str


def _train_message(config: dict[str, Any]) -> Any:
    return flower_message(config, group_id="0")


def test_server_and_client_apps_take_the_model_from_a_wine_manifest(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env.chain.url is None:
        pytest.skip("settings name a chain by URL: the embedded chain has none")
    from sklearn.datasets import load_wine

    wine = load_wine()
    x, y = np.asarray(wine.data), np.asarray(wine.target, dtype=np.int64)
    validation, train = tmp_path / "validation.csv", tmp_path / "train.csv"
    np.savetxt(validation, np.column_stack([x[::4], y[::4]]), delimiter=",", fmt="%.10g")
    keep = np.arange(y.shape[0]) % 4 != 0
    np.savetxt(train, np.column_stack([x[keep], y[keep]]), delimiter=",", fmt="%.10g")
    store = EmbeddedStore(tmp_path / "store")
    training = TrainingConfig(learning_rate=0.05, local_epochs=1, batch_size=8)
    made = manifest_from_data("wine", validation, store=store, hidden=8, training=training)
    params = replace(standard_params(env, min_trainers=1, max_trainers=12), validation_set_commitment=made.commitment)
    project_id, _ = Market(env.client(env.owner), store).create_project(
        params, 3 * 10**18, initial_model=made.manifest.to_json()
    )
    store.close()
    trainer = env.trainers[1]
    env.client(trainer).register(project_id)
    warp_to(env.chain, params.start_time)

    monkeypatch.setenv("POCFL_TEST_AGGREGATOR", env.aggregator.key.hex())
    monkeypatch.setenv("POCFL_TEST_TRAINER_1", trainer.key.hex())
    run: dict[str, Any] = {
        "pocfl-project": project_id,
        "pocfl-rpc": env.chain.url,
        "pocfl-market": env.market.address,
        "pocfl-ipfs": str(tmp_path / "store"),
        "pocfl-key-env": "POCFL_TEST_AGGREGATOR",
        "pocfl-state-dir": str(tmp_path / "aggregator"),
        "pocfl-trainer-key-env": "POCFL_TEST_TRAINER_{partition-id}",
        "pocfl-data": f"{train}:part={{partition-id}}:of={{num-partitions}}",
        "pocfl-trainer-state-dir": str(tmp_path / "trainer"),
        "pocfl-wait-s": 0,
    }
    node_config: dict[str, Setting] = {"partition-id": 1, "num-partitions": 2}

    with pytest.raises(ConfigError, match="is not the aggregator of project"):  # pocfl aggregate's own check
        flower_server.node_from_run_config({**run, "pocfl-key-env": "POCFL_TEST_TRAINER_1"})
    node, closer = flower_server.node_from_run_config(run)
    with closer:
        assert (node.manifest.model.n_features, node.manifest.model.n_classes) == (13, 3)
        assert node.manifest == made.manifest

    context = Context(1, 2, node_config, RecordDict(), run)
    try:
        client = flower_client.client_from_settings(context)
        assert client.manifest() == made.manifest
        reply = flower_client.app(_train_message({"round": 0, "project-id": project_id}), context)
    finally:
        flower_client.reset()
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    record = reply.content.config_records["pocfl"]
    assert record["status"] == "submitted" and record["trainer"] == trainer.address
    # share 1 of 2 of the training rows: the shorter half when their count is odd
    assert reply.content.metric_records["metrics"]["num-examples"] == int(keep.sum()) // 2
