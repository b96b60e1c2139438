"""Test-only helpers for the contract suites: the deployed environment, project handles, time travel,
exact revert assertions and gas-aware balance bookkeeping."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain
from pocfl.chain.client import ContractClient, MarketplaceClient, deploy_contract
from pocfl.chain.reverts import ContractRevert
from pocfl.chain.types import ProjectParams, ProjectState, Receipt, RoundPost, Submission
from pocfl.contracts import load_artifact

START_DELAY = 1_000  # seconds between creation and start: room for many registrations, even on anvil's wall clock
WINDOW = 1_000
MODEL_CID = "bafy-model"
INITIAL_CID = "bafy-initial"
N_TRAINERS = 12
ACCOUNT_FUNDS = 10**20  # 100 ether: anvil's dev account holds 10,000 ether to share out
WHALE_FUNDS = 10**40  # above 2**128 wei, for BudgetTooLarge and huge budgets


# ---------------------------------------------------------------------------------------------
# Chain controls
# ---------------------------------------------------------------------------------------------


def warp_to(chain: Chain, timestamp: int) -> int:
    """Move the clock so the latest block is at least ``timestamp``; returns the new time."""
    now = chain.now()
    if timestamp > now:
        return chain.increase_time(timestamp - now)
    return now


@contextmanager
def isolated(chain: Chain) -> Iterator[None]:
    """Undo every state change made inside the block (anvil consumes snapshots, so take a fresh one)."""
    snapshot = chain.snapshot()
    try:
        yield
    finally:
        chain.revert(snapshot)


def set_balance(chain: Chain, address: str, wei: int) -> None:
    """Give ``address`` an arbitrary balance (more than any dev account holds): ``chain.control.set_balance``.

    On the embedded chain a snapshot must never be taken at the block that mines (see
    :meth:`pocfl.chain.control.EmbeddedControl.set_balance`), so mine at least one ordinary transaction afterwards.
    """
    chain.control.set_balance(address, wei)
    assert chain.w3.eth.get_balance(Web3.to_checksum_address(address)) == wei


# ---------------------------------------------------------------------------------------------
# Hashes the contract computes, rebuilt in Python
# ---------------------------------------------------------------------------------------------


def commitment(project_id: int, round_: int, trainer: str, salt: str = "") -> bytes:
    """A deterministic, distinct update commitment per project, round and trainer."""
    return keccak(text=f"update:{project_id}:{round_}:{trainer.lower()}:{salt}")


def round_seed(chain_id: int, market: str, project_id: int, round_: int) -> bytes:
    """``_roundSeed``: the digest a round starts from."""
    return keccak(
        encode(
            ["uint256", "address", "uint256", "uint32"],
            [chain_id, Web3.to_checksum_address(market), project_id, round_],
        )
    )


def submissions_digest(chain_id: int, market: str, project_id: int, round_: int, subs: Sequence[Submission]) -> bytes:
    """The contract's hash chain over a round's submissions, in order."""
    digest = round_seed(chain_id, market, project_id, round_)
    for s in subs:
        digest = keccak(
            encode(
                ["bytes32", "address", "bytes32", "bytes32"],
                [digest, Web3.to_checksum_address(s.trainer), s.commitment, s.feature_commitment],
            )
        )
    return digest


def commitment_proof(
    project_id: int, round_: int, digest: bytes, scores: Sequence[int], outliers: Sequence[bool]
) -> bytes:
    """The proof ``CommitmentRoundVerifier`` accepts: keccak256(abi.encode(id, round, digest, scores, outliers))."""
    return keccak(
        encode(
            ["uint256", "uint32", "bytes32", "int128[]", "bool[]"],
            [project_id, round_, digest, list(scores), list(outliers)],
        )
    )


# ---------------------------------------------------------------------------------------------
# Reverts
# ---------------------------------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _normalise(value: Any) -> Any:
    # Addresses come back checksummed; tests may pass any casing.
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    return value


@contextmanager
def reverts(error: type[ContractRevert], **expected: Any) -> Iterator[pytest.ExceptionInfo[ContractRevert]]:
    """Assert the block raises exactly ``error`` with the given arguments.

    Every argument of the error must be given, by its Solidity name (``projectId``) or snake_case alias
    (``project_id``); a value may be a predicate (``lambda v: v >= deadline``) where the exact value
    depends on the node's clock.
    """
    aliases = {f: f for f in error.fields} | {_snake(f): f for f in error.fields}
    unknown = set(expected) - set(aliases)
    assert not unknown, f"{error.__name__} has no argument(s) {sorted(unknown)}; it has {error.fields}"
    missing = set(error.fields) - {aliases[k] for k in expected}
    assert not missing, f"assert every argument of {error.__name__}: missing {sorted(missing)}"
    with pytest.raises(error) as info:
        yield info
    err = info.value
    assert type(err) is error, f"expected {error.__name__}, got {type(err).__name__}: {err}"
    for name, want in expected.items():
        got = getattr(err, name)
        assert getattr(err, aliases[name]) == getattr(err, _snake(aliases[name]))
        if callable(want):
            assert want(got), f"{error.__name__}.{name} = {got!r} fails its check"
        else:
            assert _normalise(got) == _normalise(want), f"{error.__name__}.{name}: expected {want!r}, got {got!r}"


def between(low: int, high: int) -> Callable[[int], bool]:
    """Predicate for clock-dependent revert arguments."""
    return lambda v: low <= v <= high


# ---------------------------------------------------------------------------------------------
# Deployed environment and projects
# ---------------------------------------------------------------------------------------------


@dataclass
class Env:
    """One backend's deployment: the marketplace, the test verifier and funded actors."""

    chain: Chain
    market: MarketplaceClient  # signs as `owner`
    deployer: LocalAccount
    owner: LocalAccount
    aggregator: LocalAccount
    outsider: LocalAccount
    whale: LocalAccount
    trainers: tuple[LocalAccount, ...]
    verifier: str
    clients: dict[str, MarketplaceClient] = field(default_factory=dict, repr=False)

    def client(self, account: LocalAccount) -> MarketplaceClient:
        """The marketplace, signing as ``account`` (cached: building a web3 contract object is not free)."""
        if account.address not in self.clients:
            self.clients[account.address] = self.market.as_account(account)
        return self.clients[account.address]

    def funded_accounts(self, n: int, wei: int = ACCOUNT_FUNDS) -> list[LocalAccount]:
        """``n`` fresh random accounts with ``wei`` each."""
        accounts = [new_account() for _ in range(n)]
        for a in accounts:
            self.chain.fund(a.address, wei)
        return accounts

    def deploy_helper(self, name: str, account: LocalAccount | None = None) -> ContractClient:
        """Deploy a test-only contract that takes the marketplace address (ReentrantClaimer, EtherRejecter)."""
        signer = account or self.deployer
        address, _ = deploy_contract(self.chain, signer, name, [self.market.address])
        return ContractClient(self.chain, address, load_artifact(name)["abi"], signer)


