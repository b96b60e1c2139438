#!/usr/bin/env python3
"""One command that runs a whole pocfl project on real services, every actor in its own OS process.

Everything binds to 127.0.0.1 and lives in a fresh work folder (default: a temporary one, kept for its logs):

1. services: anvil (:meth:`pocfl.chain.backends.AnvilProcess.start`) and an IPFS daemon with the Kubo RPC API
   (:meth:`pocfl.store.daemon.IpfsDaemon.start`: Kubo if installed, else js-ipfs from ``tools/ipfs-node``);
2. keys: fresh accounts for the owner, the aggregator and N trainers, funded from anvil's dev account. Each key
   lives only in the environment of the one child process that signs with it (``POCFL_KEY_<ACTOR>``), never on a
   command line, never in a file;
3. ``pocfl deploy`` (owner), ``pocfl account encryption-key`` (aggregator), ``pocfl project manifest`` and
   ``pocfl project create --manifest`` (owner), ``pocfl register`` (each trainer, concurrently);
4. the rounds, with one of two engines:

   - ``--engine plain``: ``pocfl aggregate ID --follow`` and N x ``pocfl train ID`` run
     concurrently until the project finishes;
   - ``--engine flower``: Flower's deployment runtime: ``flower-superlink --insecure`` and one
     ``flower-supernode --insecure`` per trainer (its key's variable name, data share, project, chain and IPFS in
     ``--node-config``), then ``flwr run flower_app local-deploy`` so the ServerApp
     (``aggregator.flower_server:app``) drives the rounds by messages and the ClientApps
     (``trainer_client.flower_client:app``) train and submit;

   the rounds run on anvil's clock: once every trainer has submitted in a round, this script moves the chain's
   clock exactly to the submission deadline with ``pocfl chain advance --to`` (``--clock advance``, the default,
   which keeps a run short and deterministic); ``--clock real`` waits for the windows instead, on an anvil that
   mines a block every second (the processes wait by the chain's clock);
5. ``pocfl claim`` (each trainer), ``pocfl project withdraw`` (owner) and ``pocfl audit ID``;
6. a summary: rounds, accuracy, payouts reconciled to the wei, wall time per phase (``summary.json`` too).

Every process it starts is recorded in ``<work>/pids.json`` (with the descendants it finds, such as the
``flwr-serverapp``/``flwr-clientapp`` processes Flower spawns) and stopped in a ``finally`` block by PID, never by
name. Exit codes: 0 all checks passed, 1 a check failed, 2 a setup or process error (the message names the log).

Examples::

    .venv/bin/python scripts/run_multiprocess.py                       # plain engine, 4 trainers, 3 rounds
    .venv/bin/python scripts/run_multiprocess.py --engine flower --trainers 3 --rounds 2
    .venv/bin/python scripts/run_multiprocess.py --engine flower --data wine.csv   # your own task, not digits

``--data FILE.csv`` replaces the digits demo with a task of your own: 20% of the rows become the owner's
validation set, from which ``pocfl project manifest --validation`` infers the features, the classes and the
model; every trainer gets its share of the rest (``train.csv:part=I:of=N``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pocfl.errors import PocflError  # noqa: E402
from pocfl.fsutil import write_json_atomic  # noqa: E402
from pocfl.procs import free_port  # noqa: E402  (after the sys.path fix-up)

POCFL = [sys.executable, "-m", "pocfl.cli"]
BIN = Path(sys.executable).parent
FLOWER_APP = REPO / "flower_app"
FLOWER_FEDERATION = "local-deploy"
FUND_WEI = 100 * 10**18
BUDGET_ETH = "1"
START_DELAY = {"advance": 600, "real": 30}
"""Seconds between project creation and round 0 on the chain's clock (``--clock advance`` skips them)."""

