"""Accumulator bounds of A2Q and A2Q+ and the integer arithmetic that checks them.

A dot product of integer weights q with N-bit inputs x fits a signed P-bit accumulator
[-2^(P-1), 2^(P-1)-1] for every x when the weights' norm is within the method's budget:

* A2Q  (Colbert et al., ICCV 2023):  ||q||_1 <= (2^(P-1) - 1) * 2^(signed(x) - N)
* A2Q+ (Colbert et al., ICML 2024):  ||q||_1 <= (2^P - 2) / (2^N - 1), for zero-centred q.

brevitas zero-centres the *float* weights and then rounds towards zero, so the exported
integers are not exactly zero-sum. What the A2Q+ construction does guarantee on them is
that the positive and the negative parts each stay within half the budget (round-to-zero
only shrinks magnitudes). ``a2q_plus_norm`` = 2 * max(sum q+, sum q-) is that quantity; it
equals ||q||_1 for exactly zero-sum q, and it is what makes the bound hold for every input.
"""
from __future__ import annotations

import numpy as np

METHODS = ("qat", "a2q", "a2q+")
CONSTRAINED_METHODS = ("a2q", "a2q+")


def input_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Integer range of an N-bit input."""
    if signed:
        hi = 2 ** (bits - 1) - 1
        return (-hi if narrow else -hi - 1), hi
    return 0, 2**bits - 1


def enclosing_input_type(lo: int, hi: int) -> tuple[int, bool]:
    """(N, signed) of the smallest N-bit signed or unsigned range holding [lo, hi]: the
    input type a bound is stated for when a graph's real range is narrower (narrow signed,
    BIPOLAR, BINARY, TERNARY). A budget for the enclosing range holds for every subset."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    return signed_bits_for_range(lo, hi), True


def accumulator_range(acc_bits: int) -> tuple[int, int]:
    """Range of a signed two's-complement accumulator of acc_bits bits."""
    return -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1


def a2q_l1_budget(acc_bits: int, input_bits: int, input_signed: bool) -> float:
    return (2 ** (acc_bits - 1) - 1) * 2.0 ** (int(input_signed) - input_bits)


def a2q_plus_l1_budget(acc_bits: int, input_bits: int) -> float:
    return (2**acc_bits - 2) / (2**input_bits - 1)


def l1_budget(method: str, acc_bits: int, input_bits: int, input_signed: bool) -> float:
    """The per-channel norm budget of a constrained method at accumulator width acc_bits."""
    if method == "a2q":
        return a2q_l1_budget(acc_bits, input_bits, input_signed)
    if method == "a2q+":
        return a2q_plus_l1_budget(acc_bits, input_bits)
    raise ValueError(f"method {method!r} has no accumulator bound (expected one of {CONSTRAINED_METHODS})")


def budget_ratio(input_bits: int, input_signed: bool) -> float:
    """A2Q+ budget / A2Q budget (the paper's Fig. 1); independent of P."""
    return 2.0 ** (input_bits + 1 - int(input_signed)) / (2**input_bits - 1)


def _rows(q: np.ndarray) -> np.ndarray:
    """Integer weights as int64 rows, one per output channel."""
    q = np.asarray(q)
    return q.reshape(q.shape[0], -1).astype(np.int64) if q.ndim > 1 else q.reshape(1, -1).astype(np.int64)


def l1_norm(q: np.ndarray) -> np.ndarray:
    return np.abs(_rows(q)).sum(axis=1)


def a2q_plus_norm(q: np.ndarray) -> np.ndarray:
    """2 * max(sum of positive weights, sum of |negative| weights), per channel."""
    rows = _rows(q)
    pos = np.clip(rows, 0, None).sum(axis=1)
    neg = -np.clip(rows, None, 0).sum(axis=1)
    return 2 * np.maximum(pos, neg)


def constrained_norm(method: str, q: np.ndarray) -> np.ndarray:
    """The per-channel quantity that the method's budget bounds."""
    if method == "a2q":
        return l1_norm(q)
    if method == "a2q+":
        return a2q_plus_norm(q)
    raise ValueError(f"method {method!r} has no accumulator bound")


def min_safe_acc_bits(method: str, norm: float, input_bits: int, input_signed: bool) -> int:
    """Smallest P whose budget holds `norm` under the method's bound."""
    p = 2
    while l1_budget(method, p, input_bits, input_signed) < norm:
        p += 1
    return p


def dot_product_range(q: np.ndarray, x_lo: int, x_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel min and max of q . x over all x in [x_lo, x_hi]^K."""
    rows = _rows(q)
    a, b = rows * x_lo, rows * x_hi
    return np.minimum(a, b).sum(axis=1), np.maximum(a, b).sum(axis=1)


def popcount_range(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel min and max of an XNOR-popcount layer's accumulator (the number of inputs
    equal to their weight): 0 (every input the complement of its weight) to K (every input
    equal to it), for any weights."""
    rows = _rows(q)
    return np.zeros(rows.shape[0], dtype=np.int64), np.full(rows.shape[0], rows.shape[1], dtype=np.int64)


def signed_bits_for_range(lo: int, hi: int) -> int:
    """Smallest P such that [lo, hi] fits a signed P-bit accumulator."""
    need = max(hi, -lo - 1, 0)
    return max(2, int(need).bit_length() + 1)


def datatype_dot_product_range(w_lo: int, w_hi: int, x_lo: int, x_hi: int, fan_in: int) -> tuple[int, int]:
    """Exact min and max of a K-term dot product when every weight may take any value in
    [w_lo, w_hi] and every input any value in [x_lo, x_hi] (runtime-writeable weights):
    each term's extremes lie at the corners, whatever the signs of the two ranges."""
    corners = [w * x for w in (w_lo, w_hi) for x in (x_lo, x_hi)]
    return fan_in * min(corners), fan_in * max(corners)


def worst_case_inputs(q: np.ndarray, x_lo: int, x_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the inputs that maximise and minimise q . x (shape: channels x K)."""
    rows = _rows(q)
    x_max = np.where(rows > 0, x_hi, x_lo)
    x_min = np.where(rows > 0, x_lo, x_hi)
    return x_max, x_min


def wrap_signed(values: np.ndarray, acc_bits: int) -> np.ndarray:
    """Two's-complement wrap-around of integers into a P-bit accumulator."""
    values = np.asarray(values, dtype=np.int64)
    if acc_bits >= 64:  # every int64 already fits
        return values
    # Python integers: 2^63 and the sum below do not fit int64
    span, half = 1 << acc_bits, 1 << (acc_bits - 1)
    return ((values.astype(object) + half) % span - half).astype(np.int64)