def deploy_env(chain: Chain) -> Env:
    """Fund the actors and deploy the marketplace and the commitment verifier."""
    whale = new_account()
    set_balance(chain, whale.address, WHALE_FUNDS)  # first, so ordinary blocks follow it (see set_balance)
    deployer, owner, aggregator, outsider, *trainers = [new_account() for _ in range(4 + N_TRAINERS)]
    for account in (deployer, owner, aggregator, outsider, *trainers):
        chain.fund(account.address, ACCOUNT_FUNDS)
    market, _ = MarketplaceClient.deploy(chain, deployer, deadline_margin=0)  # the contract's own checks are tested
    verifier, _ = deploy_contract(chain, deployer, "CommitmentRoundVerifier")
    return Env(
        chain=chain,
        market=market.as_account(owner),
        deployer=deployer,
        owner=owner,
        aggregator=aggregator,
        outsider=outsider,
        whale=whale,
        trainers=tuple(trainers),
        verifier=verifier,
    )


def standard_params(env: Env, **overrides: Any) -> ProjectParams:
    """Three rounds, windows of WINDOW seconds, 2..8 trainers, open registration, no stake."""
    defaults: dict[str, Any] = {
        "aggregator": env.aggregator.address,
        "start_time": env.chain.now() + START_DELAY,
        "num_rounds": 3,
        "submission_window": WINDOW,
        "aggregation_window": WINDOW,
        "min_trainers": 2,
        "max_trainers": 8,
        "initial_model_cid": INITIAL_CID,
    }
    defaults.update(overrides)
    return ProjectParams(**defaults)


