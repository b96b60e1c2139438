"""pocfl.untrusted: the non-recursive JSON screen and bounded quoting, and the parsers that rely on them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pocfl.manifest import ManifestError, ProjectManifest
from pocfl.rounds.hyperparams import HyperParams, HyperParamsError
from pocfl.rounds.report import ReportError, RoundReport
from pocfl.untrusted import (
    ELLIPSIS,
    QUOTE_LIMIT,
    JsonTooDeepError,
    JsonTooLargeError,
    UntrustedJsonError,
    clip,
    json_depth,
    loads_untrusted,
    quote,
    screen_json,
)

pytestmark = pytest.mark.unit

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


def reference_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


@given(JSON_VALUES, st.booleans())
def test_depth_is_the_nesting_of_the_parsed_value(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth(text) == json_depth(text.encode()) == reference_depth(value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"a":"[[[{{{"}', 1),  # brackets inside strings do not count
        (r'["\"[[[", "x"]', 1),  # an escaped quote does not end the string
        (r'["\\", [[1]]]', 3),  # an escaped backslash does: the brackets after it count
        (r'["\\\"[", {}]', 2),  # backslash pair, then escaped quote: still inside the string
        ('["é[", {"ü": ["\u2028"]}]', 3),
        ("[[]][[[]]]", 3),  # invalid JSON still gets a depth (the parser refuses it afterwards)
        ("[[[[", 4),  # unclosed brackets count: the parser would recurse into them
        ('["unterminated [[[[', 5),  # an unterminated string cannot hide brackets
        ("", 0),
        ("123", 0),
    ],
)
def test_depth_tracks_strings_and_escapes(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_limits_are_exact() -> None:
    screen_json(nested(5), max_size=10, max_depth=5)
    with pytest.raises(JsonTooDeepError, match="6 levels deep, more than the 5 allowed"):
        screen_json(nested(6), max_size=100, max_depth=5)
    screen_json("x" * 10, max_size=10)
    with pytest.raises(JsonTooLargeError, match="11 bytes, over the limit of 10"):
        screen_json("x" * 11, max_size=10)
    with pytest.raises(JsonTooLargeError, match="12 bytes"):  # a str is measured in UTF-8 bytes
        screen_json("é" * 6, max_size=11)
    assert loads_untrusted(nested(5, "1"), max_size=100, max_depth=5) == [[[[[1]]]]]


def test_loads_untrusted_names_every_failure() -> None:
    for bad, match in [
        (b"[1,", "not JSON"),
        (b"\xff[]", "not UTF-8"),
        ("\ufeff" + "[]", "not JSON"),
        ('{"a": 1e999999}', None),  # inf is a float: parses, callers check ranges
        ("1" * 5000, "not JSON"),  # int() refuses more than 4300 digits
    ]:
        if match is None:
            loads_untrusted(bad, max_size=1 << 20)
            continue
        with pytest.raises(UntrustedJsonError, match=match):
            loads_untrusted(bad, max_size=1 << 20)
    # UTF-16 would let json.loads guess an encoding in which a bracket byte hides inside another character
    with pytest.raises(UntrustedJsonError, match="not UTF-8"):
        loads_untrusted(json.dumps([[1]]).encode("utf-16"), max_size=1 << 20)


def test_parsers_name_malformed_fields() -> None:
    with pytest.raises(ManifestError, match="model is invalid"):
        ProjectManifest.from_json(
            json.dumps(
                {
                    "format": "pocfl-project/1",
                    "name": "x",
                    "model": {"n_features": "é", "hidden": 1, "n_classes": 2, "initial_weights_cid": "b"},
                }
            ).encode()
        )
    with pytest.raises(ManifestError, match="wrong field"):
        ProjectManifest.from_json(b'{"format":"pocfl-project/1","name":"x","model":[]}')
    with pytest.raises(HyperParamsError, match="invalid hyper-parameters"):
        HyperParams.from_json(
            json.dumps({"round": 0, "learning_rate": 10**400, "local_epochs": 1, "batch_size": 1, "version": 1})
        )
    with pytest.raises(ReportError, match=r"RoundReport.round is 'x'"):
        RoundReport.from_json(json.dumps({"format": "pocfl-round-report/1", "round": "x", "submissions": []}).encode())
    with pytest.raises(ReportError, match=r"SubmissionEntry.reason is 5"):
        RoundReport.from_json(json.dumps({"format": "pocfl-round-report/1", "submissions": [{"reason": 5}]}).encode())
    with pytest.raises(ReportError, match="config is"):
        RoundReport.from_json(json.dumps({"format": "pocfl-round-report/1", "config": [], "submissions": []}).encode())


@given(st.text(max_size=300), st.integers(4, 200))
def test_clip_is_bounded_printable_ascii_and_idempotent(text: str, limit: int) -> None:
    out = clip(text, limit)
    assert len(out) <= limit and out.isascii() and out.isprintable()
    assert clip(out, limit) == out
    full = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode() for c in text)
    assert out == (full if len(full) <= limit else full[: limit - len(ELLIPSIS)] + ELLIPSIS)


def test_quote_renders_any_value_bounded() -> None:
    assert quote("fc1.weight") == "'fc1.weight'"
    assert quote(["a", 1]) == "['a', 1]"
    assert quote("é\n") == r"'\xe9\n'"
    for value in [
        "é" * 10**6,
        "x" * 10**6,
        list(range(10**5)),
        {str(i): [i] * 100 for i in range(1000)},
        10**4000,
        b"\x00" * 10**6,
        ("\u2028",) * 10,
    ]:
        out = quote(value)
        assert len(out) <= QUOTE_LIMIT and out.isascii() and out.isprintable(), out


def test_a_stored_proof_is_checked_field_by_field() -> None:
    from zk.onchain import ProofFormatError, load_round_proof

    good = {"proof": "0xabcd", "witness_hash": hex(5), "rejected": [False, True]}
    assert load_round_proof(json.dumps(good).encode()) == load_round_proof(json.dumps({**good, "x": 1}).encode())
    for bad, match in [
        ([], "not a stored round proof"),
        ({**good, "proof": 5}, "not hex"),
        ({**good, "proof": "0xz"}, "not hex"),
        ({**good, "witness_hash": hex(1 << 256)}, "not a uint256"),
        ({**good, "witness_hash": "-0x1"}, "not a uint256"),
        ({**good, "rejected": [0, 1]}, "booleans"),
        ({**good, "rejected": [False] * 257}, "at most 256"),
    ]:
        with pytest.raises(ProofFormatError, match=match):
            load_round_proof(json.dumps(bad).encode())
