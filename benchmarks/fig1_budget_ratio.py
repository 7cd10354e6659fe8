"""Fig. 1 of the A2Q+ paper (Colbert et al., ICML 2024): the l1-norm budget per output channel.

For an N-bit input and a signed P-bit accumulator:

* A2Q   budget: (2^(P-1) - 1) * 2^(s - N)        (s = 1 for signed inputs, 0 for unsigned)
* A2Q+  budget: (2^P - 2) / (2^N - 1)             (zero-centred weights; same for both signs)
* ratio A2Q+/A2Q = 2^(N + 1 - s) / (2^N - 1)      independent of P

Prints the table for N = 1..8 at one accumulator width (default P = 16) and ends with a
one-line headline. ``fig1_rows(acc_bits)`` returns the rows for programmatic use.

    python benchmarks/fig1_budget_ratio.py [--acc-bits P]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from a2qflow.models import bounds
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from models import bounds  # type: ignore[no-redef]

INPUT_BITS = tuple(range(1, 9))
DEFAULT_ACC_BITS = 16


def fig1_rows(acc_bits: int = DEFAULT_ACC_BITS, input_bits=INPUT_BITS) -> list[dict]:
    """One row per input width N: the budgets at `acc_bits` and the A2Q+/A2Q ratios."""
    rows = []
    for n in input_bits:
        a2q_u = bounds.a2q_l1_budget(acc_bits, n, False)
        a2q_s = bounds.a2q_l1_budget(acc_bits, n, True)
        a2q_plus = bounds.a2q_plus_l1_budget(acc_bits, n)
        rows.append(
            {
                "N": n,
                "P": acc_bits,
                "a2q_unsigned": a2q_u,
                "a2q_signed": a2q_s,
                "a2q_plus": a2q_plus,
                "ratio_unsigned": a2q_plus / a2q_u,
                "ratio_signed": a2q_plus / a2q_s,
            }
        )
    return rows


def headline(rows: list[dict]) -> str:
    first, last = rows[0], rows[-1]
    return (
        f"fig1: ratio unsigned N={first['N']}..{last['N']} = "
        f"{first['ratio_unsigned']:.3f} ... {last['ratio_unsigned']:.3f}; "
        f"signed = {first['ratio_signed']:.3f} ... {last['ratio_signed']:.3f}"
    )


def format_table(rows: list[dict]) -> str:
    acc_bits = rows[0]["P"]
    header = ("N", "A2Q unsigned", "A2Q signed", "A2Q+", "ratio unsigned", "ratio signed")
    widths = (3, 14, 14, 14, 15, 13)
    lines = [
        f"Fig. 1 (A2Q+): l1-norm budget per output channel, P = {acc_bits}-bit signed accumulator",
        "  A2Q  = (2^(P-1)-1) * 2^(s-N)   A2Q+ = (2^P-2)/(2^N-1)   ratio = 2^(N+1-s)/(2^N-1), P-independent",
        "  ".join(h.rjust(w) for h, w in zip(header, widths)),
    ]
    for r in rows:
        cells = (
            f"{r['N']}",
            f"{r['a2q_unsigned']:.4f}",
            f"{r['a2q_signed']:.4f}",
            f"{r['a2q_plus']:.4f}",
            f"{r['ratio_unsigned']:.6f}",
            f"{r['ratio_signed']:.6f}",
        )
        lines.append("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acc-bits", "-P", type=int, default=DEFAULT_ACC_BITS,
                        help=f"accumulator width P (default {DEFAULT_ACC_BITS}; the ratio does not depend on it)")
    args = parser.parse_args(argv)
    if args.acc_bits < 2:
        parser.error("--acc-bits must be at least 2")
    rows = fig1_rows(args.acc_bits)
    print(format_table(rows))
    print(headline(rows))
    return rows


if __name__ == "__main__":
    main()
