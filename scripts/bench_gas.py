#!/usr/bin/env python3
"""Gas used by every external function of ``PocMarketplace``, against the goals of the issue.

Deploys a fresh marketplace (on the embedded chain by default, or ``--rpc anvil`` / an ``http(s)://`` URL of a
local dev node with unlocked, funded accounts), runs each function in the scenarios that cost differently
(first-time storage writes, with or without a stake, 1 to 50 trainers, ...) and prints a table::

    .venv/bin/python scripts/bench_gas.py               # plain table
    .venv/bin/python scripts/bench_gas.py --markdown    # table for the docs
    .venv/bin/python scripts/bench_gas.py --json        # machine-readable

Gas is deterministic for given inputs, so the numbers only change when the contract (or the compiler
settings) change. The goals: ``submit`` <= 80k, ``claim`` <= 50k, ``postRound`` with 10 trainers <= 600k
without proof verification, and the runtime bytecode within the 24,576-byte EIP-170 limit. The exit
status is 1 if any goal is missed, 2 on a usage or chain error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the checkout importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient, deploy_contract
from pocfl.chain.types import ZERO_ADDRESS, ProjectParams, RegistrationMode, RoundPost, Submission
from pocfl.errors import PocflError

EIP170_LIMIT = 24_576
SUBMIT_GOAL = 80_000
CLAIM_GOAL = 50_000
POST_10_GOAL = 600_000

FUNDING = 10**18  # each trainer and the aggregator (stakes are 0.01 ether)
OWNER_FUNDING = 10**20  # the owner escrows BUDGET per project
BUDGET = 10**18
STAKE = 10**16
WINDOW = 3_600
LEAD = 600
# Explicit gas for the set-up transactions (skips estimation; the measured calls are estimated as usual).
SETUP_GAS = 1_000_000
# Realistic content identifiers (CIDv1, base32) so calldata costs what it costs in production.
UPDATE_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
MODEL_CID = "bafybeihkoviema7g3gxyt6la7vd5ho32ictqbilu3wnlo3rs7ewhnp7lly"
INITIAL_CID = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va"
POST_SIZES = (1, 3, 10, 50)


@dataclass(frozen=True)
class Row:
    """One measurement.

    Attributes
    ----------
    function
        The contract function (``deployment`` for the constructor).
    scenario
        What state the call ran in.
    gas
        Gas used by the transaction (including the 21,000 base and calldata).
    goal
        The issue's upper bound for this row, or None.
    """

    function: str
    scenario: str
    gas: int
    goal: int | None = None

    @property
    def passed(self) -> bool | None:
        """Whether the goal is met; None when the row has no goal."""
        return None if self.goal is None else self.gas <= self.goal


@dataclass(frozen=True)
class BenchResult:
    """All rows, the runtime bytecode size and where they were measured.

    Attributes
    ----------
    rows
        One per (function, scenario), in the order they were measured.
    bytecode_size
        Size of the deployed runtime bytecode in bytes.
    chain
        ``embedded`` or the RPC URL.
    """

    rows: tuple[Row, ...]
    bytecode_size: int
    chain: str

    @property
    def bytecode_ok(self) -> bool:
        """Whether the runtime bytecode fits the EIP-170 limit."""
        return self.bytecode_size <= EIP170_LIMIT

    @property
    def ok(self) -> bool:
        """Whether every goal is met."""
        return self.bytecode_ok and all(row.passed is not False for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form.

        Returns
        -------
        dict
            ``chain``, ``ok``, ``bytecode`` (size, limit, ok) and ``rows`` (function, scenario, gas, goal,
            passed).
        """
        return {
            "chain": self.chain,
            "ok": self.ok,
            "bytecode": {"size": self.bytecode_size, "limit": EIP170_LIMIT, "ok": self.bytecode_ok},
            "rows": [{**asdict(row), "passed": row.passed} for row in self.rows],
        }


