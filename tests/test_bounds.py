"""Property tests of the A2Q / A2Q+ accumulator bounds (a2qflow.models.bounds).

The accumulator is a signed P-bit two's-complement register [-2^(P-1), 2^(P-1)-1]. "Never
overflows" is checked on the exact integer dot product q . x (int64, far from its limits):
it lies in accumulator_range(P) and equals its own wrap_signed value. The inputs checked are
the per-channel extremes (worst_case_inputs) and, for small K and N, every input in
[x_lo, x_hi]^K. Each "never overflows" property has a twin just above the budget that must
find an overflowing input, so the checks can fail.

Random vectors come from a numpy Generator seeded by hypothesis; hypothesis runs with
derandomize=True, so the whole file is reproducible.
"""
from __future__ import annotations

import importlib.util
import itertools
import math
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2qflow.models import bounds as B

REPO = Path(__file__).resolve().parents[1]
FIG1_SCRIPT = REPO / "benchmarks" / "fig1_budget_ratio.py"

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
SMALL = settings(max_examples=60, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])

ACC_BITS = st.integers(4, 16)
INPUT_BITS = st.integers(1, 8)
SEEDS = st.integers(0, 2**32 - 1)
EXHAUSTIVE_MAX_INPUTS = 2**12  # (2^N)^K inputs enumerated at most


# --------------------------------------------------------------------------- helpers


