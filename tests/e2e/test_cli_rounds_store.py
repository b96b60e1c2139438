"""Rounds through the content store with the CLI: every CID written is stored first, every CID read is verified.

``project create --initial-model``, ``round submit --update [--encrypt-to]``, ``round post --model --report`` and
``round fetch`` against anvil and the embedded store of the test's ``POCFL_HOME``; CIDs the store lacks are
refused before any transaction; one run goes through a real IPFS daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pocfl.chain.backends import Chain
from pocfl.deployment import default_deployment_file, load_deployments
from pocfl.market import report_hash
from pocfl.store import EmbeddedStore, compute_cid
from pocfl.updates import ENVELOPE_OVERHEAD, EncryptionKeyPair, decode_update, update_commitment
from tests.e2e.conftest import SPEC, Actor, Actors, Cli, Files
from tests.e2e.test_cli import ANVIL_CHAIN_ID, advance_past, create_project

pytestmark = pytest.mark.e2e


def nonce(chain: Chain, actor: Actor) -> int:
    """Transactions ``actor`` has sent: unchanged when a command refused before sending one."""
    return int(chain.w3.eth.get_transaction_count(actor.account.address))


def start_round_0(cli: Cli, chain: Chain, actors: Actors, trainers: list[Actor], model: Path, **options: str) -> int:
    """Deploy, create a project whose trainers are ``trainers``, register them and open round 0."""
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    n = str(len(trainers))
    pid = create_project(cli, own, actors.aggregator.address, model=model, min_trainers=n, max_trainers=n, **options)
    for t in trainers:
        cli("register", str(pid), "--key", t.env)
    advance_past(cli, chain, cli.json("project", "status", str(pid))["project"]["params"]["start_time"])
    return pid


def test_create_stores_the_initial_model_and_refuses_cids_the_store_lacks(
    cli: Cli, actors: Actors, anvil_chain: Chain, files: Files, store: EmbeddedStore
) -> None:
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    model = files.model()
    base = ["project", "create", *own, "--aggregator", actors.aggregator.address, "--rounds", "1", "--budget", "1"]
    base += ["--submission-window", "60", "--aggregation-window", "60", "--start-in", "60"]
    base += ["--min-trainers", "1", "--max-trainers", "2"]

    created = cli.json(*base, "--initial-model", str(model))
    cid = compute_cid(model.read_bytes())
    assert created["initial_model_cid"] == created["params"]["initial_model_cid"] == cid
    assert store.get_bytes(cid) == model.read_bytes()
    status = cli.json("project", "status", str(created["project_id"]))
    assert status["project"]["model_cid"] == cid and status["model_stored"] is True
    human = cli("project", "status", str(created["project_id"])).stdout
    assert cid in human and "in the store" in human

    before = nonce(anvil_chain, actors.owner)
    neither = cli.json(*base, code=1)
    assert neither["error"] == "ConfigError" and "exactly one of --initial-model FILE" in neither["message"]
    both = cli.json(*base, "--initial-model", str(model), "--initial-model-cid", cid, code=1)
    assert both["error"] == "ConfigError"
    elsewhere = compute_cid(b"a model that was never stored")
    missing = cli.json(*base, "--initial-model-cid", elsewhere, code=1)
    assert missing["error"] == "ObjectNotFoundError"
    assert elsewhere in missing["message"] and "store it first with `pocfl store put" in missing["message"]
    assert "pocfl store put" in cli(*base, "--initial-model-cid", elsewhere, code=1).stderr
    invalid = cli.json(*base, "--initial-model-cid", "bafy-not-a-cid", code=1)
    assert invalid["error"] == "InvalidCidError" and "--initial-model-cid" in invalid["message"]
    no_file = cli.json(*base, "--initial-model", str(files.root / "absent.safetensors"), code=1)
    assert no_file["error"] == "ConfigError" and "is not a file" in no_file["message"]
    assert nonce(anvil_chain, actors.owner) == before
    assert len(cli.json("project", "list")["projects"]) == 1

    # Given by CID, a stored model is accepted in any spelling and written canonically.
    again = cli.json(*base, "--initial-model-cid", "B" + cid[1:].upper())
    assert again["initial_model_cid"] == cid


def test_submit_fetch_and_post_through_the_store(
    cli: Cli, actors: Actors, anvil_chain: Chain, files: Files, store: EmbeddedStore, tmp_path: Path
) -> None:
    t1, t2, t3 = actors.trainers
    cheat = actors.outsider  # a fourth trainer, whose commitment does not match its update
    trainers = [t1, t2, t3, cheat]
    pid = start_round_0(cli, anvil_chain, actors, trainers, files.model(), rounds="2")
    updates = {t.name: files.update(f"{t.name}.safetensors", seed=i) for i, t in enumerate(trainers)}
    agg_key = EncryptionKeyPair.generate()
    key_file = agg_key.save(tmp_path / "aggregator.key")
    submit = ("round", "submit", str(pid))

    # Refusals: nothing is sent.
    before = nonce(anvil_chain, t1)
    absent = compute_cid(b"an update nobody stored")
    refused = cli.json(*submit, "--cid", absent, "--commitment", "0x" + "11" * 32, "--key", t1.env, code=1)
    assert refused["error"] == "ObjectNotFoundError" and "pocfl store put" in refused["message"]
    no_commitment = cli.json(*submit, "--cid", absent, "--key", t1.env, code=1)
    assert no_commitment["error"] == "ConfigError" and "--commitment" in no_commitment["message"]
    both = cli.json(*submit, "--cid", absent, "--update", str(updates["t1"]), "--key", t1.env, code=1)
    assert both["error"] == "ConfigError"
    not_an_update = files.text("notes.txt", "not an update")
    junk = cli.json(*submit, "--update", str(not_an_update), "--key", t1.env, code=1)
    assert junk["error"] == "CorruptUpdateError" and "not a pocfl update file" in junk["message"]
    bad_key = cli.json(*submit, "--update", str(updates["t1"]), "--encrypt-to", "0x1234", "--key", t1.env, code=1)
    assert bad_key["error"] == "ConfigError" and "--encrypt-to" in bad_key["message"]
    assert nonce(anvil_chain, t1) == before
    assert cli.json("project", "status", str(pid))["project"]["submission_count"] == 0

    # Plain, encrypted, plain (to be corrupted), and one with a wrong commitment.
    sent = [
        cli.json(*submit, "--update", str(updates["t1"]), "--key", t1.env),
        cli.json(*submit, "--update", str(updates["t2"]), "--encrypt-to", agg_key.public_key_hex, "--key", t2.env),
        cli.json(*submit, "--update", str(updates["t3"]), "--key", t3.env),
        cli.json(*submit, "--update", str(updates["outsider"]), "--commitment", "0x" + "22" * 32, "--key", cheat.env),
    ]
    assert [s["index"] for s in sent] == [0, 1, 2, 3]
    assert [s["encrypted"] for s in sent] == [False, True, False, False]
    assert [s["commitment_computed"] for s in sent] == [True, True, True, False]
    market_address = load_deployments(default_deployment_file())[ANVIL_CHAIN_ID].address
    for s, t in zip(sent[:3], trainers, strict=False):
        expected = update_commitment(
            updates[t.name].read_bytes(),
            chain_id=ANVIL_CHAIN_ID,
            market=market_address,
            project_id=pid,
            round=0,
            trainer=t.address,
        )
        assert s["commitment"] == "0x" + expected.hex()
        assert store.has(s["cid"])
    assert sent[0]["cid"] == compute_cid(updates["t1"].read_bytes())
    assert sent[1]["cid"] != compute_cid(updates["t2"].read_bytes())  # the envelope's CID
    assert sent[1]["size"] == updates["t2"].stat().st_size + ENVELOPE_OVERHEAD

    # The store's copy of t3's update is corrupted on disk.
    path = store.path_of(sent[2]["cid"])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    out = tmp_path / "round-0"
    fetched = cli.json("round", "fetch", str(pid), "--out", str(out), "--decrypt-key", str(key_file), code=1)
    assert (fetched["ok"], fetched["failed"]) == (2, 2)
    rows = fetched["submissions"]
    assert [r["ok"] for r in rows] == [True, True, False, False]
    assert [r["error"] and r["error"]["error"] for r in rows] == [
        None,
        None,
        "CidMismatchError",
        "CommitmentMismatchError",
    ]
    # a row that failed says nothing about its payload (None); its error says why
    assert [r["encrypted"] for r in rows] == [False, True, None, None]
    assert rows[1]["decrypted"] and rows[0]["commitment_verified"] and rows[1]["commitment_verified"]
    assert Path(rows[0]["file"]).name == f"0-{t1.address}.bin"
    for row, t in zip(rows[:2], trainers, strict=False):
        plaintext = Path(row["file"]).read_bytes()
        assert plaintext == updates[t.name].read_bytes()
        assert decode_update(plaintext, SPEC, kind="delta").vector().shape == (SPEC.size,)
    assert sorted(p.name for p in out.iterdir()) == [f"0-{t1.address}.bin", f"1-{t2.address}.bin"]

    # The bad copy went to quarantine: the store no longer holds a valid copy, and a second fetch keeps the first,
    # true reason (a CID mismatch, not "not found").
    shown = cli.json("round", "show", str(pid))
    assert [s["stored"] for s in shown["submissions"]] == [True, True, False, True]
    human = cli("round", "fetch", str(pid), "--out", str(out), code=1).stdout
    assert "CidMismatchError" in human and "ObjectNotFoundError" not in human
    assert "CommitmentMismatchError" in human and "--decrypt-key" in human
    wrong_key = EncryptionKeyPair.generate().save(tmp_path / "other.key")
    other = cli.json("round", "fetch", str(pid), "--out", str(out), "--decrypt-key", str(wrong_key), code=1)
    assert other["submissions"][1]["error"]["error"] == "WrongRecipientError"
    store.put_bytes(updates["t3"].read_bytes())  # putting the right bytes again repairs the store

    # Post: refused for a model or report the store lacks, then stored from files.
    agg = ("--key", actors.aggregator.env)
    post = ("round", "post", str(pid), "--scores", "3,2,1,0", "--outliers", "0,0,0,1", *agg)
    advance_past(cli, anvil_chain, cli.json("project", "status", str(pid))["project"]["submission_deadline"])
    before = nonce(anvil_chain, actors.aggregator)
    no_model = cli.json(*post, "--model-cid", compute_cid(b"no such model"), code=1)
    assert no_model["error"] == "ObjectNotFoundError" and "--model FILE" in no_model["message"]
    model_1 = files.model("model-1.safetensors", seed=100)
    unknown_report = "0x" + report_hash(compute_cid(b"no such report")).hex()
    no_report = cli.json(*post, "--model", str(model_1), "--report-hash", unknown_report, code=1)
    assert no_report["error"] == "ObjectNotFoundError" and "--report FILE" in no_report["message"]
    assert cli.json(*post, code=1)["error"] == "ConfigError"  # no model at all
    assert nonce(anvil_chain, actors.aggregator) == before
    report = files.text("report-0.json", '{"round": 0, "inputs": 4}')
    posted = cli.json(*post, "--model", str(model_1), "--report", str(report))
    report_cid = compute_cid(report.read_bytes())
    assert posted["model_cid"] == compute_cid(model_1.read_bytes()) and posted["report_cid"] == report_cid
    assert posted["report_hash"] == "0x" + report_hash(report_cid).hex()
    assert store.get_bytes(posted["model_cid"]) == model_1.read_bytes()
    shown = cli.json("round", "show", str(pid), "0")
    assert (shown["model_stored"], shown["report_cid"], shown["report_stored"]) == (True, report_cid, True)
    assert [s["stored"] for s in shown["submissions"]] == [True, True, True, True]

    # Round 1, the advanced path: a stored model by CID and a stored report by hash.
    cli(*submit, "--update", str(updates["t1"]), "--key", t1.env)
    advance_past(cli, anvil_chain, cli.json("project", "status", str(pid))["project"]["submission_deadline"])
    [put] = cli.json("store", "put", str(files.text("report-1.json", '{"round": 1}')), rpc=False)
    report_1 = put["cid"]
    last = cli.json(
        "round", "post", str(pid), "--scores", "1", *agg, "--model-cid", posted["model_cid"],
        "--report-hash", "0x" + report_hash(report_1).hex(),
    )  # fmt: skip
    assert last["finished"] and (last["model_cid"], last["report_cid"]) == (posted["model_cid"], report_1)
    status = cli.json("project", "status", str(pid))
    assert [r["model_stored"] for r in status["rounds"]] == [True, True]


def test_submit_and_fetch_through_a_real_ipfs_node(
    cli: Cli, actors: Actors, anvil_chain: Chain, files: Files, store: EmbeddedStore, tmp_path: Path, ipfs_url: str
) -> None:
    node = ("--ipfs", ipfs_url)
    t1, t2, _ = actors.trainers
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    model = files.model(seed=os.getpid())  # fresh bytes: the node is shared by the session
    pid = create_project(cli, own, actors.aggregator.address, *node, model=model, min_trainers="2", max_trainers="2")
    assert cli.json("project", "status", str(pid), *node)["model_stored"] is True
    assert cli.json("project", "status", str(pid))["model_stored"] is False  # not in the embedded store
    for t in (t1, t2):
        cli("register", str(pid), "--key", t.env)
    advance_past(cli, anvil_chain, cli.json("project", "status", str(pid))["project"]["params"]["start_time"])
    agg_key = EncryptionKeyPair.generate()
    key_file = agg_key.save(tmp_path / "aggregator.key")
    u1, u2 = files.update("u1.safetensors", seed=1), files.update("u2.safetensors", seed=2)
    plain = cli.json("round", "submit", str(pid), "--update", str(u1), "--key", t1.env, *node)
    sealed = cli.json(
        "round", "submit", str(pid), "--update", str(u2), "--encrypt-to", agg_key.public_key_hex, "--key", t2.env,
        *node,
    )  # fmt: skip
    assert plain["store"] == ipfs_url and sealed["encrypted"] is True
    assert not store.has(plain["cid"])  # it went to the node, not to the embedded store
    fetched = cli.json("round", "fetch", str(pid), "--out", str(tmp_path / "in"), "--decrypt-key", str(key_file), *node)
    assert (fetched["ok"], fetched["failed"]) == (2, 0)
    assert [Path(r["file"]).read_bytes() for r in fetched["submissions"]] == [u1.read_bytes(), u2.read_bytes()]
    assert all(r["commitment_verified"] for r in fetched["submissions"])
    # The same round read from a store that lacks the files: every row names the error, none stops the others.
    empty = cli.json("round", "fetch", str(pid), "--out", str(tmp_path / "none"), code=1)
    assert [r["error"]["error"] for r in empty["submissions"]] == ["ObjectNotFoundError", "ObjectNotFoundError"]
