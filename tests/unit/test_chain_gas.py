"""The embedded chain's fast gas estimator (:mod:`pocfl.chain.gas`) on a real embedded chain: its estimate is
enough for the transaction to succeed, is no more than py-evm's default bisection gives, and a reverting
transaction raises as the default does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.gas import fast_gas_estimate

pytestmark = pytest.mark.unit

ETH = 10**18


@pytest.fixture
def deployed() -> Iterator[tuple[Chain, LocalAccount, MarketplaceClient]]:
    chain = connect("embedded")
    try:
        owner = new_account()
        chain.fund(owner.address, 100 * ETH)
        client, _ = MarketplaceClient.deploy(chain, owner)
        yield chain, owner, client
    finally:
        chain.close()


def _estimate(chain: Chain, tx: dict[str, Any]) -> int | type[Exception]:
    try:
        return int(chain.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
    except Exception as error:  # the error class is what is compared
        return type(error)


def test_the_fast_estimate_suffices_and_reverts_raise_as_by_default(
    deployed: tuple[Chain, LocalAccount, MarketplaceClient],
) -> None:
    chain, owner, client = deployed
    transfer = {"from": owner.address, "to": new_account().address, "value": 1}
    deploy: dict[str, Any] = {
        "from": owner.address,
        "data": "0x6080604052348015600f57600080fd5b50603f80601d6000396000f3fe",
    }
    reverting = {"from": owner.address, "to": client.address, "value": 1, "data": "0xdeadbeef"}
    default = [_estimate(chain, tx) for tx in (transfer, deploy, reverting)]
    chain.control.use_fast_gas_estimate(fast_gas_estimate)
    fast = [_estimate(chain, tx) for tx in (transfer, deploy, reverting)]
    assert fast[0] == default[0] == 21000
    assert isinstance(fast[1], int) and isinstance(default[1], int) and 0 < fast[1] <= default[1]
    assert isinstance(fast[2], type) and fast[2] is default[2]
    w3 = chain.w3
    nonce = w3.eth.get_transaction_count(owner.address)
    signed = owner.sign_transaction(
        {
            "data": deploy["data"],
            "gas": fast[1],
            "nonce": nonce,
            "chainId": w3.eth.chain_id,
            "gasPrice": w3.eth.gas_price,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1 and receipt["gasUsed"] <= fast[1]
