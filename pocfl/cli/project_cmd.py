"""``pocfl project``: create, inspect, allowlist, cancel, settle and withdraw projects (owner side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.chain.types import (
    ZERO_ADDRESS,
    ZERO_BYTES32,
    CancelReason,
    ProjectState,
    ProjectStatus,
)
from pocfl.cli.common import option, project_events, submission_doc, tx_doc
from pocfl.cli.output import Output, eth, eth_wei, guarded, kv_table, relative, short, utc, when
from pocfl.cli.parse import (
    existing_file,
    parse_address,
    parse_addresses,
    parse_bytes32,
    parse_eth,
    parse_wei,
    sha256_file,
    store_holds,
    stored_cid,
)
from pocfl.cli.session import (
    IpfsOpt,
    JsonOpt,
    Session,
    connected,
)
from pocfl.errors import ConfigError
from pocfl.fsutil import write_bytes_atomic

if TYPE_CHECKING:
    from pocfl.chain.client import MarketplaceClient
    from pocfl.chain.types import EventRecord
    from pocfl.fl_project import BuiltManifest
    from pocfl.manifest import ProjectManifest
    from pocfl.projects import CreatedProject
    from pocfl.store import ContentStore

app = typer.Typer(name="project", help="Create and manage training projects.", no_args_is_help=True)

ProjectId = Annotated[int, typer.Argument(min=1, metavar="ID", help="Project id (see `pocfl project list`).")]
ENDED = (ProjectStatus.FINISHED, ProjectStatus.CANCELLED)


# ---------------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------------


AggregatorOpt = Annotated[
    str,
    typer.Option(
        metavar="ADDRESS|FILE",
        help="The only account allowed to post rounds (an address or its keystore file).",
    ),
]
SubmissionWindowOpt = Annotated[int, typer.Option(min=1, metavar="SECONDS", help="Seconds each round accepts updates.")]
AggregationWindowOpt = Annotated[
    int, typer.Option(min=1, metavar="SECONDS", help="Seconds the aggregator then has to post results.")
]
BudgetOpt = Annotated[str | None, typer.Option(metavar="ETH", help="Reward budget in ETH (exact decimal, e.g. 1.5).")]
StartInOpt = Annotated[
    int | None, typer.Option(min=1, metavar="SECONDS", help="Registration closes and round 0 opens in SECONDS.")
]
AllowlistOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="ADDRESS",
        help="Only these trainers may register (repeat or comma-separate; enables allowlist mode).",
    ),
]
VerifierOpt = Annotated[
    str | None, typer.Option(metavar="ADDRESS", help="IRoundVerifier contract checking each round's proof.")
]
ValidationCommitmentOpt = Annotated[
    str | None, typer.Option(metavar="0xHEX", help="32-byte commitment to the validation set.")
]
ValidationFileOpt = Annotated[
    Path | None, typer.Option(metavar="PATH", help="...or the validation set file (its sha256 is committed).")
]
InitialModelOpt = Annotated[
    Path | None,
    option(
        metavar="FILE",
        help="The initial global model file: stored and pinned in the content store, its CID put on chain.",
    ),
]
InitialModelCidOpt = Annotated[
    str | None, option(metavar="CID", help="...or the CID of an initial model already in the content store.")
]
ManifestOpt = Annotated[
    Path | None,
    option(
        metavar="FILE",
        help="...or a training project's manifest (see `pocfl project manifest`): stored, its CID put on chain "
        "as the initial model, and its validation set committed to.",
    ),
]


@app.command("create")
@guarded
@connected(store=True)
def create(
    aggregator: AggregatorOpt,
    rounds: Annotated[int, typer.Option(min=1, metavar="N", help="Number of training rounds.")],
    submission_window: SubmissionWindowOpt,
    aggregation_window: AggregationWindowOpt,
    min_trainers: Annotated[int, typer.Option(min=1, metavar="N", help="Trainers needed for training to start.")],
    max_trainers: Annotated[int, typer.Option(min=1, metavar="N", help="Registration cap (at most 512).")],
    budget: BudgetOpt = None,
    budget_wei: Annotated[str | None, typer.Option(metavar="WEI", help="Reward budget in wei instead.")] = None,
    start_in: StartInOpt = None,
    start_time: Annotated[int | None, typer.Option(metavar="UNIX", help="...or at this unix timestamp.")] = None,
    stake: Annotated[str, typer.Option(metavar="ETH", help="Refundable stake each trainer deposits.")] = "0",
    allowlist: AllowlistOpt = None,
    verifier: VerifierOpt = None,
    validation_commitment: ValidationCommitmentOpt = None,
    validation_file: ValidationFileOpt = None,
    initial_model: InitialModelOpt = None,
    initial_model_cid: InitialModelCidOpt = None,
    manifest: ManifestOpt = None,
    *,
    s: Session,
) -> None:
    """Create a project and escrow its reward budget (you become its owner).

    The initial model's CID goes on chain only once the content store (--ipfs) holds its bytes. For federated
    training give --manifest: the manifest names the model, its initial weights (already in the store) and the
    validation set, whose commitment goes on chain.
    """
    from pocfl.projects import ProjectRequest, create_project

    if (budget is None) == (budget_wei is None):
        raise ConfigError("give the reward budget with exactly one of --budget ETH or --budget-wei WEI")
    if validation_commitment is not None and validation_file is not None:
        raise ConfigError("give at most one of --validation-commitment and --validation-file")
    commitment = ZERO_BYTES32
    if validation_commitment is not None:
        commitment = parse_bytes32(validation_commitment, "--validation-commitment")
    elif validation_file is not None:
        commitment = sha256_file(validation_file, "--validation-file")
    request = ProjectRequest(
        aggregator=parse_address(_keystore_address(aggregator), "--aggregator"),
        num_rounds=rounds,
        submission_window=submission_window,
        aggregation_window=aggregation_window,
        min_trainers=min_trainers,
        max_trainers=max_trainers,
        budget=parse_eth(budget, "--budget") if budget is not None else parse_wei(str(budget_wei)),
        start_time=start_time,
        start_in=start_in,
        stake=parse_eth(stake, "--stake"),
        allowlist=tuple(parse_addresses(allowlist, "--allowlist")),
        verifier=parse_address(verifier, "--verifier") if verifier else ZERO_ADDRESS,
        validation_set_commitment=commitment,
        manifest=_read_manifest(manifest) if manifest is not None else None,
        initial_model=existing_file(initial_model, "--initial-model") if initial_model is not None else None,
        initial_model_cid=initial_model_cid,
    )
    sm = s.store_market()
    if initial_model_cid is not None:  # checked here too, for a message that names the option
        stored_cid(sm.store, initial_model_cid, "--initial-model-cid", "--initial-model FILE")
    created = create_project(sm, request, step=s.out.status)
    _render_created(s, created)


def _render_created(s: Session, created: CreatedProject) -> None:
    """``project create``'s output: the project's parameters and transactions."""
    project_id, params = created.project_id, created.params
    now = s.now()
    document: dict[str, Any] = {
        "project_id": project_id,
        "owner": created.owner,
        "initial_model_cid": params.initial_model_cid,
        "store": created.store,
        "budget_wei": created.budget,
        "round_budget_wei": created.round_budget,
        "params": params.to_json(),
        "allowlist": list(created.allowlist),
        "tx": tx_doc(created.receipt),
    }
    if created.allow_receipt is not None:
        document["allow_tx"] = tx_doc(created.allow_receipt)

    def human() -> None:
        s.out.print(f"Created project [bold]{project_id}[/bold] escrowing {eth_wei(created.budget)}")
        s.out.print(f"Initial model {escape(params.initial_model_cid)} (in {escape(created.store)}).")
        s.out.print(f"Registration closes and round 0 opens at {when(params.start_time, now)}.")
        if created.allowlist:
            s.out.print(f"Allowlisted {len(created.allowlist)} trainers.")
        s.out.print(f"Trainers join with `pocfl register {project_id}`; see `pocfl project status {project_id}`.")

    s.out.result(document, human)


def _read_manifest(path: Path) -> ProjectManifest:
    from pocfl.manifest import ProjectManifest

    try:
        return ProjectManifest.from_json(existing_file(path, "--manifest").read_bytes())
    except OSError as exc:
        raise ConfigError(f"--manifest: cannot read {path}: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------------


def _keystore_address(value: str) -> str:
    """``--aggregator``: an address, or a keystore FILE whose (public) address field names it."""
    path = Path(value)
    if value.startswith("0x") or not path.is_file():
        return value
    try:
        address = json.loads(path.read_text()).get("address")
    except (OSError, ValueError, AttributeError):
        address = None
    if not isinstance(address, str):
        raise ConfigError(f"--aggregator {value} is neither an address nor a keystore file with an address")
    return address if address.startswith("0x") else "0x" + address


def _public_key(value: str | None) -> str | None:
    """``--aggregator-key``: a hex public key, or the key FILE of `pocfl account encryption-key` (its public half)."""
    if value is None or not Path(value).is_file():
        return value
    from pocfl.updates import EncryptionKeyPair

    return EncryptionKeyPair.load(value).public_key_hex


AggregatorKeyOpt = Annotated[
    str | None,
    option(
        metavar="HEX|FILE",
        help="The aggregator's encryption public key (or its key file from `pocfl account encryption-key`): "
        "trainers seal updates to it.",
    ),
]
ValidationRecipeOpt = Annotated[
    str | None,
    option(metavar="RECIPE", help="Public validation set recipe. Default: sklearn-digits:seed=S:fraction=0.2."),
]
ProveSlotsOpt = Annotated[
    int | None,
    option(
        "--prove-slots",
        min=2,
        max=64,
        metavar="K",
        help="Rounds are proven (zk/): the circuit's slot count, as given to `pocfl deploy --with-verifier`. "
        "Create the project with that verifier (--verifier) and --max-trainers <= K.",
    ),
]
SketchDimOpt = Annotated[
    int,
    typer.Option("--sketch-dim", min=2, max=512, metavar="k", help="Committed feature size with --prove-slots."),
]


ValidationDataOpt = Annotated[
    Path | None,
    option(
        "--validation",
        metavar="FILE.csv|FILE.npz|DIR",
        help="Your own validation set: features and classes are inferred from it and the manifest stores it (or "
        "only its commitment, with --private-validation). CSV: numeric columns, label in the "
        "column named label or the last one (or --label-column), header optional.",
    ),
]
LabelColumnOpt = Annotated[
    str | None,
    option(metavar="NAME|INDEX", help="With --validation FILE.csv: the label column (default: label, else the last)."),
]
TransformOpt = Annotated[
    str,
    option(
        metavar="NAME",
        help="With --validation: input preprocessing every party applies: standardize (your validation set's "
        "per-feature mean and std, published) or none.",
    ),
]


@app.command("manifest")
@guarded
def manifest_cmd(
    out_file: Annotated[Path, typer.Argument(metavar="OUT.json", help="Where to write the manifest.")],
    hidden: Annotated[int, typer.Option(min=1, metavar="H", help="Hidden width of the MLP.")] = 32,
    seed: Annotated[int, typer.Option(min=0, metavar="S", help="Seed of the initial weights and of the split.")] = 0,
    name: Annotated[str, typer.Option(metavar="TEXT", help="The project's name.")] = "digits",
    aggregator_key: AggregatorKeyOpt = None,
    lr: Annotated[float, typer.Option(min=0.0, metavar="LR", help="Round-0 learning rate.")] = 0.1,
    epochs: Annotated[int, typer.Option(min=1, metavar="N", help="Round-0 local epochs.")] = 2,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Round-0 batch size.")] = 32,
    momentum: Annotated[
        float, option(min=0.0, max=0.99, metavar="M", help="SGD momentum of local training (the optimizer is SGD).")
    ] = 0.0,
    validation_recipe: ValidationRecipeOpt = None,
    validation: ValidationDataOpt = None,
    label_column: LabelColumnOpt = None,
    features: Annotated[
        int | None, option(min=1, metavar="N", help="Input features (default: inferred from --validation).")
    ] = None,
    classes: Annotated[
        int | None, option(min=2, metavar="N", help="Classes (default: inferred from --validation, max label + 1).")
    ] = None,
    transform: TransformOpt = "standardize",
    private_validation: Annotated[
        bool,
        option(
            "--private-validation",
            help="With --validation: publish only the validation set's commitment, not the set itself.",
        ),
    ] = False,
    prove_slots: ProveSlotsOpt = None,
    sketch_dim: SketchDimOpt = 16,
    ipfs: IpfsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a training project's manifest, storing its initial weights in the content store.

    Without --validation the model is the digits MLP (64 features, 10 classes) and the validation set a public
    recipe. With --validation FILE the model fits your data; the validation set is written next to OUT.json as
    OUT.validation.npz (give it to `pocfl aggregate --validation` when it is private). Then create the project
    with `pocfl project create --manifest OUT.json ...`.
    """
    from pocfl.fl_project import ManifestRequest, build_manifest
    from pocfl.manifest import ProofConfig, TrainingConfig
    from pocfl.store import open_store

    request = ManifestRequest(
        name,
        seed=seed,
        hidden=hidden,
        training=TrainingConfig(learning_rate=lr, local_epochs=epochs, batch_size=batch_size, momentum=momentum),
        aggregator_public_key=_public_key(aggregator_key),
        proof=None if prove_slots is None else ProofConfig(slots=prove_slots, sketch_dim=sketch_dim),
        validation_recipe=validation_recipe,
        validation=validation,
        label_column=label_column,
        n_features=features,
        n_classes=classes,
        transform=transform,
        private=private_validation,
    )
    store = open_store(ipfs)
    try:
        built = build_manifest(request, store)
        location = store.location
    finally:
        store.close()
    npz_file = out_file.with_suffix(".validation.npz")
    try:
        if built.own is not None:
            write_bytes_atomic(npz_file, built.own.validation_npz)
        write_bytes_atomic(out_file, built.manifest_bytes)  # never half a manifest
    except OSError as exc:
        raise ConfigError(f"cannot write {out_file}: {exc.strerror or exc}") from exc
    _render_manifest(Output(json_out), built, out_file, npz_file, location)


