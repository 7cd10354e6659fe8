"""Accuracy against accumulator width P: `qat` vs `a2q` vs `a2q+` (with and without EP-init).

Trains the default TFC (64-64-64, 4-bit weights and activations) on scikit-learn's bundled
`digits` with a 4-bit input quantizer (`input_bits=4`; digits pixels are 0..16, scaled to
[0, 1]). Every layer, the first and the last included, is constrained to the guaranteed P.

* `qat` (no accumulator constraint, so no P) is trained once per seed: the reference row.
* `a2q` and `a2q+` are trained at every P of `--acc-bits`, with EP-init.
* `a2q` and `a2q+` are also trained WITHOUT EP-init at the two smallest P.

Float pre-training depends only on (seed, model, dataset), so each seed's float twin is
trained once — by the first run of that seed — and its `float.pt` is passed as
`float_checkpoint` to every other run of the seed. `train()` reseeds before building the
quantized model and QAT uses its own seeded generator, so this gives the same weights as
re-training the float every time, bit for bit (checked on CPU); it only saves time.

Runs are sequential; each trains with `TrainConfig.threads` (1) torch thread and deterministic
algorithms, recorded in the table's caption: the same seeds give the same table, bit for bit,
on a machine with any number of cores (`--check-against` an earlier results.csv proves it). Writes `results.csv` (one line per
run, appended as runs finish) and `table.md` under `--out`; prints the table and ends with one
headline line.

    python benchmarks/accuracy_table.py [--quick] [--seeds 0,1,2,3,4] [--acc-bits 8,9,10,11,12,16,32]
        [--recipes qat,a2q,a2q+] [--float-epochs N] [--qat-epochs N] [--out docs/accuracy]
"""
from __future__ import annotations

import warnings

# brevitas warns at import (missing optional kernels) and during tracing; none of it is ours.
warnings.filterwarnings("ignore", module=r"brevitas(\..*)?$")
warnings.filterwarnings("ignore", message=r".*fast_hadamard_transform.*")

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from rich.console import Console  # noqa: E402

try:
    from a2qflow.models.data import load_dataset
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig, train
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from models.data import load_dataset  # type: ignore[no-redef]
    from models.recipes import Recipe  # type: ignore[no-redef]
    from models.train import TrainConfig, train  # type: ignore[no-redef]

MODEL = "tfc"
DATASET = "digits"
INPUT_BITS = 4
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_ACC_BITS = (8, 9, 10, 11, 12, 16, 32)
DEFAULT_RECIPES = ("qat", "a2q", "a2q+")
QUICK_ACC_BITS = (8, 12, 32)
QUICK_EPOCHS = 3
CONSTRAINED = ("a2q", "a2q+")
CSV_FIELDS = ("recipe", "ep_init", "P", "seed", "float_acc", "after_init_acc", "quant_acc",
              "train_s", "float_s")

console = Console(highlight=False)


@dataclass(frozen=True)
class Job:
    recipe: str
    acc_bits: int | None   # None for qat
    ep_init: bool
    seed: int

    @property
    def label(self) -> str:
        p = "" if self.acc_bits is None else f" P={self.acc_bits}"
        ep = "" if self.ep_init or self.recipe == "qat" else " no EP-init"
        return f"{self.recipe}{p}{ep} seed {self.seed}"

    @property
    def folder(self) -> str:
        p = "" if self.acc_bits is None else f"_P{self.acc_bits}"
        ep = "" if self.ep_init or self.recipe == "qat" else "_noep"
        return f"seed{self.seed}/{self.recipe}{p}{ep}"


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def plan(seeds: list[int], acc_bits: list[int], recipes: list[str]) -> list[Job]:
    """Seed-major order, so each seed's float twin is trained by its first job and reused."""
    no_ep_bits = sorted(acc_bits)[:2]
    jobs = []
    for seed in seeds:
        if "qat" in recipes:
            jobs.append(Job("qat", None, True, seed))
        for r in (r for r in recipes if r in CONSTRAINED):
            jobs += [Job(r, p, True, seed) for p in acc_bits]
        for r in (r for r in recipes if r in CONSTRAINED):
            jobs += [Job(r, p, False, seed) for p in no_ep_bits]
    return jobs


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    m, s = _mean_std(values)
    return f"{m:.1f}" if s is None else f"{m:.1f} ± {s:.1f}"


