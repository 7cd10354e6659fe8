"""Exact Euclidean projections used by EP-init (A2Q+, Colbert et al., ICML 2024).

EP-init moves each output channel's float weights to the nearest point that satisfies the
accumulator bound *before* QAT, so training starts inside the constraint instead of having
the quantizer's weight normalization rescale (and destroy) the pre-trained weights.

* A2Q constrains ``||w||_1 <= r``: the set is the l1 ball (``project_l1_ball``).
* A2Q+ constrains the zero-centred weights: ``C = {w : ||w - mean(w) 1||_1 <= r}``
  (``project_zero_centred_l1_ball``). brevitas' example projects the raw weights onto the l1
  ball, which is not the projection onto C: it needlessly moves rows that are already in C
  (any constant row is) and can return points outside C (``[r, 0, 0, 0]`` is).

Both are exact (sort-based thresholds, no iteration), vectorised over rows, computed in
float64 and cast back to the input dtype. Rows already inside (as decided in float64) are
returned bit-identical. The result carries no autograd history (it is an initialization).
For float32 inputs the cast back may leave a boundary row outside by a few float32 ulps of
its norm; callers that need strict feasibility should project in float64.
"""
from __future__ import annotations

import torch

__all__ = ["project_l1_ball", "project_zero_centred_l1_ball"]


def _check(w: torch.Tensor, radius) -> torch.Tensor:
    """Validate the inputs; return the radius as a float64 (C,) tensor on w's device."""
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise ValueError("w must be a 2-D tensor (channels, fan-in); flatten conv weights first")
    if not w.is_floating_point():
        raise ValueError(f"w must be floating point, got {w.dtype}")
    if not bool(torch.isfinite(w).all()):
        bad = torch.nonzero(~torch.isfinite(w).all(dim=1)).flatten().tolist()
        raise ValueError(f"w has non-finite values in channel(s) {bad}")
    r = torch.as_tensor(radius, dtype=torch.float64, device=w.device)
    if r.ndim == 0:
        r = r.expand(w.shape[0])
    elif r.shape != (w.shape[0],):
        raise ValueError(f"radius must be a scalar or have shape ({w.shape[0]},), got {tuple(r.shape)}")
    bad = torch.nonzero(~(r > 0)).flatten().tolist()  # also catches NaN
    if bad:
        raise ValueError(f"radius must be > 0; channel {bad[0]} has radius {float(r[bad[0]])}"
                         + (f" (channels {bad})" if len(bad) > 1 else ""))
    return r


def _threshold(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per row, the theta with sum_i max(v_i - theta, 0) = s (s > 0), exactly.

    The left side is continuous and strictly decreasing where positive, so theta is unique;
    sorting gives the breakpoints (Duchi et al., 2008, simplex projection), valid for any real v.
    """
    u, _ = torch.sort(v, dim=1, descending=True)
    css = torch.cumsum(u, dim=1) - s[:, None]
    j = torch.arange(1, v.shape[1] + 1, dtype=v.dtype, device=v.device)
    # Active prefixes are exactly those with u_j > (css_j / j): a true-then-false pattern.
    rho = (u * j > css).sum(dim=1, keepdim=True).clamp_min(1)
    return css.gather(1, rho - 1).squeeze(1) / rho.squeeze(1).to(v.dtype)


@torch.no_grad()
def project_l1_ball(w: torch.Tensor, radius) -> torch.Tensor:
    """Euclidean projection of each row of w (C, K) onto {v : ||v||_1 <= radius} (A2Q's set).

    radius: scalar or (C,), > 0. Outside rows become sign(w) * max(|w| - theta, 0) with theta
    chosen so the l1 norm is exactly radius; inside rows are returned unchanged.
    """
    r = _check(w, radius)
    x = w.detach().to(torch.float64)
    a = x.abs()
    outside = a.sum(dim=1) > r
    theta = _threshold(a, r)
    proj = torch.sign(x) * (a - theta[:, None]).clamp_min(0)
    return torch.where(outside[:, None], proj.to(w.dtype), w.detach())


@torch.no_grad()
def project_zero_centred_l1_ball(w: torch.Tensor, radius) -> torch.Tensor:
    """Euclidean projection of each row onto {v : ||v - mean(v)||_1 <= radius} (A2Q+'s set).

    The set is a cylinder along the all-ones direction, so the projection keeps the row mean m
    and projects c = w - m onto {d : sum d = 0, ||d||_1 <= radius}. By KKT,
    d_i = soft_threshold(c_i - mu, tau); with sum d = 0 and ||d||_1 = radius the positive
    and the negative parts each sum to radius/2, so d_i = max(c_i - a, 0) - max(b - c_i, 0)
    with a, b the exact thresholds sum max(c_i - a, 0) = radius/2 = sum max(b - c_i, 0).
    When ||c||_1 > radius these give a > 0 > b, i.e. tau = (a - b)/2 > 0 and mu = (a + b)/2,
    so all KKT conditions hold and the point is the unique projection.
    """
    r = _check(w, radius)
    x = w.detach().to(torch.float64)
    m = x.mean(dim=1, keepdim=True)
    c = x - m
    outside = c.abs().sum(dim=1) > r
    half = r / 2
    a = _threshold(c, half)
    b = -_threshold(-c, half)
    d = (c - a[:, None]).clamp_min(0) - (b[:, None] - c).clamp_min(0)
    return torch.where(outside[:, None], (m + d).to(w.dtype), w.detach())
