"""The domain functions behind the round, trainer and chain commands, on a real chain and embedded store.

``pocfl.rounds.actions`` (submit, post, fetch, fail, show), ``pocfl.accounts`` (stakes and claims) and
``pocfl.devchain.advance_clock`` driven through a :class:`~pocfl.connection.Connection` on the session's chain: the
branches the CLI tests do not reach (failed and cancelled rounds, envelopes submitted as they are, errors raised
before anything is sent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount

from pocfl import accounts
from pocfl.chain.backends import Chain
from pocfl.chain.reverts import ContractRevert
from pocfl.chain.types import ZERO_BYTES32
from pocfl.connection import Connection
from pocfl.devchain import advance_clock
from pocfl.errors import ConfigError
from pocfl.rounds.actions import (
    RoundResults,
    check_update_file,
    fail_round,
    fetch_round,
    post_round,
    show_round,
    submit_update,
)
from pocfl.store import EmbeddedStore, ObjectNotFoundError
from pocfl.updates import (
    CorruptUpdateError,
    EncryptionKeyPair,
    ModelSpec,
    encode_update,
    encrypt_update,
    is_encrypted,
    update_commitment,
    write_safetensors,
)
from tests.helpers import Env, create_project, warp_to

pytestmark = pytest.mark.integration

SPEC = ModelSpec((("w", (3, 2), "F32"),), name="actions")
Connect = Callable[[LocalAccount], Connection]


def update_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_update({"w": rng.normal(0, 0.1, (3, 2)).astype(np.float32)}, SPEC)


@pytest.fixture
def connect(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Connect:
    """Connections to the test's chain and marketplace, one embedded store, signing as the account given."""
    shared: Chain = dataclasses.replace(env.chain, anvil=None)  # closing a connection must not stop the chain
    monkeypatch.setattr("pocfl.chain.backends.connect", lambda _rpc: shared)

    def make(account: LocalAccount) -> Connection:
        variable = f"POCFL_TEST_KEY_{account.address}"
        monkeypatch.setenv(variable, account.key.hex())
        return Connection(
            rpc_setting="embedded",
            key=variable,
            market_override=env.market.address,
            ipfs=str(tmp_path / "store"),
            deadline_margin=0,
        )

    return make


def test_update_files_no_aggregator_could_open_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.bin"
    envelope = encrypt_update(update_bytes(0), EncryptionKeyPair.generate().public_key)
    with pytest.raises(ConfigError, match="already encrypted: drop --encrypt-to"):
        check_update_file(envelope, path, b"\x01" * 32, None)
    with pytest.raises(ConfigError, match="the commitment binds the plaintext"):
        check_update_file(envelope, path, None, None)
    check_update_file(envelope, path, None, b"\x02" * 32)  # an envelope with its commitment is submitted as it is
    with pytest.raises(CorruptUpdateError, match="is not a pocfl update file"):
        check_update_file(b"not safetensors", path, None, None)
    untagged = write_safetensors({"w": np.zeros((3, 2), np.float32)})
    with pytest.raises(CorruptUpdateError, match=r"no pocfl\.format="):
        check_update_file(untagged, path, None, None)
    check_update_file(update_bytes(0), path, None, None)


def test_a_round_submitted_fetched_posted_and_shown(env: Env, connect: Connect, tmp_path: Path) -> None:
    p = create_project(env, min_trainers=2)
    t1, t2 = env.trainers[:2]
    p.register(t1, t2)
    p.start()
    key = EncryptionKeyPair.generate()
    plain = update_bytes(1)
    first = submit_update(connect(t1), p.id, None, update=(tmp_path / "u1", plain))
    assert (first.round, first.index, first.trainer, first.encrypted) == (0, 0, t1.address, False)
    assert first.commitment_computed and first.size == len(plain)
    assert first.commitment == update_commitment(
        plain, chain_id=env.chain.chain_id, market=env.market.address, project_id=p.id, round=0, trainer=t1.address
    )
    # an envelope sealed beforehand goes in as it is, with the commitment its sender gives
    sealed_plain = update_bytes(2)
    commitment = update_commitment(
        sealed_plain,
        chain_id=env.chain.chain_id,
        market=env.market.address,
        project_id=p.id,
        round=0,
        trainer=t2.address,
    )
    envelope = encrypt_update(sealed_plain, key.public_key)
    second = submit_update(connect(t2), p.id, 0, update=(tmp_path / "u2", envelope), commitment=commitment)
    assert second.encrypted and not second.commitment_computed and second.index == 1
    store = EmbeddedStore(tmp_path / "store")
    assert store.get_bytes(second.cid) == envelope and store.get_bytes(first.cid) == plain

    view = show_round(connect(env.outsider), p.id, None)
    assert (view.state, view.posted, view.failed_by) == ("open", None, None)
    assert [(s.trainer, s.stored, s.score) for s in view.submissions] == [
        (t1.address, True, None),
        (t2.address, True, None),
    ]
    assert "score" not in view.to_json()["submissions"][0]

    sealed = fetch_round(connect(env.outsider), p.id, None, tmp_path / "sealed")
    assert sealed.failed == 0 and [u.commitment_verified for u in sealed.updates] == [True, False]
    assert is_encrypted(Path(str(sealed.updates[1].file)).read_bytes())
    opened = fetch_round(connect(env.outsider), p.id, 0, tmp_path / "opened", key)
    assert [(u.decrypted, u.commitment_verified) for u in opened.updates] == [(False, True), (True, True)]
    assert Path(str(opened.updates[1].file)).read_bytes() == sealed_plain
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--out: cannot create"):
        fetch_round(connect(env.outsider), p.id, 0, blocker / "sub")

    p.close_submissions()
    aggregator = connect(env.aggregator)
    model = tmp_path / "model.safetensors"
    model.write_bytes(update_bytes(3))
    with pytest.raises(ConfigError, match="has 2 submissions but 1 scores and 2 outlier flags"):
        post_round(aggregator, p.id, None, RoundResults(scores=(1,), outliers=(False, True), model=model))
    with pytest.raises(ObjectNotFoundError, match="--report-hash"):
        post_round(aggregator, p.id, None, RoundResults(scores=(1, 0), model=model, report_hash=b"\x05" * 32))
    posting = post_round(aggregator, p.id, None, RoundResults(scores=(3, 1), model=model, report_hash=ZERO_BYTES32))
    assert posting.report_cid is None and posting.post.report_hash == ZERO_BYTES32 and not posting.finished
    assert [(c.trainer, c.score) for c in posting.credits] == [(t1.address, 3), (t2.address, 1)]
    assert sum(c.amount_wei for c in posting.credits) == posting.credited_wei > 0

    posted = show_round(connect(env.outsider), p.id, 0)
    assert posted.state == "posted" and posted.posted is not None
    assert (posted.posted.model_cid, posted.posted.model_stored) == (posting.post.model_cid, True)
    assert posted.posted.report_stored is None  # no report posted
    assert [s.score for s in posted.submissions] == [3, 1]
    assert posted.to_json()["credited_wei"] == posting.credited_wei