def _render_manifest(out: Output, built: BuiltManifest, out_file: Path, npz_file: Path, location: str) -> None:
    """``project manifest``'s output: the files, CIDs and commitment; the model and validation set of own data."""
    from pocfl.store import compute_cid

    made, own = built.manifest, built.own
    document: dict[str, Any] = {
        "file": str(out_file),
        "manifest_cid": compute_cid(built.manifest_bytes),
        "initial_weights_cid": made.model.initial_weights_cid,
        "store": location,
        "validation_set_commitment": "0x" + built.commitment.hex(),
        "manifest": json.loads(built.manifest_bytes),
    }
    if own is not None:
        document |= {
            "features": made.model.n_features,
            "classes": made.model.n_classes,
            "transform": made.preprocessing.transform,
            "validation_file": str(npz_file),
            "validation_samples": own.n_samples,
            "validation_private": made.validation.cid is None,
        }

    def human() -> None:
        out.print(f"Wrote {escape(str(out_file))} (manifest CID {document['manifest_cid']}).")
        out.print(f"Initial weights {made.model.initial_weights_cid} stored in {escape(location)}.")
        if own is None:
            out.print(
                f"Validation set {escape(str(made.validation.recipe))}, commitment "
                f"{document['validation_set_commitment']}."
            )
        else:
            m = made.model
            where = "kept private" if made.validation.cid is None else f"stored as {made.validation.cid}"
            out.print(
                f"Model: MLP {m.n_features} features -> {m.hidden} hidden -> {m.n_classes} classes; inputs "
                f"{made.preprocessing.transform}."
            )
            out.print(
                f"Validation set: {own.n_samples} samples of {own.n_present} classes, {where}, written to "
                f"{escape(str(npz_file))}; commitment {document['validation_set_commitment']}."
            )
        out.print(f"Create the project with `pocfl project create --manifest {escape(str(out_file))} ...`.")

    out.result(document, human)


