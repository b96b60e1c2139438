"""Stateful property test of the marketplace's money invariant.

A hypothesis state machine drives random call sequences (create, allow, register, leave, submit, post,
fail, cancel, withdraw, release, claim, time jumps) from a fixed pool of accounts against one deployed
``PocMarketplace``, next to an exact Python model (:mod:`invariant_helpers`). Every call is predicted:
either it succeeds and the model applies its effects, or it must revert with exactly the custom error
(and arguments) the model names. After every step the chain must equal the model and

    balance(market) == sum(escrow) + sum(stakesHeld) + sum(credits)      (exact, in wei)

Ether paid out is checked at the recipient too (exact balance change, net of gas when it paid the gas).
Projects sometimes use the test verifier (``CommitmentRoundVerifier``, good and bad proofs), and claims or
withdrawals sometimes go to a contract that refuses ether (``TransferFailed``, the credit is kept). Every
fifth refused call is mined rather than only simulated, so failed transactions are shown to change nothing.

At the end of each sequence the machine drains the market (posts, fails or cancels every project, releases
every stake, claims every credit, withdraws every escrow) and the market must hold exactly 0 wei: nobody's
funds are stuck, and every party received exactly what it was owed.

Configuration (environment):

- ``POCFL_INVARIANT_BACKEND``: ``anvil`` (default; falls back to ``embedded`` if anvil is not installed)
  or ``embedded`` (eth-tester, several times slower).
- ``POCFL_INVARIANT_EXAMPLES``: run the long ``slow`` test with this many sequences (e.g. 2000);
  without it that test is skipped.
- ``POCFL_INVARIANT_STEPS``: steps per sequence (default 20).
- ``POCFL_INVARIANT_SEED``: a random seed instead of hypothesis' fixed derandomized one.

Measured on a 2-core machine (a sequence is up to 20 steps plus the drain): anvil ~0.13 s per sequence
(default 200 sequences ~25 s; 2000 ~4.5 min), eth-tester ~2 s (default 30 sequences ~55 s; 2000 would
take over an hour, so run the long test on anvil).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from pocfl.chain.reverts import ContractRevert
from pocfl.chain.types import ZERO_ADDRESS, ZERO_BYTES32, ProjectParams, ProjectState, RoundPost, Submission
from pocfl.errors import ConfigError

try:  # tests/ as a package, or tests/integration on sys.path (pytest's default rootdir-relative import)
    from .invariant_helpers import (
        ABI,
        ACTIVE,
        ALLOWLIST,
        OPEN,
        Driver,
        Expected,
        MarketModel,
        actual_view,
        commitment_proof,
        expected_view,
        open_driver,
        revert_matches,
    )
except ImportError:
    from invariant_helpers import (  # type: ignore[no-redef]
        ABI,
        ACTIVE,
        ALLOWLIST,
        OPEN,
        Driver,
        Expected,
        MarketModel,
        actual_view,
        commitment_proof,
        expected_view,
        open_driver,
        revert_matches,
    )

pytestmark = pytest.mark.integration

BACKEND = os.environ.get("POCFL_INVARIANT_BACKEND", "anvil")
STEPS = int(os.environ.get("POCFL_INVARIANT_STEPS", "20"))
SEED = os.environ.get("POCFL_INVARIANT_SEED")
LONG_EXAMPLES = os.environ.get("POCFL_INVARIANT_EXAMPLES")
DEFAULT_EXAMPLES = {"anvil": 200, "embedded": 30}

SINK = to_checksum_address("0x000000000000000000000000000000000000bEEF")
MAX_PROJECTS = 4
# Calls the model says must revert are checked with eth_call in the next block's context; every n-th one
# is sent and mined instead, to check that a failed transaction changes nothing.
MINE_EVERY_NTH_REVERT = 5
INT128_MIN, INT128_MAX = -(2**127), 2**127 - 1
COMMITMENTS = [bytes([i]) * 32 for i in range(1, 5)]

# Every (function, outcome) the machine saw, for the coverage assertions and the summary.
STATS: Counter[tuple[str, str]] = Counter()


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

pid_choice = st.integers(0, 7)  # mapped by _pid/_pick; 7 is always a project id that does not exist
trainer_choice = st.integers(0, 5)  # 0-4: the trainers, 5: the aggregator (it may train too)
any_account = st.integers(0, 9)
round_delta = st.sampled_from([0, 0, 0, 0, 0, 1, -1])
scores = st.lists(
    st.one_of(st.integers(-5, 50), st.sampled_from([0, INT128_MIN, INT128_MAX, 10**30, -(10**30)])),
    min_size=8,
    max_size=8,
)
outliers = st.lists(st.booleans(), min_size=8, max_size=8)
mutations = st.sampled_from(
    ["none"] * 10 + ["drop", "extra", "swap", "alter", "short_scores", "long_outliers", "empty_cid"]
)
wrong_stake = st.sampled_from([None, None, 0, 1])  # which trainer of a batch first sends a wrong stake
proofs = st.sampled_from(["good", "good", "good", "bad", "empty"])  # for projects with the test verifier
time_jump = st.sampled_from([1, 2, 3, 5, 10, 30, 100, 1_000, 100_000])


@st.composite
def project_params(draw: Any, valid: bool = False) -> dict[str, Any]:
    """Parameters of ``createProject`` (start relative to now, a role for the aggregator).

    Unless ``valid``, about one draw in three breaks exactly one rule of ``createProject``.
    """
    min_trainers = draw(st.sampled_from([1, 2, 3]))
    params = {
        "budget": draw(st.one_of(st.integers(10**6, 10**18), st.integers(1, 30), st.sampled_from([7, 10**18]))),
        "aggregator": draw(st.sampled_from(["agg", "agg", "agg", "agg", "owner", "trainer"])),
        "start_offset": draw(st.sampled_from([20, 30, 45] if valid else [20, 30, 40, 12, 2])),
        "num_rounds": draw(st.sampled_from([2, 1, 3])),
        "submission_window": draw(st.sampled_from([6, 12, 40, 6, 12, 3, 1])),
        "aggregation_window": draw(st.sampled_from([4, 1, 2, 10, 30])),
        "min_trainers": min_trainers,
        "max_trainers": min_trainers + draw(st.sampled_from([2, 0, 1, 4])),
        "mode": draw(st.sampled_from([OPEN, ALLOWLIST])),
        "stake": draw(st.sampled_from([0, 1, 3, 10**15])),
        "cid": draw(st.sampled_from(["bafyinit", "c" * 128])),
        "verifier": draw(st.sampled_from([True, False] if valid else [False, False, True])),
    }
    broken = None if valid else draw(st.sampled_from([None] * 16 + list(BREAKS)))
    if broken is not None:
        key, value = BREAKS[broken]
        params[key] = value(params) if callable(value) else value
    return params


# One way each to make createProject revert (the model names the error).
BREAKS: dict[str, tuple[str, Any]] = {
    "zero budget": ("budget", 0),
    "zero aggregator": ("aggregator", "zero"),
    "start now": ("start_offset", 0),
    "start past": ("start_offset", -1),
    "zero rounds": ("num_rounds", 0),
    "zero submission window": ("submission_window", 0),
    "zero aggregation window": ("aggregation_window", 0),
    "zero min trainers": ("min_trainers", 0),
    "min above max": ("max_trainers", lambda p: p["min_trainers"] - 1),
    "max above limit": ("max_trainers", lambda p: 513),
    "empty cid": ("cid", ""),
    "long cid": ("cid", "c" * 129),
}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def _open_backend() -> Driver:
    if BACKEND == "anvil":
        try:
            return open_driver("anvil")
        except ConfigError:  # anvil not installed: the embedded chain still runs the property
            return open_driver("embedded")
    return open_driver(BACKEND)


@pytest.fixture(scope="module")
def market_driver() -> Iterator[Driver]:
    """One chain and one deployment for the whole module; each sequence runs between snapshot and revert."""
    driver = _open_backend()
    try:
        yield driver
    finally:
        driver.close()


# ---------------------------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------------------------


class MarketMachine(RuleBasedStateMachine):
    """Random call sequences against the chain and the model, checked against each other at every step."""

    driver: ClassVar[Driver]

    def __init__(self) -> None:
        super().__init__()
        d = self.driver
        self.snapshot = d.snapshot()
        accounts = d.accounts
        self.owners = [accounts[1], accounts[2]]
        self.aggregator = accounts[3]
        self.trainers = [*accounts[4:9], self.aggregator]
        self.stranger = accounts[9]
        self.everyone = list(accounts)
        self.model = MarketModel(chain_id=d.chain_id, market=d.market, now=d.now(), rejecters=frozenset({d.rejecter}))
        self.model.balance = d.balance(d.market)
        self.sink_start = d.balance(SINK)
        self.touched: int | None = None
        self.refused = 0
        # False while a step runs: the drain in teardown only runs after a clean last step.
        self.healthy = True

    # ---- plumbing ---------------------------------------------------------------------------

    def _pid(self, choice: int) -> int:
        n = len(self.model.projects)
        if n == 0 or choice == 7:
            return n + 1
        return choice % n + 1

    def _pick(self, choice: int, *preferences: Callable[[Any], bool]) -> int:
        """Like :meth:`_pid`, but among the active projects where the call can make progress: those meeting
        the first preference that any project meets (choice 6: any project, 7: one that does not exist)."""
        if choice < 6:
            for prefer in preferences:
                pids = [pid for pid, p in self.model.projects.items() if p.status == ACTIVE and prefer(p)]
                if pids:
                    return pids[choice % len(pids)]
        return self._pid(choice)

    def _pick_trainer(self, pid: int, choice: int, prefer: Callable[[Any], bool]) -> str:
        """Trainer ``choice``, steered (unless it is 5) to one whose state in ``pid`` meets ``prefer``."""
        p = self.model.projects.get(pid)
        if p is not None and choice < 5:
            fits = [t for t in self.trainers if prefer(p.trainer(t))]
            if fits:
                return fits[choice % len(fits)]
        return self.trainers[choice]

    def _round(self, pid: int, delta: int) -> int:
        p = self.model.projects.get(pid)
        current = p.current_round if p is not None else 0
        return current + delta if current + delta >= 0 else current + 1

    def _exec(
        self,
        label: str,
        sender: str,
        data: str,
        apply: Callable[[int], Any],
        value: int = 0,
        pays: str | None = None,
        may_mine_revert: bool = True,
    ) -> tuple[bool, Any]:
        """Run one call: predicted by ``apply(ts)`` (which raises :class:`Expected` or mutates the model).

        Returns ``(succeeded, apply's result)``. ``pays``: the account that receives ether from the call,
        whose balance change is checked exactly. ``may_mine_revert``: False where the clock must not move
        if the call is refused.
        """
        self.healthy = False
        d = self.driver
        ts = self.model.now + 1
        try:
            result = apply(ts)
        except Expected as expected:
            self.refused += 1
            if self.refused % MINE_EVERY_NTH_REVERT or not may_mine_revert:
                err = d.call_market(sender, data, value, "pending", ts)
            else:  # mine it: a failed transaction must leave no trace (checked by the invariant)
                tx = d.transact(sender, data, value)
                assert tx.status == 0, f"{label}: the model expected {expected}, the transaction succeeded"
                self.model.now = ts
                err = d.call_market(sender, data, value, "latest")  # replayed in the failed block's context
            assert isinstance(err, ContractRevert), f"{label}: the model expected {expected}, the chain gave {err!r}"
            assert revert_matches(err, expected), f"{label}: the model expected {expected}, the chain reverted {err}"
            STATS[label, expected.name] += 1
            self.healthy = True
            return False, None
        before = d.balance(pays) if pays is not None else 0
        tx = d.transact(sender, data, value)
        if tx.status != 1:
            err = d.call_market(sender, data, value, "latest")
            raise AssertionError(f"{label}: the model expected success at t={ts}, the chain reverted: {err!r}")
        self.model.now = ts
        if pays is not None:
            received = d.balance(pays) - before
            fee = tx.fee if pays == sender else 0
            assert received == result - fee, f"{label}: {pays} received {received + fee} wei, expected {result}"
        STATS[label, "ok"] += 1
        self.healthy = True
        return True, result

    def _must(self, label: str, sender: str, data: str, apply: Callable[[int], Any], pays: str | None = None) -> Any:
        ok, result = self._exec(label, sender, data, apply, pays=pays)
        assert ok, f"drain: {label} was refused"
        return result

    def _mine_until(self, ts: int) -> None:
        """Mine so that the next transaction runs at timestamp ``ts`` (no-op if that moment passed)."""
        if ts - 1 > self.model.now:
            self.driver.mine_at(ts - 1)
            self.model.now = ts - 1

    # ---- owner ------------------------------------------------------------------------------

    @initialize(owner=st.integers(0, 1), params=project_params(valid=True), extra=st.integers(-1, 3), wrong=wrong_stake)
    def first_project(self, owner: int, params: dict[str, Any], extra: int, wrong: int | None) -> None:
        """Every sequence starts with a valid project and usually enough trainers for it (otherwise most
        calls would only hit ProjectNotFound or NotEnoughTrainers)."""
        self.create_project(owner, params)
        self._register_many(1, params["min_trainers"] + extra, 0, wrong)

    @rule(owner=st.integers(0, 1), params=project_params(), trainers=st.integers(0, 6), wrong=wrong_stake)
    def create_project_and_register(self, owner: int, params: dict[str, Any], trainers: int, wrong: int | None) -> None:
        """Create a project (maybe invalid) and let ``trainers`` trainers try to register right away."""
        if len(self.model.projects) >= MAX_PROJECTS:
            return
        pid = self.create_project(owner, params)
        if pid is not None and trainers:
            self._register_many(pid, trainers, trainers, wrong)

    def create_project(self, owner: int, params: dict[str, Any]) -> int | None:
        sender = self.owners[owner]
        aggregator = {
            "agg": self.aggregator,
            "owner": sender,
            "trainer": self.trainers[0],
            "zero": ZERO_ADDRESS,
        }[params["aggregator"]]
        start = self.model.now + 1 + params["start_offset"]
        verifier = self.driver.verifier if params["verifier"] else ZERO_ADDRESS
        p = ProjectParams(
            aggregator=aggregator,
            start_time=start,
            num_rounds=params["num_rounds"],
            submission_window=params["submission_window"],
            aggregation_window=params["aggregation_window"],
            min_trainers=params["min_trainers"],
            max_trainers=params["max_trainers"],
            initial_model_cid=params["cid"],
            registration_mode=params["mode"],
            stake=params["stake"],
            verifier=verifier,
        )
        data = ABI.encode("createProject", p.to_abi())

        def apply(ts: int) -> int:
            return self.model.create_project(
                ts,
                sender,
                params["budget"],
                aggregator=aggregator,
                start_time=start,
                num_rounds=p.num_rounds,
                submission_window=p.submission_window,
                aggregation_window=p.aggregation_window,
                min_trainers=p.min_trainers,
                max_trainers=p.max_trainers,
                mode=p.registration_mode,
                stake=p.stake,
                cid=p.initial_model_cid,
                verifier=verifier,
            )

        ok, pid = self._exec("createProject", sender, data, apply, value=params["budget"])
        if ok:
            self.touched = pid
        return pid if ok else None

    @rule(pid=pid_choice, by_owner=st.booleans(), who=st.lists(trainer_choice, max_size=4))
    def allow_trainers(self, pid: int, by_owner: bool, who: list[int]) -> None:
        pid = self._pick(pid, lambda p: p.mode == ALLOWLIST and self.model.now + 1 < p.start_time)
        p = self.model.projects.get(pid)
        sender = p.owner if p is not None and by_owner else self.stranger
        addrs = [self.trainers[i] for i in who]
        data = ABI.encode("allowTrainers", pid, addrs)
        self._exec("allowTrainers", sender, data, lambda ts: self.model.allow_trainers(ts, sender, pid, addrs))
        self.touched = pid

    @rule(pid=pid_choice, caller=st.sampled_from(["stranger", "owner", "trainer"]))
    def cancel(self, pid: int, caller: str) -> None:
        pid = self._pick(pid, lambda p: True)
        p = self.model.projects.get(pid)
        sender = {"owner": p.owner if p else self.owners[0], "stranger": self.stranger, "trainer": self.trainers[1]}[
            caller
        ]
        self._exec("cancel", sender, ABI.encode("cancel", pid), lambda ts: self.model.cancel(ts, sender, pid))
        self.touched = pid

    @rule(
        pid=pid_choice,
        by_owner=st.sampled_from([True, True, True, False]),
        to=st.sampled_from(["self", "sink", "zero", "rejecter"]),
    )
    def withdraw_remaining(self, pid: int, by_owner: bool, to: str) -> None:
        pid = self._pid(pid)
        p = self.model.projects.get(pid)
        sender = p.owner if p is not None and by_owner else self.stranger
        dest = {"self": sender, "sink": SINK, "zero": ZERO_ADDRESS, "rejecter": self.driver.rejecter}[to]
        data = ABI.encode("withdrawRemaining", pid, dest)
        pays = dest if to in ("self", "sink") else None
        self._exec(
            "withdrawRemaining",
            sender,
            data,
            lambda ts: self.model.withdraw_remaining(ts, sender, pid, dest),
            pays=pays,
        )
        self.touched = pid

    # ---- trainers ---------------------------------------------------------------------------

    @rule(pid=pid_choice, trainer=trainer_choice, stake=st.sampled_from(["ok", "ok", "ok", "ok", "plus", "minus"]))
    def register(self, pid: int, trainer: int, stake: str) -> None:
        pid = self._pick(pid, lambda p: self.model.now + 1 < p.start_time)
        p = self.model.projects.get(pid)
        expected = p.stake if p is not None else 0
        value = {"ok": expected, "plus": expected + 1, "minus": expected - 1 if expected > 0 else expected + 2}[stake]
        open_ = p is not None and p.mode == OPEN
        sender = self._pick_trainer(pid, trainer, lambda t: not t.registered and (open_ or t.allowed))
        data = ABI.encode("register", pid)
        self._exec("register", sender, data, lambda ts: self.model.register(ts, sender, pid, value), value=value)
        self.touched = pid

    @rule(pid=pid_choice, count=st.integers(1, 6), first=trainer_choice, wrong=wrong_stake)
    def register_many(self, pid: int, count: int, first: int, wrong: int | None) -> None:
        """The owner allowlists (if needed), then several trainers register (one first with a wrong stake)."""
        self._register_many(self._pick(pid, lambda p: self.model.now + 1 < p.start_time), count, first, wrong)

    def _register_many(self, pid: int, count: int, first: int, wrong: int | None = None) -> None:
        p = self.model.projects.get(pid)
        if p is None or p.status != ACTIVE:
            return
        who = [self.trainers[(first + i) % len(self.trainers)] for i in range(count)]
        if p.mode == ALLOWLIST:
            data = ABI.encode("allowTrainers", pid, who)
            self._exec("allowTrainers", p.owner, data, lambda ts: self.model.allow_trainers(ts, p.owner, pid, who))
        for i, sender in enumerate(who):
            data = ABI.encode("register", pid)
            values = [p.stake + 1, p.stake] if i == wrong else [p.stake]
            for v in values:
                self._exec(
                    "register", sender, data, partial(self.model.register, sender=sender, pid=pid, value=v), value=v
                )
        self.touched = pid

    @rule(pid=pid_choice, trainer=trainer_choice)
    def leave(self, pid: int, trainer: int) -> None:
        pid = self._pick(pid, lambda p: self.model.now + 1 < p.start_time and p.trainer_count > 0)
        sender = self._pick_trainer(pid, trainer, lambda t: t.registered)
        self._exec("leave", sender, ABI.encode("leave", pid), lambda ts: self.model.leave(ts, sender, pid))
        self.touched = pid

    @rule(
        pid=pid_choice,
        trainer=trainer_choice,
        delta=round_delta,
        cid=st.sampled_from(["bafyupdate"] * 6 + ["", "u" * 129, "u" * 128]),
        commitment=st.sampled_from(COMMITMENTS),
        feature=st.sampled_from([ZERO_BYTES32, b"\xff" * 32]),
    )
    def submit(self, pid: int, trainer: int, delta: int, cid: str, commitment: bytes, feature: bytes) -> None:
        pid = self._pick(pid, lambda p: p.trainer_count >= p.min_trainers)
        round_ = self._round(pid, delta)
        p = self.model.projects.get(pid)
        current = p.current_round if p is not None else 0
        sender = self._pick_trainer(pid, trainer, lambda t: t.registered and t.last_submitted_round_plus_one <= current)
        data = ABI.encode("submit", pid, round_, cid, commitment, feature)
        self._exec(
            "submit",
            sender,
            data,
            lambda ts: self.model.submit(ts, sender, pid, round_, cid, commitment, feature),
        )
        self.touched = pid

    @rule(pid=pid_choice, count=st.integers(1, 6), commitment=st.sampled_from(COMMITMENTS))
    def submit_many(self, pid: int, count: int, commitment: bytes) -> None:
        """Several registered trainers submit for the current round (waiting for it to open if needed)."""
        self._submit_many(self._pick(pid, lambda p: p.trainer_count >= p.min_trainers), count, commitment)

    def _submit_many(self, pid: int, count: int, commitment: bytes) -> None:
        p = self.model.projects.get(pid)
        if p is None or p.status != ACTIVE:
            return
        self._mine_until(p.round_opened_at)
        registered = [t for t in self.trainers if p.trainer(t).registered][:count]
        for i, sender in enumerate(registered):
            round_ = p.current_round
            c = bytes([commitment[0] + i]) * 32
            data = ABI.encode("submit", pid, round_, "bafyupdate", c, ZERO_BYTES32)
            self._exec(
                "submit",
                sender,
                data,
                partial(
                    self.model.submit,
                    sender=sender,
                    pid=pid,
                    round_=round_,
                    cid="bafyupdate",
                    commitment=c,
                    feature_commitment=ZERO_BYTES32,
                ),
            )
        self.touched = pid

    @rule(
        pid=pid_choice,
        count=st.integers(1, 6),
        scores=scores,
        outliers=outliers,
        at=st.sampled_from([0, 1, -1, -2]),
        mutation=st.sampled_from(
            ["none", "alter", "swap", "drop", "extra", "short_scores", "long_outliers", "empty_cid"]
        ),
        proof=proofs,
    )
    def play_round(
        self, pid: int, count: int, scores: list[int], outliers: list[bool], at: int, mutation: str, proof: str
    ) -> None:
        """A whole round: up to ``count`` trainers submit, then the aggregator posts (a wrong post first,
        unless ``mutation`` is ``"none"`` and ``proof`` is ``"good"``) when the aggregation window opens
        (``at`` 0), one second in (1), in its last second (-2) or one second too late (-1)."""
        pid = self._pick(pid, lambda p: p.trainer_count >= p.min_trainers)
        p = self.model.projects.get(pid)
        if p is None or p.status != ACTIVE:
            return
        if self.model.now + 1 >= max(p.aggregation_deadline, p.start_time):
            # The round is overdue: anyone fails it, which opens the next one now (or ends the project).
            r, who = p.current_round, self.stranger
            data = ABI.encode("failRound", pid, r)
            self._exec("failRound", who, data, lambda ts: self.model.fail_round(ts, who, pid, r))
            if p.status != ACTIVE:
                return
        self._submit_many(pid, count, COMMITMENTS[count % len(COMMITMENTS)])
        when = p.submission_deadline + at if at >= 0 else p.aggregation_deadline + at + 1
        self._mine_until(when)
        round_ = p.current_round
        for m, pr in dict.fromkeys([(mutation, proof), ("none", "good")]):  # a wrong post first, if any
            self._post(p.aggregator, pid, round_, self._round_post(p.submissions, scores, outliers, m), pr)

    @rule(pid=pid_choice, trainer=trainer_choice)
    def release_stake(self, pid: int, trainer: int) -> None:
        pid = self._pid(pid)
        sender = self._pick_trainer(pid, trainer, lambda t: t.stake_held)
        data = ABI.encode("releaseStake", pid)
        self._exec("releaseStake", sender, data, lambda ts: self.model.release_stake(ts, sender, pid))
        self.touched = pid

    @rule(
        account=st.one_of(trainer_choice.map(lambda i: ("trainer", i)), any_account.map(lambda i: ("any", i))),
        to=st.sampled_from(["self", "self", "sink", "other", "zero", "rejecter"]),
    )
    def claim(self, account: tuple[str, int], to: str) -> None:
        sender = self.everyone[account[1]]
        if account[0] == "trainer":  # steered to an account with credits, if any
            owed = [t for t in self.trainers if self.model.credits.get(t, 0)]
            sender = owed[account[1] % len(owed)] if owed else self.trainers[account[1]]
        if to == "self":
            data = ABI.encode("claim")
            self._exec("claim", sender, data, lambda ts: self.model.claim(ts, sender, None), pays=sender)
            return
        dest = {"sink": SINK, "other": self.stranger, "zero": ZERO_ADDRESS, "rejecter": self.driver.rejecter}[to]
        data = ABI.encode("claimTo", dest)
        pays = dest if to in ("sink", "other") else None
        self._exec("claimTo", sender, data, lambda ts: self.model.claim(ts, sender, dest), pays=pays)

    # ---- aggregator and anyone ----------------------------------------------------------------

    def _post(
        self, sender: str, pid: int, round_: int, post: RoundPost, proof: str = "good", may_mine_revert: bool = True
    ) -> bool:
        """Send ``postRound`` with a ``good`` proof for the project's test verifier, a ``bad`` one or none."""
        p = self.model.projects.get(pid)
        digest = p.digest if p is not None else ZERO_BYTES32
        proof_bytes = {
            "good": commitment_proof(pid, round_, digest, post.scores, post.outliers),
            "bad": b"\x5a" * 32,
            "empty": b"",
        }[proof]
        data = ABI.encode("postRound", pid, round_, post.to_abi(), proof_bytes)
        ok, _ = self._exec(
            "postRound",
            sender,
            data,
            lambda ts: self.model.post_round(ts, sender, pid, round_, post, proof_bytes),
            may_mine_revert=may_mine_revert,
        )
        self.touched = pid
        return ok

    def _round_post(self, subs: list[Submission], scores: list[int], outliers: list[bool], mutation: str) -> RoundPost:
        """The results for submissions ``subs``, made wrong in one way unless ``mutation`` is ``"none"``."""
        subs = list(subs)
        fake = Submission(self.stranger, COMMITMENTS[0], ZERO_BYTES32)
        cid = "bafymodel"
        if mutation == "drop":
            subs = subs[:-1] if subs else [fake]
        elif mutation == "extra":
            subs = [*subs, fake]
        elif mutation == "swap" and len(subs) >= 2 and subs[0] != subs[1]:
            subs[0], subs[1] = subs[1], subs[0]
        elif mutation in ("alter", "swap") and subs:
            s = subs[-1]
            subs[-1] = Submission(s.trainer, b"\xee" * 32, s.feature_commitment)
        elif mutation == "empty_cid":
            cid = ""
        n = len(subs)
        sc, ol = list(scores[:n]), list(outliers[:n])
        while len(sc) < n:
            sc.append(1)
        while len(ol) < n:
            ol.append(False)
        if mutation == "short_scores":
            sc = sc[:-1] if sc else [1]
        elif mutation == "long_outliers":
            ol = [*ol, False]
        return RoundPost(model_cid=cid, submissions=tuple(subs), scores=tuple(sc), outliers=tuple(ol))

    @rule(
        pid=pid_choice,
        sender=st.sampled_from(["agg"] * 6 + ["stranger", "owner"]),
        delta=round_delta,
        scores=scores,
        outliers=outliers,
        mutation=mutations,
        wait=st.sampled_from([0, 1, None, -1]),
        proof=proofs,
    )
    def post_round(
        self,
        pid: int,
        sender: str,
        delta: int,
        scores: list[int],
        outliers: list[bool],
        mutation: str,
        wait: int | None,
        proof: str,
    ) -> None:
        """The aggregator (or an impostor) posts, after optionally waiting for (or near) the window."""
        pid = self._pick(pid, lambda p: bool(p.submissions), lambda p: p.trainer_count >= p.min_trainers)
        p = self.model.projects.get(pid)
        caller = {
            "agg": p.aggregator if p is not None else self.aggregator,
            "stranger": self.stranger,
            "owner": p.owner if p is not None else self.owners[0],
        }[sender]
        if p is not None and p.status == ACTIVE and wait is not None:
            # wait 0: post exactly when the window opens; 1: one second in; -1: one second too early.
            self._mine_until(p.submission_deadline + wait)
        round_ = self._round(pid, delta)
        subs = list(p.submissions) if p is not None else []
        self._post(caller, pid, round_, self._round_post(subs, scores, outliers, mutation), proof)

    @rule(pid=pid_choice, caller=any_account, delta=round_delta, wait=st.sampled_from([None, None, 0, -1]))
    def fail_round(self, pid: int, caller: int, delta: int, wait: int | None) -> None:
        pid = self._pick(pid, lambda p: True)
        p = self.model.projects.get(pid)
        if p is not None and p.status == ACTIVE and wait is not None:
            self._mine_until(p.aggregation_deadline + wait)
        round_ = self._round(pid, delta)
        sender = self.everyone[caller]
        data = ABI.encode("failRound", pid, round_)
        self._exec("failRound", sender, data, lambda ts: self.model.fail_round(ts, sender, pid, round_))
        self.touched = pid

    @rule(seconds=time_jump)
    def advance_time(self, seconds: int) -> None:
        self._mine_until(self.model.now + 1 + seconds)

    @rule(pid=pid_choice, boundary=st.sampled_from(["start", "submission", "aggregation"]), delta=st.integers(-1, 1))
    def advance_to_boundary(self, pid: int, boundary: str, delta: int) -> None:
        """Move the clock so the next call runs at a deadline of a project, or one second either side."""
        p = self.model.projects.get(self._pid(pid))
        if p is None:
            return
        at = {"start": p.start_time, "submission": p.submission_deadline, "aggregation": p.aggregation_deadline}
        self._mine_until(at[boundary] + delta)

    # ---- invariants -------------------------------------------------------------------------

    @invariant()
    def chain_matches_model(self) -> None:
        self.healthy = False
        self._check()
        self.healthy = True

    def _check(self) -> None:
        d, m = self.driver, self.model
        pids = sorted(m.projects)
        accounts = [*self.everyone, SINK]
        queries: list[tuple[str, str]] = [
            ("block", "latest"),
            ("balance", d.market),
            ("balance", SINK),
            (d.market, ABI.encode_cached("projectCount")),
        ]
        queries += [(d.market, ABI.encode_cached("getProject", pid)) for pid in pids]
        queries += [(d.market, ABI.encode_cached("credits", a)) for a in accounts]
        touched = self.touched if self.touched in m.projects else None
        if touched is not None:
            queries += [(d.market, ABI.encode_cached("getTrainer", touched, t)) for t in self.trainers]
        results = d.read(queries)
        now, balance, sink, count = results[:4]
        results = results[4:]
        views = [
            ProjectState.from_abi(pid, ABI.decode("getProject", raw)) for pid, raw in zip(pids, results, strict=False)
        ]
        results = results[len(pids) :]
        credits = {a: int(ABI.decode("credits", raw)) for a, raw in zip(accounts, results, strict=False)}
        trainer_views = results[len(accounts) :]

        assert now == m.now, f"block time {now} != model {m.now}"
        assert ABI.decode("projectCount", count) == len(pids)
        # The money invariant, from chain state alone ...
        on_chain = sum(v.escrow + v.stakes_held for v in views) + sum(credits.values())
        assert balance == on_chain, f"money invariant broken: balance {balance} != liabilities {on_chain}"
        # ... and against the model, which tracks every wei in and out independently.
        assert balance == m.balance == m.liabilities(), (balance, m.balance, m.liabilities())
        assert sink - self.sink_start == m.paid.get(SINK, 0)
        for view in views:
            p = m.projects[view.project_id]
            got, want = actual_view(view), expected_view(m, p)
            diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
            assert not diff, f"project {view.project_id} differs from the model (chain, model): {diff}"
        for a in accounts:
            assert credits[a] == m.credits.get(a, 0), f"credits of {a}: chain {credits[a]}, model {m.credits.get(a, 0)}"
        if touched is not None:
            p = m.projects[touched]
            for t, raw in zip(self.trainers, trainer_views, strict=True):
                mt = p.trainer(t)
                flags = (
                    mt.allowed,
                    mt.registered,
                    mt.stake_held,
                    mt.last_submitted_round_plus_one == p.current_round + 1,
                )
                assert tuple(ABI.decode("getTrainer", raw)) == flags, f"trainer {t} in project {touched}"

    # ---- drain ------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.healthy:
                self._drain()
        finally:
            self.driver.revert(self.snapshot)

    def _drain_post(self, p: Any) -> None:
        """Finish the current round properly: every registered trainer that still can submits, then the
        aggregator posts scores 1, 2, 3, ... in its window."""
        m, pid, r = self.model, p.project_id, p.current_round
        self._mine_until(p.round_opened_at)
        for i, t in enumerate(self.trainers):
            mt = p.trainer(t)
            if mt.registered and mt.last_submitted_round_plus_one != r + 1 and m.now + 1 < p.submission_deadline:
                c = bytes([0x40 + i]) * 32
                data = ABI.encode("submit", pid, r, "bafydrain", c, ZERO_BYTES32)
                apply = partial(
                    m.submit,
                    sender=t,
                    pid=pid,
                    round_=r,
                    cid="bafydrain",
                    commitment=c,
                    feature_commitment=ZERO_BYTES32,
                )
                self._must("submit", t, data, apply)
        self._mine_until(p.submission_deadline)
        subs = tuple(p.submissions)
        post = RoundPost("bafydrain", subs, tuple(range(1, len(subs) + 1)), (False,) * len(subs))
        if self.stranger != p.aggregator:  # only the aggregator may post
            assert not self._post(self.stranger, pid, r, post, may_mine_revert=False)
        if subs:  # a list that does not hash to the recorded digest must be refused
            altered = self._round_post(list(subs), list(post.scores), list(post.outliers), "alter")
            assert not self._post(p.aggregator, pid, r, altered, may_mine_revert=False)
        if p.verifier != ZERO_ADDRESS:  # and so must a proof of other results
            assert not self._post(p.aggregator, pid, r, post, "bad", may_mine_revert=False)
        assert self._post(p.aggregator, pid, r, post), "drain: postRound was refused"

    def _drain(self) -> None:
        """End every project, release every stake, claim every credit, withdraw every escrow: 0 wei left."""
        m = self.model
        for p in m.projects.values():
            self._end_project(p)
        for p in m.projects.values():
            for t in self.trainers:
                if p.trainer(t).stake_held:
                    self._release_stake(p.project_id, t)
        self._check()
        for i, a in enumerate(self.everyone):
            if m.credits.get(a, 0):
                self._claim_all(a, SINK if i % 2 else None)
        for p in m.projects.values():
            if p.escrow:
                self._withdraw_escrow(p.project_id, p.owner)
        self._check()
        assert self.driver.balance(self.driver.market) == 0, "funds stuck in the market"
        assert m.total_in == m.total_out
        STATS["drain", "ok"] += 1

    def _end_project(self, p: Any) -> None:
        """Cancel an undersubscribed project; otherwise post or fail its rounds until it is over."""
        m, pid, stranger = self.model, p.project_id, self.stranger
        self.touched = pid
        for _ in range(3 * p.num_rounds + 3):
            if p.status != ACTIVE:
                break
            self._mine_until(p.start_time)
            if p.trainer_count < p.min_trainers:
                self._must("cancel", stranger, ABI.encode("cancel", pid), lambda ts: m.cancel(ts, stranger, pid))
            elif (pid + p.current_round) % 2 and m.now + 1 < p.aggregation_deadline:
                self._drain_post(p)
            else:
                self._mine_until(p.aggregation_deadline)
                r = p.current_round
                data = ABI.encode("failRound", pid, r)
                self._must("failRound", stranger, data, partial(m.fail_round, sender=stranger, pid=pid, round_=r))
        assert p.status != ACTIVE, f"project {pid} could not be ended"
        self._check()

    def _release_stake(self, pid: int, trainer: str) -> None:
        data = ABI.encode("releaseStake", pid)
        self._must("releaseStake", trainer, data, lambda ts: self.model.release_stake(ts, trainer, pid))

    def _claim_all(self, account: str, to: str | None) -> None:
        # A destination that refuses ether must not cost the credit: the claim after it still gets all.
        rejecter = self.driver.rejecter
        data = ABI.encode("claimTo", rejecter)
        refused, _ = self._exec("claimTo", account, data, lambda ts: self.model.claim(ts, account, rejecter))
        assert not refused
        if to is None:
            data = ABI.encode("claim")
            self._must("claim", account, data, lambda ts: self.model.claim(ts, account, None), pays=account)
        else:
            data = ABI.encode("claimTo", to)
            self._must("claimTo", account, data, lambda ts: self.model.claim(ts, account, to), pays=to)

    def _withdraw_escrow(self, pid: int, owner: str) -> None:
        data = ABI.encode("withdrawRemaining", pid, owner)
        apply = partial(self.model.withdraw_remaining, sender=owner, pid=pid, to=owner)
        self._must("withdrawRemaining", owner, data, apply, pays=owner)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

# Outcomes a run of 100+ sequences must reach (the machine would pass vacuously if, say, no post ever
# succeeded); a shorter run (the embedded default) checks the first ones only.
MUST_SEE_FEW = 6
MUST_SEE = [
    ("createProject", "ok"),
    ("register", "ok"),
    ("submit", "ok"),
    ("postRound", "ok"),
    ("claim", "ok"),
    ("drain", "ok"),
    ("allowTrainers", "ok"),
    ("leave", "ok"),
    ("failRound", "ok"),
    ("cancel", "ok"),
    ("withdrawRemaining", "ok"),
    ("releaseStake", "ok"),
    ("claimTo", "ok"),
    ("register", "WrongStake"),
    ("submit", "SubmissionWindowClosed"),
    ("postRound", "SubmissionsMismatch"),
    ("postRound", "NotAggregator"),
    ("postRound", "ProofRejected"),
    ("claimTo", "TransferFailed"),
    ("claim", "NothingToWithdraw"),
]


def _run(driver: Driver, examples: int) -> Counter[tuple[str, str]]:
    STATS.clear()
    MarketMachine.driver = driver
    factory: Any = MarketMachine
    if SEED is not None:
        factory = hypothesis_seed(int(SEED))(lambda: MarketMachine())
    started = time.perf_counter()
    run_state_machine_as_test(
        factory,
        settings=settings(
            max_examples=examples,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=SEED is None,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    elapsed = time.perf_counter() - started
    ok_calls = sum(n for (_, outcome), n in STATS.items() if outcome == "ok")
    reverts = sum(n for (_, outcome), n in STATS.items() if outcome != "ok")
    print(
        f"\n[money invariant] backend={driver.name} sequences={examples} steps<={STEPS} "
        f"time={elapsed:.1f}s calls ok={ok_calls} predicted reverts={reverts} drained={STATS['drain', 'ok']}"
    )
    for (fn, outcome), n in sorted(STATS.items()):
        print(f"  {fn:18} {outcome:26} {n}")
    return STATS.copy()


def test_money_invariant(market_driver: Driver) -> None:
    """A few hundred random sequences: exact money invariant after every step, nothing stuck at the end."""
    examples = DEFAULT_EXAMPLES[market_driver.name]
    stats = _run(market_driver, examples)
    if SEED is None:
        must_see = MUST_SEE if examples >= 100 else MUST_SEE[:MUST_SEE_FEW]
        missing = [key for key in must_see if not stats[key]]
        assert not missing, f"the random sequences never reached {missing}"


@pytest.mark.slow
@pytest.mark.timeout(0)
@pytest.mark.skipif(LONG_EXAMPLES is None, reason="set POCFL_INVARIANT_EXAMPLES (e.g. 2000) for the long run")
def test_money_invariant_thousands(market_driver: Driver) -> None:
    """The long run: ``POCFL_INVARIANT_EXAMPLES=2000 pytest -m slow tests/integration/test_money_invariant.py``."""
    stats = _run(market_driver, int(LONG_EXAMPLES or 0))
    missing = [key for key in MUST_SEE if not stats[key]]
    assert not missing, f"the random sequences never reached {missing}"