def row_keys(rows: list[dict]) -> list[tuple[str, bool]]:
    keys = []
    for r in rows:
        k = (r["recipe"], r["ep_init"] is not False)
        if k not in keys:
            keys.append(k)
    order = {("qat", True): 0}
    return sorted(keys, key=lambda k: (order.get(k, 1), not k[1], DEFAULT_RECIPES.index(k[0])
                                       if k[0] in DEFAULT_RECIPES else 9))


def accuracy_table(rows: list[dict], acc_bits: list[int], field: str) -> list[list[str]]:
    """Markdown-ready rows: recipe x P cells of mean ± std of `field` over seeds."""
    header = ["recipe"] + [f"P={p}" for p in acc_bits] + ["no P"]
    out = [header]
    floats = {r["seed"]: r["float_acc"] for r in rows}
    if field == "quant_acc" and floats:
        out.append(["float twin (FP32)"] + ["—"] * len(acc_bits) + [_cell(list(floats.values()))])
    for recipe, ep in row_keys(rows):
        sel = [r for r in rows if r["recipe"] == recipe and (r["ep_init"] is not False) == ep]
        if recipe == "qat":
            out.append(["qat (reference, unconstrained)"] + ["—"] * len(acc_bits)
                       + [_cell([r[field] for r in sel])])
            continue
        name = recipe if ep else f"{recipe} no EP-init"
        out.append([name] + [_cell([r[field] for r in sel if r["P"] == p]) for p in acc_bits] + ["—"])
    return out


