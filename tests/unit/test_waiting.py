"""The waiting core: capped backoff, one line per state change, outages told from errors, the deadline margin."""

from __future__ import annotations

import pytest
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from pocfl.chain.contract_errors import RoundNotOpen
from pocfl.errors import ChainError, ChainUnavailableError, ConfigError, PocflError
from pocfl.store import ObjectNotFoundError, StoreUnavailableError
from pocfl.waiting import (
    MAX_BACKOFF,
    Backoff,
    DeadlineTooCloseError,
    StatusLine,
    check_deadline,
    clock_lag_hint,
    is_transient,
    retry_transient,
    start_when_up,
)

pytestmark = pytest.mark.unit


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(0.5, cap=4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
    assert Backoff().cap == MAX_BACKOFF
    with pytest.raises(ValueError):
        Backoff(2.0, cap=1.0)


def test_status_line_says_each_state_once() -> None:
    said: list[str] = []
    status = StatusLine(said.append)
    for left in (30, 25, 20):  # the awaited state is the same; its counter changes
        status("round 0 submissions", f"round 0: waiting for submissions ({left} s left)")
    status("round 0 post", "round 0: waiting for the aggregator")
    status("round 0 post", "round 0: waiting for the aggregator")
    status.clear()
    status("round 0 post", "round 0: waiting for the aggregator")
    assert said == [
        "round 0: waiting for submissions (30 s left)",
        "round 0: waiting for the aggregator",
        "round 0: waiting for the aggregator",
    ]


def test_outages_are_transient_errors_are_not() -> None:
    for outage in (
        StoreUnavailableError("node down"),
        ConnectionRefusedError(),
        TimeoutError(),
        ReadTimeout(),
        RequestsConnectionError("chain gone"),
        ChainUnavailableError("nothing answers at http://127.0.0.1:8545"),
    ):
        assert is_transient(outage), outage
    # A revert, a missing object, a named error or a bug: retrying changes nothing.
    for error in (RoundNotOpen.__new__(RoundNotOpen), ObjectNotFoundError("bafy", "x"), PocflError("x"), ValueError()):
        assert not is_transient(error), error


def test_retry_transient_outlasts_an_outage_and_says_so_once() -> None:
    failures = iter([StoreUnavailableError("down")] * 7)
    waits: list[float] = []
    said: list[str] = []

    def fetch() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "bytes"

    status = StatusLine(said.append)
    assert retry_transient("fetch the model", fetch, sleep=waits.append, status=status) == "bytes"
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert len(said) == 2 and said[0].startswith("waiting out an outage (fetch the model): StoreUnavailableError")
    assert said[1] == "fetch the model: back after 7 failed attempt(s)"


def test_retry_transient_raises_errors_at_once_and_outages_after_its_attempts() -> None:
    waits: list[float] = []
    status = StatusLine(lambda _text: None)

    def broken() -> None:
        raise ChainError("reverted")

    with pytest.raises(ChainError):
        retry_transient("post", broken, sleep=waits.append, status=status)
    assert waits == []

    def down() -> None:
        raise StoreUnavailableError("down")

    with pytest.raises(StoreUnavailableError):
        retry_transient("store", down, sleep=waits.append, status=status, attempts=3)
    assert waits == [0.5, 1.0]


def test_a_deadline_within_the_margin_refuses_the_transaction() -> None:
    check_deadline(now=100, deadline=105, margin=4, what="submit")  # 5 s left: sent
    for now in (101, 104, 110):
        with pytest.raises(DeadlineTooCloseError, match="not sent: submit must be mined before"):
            check_deadline(now=now, deadline=105, margin=4, what="submit")
    assert issubclass(DeadlineTooCloseError, ChainError)


def test_a_lagging_chain_clock_is_named_in_the_waiting_line() -> None:
    assert clock_lag_hint(1_000, wall=1_010) == ""
    assert "is the node mining?" in clock_lag_hint(1_000, wall=1_100)


def test_startup_waits_out_a_long_outage_and_still_exits_on_a_real_error() -> None:
    outage = [ChainUnavailableError("no chain answers")] * 20 + [StoreUnavailableError("node booting")] * 5
    failures = iter(outage)
    waits: list[float] = []
    said: list[str] = []

    def connect() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "connected"

    # more failures than any attempt limit of the loops: startup has none
    assert start_when_up("connect", connect, say=said.append, sleep=waits.append) == "connected"
    assert len(waits) == 25 and max(waits) == MAX_BACKOFF
    assert [line.split(":")[1].strip() for line in said[:2]] == ["ChainUnavailableError", "StoreUnavailableError"]
    assert said[-1] == "connect: back after 25 failed attempt(s)" and len(said) == 3

    def misconfigured() -> None:
        raise ConfigError("no deployment on chain 31337")

    with pytest.raises(ConfigError):
        start_when_up("connect", misconfigured, say=said.append, sleep=waits.append)
    assert len(waits) == 25