POCFL_VARS = (
    "POCFL_RPC",
    "POCFL_IPFS",
    "POCFL_PRIVATE_KEY",
    "POCFL_KEYSTORE",
    "POCFL_KEYSTORE_PASSWORD",
    "POCFL_DEPLOYMENT",
    "POCFL_HOME",
)
FLOWER_ENV = {
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


class RunError(PocflError, RuntimeError):
    """A setup step or a child process failed; the message says which and where its log is."""


# ---------------------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int]]:
    """``{pid: (ppid, pgid)}`` of every live, non-zombie process (Linux /proc; empty elsewhere)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone): :func:`pocfl.local_node.pid_alive`."""
    from pocfl.local_node import pid_alive

    return pid_alive(pid)


def descendants(roots: Sequence[int]) -> list[int]:
    """Live descendants of ``roots`` (children, grandchildren, ...), found through parent links."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


@dataclass
class Child:
    """A process this script started."""

    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    out: Path | None = None
    stop: Callable[[], None] | None = None
    """How to stop it (services started through pocfl's own managers); default: its process group."""


@dataclass
class Supervisor:
    """Starts, records and stops child processes (each in its own session, so its group is its own)."""

    work: Path
    started: list[Child] = field(default_factory=list)
    seen_descendants: dict[int, str] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)

    @property
    def pids_file(self) -> Path:
        return self.work / "pids.json"

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    def record(self) -> None:
        """Write ``pids.json``: every process started and every descendant seen, for cleanup checks."""
        self.scan()
        doc = {
            "orchestrator": os.getpid(),
            "processes": [{"name": c.name, "pid": c.pid, "log": str(c.log)} for c in self.started],
            "descendants": [{"pid": pid, "of": name} for pid, name in sorted(self.seen_descendants.items())],
        }
        write_json_atomic(self.pids_file, doc)

    def scan(self) -> None:
        """Remember the live descendants of our children (Flower's SuperExec, ServerApp and ClientApp processes)."""
        for c in self.started:
            if alive(c.pid):
                for pid in descendants([c.pid]):
                    self.seen_descendants.setdefault(pid, c.name)

    def adopt(self, name: str, pid: int, log: Path, stop: Callable[[], None]) -> Child:
        """Record a process started through one of pocfl's managers (anvil, IPFS)."""
        child = Child(name, pid, log, stop=stop)
        self.started.append(child)
        self.record()
        return child

    def start(self, name: str, argv: Sequence[str], env: dict[str, str], *, capture: bool = False) -> Child:
        """Start ``argv`` in its own session; stderr (and stdout unless ``capture``) to ``logs/<name>.log``."""
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        out = logs / f"{name}.out" if capture else None
        with contextlib.ExitStack() as stack:
            err_fh: IO[bytes] = stack.enter_context(log.open("ab"))
            out_fh: IO[bytes] = stack.enter_context(out.open("wb")) if out is not None else err_fh
            try:
                popen = subprocess.Popen(
                    list(argv),
                    env=env,
                    cwd=self.work,
                    stdin=subprocess.DEVNULL,
                    stdout=out_fh,
                    stderr=err_fh,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RunError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        child = Child(name, popen.pid, log, popen, out)
        self.started.append(child)
        self.record()
        return child

    def wait(self, child: Child, timeout: float) -> int:
        """Wait for ``child`` to exit; RunError on timeout."""
        assert child.popen is not None
        try:
            return child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RunError(f"{child.name} did not finish within {timeout:.0f} s; see {child.log}") from None

    def run(self, name: str, argv: Sequence[str], env: dict[str, str], timeout: float = 180) -> Any:
        """Run a ``pocfl ... --json`` command to completion and return its JSON document."""
        return self.run_many([(name, argv, env)], timeout)[0]

    def run_many(self, jobs: Sequence[tuple[str, Sequence[str], dict[str, str]]], timeout: float = 180) -> list[Any]:
        """Run several ``--json`` commands concurrently; RunError naming the first that failed."""
        children = [self.start(name, argv, env, capture=True) for name, argv, env in jobs]
        deadline = time.monotonic() + timeout
        docs = []
        for child in children:
            code = self.wait(child, max(deadline - time.monotonic(), 1))
            docs.append(self.json_of(child, code))
        return docs

    def json_of(self, child: Child, code: int) -> Any:
        """The JSON document a child printed; RunError (with its log's tail) when it failed."""
        assert child.out is not None
        text = child.out.read_text(errors="replace")
        try:
            doc = json.loads(text) if text.strip() else None
        except ValueError:
            doc = None
        if code != 0 or doc is None:
            detail = doc.get("message") if isinstance(doc, dict) else None
            raise RunError(
                f"{child.name} exited with code {code}: {detail or tail(child.log) or text[-400:]}\n  log: {child.log}"
            )
        return doc

    def stop_all(self) -> list[int]:
        """Stop every process we started, newest first, with its descendants; returns the PIDs still alive."""
        self.scan()
        self.record()
        for child in reversed(self.started):
            self._stop(child)
        leftovers = [pid for pid in [c.pid for c in self.started] + list(self.seen_descendants) if alive(pid)]
        for pid in leftovers:  # a descendant that left our process groups (only ones we saw under our children)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2 if leftovers else 0)
        return [pid for pid in leftovers if alive(pid)]

    def _stop(self, child: Child) -> None:
        kids = descendants([child.pid]) if alive(child.pid) else []
        for pid in kids:
            self.seen_descendants.setdefault(pid, child.name)
        if child.stop is not None:
            with contextlib.suppress(Exception):
                child.stop()
        elif child.popen is not None and child.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)  # its own session: the group is exactly what it started
            try:
                child.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.popen.wait(5)
        elif child.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)  # the leader exited; its group may live on
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in kids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ('' when there is none)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n    ".join(text[-lines:])


# ---------------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Actor:
    """An account and the environment variable its key lives in (in its own processes only)."""

    name: str
    address: str
    key_env: str
    key_hex: str = field(repr=False)


@dataclass
class RoundTimes:
    """Wall-clock marks of one round, seconds since the start of the run."""

    opened: float
    submitted: float | None = None
    posted: float | None = None

    def to_json(self) -> dict[str, float | None]:
        train = None if self.submitted is None else round(self.submitted - self.opened, 1)
        agg = None if self.posted is None or self.submitted is None else round(self.posted - self.submitted, 1)
        return {"train_s": train, "aggregate_s": agg}


@dataclass
class Options:
    """Command-line options."""

    engine: str
    trainers: int
    rounds: int
    work: Path
    clock: str
    window: int
    hidden: int
    epochs: int
    encrypt: bool
    timeout: float
    summary: Path | None
    audit: bool
    prove: bool = False
    sketch_dim: int = 8
    data: Path | None = None


