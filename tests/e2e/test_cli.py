"""The ``pocfl`` command line end to end against a real anvil node.

Flows go through the Typer app in-process (``CliRunner``) with ``--rpc URL``, the way scripts drive it;
one test runs the installed console script in subprocesses (``pocfl chain up/status/down``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pocfl.chain import accounts
from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain
from pocfl.cli import session
from pocfl.cli.output import eth
from pocfl.cli.parse import parse_eth, parse_flags, parse_scores
from pocfl.cli.session import chain_now
from pocfl.cli.state import pid_alive
from pocfl.deployment import Deployment, load_deployments, record_deployment
from pocfl.errors import ConfigError
from pocfl.market import report_hash
from pocfl.payouts import allocate, round_budget
from pocfl.procs import free_port, stop_pid
from pocfl.store import compute_cid
from pocfl.updates import EncryptionKeyPair, update_commitment
from tests.e2e.conftest import Actors, Cli, Files

pytestmark = pytest.mark.e2e

ETH = 10**18
ANVIL_CHAIN_ID = 31337
REPO_ROOT = Path(__file__).resolve().parents[2]


def advance_past(cli: Cli, chain: Chain, timestamp: int) -> None:
    """Move anvil's clock just past ``timestamp`` through `pocfl chain advance`."""
    delta = timestamp - chain_now(chain) + 2
    if delta > 0:
        cli("chain", "advance", str(delta))


def create_project(
    cli: Cli, owner: tuple[str, ...], aggregator: str, *extra: str, model: Path | None = None, **options: Any
) -> int:
    """`pocfl project create` with test defaults; ``options`` override them (underscores become dashes).

    The initial model is ``model`` (stored by the command) unless ``initial_model_cid`` is among the options.
    """
    if "initial_model_cid" not in options:
        assert model is not None, "give the initial model file or its CID"
        extra = (*extra, "--initial-model", str(model))
    values = {
        "budget": "2.5",
        "rounds": "2",
        "submission_window": "600",
        "aggregation_window": "600",
        "start_in": "300",
        "min_trainers": "3",
        "max_trainers": "3",
        "stake": "0.1",
        **{k: str(v) for k, v in options.items()},
    }
    if "budget_wei" in options:
        del values["budget"]
    argv = ["project", "create", *owner, "--aggregator", aggregator, *extra]
    for name, value in values.items():
        argv += [f"--{name.replace('_', '-')}", value]
    return int(cli.json(*argv)["project_id"])


def balance(chain: Chain, address: str) -> int:
    return int(chain.w3.eth.get_balance(address))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# The whole life of a project through the CLI
# ---------------------------------------------------------------------------------------------------


