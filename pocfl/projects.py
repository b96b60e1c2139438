"""Creating a project: the owner's checks, then the transactions, in one function.

:func:`create_project` is the one way ``pocfl project create``, the demos and the scripts create a project, so
that every one of them gets the same checks before any transaction is sent:

- the settings themselves (:class:`ProjectRequest`: one initial model, a budget, a start, a trainer range);
- a training project's manifest against the store and the chain (its initial weights are stored and are the
  model the manifest describes, the validation commitment asked for is the manifest's, :func:`check_proof_config`);

then it stores and pins the initial model (or the manifest), creates the project escrowing the budget, and
allowlists the trainers named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocfl.chain.backends import Chain
from pocfl.chain.types import ZERO_ADDRESS, ZERO_BYTES32, ProjectParams, Receipt, RegistrationMode
from pocfl.errors import ConfigError, PocflError
from pocfl.manifest import ProjectManifest
from pocfl.market import Market
from pocfl.store import InvalidCidError, ObjectNotFoundError, StoreUnavailableError

Step = Callable[[str], AbstractContextManager[Any]]
"""Wraps each transaction with a description of it (a progress spinner in the CLI)."""


_AS_ON_CHAIN: tuple[str, ...] = (
    "aggregator",
    "num_rounds",
    "submission_window",
    "aggregation_window",
    "min_trainers",
    "max_trainers",
    "stake",
    "verifier",
)
"""The request's settings that go on chain as they are (same names as :class:`ProjectParams`'s)."""


@dataclass(frozen=True)
class ProjectRequest:
    """A project's settings, checked for consistency on construction (addresses and amounts already parsed).

    Attributes
    ----------
    aggregator
        The only account allowed to post rounds.
    num_rounds, submission_window, aggregation_window
        Number of rounds and each round's windows (seconds).
    min_trainers, max_trainers
        Trainers needed for training to start, and the registration cap.
    budget
        Reward budget in wei (more than 0).
    start_time, start_in
        When registration closes and round 0 opens: exactly one of a unix time, or seconds from the chain's now.
    stake
        Refundable stake each trainer deposits (wei).
    allowlist
        Only these trainers may register (allowlist mode when not empty).
    verifier
        The ``IRoundVerifier`` checking each round's proof (zero address: none).
    validation_set_commitment
        32-byte commitment to the validation set; zero for none, or (with a manifest) the manifest's.
    manifest, initial_model, initial_model_cid
        The initial model, exactly one of: a training project's manifest (stored; its initial weights must be in
        the store already), a model file or bytes to store, or the CID of a model the store holds.
    """

    aggregator: str
    num_rounds: int
    submission_window: int
    aggregation_window: int
    min_trainers: int
    max_trainers: int
    budget: int
    start_time: int | None = None
    start_in: int | None = None
    stake: int = 0
    allowlist: tuple[str, ...] = ()
    verifier: str = ZERO_ADDRESS
    validation_set_commitment: bytes = ZERO_BYTES32
    manifest: ProjectManifest | None = None
    initial_model: Path | bytes | None = None
    initial_model_cid: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.initial_model, self.initial_model_cid, self.manifest)) != 1:
            raise ConfigError(
                "give the initial model with exactly one of --initial-model FILE or --initial-model-cid CID, "
                "or a training project's --manifest FILE"
            )
        if self.budget <= 0:
            raise ConfigError("the budget must be more than 0")
        if (self.start_in is None) == (self.start_time is None):
            raise ConfigError("say when training starts with exactly one of --start-in SECONDS or --start-time UNIX")
        if not 1 <= self.min_trainers <= self.max_trainers:
            raise ConfigError(f"need --min-trainers <= --max-trainers, got {self.min_trainers} > {self.max_trainers}")

    @classmethod
    def from_params(
        cls,
        params: ProjectParams,
        budget: int,
        *,
        manifest: ProjectManifest | None = None,
        initial_model: Path | bytes | None = None,
        allowlist: Sequence[str] = (),
    ) -> ProjectRequest:
        """The request for on-chain ``params`` already built (as the demos build them).

        The initial model comes from ``manifest``, else ``initial_model``, else ``params.initial_model_cid``.
        """
        return cls(
            budget=budget,
            start_time=params.start_time,
            allowlist=tuple(allowlist),
            validation_set_commitment=params.validation_set_commitment,
            manifest=manifest,
            initial_model=initial_model if manifest is None else None,
            initial_model_cid=params.initial_model_cid if manifest is None and initial_model is None else None,
            **{name: getattr(params, name) for name in _AS_ON_CHAIN},
        )

    def params(self, start: int, model_cid: str, commitment: bytes) -> ProjectParams:
        """The on-chain parameters, once the start time, the model's CID and the commitment are known."""
        return ProjectParams(
            start_time=start,
            initial_model_cid=model_cid,
            registration_mode=RegistrationMode.ALLOWLIST if self.allowlist else RegistrationMode.OPEN,
            validation_set_commitment=commitment,
            **{name: getattr(self, name) for name in _AS_ON_CHAIN},
        )


