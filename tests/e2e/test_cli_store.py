"""``pocfl store`` and ``pocfl ipfs`` end to end: the embedded store, a real IPFS daemon, a node that is down.

Store commands run in-process (``CliRunner``) with a private ``POCFL_HOME``; one test drives the installed
console script in subprocesses to start, query and stop a detached daemon (``pocfl ipfs up/status/down``).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from pocfl.cli import ipfs_cmd, store_cmd
from pocfl.cli.main import app
from pocfl.cli.state import pid_alive
from pocfl.procs import free_port, stop_pid
from pocfl.store import DEFAULT_MAX_SIZE, EmbeddedStore, compute_cid
from pocfl.store.daemon import api_version

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG = 600_000  # three 256 KiB chunks: a dag-pb root over raw leaves


@pytest.fixture
def home(pocfl_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state folder, and no ``$POCFL_IPFS`` from the shell (the default store is the embedded one)."""
    monkeypatch.delenv("POCFL_IPFS", raising=False)
    return pocfl_home


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A small text file and a random file larger than one chunk."""
    small = tmp_path / "small.txt"
    small.write_bytes(b"pocfl update bytes\n")
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(7).randbytes(BIG))
    return {"small": small, "big": big}


def run(*args: str, code: int = 0) -> Result:
    """Run ``pocfl ARGS`` in-process and check the exit code; never a traceback."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != code:
        raise AssertionError(
            f"pocfl {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n--- exception\n{result.exception!r}"
        )
    assert "Traceback" not in result.output
    return result


def run_json(*args: str, code: int = 0) -> Any:
    """Run with ``--json``; stdout must be exactly one JSON document."""
    return json.loads(run(*args, "--json", code=code).stdout)


def put(files: dict[str, Path], *store: str) -> dict[str, str]:
    """`pocfl store put` both files; returns name -> CID after checking them against compute_cid."""
    rows = run_json("store", "put", str(files["small"]), str(files["big"]), *store)
    assert [row["path"] for row in rows] == [str(files["small"]), str(files["big"])]
    cids = {}
    for name, row in zip(("small", "big"), rows, strict=True):
        data = files[name].read_bytes()
        assert row["cid"] == compute_cid(data) and row["size"] == len(data)
        cids[name] = row["cid"]
    assert cids["big"].startswith("bafybei") and cids["small"].startswith("bafkrei")
    return cids


def round_trip(files: dict[str, Path], tmp_path: Path, *store: str) -> dict[str, str]:
    """put, has, pin, get (file and stdout), verify against one store: the checks shared by both backends."""
    cids = put(files, *store)
    both = [cids["small"], cids["big"]]
    assert run_json("store", "has", *both, *store) == [{"cid": c, "present": True} for c in both]
    assert run_json("store", "pin", *both, *store) == [{"cid": c, "pinned": True} for c in both]
    out = tmp_path / "fetched" / "big.bin"
    got = run_json("store", "get", cids["big"], "-o", str(out), *store)
    assert got == {"cid": cids["big"], "path": str(out), "size": BIG}
    assert out.read_bytes() == files["big"].read_bytes()
    raw = run("store", "get", cids["big"], *store)
    assert raw.stdout_bytes == files["big"].read_bytes()
    verified = run_json("store", "verify", *both, *store)
    assert verified == [
        {"cid": cids["small"], "ok": True, "size": files["small"].stat().st_size},
        {"cid": cids["big"], "ok": True, "size": BIG},
    ]
    return cids


# ---------------------------------------------------------------------------------------------------
# Embedded store (the default)
# ---------------------------------------------------------------------------------------------------


