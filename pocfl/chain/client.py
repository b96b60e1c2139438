"""Typed client of the ``PocMarketplace`` contract.

Every state-changing call is signed locally by the client's account, sent as a raw transaction, and
waited for. A revert on any backend becomes the contract's named error (see
:mod:`pocfl.chain.reverts`), e.g.::

    try:
        market.submit(project_id, 3, cid, commitment)
    except WrongRound as err:
        print(err.current_round)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import Wei

from pocfl.chain.backends import Chain
from pocfl.chain.reverts import decode_revert
from pocfl.chain.transport import node_errors
from pocfl.chain.types import (
    ZERO_BYTES32,
    EventRecord,
    ProjectParams,
    ProjectState,
    Receipt,
    RoundPost,
    Submission,
    TrainerState,
)
from pocfl.contracts import MARKETPLACE, load_artifact
from pocfl.errors import ChainError, ConfigError, TransactionFailedError
from pocfl.waiting import DEADLINE_MARGIN, check_deadline

GAS_MARGIN = 1.2


def _event_names(abi: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in abi if item["type"] == "event"]


def _plain(value: Any) -> Any:
    """web3 AttributeDicts/HexBytes to plain Python values."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, Mapping):  # web3's AttributeDict is a Mapping, not a dict
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value) if isinstance(value, tuple) else [_plain(v) for v in value]
    return value


class ContractClient:
    """Signs and sends calls to one deployed contract and decodes its events and reverts."""

    def __init__(self, chain: Chain, address: str, abi: list[dict[str, Any]], account: LocalAccount | None = None):
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.address = Web3.to_checksum_address(address)
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=abi)
        self.account = account
        self._event_names = _event_names(abi)

    @property
    def sender(self) -> str:
        """Address of the signing account."""
        if self.account is None:
            raise ConfigError("this command sends a transaction: the client has no signing account", fix="signer")
        return str(self.account.address)

    def transact(self, fn: ContractFunction, value: int = 0, gas: int | None = None) -> Receipt:
        """Sign ``fn`` with the client's account, send it and wait for a successful receipt.

        Raises
        ------
        ContractRevert
            The contract's named error, on every backend.
        InsufficientFundsError, NonceConflictError, ChainConnectionError
            The node refused to take the transaction, or stopped answering (:mod:`pocfl.chain.transport`).
        TransactionFailedError
            A mined transaction with status 0 whose reason could not be recovered.
        """
        sender = Web3.to_checksum_address(self.sender)
        assert self.account is not None
        with node_errors():  # reverts, unpaid gas, raced nonces and lost nodes as typed errors
            tx_params: Any = {
                "from": sender,
                "value": value,
                "nonce": self.w3.eth.get_transaction_count(sender, "pending"),
                "chainId": self.chain.chain_id,
            }
            if gas is None:
                estimate = fn.estimate_gas({"from": sender, "value": Wei(value)})
                gas = min(int(estimate * GAS_MARGIN), int(self.w3.eth.get_block("latest")["gasLimit"]))
            tx_params["gas"] = gas
            tx: Any = fn.build_transaction(tx_params)
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise self._explain_failure(tx, int(receipt["blockNumber"]), "0x" + bytes(tx_hash).hex())
        return Receipt(
            tx_hash="0x" + bytes(tx_hash).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=tuple(self._decode_logs(receipt)),
            fee_wei=int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"]),
            contract_address=str(receipt["contractAddress"]) if receipt.get("contractAddress") else None,
        )

    def _explain_failure(self, tx: dict[str, Any], block: int, tx_hash: str) -> ChainError:
        # Replay the call to recover the revert data (receipts carry none). First on the failing block
        # itself: a call there runs with that block's timestamp, which the deadline checks depend on, and
        # the reverted transaction left no state behind; then on its parent.
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        for at in (block, block - 1):
            try:
                self.w3.eth.call(call, at)  # type: ignore[arg-type]
            except Exception as exc:
                decoded = decode_revert(exc)
                if decoded is not None:
                    return decoded
        return TransactionFailedError(f"transaction {tx_hash} reverted (status 0) in block {block}")

    def call(self, fn: ContractFunction) -> Any:
        """Run a view function, decoding reverts."""
        with node_errors():
            return fn.call()

    def _decode_logs(self, receipt: Any) -> Iterable[EventRecord]:
        records: list[EventRecord] = []
        for name in self._event_names:
            for log in self.contract.events[name]().process_receipt(receipt, errors=DISCARD):
                records.append(self._record(log))
        records.sort(key=lambda r: r.log_index)
        return records

    @staticmethod
    def _record(log: Any) -> EventRecord:
        return EventRecord(
            name=str(log["event"]),
            args=_plain(dict(log["args"])),
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
        )

    def events(
        self, name: str, from_block: int = 0, to_block: int | str = "latest", **filters: Any
    ) -> list[EventRecord]:
        """All ``name`` events in the block range whose indexed arguments equal ``filters``, in chain order."""
        if name not in self._event_names:
            raise ConfigError(f"the contract has no event {name!r}")
        logs = self.contract.events[name]().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters or None
        )
        records = [self._record(log) for log in logs]
        records.sort(key=lambda r: (r.block_number, r.log_index))
        return records