# ---------------------------------------------------------------------------------------------------
# list / status
# ---------------------------------------------------------------------------------------------------


def _summary(st: ProjectState, now: int) -> dict[str, Any]:
    return {
        "project_id": st.project_id,
        "owner": st.owner,
        "aggregator": st.params.aggregator,
        "status": st.status.name.lower(),
        "phase": st.phase(now),
        "budget_wei": st.budget,
        "escrow_wei": st.escrow,
        "num_rounds": st.params.num_rounds,
        "current_round": st.current_round,
        "trainer_count": st.trainer_count,
        "min_trainers": st.params.min_trainers,
        "max_trainers": st.params.max_trainers,
        "start_time": st.params.start_time,
    }


@app.command("list")
@guarded
@connected()
def list_projects(
    *,
    s: Session,
) -> None:
    """List every project of the marketplace."""
    m = s.market(signer=False)
    now = s.now()
    projects = [m.project(i) for i in range(1, m.project_count() + 1)]

    def human() -> None:
        if not projects:
            s.out.print("No projects yet: create one with `pocfl project create`.")
            return
        table = Table("id", "owner", "phase", "budget (ETH)", "escrow (ETH)", "round", "trainers", "starts")
        for st in projects:
            table.add_row(
                str(st.project_id),
                short(st.owner),
                escape(st.phase(now)),
                eth(st.budget),
                eth(st.escrow),
                f"{min(st.current_round + 1, st.params.num_rounds)}/{st.params.num_rounds}",
                f"{st.trainer_count} ({st.params.min_trainers}-{st.params.max_trainers})",
                relative(st.params.start_time, now),
            )
        s.out.table(table)

    s.out.result({"now": now, "projects": [_summary(st, now) for st in projects]}, human)