def split(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
    """`parts` non-negative integers summing to `total` (a random composition)."""
    if parts == 0:
        assert total == 0
        return np.zeros(0, dtype=np.int64)
    return rng.multinomial(total, rng.dirichlet(np.ones(parts))).astype(np.int64)


def two_sided(rng: np.random.Generator, k: int, pos_sum: int, neg_sum: int) -> np.ndarray:
    """A length-k integer vector whose positive entries sum to pos_sum and negative to -neg_sum."""
    assert k >= 2
    order = rng.permutation(k)
    n_pos = int(rng.integers(1, k))  # 1..k-1 slots each side
    q = np.zeros(k, dtype=np.int64)
    q[order[:n_pos]] = split(rng, pos_sum, n_pos)
    q[order[n_pos:]] = -split(rng, neg_sum, k - n_pos)
    return q


def zero_centred(rng: np.random.Generator, k: int, half_norm: int) -> np.ndarray:
    """Zero-sum integer vector with ||q||_1 = 2 * half_norm."""
    return two_sided(rng, k, half_norm, half_norm)


def random_signs(rng: np.random.Generator, k: int, l1: int) -> np.ndarray:
    """Integer vector of any sign pattern with ||q||_1 = l1."""
    return split(rng, l1, k) * rng.choice(np.array([-1, 1], dtype=np.int64), size=k)


def extremes(q: np.ndarray, x_lo: int, x_hi: int) -> tuple[int, int]:
    """(min, max) of q . x evaluated at worst_case_inputs, for a single channel."""
    x_max, x_min = B.worst_case_inputs(q, x_lo, x_hi)
    q = np.asarray(q, dtype=np.int64).reshape(1, -1)
    return int((q * x_min).sum()), int((q * x_max).sum())


def all_inputs(k: int, x_lo: int, x_hi: int) -> np.ndarray:
    vals = np.arange(x_lo, x_hi + 1, dtype=np.int64)
    grids = np.meshgrid(*([vals] * k), indexing="ij")
    return np.stack(grids, axis=-1).reshape(-1, k)


def exhaustive_ok(k: int, n: int) -> bool:
    return (2**n) ** k <= EXHAUSTIVE_MAX_INPUTS


def fits(values, acc_bits: int) -> bool:
    values = np.asarray(values, dtype=np.int64)
    lo, hi = B.accumulator_range(acc_bits)
    in_range = bool(values.min() >= lo and values.max() <= hi)
    unwrapped = bool(np.array_equal(B.wrap_signed(values, acc_bits), values))
    assert in_range == unwrapped, "wrap_signed disagrees with accumulator_range"
    return in_range


def assert_never_overflows(q: np.ndarray, acc_bits: int, n: int, signed: bool, exhaustive: bool) -> None:
    x_lo, x_hi = B.input_range(n, signed)
    lo, hi = extremes(q, x_lo, x_hi)
    rng_lo, rng_hi = B.dot_product_range(q, x_lo, x_hi)
    assert (lo, hi) == (int(rng_lo[0]), int(rng_hi[0]))
    assert fits([lo, hi], acc_bits), (q.tolist(), acc_bits, n, signed, lo, hi)
    if exhaustive:
        dots = all_inputs(q.size, x_lo, x_hi) @ q
        assert dots.min() == lo and dots.max() == hi  # the extremes really are extreme
        assert fits(dots, acc_bits)


def assert_overflows(q: np.ndarray, acc_bits: int, n: int, signed: bool, exhaustive: bool) -> None:
    x_lo, x_hi = B.input_range(n, signed)
    lo, hi = extremes(q, x_lo, x_hi)
    assert not fits([lo, hi], acc_bits), (q.tolist(), acc_bits, n, signed, lo, hi)
    if exhaustive:
        dots = all_inputs(q.size, x_lo, x_hi) @ q
        assert not fits(dots, acc_bits)


def a2q_plus_half_budget(acc_bits: int, n: int) -> int:
    """Largest integer S with 2*S <= A2Q+ budget, i.e. floor((2^(P-1)-1)/(2^N-1)), exactly."""
    s = (2 ** (acc_bits - 1) - 1) // (2**n - 1)
    budget = B.a2q_plus_l1_budget(acc_bits, n)
    assert 2 * s <= budget < 2 * (s + 1)
    return s


def a2q_floor_budget(acc_bits: int, n: int, signed: bool) -> int:
    """floor of the A2Q budget, exactly."""
    l1 = (2 ** (acc_bits - 1) - 1) // 2 ** (n - int(signed))
    budget = B.a2q_l1_budget(acc_bits, n, signed)
    assert l1 <= budget < l1 + 1
    return l1


# --------------------------------------------------------------------------- A2Q+


@PROPERTY
@given(acc_bits=ACC_BITS, n=INPUT_BITS, k=st.integers(2, 64), signed=st.booleans(), seed=SEEDS, data=st.data())
def test_a2q_plus_zero_centred_within_budget_never_overflows(acc_bits, n, k, signed, seed, data):
    s = data.draw(st.integers(0, a2q_plus_half_budget(acc_bits, n)), label="half_norm")
    q = zero_centred(np.random.default_rng(seed), k, s)
    assert q.sum() == 0 and B.l1_norm(q)[0] == 2 * s
    assert B.a2q_plus_norm(q)[0] == B.l1_norm(q)[0] <= B.a2q_plus_l1_budget(acc_bits, n)
    assert_never_overflows(q, acc_bits, n, signed, exhaustive=False)


@PROPERTY
@given(acc_bits=ACC_BITS, n=st.integers(1, 4), signed=st.booleans(), seed=SEEDS, data=st.data())
def test_a2q_plus_zero_centred_within_budget_exhaustive(acc_bits, n, signed, seed, data):
    k = data.draw(st.integers(2, max(2, 12 // n)), label="k")
    s = data.draw(st.integers(0, a2q_plus_half_budget(acc_bits, n)), label="half_norm")
    q = zero_centred(np.random.default_rng(seed), k, s)
    assert_never_overflows(q, acc_bits, n, signed, exhaustive=exhaustive_ok(k, n))


@PROPERTY
@given(acc_bits=ACC_BITS, n=INPUT_BITS, k=st.integers(2, 64), signed=st.booleans(), seed=SEEDS)
def test_a2q_plus_just_above_budget_overflows(acc_bits, n, k, signed, seed):
    budget = B.a2q_plus_l1_budget(acc_bits, n)
    s = a2q_plus_half_budget(acc_bits, n) + 1
    q = zero_centred(np.random.default_rng(seed), k, s)
    l1 = int(B.l1_norm(q)[0])
    assert q.sum() == 0 and l1 % 2 == 0
    assert l1 > budget >= l1 - 2  # the smallest even l1 norm above the budget
    assert B.a2q_plus_norm(q)[0] > budget
    assert_overflows(q, acc_bits, n, signed, exhaustive=exhaustive_ok(k, n))


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("acc_bits,n,k", [(4, 1, 4), (4, 2, 3), (5, 2, 6), (6, 3, 4), (8, 4, 3), (7, 1, 12)])
def test_a2q_plus_just_above_budget_exhaustive(acc_bits, n, k, signed):
    rng = np.random.default_rng(1000 * acc_bits + 10 * n + k)
    for _ in range(5):
        q = zero_centred(rng, k, a2q_plus_half_budget(acc_bits, n) + 1)
        assert_overflows(q, acc_bits, n, signed, exhaustive=True)


@PROPERTY
@given(acc_bits=ACC_BITS, n=INPUT_BITS, k=st.integers(2, 64), signed=st.booleans(), seed=SEEDS, data=st.data())
def test_a2q_plus_norm_within_budget_never_overflows_nonzero_sum(acc_bits, n, k, signed, seed, data):
    """The rounded-brevitas case: q not zero-sum, each of sum q+ and sum q- within half the budget."""
    smax = a2q_plus_half_budget(acc_bits, n)
    pos = data.draw(st.integers(0, smax), label="pos")
    neg = data.draw(st.integers(0, smax), label="neg")
    q = two_sided(np.random.default_rng(seed), k, pos, neg)
    assert B.a2q_plus_norm(q)[0] == 2 * max(pos, neg) <= B.a2q_plus_l1_budget(acc_bits, n)
    assert B.constrained_norm("a2q+", q)[0] == B.a2q_plus_norm(q)[0]
    assert_never_overflows(q, acc_bits, n, signed, exhaustive=False)


@SMALL
@given(acc_bits=ACC_BITS, n=st.integers(1, 4), signed=st.booleans(), seed=SEEDS, data=st.data())
def test_a2q_plus_norm_within_budget_nonzero_sum_exhaustive(acc_bits, n, signed, seed, data):
    k = data.draw(st.integers(2, max(2, 12 // n)), label="k")
    smax = a2q_plus_half_budget(acc_bits, n)
    pos = data.draw(st.integers(0, smax), label="pos")
    neg = data.draw(st.integers(0, smax), label="neg")
    q = two_sided(np.random.default_rng(seed), k, pos, neg)
    assert_never_overflows(q, acc_bits, n, signed, exhaustive=exhaustive_ok(k, n))


LOPSIDED_GRID = [(p, n) for p in range(4, 17) for n in range(1, 9)
                 if (2**p - 2) // (2**n - 1) >= 2]  # floor(A2Q+ budget) >= 2


@pytest.mark.parametrize("acc_bits,n", LOPSIDED_GRID)
def test_a2q_plus_lopsided_within_l1_budget_can_overflow(acc_bits, n):
    """||q||_1 within the A2Q+ budget is not enough without zero-centring.

    All-positive q with ||q||_1 = L = floor(budget) >= 2: the unsigned maximum L*(2^N-1) exceeds
    2^(P-1)-1 because L > budget - 1 >= budget/2. a2q_plus_norm (= 2L) flags it.
    """
    budget = B.a2q_plus_l1_budget(acc_bits, n)
    l1 = math.floor(budget)
    assert l1 >= 2
    rng = np.random.default_rng(acc_bits * 100 + n)
    q = split(rng, l1, 8)
    assert B.l1_norm(q)[0] == l1 <= budget
    assert B.a2q_plus_norm(q)[0] == 2 * l1 > budget
    assert_overflows(q, acc_bits, n, signed=False, exhaustive=False)
    # Signed inputs: an all-negative q peaks at L * 2^(N-1) (x = -2^(N-1) everywhere).
    lo, hi = extremes(-q, *B.input_range(n, True))
    assert hi == l1 * 2 ** (n - 1)
    assert fits([lo, hi], acc_bits) == (l1 * 2 ** (n - 1) <= 2 ** (acc_bits - 1) - 1)


def test_a2q_plus_lopsided_signed_example():
    # P=16, N=4 signed: budget 65534/15 = 4368.93; ||q||_1 = 4368 all negative -> 4368 * 8 = 34944.
    q = -np.array([546] * 8, dtype=np.int64)
    assert B.l1_norm(q)[0] == 4368 <= B.a2q_plus_l1_budget(16, 4)
    assert extremes(q, *B.input_range(4, True))[1] == 34944 > 2**15 - 1
    assert_overflows(q, 16, 4, signed=True, exhaustive=False)


# --------------------------------------------------------------------------- A2Q


@PROPERTY
@given(acc_bits=ACC_BITS, n=INPUT_BITS, k=st.integers(1, 64), signed=st.booleans(), seed=SEEDS, data=st.data())
def test_a2q_within_budget_never_overflows(acc_bits, n, k, signed, seed, data):
    l1 = data.draw(st.integers(0, a2q_floor_budget(acc_bits, n, signed)), label="l1")
    q = random_signs(np.random.default_rng(seed), k, l1)
    assert B.l1_norm(q)[0] == B.constrained_norm("a2q", q)[0] == l1 <= B.a2q_l1_budget(acc_bits, n, signed)
    assert_never_overflows(q, acc_bits, n, signed, exhaustive=False)


@PROPERTY
@given(acc_bits=ACC_BITS, n=st.integers(1, 4), signed=st.booleans(), seed=SEEDS, data=st.data())
def test_a2q_within_budget_exhaustive(acc_bits, n, signed, seed, data):
    k = data.draw(st.integers(1, 12 // n), label="k")
    l1 = data.draw(st.integers(0, a2q_floor_budget(acc_bits, n, signed)), label="l1")
    q = random_signs(np.random.default_rng(seed), k, l1)
    assert_never_overflows(q, acc_bits, n, signed, exhaustive=exhaustive_ok(k, n))


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("acc_bits", range(4, 17))
def test_a2q_signed_bound_is_tight(acc_bits, n):
    """Signed inputs: ||q||_1 = floor(budget)+1, all negative, overflows at x = -2^(N-1)."""
    l1 = a2q_floor_budget(acc_bits, n, True) + 1
    rng = np.random.default_rng(acc_bits * 100 + n)
    for k in (1, 3, 16):
        q = -split(rng, l1, k)
        assert B.l1_norm(q)[0] == l1 > B.a2q_l1_budget(acc_bits, n, True)
        assert_overflows(q, acc_bits, n, signed=True, exhaustive=exhaustive_ok(k, n))
        # ... and at floor(budget) the same adversarial vector fits.
        q_ok = -split(rng, l1 - 1, k)
        assert_never_overflows(q_ok, acc_bits, n, signed=True, exhaustive=exhaustive_ok(k, n))


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("acc_bits", range(4, 17))
def test_a2q_unsigned_bound_is_conservative(acc_bits, n):
    """Unsigned inputs: the exact limit for same-sign q is (2^(P-1)-1)/(2^N-1); A2Q uses /2^N."""
    exact = Fraction(2 ** (acc_bits - 1) - 1, 2**n - 1)
    budget = B.a2q_l1_budget(acc_bits, n, False)
    assert budget < exact
    assert Fraction(budget) / exact == Fraction(2**n - 1, 2**n)
    assert a2q_floor_budget(acc_bits, n, False) <= math.floor(exact)
    rng = np.random.default_rng(acc_bits * 100 + n)
    for k in (1, 3, 16):
        over = split(rng, math.floor(exact) + 1, k)
        assert_overflows(over, acc_bits, n, signed=False, exhaustive=exhaustive_ok(k, n))
        at = split(rng, math.floor(exact), k)
        assert_never_overflows(at, acc_bits, n, signed=False, exhaustive=exhaustive_ok(k, n))


# --------------------------------------------------------------------------- helpers in bounds.py


@PROPERTY
@given(method=st.sampled_from(B.CONSTRAINED_METHODS),
       norm=st.one_of(st.integers(0, 2**24), st.floats(0, 2.0**24, allow_nan=False)),
       n=INPUT_BITS, signed=st.booleans())
def test_min_safe_acc_bits_is_minimal(method, norm, n, signed):
    p = B.min_safe_acc_bits(method, norm, n, signed)
    assert p >= 2
    assert B.l1_budget(method, p, n, signed) >= norm
    if p > 2:
        assert B.l1_budget(method, p - 1, n, signed) < norm


@PROPERTY
@given(method=st.sampled_from(B.CONSTRAINED_METHODS), n=INPUT_BITS, k=st.integers(1, 64),
       signed=st.booleans(), magnitude=st.integers(0, 2000), seed=SEEDS)
def test_min_safe_acc_bits_guarantees_no_overflow(method, n, k, signed, magnitude, seed):
    """End to end: any integer q, P = min_safe_acc_bits(its constrained norm) holds q . x for all x."""
    q = np.random.default_rng(seed).integers(-magnitude, magnitude + 1, size=k)
    p = B.min_safe_acc_bits(method, float(B.constrained_norm(method, q)[0]), n, signed)
    lo, hi = B.dot_product_range(q, *B.input_range(n, signed))
    assert B.signed_bits_for_range(int(lo[0]), int(hi[0])) <= p
    assert_never_overflows(q, p, n, signed, exhaustive=False)


@PROPERTY
@given(n=INPUT_BITS, k=st.integers(2, 64), signed=st.booleans(), half_norm=st.integers(1, 10**5), seed=SEEDS)
def test_min_safe_acc_bits_a2q_plus_is_exact_for_zero_centred(n, k, signed, half_norm, seed):
    """For zero-sum q the A2Q+ bound is tight: its P is exactly the width the dot product needs."""
    q = zero_centred(np.random.default_rng(seed), k, half_norm)
    lo, hi = B.dot_product_range(q, *B.input_range(n, signed))
    assert int(hi[0]) == -int(lo[0]) == half_norm * (2**n - 1)
    p = B.min_safe_acc_bits("a2q+", float(B.l1_norm(q)[0]), n, signed)
    assert p == B.signed_bits_for_range(int(lo[0]), int(hi[0]))


@PROPERTY
@given(n=INPUT_BITS, k=st.integers(1, 64), l1=st.integers(1, 10**5), seed=SEEDS)
def test_min_safe_acc_bits_a2q_is_exact_for_signed_adversarial(n, k, l1, seed):
    q = -split(np.random.default_rng(seed), l1, k)
    lo, hi = B.dot_product_range(q, *B.input_range(n, True))
    assert int(hi[0]) == l1 * 2 ** (n - 1)
    p = B.min_safe_acc_bits("a2q", float(l1), n, True)
    assert p == B.signed_bits_for_range(int(lo[0]), int(hi[0]))


@PROPERTY
@given(channels=st.integers(1, 3), k=st.integers(1, 4), bound=st.integers(0, 60),
       x_lo=st.integers(-5, 5), width=st.integers(0, 5), seed=SEEDS)
def test_dot_product_range_matches_brute_force(channels, k, bound, x_lo, width, seed):
    x_hi = x_lo + width
    q = np.random.default_rng(seed).integers(-bound, bound + 1, size=(channels, k))
    lo, hi = B.dot_product_range(q, x_lo, x_hi)
    dots = all_inputs(k, x_lo, x_hi) @ q.T  # (inputs, channels)
    assert np.array_equal(lo, dots.min(axis=0))
    assert np.array_equal(hi, dots.max(axis=0))
    x_max, x_min = B.worst_case_inputs(q, x_lo, x_hi)
    assert np.array_equal((q * x_max).sum(axis=1), hi)
    assert np.array_equal((q * x_min).sum(axis=1), lo)


def test_dot_product_range_conv_shaped_weights():
    q = np.random.default_rng(0).integers(-7, 8, size=(4, 2, 3, 3))  # (out, in, kh, kw)
    lo, hi = B.dot_product_range(q, 0, 15)
    flat = q.reshape(4, -1)
    assert np.array_equal(hi, np.clip(flat, 0, None).sum(1) * 15)
    assert np.array_equal(lo, np.clip(flat, None, 0).sum(1) * 15)


@PROPERTY
@given(a=st.integers(-(2**40), 2**40), b=st.integers(-(2**40), 2**40))
def test_signed_bits_for_range_is_minimal(a, b):
    lo, hi = min(a, b), max(a, b)
    p = B.signed_bits_for_range(lo, hi)
    r_lo, r_hi = B.accumulator_range(p)
    assert r_lo <= lo and hi <= r_hi
    if p > 2:
        r_lo, r_hi = B.accumulator_range(p - 1)
        assert lo < r_lo or hi > r_hi
    assert p == next(q for q in itertools.count(2) if -(2 ** (q - 1)) <= lo and hi <= 2 ** (q - 1) - 1)


@pytest.mark.parametrize("p", range(2, 40))
def test_signed_bits_for_range_boundaries(p):
    lo, hi = B.accumulator_range(p)
    assert (lo, hi) == (-(2 ** (p - 1)), 2 ** (p - 1) - 1)
    assert B.signed_bits_for_range(lo, hi) == p
    assert B.signed_bits_for_range(lo, 0) == p
    assert B.signed_bits_for_range(0, hi) == p
    assert B.signed_bits_for_range(0, hi + 1) == p + 1
    assert B.signed_bits_for_range(lo - 1, 0) == p + 1


def _py_wrap(v: int, p: int) -> int:
    v &= (1 << p) - 1
    return v - (1 << p) if v >> (p - 1) else v


@PROPERTY
@given(values=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=20), p=st.integers(2, 62))
def test_wrap_signed_matches_python_twos_complement(values, p):
    got = B.wrap_signed(np.array(values, dtype=np.int64), p)
    assert got.tolist() == [_py_wrap(v, p) for v in values]


@pytest.mark.parametrize("p,dtype", [(8, np.int8), (16, np.int16), (32, np.int32)])
def test_wrap_signed_matches_numpy_integer_cast(p, dtype):
    values = np.random.default_rng(p).integers(-(2**40), 2**40, size=1000, dtype=np.int64)
    values[:4] = [2 ** (p - 1), -(2 ** (p - 1)) - 1, 2 ** (p - 1) - 1, -(2 ** (p - 1))]
    assert np.array_equal(B.wrap_signed(values, p), values.astype(dtype).astype(np.int64))


@pytest.mark.parametrize("p", [63, 64])
def test_wrap_signed_wide_accumulators(p):
    values = [0, 1, -1, 12345, -(2**62)]
    assert B.wrap_signed(np.array(values, dtype=np.int64), p).tolist() == values


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("n", range(1, 9))
def test_budget_ratio(n, signed):
    closed = Fraction(2 ** (n + 1 - int(signed)), 2**n - 1)
    assert B.budget_ratio(n, signed) == pytest.approx(float(closed), rel=1e-15)
    for p in (4, 8, 12, 16, 24, 32):
        ratio = B.a2q_plus_l1_budget(p, n) / B.a2q_l1_budget(p, n, signed)
        assert B.budget_ratio(n, signed) == pytest.approx(ratio, rel=1e-12)
        exact = Fraction(2**p - 2, 2**n - 1) / (Fraction(2 ** (p - 1) - 1) * Fraction(2) ** (int(signed) - n))
        assert exact == closed


def test_l1_budget_dispatch():
    assert B.l1_budget("a2q", 16, 4, True) == B.a2q_l1_budget(16, 4, True)
    assert B.l1_budget("a2q+", 16, 4, True) == B.a2q_plus_l1_budget(16, 4)
    with pytest.raises(ValueError):
        B.l1_budget("qat", 16, 4, True)
    with pytest.raises(ValueError):
        B.constrained_norm("qat", np.ones(3))


# --------------------------------------------------------------------------- Fig. 1 script


def _load_fig1():
    spec = importlib.util.spec_from_file_location("fig1_budget_ratio", FIG1_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _closed_form(n: int, signed: bool) -> float:
    return 2.0 ** (n + 1 - int(signed)) / (2**n - 1)


def test_fig1_script_prints_paper_ratios():
    proc = subprocess.run([sys.executable, str(FIG1_SCRIPT)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    number = r"(\d+(?:\.\d+)?)"
    rows = {}
    for line in lines:
        m = re.fullmatch(r"\s*(\d)" + (r"\s+" + number) * 5 + r"\s*", line)
        if m:
            n = int(m.group(1))
            a2q_u, a2q_s, a2q_plus, ratio_u, ratio_s = map(float, m.groups()[1:])
            rows[n] = (a2q_u, a2q_s, a2q_plus, ratio_u, ratio_s)
    assert sorted(rows) == list(range(1, 9)), proc.stdout
    for n, (a2q_u, a2q_s, a2q_plus, ratio_u, ratio_s) in rows.items():
        assert ratio_u == pytest.approx(_closed_form(n, False), abs=1e-6)
        assert ratio_s == pytest.approx(_closed_form(n, True), abs=1e-6)
        assert a2q_u == pytest.approx((2**15 - 1) / 2**n, abs=1e-4)  # stated P = 16
        assert a2q_s == pytest.approx((2**15 - 1) / 2 ** (n - 1), abs=1e-4)
        assert a2q_plus == pytest.approx((2**16 - 2) / (2**n - 1), abs=1e-4)
    ratios_u = [rows[n][3] for n in range(1, 9)]
    ratios_s = [rows[n][4] for n in range(1, 9)]
    assert ratios_u[0] == pytest.approx(4.0) and ratios_s[0] == pytest.approx(2.0)
    assert all(a > b for a, b in zip(ratios_u, ratios_u[1:]))  # decreasing towards 2 and 1
    assert all(a > b for a, b in zip(ratios_s, ratios_s[1:]))
    assert 2.0 < ratios_u[-1] < 2.01 and 1.0 < ratios_s[-1] < 1.005
    assert lines[-1] == "fig1: ratio unsigned N=1..8 = 4.000 ... 2.008; signed = 2.000 ... 1.004"


def test_fig1_rows_are_p_independent():
    fig1 = _load_fig1()
    reference = fig1.fig1_rows(16)
    for p in (4, 8, 12, 24, 32):
        rows = fig1.fig1_rows(p)
        assert [r["N"] for r in rows] == list(range(1, 9))
        for r, ref in zip(rows, reference):
            assert r["P"] == p
            assert r["ratio_unsigned"] == pytest.approx(ref["ratio_unsigned"], rel=1e-12)
            assert r["ratio_signed"] == pytest.approx(ref["ratio_signed"], rel=1e-12)
            assert r["ratio_unsigned"] == pytest.approx(_closed_form(r["N"], False), rel=1e-12)
            assert r["ratio_signed"] == pytest.approx(_closed_form(r["N"], True), rel=1e-12)
            assert r["a2q_plus"] == B.a2q_plus_l1_budget(p, r["N"])