@dataclass
class Project:
    """A created project plus the moves tests make with it."""

    env: Env
    id: int
    params: ProjectParams
    budget: int
    owner: LocalAccount
    receipt: Receipt
    submitted: dict[int, list[Submission]] = field(default_factory=dict)

    @property
    def chain(self) -> Chain:
        return self.env.chain

    def state(self) -> ProjectState:
        return self.env.market.project(self.id)

    def register(self, *trainers: LocalAccount) -> None:
        for t in trainers:
            self.env.client(t).register(self.id, self.params.stake)

    def start(self) -> int:
        return warp_to(self.chain, self.params.start_time)

    def submit(self, *trainers: LocalAccount, round_: int | None = None) -> list[Submission]:
        """Each trainer submits (in the order given); returns the round's submissions so far."""
        r = self.state().current_round if round_ is None else round_
        subs = self.submitted.setdefault(r, [])
        for t in trainers:
            sub = Submission(t.address, commitment(self.id, r, t.address), commitment(self.id, r, t.address, "f"))
            self.env.client(t).submit(
                self.id, r, f"bafy-update-{r}-{t.address[2:10]}", sub.commitment, sub.feature_commitment
            )
            subs.append(sub)
        return list(subs)

    def close_submissions(self) -> int:
        return warp_to(self.chain, self.state().submission_deadline)

    def expire(self) -> int:
        return warp_to(self.chain, self.state().aggregation_deadline)

    def round_post(
        self, scores: Sequence[int], outliers: Sequence[bool] | None = None, *, round_: int | None = None
    ) -> RoundPost:
        r = self.state().current_round if round_ is None else round_
        flags = tuple(outliers) if outliers is not None else (False,) * len(scores)
        return RoundPost(MODEL_CID, tuple(self.submitted.get(r, [])), tuple(scores), flags)

    def post(
        self,
        scores: Sequence[int],
        outliers: Sequence[bool] | None = None,
        *,
        round_: int | None = None,
        proof: bytes = b"",
    ) -> Receipt:
        """The aggregator posts the round's recorded submissions with these scores."""
        r = self.state().current_round if round_ is None else round_
        post = self.round_post(scores, outliers, round_=r)
        return self.env.client(self.env.aggregator).post_round(self.id, r, post, proof)

    def play_round(
        self, trainers: Sequence[LocalAccount], scores: Sequence[int], outliers: Sequence[bool] | None = None
    ) -> Receipt:
        """Submit, wait out the submission window, post."""
        self.submit(*trainers)
        self.close_submissions()
        return self.post(scores, outliers)

    def fail(self, caller: LocalAccount | None = None) -> Receipt:
        """Wait out the aggregation window and fail the current round."""
        r = self.state().current_round
        self.expire()
        return self.env.client(caller or self.env.outsider).fail_round(self.id, r)


def create_project(env: Env, budget: int = 3 * 10**18, owner: LocalAccount | None = None, **overrides: Any) -> Project:
    """Create a standard project (see :func:`standard_params`) with ``budget`` wei."""
    params = standard_params(env, **overrides)
    signer = owner or env.owner
    project_id, receipt = env.client(signer).create_project(params, budget)
    return Project(env=env, id=project_id, params=params, budget=budget, owner=signer, receipt=receipt)


def shares_of(receipt: Receipt) -> list[int]:
    """TrainerCredited amounts in emission (= submission) order."""
    return [int(e.args["amount"]) for e in receipt.events if e.name == "TrainerCredited"]


# ---------------------------------------------------------------------------------------------
# Balances
# ---------------------------------------------------------------------------------------------


class Ledger:
    """Balance changes of some accounts since construction, with the gas they paid split out."""

    def __init__(self, chain: Chain, accounts: Sequence[str]):
        self.chain = chain
        self.accounts: list[str] = [Web3.to_checksum_address(a) for a in accounts]
        self.start_block = chain.w3.eth.block_number
        self.start = {a: chain.w3.eth.get_balance(a) for a in self.accounts}

    def gas_paid(self) -> dict[str, int]:
        """Fees paid by each account in blocks mined since the start: gasUsed * effectiveGasPrice."""
        w3 = self.chain.w3
        paid: dict[str, int] = dict.fromkeys(self.accounts, 0)
        for number in range(self.start_block + 1, w3.eth.block_number + 1):
            tx: Any
            for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
                sender = Web3.to_checksum_address(tx["from"])
                if sender in paid:
                    receipt = w3.eth.get_transaction_receipt(tx["hash"])
                    paid[sender] += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        return paid

    def changes(self) -> dict[str, int]:
        """Balance change of each account since the start."""
        return {a: self.chain.w3.eth.get_balance(a) - self.start[a] for a in self.accounts}

    def assert_net(self, expected: dict[str, int]) -> None:
        """Every account's balance changed by exactly its expected amount minus the gas it paid."""
        changes, paid = self.changes(), self.gas_paid()
        for account, amount in expected.items():
            a = Web3.to_checksum_address(account)
            assert changes[a] == amount - paid[a], f"{a}: changed {changes[a]}, expected {amount} - gas {paid[a]}"


def flower_message(config: dict[str, Any], message_type: str = "train", *, group_id: str = "1") -> Any:
    """A message as the ServerApp sends it to the ClientApp (built with Flower's internal-metadata constructor)."""
    import time

    from flwr.app import ConfigRecord, Message, Metadata, RecordDict

    metadata = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=0,
        dst_node_id=1,
        reply_to_message_id="",
        group_id=group_id,
        created_at=time.time(),
        ttl=600.0,
        message_type=message_type,
    )
    return Message(RecordDict({"pocfl": ConfigRecord(config)}), metadata=metadata)  # type: ignore[call-overload]