def _time(timestamp: int, now: int) -> dict[str, Any]:
    return {"timestamp": timestamp, "utc": utc(timestamp), "relative": relative(timestamp, now)}


def _trainers(
    m: MarketplaceClient, project_id: int, registered: list[EventRecord], credited: list[EventRecord]
) -> list[dict[str, Any]]:
    """``project status``'s trainers: each registered one's state and what it was credited."""
    addresses = list(dict.fromkeys(str(e.args["trainer"]) for e in registered))
    earned: dict[str, int] = dict.fromkeys(addresses, 0)
    for e in credited:
        trainer = str(e.args["trainer"])
        earned[trainer] = earned.get(trainer, 0) + int(e.args["amount"])
    trainers = []
    for address in addresses:
        t = m.trainer(project_id, address)
        trainers.append(
            {
                "address": address,
                "registered": t.registered,
                "stake_held": t.stake_held,
                "submitted_current_round": t.submitted_current_round,
                "credited_wei": earned.get(address, 0),
            }
        )
    return trainers


def _rounds(
    st: ProjectState,
    store: ContentStore,
    posted: list[EventRecord],
    failed: list[EventRecord],
    credited: list[EventRecord],
) -> list[dict[str, Any]]:
    """``project status``'s settled rounds, posted or failed, in round order."""
    rounds: list[dict[str, Any]] = []
    for e in posted:
        r = int(e.args["round"])
        rounds.append(
            {
                "round": r,
                "outcome": "posted",
                "model_cid": e.args["modelCid"],
                "model_stored": store_holds(store, str(e.args["modelCid"])),
                "credited_wei": int(e.args["credited"]),
                "unallocated_wei": int(e.args["unallocated"]),
                "proven": bool(e.args["proven"]),
                "credits": {
                    str(c.args["trainer"]): int(c.args["amount"]) for c in credited if int(c.args["round"]) == r
                },
            }
        )
    for e in failed:
        rounds.append(
            {
                "round": int(e.args["round"]),
                "outcome": "failed",
                "failed_by": str(e.args["caller"]),
                "credited_wei": 0,
                "unallocated_wei": st.round_budget,
            }
        )
    rounds.sort(key=lambda item: int(item["round"]))
    return rounds


