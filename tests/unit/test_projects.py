"""Project creation (:mod:`pocfl.projects`) on a real embedded chain: the checks refuse an inconsistent project
before any transaction, and a consistent one is stored, created and allowlisted as asked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient, deploy_contract
from pocfl.chain.types import ZERO_ADDRESS, ProjectParams, RegistrationMode
from pocfl.errors import ConfigError
from pocfl.fl_project import make_manifest, validation_commitment
from pocfl.manifest import ProofConfig
from pocfl.market import Market
from pocfl.projects import ProjectRequest, check_proof_config, create_project
from pocfl.store import MemoryStore, ObjectNotFoundError, compute_cid

pytestmark = pytest.mark.unit

ETH = 10**18


@dataclass
class Owner:
    chain: Chain
    account: LocalAccount
    market: Market

    def adapter(self, slots: int) -> str:
        """An EzklRoundVerifier of ``slots`` slots (its Halo2 verifier is any contract: only ``slots()`` is read)."""
        address, _ = deploy_contract(
            self.chain, self.account, "EzklRoundVerifier", (self.market.client.address, slots, 1 << 13, 0)
        )
        return address

    def projects(self) -> int:
        return self.market.client.project_count()


@pytest.fixture
def owner() -> Iterator[Owner]:
    chain = connect("embedded")
    try:
        account = new_account()
        chain.fund(account.address, 100 * ETH)
        client, _ = MarketplaceClient.deploy(chain, account)
        yield Owner(chain, account, Market(client, MemoryStore()))
    finally:
        chain.close()


def request(**overrides: Any) -> ProjectRequest:
    settings: dict[str, Any] = {
        "aggregator": new_account().address,
        "num_rounds": 2,
        "submission_window": 60,
        "aggregation_window": 60,
        "min_trainers": 1,
        "max_trainers": 4,
        "budget": ETH,
        "start_in": 100,
        "initial_model": b"initial model",
    }
    return ProjectRequest(**(settings | overrides))


def test_a_model_file_is_stored_and_the_trainers_allowlisted(owner: Owner) -> None:
    trainers = tuple(new_account().address for _ in range(2))
    before = owner.chain.now()
    created = create_project(owner.market, request(budget=3 * ETH + 1, allowlist=trainers, stake=5))
    cid = compute_cid(b"initial model")
    assert created.project_id == 1 and created.owner == owner.account.address
    assert created.params.initial_model_cid == cid and owner.market.store.get_bytes(cid) == b"initial model"
    assert created.params.registration_mode == RegistrationMode.ALLOWLIST and created.allowlist == trainers
    assert created.allow_receipt is not None and created.round_budget == (3 * ETH + 1) // 2
    state = owner.market.client.project(1)
    assert state.params == created.params and state.budget == 3 * ETH + 1
    assert before + 100 <= state.params.start_time <= owner.chain.now() + 100
    assert all(owner.market.client.trainer(1, t).allowed for t in trainers)


def test_an_open_project_from_a_stored_cid(owner: Owner) -> None:
    cid = owner.market.publish(b"stored before")
    created = create_project(
        owner.market, request(initial_model=None, initial_model_cid=cid, start_time=10**10, start_in=None)
    )
    assert created.params.initial_model_cid == cid and created.params.start_time == 10**10
    assert created.params.registration_mode == RegistrationMode.OPEN and created.allow_receipt is None
    with pytest.raises(ObjectNotFoundError):
        create_project(owner.market, request(initial_model=None, initial_model_cid=compute_cid(b"never stored")))
    assert owner.projects() == 1


def test_a_manifest_is_stored_and_its_validation_set_committed_to(owner: Owner) -> None:
    manifest, data = make_manifest("t", seed=0, hidden=4, store=owner.market)
    created = create_project(owner.market, request(initial_model=None, manifest=manifest))
    assert created.params.initial_model_cid == compute_cid(data)
    assert created.params.validation_set_commitment == validation_commitment(manifest)
    assert owner.market.client.project(1).params == created.params


def test_an_inconsistent_manifest_is_refused_before_any_transaction(owner: Owner) -> None:
    manifest, _ = make_manifest("t", seed=0, hidden=4, store=owner.market)
    with pytest.raises(ConfigError, match="is not the manifest's validation set's"):
        create_project(
            owner.market, request(initial_model=None, manifest=manifest, validation_set_commitment=b"\x01" * 32)
        )
    elsewhere, _ = make_manifest("t", seed=0, hidden=4, store=MemoryStore())
    unstored = replace(elsewhere, model=replace(elsewhere.model, initial_weights_cid=compute_cid(b"no weights")))
    with pytest.raises(ObjectNotFoundError, match=r"model\.initial_weights_cid"):
        create_project(owner.market, request(initial_model=None, manifest=unstored))
    assert owner.projects() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"initial_model_cid": "bafy"}, "exactly one of --initial-model FILE"),
        ({"initial_model": None}, "exactly one of --initial-model FILE"),
        ({"budget": 0}, "the budget must be more than 0"),
        ({"start_time": 10**10}, "exactly one of --start-in SECONDS or --start-time UNIX"),
        ({"start_in": None}, "exactly one of --start-in SECONDS or --start-time UNIX"),
        ({"min_trainers": 5}, "need --min-trainers <= --max-trainers, got 5 > 4"),
    ],
)
def test_inconsistent_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        request(**overrides)


def test_the_proof_configuration_must_fit_the_verifier(owner: Owner) -> None:
    proven, _ = make_manifest("p", seed=0, hidden=4, store=owner.market, proof=ProofConfig(slots=4, sketch_dim=8))
    plain, _ = make_manifest("q", seed=0, hidden=4, store=owner.market)
    four, three = owner.adapter(4), owner.adapter(3)
    market = owner.market.client.address
    cases = [
        (proven, ZERO_ADDRESS, 4, "pass --verifier"),
        (proven, four, 5, "--max-trainers 5 exceeds the circuit's 4 slots"),
        (proven, market, 4, "is not an EzklRoundVerifier"),
        (proven, three, 4, "verifies a 3-slot circuit, the manifest has 4"),
        (plain, four, 4, "no proof section"),
    ]
    for manifest, verifier, max_trainers, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_proof_config(owner.chain, manifest, verifier, max_trainers)
    check_proof_config(owner.chain, proven, four, 4)
    check_proof_config(owner.chain, proven, four, 2)
    check_proof_config(owner.chain, plain, ZERO_ADDRESS, 9)


def test_a_bad_proof_configuration_creates_nothing(owner: Owner) -> None:
    proven, _ = make_manifest("p", seed=0, hidden=4, store=owner.market, proof=ProofConfig(slots=4, sketch_dim=8))
    with pytest.raises(ConfigError, match="pass --verifier"):
        create_project(owner.market, request(initial_model=None, manifest=proven))
    assert owner.projects() == 0
    created = create_project(owner.market, request(initial_model=None, manifest=proven, verifier=owner.adapter(4)))
    assert created.project_id == 1 and owner.market.client.project(1).params.verifier == created.params.verifier


def test_a_request_from_built_params_creates_them(owner: Owner) -> None:
    manifest, data = make_manifest("t", seed=0, hidden=4, store=owner.market)
    # aggregator, start, rounds, submission and aggregation windows, trainers from 1 to 3, no CID yet
    params = ProjectParams(owner.account.address, owner.chain.now() + 100, 3, 10, 20, 1, 3, "", stake=7)
    created = create_project(owner.market, ProjectRequest.from_params(params, ETH, manifest=manifest))
    commitment = validation_commitment(manifest)
    assert created.params == replace(params, initial_model_cid=compute_cid(data), validation_set_commitment=commitment)
    stored = replace(params, initial_model_cid=owner.market.publish(b"model"))
    again = create_project(owner.market, ProjectRequest.from_params(stored, ETH, allowlist=[owner.account.address]))
    assert again.params == replace(stored, registration_mode=RegistrationMode.ALLOWLIST)


def test_a_manifest_edited_for_another_model_is_refused_before_any_transaction(owner: Owner) -> None:
    """Issue 14: 13 features and 3 classes over the digits MLP's 64/10 initial weights escrow nothing."""
    manifest, _ = make_manifest("t", seed=0, hidden=32, store=owner.market)
    edited = replace(manifest, model=replace(manifest.model, n_features=13, n_classes=3))
    sent = owner.chain.w3.eth.get_transaction_count(owner.account.address)
    with pytest.raises(ConfigError) as info:
        create_project(owner.market, request(initial_model=None, manifest=edited))
    message = str(info.value)
    assert "the initial weights are 64-32-10 MLP, the manifest says 13-32-3" in message
    assert edited.model.spec().fingerprint in message  # the hashes stay, as a second detail
    assert owner.projects() == 0 and owner.market.client.balance() == 0
    assert owner.chain.w3.eth.get_transaction_count(owner.account.address) == sent  # no transaction sent
    not_weights = replace(manifest, model=replace(manifest.model, initial_weights_cid=owner.market.publish(b"x" * 9)))
    with pytest.raises(ConfigError, match=r"is not a weights file of the manifest's 64-32-10 MLP: CorruptUpdateError"):
        create_project(owner.market, request(initial_model=None, manifest=not_weights))
    assert owner.projects() == 0