@dataclass(frozen=True)
class CreatedProject:
    """What :func:`create_project` did.

    Attributes
    ----------
    project_id
        The new project.
    owner
        The account that created it and escrowed the budget.
    params
        Its on-chain parameters (the initial model's CID, the validation commitment, the start time).
    budget
        Wei escrowed.
    store
        Where the initial model (or the manifest) is stored and pinned.
    allowlist
        The trainers allowlisted.
    receipt, allow_receipt
        The ``createProject`` transaction, and the ``allowTrainers`` one (None without an allowlist).
    """

    project_id: int
    owner: str
    params: ProjectParams
    budget: int
    store: str
    allowlist: tuple[str, ...]
    receipt: Receipt
    allow_receipt: Receipt | None

    @property
    def round_budget(self) -> int:
        """Wei each round pays out (the remainder stays in escrow)."""
        return self.budget // self.params.num_rounds


def check_proof_config(chain: Chain, manifest: ProjectManifest, verifier: str, max_trainers: int) -> None:
    """A manifest with a ``proof`` section needs the matching EzklRoundVerifier and at most ``slots`` trainers.

    A verifier without a proof section is refused too: trainers would not commit to their features.

    Raises
    ------
    ConfigError
        The verifier, the manifest and the trainer cap do not fit together.
    """
    proof = manifest.proof
    has_verifier = int(verifier, 16) != 0
    if proof is None:
        if has_verifier:
            raise ConfigError(
                "--verifier is set but the manifest has no proof section: trainers would not commit to features "
                "(write it with `pocfl project manifest --prove-slots K`)"
            )
        return
    if not has_verifier:
        raise ConfigError(
            "the manifest's rounds are proven: pass --verifier (`pocfl deploy --with-verifier` prints it)"
        )
    if max_trainers > proof.slots:
        raise ConfigError(f"--max-trainers {max_trainers} exceeds the circuit's {proof.slots} slots")
    from pocfl.chain.client import ContractClient
    from pocfl.contracts import load_artifact

    adapter = ContractClient(chain, verifier, load_artifact("EzklRoundVerifier")["abi"])
    try:
        slots = int(adapter.call(adapter.contract.functions.slots()))
    except Exception as exc:  # no code, or another contract: any failure means it is not the adapter
        raise ConfigError(f"--verifier {verifier} is not an EzklRoundVerifier ({type(exc).__name__})") from exc
    if slots != proof.slots:
        raise ConfigError(f"--verifier {verifier} verifies a {slots}-slot circuit, the manifest has {proof.slots}")


def _require_weights(market: Market, cid: str) -> None:
    """The manifest's initial weights must be in the store: nobody could train from them otherwise."""
    option = "model.initial_weights_cid"
    try:
        market.require(cid.strip())
    except InvalidCidError as exc:
        raise InvalidCidError(f"{option}: {exc}") from None
    except ObjectNotFoundError as exc:
        exc.args = (
            f"{option} {exc.cid} is not in the content store {market.store.location}: store it first with "
            "`pocfl store put FILE` (same --ipfs), or pass FILE",
        )
        raise