def test_full_project_flow(
    cli: Cli,
    actors: Actors,
    anvil_chain: Chain,
    pocfl_home: Path,
    tmp_path: Path,
    files: Files,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The owner signs with an encrypted keystore whose password comes from the environment.
    monkeypatch.setenv("POCFL_KEYSTORE_PASSWORD", secrets.token_hex(12))
    keystore = tmp_path / "owner-keystore.json"
    owner = cli.json("account", "new", "--keystore", str(keystore), rpc=False)["address"]
    assert keystore.stat().st_mode & 0o777 == 0o600
    cli("chain", "fund", owner, "--eth", "50")
    own = ("--keystore", str(keystore))
    shown = cli.json("account", "show", *own)
    assert shown["address"] == owner
    assert shown["balance_wei"] == 50 * ETH
    assert shown["credits_wei"] is None and "pocfl deploy" in shown["note"]

    # deploy writes the deployment file; every later command finds the contract there (no --market).
    deployed = cli.json("deploy", *own)
    recorded = load_deployments(pocfl_home / "deployments.json")[ANVIL_CHAIN_ID]
    assert recorded.address == deployed["address"]
    assert recorded.deployer == owner
    assert recorded.rpc == cli.url
    assert cli.json("account", "show", *own)["credits_wei"] == 0
    market = recorded.address

    # An allowlist project: two trainers at creation, the third added with `project allow`.
    t1, t2, t3 = actors.trainers
    validation = tmp_path / "validation.bin"
    validation.write_bytes(os.urandom(256))
    initial = files.model()
    pid = create_project(
        cli,
        own,
        actors.aggregator.address,
        "--allowlist",
        f"{t1.address},{t2.address}",
        "--validation-file",
        str(validation),
        model=initial,
    )
    cli("project", "allow", str(pid), t3.address, *own)
    budget = parse_eth("2.5")
    stake = parse_eth("0.1")
    status = cli.json("project", "status", str(pid))
    project = status["project"]
    assert status["phase"] == "registration"
    assert project["owner"] == owner
    assert project["budget"] == budget
    assert project["escrow"] == budget
    assert project["round_budget"] == round_budget(budget, 2)
    assert project["params"]["registration_mode"] == "allowlist"
    assert project["params"]["validation_set_commitment"] == "0x" + hashlib.sha256(validation.read_bytes()).hexdigest()
    assert status["times"]["start_time"]["relative"].startswith("in ")
    assert project["model_cid"] == compute_cid(initial.read_bytes()) and status["model_stored"] is True

    # Registration: the outsider is refused with the contract's named error in the JSON.
    refused = cli.json("register", str(pid), "--key", actors.outsider.env, code=1)
    assert refused["error"] == "NotAllowlisted"
    assert refused["args"] == {"projectId": pid, "trainer": actors.outsider.address}
    assert "pocfl project allow" in refused["message"]
    for t in actors.trainers:
        assert cli.json("register", str(pid), "--key", t.env)["stake_wei"] == stake
    assert [t["address"] for t in cli.json("project", "status", str(pid))["trainers"]] == [
        t.address for t in actors.trainers
    ]

    # Round 0: t1 submits its update file, t2 encrypts its update to the aggregator, t3 submits by CID a file
    # it stored itself (`pocfl store put`) with the commitment it computed.
    updates = {t.name: files.update(f"{t.name}.safetensors", seed=i + 1) for i, t in enumerate(actors.trainers)}
    early = cli.json("round", "submit", str(pid), "--update", str(updates["t1"]), "--key", t1.env, code=1)
    assert early["error"] == "RoundNotOpen"
    advance_past(cli, anvil_chain, project["params"]["start_time"])
    agg_key = EncryptionKeyPair.generate()
    key_file = agg_key.save(tmp_path / "aggregator.key")
    sent1 = cli.json("round", "submit", str(pid), "--update", str(updates["t1"]), "--key", t1.env)
    sent2 = cli.json(
        "round", "submit", str(pid), "--update", str(updates["t2"]), "--encrypt-to", agg_key.public_key_hex,
        "--key", t2.env,
    )  # fmt: skip
    t3_plain = updates["t3"].read_bytes()
    [put] = cli.json("store", "put", str(updates["t3"]), rpc=False)
    t3_cid = put["cid"]
    t3_commitment = update_commitment(
        t3_plain, chain_id=ANVIL_CHAIN_ID, market=market, project_id=pid, round=0, trainer=t3.address
    )
    sent3 = cli.json(
        "round", "submit", str(pid), "--cid", t3_cid, "--commitment", "0x" + t3_commitment.hex(), "--key", t3.env
    )
    assert [x["round"] for x in (sent1, sent2, sent3)] == [0, 0, 0]
    assert (sent1["encrypted"], sent2["encrypted"], sent3["encrypted"]) == (False, True, False)
    assert sent1["cid"] == compute_cid(updates["t1"].read_bytes()) and sent3["cid"] == t3_cid
    assert sent1["commitment_computed"] and not sent3["commitment_computed"]
    cids = [sent1["cid"], sent2["cid"], t3_cid]
    shown_round = cli.json("round", "show", str(pid))
    assert shown_round["state"] == "open"
    assert [s["cid"] for s in shown_round["submissions"]] == cids
    assert [s["stored"] for s in shown_round["submissions"]] == [True, True, True]
    fetched = cli.json("round", "fetch", str(pid), "--out", str(tmp_path / "in"), "--decrypt-key", str(key_file))
    assert (fetched["ok"], fetched["failed"]) == (3, 0)
    assert [Path(s["file"]).read_bytes() for s in fetched["submissions"]] == [
        updates[t.name].read_bytes() for t in actors.trainers
    ]
    model_1 = files.model("model-1.safetensors", seed=10)
    report_0 = files.text("report-0.json", '{"round": 0}')
    post = ("round", "post", str(pid), "--model", str(model_1), "--key", actors.aggregator.env)
    too_early = cli.json(*post, "--scores", "5,3,-1", code=1)
    assert too_early["error"] == "SubmissionWindowOpen"
    deadlines = cli.json("project", "status", str(pid))["project"]
    advance_past(cli, anvil_chain, deadlines["submission_deadline"])
    wrong = cli.json(*post, "--scores", "5,3", code=1)
    assert wrong["error"] == "ConfigError"
    assert "3 submissions" in wrong["message"] and "pocfl round show" in wrong["message"]
    not_aggregator = cli.json(
        "round", "post", str(pid), "--model", str(model_1), "--scores", "1,1,1", "--key", t1.env, code=1
    )
    assert not_aggregator["error"] == "NotAggregator"
    scores, outliers = (5, 3, -1), (False, False, False)
    posted = cli.json(*post, "--scores", "5,3,-1", "--outliers", "0,0,0", "--report", str(report_0))
    report_cid = compute_cid(report_0.read_bytes())
    assert posted["model_cid"] == compute_cid(model_1.read_bytes())
    assert (posted["report_cid"], posted["report_hash"]) == (report_cid, "0x" + report_hash(report_cid).hex())
    expected = allocate(round_budget(budget, 2), scores, outliers)
    assert [c["amount_wei"] for c in posted["credits"]] == list(expected.shares)
    assert posted["credited_wei"] == expected.credited
    assert posted["unallocated_wei"] == expected.unallocated
    shown_round = cli.json("round", "show", str(pid), "--round", "0")
    assert shown_round["state"] == "posted"
    assert [s["score"] for s in shown_round["submissions"]] == list(scores)
    assert [s["credited_wei"] for s in shown_round["submissions"]] == list(expected.shares)
    assert shown_round["report_hash"] == "0x" + report_hash(report_cid).hex()
    assert shown_round["report_cid"] == report_cid and shown_round["model_stored"] is True
    human = cli("round", "show", str(pid), "0").stdout
    assert "posted" in human and sent2["cid"] in human

    # Claims pay exactly the allocation, to the trainer or to --to.
    assert cli.json("claim", "--key", t1.env)["amount_wei"] == expected.shares[0]
    before = balance(anvil_chain, actors.outsider.address)
    claimed = cli.json("claim", "--key", t2.env, "--to", actors.outsider.address)
    assert claimed["amount_wei"] == expected.shares[1]
    assert balance(anvil_chain, actors.outsider.address) - before == expected.shares[1]
    # Nothing owed: said, exit 0, and no transaction (no gas) sent.
    nonce = anvil_chain.w3.eth.get_transaction_count(t3.account.address)
    nothing = cli.json("claim", "--key", t3.env)
    assert nothing["amount_wei"] == 0 and nothing["tx"] is None and nothing["account"] == t3.address
    human_claim = cli("claim", "--key", t3.env)
    assert f"nothing to withdraw for {t3.address}: 0 ETH credited" in human_claim.stdout
    assert anvil_chain.w3.eth.get_transaction_count(t3.account.address) == nonce

    # Round 1: the aggregator stays silent. finalize does nothing until the deadline, then fails the round.
    idle = cli.json("project", "finalize", str(pid), "--key", actors.outsider.env)
    assert idle["actions"] == [] and idle["status"] == "active"
    round1 = cli.json("project", "status", str(pid))["project"]
    assert round1["current_round"] == 1
    advance_past(cli, anvil_chain, round1["aggregation_deadline"])
    assert "overdue" in cli.json("project", "status", str(pid))["phase"]
    settled = cli.json("project", "finalize", str(pid), "--key", actors.outsider.env)
    assert [(a["action"], a["round"]) for a in settled["actions"]] == [("fail_round", 1)]
    assert settled["status"] == "finished"
    assert settled["owner_withdrawable_wei"] == budget - expected.credited
    again = cli.json("project", "finalize", str(pid))  # idempotent, and needs no key when nothing is due
    assert again["actions"] == [] and again["status"] == "finished"

    # The owner gets back everything nobody earned; trainers their stakes.
    withdrawn = cli.json("project", "withdraw", str(pid), *own)
    assert withdrawn["amount_wei"] == budget - expected.credited
    assert cli.json("project", "withdraw", str(pid), *own, code=1)["error"] == "NothingToWithdraw"
    for t in actors.trainers:
        assert cli.json("release-stake", str(pid), "--key", t.env)["amount_wei"] == stake
        assert cli.json("claim", "--key", t.env)["amount_wei"] == stake
    final = cli.json("project", "status", str(pid))
    assert final["project"]["status"] == "finished"
    assert final["project"]["model_cid"] == posted["model_cid"] and final["model_stored"] is True
    assert [r.get("model_stored") for r in final["rounds"]] == [True, None]
    assert final["project"]["escrow"] == 0 and final["project"]["stakes_held"] == 0
    assert [t["credited_wei"] for t in final["trainers"]] == list(expected.shares)
    assert [(r["round"], r["outcome"]) for r in final["rounds"]] == [(0, "posted"), (1, "failed")]
    assert balance(anvil_chain, market) == 0
    listed = cli.json("project", "list")["projects"]
    assert [(p["project_id"], p["status"]) for p in listed] == [(pid, "finished")]
    human_status = cli("project", "status", str(pid)).stdout
    assert f"Project {pid}" in human_status and "finished" in human_status
    assert "closed (allowlist until the start)" in human_status  # issue 14: never "open" once started


def test_cancel_withdraw_and_undersubscribed_finalize(
    cli: Cli, actors: Actors, anvil_chain: Chain, files: Files
) -> None:
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    t1, t2, _ = actors.trainers
    model = files.model()
    pid = create_project(
        cli, own, actors.aggregator.address, model=model, min_trainers=2, stake="0.2", budget_wei="1000000007"
    )
    assert cli.json("register", str(pid), "--key", t1.env)["stake_wei"] == parse_eth("0.2")
    assert cli.json("leave", str(pid), "--key", t1.env)["stake_credited_wei"] == parse_eth("0.2")
    cli("register", str(pid), "--key", t1.env)
    not_owner = cli.json("project", "cancel", str(pid), "--key", t1.env, code=1)
    assert not_owner["error"] == "CannotCancel"
    cancelled = cli.json("project", "cancel", str(pid), *own)
    assert cancelled["reason"] == "owner" and cancelled["escrow_wei"] == 1_000_000_007
    inactive = cli.json("register", str(pid), "--key", t2.env, code=1)
    assert inactive["error"] == "ProjectNotActive"
    assert cli.json("project", "withdraw", str(pid), *own)["amount_wei"] == 1_000_000_007
    assert cli.json("release-stake", str(pid), "--key", t1.env)["amount_wei"] == parse_eth("0.2")
    before = balance(anvil_chain, actors.outsider.address)
    # Stake from leaving, then from the cancelled project: one claim pays both.
    assert cli.json("claim", "--key", t1.env, "--to", actors.outsider.address)["amount_wei"] == parse_eth("0.4")
    assert balance(anvil_chain, actors.outsider.address) - before == parse_eth("0.4")

    # A project that starts with too few trainers: anyone's finalize cancels it.
    model_cid = compute_cid(model.read_bytes())  # stored by the first create: given by CID this time
    pid2 = create_project(cli, own, actors.aggregator.address, initial_model_cid=model_cid, min_trainers=2, start_in=60)
    assert cli.json("project", "status", str(pid2))["model_stored"] is True
    cli("register", str(pid2), "--key", t1.env)
    advance_past(cli, anvil_chain, cli.json("project", "status", str(pid2))["project"]["params"]["start_time"])
    assert cli.json("project", "status", str(pid2))["phase"] == "undersubscribed"
    settled = cli.json("project", "finalize", str(pid2), "--key", actors.outsider.env)
    assert [a["action"] for a in settled["actions"]] == ["cancel"]
    assert settled["status"] == "cancelled"
    assert settled["owner_withdrawable_wei"] == parse_eth("2.5")
    human = cli("project", "finalize", str(pid2)).stdout
    assert "Nothing is overdue" in human and "pocfl project withdraw" in human


# ---------------------------------------------------------------------------------------------------
# Errors: one clear line (or one JSON document) with the fix, exit code 1, never a traceback
# ---------------------------------------------------------------------------------------------------


def test_missing_key_variable_suggests_the_fix(cli: Cli) -> None:
    result = cli("deploy", code=1)
    assert "POCFL_PRIVATE_KEY is not set" in result.stderr and "--keystore" in result.stderr
    assert result.stdout == ""
    doc = cli.json("deploy", "--key", "E2E_NOT_SET_KEY", code=1)
    assert doc["error"] == "ConfigError" and "E2E_NOT_SET_KEY is not set" in doc["message"]


def test_key_option_takes_a_variable_name_not_a_key(cli: Cli, actors: Actors) -> None:
    result = cli("deploy", "--key", actors.owner.account.key.hex(), code=1)
    assert "NAME of an environment variable" in result.stderr


def test_keystore_password_must_come_from_env_without_a_terminal(cli: Cli, tmp_path: Path) -> None:
    result = cli("account", "new", "--keystore", str(tmp_path / "k.json"), rpc=False, code=1)
    assert "POCFL_KEYSTORE_PASSWORD" in result.stderr
    assert not (tmp_path / "k.json").exists()


def test_unfunded_account_gets_a_fix_not_a_traceback(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_EMPTY_KEY", new_account().key.hex())
    doc = cli.json("deploy", "--key", "E2E_EMPTY_KEY", code=1)
    assert doc["error"] == "ChainError" and "pocfl chain fund" in doc["message"]


def test_no_deployment_suggests_deploy(cli: Cli, actors: Actors, pocfl_home: Path) -> None:
    doc = cli.json("project", "list", code=1)
    assert doc["error"] == "ConfigError"
    assert f"no pocfl deployment for chain {ANVIL_CHAIN_ID}" in doc["message"]
    assert "pocfl deploy" in doc["message"]
    assert "pocfl deploy" in cli("register", "1", "--key", actors.t1.env, code=1).stderr


def test_no_chain_suggests_chain_up(cli: Cli) -> None:
    result = cli("project", "list", rpc=False, code=1)
    assert "pocfl chain up" in result.stderr and "--rpc" in result.stderr


def test_stale_deployment_and_wrong_market_are_detected(cli: Cli, actors: Actors, pocfl_home: Path) -> None:
    empty = "0x" + secrets.token_hex(20)
    doc = cli.json("project", "list", "--market", empty, code=1)
    assert "no contract code" in doc["message"]
    fake = Deployment.new(
        chain_id=ANVIL_CHAIN_ID,
        address=empty,
        rpc=cli.url,
        block_number=0,
        tx_hash="0x" + "00" * 32,
        deployer=actors.owner.address,
    )
    record_deployment(pocfl_home / "deployments.json", fake)
    stale = cli("project", "list", code=1)
    assert "restarted without its state" in stale.stderr and "pocfl deploy" in stale.stderr
    # --reuse redeploys when the recorded contract is gone, and keeps a live one.
    first = cli.json("deploy", "--reuse", "--key", actors.owner.env)
    assert first["reused"] is False and first["address"] != fake.address
    second = cli.json("deploy", "--reuse", "--key", actors.owner.env)
    assert second["reused"] is True and second["address"] == first["address"]
    assert cli.json("project", "list")["projects"] == []


def test_bad_values_are_refused_before_any_transaction(cli: Cli, actors: Actors, files: Files) -> None:
    own = ("--key", actors.owner.env)
    cli("deploy", *own)
    base = ["project", "create", *own, "--aggregator", actors.aggregator.address, "--rounds", "1"]
    base += ["--submission-window", "60", "--aggregation-window", "60", "--min-trainers", "1", "--max-trainers", "2"]
    base += ["--initial-model", str(files.model())]
    too_precise = cli.json(*base, "--budget", "1.0000000000000000001", "--start-in", "60", code=1)
    assert "more than 18 decimals" in too_precise["message"]
    both = cli.json(*base, "--budget", "1", "--budget-wei", "5", "--start-in", "60", code=1)
    assert "exactly one of --budget" in both["message"]
    no_start = cli.json(*base, "--budget", "1", code=1)
    assert "--start-in" in no_start["message"]
    bad_address = cli.json(*base, "--budget", "1", "--start-in", "60", "--aggregator", "0x1234", code=1)
    assert bad_address["error"] == "ConfigError"
    past = cli.json(*base, "--budget", "1", "--start-time", "1000", code=1)
    assert past["error"] == "StartTimeInPast"
    assert cli.json("project", "list")["projects"] == []


def test_value_parsers() -> None:
    assert parse_eth("1.5") == 1_500_000_000_000_000_000
    assert parse_eth("0.000000000000000001") == 1
    assert parse_eth("3 ETH") == 3 * ETH
    assert parse_eth("1e-18") == 1
    for bad in ("-1", "abc", "nan", "inf", "0.0000000000000000001"):
        with pytest.raises(ConfigError):
            parse_eth(bad)
    for wei in (0, 1, 10**17, 15 * 10**17, 123456789012345678901):
        assert parse_eth(eth(wei)) == wei
    assert eth(-15 * 10**17) == "-1.5" and eth(1) == "0.000000000000000001"
    assert parse_scores("5, 3,-1") == (5, 3, -1)
    assert parse_scores("") == ()
    assert parse_flags("0,1,true,no") == (False, True, True, False)
    with pytest.raises(ConfigError):
        parse_scores("1.5")
    with pytest.raises(ConfigError):
        parse_scores(str(2**127))
    with pytest.raises(ConfigError):
        parse_flags("maybe")


# ---------------------------------------------------------------------------------------------------
# The real console script: a detached node shared by separate processes
# ---------------------------------------------------------------------------------------------------


def _pocfl(*args: str, env: dict[str, str], code: int = 0) -> Any:
    exe = Path(sys.executable).with_name("pocfl")
    proc = subprocess.run(
        [str(exe), *args, "--json"],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == code, f"pocfl {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_console_script_chain_up_status_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCFL_")}
    env["POCFL_HOME"] = str(home)
    port = free_port()
    pid: int | None = None
    try:
        up = _pocfl("chain", "up", "--port", str(port), env=env)
        pid = int(up["pid"])
        assert up["started"] and up["running"] and up["url"] == f"http://127.0.0.1:{port}"
        assert up["chain_id"] == ANVIL_CHAIN_ID
        assert pid_alive(pid)
        again = _pocfl("chain", "up", "--port", str(port), env=env)
        assert again["started"] is False and again["pid"] == pid
        status = _pocfl("chain", "status", env=env)
        assert status["running"] and status["pid"] == pid and status["block_number"] >= 0
        # Another process finds the node without --rpc.
        moved = _pocfl("chain", "advance", "100", env=env)
        assert moved["advanced"] >= 100
        down = _pocfl("chain", "down", env=env)
        assert down["stopped"] is True and down["pid"] == pid
        assert not pid_alive(pid)
        pid = None
        assert Path(down["state_file"]).is_file()  # anvil saved its chain on the way out
        stopped = _pocfl("chain", "status", env=env, code=1)
        assert stopped["running"] is False
        assert _pocfl("chain", "down", env=env)["stopped"] is False
        no_node = _pocfl("project", "list", env=env, code=1)
        assert "pocfl chain up" in no_node["message"]
    finally:
        if pid is not None:  # only the node this test started
            stop_pid(pid)


def test_cli_starts_without_importing_web3() -> None:
    # `pocfl --help` and `pocfl chain up|down|status` stay fast: web3/eth-account load only when needed.
    code = "import sys, pocfl.cli.main; print([m for m in ('web3', 'eth_account', 'eth_tester') if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert proc.stdout.strip() == "[]"
    assert session.DEFAULT_KEY_ENV == accounts.DEFAULT_KEY_ENV
    assert session.PASSWORD_ENV == accounts.PASSWORD_ENV
