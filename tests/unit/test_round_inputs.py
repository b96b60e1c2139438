"""pocfl.rounds.inputs without a chain: recipes, validation sets, round settings, submission validation."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aggregator.round_inputs import round_config
from pocfl.manifest import AggregationConfig, ManifestError, ModelInfo, ProjectManifest, ValidationInfo
from pocfl.market import Market, SubmittedUpdate
from pocfl.ml.data import load_digits_split
from pocfl.rounds.inputs import (
    NO_KEY_REASON,
    ValidationSetError,
    load_validation,
    parse_recipe,
    round_start_digest,
    validate_submission,
)
from pocfl.rounds.report import REASON_LIMIT
from pocfl.store import MemoryStore, compute_cid
from pocfl.updates import EncryptionKeyPair, ModelSpec, encode_update, encrypt_update, update_commitment
from pocfl.updates.format import FINGERPRINT_KEY, FORMAT_KEY, FORMAT_NAME, KIND_KEY, MAX_EXTRA_HEADER
from tests.helpers import round_seed

pytestmark = pytest.mark.unit

MARKET_ADDRESS = "0x" + "ab" * 20
TRAINER = "0x" + "12" * 20
OTHER = "0x" + "34" * 20
CHAIN_ID = 31337


def manifest(**validation: str | None) -> ProjectManifest:
    return ProjectManifest(
        name="t",
        model=ModelInfo(n_features=64, hidden=4, n_classes=10, initial_weights_cid="bafkqaaa"),
        validation=ValidationInfo(**validation),  # type: ignore[arg-type]
    )


def npz_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=x, y=y)
    return buffer.getvalue()


def test_recipe_parsing() -> None:
    assert parse_recipe("sklearn-digits:seed=3:fraction=0.25") == ("sklearn-digits", {"seed": "3", "fraction": "0.25"})
    with pytest.raises(ValidationSetError, match="not key=value"):
        parse_recipe("sklearn-digits:seed")


def test_validation_from_the_recipe_is_the_digits_split() -> None:
    x, y = load_validation(manifest(recipe="sklearn-digits:seed=1:fraction=0.2"), MemoryStore())
    _, _, x_val, y_val = load_digits_split(1, 0.2)
    assert np.array_equal(x, x_val) and np.array_equal(y, y_val)
    with pytest.raises(ValidationSetError, match="unknown data set"):
        load_validation(manifest(recipe="mnist:seed=1"), MemoryStore())
    with pytest.raises(ValidationSetError, match="unknown argument"):
        load_validation(manifest(recipe="sklearn-digits:size=3"), MemoryStore())


def test_validation_from_a_cid_or_file_is_checked_against_the_commitment(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    y = np.arange(5, dtype=np.int64)
    data = npz_bytes(x, y)
    store = MemoryStore()
    cid = store.put_bytes(data)
    commitment = hashlib.sha256(data).digest()

    got_x, got_y = load_validation(manifest(cid=cid), store, commitment=commitment)
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)

    path = tmp_path / "val.npz"
    path.write_bytes(data)
    assert np.array_equal(load_validation(manifest(), store, path, commitment=commitment)[1], y)

    with pytest.raises(ValidationSetError, match="validationSetCommitment"):
        load_validation(manifest(cid=cid), store, commitment=b"\x01" * 32)
    other = tmp_path / "other.npz"
    other.write_bytes(npz_bytes(x, y[::-1].copy()))
    with pytest.raises(ValidationSetError, match="the manifest names"):
        load_validation(manifest(cid=cid), store, other)
    with pytest.raises(ValidationSetError, match="no validation recipe"):
        load_validation(manifest(), store)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValidationSetError, match="npz"):
        load_validation(manifest(), store, garbage)


def test_round_config_follows_the_manifest() -> None:
    m = ProjectManifest(
        name="t",
        model=ModelInfo(n_features=64, hidden=4, n_classes=7, initial_weights_cid="x"),
        aggregation=AggregationConfig(sketch_dim=0, shapley_method="exact", shapley_max_evaluations=9),
    )
    config = round_config(m)
    assert (config.sketch_dim, config.metric, config.n_classes) == (0, "neg_loss", 7)
    assert (config.scoring.method, config.scoring.max_evaluations) == ("exact", 9)
    bad = ProjectManifest(name="t", model=m.model, aggregation=AggregationConfig(shapley_method="magic"))
    with pytest.raises(ManifestError, match="shapley_method"):
        round_config(bad)


def test_round_start_digest_matches_the_contract_rule() -> None:
    assert round_start_digest(CHAIN_ID, MARKET_ADDRESS, 4, 2) == round_seed(CHAIN_ID, MARKET_ADDRESS, 4, 2)


# --- validate_submission with a stand-in chain client ---------------------------------------------------------


@dataclass
class _Chain:
    chain_id: int = CHAIN_ID


@dataclass
class _Client:
    chain: _Chain
    address: str = MARKET_ADDRESS


def _market(store: MemoryStore) -> Market:
    return Market(_Client(_Chain()), store)  # type: ignore[arg-type]


def _submitted(store: MemoryStore, payload: bytes, commitment: bytes, trainer: str = TRAINER) -> SubmittedUpdate:
    return SubmittedUpdate(0, trainer, store.put_bytes(payload), commitment, b"\0" * 32, 1)


def _commit(plaintext: bytes, trainer: str = TRAINER) -> bytes:
    return update_commitment(
        plaintext, chain_id=CHAIN_ID, market=MARKET_ADDRESS, project_id=1, round=0, trainer=trainer
    )


def test_validate_submission_accepts_plain_and_sealed_updates_and_rejects_everything_else() -> None:
    spec = manifest().model.spec()
    store = MemoryStore()
    market = _market(store)
    delta = np.linspace(-1, 1, spec.size, dtype=np.float32)
    plaintext = encode_update(spec.unflatten(delta), spec, kind="delta")

    ok = validate_submission(market, _submitted(store, plaintext, _commit(plaintext)), 1, 0, spec)
    assert ok.accepted and ok.reason is None and not ok.encrypted and ok.plaintext is None
    assert ok.vector is not None and np.array_equal(ok.vector, delta)

    key = EncryptionKeyPair.generate()
    sealed = _submitted(store, encrypt_update(plaintext, key.public_key), _commit(plaintext))
    opened = validate_submission(market, sealed, 1, 0, spec, key)
    assert opened.accepted and opened.encrypted and opened.plaintext == plaintext
    no_key = validate_submission(market, sealed, 1, 0, spec)
    assert (no_key.vector, no_key.reason, no_key.encrypted) == (None, NO_KEY_REASON, True)
    wrong_key = validate_submission(market, sealed, 1, 0, spec, EncryptionKeyPair.generate())
    assert wrong_key.reason is not None and wrong_key.reason.startswith("WrongRecipientError: ")

    replay = validate_submission(market, _submitted(store, plaintext, _commit(plaintext), OTHER), 1, 0, spec)
    assert replay.reason is not None and replay.reason.startswith("CommitmentMismatchError: ")
    garbage = b"garbage" * 10
    assert (
        validate_submission(market, _submitted(store, garbage, _commit(garbage)), 1, 0, spec).reason or ""
    ).startswith("CorruptUpdateError: ")
    weights = encode_update(spec.unflatten(delta), spec, kind="weights")
    kind = validate_submission(market, _submitted(store, weights, _commit(weights)), 1, 0, spec)
    assert (kind.reason or "").startswith("UpdateKindError: ")
    too_big = validate_submission(market, _submitted(store, plaintext, _commit(plaintext)), 1, 0, spec, max_size=100)
    assert (too_big.reason or "").startswith(("UpdateTooLargeError: ", "ObjectTooLargeError: "))

    missing = SubmittedUpdate(0, TRAINER, compute_cid(b"never stored"), _commit(plaintext), b"\0" * 32, 1)
    assert (validate_submission(market, missing, 1, 0, spec).reason or "").startswith("ObjectNotFoundError: ")
    store.objects[ok.submitted.cid] = plaintext[::-1]  # the store hands back other bytes
    tampered = validate_submission(market, ok.submitted, 1, 0, spec)
    assert (tampered.reason or "").startswith("CidMismatchError: ")


# --- hostile updates: named, bounded rejection reasons --------------------------------------------------------

NASTY = 'é\u2028\x00\U0001f600"\\'
"""Characters that JSON and ``repr`` escape to several bytes each (up to 12 for the emoji)."""


def _raw_update(header: dict[str, object] | bytes, data: bytes = b"") -> bytes:
    text = (
        header if isinstance(header, bytes) else json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    )
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _hostile_updates(spec: ModelSpec, size: int) -> dict[str, bytes]:
    """Hostile updates with headers of about ``size`` bytes, each keyed by the start of the reason rejecting it."""
    meta = {FORMAT_KEY: FORMAT_NAME, KIND_KEY: "delta", FINGERPRINT_KEY: spec.fingerprint}
    per_copy = len(json.dumps(NASTY, ensure_ascii=False).encode()) - 2
    huge = NASTY * ((size - 512) // per_copy)
    half = huge[: len(huge) // 2]
    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    empty = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    many = {f"{NASTY}{i:07d}": empty for i in range((size - 512) // (per_copy + 60))}
    deep = b"[" * ((size - 16) // 2) + b"]" * ((size - 16) // 2)
    return {
        "TensorShapeError: update does not match the model spec: missing": _raw_update(
            {"__metadata__": meta, huge: entry}, bytes(4)
        ),
        "TensorShapeError: update does not match the model spec: missing tensors [": _raw_update(
            {"__metadata__": meta, **many}
        ),
        "CorruptUpdateError: unsupported format": _raw_update({"__metadata__": {**meta, FORMAT_KEY: huge}}),
        "ArchitectureMismatchError: update is for model architecture": _raw_update(
            {"__metadata__": {**meta, FINGERPRINT_KEY: huge}}
        ),
        "CorruptUpdateError: invalid metadata pocfl.kind=": _raw_update({"__metadata__": {**meta, KIND_KEY: huge}}),
        "CorruptUpdateError: missing metadata": _raw_update({"__metadata__": {half: half}}),
        "CorruptUpdateError: __metadata__[": _raw_update({"__metadata__": {half: [half]}}),
        "CorruptUpdateError: tensor ": _raw_update({half: {**entry, "dtype": half}}, bytes(4)),
        "CorruptUpdateError: header nests JSON": _raw_update(b'{"a":' + deep + b"}"),
    }


def test_hostile_updates_are_rejected_with_bounded_named_reasons() -> None:
    """Issue 11 part 2: a reason never echoes the update; its length is bounded whatever the update holds.

    Each hostile header is as large as the decoder parses for this model (its canonical header plus
    ``MAX_EXTRA_HEADER``) and full of characters that escape to many bytes; a 24 MiB one, like the update that
    made a 75.5 MB report, is refused by its length before parsing.
    """
    spec = manifest().model.spec()
    store = MemoryStore()
    market = _market(store)
    largest = spec.header_size + MAX_EXTRA_HEADER
    cases = _hostile_updates(spec, largest)
    cases["CorruptUpdateError: header length"] = _hostile_updates(spec, 24 << 20)["CorruptUpdateError: tensor "]
    for prefix, payload in cases.items():
        header_len = struct.unpack_from("<Q", payload)[0]
        assert largest - 2048 <= header_len <= largest or prefix.endswith("header length"), (prefix, header_len)
        got = validate_submission(market, _submitted(store, payload, _commit(payload)), 1, 0, spec, max_size=64 << 20)
        assert got.reason is not None and got.reason.startswith(prefix), (prefix, (got.reason or "")[:200])
        assert len(got.reason) <= REASON_LIMIT and got.reason.isascii() and got.reason.isprintable()
        assert len(json.dumps(got.reason)) <= 2 * REASON_LIMIT + 2


def test_a_quarantined_submission_is_rejected_as_a_cid_mismatch_every_time(tmp_path: Path) -> None:
    """Regression: once `round fetch` quarantined a tampered update, the aggregator said ObjectNotFoundError."""
    from pocfl.store import EmbeddedStore

    spec = manifest().model.spec()
    store = EmbeddedStore(tmp_path)
    market = Market(_Client(_Chain()), store)  # type: ignore[arg-type]
    plaintext = encode_update(spec.unflatten(np.zeros(spec.size, dtype=np.float32)), spec, kind="delta")
    submitted = SubmittedUpdate(0, TRAINER, store.put_bytes(plaintext), _commit(plaintext), b"\0" * 32, 1)
    store.path_of(submitted.cid).write_bytes(plaintext[::-1])  # tampered on disk
    for _ in range(2):  # the first read quarantines it (what `round fetch` does), the second is the aggregator's
        reason = validate_submission(market, submitted, 1, 0, spec).reason or ""
        assert reason.startswith("CidMismatchError: "), reason


def test_a_quarantined_report_keeps_its_mismatch_reason(tmp_path: Path) -> None:
    from pocfl.market import report_hash
    from pocfl.store import CidMismatchError, EmbeddedStore, ObjectNotFoundError

    store = EmbeddedStore(tmp_path)
    market = Market(_Client(_Chain()), store)  # type: ignore[arg-type]
    cid = store.put_bytes(b'{"round": 0}')
    store.path_of(cid).write_bytes(b'{"round": 9}')
    for _ in range(2):  # the first read quarantines the report; the second must not say "not found"
        with pytest.raises(CidMismatchError):
            market.fetch_report(report_hash(cid))
    assert store.quarantined(cid) and not MemoryStore().quarantined(cid)
    with pytest.raises(ObjectNotFoundError):
        market.fetch_report(report_hash(compute_cid(b"never stored")))
    store.put_bytes(b'{"round": 0}')  # the right bytes repair it
    assert not store.quarantined(cid) and market.fetch_report(report_hash(cid)) == (cid, b'{"round": 0}')