def test_embedded_round_trip(home: Path, files: dict[str, Path], tmp_path: Path) -> None:
    cids = round_trip(files, tmp_path)
    store = EmbeddedStore(home / "store")
    assert store.path_of(cids["big"]).read_bytes() == files["big"].read_bytes()
    # `store cid` computes the same CIDs without storing; CIDv0 on request.
    local = run_json("store", "cid", str(files["small"]), str(files["big"]))
    assert [row["cid"] for row in local] == [cids["small"], cids["big"]]
    v0 = run_json("store", "cid", "--cid-version", "0", str(files["small"]))
    assert v0[0]["cid"] == compute_cid(files["small"].read_bytes(), 0) and v0[0]["cid"].startswith("Qm")
    run("store", "cid", "--cid-version", "2", str(files["small"]), code=2)
    info = run_json("store", "info")
    assert info == {
        "spec": "embedded",
        "location": str((home / "store").resolve()),
        "backend": "embedded",
        "objects": 2,
        "quarantined": 0,
    }
    # Human output names the CIDs too.
    text = run("store", "put", str(files["small"])).stdout
    assert cids["small"] in text and "small.txt" in text
    assert cids["big"] in run("store", "has", cids["big"]).stdout
    assert "ok (600000 bytes)" in run("store", "verify", cids["big"]).stdout
    assert "embedded" in run("store", "info").stdout
    # Another directory is another store.
    other = tmp_path / "other-store"
    run_json("store", "has", cids["small"], "--ipfs", str(other), code=1)
    assert run_json("store", "put", str(files["small"]), "--ipfs", f"embedded:{other}")[0]["cid"] == cids["small"]
    assert run_json("store", "has", cids["small"], "--ipfs", str(other))[0]["present"] is True


