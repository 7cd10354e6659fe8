"""Per-module table of a mutmut run (`make mutation`): reads `mutmut results --all true` on
stdin, prints a Markdown table and the mutants that were not killed."""
from __future__ import annotations

import sys
from collections import Counter, defaultdict


def main() -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    alive = []
    for line in sys.stdin:
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        module = name.rsplit(".", 1)[0]
        counts[module][status] += 1
        if status != "killed":
            alive.append(f"{name}: {status}")
    total: Counter = Counter()
    print("| module | mutants | killed | survived | timeout | other | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module in sorted(counts):
        c = counts[module]
        total.update(c)
        print(_row(module, c))
    print(_row("**all**", total))
    print()
    print("\n".join(alive) or "no surviving mutants")


def _row(label: str, c: Counter) -> str:
    n = sum(c.values())
    other = n - c["killed"] - c["survived"] - c["timeout"]
    score = 100 * (c["killed"] + c["timeout"]) / n if n else 0.0
    return f"| {label} | {n} | {c['killed']} | {c['survived']} | {c['timeout']} | {other} | {score:.1f}% |"


if __name__ == "__main__":
    main()
