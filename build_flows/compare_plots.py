"""Plots of a LUT-vs-accumulator comparison (PNG + SVG), drawn from its result rows."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

COLORS = {"qat": "tab:gray", "a2q": "tab:blue", "a2q+": "tab:orange"}
# per-layer curves often coincide (equal layers): marker and dash tell them apart
LAYER_STYLES = [(m, ls) for ls in ("-", "--", ":", "-.") for m in ("o", "s", "^", "v", "D", "x")]


def _integer_p_axis(ax) -> None:
    """P is a whole number of bits: ticks only at integers."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _baselines(ax, rows: list[dict], key: str) -> None:
    for r in rows:
        if r["sizing"] in ("int32", "value"):
            label = "qat, INT32" if r["sizing"] == "int32" else "qat, FINN value-based"
            ax.axhline(r[key], color="k" if r["sizing"] == "int32" else "tab:green", ls="--", lw=1, label=label)


def _by_recipe(rows: list[dict], sizing: str = "guaranteed") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["acc_bits"] and r["sizing"] == sizing:
            out.setdefault(r["recipe"], []).append(r)
    return {k: sorted(v, key=lambda r: r["acc_bits"]) for k, v in out.items()}


# runtime-writeable designs: same colour as the recipe, their own line style
RUNTIME_STYLES = {"runtime-guaranteed": ("s-.", "runtime weights, guaranteed P"),
                  "runtime-datatype": ("^:", "runtime weights, FINN datatype-bound")}


def lut_vs_p(results: list[dict], rows: list[dict], out: Path) -> list[Path]:
    fig, (total, per_layer) = plt.subplots(1, 2, figsize=(11, 4))
    for recipe, rs in _by_recipe(rows).items():
        total.plot([r["acc_bits"] for r in rs], [r["lut"] for r in rs], "o-", color=COLORS.get(recipe), label=recipe)
    for sizing, (style, label) in RUNTIME_STYLES.items():
        for recipe, rs in _by_recipe(rows, sizing).items():
            total.plot([r["acc_bits"] for r in rs], [r["lut"] for r in rs], style, color=COLORS.get(recipe),
                       markerfacecolor="none", label=f"{recipe}, {label}")
    _baselines(total, rows, "lut")
    total.set(xlabel="accumulator width P (bits)", ylabel="LUT (all layers)", title="Total LUT vs P")
    _integer_p_axis(total)
    total.legend(fontsize=8)
    # per layer, one recipe (the last constrained one), first seed
    cells = sorted((c for c in results if c["acc_bits"] and c["sizing"] == "guaranteed"),
                   key=lambda c: (c["recipe"], c["acc_bits"]))
    if cells:
        recipe, seed = cells[-1]["recipe"], min(c["seed"] for c in cells)
        chosen = [c for c in cells if c["recipe"] == recipe and c["seed"] == seed]
        for i, name in enumerate(layer["node"] for layer in chosen[0]["layers"]):
            ys = [next(layer["lut"] for layer in c["layers"] if layer["node"] == name) for c in chosen]
            marker, dash = LAYER_STYLES[i % len(LAYER_STYLES)]
            per_layer.plot([c["acc_bits"] for c in chosen], ys, marker=marker, ls=dash, alpha=0.8, markersize=5,
                           markerfacecolor="none", label=name)
        per_layer.set(xlabel="accumulator width P (bits)", ylabel="LUT", title=f"Per layer ({recipe}, seed {seed})")
        _integer_p_axis(per_layer)
        per_layer.legend(fontsize=7, ncol=2)
    return _save(fig, out, "lut_vs_p")


def accuracy_vs_p(rows: list[dict], out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for recipe, rs in _by_recipe(rows).items():
        several = any(r["seeds"] >= 2 for r in rs)   # error bars only where there is a spread to show
        ax.errorbar([r["acc_bits"] for r in rs], [r["accuracy"] for r in rs],
                    yerr=[r["accuracy_std"] for r in rs] if several else None,
                    fmt="o-", color=COLORS.get(recipe), capsize=3, label=recipe)
    _baselines(ax, [r for r in rows if r["sizing"] == "int32"], "accuracy")
    ax.set(xlabel="accumulator width P (bits)", ylabel="test accuracy (%)", title="Accuracy vs P")
    _integer_p_axis(ax)
    ax.legend(fontsize=8)
    return _save(fig, out, "accuracy_vs_p")


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by one with fewer LUTs and at least the same accuracy."""
    frontier, best = [], float("-inf")
    for lut, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            frontier.append((lut, acc))
            best = acc
    return frontier


def pareto(rows: list[dict], out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        label = f"{r['recipe']} P={r['acc_bits']}" if r["acc_bits"] else f"qat {r['sizing']}"
        if r["acc_bits"] and r["sizing"] != "guaranteed":
            label += f" ({r['sizing']})"
        ax.scatter(r["lut"], r["accuracy"], color=COLORS.get(r["recipe"]), marker="o" if r["acc_bits"] else "s")
        ax.annotate(label, (r["lut"], r["accuracy"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    front = pareto_frontier([(r["lut"], r["accuracy"]) for r in rows])
    ax.plot([p[0] for p in front], [p[1] for p in front], "k:", lw=1, label="Pareto frontier")
    ax.set(xlabel="LUT (Yosys, all layers)", ylabel="test accuracy (%)", title="Accuracy vs hardware cost")
    ax.legend(fontsize=8)
    return _save(fig, out, "pareto")


def plot_all(results: list[dict], rows: list[dict], out: Path) -> list[Path]:
    return lut_vs_p(results, rows, out) + accuracy_vs_p(rows, out) + pareto(rows, out)