def test_corrupted_object_is_never_written_out(home: Path, files: dict[str, Path], tmp_path: Path) -> None:
    cids = put(files)
    store = EmbeddedStore(home / "store")

    def corrupt() -> None:
        path = store.path_of(cids["big"])
        data = bytearray(path.read_bytes())
        data[BIG // 2] ^= 0x01
        path.write_bytes(bytes(data))

    corrupt()
    out = tmp_path / "out.bin"
    failed = run_json("store", "get", cids["big"], "-o", str(out), code=1)
    assert failed["error"] == "CidMismatchError"
    assert f"CID mismatch from {store.location}: asked for {cids['big']}" in failed["message"]
    assert not out.exists() and not list(tmp_path.glob(".out.bin.*"))
    # The bad file went to quarantine; putting the right bytes repairs the store.
    assert run_json("store", "info")["quarantined"] == 1
    put(files)
    corrupt()
    human = run("store", "get", cids["big"], code=1)
    assert human.stdout_bytes == b"" and "CID mismatch" in human.stderr
    put(files)
    corrupt()
    # verify reports every CID, the good one included, and exits 1.
    rows = run_json("store", "verify", cids["big"], cids["small"], code=1)
    assert rows[0]["cid"] == cids["big"] and rows[0]["ok"] is False and rows[0]["error"] == "CidMismatchError"
    assert "CID mismatch" in rows[0]["message"]
    assert rows[1] == {"cid": cids["small"], "ok": True, "size": files["small"].stat().st_size}
    put(files)
    corrupt()
    text = run("store", "verify", cids["big"], cids["small"], code=1).stdout
    assert "CidMismatchError" in text and "ok (" in text


def test_missing_invalid_and_oversized(home: Path, files: dict[str, Path], tmp_path: Path) -> None:
    cids = put(files)
    missing = compute_cid(b"never stored")
    out = tmp_path / "missing.bin"
    failed = run_json("store", "get", missing, "-o", str(out), code=1)
    assert failed["error"] == "ObjectNotFoundError" and f"{missing} is not in" in failed["message"]
    assert not out.exists()
    assert "is not in" in run("store", "get", missing, code=1).stderr
    assert run_json("store", "has", cids["small"], missing, code=1) == [
        {"cid": cids["small"], "present": True},
        {"cid": missing, "present": False},
    ]
    assert run_json("store", "pin", missing, code=1)["error"] == "ObjectNotFoundError"
    rows = run_json("store", "verify", missing, "not-a-cid", code=1)
    assert [row["error"] for row in rows] == ["ObjectNotFoundError", "InvalidCidError"]
    for command in (["get", "not-a-cid", "-o", str(out)], ["has", "not-a-cid"], ["pin", "Qm-not-a-cid"]):
        assert run_json("store", *command, code=1)["error"] == "InvalidCidError"
    assert "not a CID" in run("store", "get", "not-a-cid", code=1).stderr
    too_big = run_json("store", "get", cids["big"], "-o", str(out), "--max-size", "1000", code=1)
    assert too_big["error"] == "ObjectTooLargeError" and not out.exists()
    # --json describes a written file, so it needs -o.
    assert "give -o FILE" in run_json("store", "get", cids["small"], code=1)["message"]
    assert store_cmd.DEFAULT_MAX_SIZE == DEFAULT_MAX_SIZE


# ---------------------------------------------------------------------------------------------------
# A real IPFS daemon, and one that is down
# ---------------------------------------------------------------------------------------------------


def test_ipfs_node_round_trip(
    home: Path, files: dict[str, Path], tmp_path: Path, ipfs_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ("--ipfs", ipfs_url)
    round_trip(files, tmp_path, *store)
    info = run_json("store", "info", *store)
    assert info["backend"] == "ipfs" and info["answering"] is True and info["location"] == ipfs_url.rstrip("/")
    assert info["version"] == api_version(ipfs_url) == ipfs_cmd.api_version(ipfs_url)
    assert ipfs_cmd.api_version(f"http://127.0.0.1:{free_port()}") is None
    # The same option through the environment variable.
    monkeypatch.setenv("POCFL_IPFS", ipfs_url)
    assert run_json("store", "info")["backend"] == "ipfs"
    assert not (home / "store" / "objects").exists() or not any((home / "store" / "objects").iterdir())


def test_node_down_fails_fast_with_unavailable(home: Path, files: dict[str, Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    failed = run_json("store", "put", str(files["small"]), "--ipfs", url, code=1)
    assert time.monotonic() - started < 5
    assert failed["error"] == "StoreUnavailableError"
    assert f"the IPFS node at {url} did not answer" in failed["message"] and "pocfl ipfs up" in failed["message"]
    assert "did not answer" in run("store", "verify", compute_cid(b"x"), "--ipfs", url, code=1).stderr
    info = run_json("store", "info", "--ipfs", url, code=1)
    assert info["answering"] is False and "did not answer" in info["error"]


# ---------------------------------------------------------------------------------------------------
# pocfl ipfs: records and refusals (no daemon started)
# ---------------------------------------------------------------------------------------------------


def _record(pid: int, url: str, repo: Path) -> ipfs_cmd.IpfsRecord:
    return ipfs_cmd.IpfsRecord(
        pid=pid,
        url=url,
        port=int(url.rsplit(":", 1)[1]),
        implementation="js-ipfs",
        repo=str(repo),
        log_file=str(repo.parent / "daemon.log"),
        started_at="2025-01-01T00:00:00Z",
    )


def test_ipfs_records_never_stop_a_stranger(home: Path, tmp_path: Path) -> None:
    assert run_json("ipfs", "status", code=1) == {"running": False, "record": str(home / "ipfs.json")}
    assert run_json("ipfs", "down")["stopped"] is False
    url = f"http://127.0.0.1:{free_port()}"
    # A recorded PID that is alive but is not a daemon answering on the URL: this test's own process.
    ipfs_cmd.write_record(_record(os.getpid(), url, tmp_path / "repo"))
    assert run_json("ipfs", "status", code=1)["running"] is False
    down = run_json("ipfs", "down")
    assert down["stopped"] is False and "left it alone" in down["reason"]
    assert ipfs_cmd.read_record() is None and pid_alive(os.getpid())
    # A recorded PID that has exited: the record (and a stale repo lock) is cleaned up.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "repo.lock").write_text("")
    ipfs_cmd.write_record(_record(gone.pid, url, repo))
    assert "not running" in run("ipfs", "status", code=1).stdout
    # The recorded daemon is the default store: while it is gone, commands say so instead of using another store.
    failed = run_json("store", "info", code=1)
    assert failed["error"] == "ConfigError" and f"pid {gone.pid}) is not running" in failed["message"]
    assert "pocfl ipfs down" in failed["message"]
    assert run_json("store", "info", "--ipfs", "embedded")["backend"] == "embedded"
    down = run_json("ipfs", "down")
    assert down["stopped"] is False and down["reason"] == "the process had already exited"
    assert not (repo / "repo.lock").exists() and ipfs_cmd.read_record() is None
    # A corrupt record is named, not a traceback.
    (home / "ipfs.json").write_text("{")
    assert "not an IPFS daemon record" in run_json("ipfs", "status", code=1)["message"]
    (home / "ipfs.json").unlink()
    # A busy port is refused before anything starts.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        failed = run_json("ipfs", "up", "--port", str(port), code=1)
    assert failed["error"] == "ConfigError" and "--port" in failed["message"]
    assert ipfs_cmd.read_record() is None


# ---------------------------------------------------------------------------------------------------
# The real console script: a detached daemon shared by separate processes
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
        timeout=180,
        check=False,
    )
    assert proc.returncode == code, f"pocfl {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_console_script_ipfs_up_status_down(tmp_path: Path, files: dict[str, Path]) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCFL_")}
    env["POCFL_HOME"] = str(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pid: int | None = None
    try:
        up = _pocfl("ipfs", "up", "--port", str(port), env=env)
        pid = int(up["pid"])
        assert up["started"] is True and up["running"] is True and up["url"] == url
        assert up["export"] == f"POCFL_IPFS={url}" and up["version"]
        assert Path(up["repo"]) == (home / "ipfs" / "repo").resolve() and Path(up["log_file"]).is_file()
        assert json.loads((home / "ipfs.json").read_text())["pid"] == pid
        again = _pocfl("ipfs", "up", "--port", str(free_port()), env=env)
        assert again["started"] is False and again["pid"] == pid
        status = _pocfl("ipfs", "status", env=env)
        assert status["running"] is True and status["pid"] == pid and status["version"] == up["version"]
        # Issue 14: the recorded daemon is the default store of later commands (as `chain up` is the default
        # chain); --ipfs or $POCFL_IPFS still choose another.
        stored = _pocfl("store", "put", str(files["small"]), env=env)
        assert stored[0]["cid"] == compute_cid(files["small"].read_bytes())
        info = _pocfl("store", "info", env=env)
        assert info["backend"] == "ipfs" and info["location"] == url
        assert _pocfl("store", "has", stored[0]["cid"], env=env)[0]["present"] is True
        assert _pocfl("store", "info", env={**env, "POCFL_IPFS": "embedded"})["backend"] == "embedded"
        down = _pocfl("ipfs", "down", env=env)
        assert down["stopped"] is True and down["pid"] == pid
        assert not pid_alive(pid)
        pid = None
        assert api_version(url) is None
        assert _pocfl("ipfs", "status", env=env, code=1)["running"] is False
        assert _pocfl("ipfs", "down", env=env)["stopped"] is False
        assert _pocfl("store", "info", env=env)["backend"] == "embedded"  # forgotten: back to the embedded store
    finally:
        if pid is not None and pid_alive(pid):  # only the daemon this test started
            stop_pid(pid)


def test_encryption_key_command_writes_a_private_loadable_key(home: Path, tmp_path: Path) -> None:
    from pocfl.updates import EncryptionKeyPair, decrypt_update, encrypt_update

    key_file = tmp_path / "aggregator.key"
    made = run_json("account", "encryption-key", str(key_file))
    assert key_file.stat().st_mode & 0o777 == 0o600
    pair = EncryptionKeyPair.load(key_file)
    assert made["public_key"] == pair.public_key_hex
    assert decrypt_update(encrypt_update(b"update", made["public_key"]), pair) == b"update"
    refused = run_json("account", "encryption-key", str(key_file), code=1)
    assert refused["error"] == "ConfigError" and EncryptionKeyPair.load(key_file).public_key_hex == pair.public_key_hex


def test_encryption_key_goes_to_the_state_folder_by_default(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the README wrote the aggregator's secret into the current folder; now the state folder."""
    from pocfl.updates import EncryptionKeyPair

    monkeypatch.chdir(tmp_path)
    made = run_json("account", "encryption-key")
    key_file = home / "keys" / "aggregator.key"
    assert Path(made["key_file"]) == key_file and list(tmp_path.glob("*.key")) == []
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
    assert EncryptionKeyPair.load(key_file).public_key_hex == made["public_key"]
    refused = run_json("account", "encryption-key", code=1)
    assert refused["error"] == "ConfigError" and "refusing to overwrite" in refused["message"]
    assert EncryptionKeyPair.load(key_file).public_key_hex == made["public_key"]
