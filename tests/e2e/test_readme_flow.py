"""The README's "Using it on a real chain" block, run as written: the acceptance test of the real-time flow.

The block is read from README.md and run by bash, so every command in it is a separate ``pocfl`` process: anvil
from ``pocfl chain up`` (mining a block every second: real time, no ``chain advance``), an IPFS node from
``pocfl ipfs up``, five encrypted keystores, a 3-round project, ``pocfl aggregate --follow`` and three
``pocfl train`` in the background, then ``pocfl audit`` and the claims (a trainer whose updates never helped
earns nothing and has nothing to claim). While round 1 is open the test stops the
IPFS node (``pocfl ipfs down``) and starts it again a few seconds later: every round must still be posted with all
three submissions, the audit must pass (the block runs under ``set -e``) and the claims must reconcile.

The only edits to the block, each checked to apply exactly once: free ports instead of 8545 and 5001 (tests run
side by side), 2 rounds of 30 + 20 s windows instead of 3 of a minute (CI time), and a ``wait`` that fails when a
background process failed (bash's bare ``wait`` always returns 0).

Cost on 2 busy cores: about 3 minutes (setup, a 30 s registration, 2 rounds of 30 + a few s, audit, claims).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pocfl.chain.backends import rpc_chain
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ProjectStatus
from pocfl.deployment import load_deployments
from pocfl.procs import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BUDGET = 3 * 10**18
ROUNDS = 2
OUTAGE_S = 12.0  # over two of the trainers' 5 s polls: some party needs the store while it is down
TIMEOUT_S = 480.0


def readme_block() -> str:
    """The bash block of the README's "Using it on a real chain" section."""
    text = README.read_text()
    section = text[text.index("## Using it on a real chain") :]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("```\n", start)]


def adapt(block: str, chain_port: int, ipfs_port: int) -> str:
    """The block with free ports, short windows and a strict ``wait`` (see the module docstring)."""
    edits = [
        (".venv/bin/pocfl chain up ", f".venv/bin/pocfl chain up --port {chain_port} "),
        (".venv/bin/pocfl ipfs up ", f".venv/bin/pocfl ipfs up --port {ipfs_port} "),
        ("=http://127.0.0.1:5001 ", f"=http://127.0.0.1:{ipfs_port} "),
        ("--rounds 3 --submission-window 60 --aggregation-window 60 --start-in 60", _SHORTER),
        ("\nwait ", "\nfor job in $(jobs -p); do wait $job; done "),
    ]
    for old, new in edits:
        assert block.count(old) == 1, f"the README block no longer has exactly one {old!r}"
        block = block.replace(old, new)
    return "set -euo pipefail\n" + block


_SHORTER = f"--rounds {ROUNDS} --submission-window 30 --aggregation-window 20 --start-in 30"


def test_readme_block_is_complete() -> None:
    """The block stands alone: an IPFS node and POCFL_IPFS, funded actors, every file it uses created first."""
    block = readme_block()
    assert "pocfl ipfs up" in block and "export POCFL_IPFS=" in block
    assert "chain advance" not in block
    actors = re.search(r"for who in ([\w ]+); do", block)
    assert actors is not None
    created = {f"{who}.json" for who in actors.group(1).split()} | {".pocfl/keys/aggregator.key", "manifest.json"}
    assert "account new --keystore $who.json" in block and "chain fund --keystore $who.json" in block
    assert "account encryption-key " in block and "project manifest manifest.json" in block
    options = r"--(?:keystore|aggregator|decrypt-key|aggregator-key|manifest) ([^\s;&]+)"
    used = {f.replace("$i", str(i)) for f in re.findall(options, block) for i in range(3)} - {"$who.json"}
    assert used <= created, f"files used but never created: {used - created}"
    assert "audit 1 --ipfs $POCFL_IPFS" in block


