"""EP-init projections against a brute-force QP (scipy SLSQP) and their defining properties."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from a2qflow.models.projection import project_l1_ball, project_zero_centred_l1_ball

# ---------------------------------------------------------------- brute force (generic QP)


def _slsqp(fun_jac, x0, constraints, bounds):
    res = minimize(fun_jac, x0, jac=True, method="SLSQP", bounds=bounds, constraints=constraints,
                   options={"ftol": 1e-14, "maxiter": 2000})
    # status 8 ("positive directional derivative"): the line search stalled, in practice at the
    # optimum (about 1 run in 3000 here); the comparison below still checks the point.
    assert res.success or res.status == 8, res.message
    return res.x


def _unit_scale(brute):
    """Solve on w / s, r / s (s = max |w|): the sets are cones in (w, r), so P scales with s."""
    def solve(w, r):
        s = max(np.abs(w).max(), 1e-12)
        return s * brute(w / s, r / s)
    return solve


@_unit_scale
def brute_l1(w: np.ndarray, r: float) -> np.ndarray:
    """argmin ||v - w||^2 s.t. ||v||_1 <= r, with v = p - n, p, n >= 0."""
    k = w.size

    def f(z):
        g = z[:k] - z[k:] - w
        return g @ g, np.concatenate([2 * g, -2 * g])

    cons = [{"type": "ineq", "fun": lambda z: r - z.sum(), "jac": lambda z: -np.ones(2 * k)}]
    z = _slsqp(f, np.zeros(2 * k), cons, [(0, None)] * (2 * k))
    return z[:k] - z[k:]


@_unit_scale
def brute_zero_centred(w: np.ndarray, r: float) -> np.ndarray:
    """argmin ||v - w||^2 s.t. v = t 1 + p - n, sum(p - n) = 0, sum(p + n) <= r, p, n >= 0.

    The offset t is a free variable: the QP does not assume that the mean is preserved.
    """
    k = w.size

    def f(z):
        g = z[0] + z[1:k + 1] - z[k + 1:] - w
        return g @ g, np.concatenate([[2 * g.sum()], 2 * g, -2 * g])

    ones = np.ones(k)
    cons = [
        {"type": "eq", "fun": lambda z: z[1:k + 1].sum() - z[k + 1:].sum(),
         "jac": lambda z: np.concatenate([[0.0], ones, -ones])},
        {"type": "ineq", "fun": lambda z: r - z[1:].sum(),
         "jac": lambda z: np.concatenate([[0.0], -ones, -ones])},
    ]
    z = _slsqp(f, np.concatenate([[w.mean()], np.zeros(2 * k)]), cons,
               [(None, None)] + [(0, None)] * (2 * k))
    return z[0] + z[1:k + 1] - z[k + 1:]


def l1(v: np.ndarray) -> np.ndarray:
    return np.abs(v).sum(axis=-1)


def zc_norm(v: np.ndarray) -> np.ndarray:
    return np.abs(v - v.mean(axis=-1, keepdims=True)).sum(axis=-1)


PROJ = {"l1": (project_l1_ball, brute_l1, l1), "zc": (project_zero_centred_l1_ball, brute_zero_centred, zc_norm)}


def random_case(rng: np.random.Generator, kind: str, norm) -> tuple[np.ndarray, float]:
    k = int(rng.integers(2, 13))
    if kind == "ties":  # few distinct values, many repeats, plus an offset
        w = rng.integers(-3, 4, size=k).astype(float) * rng.choice([0.5, 1.0, 2.0]) + rng.choice([0.0, 1.5])
    elif kind == "far":
        w = rng.normal(size=k) * 100 + rng.normal() * 50
    else:
        w = rng.normal(size=k) + rng.normal() * 2  # a nonzero mean matters for A2Q+
    n = float(norm(w))
    if kind == "inside":
        r = n * rng.uniform(1.0, 2.0) + 1e-3
    elif kind == "far":
        r = n * rng.uniform(1e-4, 1e-2)
    else:
        r = max(n, 1e-3) * rng.uniform(0.05, 0.95)
    return w, r


# ---------------------------------------------------------------- against the brute force


@pytest.mark.parametrize("which", ["l1", "zc"])
@pytest.mark.parametrize("kind", ["normal", "inside", "ties", "far"])
def test_matches_brute_force_qp(which, kind):
    proj, brute, norm = PROJ[which]
    rng = np.random.default_rng([["l1", "zc"].index(which), ["normal", "inside", "ties", "far"].index(kind)])
    for _ in range(40):
        w, r = random_case(rng, kind, norm)
        ours = proj(torch.tensor(w[None]), r)[0].numpy()
        ref = brute(w, r)
        scale = max(1.0, np.abs(w).max())
        assert np.abs(ours - ref).max() < 1e-5 * scale, (w, r, ours, ref)
        assert norm(ours) <= r + 1e-9 * scale
        if norm(w) > r:
            assert abs(norm(ours) - r) <= 1e-9 * scale  # on the boundary
        else:
            assert np.array_equal(ours, w)
        if which == "zc":
            assert abs(ours.mean() - w.mean()) <= 1e-12 * scale


def test_hand_computed_zero_centred():
    # w = [5,0,0,0], r = 1: mean 1.25, c = [3.75, -1.25 x3]; a = 3.25, b = -1.25 + 1/6.
    out = project_zero_centred_l1_ball(torch.tensor([[5.0, 0, 0, 0]], dtype=torch.float64), 1.0)
    expected = torch.tensor([[1.75, 1.25 - 1 / 6, 1.25 - 1 / 6, 1.25 - 1 / 6]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- why A2Q+ needs its own projection


def test_raw_l1_projection_is_not_the_projection_onto_C():
    f64 = dict(dtype=torch.float64)
    # 1. brevitas' example can leave C: [5,0,0,0] -> [1,0,0,0], whose zero-centred norm is 1.5 > 1.
    w = torch.tensor([[5.0, 0, 0, 0]], **f64)
    raw = project_l1_ball(w, 1.0)
    torch.testing.assert_close(raw, torch.tensor([[1.0, 0, 0, 0]], **f64))
    assert zc_norm(raw.numpy())[0] == pytest.approx(1.5)
    assert zc_norm(project_zero_centred_l1_ball(w, 1.0).numpy())[0] == pytest.approx(1.0)
    # 2. feasible but farther: [3,1] -> raw [1,0] (in C, distance^2 5) vs ours [2.5,1.5] (0.5).
    w = torch.tensor([[3.0, 1.0]], **f64)
    raw, ours = project_l1_ball(w, 1.0), project_zero_centred_l1_ball(w, 1.0)
    assert zc_norm(raw.numpy())[0] <= 1.0
    torch.testing.assert_close(ours, torch.tensor([[2.5, 1.5]], **f64))
    assert ((raw - w) ** 2).sum().item() == pytest.approx(5.0)
    assert ((ours - w) ** 2).sum().item() == pytest.approx(0.5)
    # 3. already in C (constant row): the raw projection moves it, ours leaves it alone.
    w = torch.full((1, 6), 5.0, **f64)
    assert torch.equal(project_zero_centred_l1_ball(w, 1.0), w)
    assert not torch.equal(project_l1_ball(w, 1.0), w)
    # 4. on random rows with a nonzero mean, the raw projection is never closer and mostly farther.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(500, 9, generator=g, **f64) + 3 * torch.randn(500, 1, generator=g, **f64)
    r = 0.5 * torch.from_numpy(zc_norm(w.numpy()))
    raw, ours = project_l1_ball(w, r), project_zero_centred_l1_ball(w, r)
    d_raw, d_ours = (raw - w).norm(dim=1), (ours - w).norm(dim=1)
    raw_in_c = torch.from_numpy(zc_norm(raw.numpy())) <= r + 1e-9
    assert (d_ours[raw_in_c] <= d_raw[raw_in_c] + 1e-12).all()
    assert (d_raw > d_ours + 1e-6).float().mean() > 0.9


# ---------------------------------------------------------------- properties


def _feasible_points(p: np.ndarray, r: float, which: str, rng, n: int) -> np.ndarray:
    """Random points of the set: some anywhere, some near P(w); scaled in along the set's geometry."""
    k = p.size
    y = np.concatenate([rng.normal(size=(n, k)) * (r + np.abs(p).max()),
                        p + rng.normal(size=(n, k)) * 1e-3 * (1 + np.abs(p).max())])
    if which == "l1":
        return y * np.minimum(1.0, r / np.maximum(l1(y), 1e-300))[:, None]
    m = y.mean(axis=1, keepdims=True)
    return m + (y - m) * np.minimum(1.0, r / np.maximum(zc_norm(y), 1e-300))[:, None]