class Run:
    """One multi-process run (see the module docstring)."""

    def __init__(self, opts: Options, sup: Supervisor) -> None:
        self.o = opts
        self.sup = sup
        self.phases: dict[str, float] = {}
        self.rounds: dict[int, RoundTimes] = {}
        self.rpc = ""
        self.ipfs = ""
        self.actors: dict[str, Actor] = {}
        self.project_id = 0
        self.chain: Any = None
        self.client: Any = None
        self.decrypt_key: Path | None = None
        self.verifier: dict[str, Any] | None = None
        self.zk_cache = opts.work / "actors" / "zk"

    # --- helpers ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - start, 1)

    def env(self, actor: str | None = None, **extra: str) -> dict[str, str]:
        """A child's environment: ours without pocfl settings, the run's chain/IPFS, and at most one key."""
        env = {k: v for k, v in os.environ.items() if k not in POCFL_VARS and not k.startswith("POCFL_KEY_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(BIN), os.environ.get("PATH", "")))  # Flower spawns its tools by name
        env["POCFL_RPC"] = self.rpc
        if self.ipfs:
            env["POCFL_IPFS"] = self.ipfs
        env["POCFL_DEPLOYMENT"] = str(self.o.work / "deployments.json")
        env["POCFL_HOME"] = str(self.o.work / "actors" / (actor or "orchestrator"))
        env.setdefault("OMP_NUM_THREADS", "1")
        if actor is not None:
            a = self.actors[actor]
            env[a.key_env] = a.key_hex
        env.update(extra)
        return env

    def pocfl(self, actor: str | None, *args: str) -> list[str]:
        """``pocfl ARGS --json`` signing as ``actor`` (through its key's variable name)."""
        key = ["--key", self.actors[actor].key_env] if actor is not None else []
        return [*POCFL, *args, *key, "--json"]

    def state(self) -> Any:
        return self.client.project(self.project_id)

    def chain_time(self) -> int:
        """The chain's time: its latest block's timestamp (what the contract, the trainers and the node go by)."""
        return int(self.chain.now())

    # --- steps --------------------------------------------------------------------------------------------

    def services(self) -> None:
        from pocfl.chain.backends import AnvilProcess, rpc_chain
        from pocfl.store.daemon import IpfsDaemon

        logs = self.o.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with self.phase("services"):
            # --clock real: anvil mines a block every second, as `pocfl chain up` does, so the chain's clock (which
            # the trainers and the aggregator wait by) follows the wall clock without any help from this script
            block_time = 1 if self.o.clock == "real" else None
            anvil = AnvilProcess.start(log_file=logs / "anvil.log", block_time=block_time)
            self.sup.adopt("anvil", anvil.pid, logs / "anvil.log", anvil.stop)
            self.rpc = anvil.url
            self.sup.say(f"anvil on {anvil.url} (pid {anvil.pid})")
            daemon = IpfsDaemon.start(self.o.work / "ipfs", log_file=logs / "ipfs.log")
            self.sup.adopt("ipfs", daemon.pid, logs / "ipfs.log", daemon.stop)
            self.ipfs = daemon.url
            self.sup.say(f"{daemon.implementation} IPFS daemon on {daemon.url} (pid {daemon.pid})")
            self.chain = rpc_chain(self.rpc)

    def keys(self) -> None:
        from pocfl.chain.accounts import new_account

        with self.phase("keys"):
            names = ["owner", "aggregator", *(f"trainer{i}" for i in range(self.o.trainers))]
            for name in names:
                account = new_account()
                env = f"POCFL_KEY_{name.upper()}"
                self.actors[name] = Actor(name, str(account.address), env, account.key.hex())
                self.chain.fund(account.address, FUND_WEI)
            self.sup.say(f"{len(names)} fresh accounts funded; keys only in their own processes' environments")

    def setup_project(self) -> None:
        from pocfl.chain.client import MarketplaceClient

        with self.phase("deploy"):
            dargs = ["deploy"]
            if self.o.prove:
                dargs += ["--with-verifier", "--slots", str(self.o.trainers), "--sketch-dim", str(self.o.sketch_dim)]
                dargs += ["--zk-cache", str(self.zk_cache)]
            dep = self.sup.run("deploy", self.pocfl("owner", *dargs), self.env("owner"))
            self.client = MarketplaceClient(self.chain, dep["address"])
            self.sup.say(f"pocfl deploy: PocMarketplace at {dep['address']} (gas {dep['gas_used']})")
            self.verifier = dep.get("verifier")
            if self.verifier:
                self.sup.say(
                    f"pocfl deploy --with-verifier: EzklRoundVerifier at {self.verifier['adapter']} "
                    f"(circuit {self.verifier['circuit']}, Halo2 verifier {self.verifier['halo2_runtime_bytes']} bytes)"
                )
        with self.phase("project"):
            agg_key = None
            if self.o.encrypt:
                self.decrypt_key = self.o.work / "actors" / "aggregator" / "encryption-key.json"
                self.decrypt_key.parent.mkdir(parents=True, exist_ok=True)
                doc = self.sup.run(
                    "aggregator-encryption-key",
                    [*POCFL, "account", "encryption-key", str(self.decrypt_key), "--json"],
                    self.env("aggregator"),
                )
                agg_key = doc["public_key"]
            manifest = self.o.work / "actors" / "owner" / "manifest.json"
            manifest.parent.mkdir(parents=True, exist_ok=True)
            margs = ["project", "manifest", str(manifest), "--hidden", str(self.o.hidden), "--seed", "0"]
            if self.o.data is not None:
                margs += ["--validation", str(self.split_data())]
            margs += ["--epochs", str(self.o.epochs), "--name", f"multiprocess-{self.o.engine}"]
            if agg_key:
                margs += ["--aggregator-key", agg_key]
            if self.verifier:
                margs += ["--prove-slots", str(self.o.trainers), "--sketch-dim", str(self.o.sketch_dim)]
            mdoc = self.sup.run("owner-manifest", [*POCFL, *margs, "--json"], self.env("owner"))
            cargs = [
                "project",
                "create",
                "--manifest",
                str(manifest),
                "--aggregator",
                self.actors["aggregator"].address,
            ]
            cargs += [
                "--budget",
                BUDGET_ETH,
                "--rounds",
                str(self.o.rounds),
                "--start-in",
                str(START_DELAY[self.o.clock]),
            ]
            cargs += ["--submission-window", str(self.o.window), "--aggregation-window", "600"]
            cargs += ["--min-trainers", str(self.o.trainers), "--max-trainers", str(self.o.trainers)]
            if self.verifier:
                cargs += ["--verifier", self.verifier["adapter"]]
            doc = self.sup.run("owner-create", self.pocfl("owner", *cargs), self.env("owner"))
            self.project_id = int(doc["project_id"])
            self.sup.say(
                f"pocfl project create --manifest: project {self.project_id} (manifest {mdoc['manifest_cid']}), "
                f"{BUDGET_ETH} ETH over {self.o.rounds} rounds"
                + (", updates sealed to the aggregator" if agg_key else "")
            )
        with self.phase("register"):
            trainers = [a for a in self.actors if a.startswith("trainer")]
            self.sup.run_many(
                [(f"{t}-register", self.pocfl(t, "register", str(self.project_id)), self.env(t)) for t in trainers]
            )
            self.sup.say(f"pocfl register: {len(trainers)} trainers, each from its own process")

    def split_data(self) -> Path:
        """With ``--data FILE.csv``: hold out 20% as the owner's validation set; the rest feeds the trainers.

        Writes ``validation.csv`` and ``train.csv`` (header kept) under the work folder; the manifest
        (``pocfl project manifest --validation``) takes the features, classes and model from the first, each
        trainer reads its share of the second (``train.csv:part=I:of=N``).
        """
        assert self.o.data is not None
        header, *rows = self.o.data.read_text(encoding="utf-8").splitlines(keepends=True)
        if _numeric_row(header):  # no header row: every line is a sample
            header, rows = "", [header, *rows]
        rows = [r for r in rows if r.strip()]
        order = list(range(len(rows)))
        random.Random(0).shuffle(order)
        cut = max(1, len(rows) // 5)
        folder = self.o.work / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for name, picked in (("validation.csv", order[:cut]), ("train.csv", order[cut:])):
            (folder / name).write_text(header + "".join(rows[i] for i in sorted(picked)), encoding="utf-8")
        self.sup.say(f"--data {self.o.data}: {cut} validation rows, {len(rows) - cut} training rows")
        return folder / "validation.csv"

    def trainer_data(self, part: int | str, of: int | str) -> str:
        """Trainer ``part``'s data: its share of ``--data``'s training rows, else of the digits demo."""
        if self.o.data is not None:
            return f"{self.o.work / 'data' / 'train.csv'}:part={part}:of={of}"
        return f"digits:part={part}:of={of}"

    def advance_to(self, timestamp: int, why: str) -> None:
        """``pocfl chain advance --to TIMESTAMP``: a block stamped exactly ``timestamp`` (never an overshoot)."""
        if self.chain_time() >= timestamp:
            return
        self.sup.run(
            f"advance-{len(self.sup.started)}",
            [*POCFL, "chain", "advance", "--to", str(timestamp), "--json"],
            self.env(),
        )
        self.sup.say(f"pocfl chain advance --to {timestamp}: {why}")

    def start_training(self) -> None:
        """Move anvil's clock to round 0 (``--clock advance``), or let it get there (``--clock real``)."""
        start = self.state().params.start_time
        if self.o.clock == "advance":
            self.advance_to(start, "registration closed, round 0 open")
            return
        self.sup.say(f"round 0 opens in {max(start - self.chain_time(), 0)} s (--clock real: anvil mines every second)")

    def watch(self, workers: Sequence[Child], done: Callable[[], bool], log: Path | None = None) -> None:
        """Follow the rounds until the project ends; advance the clock when every trainer submitted."""
        from pocfl.chain.types import ProjectStatus

        deadline = time.monotonic() + self.o.timeout
        last_round = -1
        while True:
            st = self.state()
            now_s = time.monotonic() - self.sup.t0
            if st.status != ProjectStatus.ACTIVE:
                if last_round in self.rounds and self.rounds[last_round].posted is None:
                    self.rounds[last_round].posted = now_s
                self.sup.say(f"project {self.project_id} is {st.status.name.lower()}")
                if st.status != ProjectStatus.FINISHED:
                    raise RunError(f"project {self.project_id} ended {st.status.name.lower()}, not finished")
                break
            if st.current_round != last_round and self.chain_time() >= st.params.start_time:
                if last_round in self.rounds:
                    self.rounds[last_round].posted = now_s
                    self.sup.say(f"round {last_round} posted")
                last_round = st.current_round
                self.rounds[last_round] = RoundTimes(opened=now_s)
                self.sup.say(f"round {last_round} open")
            times = self.rounds.get(last_round)
            if times is not None and times.submitted is None and st.submission_count >= self.o.trainers:
                times.submitted = now_s
                self.sup.say(f"round {last_round}: all {st.submission_count} trainers submitted")
                if self.o.clock == "advance":
                    self.advance_to(st.submission_deadline, f"round {last_round} submission window closed")
            for w in workers:
                assert w.popen is not None
                code = w.popen.poll()
                if code not in (None, 0):
                    raise RunError(f"{w.name} exited with code {code}:\n    {tail(w.log)}\n  log: {w.log}")
            if done() and self.state().status == st.status:
                raise RunError(
                    f"the {self.o.engine} engine stopped before project {self.project_id} finished"
                    + (f":\n    {tail(log)}" if log is not None else "")
                    + f"\n  logs: {self.o.work / 'logs'}"
                )
            if time.monotonic() > deadline:
                raise RunError(f"project {self.project_id} did not finish within {self.o.timeout:.0f} s")
            self.sup.scan()
            time.sleep(0.5)
        self.sup.record()

    # --- engines ------------------------------------------------------------------------------------------

    def plain(self) -> dict[str, Any]:
        """``pocfl aggregate --follow`` and ``pocfl train`` processes."""
        with self.phase("rounds"):
            agg = ["aggregate", str(self.project_id), "--follow", "--poll", "1"]
            agg += ["--state-dir", str(self.o.work / "actors" / "aggregator" / "journal")]
            if self.decrypt_key is not None:
                agg += ["--decrypt-key", str(self.decrypt_key)]
            if self.o.prove:
                agg += ["--zk-cache", str(self.zk_cache)]
            workers = [
                self.sup.start("aggregator", self.pocfl("aggregator", *agg), self.env("aggregator"), capture=True)
            ]
            trainers = sorted(a for a in self.actors if a.startswith("trainer"))
            n = len(trainers)
            for i, t in enumerate(trainers):
                args = ["train", str(self.project_id), "--data", self.trainer_data(i, n)]
                args += ["--seed", str(i), "--poll", "1", "--max-wait", str(int(self.o.timeout))]
                workers.append(self.sup.start(t, self.pocfl(t, *args), self.env(t), capture=True))
            self.sup.say(f"started pocfl aggregate --follow and {n} x pocfl train ({n + 1} processes)")
            self.start_training()
            self.watch(workers, lambda: all(w.popen is not None and w.popen.poll() is not None for w in workers))
            docs = {w.name: self.sup.json_of(w, self.sup.wait(w, 120)) for w in workers}
        return docs

    def flower(self) -> dict[str, Any]:
        """Flower's deployment runtime: SuperLink, one SuperNode per trainer, ``flwr run``."""
        with self.phase("flower-start"):
            link = self.start_superlink("superlink", [], self.env("aggregator", **self.flwr_env("superlink")))
            trainers = sorted(a for a in self.actors if a.startswith("trainer"))
            n = len(trainers)
            nodes = []
            for i, t in enumerate(trainers):
                config = {
                    "partition-id": i,
                    "num-partitions": n,
                    "pocfl-trainer-key-env": self.actors[t].key_env,
                    "pocfl-data": self.trainer_data(i, n),
                    "pocfl-seed": i,
                    "pocfl-project": self.project_id,
                    "pocfl-rpc": self.rpc,
                    "pocfl-ipfs": self.ipfs,
                    "pocfl-trainer-state-dir": str(self.o.work / "actors" / t),
                }
                argv = [_tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.link_port}"]
                argv += ["--port", str(free_port()), "--node-config", _toml_pairs(config)]
                nodes.append(self.sup.start(f"supernode-{t}", argv, self.env(t, **self.flwr_env(t))))
            self.sup.say(f"{n} x flower-supernode --insecure (pids {', '.join(str(c.pid) for c in nodes)})")
        with self.phase("rounds"):
            self.start_training()
            self.flwr_run([], [link, *nodes])
        return {}

    # --- Flower plumbing (shared with scripts/run_simulation.py) -------------------------------------------

    link_port = 0

    def flwr_env(self, who: str) -> dict[str, str]:
        """Flower's settings for one process: its own ``FLWR_HOME``, no update check, no runtime installs."""
        return {"FLWR_HOME": str(self.o.work / "flwr" / who), "RAY_TMPDIR": str(self.o.work / "ray"), **FLOWER_ENV}

    def start_superlink(self, name: str, extra: Sequence[str], env: dict[str, str]) -> Child:
        """``flower-superlink --insecure`` on a free 127.0.0.1 port, waited for until ``/health`` answers."""
        if not (FLOWER_APP / "pyproject.toml").is_file():
            raise RunError(f"{FLOWER_APP}/pyproject.toml is missing")
        for tool in ("flower-superlink", "flower-supernode", "flwr"):
            if not (BIN / tool).exists() and shutil.which(tool) is None:
                raise RunError(f"{tool} is not installed (pip install 'flwr==1.42.*')")
        self.link_port = free_port()
        argv = [_tool("flower-superlink"), "--insecure", *extra, "--host", "127.0.0.1", "--port", str(self.link_port)]
        argv += ["--database", str(self.o.work / "flwr" / f"{name}.db")]
        link = self.sup.start(name, argv, env)
        _wait_http(f"http://127.0.0.1:{self.link_port}/health", link, 60)
        self.sup.say(
            f"{' '.join(['flower-superlink --insecure', *extra])} on 127.0.0.1:{self.link_port} (pid {link.pid})"
        )
        return link

    def flwr_run(self, extra: Sequence[str], workers: Sequence[Child]) -> None:
        """``flwr run flower_app local-deploy --run-config ... --stream``, then follow the rounds to the end."""
        cli_env = self.env(None, **self.flwr_env("cli"))
        home = Path(cli_env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{FLOWER_FEDERATION}"\n\n'
            f'[superlink.{FLOWER_FEDERATION}]\naddress = "127.0.0.1:{self.link_port}"\ninsecure = true\n'
        )
        run_config = {
            "pocfl-project": self.project_id,
            "pocfl-rpc": self.rpc,
            "pocfl-ipfs": self.ipfs,
            "pocfl-deployment": str(self.o.work / "deployments.json"),
            "pocfl-key-env": self.actors["aggregator"].key_env,
            "pocfl-state-dir": str(self.o.work / "actors" / "aggregator" / "journal"),
            "pocfl-decrypt-key": str(self.decrypt_key or ""),
            "pocfl-timeout": 600,
        }
        if self.o.data is not None:  # simulated nodes fill the placeholders (the deployment's node config wins)
            run_config["pocfl-data"] = self.trainer_data("{partition-id}", "{num-partitions}")
        argv = [_tool("flwr"), "run", str(FLOWER_APP), FLOWER_FEDERATION, "--run-config", _toml_pairs(run_config)]
        flwr = self.sup.start("flwr-run", [*argv, *extra, "--stream"], cli_env)
        self.sup.say(
            f"{' '.join(['flwr run flower_app', FLOWER_FEDERATION, *extra])} --stream: the ServerApp drives rounds"
        )
        self.watch(workers, lambda: flwr.popen is not None and flwr.popen.poll() is not None, flwr.log)
        code = self.sup.wait(flwr, 180)
        if code != 0:
            raise RunError(f"flwr run exited with code {code}:\n    {tail(flwr.log)}\n  log: {flwr.log}")

    # --- after the rounds ---------------------------------------------------------------------------------

    def settle(self) -> dict[str, Any]:
        """Trainers claim what they are owed, the owner withdraws the rest, then ``pocfl audit`` (if present)."""
        trainers = sorted(a for a in self.actors if a.startswith("trainer"))
        with self.phase("claim"):
            owed = {t: self.client.credits(self.actors[t].address) for t in trainers}
            claiming = [t for t in trainers if owed[t] > 0]  # claim reverts NothingToWithdraw for nothing owed
            docs = self.sup.run_many([(f"{t}-claim", self.pocfl(t, "claim"), self.env(t)) for t in claiming])
            claims = {t: {"amount_wei": 0, "skipped": "nothing owed"} for t in trainers} | dict(
                zip(claiming, docs, strict=True)
            )
            withdraw: dict[str, Any] = {"amount_wei": 0, "skipped": "escrow empty"}
            if self.state().escrow > 0:
                withdraw = self.sup.run(
                    "owner-withdraw",
                    self.pocfl("owner", "project", "withdraw", str(self.project_id)),
                    self.env("owner"),
                )
            self.sup.say(
                "pocfl claim: "
                + ", ".join(
                    f"{t} {int(claims[t]['amount_wei']) / 1e18:.6f} ETH" + ("" if t in claiming else " (nothing owed)")
                    for t in trainers
                )
                + f"; pocfl project withdraw: owner took back {int(withdraw['amount_wei'])} wei unallocated"
            )
        audit: dict[str, Any] | None = None
        if self.o.audit and _has_audit():
            with self.phase("audit"):
                child = self.sup.start(
                    "audit",
                    [*POCFL, "audit", str(self.project_id), "--out", str(self.o.work / "audit"), "--json"],
                    self.env(),
                    capture=True,
                )
                code = self.sup.wait(child, 300)
                assert child.out is not None
                try:
                    audit = json.loads(child.out.read_text())
                except ValueError:
                    audit = {"ok": False, "error": f"no JSON from pocfl audit (exit {code}); see {child.log}"}
                audit["exit_code"] = code
                self.sup.say(f"pocfl audit: {'passed' if code == 0 and audit.get('ok') else 'FAILED'}")
        return {"claims": claims, "withdraw": withdraw, "audit": audit}

    def summarize(self, settled: dict[str, Any], started: float) -> dict[str, Any]:
        """Rounds, accuracy and payouts from the chain and the store, with the reconciliation checks."""
        from pocfl.market import Market
        from pocfl.rounds.report import RoundReport
        from pocfl.store import open_store

        st = self.state()
        events = {
            name: self.client.events(name, from_block=0, projectId=self.project_id)
            for name in ("RoundPosted", "RoundFailed", "TrainerCredited")
        }
        store = open_store(self.ipfs)
        try:
            market = Market(self.client, store)
            rounds: list[dict[str, Any]] = []
            for e in sorted(events["RoundPosted"], key=lambda e: int(e.args["round"])):
                r = int(e.args["round"])
                _, data = market.fetch_report(bytes(e.args["reportHash"]))
                report = RoundReport.from_json(data)
                rounds.append(
                    {
                        "round": r,
                        "accuracy_before": round(report.accuracy_before, 4),
                        "accuracy": round(report.accuracy, 4),
                        "submissions": len(report.submissions),
                        "outliers": sum(s.outlier for s in report.submissions),
                        "rejected": sum(s.status == "rejected" for s in report.submissions),
                        "credited_wei": int(e.args["credited"]),
                        "unallocated_wei": int(e.args["unallocated"]),
                        "proven": bool(e.args["proven"]),
                        **(self.rounds[r].to_json() if r in self.rounds else {}),
                    }
                )
        finally:
            store.close()
        credited: dict[str, int] = {}
        for e in events["TrainerCredited"]:
            credited[str(e.args["trainer"]).lower()] = credited.get(str(e.args["trainer"]).lower(), 0) + int(
                e.args["amount"]
            )
        payouts: list[dict[str, Any]] = []
        for name, doc in settled["claims"].items():
            a = self.actors[name]
            payouts.append(
                {
                    "trainer": name,
                    "address": a.address,
                    "credited_wei": credited.get(a.address.lower(), 0),
                    "claimed_wei": int(doc["amount_wei"]),
                    "left_wei": self.client.credits(a.address),
                }
            )
        budget = int(st.budget)
        total_credited = sum(r["credited_wei"] for r in rounds)
        total_unallocated = sum(r["unallocated_wei"] for r in rounds) + len(events["RoundFailed"]) * int(
            st.round_budget
        )
        withdrawn = int(settled["withdraw"]["amount_wei"])
        contract_balance = int(self.chain.w3.eth.get_balance(self.client.address))
        checks = {
            "every_round_posted": len(rounds) == self.o.rounds and not events["RoundFailed"],
            "claims_equal_credits": all(p["claimed_wei"] == p["credited_wei"] and p["left_wei"] == 0 for p in payouts),
            "credits_equal_round_totals": sum(credited.values()) == total_credited,
            "budget_reconciles": total_credited + withdrawn == budget and total_unallocated <= withdrawn,
            "contract_empty": contract_balance == 0,
        }
        if self.o.prove:
            checks["every_round_proven"] = bool(rounds) and all(r["proven"] for r in rounds)
        audit = settled["audit"]
        if audit is not None:
            checks["audit_passed"] = bool(audit.get("ok")) and audit.get("exit_code") == 0
        return {
            "engine": self.o.engine,
            "trainers": self.o.trainers,
            "rounds_planned": self.o.rounds,
            "project_id": self.project_id,
            "status": st.status.name.lower(),
            "rpc": self.rpc,
            "ipfs": self.ipfs,
            "market": self.client.address,
            "rounds": rounds,
            "payouts": payouts,
            "budget_wei": budget,
            "withdrawn_wei": withdrawn,
            "contract_balance_wei": contract_balance,
            "audit": None
            if audit is None
            else {"ok": audit.get("ok"), "exit_code": audit.get("exit_code"), "files": audit.get("files")},
            "checks": checks,
            "ok": all(checks.values()),
            "wall_s": round(time.monotonic() - started, 1),
            "phases_s": self.phases,
            "work": str(self.o.work),
            "pids_file": str(self.sup.pids_file),
        }


def _tool(name: str) -> str:
    local = BIN / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _numeric_row(line: str) -> bool:
    """Whether a CSV line is all numbers (a sample, not a header)."""
    try:
        [float(cell) for cell in line.split(",")]
    except ValueError:
        return False
    return True


def _toml_pairs(values: dict[str, Any]) -> str:
    """``k1=v1 k2="v2"`` as Flower's ``--node-config``/``--run-config`` parse it (TOML values)."""
    return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def _wait_http(url: str, child: Child, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.popen is not None
        if child.popen.poll() is not None:
            raise RunError(f"{child.name} exited with code {child.popen.returncode}:\n    {tail(child.log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).is_success:
                return
        time.sleep(0.3)
    raise RunError(f"{child.name} did not answer on {url} within {timeout:.0f} s; see {child.log}")


def _has_audit() -> bool:
    import importlib.util

    return importlib.util.find_spec("pocfl.cli.audit_cmd") is not None


def print_summary(doc: dict[str, Any]) -> None:
    print("\n== summary", flush=True)
    print(
        f"engine {doc['engine']}, project {doc['project_id']} {doc['status']}, {doc['trainers']} trainers, "
        f"{len(doc['rounds'])}/{doc['rounds_planned']} rounds posted, wall time {doc['wall_s']} s"
    )
    print(f"{'round':>5} {'acc before':>10} {'acc after':>9} {'subs':>4} {'outliers':>8} {'train s':>7} {'agg s':>6}")
    for r in doc["rounds"]:
        print(
            f"{r['round']:>5} {r['accuracy_before']:>10.4f} {r['accuracy']:>9.4f} {r['submissions']:>4} "
            f"{r['outliers']:>8} {r.get('train_s') or '':>7} {r.get('aggregate_s') or '':>6}"
        )
    print(f"{'trainer':<9} {'address':<42} {'credited (wei)':>20} {'claimed (wei)':>20}")
    for p in doc["payouts"]:
        print(f"{p['trainer']:<9} {p['address']:<42} {p['credited_wei']:>20} {p['claimed_wei']:>20}")
    print(f"owner withdrew {doc['withdrawn_wei']} wei; contract balance {doc['contract_balance_wei']} wei")
    print("phases (s): " + ", ".join(f"{k} {v}" for k, v in doc["phases_s"].items()))
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in doc["checks"].items()))
    print(f"logs and pids.json in {doc['work']}")


def parse_args(
    argv: Sequence[str] | None = None,
    *,
    engines: Sequence[str] = ("plain", "flower"),
    prog: str = "run_multiprocess.py",
    description: str = "Run a pocfl project on anvil + IPFS with every actor in its own process (see the docstring).",
) -> Options:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--engine", choices=engines, default=engines[0], help="how rounds are driven")
    p.add_argument("--trainers", type=int, default=4, help="number of trainer processes (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="training rounds (default 3)")
    p.add_argument("--work", type=Path, help="work folder for logs, stores and state (default: a new temp dir)")
    p.add_argument(
        "--clock",
        choices=("advance", "real"),
        default="advance",
        help="advance: move anvil's clock once all trainers submitted (fast, deterministic); "
        "real: wait out the windows (give a short --window, e.g. 20)",
    )
    p.add_argument("--window", type=int, default=300, help="submission window in chain seconds (default 300)")
    p.add_argument("--hidden", type=int, default=16, help="hidden width of the MLP (default 16)")
    p.add_argument("--epochs", type=int, default=2, help="local epochs in round 0 (default 2)")
    p.add_argument("--no-encrypt", action="store_true", help="plaintext updates (default: sealed to the aggregator)")
    p.add_argument("--no-audit", action="store_true", help="skip `pocfl audit`")
    p.add_argument("--timeout", type=float, default=600, help="give up when the rounds take longer (s, default 600)")
    p.add_argument("--summary", type=Path, help="also write the summary JSON here")
    p.add_argument(
        "--prove",
        action="store_true",
        help="proven rounds: pocfl deploy --with-verifier (ezkl, local test-only SRS), the project's verifier set, "
        "pocfl aggregate --zk-cache (plain engine only)",
    )
    p.add_argument("--sketch-dim", type=int, default=8, help="committed feature size with --prove (default 8)")
    p.add_argument(
        "--data",
        type=Path,
        help="a CSV of your own task (numeric columns, label column 'label' or the last): 20%% becomes the "
        "manifest's validation set (model shape from it), the rest is split among the trainers (default: digits)",
    )
    a = p.parse_args(argv)
    if a.trainers < 2 or a.rounds < 1 or a.window < 10:
        p.error("need --trainers >= 2, --rounds >= 1 and --window >= 10")
    if a.data is not None and (a.data.suffix.lower() != ".csv" or not a.data.is_file()):
        p.error(f"--data {a.data}: expected an existing .csv file")
    if a.prove and a.engine != "plain":
        p.error("--prove runs with --engine plain")
    work = (a.work or Path(tempfile.mkdtemp(prefix=f"pocfl-{a.engine}-"))).resolve()
    if work.exists() and any(work.iterdir()) and a.work is not None:
        p.error(f"--work {work} is not empty")
    work.mkdir(parents=True, exist_ok=True)
    return Options(
        engine=a.engine,
        trainers=a.trainers,
        rounds=a.rounds,
        work=work,
        clock=a.clock,
        window=a.window,
        hidden=a.hidden,
        epochs=a.epochs,
        encrypt=not a.no_encrypt,
        timeout=a.timeout,
        summary=a.summary,
        audit=not a.no_audit,
        prove=a.prove,
        sketch_dim=a.sketch_dim,
        data=a.data.resolve() if a.data is not None else None,
    )


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks


def main(argv: Sequence[str] | None = None, *, run_class: type[Run] | None = None, **parse: Any) -> int:
    """Parse the options, run, print the summary; returns the exit code (see the module docstring)."""
    opts = parse_args(argv, **parse)
    signal.signal(signal.SIGTERM, _terminate)
    sup = Supervisor(opts.work)
    run = (run_class or Run)(opts, sup)
    started = time.monotonic()
    sup.say(f"pocfl multi-process run, engine {opts.engine}: {opts.trainers} trainers x {opts.rounds} rounds")
    sup.say(f"work folder {opts.work}")
    code = 2
    try:
        run.services()
        run.keys()
        run.setup_project()
        getattr(run, opts.engine)()
        settled = run.settle()
        doc = run.summarize(settled, started)
        write_json_atomic(opts.work / "summary.json", doc)
        if opts.summary is not None:
            write_json_atomic(opts.summary, doc)
        print_summary(doc)
        code = 0 if doc["ok"] else 1
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        code = 130
    except Exception as exc:  # a bug or an unexpected service failure: say where the logs are
        import traceback

        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}\n  logs: {opts.work / 'logs'}", file=sys.stderr, flush=True)
    finally:
        if run.chain is not None:
            with contextlib.suppress(Exception):
                run.chain.close()
        sup.scan()
        running = [c.pid for c in sup.started if alive(c.pid)] + [p for p in sup.seen_descendants if alive(p)]
        left = sup.stop_all()
        sup.say(
            f"stopped {len(running)} running processes by PID ({len(sup.started)} started, "
            f"{len(sup.seen_descendants)} descendants seen, all in {sup.pids_file})"
            + (f"; STILL ALIVE: {left}" if left else "")
        )
        if left:
            code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