def check_initial_weights(market: Market, manifest: ProjectManifest) -> None:
    """The manifest's initial weights must be a ``weights`` file of the model the manifest describes.

    A hand-edited manifest (13 features and 3 classes over the 64/10 initial weights) would otherwise escrow
    the budget and fail every round with an architecture mismatch; refusing here costs one fetch of the model.

    Raises
    ------
    ConfigError
        The weights are another model (named in words: ``a 64-32-10 MLP``, the manifest's ``13-32-3``), or not
        a valid weights file.
    """
    from pocfl.rounds.inputs import rejection_reason
    from pocfl.updates import ArchitectureMismatchError, decode_update

    model = manifest.model
    spec = model.spec()
    said = f"{model.n_features}-{model.hidden}-{model.n_classes}"
    cid = model.initial_weights_cid.strip()
    max_size = spec.nbytes + (1 << 20)
    try:
        decode_update(market.fetch(cid, max_size), spec, kind="weights", max_size=max_size)
    except ArchitectureMismatchError as exc:
        got = exc.got_model or "another model"
        raise ConfigError(
            f"the initial weights are {got.removeprefix('a ')}, the manifest says {said} (features-hidden-classes): "
            f"write the manifest and its weights together with `pocfl project manifest` "
            f"(model.initial_weights_cid {cid}; architecture fingerprint {exc.got}, the manifest's {exc.expected})"
        ) from None
    except StoreUnavailableError:
        raise  # an outage, not a bad manifest: retrying may succeed
    except PocflError as exc:
        raise ConfigError(
            f"model.initial_weights_cid {cid} is not a weights file of the manifest's {said} MLP: "
            f"{rejection_reason(exc)}"
        ) from None


def check_manifest(market: Market, request: ProjectRequest) -> bytes:
    """Check a training project's manifest against the store and the chain; return its validation commitment.

    Raises
    ------
    ObjectNotFoundError
        The store lacks the manifest's initial weights.
    ConfigError
        The initial weights are another model than the manifest's (:func:`check_initial_weights`), the request's
        validation commitment is another one, or the proof configuration does not fit.
    """
    from pocfl.fl_project import validation_commitment

    manifest = request.manifest
    assert manifest is not None
    _require_weights(market, manifest.model.initial_weights_cid)
    check_initial_weights(market, manifest)
    expected = validation_commitment(manifest, market)
    if request.validation_set_commitment not in (ZERO_BYTES32, expected):
        raise ConfigError(
            f"the validation commitment 0x{request.validation_set_commitment.hex()} is not the manifest's validation "
            f"set's 0x{expected.hex()}"
        )
    check_proof_config(market.client.chain, manifest, request.verifier, request.max_trainers)
    return expected


def create_project(market: Market, request: ProjectRequest, *, step: Step | None = None) -> CreatedProject:
    """Check a project's settings, store its initial model, create it and allowlist its trainers.

    Parameters
    ----------
    market
        The owner's market: its account signs and pays the budget, its store keeps the initial model.
    request
        The settings.
    step
        Wraps each transaction with a description of it (default: nothing).

    Returns
    -------
    CreatedProject
        The project, its parameters and the receipts.

    Raises
    ------
    ConfigError
        An inconsistent manifest (:func:`check_manifest`).
    ObjectNotFoundError
        The store lacks the initial model's CID, or the manifest's initial weights.
    """
    wrap: Step = step or (lambda _: nullcontext())
    commitment = request.validation_set_commitment
    if request.manifest is not None:
        from pocfl.fl_project import create_fl_project
        from pocfl.store import compute_cid

        commitment = check_manifest(market, request)
        model_cid = compute_cid(request.manifest.to_json())
    elif request.initial_model_cid is not None:
        model_cid = market.require(request.initial_model_cid)
    else:
        assert request.initial_model is not None
        model_cid = market.publish(request.initial_model)
    start = request.start_time
    if start is None:
        start = market.client.chain.now() + (request.start_in or 0)
    params = request.params(start, model_cid, commitment)
    with wrap("creating the project"):
        if request.manifest is not None:
            project_id, receipt = create_fl_project(market, params, request.budget, request.manifest)
        else:
            project_id, receipt = market.client.create_project(params, request.budget)
    allow_receipt = None
    if request.allowlist:
        with wrap(f"allowlisting {len(request.allowlist)} trainers"):
            allow_receipt = market.client.allow_trainers(project_id, list(request.allowlist))
    return CreatedProject(
        project_id=project_id,
        owner=market.client.sender,
        params=params,
        budget=request.budget,
        store=market.store.location,
        allowlist=request.allowlist,
        receipt=receipt,
        allow_receipt=allow_receipt,
    )


__all__ = [
    "CreatedProject",
    "ProjectRequest",
    "Step",
    "check_initial_weights",
    "check_manifest",
    "check_proof_config",
    "create_project",
]