@dataclass
class Watch:
    """Follows the run on chain from the test's side and causes the IPFS outage once round 1 is open."""

    work: Path
    env: dict[str, str]
    ipfs_port: int
    error: list[BaseException] = field(default_factory=list)
    outage_round: int | None = None
    posted: dict[int, int] = field(default_factory=dict)  # round -> submissions
    credited: dict[str, int] = field(default_factory=dict)  # trainer -> wei
    finished: bool = False
    stop: threading.Event = field(default_factory=threading.Event)

    def pocfl(self, *args: str) -> None:
        subprocess.run(
            [".venv/bin/pocfl", *args], cwd=self.work, env=self.env, check=True, capture_output=True, timeout=120
        )

    def run(self) -> None:
        try:
            market = self._market()
            if market is not None:
                self._follow(market)
        except BaseException as exc:  # reported by the test
            self.error.append(exc)

    def _market(self) -> MarketplaceClient | None:
        home = self.work / ".pocfl"
        while not self.stop.is_set():
            if (home / "deployments.json").exists() and (home / "chain.json").exists():
                (deployment,) = load_deployments(home / "deployments.json").values()
                return MarketplaceClient(rpc_chain(deployment.rpc), deployment.address)
            time.sleep(0.5)
        return None

    def _follow(self, market: MarketplaceClient) -> None:
        while not self.stop.is_set():
            if market.project_count() >= 1:
                state = market.project(1)
                if self.outage_round is None and state.current_round == 1 and state.status == ProjectStatus.ACTIVE:
                    self.outage_round = 1
                    self.pocfl("ipfs", "down")
                    time.sleep(OUTAGE_S)
                    self.pocfl("ipfs", "up", "--port", str(self.ipfs_port))
                if state.status == ProjectStatus.FINISHED:
                    self._record(market)
                    return
            time.sleep(0.5)

    def _record(self, market: MarketplaceClient) -> None:
        for e in market.events("RoundPosted", projectId=1):
            r = int(e.args["round"])
            self.posted[r] = len(market.submissions(1, r))
        for e in market.events("TrainerCredited", projectId=1):
            trainer = str(e.args["trainer"])
            self.credited[trainer] = self.credited.get(trainer, 0) + int(e.args["amount"])
        self.finished = True


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop the bash script's process group (only processes this test started)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_readme_real_chain_flow_in_real_time_with_an_ipfs_restart(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")
    chain_port, ipfs_port = free_port(), free_port()
    script = work / "readme.sh"
    script.write_text(adapt(readme_block(), chain_port, ipfs_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCFL_")}
    watch = Watch(work, env, ipfs_port)
    watcher = threading.Thread(target=watch.run, daemon=True)
    log = (tmp_path / "readme.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(script)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watcher.start()
    try:
        try:
            code = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        watch.stop.set()
        watcher.join(timeout=30)
        output = (tmp_path / "readme.log").read_text()
        assert code == 0, f"the README block exited {code}\n{output[-8000:]}"
        assert not watch.error, f"{watch.error!r}\n{output[-4000:]}"
        assert watch.outage_round == 1, "the IPFS node was restarted while round 1 was open"
        assert "Traceback" not in output
        assert watch.finished and watch.posted == dict.fromkeys(range(ROUNDS), 3), watch.posted
        assert "waiting out an outage" in output or "retrying" in output  # the outage was seen and waited out
        _check_claims(work, env, chain_port, watch.credited)
    finally:
        _stop_group(proc)
        log.close()
        for what in ("ipfs", "chain"):  # by their recorded PIDs, whatever state the block stopped in
            subprocess.run([".venv/bin/pocfl", what, "down"], cwd=work, env=env, capture_output=True, timeout=60)


def _check_claims(work: Path, env: dict[str, str], chain_port: int, credited: dict[str, int]) -> None:
    """Resume the saved chain: every trainer claimed exactly its credits, the contract holds only the unearned rest."""
    subprocess.run(
        [".venv/bin/pocfl", "chain", "up", "--port", str(chain_port)], cwd=work, env=env, check=True, timeout=120
    )
    (deployment,) = load_deployments(work / ".pocfl" / "deployments.json").values()
    chain = rpc_chain(deployment.rpc)
    try:
        market = MarketplaceClient(chain, deployment.address)
        state = market.project(1)
        assert state.status == ProjectStatus.FINISHED
        assert credited and sum(credited.values()) > 0, credited  # a trainer whose updates never helped earns 0
        assert all(market.credits(trainer) == 0 for trainer in credited), "every trainer claimed everything"
        assert sum(credited.values()) + state.escrow == BUDGET
        assert market.balance() == state.escrow  # claims paid out exactly the credits
    finally:
        chain.close()
