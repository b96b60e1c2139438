"""The round circuit: the proven outlier decision, as a torch module ezkl compiles (pure, no I/O).

What it computes (``K`` slots, ``k`` sketch dimensions; see docs/verifiability.md):

- Inputs: one committed feature vector per slot, ``q_i = [x_i (k values), l_i]`` where ``x_i`` is the unit-norm
  CountSketch of trainer ``i``'s update and ``l_i`` the natural log of the update's norm (each one Poseidon-hashed
  public instance: the trainer's on-chain ``featureCommitment``), and one witness vector ``w`` (also hashed) holding
  what the circuit *checks* instead of computing: the eigendecomposition of the active Gram matrix, the per-trainer
  agreement medians, the centres and MADs of the agreements and log-norms, and the echoed rejection mask and scores.
- Checks (their violations are counted; ``ok`` is 1 only if there are none): ``||G V - V diag(lam)||_F`` and
  ``||V^T V - I||_F`` at most ``K * EIG_TOL``, ``lam`` non-increasing, every median satisfies its defining counts
  (at least half of the values on each side, within ``MEDIAN_TOL``), every MAD likewise.
- Decision (Flag-Aggregator style, the first IRLS iterate: the top-``ceil(n/2)`` eigen-subspace of the unit
  sketches): projected Gram ``Gp = V_m diag(lam_m) V_m^T``; agreement ``a_i = median_{j != i} Gp[i, j]``; outlier if
  ``(c_a - a_i) > z * max(1.4826 MAD_a, 0.15 |c_a|, 1e-3)`` or ``|l_i - c_l| > z * max(1.4826 MAD_l, ln4 / 4)``, or
  rejected, or the committed sketch is not unit-norm; with fewer than 3 active slots only rejections count.
- Output (public instances, in this order): ``ok``, ``outlier[K]``, ``score[K]`` (the witness score, 0 for an
  outlier), ``rejected[K]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EIG_TOL", "MEDIAN_TOL", "MIN_DECIDE", "UNIT_TOL", "RoundCircuit", "WitnessLayout", "Z"]

UNIT_TOL = 0.01
"""A committed sketch whose squared norm is further than this from 1 is excluded (zero or malformed features)."""
EIG_TOL = 0.01
"""Root-mean-square bound on the entries of ``G V - V diag(lam)`` and ``V^T V - I`` (Frobenius norm at most
``K * EIG_TOL``), and slack of the eigenvalue ordering."""
MEDIAN_TOL = 0.004
"""Slack of the median and MAD counting checks (covers the rounding of ``Gp`` in the circuit)."""
Z = 4.0
MIN_DECIDE = 3
MAD_TO_SIGMA = 1.4826
AGREEMENT_REL_FLOOR = 0.15
AGREEMENT_ABS_FLOOR = 1e-3
LOG_NORM_FLOOR = math.log(4.0) / 4.0


class WitnessLayout:
    """Offsets of the fields in the witness vector ``w`` for ``K`` slots."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        k = slots
        self.vectors = slice(0, k * k)  # V, row-major: V[i, j] is component i of eigenvector j
        self.eigenvalues = slice(k * k, k * k + k)
        self.agreement = slice(k * k + k, k * k + 2 * k)
        base = k * k + 2 * k
        self.centre_agreement = base
        self.mad_agreement = base + 1
        self.centre_log_norm = base + 2
        self.mad_log_norm = base + 3
        self.rejected = slice(base + 4, base + 4 + k)
        self.scores = slice(base + 4 + k, base + 4 + 2 * k)
        self.size = base + 4 + 2 * k


# Only ">" comparisons and arithmetic: each distinct ezkl op kind adds gates to the generated Solidity verifier, whose
# runtime must stay under the 24,576-byte code-size limit, so abs and max are spelled with comparisons.
def _abs(x: torch.Tensor) -> torch.Tensor:
    return x * (2.0 * (x > 0).float() - 1.0)