class GasBench:
    """Drives one fresh marketplace through every scenario and records the gas of the measured calls.

    Parameters
    ----------
    chain
        An open local chain (embedded, anvil or a dev node with a funded unlocked account).
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.rows: list[Row] = []
        self._subs: dict[int, list[Submission]] = {}
        self._accounts_made = 0
        self.owner = self._account(OWNER_FUNDING)
        self.aggregator = self._account()
        self.stranger = self._account()
        self.market, receipt = MarketplaceClient.deploy(chain, self.owner)
        self._record("deployment", "PocMarketplace constructor", receipt.gas_used)

    # ---- helpers ----------------------------------------------------------------------------

    def _account(self, wei: int = FUNDING) -> LocalAccount:
        """A new funded account. Keys are derived from a counter, not random: calldata gas depends on the
        zero bytes of the addresses passed, so random accounts would make the numbers wobble by a few gas."""
        self._accounts_made += 1
        account: LocalAccount = Account.from_key(keccak(text=f"pocfl gas bench account {self._accounts_made}"))
        self.chain.fund(account.address, wei)
        return account

    def _accounts(self, n: int) -> list[LocalAccount]:
        return [self._account() for _ in range(n)]

    def _as(self, account: LocalAccount) -> MarketplaceClient:
        return self.market.as_account(account)

    def _record(self, function: str, scenario: str, gas: int, goal: int | None = None) -> None:
        self.rows.append(Row(function, scenario, gas, goal))

    def _project(
        self,
        max_trainers: int = 64,
        min_trainers: int = 1,
        num_rounds: int = 3,
        mode: RegistrationMode = RegistrationMode.OPEN,
        stake: int = 0,
        verifier: str = ZERO_ADDRESS,
    ) -> tuple[int, int]:
        """Create a project starting ``LEAD`` seconds from now; returns its id and the creation gas."""
        params = ProjectParams(
            aggregator=self.aggregator.address,
            start_time=self.chain.now() + LEAD,
            num_rounds=num_rounds,
            submission_window=WINDOW,
            aggregation_window=WINDOW,
            min_trainers=min_trainers,
            max_trainers=max_trainers,
            initial_model_cid=INITIAL_CID,
            registration_mode=mode,
            stake=stake,
            validation_set_commitment=b"\x11" * 32,
            verifier=verifier,
        )
        pid, receipt = self.market.create_project(params, BUDGET)
        return pid, receipt.gas_used

    def _register(self, pid: int, trainers: Sequence[LocalAccount], stake: int = 0) -> None:
        for t in trainers:
            fn = self.market.contract.functions.register(pid)
            self._as(t).transact(fn, value=stake, gas=SETUP_GAS)

    def _start(self, pid: int) -> None:
        """Move the clock to the project's current round opening."""
        opens = self.market.project(pid).round_opened_at
        if self.chain.now() < opens:
            self.chain.increase_time(opens - self.chain.now() + 1)

    def _submit_all(self, pid: int, trainers: Sequence[LocalAccount], round_: int) -> list[int]:
        """Every trainer submits for ``round_``; returns the gas of each submit."""
        gas = []
        self._subs[pid] = []
        for i, t in enumerate(trainers):
            commitment = (round_ * 1000 + i + 1).to_bytes(32, "big")
            gas.append(self._as(t).submit(pid, round_, UPDATE_CID, commitment, gas=SETUP_GAS).gas_used)
            self._subs[pid].append(Submission(t.address, commitment))
        return gas

    def _close_submissions(self, pid: int) -> None:
        state = self.market.project(pid)
        self.chain.increase_time(state.submission_deadline - self.chain.now() + 1)

    def _overdue(self, pid: int) -> None:
        state = self.market.project(pid)
        self.chain.increase_time(state.aggregation_deadline - self.chain.now() + 1)

    def _post(self, pid: int, round_: int, verifier: bool = False) -> int:
        # The submissions as recorded (MarketplaceClient.submissions reads them back from the event logs,
        # which eth-tester answers in time quadratic in the chain length).
        subs = tuple(self._subs[pid])
        n = len(subs)
        # Distinct positive scores (fixed point 1e6), one outlier in every ten: the usual shape of a round.
        scores = tuple(1_000_000 + 7_919 * i for i in range(n))
        outliers = tuple(i % 10 == 9 for i in range(n))
        post = RoundPost(MODEL_CID, subs, scores, outliers, report_hash=b"\x22" * 32, hyperparams_hash=b"\x33" * 32)
        proof = b""
        if verifier:  # what CommitmentRoundVerifier accepts: keccak of the public inputs
            digest = self.market.project(pid).submissions_digest
            types = ["uint256", "uint32", "bytes32", "int128[]", "bool[]"]
            proof = keccak(abi_encode(types, [pid, round_, digest, list(scores), list(outliers)]))
        return self._as(self.aggregator).post_round(pid, round_, post, proof).gas_used

    # ---- scenarios --------------------------------------------------------------------------

    def run(self) -> list[Row]:
        """Measure every scenario.

        Returns
        -------
        list of Row
            The measurements, deployment first.
        """
        self.bench_owner_and_registration()
        self.bench_submit()
        self.bench_post_round()
        self.bench_post_round_verified()
        self.bench_fail_and_cancel()
        self.bench_endgame()
        return self.rows

    def bench_owner_and_registration(self) -> None:
        """createProject, allowTrainers, register and leave."""
        pid, gas = self._project()
        self._record("createProject", "first project (open, no stake)", gas)
        _, gas = self._project()
        self._record("createProject", "later project (open, no stake)", gas)
        spid, gas = self._project(mode=RegistrationMode.ALLOWLIST, stake=STAKE)
        self._record("createProject", "later project (allowlist, staked)", gas)

        trainers = self._accounts(11)
        receipt = self.market.allow_trainers(spid, [trainers[0].address])
        self._record("allowTrainers", "1 trainer", receipt.gas_used)
        receipt = self.market.allow_trainers(spid, [t.address for t in trainers[1:]])
        self._record("allowTrainers", "10 trainers", receipt.gas_used)

        receipt = self._as(trainers[0]).register(pid, 0)
        self._record("register", "open project, no stake (first trainer)", receipt.gas_used)
        receipt = self._as(trainers[1]).register(pid, 0)
        self._record("register", "open project, no stake (later trainer)", receipt.gas_used)
        receipt = self._as(trainers[0]).register(spid, STAKE)
        self._record("register", "allowlisted, with stake", receipt.gas_used)

        receipt = self._as(trainers[1]).leave(pid)
        self._record("leave", "no stake", receipt.gas_used)
        receipt = self._as(trainers[0]).leave(spid)
        self._record("leave", "stake credited back (first credit)", receipt.gas_used)

    def bench_submit(self) -> None:
        """submit: first and later submitter of round 0, first submitter of a later round."""
        pid, _ = self._project(num_rounds=2)
        trainers = self._accounts(3)
        self._register(pid, trainers)
        self._start(pid)
        gas = self._submit_all(pid, trainers, 0)
        self._record("submit", "first submitter of round 0", gas[0], SUBMIT_GOAL)
        self._record("submit", "later submitter of round 0", gas[1], SUBMIT_GOAL)
        self._close_submissions(pid)
        self._post(pid, 0)
        gas = self._submit_all(pid, trainers, 1)
        self._record("submit", "first submitter of round 1", gas[0], SUBMIT_GOAL)

    def bench_post_round(self) -> None:
        """postRound with 1, 3, 10 and 50 trainers, in round 0 (trainers never credited) and round 1."""
        for n in POST_SIZES:
            pid, _ = self._project(max_trainers=n, min_trainers=1, num_rounds=3)
            trainers = self._accounts(n)
            self._register(pid, trainers)
            self._start(pid)
            goal = POST_10_GOAL if n == 10 else None
            for round_, when in ((0, "first round, no prior credits"), (1, "later round, credits warm")):
                self._submit_all(pid, trainers, round_)
                self._close_submissions(pid)
                label = f"{n} trainer{'s' if n > 1 else ''}, {when}"
                self._record("postRound", label, self._post(pid, round_), goal)

    def bench_post_round_verified(self) -> None:
        """postRound with 10 trainers when the project has the test verifier (a static call, no real proof)."""
        verifier, _ = deploy_contract(self.chain, self.owner, "CommitmentRoundVerifier")
        pid, _ = self._project(max_trainers=10, num_rounds=2, verifier=verifier)
        trainers = self._accounts(10)
        self._register(pid, trainers)
        self._start(pid)
        for round_ in (0, 1):
            self._submit_all(pid, trainers, round_)
            self._close_submissions(pid)
            gas = self._post(pid, round_, verifier=True)
        self._record("postRound", "10 trainers, later round, test verifier (CommitmentRoundVerifier)", gas)

    def bench_fail_and_cancel(self) -> None:
        """failRound (next round opens; second failure cancels) and both ways to cancel."""
        pid, _ = self._project(num_rounds=3)
        self._register(pid, self._accounts(1))
        self._start(pid)
        self._overdue(pid)
        receipt = self._as(self.stranger).fail_round(pid, 0)
        self._record("failRound", "overdue round, next round opens", receipt.gas_used)
        self._overdue(pid)
        receipt = self._as(self.stranger).fail_round(pid, 1)
        self._record("failRound", "second failure in a row, project cancelled", receipt.gas_used)

        pid, _ = self._project()
        receipt = self.market.cancel(pid)
        self._record("cancel", "owner, before start", receipt.gas_used)
        pid, _ = self._project(min_trainers=2)
        self._start(pid)
        receipt = self._as(self.stranger).cancel(pid)
        self._record("cancel", "undersubscribed, by anyone", receipt.gas_used)

    def bench_endgame(self) -> None:
        """withdrawRemaining, releaseStake, claim and claimTo after a one-round staked project."""
        pid, _ = self._project(num_rounds=1, stake=STAKE)
        trainers = self._accounts(2)
        self._register(pid, trainers, STAKE)
        self._start(pid)
        self._submit_all(pid, trainers, 0)
        self._close_submissions(pid)
        self._post(pid, 0)  # one round: the project is now finished

        _, receipt = self.market.withdraw_remaining(pid)
        self._record("withdrawRemaining", "owner, finished project", receipt.gas_used)
        receipt = self._as(trainers[0]).release_stake(pid)
        self._record("releaseStake", "finished project, trainer already credited", receipt.gas_used)
        receipt = self._as(trainers[1]).release_stake(pid)
        _, receipt = self._as(trainers[0]).claim()
        self._record("claim", "all credits to the caller", receipt.gas_used, CLAIM_GOAL)
        _, receipt = self._as(trainers[1]).claim(self.stranger.address)
        self._record("claimTo", "to another funded account", receipt.gas_used, CLAIM_GOAL)

        # A fresh destination costs the 25,000 gas of creating the account: reported, not a goal.
        pid, _ = self._project(num_rounds=1)
        trainer = self._account()
        self._register(pid, [trainer])
        self._start(pid)
        self._submit_all(pid, [trainer], 0)
        self._close_submissions(pid)
        self._post(pid, 0)
        fresh = Account.from_key(keccak(text="pocfl gas bench never used")).address
        _, receipt = self._as(trainer).claim(fresh)
        self._record("claimTo", "to a never-used address (+25k account creation)", receipt.gas_used)

    def bytecode_size(self) -> int:
        """Size in bytes of the deployed runtime bytecode.

        Returns
        -------
        int
            ``len(eth_getCode(market))``.
        """
        return len(self.chain.w3.eth.get_code(self.market.contract.address))