def _status_document(m: MarketplaceClient, s: Session, project_id: int, store: ContentStore) -> dict[str, Any]:
    st = m.project(project_id)
    now = s.now()
    start = s.from_block
    registered = project_events(m, "TrainerRegistered", start, projectId=project_id)
    credited = project_events(m, "TrainerCredited", start, projectId=project_id)
    posted = project_events(m, "RoundPosted", start, projectId=project_id)
    failed = project_events(m, "RoundFailed", start, projectId=project_id)
    submitted = project_events(m, "UpdateSubmitted", start, projectId=project_id, round=st.current_round)
    trainers = _trainers(m, project_id, registered, credited)
    rounds = _rounds(st, store, posted, failed, credited)
    submissions = [submission_doc(e, store) for e in sorted(submitted, key=lambda e: int(e.args["index"]))]
    return {
        "project": st.to_json(),
        "model_stored": store_holds(store, st.model_cid),
        "store": store.location,
        "phase": st.phase(now),
        "now": now,
        "times": {
            "start_time": _time(st.params.start_time, now),
            "round_opened_at": _time(st.round_opened_at, now),
            "submission_deadline": _time(st.submission_deadline, now),
            "aggregation_deadline": _time(st.aggregation_deadline, now),
        },
        "owner_withdrawable_wei": st.escrow if st.status in ENDED else 0,
        "trainers": trainers,
        "current_round_submissions": submissions,
        "rounds": rounds,
    }


