"""A trainer contract that re-enters ``claim``/``claimTo`` from its ``receive`` gets nothing extra.

ReentrantCall can only be raised inside a transfer, where ReentrantClaimer swallows it; the effects
(exactly one payout, no credit lost or duplicated) are checked on every backend, and on anvil the call
trace shows the inner call reverted with ReentrantCall itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from pocfl.chain import contract_errors as E  # noqa: N812 - short name for the many error classes
from pocfl.chain.client import ContractClient
from pocfl.chain.reverts import decode_revert_data
from pocfl.chain.types import RoundPost
from tests.helpers import MODEL_CID, Env, Project, create_project, reverts

pytestmark = pytest.mark.integration

ETH = 10**18
ATTACK_GAS = 1_000_000  # fixed, so an estimate can never starve the re-entry of gas


def earning_claimer(env: Env, stake: int = 0) -> tuple[ContractClient, Project, int]:
    """A ReentrantClaimer that earned 3/4 of a 1-ether round next to an honest trainer."""
    claimer = env.deploy_helper("ReentrantClaimer")
    p = create_project(env, budget=ETH, num_rounds=1, stake=stake)
    claimer.transact(claimer.contract.functions.register(p.id), value=stake)
    p.register(env.trainers[0])
    p.start()
    claimer.transact(claimer.contract.functions.submit(p.id, 0, "bafy-attacker", b"\x0a" * 32))
    p.submit(env.trainers[0])
    p.close_submissions()
    subs = env.market.submissions(p.id, 0)
    env.client(env.aggregator).post_round(p.id, 0, RoundPost(MODEL_CID, tuple(subs), (3, 1), (False, False)))
    owed = 3 * ETH // 4
    assert env.market.credits(claimer.address) == owed
    return claimer, p, owed


def failed_calls_to(trace: dict[str, Any], address: str) -> list[dict[str, Any]]:
    """Calls into ``address`` anywhere in a callTracer trace that reverted."""
    found = []
    if Web3.to_checksum_address(trace.get("to", "0x" + "00" * 20)) == address and "error" in trace:
        found.append(trace)
    for sub in trace.get("calls", []):
        found.extend(failed_calls_to(sub, address))
    return found


def assert_reentry_hit_the_lock(env: Env, tx_hash: str) -> None:
    if env.chain.kind != "rpc":
        return  # eth-tester cannot trace; the balance checks stand on their own there
    trace = env.chain.control.rpc("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
    failed = failed_calls_to(trace, env.market.address)
    assert len(failed) == 1
    assert isinstance(decode_revert_data(bytes.fromhex(failed[0]["output"][2:])), E.ReentrantCall)


@pytest.mark.parametrize("via_claim_to", [False, True], ids=["claim", "claimTo"])
def test_reentrant_claim_gets_nothing_extra(env: Env, via_claim_to: bool) -> None:
    stake = 10**16
    claimer, p, owed = earning_claimer(env, stake)
    assert p.state().escrow == 0  # the round was fully credited: the marketplace holds only what is owed
    claimer.transact(claimer.contract.functions.releaseStake(p.id))
    owed += stake
    assert env.market.credits(claimer.address) == owed
    market_before = env.market.balance()
    assert market_before == owed + ETH // 4 + stake  # the honest trainer's share and stake are there to steal

    receipt = claimer.transact(claimer.contract.functions.attack(via_claim_to), gas=ATTACK_GAS)

    fns = claimer.contract.functions
    assert fns.reentryAttempts().call() == 1  # receive ran and tried to re-enter
    assert fns.reentrySucceeded().call() is False
    assert env.chain.w3.eth.get_balance(claimer.address) == owed  # paid exactly once
    assert env.market.balance() == market_before - owed
    assert env.market.credits(claimer.address) == 0
    assert env.market.credits(env.trainers[0].address) == ETH // 4  # nobody else's credit touched
    claims = env.market.events("Claimed", from_block=receipt.block_number, to_block=receipt.block_number)
    assert [c.args for c in claims] == [{"account": claimer.address, "to": claimer.address, "amount": owed}]
    assert_reentry_hit_the_lock(env, receipt.tx_hash)

    # A second attack finds nothing left.
    with reverts(E.NothingToWithdraw, account=claimer.address):
        claimer.transact(claimer.contract.functions.attack(via_claim_to), gas=ATTACK_GAS)
    env.client(env.trainers[0]).release_stake(p.id)
    amount, _ = env.client(env.trainers[0]).claim()
    assert amount == ETH // 4 + stake
    assert env.market.balance() == 0


def test_reentry_from_withdraw_remaining_is_locked_out(env: Env) -> None:
    # The owner withdraws to the attacker contract: its receive tries to claim its own credit while
    # withdrawRemaining holds the lock. The claim fails, the credit stays, and can be claimed later.
    claimer, p, owed = earning_claimer(env)
    assert p.state().escrow == 0  # the round was fully credited
    p2 = create_project(env, budget=ETH)
    env.client(env.owner).cancel(p2.id)
    receipt = env.client(env.owner).transact(
        env.market.contract.functions.withdrawRemaining(p2.id, claimer.address), gas=ATTACK_GAS
    )
    assert claimer.contract.functions.reentryAttempts().call() == 1
    assert claimer.contract.functions.reentrySucceeded().call() is False
    assert env.chain.w3.eth.get_balance(claimer.address) == ETH  # the withdrawal, nothing more
    assert env.market.credits(claimer.address) == owed
    assert_reentry_hit_the_lock(env, receipt.tx_hash)
    # Later, outside any transfer, the attacker's honest claim pays its credit once.
    claimer.transact(claimer.contract.functions.attack(False), gas=ATTACK_GAS)
    assert env.chain.w3.eth.get_balance(claimer.address) == ETH + owed
    assert env.market.credits(claimer.address) == 0
