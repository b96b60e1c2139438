"""Each attack's defining property, determinism, and the name registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocfl.testing.attacks import (
    ATTACK_PARAMS,
    Attack,
    alie,
    alie_z,
    apply_attack,
    copycat,
    flip_labels,
    free_rider,
    gaussian_noise,
    ipm,
    scaling,
    sign_flip,
)

pytestmark = pytest.mark.unit

K, D = 10, 50
ATTACKERS = [1, 4, 7]


@pytest.fixture
def updates() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(0.3, 1.0, size=(K, D))).astype(np.float32)


def honest_rows(u: np.ndarray) -> np.ndarray:
    return np.delete(u, ATTACKERS, axis=0)


@pytest.mark.parametrize("attack", list(Attack))
def test_honest_rows_untouched_and_input_not_modified(attack: Attack, updates: np.ndarray) -> None:
    before = updates.copy()
    out = apply_attack(attack, updates, ATTACKERS, seed=3, previous_delta=np.ones(D))
    assert np.array_equal(updates, before)
    assert out.shape == updates.shape
    assert np.array_equal(honest_rows(out), honest_rows(updates))
    again = apply_attack(attack, updates, ATTACKERS, seed=3, previous_delta=np.ones(D))
    assert np.array_equal(out, again)  # deterministic for the seed


def test_sign_flip_and_scaling(updates: np.ndarray) -> None:
    assert np.array_equal(sign_flip(updates, ATTACKERS)[ATTACKERS], -updates[ATTACKERS])
    assert np.allclose(scaling(updates, ATTACKERS, factor=-3.0)[ATTACKERS], -3.0 * updates[ATTACKERS])
    assert np.allclose(apply_attack("scaling", updates, ATTACKERS)[ATTACKERS], 10.0 * updates[ATTACKERS])


def test_gaussian_noise_replaces_with_noise_of_sigma(updates: np.ndarray) -> None:
    out = gaussian_noise(updates, ATTACKERS, sigma=2.0, seed=1)
    noise = out[ATTACKERS]
    assert abs(float(noise.std()) - 2.0) < 0.25 and abs(float(noise.mean())) < 0.3
    assert not np.array_equal(noise, gaussian_noise(updates, ATTACKERS, sigma=2.0, seed=2)[ATTACKERS])


def test_alie_z_matches_the_paper() -> None:
    # Baruch et al.: n=50, f=12 -> s = 26 - 12 = 14, z = Phi^-1(36/50) ~ 0.583
    assert alie_z(50, 12) == pytest.approx(0.5828, abs=1e-3)
    assert alie_z(15, 5) == pytest.approx(0.8416, abs=1e-3)  # s = 3, Phi^-1(0.8)
    with pytest.raises(ValueError):
        alie_z(5, 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(3, 20), f_share=st.floats(0.05, 0.45))
def test_alie_stays_within_coordinate_bounds(seed: int, k: int, f_share: float) -> None:
    u = np.random.default_rng(seed).normal(size=(k, 8))
    f = max(1, int(f_share * k))
    attackers = list(range(f))
    out = alie(u, attackers)
    z = alie_z(k, f)
    mean, std = u.mean(axis=0), u.std(axis=0)
    assert np.allclose(out[attackers], mean - z * std)
    assert np.all(out[attackers] >= mean - z * std - 1e-12) and np.all(out[attackers] <= mean + 1e-12)
    # all attackers send the same vector; it deviates by at most z std per coordinate
    assert np.all(np.abs(out[attackers] - mean) <= z * std + 1e-12)


def test_ipm_inner_product_is_negative(updates: np.ndarray) -> None:
    honest_mean = honest_rows(updates).mean(axis=0)
    out = ipm(updates, ATTACKERS, eps=0.1)
    for i in ATTACKERS:
        assert float(out[i] @ honest_mean) < 0
        assert np.allclose(out[i], -0.1 * honest_mean, atol=1e-6)
    with pytest.raises(ValueError, match="honest"):
        ipm(updates, range(K))


def test_free_rider_zero_and_stale(updates: np.ndarray) -> None:
    assert not free_rider(updates, ATTACKERS)[ATTACKERS].any()
    prev = np.arange(D, dtype=np.float32)
    stale = apply_attack(Attack.STALE, updates, ATTACKERS, previous_delta=prev)
    assert np.array_equal(stale[ATTACKERS], np.tile(prev, (3, 1)))
    with pytest.raises(ValueError, match="previous_delta"):
        free_rider(updates, ATTACKERS, previous_delta=np.zeros(3))


def test_copycat_is_close_to_an_honest_update(updates: np.ndarray) -> None:
    out = copycat(updates, ATTACKERS, relative_noise=0.01, seed=4)
    honest = honest_rows(updates)
    for i in ATTACKERS:
        rel = np.linalg.norm(honest - out[i], axis=1) / np.linalg.norm(honest, axis=1)
        assert 0 < rel.min() < 0.03  # a noisy copy of one honest row, never an exact copy
        assert np.sort(rel)[1] > 0.5  # and clearly not close to the others


def test_flip_labels() -> None:
    y = np.array([0, 1, 9, 5], dtype=np.int64)
    assert flip_labels(y).tolist() == [9, 8, 0, 4]
    perm = (np.arange(10) + 1) % 10
    assert flip_labels(y, permutation=perm).tolist() == [1, 2, 0, 6]
    with pytest.raises(ValueError, match="permutation"):
        flip_labels(y, permutation=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="labels"):
        flip_labels(np.array([10]))


def test_registry_by_name_and_validation(updates: np.ndarray) -> None:
    assert {a.value for a in Attack} == {a.value for a in ATTACK_PARAMS}
    assert Attack("label_flip").poisons_data and not Attack.ALIE.poisons_data
    assert np.array_equal(apply_attack("label_flip", updates, ATTACKERS), updates)
    assert np.array_equal(apply_attack("ipm", updates, ATTACKERS, eps=2.0), ipm(updates, ATTACKERS, eps=2.0))
    with pytest.raises(ValueError):
        apply_attack("nope", updates, ATTACKERS)
    with pytest.raises(TypeError, match="no parameter"):
        apply_attack("sign_flip", updates, ATTACKERS, factor=2.0)
    with pytest.raises(ValueError, match="attacker indices"):
        sign_flip(updates, [K])
    assert np.array_equal(alie(updates, []), updates)
