"""Depthwise layers under A2Q+: all-A2Q vs all-A2Q+ vs the mixed default, on the MobileNet-style net.

The A2Q+ paper recommends A2Q for depthwise convolutions (K = 9: zero-centring buys little
there) and A2Q+ elsewhere; a2qflow's `a2q+` recipe does this by default (`depthwise_method`).
This trains the MobileNet-style net on digits at each P of `--acc-bits` with
  all-a2q    --recipe a2q                              (every layer A2Q)
  all-a2q+   --recipe a2q+ --depthwise-recipe a2q+     (every layer A2Q+)
  mixed      --recipe a2q+ --depthwise-recipe a2q      (the default)
per seed, sharing one float twin per seed (as benchmarks/accuracy_table.py does), one torch
thread (deterministic). Writes `depthwise.csv` and `depthwise.md` under --out (after-init and
final accuracy, mean ± std over seeds), prints the table and a headline line.

    python benchmarks/depthwise_tradeoff.py [--acc-bits 10,12] [--seeds 0,1] [--out docs/accuracy]
"""
from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", module=r"brevitas(\..*)?$")

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from a2qflow.models.data import load_dataset  # noqa: E402
from a2qflow.models.recipes import Recipe  # noqa: E402
from a2qflow.models.train import TrainConfig, train  # noqa: E402

VARIANTS = {"all-a2q": ("a2q", "a2q"), "all-a2q+": ("a2q+", "a2q+"), "mixed (default)": ("a2q+", "a2q")}
FIELDS = ("variant", "P", "seed", "float_acc", "after_init_acc", "quant_acc", "train_s")


def cell(rows: list[dict], variant: str, p: int, field: str) -> str:
    vals = [r[field] for r in rows if r["variant"] == variant and r["P"] == p]
    if not vals:
        return ""
    return f"{statistics.mean(vals):.1f}" + (f" ± {statistics.stdev(vals):.1f}" if len(vals) > 1 else "")


def markdown(rows: list[dict], acc_bits: list[int], seeds: list[int]) -> str:
    head = "| variant | " + " | ".join(f"P={p}: final (after init)" for p in acc_bits) + " |"
    lines = [f"MobileNet-style net on digits, W4A4, 4-bit input, seeds {', '.join(map(str, seeds))}, "
             f"{TrainConfig().float_epochs} + {TrainConfig().qat_epochs} epochs, {TrainConfig().threads} torch "
             f"thread; float twin {cell(rows, next(iter(VARIANTS)), acc_bits[0], 'float_acc')} %. "
             "Test accuracy %, mean ± std over seeds.", "", head, "|---|" + "---|" * len(acc_bits)]
    for v in VARIANTS:
        lines.append(f"| {v} | " + " | ".join(f"{cell(rows, v, p, 'quant_acc')} ({cell(rows, v, p, 'after_init_acc')})"
                                               for p in acc_bits) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acc-bits", default="10,12")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", type=Path, default=Path("docs/accuracy"))
    args = ap.parse_args()
    acc_bits = [int(x) for x in args.acc_bits.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    ds = load_dataset("digits")
    rows, floats = [], {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for p in acc_bits:
                for variant, (method, dw) in VARIANTS.items():
                    recipe = Recipe(method=method, acc_bits=p, input_bits=4, depthwise_method=dw)
                    cfg = TrainConfig(model="mobilenet", dataset="digits", recipe=recipe, seed=seed,
                                      float_checkpoint=floats.get(seed))
                    run = Path(tmp) / f"{variant.split()[0]}-P{p}-s{seed}"
                    m = train(cfg, run, ds)
                    floats.setdefault(seed, str(run / "float.pt"))
                    acc = m["metrics"]
                    rows.append({"variant": variant, "P": p, "seed": seed, "float_acc": acc["float"]["accuracy"],
                                 "after_init_acc": acc["after_init"]["accuracy"], "quant_acc": acc["quant"]["accuracy"],
                                 "train_s": m["timings"]["qat_s"]})
                    print(f"{variant:16s} P={p} seed {seed}: after init {rows[-1]['after_init_acc']:.1f} %, "
                          f"final {rows[-1]['quant_acc']:.1f} %", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "depthwise.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    table = markdown(rows, acc_bits, seeds)
    (args.out / "depthwise.md").write_text(table)
    print(table)
    best = {p: max(VARIANTS, key=lambda v: statistics.mean(
        r["quant_acc"] for r in rows if r["variant"] == v and r["P"] == p)) for p in acc_bits}
    print(f"HEADLINE: best final accuracy per P: {best}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