def test_failed_rounds_are_shown_with_who_failed_them_and_two_cancel_the_project(env: Env, connect: Connect) -> None:
    p = create_project(env, min_trainers=2, num_rounds=3)
    p.register(*env.trainers[:2])
    p.start()
    anyone = connect(env.outsider)
    with pytest.raises(ConfigError, match="has rounds 0 to 2, not 3"):
        show_round(anyone, p.id, 3)
    assert show_round(anyone, p.id, 1).state == "not reached"

    p.expire()
    first = fail_round(anyone, p.id, None)
    assert (first.round, first.cancelled, first.status) == (0, False, "active")
    failed = show_round(anyone, p.id, 0)
    assert (failed.state, failed.failed_by) == ("failed", env.outsider.address)
    assert failed.to_json()["failed_by"] == env.outsider.address
    assert show_round(anyone, p.id, None).state == "open"

    warp_to(env.chain, env.market.project(p.id).aggregation_deadline)
    second = fail_round(anyone, p.id, None)
    assert (second.round, second.cancelled, second.status) == (1, True, "cancelled")


def test_stakes_go_in_and_come_back_and_a_claim_with_nothing_owed_sends_nothing(env: Env) -> None:
    stake = 10**15
    p = create_project(env, stake=stake)
    trainer = env.funded_accounts(1)[0]
    market = env.client(trainer)
    assert accounts.claim(market) == accounts.Withdrawal(trainer.address, trainer.address, 0, None)

    paid = accounts.register(market, p.id)
    assert (paid.project_id, paid.trainer, paid.amount_wei) == (p.id, trainer.address, stake)
    refund = accounts.leave(market, p.id)
    assert refund.amount_wei == stake and refund.receipt.event("TrainerLeft")
    claimed = accounts.claim(market, env.outsider.address)
    assert (claimed.to, claimed.amount_wei) == (env.outsider.address, stake) and claimed.receipt is not None


def test_a_claim_releases_the_stakes_of_ended_projects_first(env: Env) -> None:
    """Issue 14: "withdraw with `pocfl claim`" is enough; no `pocfl release-stake N` needed before."""
    stake = 10**15
    ended, running = create_project(env, stake=stake), create_project(env, stake=2 * stake)
    trainer = env.funded_accounts(1)[0]
    market = env.client(trainer)
    accounts.register(market, ended.id)
    accounts.register(market, running.id)
    env.client(env.owner).cancel(ended.id)  # the owner cancels before the start: the project ended
    assert accounts.held_stakes(market) == [ended.id]
    claimed = accounts.claim(market)
    assert [(m.project_id, m.amount_wei) for m in claimed.released] == [(ended.id, stake)]
    assert claimed.released[0].receipt.event("StakeReleased") and claimed.receipt is not None
    assert claimed.amount_wei == stake  # the running project's stake stays held
    assert market.trainer(running.id, trainer.address).stake_held and accounts.held_stakes(market) == []
    assert accounts.claim(market) == accounts.Withdrawal(trainer.address, trainer.address, 0, None)


def test_the_clock_moves_exactly_to_a_round_point_and_never_backwards(env: Env, connect: Connect) -> None:
    conn = connect(env.outsider)
    with pytest.raises(ConfigError, match="one of them"):
        advance_clock(conn)
    with pytest.raises(ConfigError, match="one of them"):
        advance_clock(conn, 5, "start")
    with pytest.raises(ConfigError, match="--to must be one of"):
        advance_clock(conn, to="tomorrow")
    with pytest.raises(ConfigError, match="needs --project ID"):
        advance_clock(conn, to="start")
    with pytest.raises(ContractRevert, match="ProjectNotFound"):
        advance_clock(conn, to="start", project=10**6)

    p = create_project(env)
    moved = advance_clock(conn, to="start", project=p.id)
    assert moved.timestamp == moved.target == p.params.start_time == env.chain.now()
    assert moved.advanced == moved.timestamp - moved.before > 0
    still = advance_clock(conn, to=str(p.params.start_time - 10))
    assert still.timestamp == still.before and still.advanced == 0
    assert advance_clock(conn, 7).advanced >= 7