@app.command("status")
@guarded
@connected(store=True)
def status(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Show a project: parameters, phase, deadlines, money, trainers, submissions and credits.

    For each CID listed (the current model, round models, current submissions) it says whether the content
    store holds it, without fetching.
    """
    m = s.market(signer=False)
    doc = _status_document(m, s, project_id, s.store())
    s.out.result(doc, lambda: _render_status(s, doc))


def _fmt(t: dict[str, Any]) -> str:
    return f"{t['utc']} ({t['relative']})"


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _stored_text(value: bool | None) -> str:
    return {True: "in the store", False: "NOT in the store", None: "store unreachable"}[value]


def _registration_text(p: dict[str, Any], started: bool) -> str:
    """Open only before the start of an active project: ``open`` alone read as "still open" mid-round."""
    params = p["params"]
    mode, bounds = params["registration_mode"], f"{params['min_trainers']}-{params['max_trainers']} trainers"
    if p["status"] == "active" and not started:
        return f"{mode} until the start, {p['trainer_count']} registered of {bounds}"
    return f"closed ({mode} until the start), {p['trainer_count']} registered of {bounds}"


def _render_status(s: Session, doc: dict[str, Any]) -> None:
    p = doc["project"]
    params = p["params"]
    times = doc["times"]
    active = p["status"] == "active"
    started = doc["now"] >= params["start_time"]
    sub_s, agg_s = params["submission_window"], params["aggregation_window"]
    rows: list[tuple[str, Any]] = [
        ("phase", doc["phase"]),
        ("owner", p["owner"]),
        ("aggregator", params["aggregator"]),
        ("verifier", params["verifier"] if params["verifier"] != ZERO_ADDRESS else "none (results not proven)"),
        ("registration", _registration_text(p, started)),
        ("stake", eth_wei(params["stake"])),
        ("start", _fmt(times["start_time"])),
        ("rounds", f"{params['num_rounds']} x ({sub_s} s submit + {agg_s} s aggregate)"),
        ("budget", eth_wei(p["budget"])),
        ("per round", eth_wei(p["round_budget"])),
        ("escrow", eth_wei(p["escrow"])),
        ("stakes held", eth_wei(p["stakes_held"])),
        ("model", f"{p['model_cid']} ({_stored_text(doc['model_stored'])})"),
        ("validation set", params["validation_set_commitment"]),
    ]
    if active and started:
        rows += [
            ("current round", f"{p['current_round']} of {params['num_rounds']} ({p['submission_count']} submissions)"),
            ("submissions until", _fmt(times["submission_deadline"])),
            ("results until", _fmt(times["aggregation_deadline"])),
        ]
    rows.append(("failed rounds", p["failed_rounds"]))
    if doc["owner_withdrawable_wei"]:
        rows.append(("owner can withdraw", eth_wei(doc["owner_withdrawable_wei"])))
    s.out.print(f"[bold]Project {p['project_id']}[/bold] ({p['status']})")
    s.out.table(kv_table(rows))
    if doc["trainers"]:
        table = Table("trainer", "registered", "stake held", "submitted", "credited (ETH)", title="Trainers")
        for t in doc["trainers"]:
            table.add_row(
                t["address"],
                "yes" if t["registered"] else "left",
                "yes" if t["stake_held"] else "no",
                "yes" if t["submitted_current_round"] else "no",
                eth(t["credited_wei"]),
            )
        s.out.table(table)
    if doc["current_round_submissions"]:
        table = Table("#", "trainer", "cid", "stored", title=f"Round {p['current_round']} submissions")
        for sub in doc["current_round_submissions"]:
            table.add_row(str(sub["index"]), sub["trainer"], escape(sub["cid"]), _yes_no(sub["stored"]))
        s.out.table(table)
    if doc["rounds"]:
        table = Table("round", "outcome", "credited (ETH)", "unallocated (wei)", title="Settled rounds")
        for r in doc["rounds"]:
            table.add_row(str(r["round"]), r["outcome"], eth(r["credited_wei"]), str(r["unallocated_wei"]))
        s.out.table(table)


# ---------------------------------------------------------------------------------------------------
# allow / cancel / finalize / withdraw
# ---------------------------------------------------------------------------------------------------


@app.command("allow")
@guarded
@connected(deadline=True)
def allow(
    project_id: ProjectId,
    trainers: Annotated[list[str], typer.Argument(metavar="ADDRESS...", help="Trainers allowed to register.")],
    *,
    s: Session,
) -> None:
    """Allow trainers to register in an allowlist project (owner, before the start time)."""
    addresses = parse_addresses(trainers, "ADDRESS")
    receipt = s.market().allow_trainers(project_id, addresses)
    s.out.result(
        {"project_id": project_id, "allowed": addresses, "tx": tx_doc(receipt)},
        lambda: s.out.print(f"Allowed {len(addresses)} trainers in project {project_id}."),
    )


@app.command("cancel")
@guarded
@connected(deadline=True)
def cancel(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Cancel a project: the owner before it starts, anyone once it started undersubscribed."""
    m = s.market()
    receipt = m.cancel(project_id)
    reason = CancelReason(int(receipt.event("ProjectCancelled").args["reason"])).name.lower()
    st = m.project(project_id)

    def human() -> None:
        s.out.print(f"Cancelled project {project_id}.")
        s.out.print(
            f"The owner withdraws the escrow ({eth_wei(st.escrow)}) with `pocfl project withdraw {project_id}`;"
        )
        s.out.print(f"trainers get their stakes back with `pocfl release-stake {project_id}` then `pocfl claim`.")

    s.out.result({"project_id": project_id, "reason": reason, "escrow_wei": st.escrow, "tx": tx_doc(receipt)}, human)


def _settle(s: Session, view: MarketplaceClient, project_id: int) -> list[dict[str, Any]]:
    """Fail overdue rounds and cancel an undersubscribed started project; returns what was done."""
    from pocfl.chain.contract_errors import AggregationWindowOpen, CannotCancel

    actions: list[dict[str, Any]] = []
    signer: MarketplaceClient | None = None
    st = view.project(project_id)
    for _ in range(st.params.num_rounds + 2):
        st = view.project(project_id)
        now = s.now()
        if st.status != ProjectStatus.ACTIVE or now < st.params.start_time:
            break
        if st.trainer_count < st.params.min_trainers and st.current_round == 0:
            signer = signer or view.as_account(s.account())
            try:
                receipt = signer.cancel(project_id)
            except CannotCancel:
                break
            actions.append({"action": "cancel", "reason": "undersubscribed", "tx": tx_doc(receipt)})
            continue
        if now < st.aggregation_deadline:
            break
        signer = signer or view.as_account(s.account())
        try:
            receipt = signer.fail_round(project_id, st.current_round)
        except AggregationWindowOpen:
            break
        action: dict[str, Any] = {"action": "fail_round", "round": st.current_round, "tx": tx_doc(receipt)}
        if any(e.name == "ProjectCancelled" for e in receipt.events):
            action["cancelled"] = "aggregator timeout"
        actions.append(action)
    return actions


@app.command("finalize")
@guarded
@connected()
def finalize(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Settle timeouts: fail the round the aggregator left overdue, cancel an undersubscribed project.

    Anyone may run it; it does nothing when nothing is overdue. Reports what the owner can withdraw.
    """
    view = s.market(signer=False)
    actions = _settle(s, view, project_id)
    st = view.project(project_id)
    now = s.now()
    withdrawable = st.escrow if st.status in ENDED else 0
    document = {
        "project_id": project_id,
        "actions": actions,
        "status": st.status.name.lower(),
        "phase": st.phase(now),
        "current_round": st.current_round,
        "escrow_wei": st.escrow,
        "owner_withdrawable_wei": withdrawable,
        "aggregation_deadline": st.aggregation_deadline,
    }

    def human() -> None:
        for a in actions:
            if a["action"] == "fail_round":
                extra = " (two in a row: the project is cancelled)" if "cancelled" in a else ""
                s.out.print(f"Failed overdue round {a['round']}{extra}.")
            else:
                s.out.print("Cancelled the project: it started with too few trainers.")
        if not actions:
            s.out.print("Nothing is overdue.")
        s.out.print(f"Project {project_id} is {escape(st.phase(now))}.")
        if st.status == ProjectStatus.ACTIVE and now >= st.params.start_time:
            s.out.print(f"Round {st.current_round} results are due {when(st.aggregation_deadline, now)}.")
        if withdrawable:
            s.out.print(f"The owner can withdraw {eth_wei(withdrawable)} with `pocfl project withdraw {project_id}`.")
        elif st.status == ProjectStatus.ACTIVE:
            s.out.print(f"The escrow of {eth_wei(st.escrow)} stays locked until the project ends.")

    s.out.result(document, human)


@app.command("withdraw")
@guarded
@connected()
def withdraw(
    project_id: ProjectId,
    to: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Send the ether here instead of to the owner.")
    ] = None,
    *,
    s: Session,
) -> None:
    """Owner: withdraw the escrow nobody earned once the project finished or was cancelled."""
    dest = parse_address(to, "--to") if to else None
    m = s.market()
    amount, receipt = m.withdraw_remaining(project_id, dest)
    recipient = dest or m.sender
    s.out.result(
        {"project_id": project_id, "to": recipient, "amount_wei": amount, "tx": tx_doc(receipt)},
        lambda: s.out.print(f"Withdrew {eth_wei(amount)} from project {project_id} to {recipient}."),
    )