def markdown(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    fmt = lambda row: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                        for i, (c, w) in enumerate(zip(row, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(table[0]), sep] + [fmt(r) for r in table[1:]])


def _mean(rows: list[dict], recipe: str, ep: bool, p: int) -> float | None:
    v = [r["quant_acc"] for r in rows if r["recipe"] == recipe and r["P"] == p
         and (r["ep_init"] is not False) == ep]
    return statistics.fmean(v) if v else None


def headline(rows: list[dict], acc_bits: list[int]) -> str:
    ps = sorted(acc_bits)
    cmp_ps = [ps[0]] + ([12] if 12 in ps and ps[0] != 12 else ps[1:2])
    parts = []
    for p in cmp_ps:
        a, b = _mean(rows, "a2q", True, p), _mean(rows, "a2q+", True, p)
        if a is not None and b is not None:
            parts.append(f"P={p}: {b - a:+.1f}" + (" pts" if not parts else ""))
    gains = []
    for r in CONSTRAINED:
        with_ep, without = _mean(rows, r, True, ps[0]), _mean(rows, r, False, ps[0])
        if with_ep is not None and without is not None:
            gains.append(f"{r} {with_ep - without:+.1f}")
    text = "accuracy:"
    if parts:
        text += " a2q+ - a2q at " + ", ".join(parts)
    if gains:
        text += ("; " if parts else " ") + f"EP-init gain at P={ps[0]}: " + ", ".join(gains)
    q = [r["quant_acc"] for r in rows if r["recipe"] == "qat"]
    if q:
        text += f"; qat reference {statistics.fmean(q):.1f}%"
    return text


def caption(seeds: list[int], float_epochs: int, qat_epochs: int, n_test: int) -> str:
    std = "mean ± sample std" if len(seeds) > 1 else "single seed"
    return (f"Test accuracy (%) of the default TFC (64-64-64, 4-bit weights, 4-bit activations) on "
            f"`digits` ({n_test} held-out images), {std} over seeds {','.join(map(str, seeds))}. "
            f"Input quantizer: unsigned {INPUT_BITS}-bit (`input_bits={INPUT_BITS}`; digits "
            f"pixels are 0..16, scaled to [0, 1]). The first layer (and the last) is constrained "
            f"to the guaranteed P like every other layer. Float pre-training {float_epochs} "
            f"epochs, once per seed and shared by all runs of the seed; QAT {qat_epochs} epochs. "
            f"`qat` has no accumulator constraint (no P): the reference row. EP-init variants "
            f"are the default; 'no EP-init' rows load the float weights straight into the "
            f"quantizer. After init, BatchNorm statistics are re-estimated on up to "
            f"{TrainConfig().bn_batches} training batches. Training: {TrainConfig().threads} torch "
            f"thread, deterministic algorithms.")


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=_ints, default=list(DEFAULT_SEEDS))
    ap.add_argument("--acc-bits", type=_ints, default=None,
                    help=f"comma-separated P (default {','.join(map(str, DEFAULT_ACC_BITS))})")
    ap.add_argument("--recipes", type=lambda s: [r.strip() for r in s.split(",") if r.strip()],
                    default=list(DEFAULT_RECIPES))
    ap.add_argument("--float-epochs", type=int, default=None,
                    help=f"default {defaults.float_epochs} (TrainConfig), {QUICK_EPOCHS} with --quick")
    ap.add_argument("--qat-epochs", type=int, default=None,
                    help=f"default {defaults.qat_epochs} (TrainConfig), {QUICK_EPOCHS} with --quick")
    ap.add_argument("--out", type=Path, default=Path("docs/accuracy"))
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="keep the run folders (checkpoints, train.json) here; default: a "
                         "temporary folder removed at the end")
    ap.add_argument("--check-against", type=Path, default=None,
                    help="an earlier results.csv: exit 1 unless every accuracy is identical")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: first seed only, P in {QUICK_ACC_BITS}, {QUICK_EPOCHS} epochs")
    args = ap.parse_args(argv)

    for r in args.recipes:
        if r not in DEFAULT_RECIPES:
            ap.error(f"unknown recipe {r!r}; valid: {', '.join(DEFAULT_RECIPES)}")
    seeds = args.seeds[:1] if args.quick else args.seeds
    acc_bits = args.acc_bits or list(QUICK_ACC_BITS if args.quick else DEFAULT_ACC_BITS)
    float_epochs = args.float_epochs if args.float_epochs is not None else (
        QUICK_EPOCHS if args.quick else defaults.float_epochs)
    qat_epochs = args.qat_epochs if args.qat_epochs is not None else (
        QUICK_EPOCHS if args.quick else defaults.qat_epochs)
    if not seeds or not acc_bits:
        ap.error("need at least one seed and one P")

    jobs = plan(seeds, acc_bits, args.recipes)
    ds = load_dataset(DATASET)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "results.csv"
    tmp = None
    if args.runs_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="a2qflow-accuracy-")
        runs_dir = Path(tmp.name)
    else:
        runs_dir = args.runs_dir
    console.print(f"[bold]accuracy table[/]: {MODEL} on {DATASET} ({len(ds.x_train)} train / "
                  f"{len(ds.x_test)} test), input_bits={INPUT_BITS}, seeds {seeds}, P {acc_bits}, "
                  f"recipes {args.recipes}, float {float_epochs} + QAT {qat_epochs} epochs: "
                  f"{len(jobs)} runs")

    rows: list[dict] = []
    float_ckpt: dict[int, str] = {}
    t_start = time.perf_counter()
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for i, job in enumerate(jobs, 1):
            elapsed = time.perf_counter() - t_start
            eta = "" if i == 1 else f", ETA ~{elapsed / (i - 1) * (len(jobs) - i + 1) / 60:.0f} min"
            reuse = float_ckpt.get(job.seed)
            console.rule(f"[{i}/{len(jobs)}] {job.label}  "
                         f"({'float reused' if reuse else 'trains the float twin'}; "
                         f"elapsed {elapsed / 60:.1f} min{eta})")
            recipe = Recipe(method=job.recipe, input_bits=INPUT_BITS,
                            **({"acc_bits": job.acc_bits} if job.acc_bits is not None else {}))
            cfg = TrainConfig(model=MODEL, dataset=DATASET, recipe=recipe, float_epochs=float_epochs,
                              qat_epochs=qat_epochs, seed=job.seed, ep_init=job.ep_init,
                              float_checkpoint=reuse)
            run_dir = runs_dir / job.folder
            res = train(cfg, run_dir, ds)
            if reuse is None:
                float_ckpt[job.seed] = str(run_dir / "float.pt")
            m = res["metrics"]
            row = {"recipe": job.recipe, "ep_init": "n/a" if job.recipe == "qat" else job.ep_init,
                   "P": job.acc_bits if job.acc_bits is not None else "", "seed": job.seed,
                   "float_acc": m["float"]["accuracy"], "after_init_acc": m["after_init"]["accuracy"],
                   "quant_acc": m["quant"]["accuracy"], "train_s": res["timings"]["qat_s"],
                   "float_s": 0.0 if reuse else res["timings"]["float_s"]}
            rows.append(row)
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
            f.flush()
            console.print(f"  float {row['float_acc']:.2f}%  after init {row['after_init_acc']:.2f}%  "
                          f"quant {row['quant_acc']:.2f}%  (QAT {row['train_s']:.0f} s)")
    wall = time.perf_counter() - t_start
    if tmp is not None:
        tmp.cleanup()

    # One float twin per seed: every run of a seed must report the same float accuracy.
    for s in seeds:
        fl = {r["float_acc"] for r in rows if r["seed"] == s}
        if len(fl) != 1:
            console.print(f"[red]warning: seed {s} reports different float accuracies {sorted(fl)}[/]")

    cap = caption(seeds, float_epochs, qat_epochs, len(ds.x_test))
    quant = markdown(accuracy_table(rows, acc_bits, "quant_acc"))
    init = markdown(accuracy_table(rows, acc_bits, "after_init_acc"))
    head = headline(rows, acc_bits)
    args_used = list(argv if argv is not None else sys.argv[1:])
    if "--runs-dir" in args_used:  # where run folders went does not change the results
        i = args_used.index("--runs-dir")
        del args_used[i:i + 2]
    cmd = ("python benchmarks/accuracy_table.py " + " ".join(args_used)).rstrip()
    md = (f"# Accuracy vs accumulator width P\n\n{cap}\n\n{quant}\n\n"
          f"After initialisation, before QAT (float weights loaded, EP-init or not, activations "
          f"calibrated):\n\n{init}\n\n`{head}`\n\nProduced by `{cmd}` in {wall / 60:.1f} min "
          f"({len(rows)} runs; per-run numbers in `results.csv`).\n")
    (args.out / "table.md").write_text(md)

    print()
    print(cap)
    print()
    print(quant)
    print()
    print("After initialisation, before QAT:")
    print(init)
    print()
    print(f"{len(rows)} runs in {wall / 60:.1f} min; wrote {csv_path} and {args.out / 'table.md'}")
    print(head)
    if args.check_against is not None:
        return check_identical(csv_path, args.check_against)
    return 0


ACCURACY_FIELDS = ("float_acc", "after_init_acc", "quant_acc")


def check_identical(ours: Path, theirs: Path) -> int:
    """Every run's accuracies equal those of an earlier table (timings may differ)."""
    def runs(path: Path) -> dict:
        with open(path, newline="") as f:
            return {(r["recipe"], r["ep_init"], r["P"], r["seed"]): tuple(r[k] for k in ACCURACY_FIELDS)
                    for r in csv.DictReader(f)}
    a, b = runs(ours), runs(theirs)
    differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    missing = sorted(a.keys() ^ b.keys())
    if differ or missing:
        console.print(f"[red]not reproduced[/]: {len(differ)} runs differ {differ[:3]}, {len(missing)} not in both")
        return 1
    console.print(f"reproduced: all {len(a)} runs identical to {theirs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