rows = st.integers(2, 12).flatmap(
    lambda k: st.lists(st.floats(-50, 50, allow_nan=False, allow_subnormal=False), min_size=k, max_size=k))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(w=rows, frac=st.floats(0.01, 2.0), which=st.sampled_from(["l1", "zc"]), seed=st.integers(0, 2**31))
def test_projection_properties(w, frac, which, seed):
    proj, _, norm = PROJ[which]
    w = np.array(w)
    r = max(float(norm(w)) * frac, 1e-3)
    p_t = proj(torch.tensor(w[None]), r)
    p = p_t[0].numpy()
    scale = max(1.0, np.abs(w).max())
    assert norm(p) <= r + 1e-9 * scale
    # idempotent
    np.testing.assert_allclose(proj(p_t, r)[0].numpy(), p, rtol=0, atol=1e-12 * scale)
    # nearest point of the set, and the variational inequality <w - P, z - P> <= 0
    z = _feasible_points(p, r, which, np.random.default_rng(seed), 200)
    d_p = np.linalg.norm(p - w)
    assert (d_p <= np.linalg.norm(z - w, axis=1) + 1e-9 * scale).all()
    assert ((z - p) @ (w - p) <= 1e-9 * scale**2).all()


@pytest.mark.parametrize("which", ["l1", "zc"])
def test_batch_equals_rows_and_inside_rows_untouched(which):
    proj, _, norm = PROJ[which]
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 27, generator=g) + torch.randn(64, 1, generator=g)
    n = torch.from_numpy(norm(w.double().numpy()))
    frac = torch.rand(64, generator=g, dtype=torch.float64) * 1.6 + 0.2  # ~half inside, half outside
    r = n * frac
    out = proj(w, r)
    inside = frac > 1
    assert 10 < int(inside.sum()) < 54
    assert torch.equal(out[inside], w[inside])  # bit-identical
    for i in range(64):
        assert torch.equal(out[i:i + 1], proj(w[i:i + 1], r[i]))
    # float32 output: feasible up to float32 rounding
    assert (torch.from_numpy(norm(out.double().numpy())) <= r * (1 + 1e-5)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("proj", [project_l1_ball, project_zero_centred_l1_ball])
def test_keeps_dtype_and_device_and_detaches(proj, dtype):
    w = (torch.randn(8, 16, generator=torch.Generator().manual_seed(2)) * 3).to(dtype).requires_grad_()
    out = proj(w, 1.0)
    assert out.dtype == dtype and out.device == w.device and out.shape == w.shape
    assert not out.requires_grad


def test_scalar_tensor_and_vector_radius_agree():
    w = torch.randn(5, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for proj in (project_l1_ball, project_zero_centred_l1_ball):
        a = proj(w, 2.0)
        assert torch.equal(a, proj(w, torch.tensor(2.0)))
        assert torch.equal(a, proj(w, torch.full((5,), 2.0)))


@pytest.mark.parametrize("proj", [project_l1_ball, project_zero_centred_l1_ball])
def test_rejects_bad_inputs(proj):
    w = torch.randn(4, 6)
    with pytest.raises(ValueError, match="channel 2"):
        proj(w, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="channel 1"):
        proj(w, torch.tensor([1.0, -1.0, 1.0, float("nan")]))
    with pytest.raises(ValueError, match="> 0"):
        proj(w, -1.0)
    with pytest.raises(ValueError, match="shape"):
        proj(w, torch.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        proj(torch.randn(6), 1.0)
    with pytest.raises(ValueError, match="floating"):
        proj(torch.ones(2, 3, dtype=torch.int64), 1.0)
    bad = w.clone()
    bad[3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"\[3\]"):
        proj(bad, 1.0)


def test_conv_sized_layer():
    """A 512 x 4608 layer (3x3 conv, 512 in) in one vectorised call."""
    g = torch.Generator().manual_seed(4)
    w = torch.randn(512, 4608, generator=g) * 0.02 + 0.01
    r = torch.rand(512, generator=g, dtype=torch.float64) * 20 + 1
    out = project_zero_centred_l1_ball(w, r).double()
    zc = (out - out.mean(dim=1, keepdim=True)).abs().sum(dim=1)
    assert torch.allclose(zc, r, rtol=1e-4)  # all rows were outside (||c||_1 ~ 74)
    torch.testing.assert_close(out.mean(dim=1), w.double().mean(dim=1), rtol=0, atol=1e-6)