def run_bench(rpc: str | None = None) -> BenchResult:
    """Deploy a marketplace and measure every scenario.

    Parameters
    ----------
    rpc
        ``None``/``"embedded"``, ``"anvil"`` (started and stopped here) or an ``http(s)://`` URL.

    Returns
    -------
    BenchResult
        The rows and the bytecode size.
    """
    chain = connect(rpc)
    try:
        bench = GasBench(chain)
        rows = bench.run()
        return BenchResult(tuple(rows), bench.bytecode_size(), chain.url or "embedded")
    finally:
        chain.close()


def _goal_text(row: Row) -> str:
    return "-" if row.goal is None else f"<= {row.goal:,}"


def _result_text(row: Row) -> str:
    return {None: "-", True: "pass", False: "FAIL"}[row.passed]


def format_table(result: BenchResult) -> str:
    """``result`` as a plain-text table: aligned columns function, scenario, gas, goal, result; the bytecode line."""
    header = ("function", "scenario", "gas used", "goal", "result")
    body = [(r.function, r.scenario, f"{r.gas:,}", _goal_text(r), _result_text(r)) for r in result.rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {2, 3}

    def fmt(line: Sequence[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        return "  ".join(cells).rstrip()

    lines = [f"PocMarketplace gas ({result.chain})", fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt(line) for line in body]
    lines += ["", _bytecode_line(result), f"overall: {'pass' if result.ok else 'FAIL'}"]
    return "\n".join(lines)


def format_markdown(result: BenchResult) -> str:
    """``result`` as a GitHub-flavoured table for the docs, followed by the bytecode line."""
    lines = ["| Function | Scenario | Gas used | Goal | Result |", "|---|---|---:|---:|---|"]
    for r in result.rows:
        lines.append(f"| `{r.function}` | {r.scenario} | {r.gas:,} | {_goal_text(r)} | {_result_text(r)} |")
    lines += ["", _bytecode_line(result)]
    return "\n".join(lines)


def _bytecode_line(result: BenchResult) -> str:
    share = 100 * result.bytecode_size / EIP170_LIMIT
    verdict = "pass" if result.bytecode_ok else "FAIL"
    return f"runtime bytecode: {result.bytecode_size:,} of {EIP170_LIMIT:,} bytes ({share:.1f}%): {verdict}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Parameters
    ----------
    argv
        Arguments (``sys.argv[1:]`` by default).

    Returns
    -------
    int
        0 if every goal is met, 1 if one is missed, 2 on a chain or configuration error.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rpc",
        default=None,
        help="'embedded' (default), 'anvil' (started here) or an http(s):// URL of a local dev node",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--markdown", action="store_true", help="print a Markdown table (for the docs)")
    args = parser.parse_args(argv)
    try:
        result = run_bench(args.rpc)
    except PocflError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif args.markdown:
        print(format_markdown(result))
    else:
        print(format_table(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