class MarketplaceClient(ContractClient):
    """The marketplace's functions with Python types in and out.

    Window-bound transactions (``register``, ``leave``, ``allow_trainers``, ``submit``, ``post_round``, and
    ``cancel`` of a subscribed project before its start) are not sent when the chain's time is within
    ``deadline_margin`` seconds of their deadline (:class:`pocfl.waiting.DeadlineTooCloseError`): the block they
    land in could be stamped past it, and a reverted transaction still costs gas. A margin of 0 sends them anyway
    (tests of the contract's own checks).
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        account: LocalAccount | None = None,
        *,
        deadline_margin: int = DEADLINE_MARGIN,
    ):
        super().__init__(chain, address, load_artifact(MARKETPLACE)["abi"], account)
        self.deadline_margin = deadline_margin

    @classmethod
    def deploy(
        cls, chain: Chain, account: LocalAccount, *, deadline_margin: int = DEADLINE_MARGIN
    ) -> tuple[MarketplaceClient, Receipt]:
        """Deploy a new marketplace signed by ``account``; returns the client and the deployment receipt."""
        address, receipt = deploy_contract(chain, account, MARKETPLACE)
        return cls(chain, address, account, deadline_margin=deadline_margin), receipt

    def as_account(self, account: LocalAccount | None) -> MarketplaceClient:
        """The same contract, signing with another account."""
        return MarketplaceClient(self.chain, self.address, account, deadline_margin=self.deadline_margin)

    def _before(self, project_id: int, deadline: str, what: str) -> None:
        """Refuse to send ``what`` when the chain's time is within the margin of the project's ``deadline``."""
        if self.deadline_margin <= 0:
            return
        state = self.project(project_id)
        if state.status.name != "ACTIVE":
            return  # the contract refuses it during estimation (no gas spent), with its own named error
        at = state.params.start_time if deadline == "start" else int(getattr(state, deadline))
        check_deadline(self.chain.now(), at, self.deadline_margin, f"{what} (project {project_id})")

    # ---- owner ----------------------------------------------------------------------------

    def create_project(self, params: ProjectParams, budget: int) -> tuple[int, Receipt]:
        """Create a project escrowing ``budget`` wei; returns its id and the receipt."""
        receipt = self.transact(self.contract.functions.createProject(params.to_abi()), value=budget)
        return int(receipt.event("ProjectCreated").args["projectId"]), receipt

    def allow_trainers(self, project_id: int, trainers: Sequence[str]) -> Receipt:
        """Allowlist trainers (allowlist-mode projects, before training starts)."""
        addrs = [Web3.to_checksum_address(t) for t in trainers]
        self._before(project_id, "start", "allowTrainers")
        return self.transact(self.contract.functions.allowTrainers(project_id, addrs))

    def cancel(self, project_id: int) -> Receipt:
        """Cancel a project (owner before start; anyone if undersubscribed)."""
        state = self.project(project_id)
        if state.trainer_count >= state.params.min_trainers and self.chain.now() < state.params.start_time:
            # subscribed: only the owner's cancel before the start is valid, so it must be mined before the start
            self._before(project_id, "start", "cancel")
        return self.transact(self.contract.functions.cancel(project_id))

    def withdraw_remaining(self, project_id: int, to: str | None = None) -> tuple[int, Receipt]:
        """Owner: withdraw the unearned escrow of an ended project; returns the wei sent."""
        dest = Web3.to_checksum_address(to or self.sender)
        receipt = self.transact(self.contract.functions.withdrawRemaining(project_id, dest))
        return int(receipt.event("RemainingWithdrawn").args["amount"]), receipt

    # ---- trainers -------------------------------------------------------------------------

    def register(self, project_id: int, stake: int | None = None) -> Receipt:
        """Register as a trainer, paying the project's stake (looked up when not given)."""
        if stake is None:
            stake = self.project(project_id).params.stake
        self._before(project_id, "start", "register")
        return self.transact(self.contract.functions.register(project_id), value=stake)

    def leave(self, project_id: int) -> Receipt:
        """Unregister before training starts (the stake is credited back)."""
        self._before(project_id, "start", "leave")
        return self.transact(self.contract.functions.leave(project_id))

    def submit(
        self,
        project_id: int,
        round_: int,
        cid: str,
        commitment: bytes,
        feature_commitment: bytes = ZERO_BYTES32,
        gas: int | None = None,
    ) -> Receipt:
        """Submit an update's CID and commitments for ``round_``."""
        fn = self.contract.functions.submit(project_id, round_, cid, commitment, feature_commitment)
        self._before(project_id, "submission_deadline", f"submit of round {round_}")
        return self.transact(fn, gas=gas)

    def release_stake(self, project_id: int) -> Receipt:
        """Credit the stake back after the project ended."""
        return self.transact(self.contract.functions.releaseStake(project_id))

    def claim(self, to: str | None = None) -> tuple[int, Receipt]:
        """Withdraw every credit of the account (to itself or ``to``); returns the wei sent."""
        if to is None:
            receipt = self.transact(self.contract.functions.claim())
        else:
            receipt = self.transact(self.contract.functions.claimTo(Web3.to_checksum_address(to)))
        return int(receipt.event("Claimed").args["amount"]), receipt

    # ---- aggregator / anyone ----------------------------------------------------------------

    def post_round(
        self, project_id: int, round_: int, post: RoundPost, proof: bytes = b"", gas: int | None = None
    ) -> Receipt:
        """Post a round's results (aggregator only)."""
        fn = self.contract.functions.postRound(project_id, round_, post.to_abi(), proof)
        self._before(project_id, "aggregation_deadline", f"postRound of round {round_}")
        return self.transact(fn, gas=gas)

    def fail_round(self, project_id: int, round_: int) -> Receipt:
        """Mark an overdue round failed (anyone)."""
        return self.transact(self.contract.functions.failRound(project_id, round_))

    # ---- views ------------------------------------------------------------------------------

    def project_count(self) -> int:
        """Number of projects created."""
        return int(self.call(self.contract.functions.projectCount()))

    def project(self, project_id: int) -> ProjectState:
        """A project's parameters and live state."""
        return ProjectState.from_abi(project_id, self.call(self.contract.functions.getProject(project_id)))

    def trainer(self, project_id: int, trainer: str) -> TrainerState:
        """A trainer's state in a project."""
        t = self.call(self.contract.functions.getTrainer(project_id, Web3.to_checksum_address(trainer)))
        t = tuple(t.values()) if isinstance(t, dict) else tuple(t)
        return TrainerState(allowed=t[0], registered=t[1], stake_held=t[2], submitted_current_round=t[3])

    def credits(self, account: str) -> int:
        """Wei ``account`` can claim."""
        return int(self.call(self.contract.functions.credits(Web3.to_checksum_address(account))))

    def balance(self) -> int:
        """The contract's ether balance."""
        return int(self.w3.eth.get_balance(self.address))

    def submissions(self, project_id: int, round_: int, from_block: int = 0) -> list[Submission]:
        """The round's recorded submissions in submission order (from ``UpdateSubmitted`` events)."""
        # Pass from_block (e.g. the round's RoundOpened block): log scans from 0 grow slow on long chains.
        events = self.events("UpdateSubmitted", from_block=from_block, projectId=project_id, round=round_)
        events.sort(key=lambda e: int(e.args["index"]))
        return [
            Submission(
                trainer=str(e.args["trainer"]),
                commitment=bytes(e.args["commitment"]),
                feature_commitment=bytes(e.args["featureCommitment"]),
            )
            for e in events
        ]


def deploy_contract(
    chain: Chain, account: LocalAccount, name: str, args: Sequence[Any] = (), gas: int | None = None
) -> tuple[str, Receipt]:
    """Deploy compiled contract ``name`` from the package artifacts; returns its address and receipt."""
    artifact = load_artifact(name)
    factory = chain.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    deployer = ContractClient(chain, "0x" + "00" * 20, artifact["abi"], account)
    constructor = factory.constructor(*args)
    receipt = deployer.transact(constructor, gas=gas)  # type: ignore[arg-type]
    if receipt.contract_address is None:
        raise ChainError(f"deployment of {name} produced no contract address")
    return receipt.contract_address, receipt
