"""Market = chain client + content store: every CID written is stored first, every CID read is verified."""

from __future__ import annotations

import os

import pytest

from pocfl.market import Market, report_cids, report_hash
from pocfl.store import CidMismatchError, MemoryStore, ObjectNotFoundError, compute_cid
from pocfl.store.cid import CHUNK_SIZE
from tests.helpers import Env, standard_params, warp_to

pytestmark = pytest.mark.integration


def test_a_round_through_the_store(env: Env) -> None:

    store = MemoryStore()
    owner = Market(env.client(env.owner), store)
    initial = os.urandom(1000)
    project_id, _ = owner.create_project(standard_params(env, min_trainers=2), 10**18, initial_model=initial)
    state = env.market.project(project_id)
    assert state.params.initial_model_cid == state.model_cid == compute_cid(initial)
    assert store.pinned == {compute_cid(initial)}

    t1, t2 = env.trainers[:2]
    for t in (t1, t2):
        env.client(t).register(project_id)
    warp_to(env.chain, state.params.start_time)
    payloads = {t1.address: os.urandom(CHUNK_SIZE + 1), t2.address: os.urandom(10)}
    for t in (t1, t2):
        cid, _ = Market(env.client(t), store).submit_update(project_id, 0, payloads[t.address], b"\x01" * 32)
        assert cid == compute_cid(payloads[t.address])

    aggregator = Market(env.client(env.aggregator), store)
    updates = aggregator.submitted_updates(project_id, 0)
    assert [u.trainer for u in updates] == [t1.address, t2.address]
    assert [aggregator.fetch(u.cid) for u in updates] == [payloads[t1.address], payloads[t2.address]]

    warp_to(env.chain, env.market.project(project_id).submission_deadline)
    model, report = os.urandom(3 * CHUNK_SIZE), b'{"round": 0}'
    post, receipt = aggregator.post_round(
        project_id,
        0,
        model=model,
        report=report,
        submissions=[u.submission for u in updates],
        scores=[3, 1],
        outliers=[False, False],
    )
    assert receipt.event("RoundPosted").args["credited"] > 0
    assert aggregator.fetch_model(project_id) == (compute_cid(model), model)
    assert post.report_hash == report_hash(compute_cid(report))
    assert aggregator.fetch_report(post.report_hash) == (compute_cid(report), report)

    store.objects[compute_cid(model)] = model[::-1]  # a store that hands back other bytes is caught
    with pytest.raises(CidMismatchError):
        aggregator.fetch_model(project_id)


def test_report_cids_cover_both_layouts() -> None:
    small, big = b"r" * 10, b"r" * (CHUNK_SIZE + 1)
    assert report_cids(report_hash(compute_cid(small)))[0] == compute_cid(small)
    assert report_cids(report_hash(compute_cid(big)))[1] == compute_cid(big)


def test_cids_missing_from_the_store_never_reach_the_chain(env: Env) -> None:

    owner = Market(env.client(env.owner), MemoryStore())
    before = env.market.project_count()
    with pytest.raises(ObjectNotFoundError, match="store it before"):
        owner.create_project(standard_params(env, initial_model_cid=compute_cid(b"elsewhere")), 10**18)
    assert env.market.project_count() == before
