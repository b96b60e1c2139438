"""Node control (:mod:`pocfl.chain.control`) on every test backend, and the typed transport errors
(:mod:`pocfl.chain.transport`) raised from real failing requests.

Runs on the session's chains (``POCFL_TEST_BACKENDS``: the embedded chain and anvil), so it is an integration test
although it tests one module's units.
"""

from __future__ import annotations

from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain, embedded_chain
from pocfl.chain.client import deploy_contract
from pocfl.chain.control import ChainControl, EmbeddedControl, RpcControl
from pocfl.chain.transport import node_errors, request_error
from pocfl.cli.output import error_document
from pocfl.contracts import MARKETPLACE
from pocfl.errors import (
    ChainConnectionError,
    ChainError,
    ChainRequestError,
    ChainUnavailableError,
    InsufficientFundsError,
    NonceConflictError,
    PocflError,
)
from pocfl.procs import free_port
from tests.helpers import Env

pytestmark = pytest.mark.integration


def block_number(chain: Chain) -> int:
    return int(chain.w3.eth.block_number)


def test_each_backend_has_its_control(env: Env) -> None:
    control = env.chain.control
    assert isinstance(control, ChainControl)
    assert isinstance(control, EmbeddedControl if env.chain.kind == "embedded" else RpcControl)
    assert control.latest_timestamp() == env.chain.now()


def test_increase_time_moves_the_clock_and_mines(env: Env) -> None:
    chain = env.chain
    before, number = chain.now(), block_number(chain)
    chain.control.increase_time(100)
    assert chain.now() >= before + 100
    assert block_number(chain) == number + 1
    assert chain.increase_time(0) >= before + 100  # the delegating form returns the new time
    with pytest.raises(ValueError, match="only moves forward"):
        chain.increase_time(-1)


def test_set_time_is_exact(env: Env) -> None:
    chain = env.chain
    target = chain.now() + 1000
    chain.control.set_time(target)
    assert chain.now() == target
    assert chain.set_time(target + 7) == target + 7
    with pytest.raises(ValueError, match="only moves forward"):
        chain.set_time(target)


def test_mine_adds_blocks(env: Env) -> None:
    number = block_number(env.chain)
    env.chain.control.mine(3)
    assert block_number(env.chain) == number + 3


def test_snapshot_and_revert_undo_a_transfer(env: Env) -> None:
    chain = env.chain
    account = new_account()
    snapshot = chain.control.snapshot()
    chain.fund(account.address, 12345)
    assert chain.w3.eth.get_balance(account.address) == 12345
    chain.control.revert(snapshot)
    assert chain.w3.eth.get_balance(account.address) == 0


def test_set_balance_sets_any_amount(env: Env) -> None:
    address = new_account().address
    env.chain.control.set_balance(address, 10**30)
    assert env.chain.w3.eth.get_balance(address) == 10**30


def test_raw_rpc_where_the_node_has_it(env: Env) -> None:
    control = env.chain.control
    if env.chain.kind == "embedded":
        with pytest.raises(ChainRequestError, match="no JSON-RPC"):
            control.rpc("eth_chainId", [])
        return
    assert int(control.rpc("eth_chainId", []), 16) == env.chain.chain_id
    with pytest.raises(ChainRequestError, match="no_such_method failed"):
        control.rpc("no_such_method", [])


def test_fast_gas_estimate_is_installed_on_the_embedded_chain_only(env: Env) -> None:
    def estimator(state: Any, transaction: Any) -> int:
        return 21_000

    fresh = embedded_chain()  # not the session's chain: its estimator stays
    control = fresh.control
    assert isinstance(control, EmbeddedControl)
    control.use_fast_gas_estimate(estimator)
    assert control.tester.backend.chain.gas_estimator is estimator
    RpcControl(env.chain.w3).use_fast_gas_estimate(estimator)  # a node estimates natively: nothing to change


# ---------------------------------------------------------------------------------------------
# typed transport errors from real failures
# ---------------------------------------------------------------------------------------------


def test_unfunded_sender_raises_insufficient_funds(env: Env) -> None:
    with pytest.raises(InsufficientFundsError, match="cannot pay") as caught:
        deploy_contract(env.chain, new_account(), MARKETPLACE)
    assert caught.value.fix == "funds"
    document = error_document(caught.value)  # the CLI's --json keeps the name it always gave
    assert document["error"] == "ChainError" and "pocfl chain fund" in document["message"]


def test_reused_nonce_raises_nonce_conflict(env: Env) -> None:
    chain = env.chain
    account = env.funded_accounts(1)[0]

    def transfer(nonce: int) -> bytes:
        tx = {"to": account.address, "value": 1, "gas": 21_000, "gasPrice": 10**10, "nonce": nonce}
        return bytes(account.sign_transaction({**tx, "chainId": chain.chain_id}).raw_transaction)

    with node_errors():
        chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_raw_transaction(transfer(0)))
    with pytest.raises(NonceConflictError, match="raced it"), node_errors():
        chain.w3.eth.send_raw_transaction(transfer(0))


def test_a_node_that_stopped_answering_raises_chain_connection_error() -> None:
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    chain = Chain(w3=w3, kind="rpc", control=RpcControl(w3))
    with pytest.raises(ChainConnectionError, match="lost the connection") as caught:
        chain.increase_time(1)
    assert isinstance(caught.value, ChainUnavailableError)  # an outage: the long-running commands wait it out


def test_request_error_types_other_library_failures_only() -> None:
    from web3.exceptions import Web3RPCError

    refused = request_error(Web3RPCError("header not found"))
    assert isinstance(refused, ChainRequestError) and "header not found" in str(refused)
    assert request_error(KeyError("a bug")) is None
    mine = ChainError("already typed")
    assert request_error(mine) is mine
    assert request_error(PocflError("not the chain's")) is None


def test_typed_errors_are_pocfl_chain_errors() -> None:
    for cls in (InsufficientFundsError, NonceConflictError, ChainConnectionError, ChainRequestError):
        assert issubclass(cls, ChainError) and issubclass(cls, PocflError)


def test_increase_time_when_the_pending_block_is_ahead() -> None:
    """eth-tester's pending block can be stamped later than ``latest + seconds`` (CI saw it on a long run, with
    the embedded chain's latest block 100 s behind the wall clock): moving the clock on must not travel back."""
    chain = embedded_chain()
    assert isinstance(chain.control, EmbeddedControl)
    backend = chain.control.tester.backend
    before = chain.now()
    backend.chain.header = backend.chain.header.copy(timestamp=before + 500)  # the pending block's stamp
    chain.control.increase_time(100)
    assert chain.now() >= before + 100
