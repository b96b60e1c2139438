"""The trainer keeps the plaintext of rounds in flight, bounded, and only hands back bytes that open its commitment."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pocfl.updates import update_commitment
from trainer_client.self_check import KEPT_ROUNDS, PlaintextKeeper

pytestmark = pytest.mark.unit

MARKET = "0x" + "cd" * 20
TRAINER = "0x" + "ab" * 20


def keeper(tmp_path: Path) -> PlaintextKeeper:
    client = SimpleNamespace(chain=SimpleNamespace(chain_id=5), address=MARKET, sender=TRAINER)
    market: Any = SimpleNamespace(client=client)
    return PlaintextKeeper(tmp_path / "pending", market, 9)


def commitment(data: bytes, round_: int) -> bytes:
    return update_commitment(data, chain_id=5, market=MARKET, project_id=9, round=round_, trainer=TRAINER)


def test_kept_plaintext_must_open_the_commitment_and_be_small_enough(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    k.keep(0, b"round zero")
    assert k.kept(0, commitment(b"round zero", 0), 100) == b"round zero"
    assert k.kept(0, commitment(b"other bytes", 0), 100) is None
    assert k.kept(0, commitment(b"round zero", 0), 4) is None
    assert k.kept(1, commitment(b"round zero", 1), 100) is None  # nothing kept for round 1
    k.forget(0)
    assert list((tmp_path / "pending").iterdir()) == []


def test_rounds_never_checked_do_not_pile_up(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    for r in range(12):
        k.keep(r, f"round {r}".encode())
    kept = sorted(int(p.name.split("-r")[1].split("-")[0]) for p in (tmp_path / "pending").iterdir())
    assert kept == list(range(11 - KEPT_ROUNDS, 12))


@pytest.mark.parametrize("transient", [True, False])
def test_a_store_outage_is_waited_out_not_filed_as_a_complaint(
    monkeypatch: pytest.MonkeyPatch, transient: bool
) -> None:
    from pocfl.chain.types import EventRecord
    from pocfl.rounds.report import ReportError
    from pocfl.store.errors import StoreUnavailableError
    from trainer_client import self_check

    error = StoreUnavailableError("the IPFS node did not answer") if transient else ReportError("not a report")

    def unreadable(market: object, posted: object) -> None:
        raise error

    monkeypatch.setattr(self_check, "posted_report", unreadable)
    args = {"round": 0, "modelCid": "bafy", "reportHash": b"\x01" * 32, "hyperparamsHash": b"\x02" * 32, "credited": 0}
    event = EventRecord(name="RoundPosted", args=args, block_number=1, tx_hash="0x00", log_index=0)
    if transient:  # the trainer's loop backs off and checks the round again once the store is back
        with pytest.raises(StoreUnavailableError):
            self_check.submission_entry(object(), 0, event, "0x" + "ab" * 20)  # type: ignore[arg-type]
    else:
        entry, reason = self_check.submission_entry(object(), 0, event, "0x" + "ab" * 20)  # type: ignore[arg-type]
        assert entry is None and "cannot be read (ReportError)" in reason