def _max(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y + (x > y).float() * (x - y)


def _or(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """OR of 0/1 tensors."""
    return a + b - a * b


def _count_ok(values: torch.Tensor, centre: torch.Tensor, spread: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Violations of "``centre`` is a median of ``values[mask]``" (per row), as a 0/1 tensor per row.

    ``values``: (R, N); ``centre``: (R, 1); ``mask``: (R, N) of 0/1. A median has at least half of the values
    ``>= centre - tol`` and at least half ``<= centre + tol``.
    """
    ge = ((1.0 - (centre - spread > values).float()) * mask).sum(dim=1)
    le = ((1.0 - (values > centre + spread).float()) * mask).sum(dim=1)
    n = mask.sum(dim=1)
    return (n > 2.0 * ge).float() + (n > 2.0 * le).float()


class RoundCircuit(nn.Module):
    """Torch module of the round circuit for ``slots`` trainers and ``sketch_dim``-dimensional sketches."""

    eye: torch.Tensor
    off_diagonal: torch.Tensor
    twice_index: torch.Tensor

    def __init__(self, slots: int, sketch_dim: int) -> None:
        super().__init__()
        self.slots = slots
        self.sketch_dim = sketch_dim
        self.layout = WitnessLayout(slots)
        k = slots
        self.register_buffer("eye", torch.eye(k))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(k))
        self.register_buffer("twice_index", 2.0 * torch.arange(k, dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: ``slots`` feature tensors of shape (1, sketch_dim + 1), then the witness (1, layout.size)."""
        k, dim, lay = self.slots, self.sketch_dim, self.layout
        feats = torch.cat([q.reshape(1, dim + 1) for q in inputs[:k]], dim=0)  # (K, dim + 1)
        w = inputs[k].reshape(-1)
        x = feats[:, :dim]
        log_norm = feats[:, dim]
        v = w[lay.vectors].reshape(k, k)
        lam = w[lay.eigenvalues]
        agree = w[lay.agreement]
        c_a = w[lay.centre_agreement]
        mad_a = w[lay.mad_agreement]
        c_l = w[lay.centre_log_norm]
        mad_l = w[lay.mad_log_norm]
        rejected = w[lay.rejected]
        scores = w[lay.scores]

        # Mask the K x K Gram rather than the K x k sketches: every elementwise product costs a rescale (~40 rows),
        # so this keeps the cost of the circuit nearly independent of k.
        gram_raw = x @ x.T
        norms2 = (gram_raw * self.eye).sum(dim=1)
        unit_bad = (_abs(norms2 - 1.0) > UNIT_TOL).float()
        excluded = _or(rejected, unit_bad)
        active = 1.0 - excluded
        pair_active = active.reshape(k, 1) * active.reshape(1, k)
        gram = gram_raw * pair_active
        n = active.sum()

        # Frobenius norms, one comparison each (an elementwise comparison costs ~60 rows). Each square is rounded to
        # the 2**-13 grid, so entries below ~0.006 count as 0: well inside the K * EIG_TOL bound.
        residual = gram @ v - v * lam.reshape(1, k)
        violations = ((residual * residual).sum() > (EIG_TOL * k) ** 2).float()
        gram_error = v.T @ v - self.eye
        violations = violations + ((gram_error * gram_error).sum() > (EIG_TOL * k) ** 2).float()
        violations = violations + (lam[1:] - lam[:-1] > EIG_TOL).float().sum()

        top = (n > self.twice_index).float()  # eigenvector j is in the subspace iff j < ceil(n / 2)
        projected = (v * (lam * top).reshape(1, k)) @ v.T
        pair_mask = pair_active * self.off_diagonal
        row_bad = _count_ok(projected, agree.reshape(k, 1), torch.full_like(agree.reshape(k, 1), MEDIAN_TOL), pair_mask)
        violations = violations + (row_bad * active).sum()

        act_row = active.reshape(1, k)
        violations = violations + _count_ok(agree.reshape(1, k), c_a.reshape(1, 1), _tol(), act_row).sum()
        dev_a = _abs(agree - c_a).reshape(1, k)
        violations = violations + _count_ok(dev_a, mad_a.reshape(1, 1), _tol(), act_row).sum()
        violations = violations + _count_ok(log_norm.reshape(1, k), c_l.reshape(1, 1), _tol(), act_row).sum()
        dev_l = _abs(log_norm - c_l).reshape(1, k)
        violations = violations + _count_ok(dev_l, mad_l.reshape(1, 1), _tol(), act_row).sum()

        scale_a = _max(
            _max(MAD_TO_SIGMA * mad_a, AGREEMENT_REL_FLOOR * _abs(c_a)),
            torch.full_like(c_a, AGREEMENT_ABS_FLOOR),
        )
        scale_l = _max(MAD_TO_SIGMA * mad_l, torch.full_like(mad_l, LOG_NORM_FLOOR))
        disagree = (c_a - agree > Z * scale_a).float()
        abnormal = (_abs(log_norm - c_l) > Z * scale_l).float()
        enough = (n > MIN_DECIDE - 0.5).float()
        outlier = _or(excluded, _or(disagree, abnormal) * active * enough)
        score = scores * (1.0 - outlier)
        ok = 1.0 - (violations > 0.5).float().reshape(1)
        return torch.cat([ok, outlier, score, rejected]).reshape(1, 1 + 3 * k)


def _tol() -> torch.Tensor:
    return torch.full((1, 1), MEDIAN_TOL)
