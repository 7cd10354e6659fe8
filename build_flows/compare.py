"""`a2qflow compare-acc`: LUT usage against accumulator width, next to accuracy.

A comparison is a grid of cells. A cell trains (or reuses) one network for one recipe, P and
seed, exports it, builds it with FINN (estimate flow) and synthesizes its layers with Yosys.
Baseline cells build the `qat` network with INT32 accumulators and with FINN's value-based
widths. With `runtime_weights`, every a2q/a2q+ cell has two more designs whose weights are
writeable at run time: a2qflow's guaranteed P (any weights within the trained bound fit) and
FINN's own sizing for such weights, from the datatypes' worst case. Each finished cell writes `cells/<key>/result.json`; a rerun skips finished cells,
so an interrupted comparison resumes. Float pre-training is shared by all cells of a seed.
Results: `results.csv`/`results.json`, plots (PNG + SVG) and `summary.md`.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from a2qflow.errors import A2qflowError
from a2qflow.hw_configs import DEFAULT_BOARD
from a2qflow.models import catalog

from .run_folder import SIZING, SYNTH, read_json, write_json, write_text_atomic
from .summary import write_summary

BASELINES = ("int32", "value")
# runtime-writeable weights: the guaranteed P against FINN's datatype-bound sizing
RUNTIME_SIZINGS = ("runtime-guaranteed", "runtime-datatype")


def build_sizing(sizing: str) -> tuple[str, bool]:
    """A cell's sizing -> (BuildConfig.sizing, runtime_weights)."""
    return (sizing.removeprefix("runtime-"), True) if sizing in RUNTIME_SIZINGS else (sizing, False)


GRID_MARKER = "grid.json"


class GridFolderError(A2qflowError, ValueError):
    """An output folder a comparison must not write into."""


def claim_grid_folder(root: Path, kind: str) -> None:
    """Refuse a file, or a folder holding files but no a2qflow comparison; mark the folder."""
    claim_check(root)
    write_json(root / GRID_MARKER, {"format": "a2qflow-grid/1", "kind": kind})


def validate_spec(spec: "GridSpec") -> "GridSpec":
    """Refuse a grid that would do nothing or cannot work, naming the field."""
    from a2qflow.hw_configs import get_board
    from a2qflow.models.data import DATASETS
    from a2qflow.models.nets import NETWORKS

    get_board(spec.board)
    if spec.model not in NETWORKS:
        raise GridSpecError(f"model {spec.model!r}; valid: {', '.join(NETWORKS)}")
    if spec.dataset not in DATASETS:
        raise GridSpecError(f"dataset {spec.dataset!r}; valid: {', '.join(DATASETS)}")
    if not spec.recipes:
        raise GridSpecError("recipes is empty: name at least one of qat, a2q, a2q+")
    bad = [r for r in spec.recipes if r not in ("qat", "a2q", "a2q+")]
    if bad:
        raise GridSpecError(f"recipes: unknown recipe(s) {bad}; valid: qat, a2q, a2q+")
    if any(r != "qat" for r in spec.recipes) and not spec.acc_bits:
        raise GridSpecError("acc_bits is empty: the a2q/a2q+ cells need at least one accumulator width")
    bad = [p for p in spec.acc_bits if isinstance(p, bool) or not isinstance(p, int) or not 2 <= p <= 64]
    if bad:
        raise GridSpecError(f"acc_bits {bad}: each accumulator width must be an integer in 2..64")
    if not spec.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in spec.seeds):
        raise GridSpecError(f"seeds {list(spec.seeds)}: need at least one seed, each a non-negative integer")
    for name in ("float_epochs", "qat_epochs"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise GridSpecError(f"{name} must be a non-negative integer, got {value!r}")
    if not 1 <= spec.input_bits <= 16:
        raise GridSpecError(f"input_bits {spec.input_bits} out of range 1..16")
    for name in ("lut_only", "rtl_sim", "runtime_weights"):
        if not isinstance(getattr(spec, name), bool):
            raise GridSpecError(f"{name} must be true or false, got {getattr(spec, name)!r}")
    if not isinstance(spec.torch_threads, int) or spec.torch_threads < 1:
        raise GridSpecError(f"torch_threads must be a positive integer, got {spec.torch_threads!r}")
    return spec


class GridSpecError(A2qflowError, ValueError):
    """A comparison grid that would do nothing or cannot work."""


def parse_acc_bits(text: str) -> tuple[int, ...]:
    """'10:20:2' (stop inclusive) or '10,12,16'."""
    try:
        if ":" in text:
            start, stop, *step = (int(v) for v in text.split(":"))
            if len(step) > 1:
                raise ValueError(text)
            values = tuple(range(start, stop + 1, step[0] if step else 1))
        else:
            values = tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise ValueError(f"accumulator widths {text!r}: expected START:STOP[:STEP] or a comma list") from err
    if not values or min(values) < 2 or max(values) > 64:
        raise ValueError(f"accumulator widths {text!r}: need at least one width, each in 2..64")
    return values


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    board: str
    recipe: str
    acc_bits: int | None      # None for baselines
    seed: int
    sizing: str               # guaranteed | int32 | value | runtime-guaranteed | runtime-datatype

    @property
    def key(self) -> str:
        p = f"P{self.acc_bits}" if self.acc_bits else "noP"
        return f"{self.model}-{self.dataset}-{self.board}-{self.recipe}-{p}-s{self.seed}-{self.sizing}"


@dataclass
class GridSpec:
    model: str = catalog.DEFAULT_MODEL
    dataset: str = catalog.DEFAULT_DATASET
    board: str = DEFAULT_BOARD
    recipes: tuple[str, ...] = catalog.RECIPE_NAMES
    acc_bits: tuple[int, ...] = catalog.DEFAULT_GRID_ACC_BITS
    seeds: tuple[int, ...] = (catalog.DEFAULT_SEED,)
    input_bits: int = catalog.DEFAULT_INPUT_BITS
    float_epochs: int = catalog.DEFAULT_FLOAT_EPOCHS
    qat_epochs: int = catalog.DEFAULT_QAT_EPOCHS
    lut_only: bool = False
    rtl_sim: bool = False     # Verilator-check each cell's layers (the build's oss step); off: LUTs are the point
    torch_threads: int = 1    # fixed: float sums in training depend on the thread count, and a cell
                              # must give the same numbers serially, on a Dask worker or elsewhere
    train_kwargs: dict = field(default_factory=dict)
    runtime_weights: bool = False   # also the runtime-writeable designs of every a2q/a2q+ cell

    def cells(self) -> list[Cell]:
        out = []
        for seed in self.seeds:
            for recipe in self.recipes:
                if recipe == "qat":
                    out += [Cell(self.model, self.dataset, self.board, "qat", None, seed, s) for s in BASELINES]
                else:
                    sizings = ("guaranteed", *RUNTIME_SIZINGS) if self.runtime_weights else ("guaranteed",)
                    out += [Cell(self.model, self.dataset, self.board, recipe, p, seed, s)
                            for p in self.acc_bits for s in sizings]
        return out


# besides the cell's key, what changes a cell's numbers (rtl_sim only checks): a cached cell or
# float checkpoint is reused only when these match, never silently across different settings
CELL_SETTINGS = ("input_bits", "float_epochs", "qat_epochs", "lut_only", "torch_threads", "train_kwargs")
FLOAT_SETTINGS = ("input_bits", "float_epochs", "torch_threads", "train_kwargs")


class StaleCacheError(A2qflowError, ValueError):
    """A cached cell or float checkpoint was computed with other settings than this grid's."""


def _settings(spec: GridSpec, names: tuple[str, ...]) -> dict:
    return json.loads(json.dumps({n: getattr(spec, n) for n in names}))   # as it reads back from JSON


def _check_cached(recorded: dict | None, current: dict, where: Path) -> None:
    recorded = recorded or {}   # cached before settings were recorded: stale too
    if recorded != current:
        diff = ", ".join(f"{k}: cached {recorded.get(k)!r}, now {v!r}" for k, v in current.items()
                         if recorded.get(k) != v)
        raise StaleCacheError(f"{where} was computed with other settings ({diff}); use another output "
                              f"folder or delete it")


def _float_dir(cell: Cell, root: Path) -> Path:
    return root / "float" / f"{cell.model}-{cell.dataset}-s{cell.seed}"


def check_cached(cells: list[Cell], spec: GridSpec, root: Path) -> None:
    """Refuse, before anything runs or is written, a grid whose cached cells or float
    checkpoints were computed with other settings."""
    for cell in cells:
        done = root / "cells" / cell.key / "result.json"
        if done.is_file():
            _check_cached(read_json(done).get("settings"), _settings(spec, CELL_SETTINGS), done.parent)
        float_dir = _float_dir(cell, root)
        if (float_dir / "float.pt").is_file():
            _check_cached(read_json(float_dir / "settings.json"), _settings(spec, FLOAT_SETTINGS), float_dir)


def _train_config(cell: Cell, spec: GridSpec, float_ckpt: Path):
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig

    recipe = Recipe(method=cell.recipe, acc_bits=cell.acc_bits or 32, input_bits=spec.input_bits)
    return TrainConfig(model=cell.model, dataset=cell.dataset, recipe=recipe, seed=cell.seed,
                       float_epochs=spec.float_epochs, qat_epochs=spec.qat_epochs, threads=spec.torch_threads,
                       float_checkpoint=str(float_ckpt) if float_ckpt.is_file() else None, **spec.train_kwargs)


def run_cell(cell: Cell, spec: GridSpec, root: str | Path) -> dict:
    """Train -> export -> build -> synthesize one cell (the pipeline, oss flow); cached in
    cells/<key>/result.json. The first cell of a seed keeps its float pre-training in
    float/<model>-<dataset>-s<seed>/ for the others."""
    from .config import BuildConfig
    from .pipeline import PipelineConfig, run

    root = Path(root)
    cell_dir = root / "cells" / cell.key
    done = cell_dir / "result.json"
    settings = _settings(spec, CELL_SETTINGS)
    if done.is_file():
        result = read_json(done)
        _check_cached(result.get("settings"), settings, cell_dir)
        return result
    t0 = time.perf_counter()
    float_dir = _float_dir(cell, root)
    sizing, runtime_weights = build_sizing(cell.sizing)
    result = run(PipelineConfig(
        train=_train_config(cell, spec, float_dir / "float.pt"), export_samples=100,
        build=BuildConfig(board=cell.board, flow="oss", sizing=sizing, runtime_weights=runtime_weights,
                          model_name=cell.model, lut_only=spec.lut_only, package=False, rtl_sim=spec.rtl_sim,
                          accelerator_sim=spec.rtl_sim, parity_samples=16, progress=False, jobs=1),
        out=cell_dir / "build"), log=lambda line: None)
    folder = result.folder
    if not (float_dir / "float.pt").is_file() and (folder.train / "float.pt").is_file():
        write_json(float_dir / "settings.json", _settings(spec, FLOAT_SETTINGS))
        shutil.copyfile(folder.train / "float.pt", float_dir / "float.pt")
    synth = folder.read_report(SYNTH)
    if synth["total"] is None:
        raise ValueError(f"{cell.key}: no layer of the built graph has FINN-generated RTL to synthesize; "
                         f"skipped: {synth['skipped']}")
    # FINN builds a dot product as HLS where its RTL MVU does not apply (e.g. on DSP48E1 parts when
    # a layer's weights reach the datatype's minimum); without Vitis HLS those layers have no RTL,
    # so this cell's LUT total would leave them out: kept, but marked and kept out of comparisons
    metrics = read_json(folder.train / "train.json")["metrics"]["quant"]
    sizing = folder.read_report(SIZING)
    result = {**asdict(cell), "key": cell.key, "accuracy": metrics.get("accuracy", metrics.get("psnr_db")),
              "metric": "accuracy" if "accuracy" in metrics else "psnr_db",
              "acc_widths": {s["node"]: s["acc"] for s in sizing},
              "widths": [{k: s.get(k) for k in WIDTH_FIELDS} for s in sizing],
              "layers": synth["layers"], "lut": synth["total"]["lut"], "ff": synth["total"]["ff"],
              "dsp": synth["total"]["dsp"], "tool": synth["tool"],
              "build_status": result.record["status"], "unsynthesized": _unsynthesized(synth), "settings": settings,
              "seconds": time.perf_counter() - t0}
    write_json(done, result)
    (cell_dir / "error.json").unlink(missing_ok=True)
    return result


WIDTH_FIELDS = ("node", "layer", "fan_in", "acc_bits", "value_bits", "datatype_bits", "acc")


def _unsynthesized(synth: dict) -> list[str]:
    return [f"{s['node']}: {s['reason']}" for s in synth["skipped"] if s["node"].startswith(("MVAU", "VVAU"))]


def attempt_cell(cell: Cell, spec: GridSpec, root: str | Path) -> dict:
    """run_cell, a failure returned as a row (`status: failed`, the error) so that one bad cell
    does not stop a grid. The error is kept in cells/<key>/error.json; no result.json is
    written, so a rerun tries the cell again."""
    try:
        return {**run_cell(cell, spec, root), "status": "complete"}
    except Exception as err:  # noqa: BLE001 - any failure of one cell is reported, not raised
        row = {**asdict(cell), "key": cell.key, "status": "failed", "error": f"{type(err).__name__}: {err}"}
        cell_dir = Path(root) / "cells" / cell.key
        cell_dir.mkdir(parents=True, exist_ok=True)
        write_json(cell_dir / "error.json", row)
        return row


def run_serial(cells: list[Cell], spec: GridSpec, root: Path, console=None) -> list[dict]:
    """Every cell in order, in this process; failures become rows. Progress is one line per
    cell: a cell shows its own bars (training, Yosys), and rich allows one live display."""
    from rich.console import Console

    console = console or Console()
    results = []
    for i, cell in enumerate(cells, 1):
        console.print(f"[bold]cell {i}/{len(cells)}[/]: {cell.key}")
        row = attempt_cell(cell, spec, root)
        console.print(f"cell {i}/{len(cells)} {row['status']}: {cell.key}"
                      + (f" ({row['error']})" if row["status"] == "failed" else ""), markup=False)
        results.append(row)
    return results


def run_grid(spec: GridSpec, root: Path, console=None) -> tuple[list[dict], dict]:
    """`a2qflow compare-acc`: the whole grid in this process, then its outputs; returns the
    cell rows and the headline. Refused before anything is written when the grid is invalid,
    the folder is someone else's or cached cells were computed with other settings."""
    validate_spec(spec)
    root = Path(root)
    claim_check(root)
    cells = spec.cells()
    check_cached(cells, spec, root)
    claim_grid_folder(root, "compare")
    results = run_serial(cells, spec, root, console)
    return results, write_outputs(results, root)


def claim_check(root: Path) -> None:
    """The folder checks of claim_grid_folder, without marking it."""
    if root.exists() and not root.is_dir():
        raise GridFolderError(f"output {root} is a file, not a folder")
    if root.is_dir() and any(root.iterdir()) and not any((root / m).is_file() for m in (GRID_MARKER, "results.json")):
        raise GridFolderError(f"output folder {root} holds files but no a2qflow comparison ({GRID_MARKER}); "
                              "choose an empty or new folder")


def aggregate(results: list[dict]) -> list[dict]:
    """Mean over seeds per (recipe, P, sizing)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["recipe"], r["acc_bits"], r["sizing"]), []).append(r)
    rows = []
    for (recipe, p, sizing), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
        acc = [r["accuracy"] for r in rs]
        rows.append({"recipe": recipe, "acc_bits": p, "sizing": sizing, "seeds": len(rs),
                     "accuracy": statistics.mean(acc), "accuracy_std": statistics.pstdev(acc),
                     "lut": statistics.mean(r["lut"] for r in rs), "ff": statistics.mean(r["ff"] for r in rs),
                     "dsp": statistics.mean(r["dsp"] for r in rs)})
    return rows


def headline(rows: list[dict]) -> dict:
    """LUT ratio INT32 -> the smallest P within 1 accuracy point of the 32-bit model."""
    base = next((r for r in rows if r["sizing"] == "int32"), None)
    if base is None:
        return {}
    within = [r for r in rows if r["acc_bits"] and r["accuracy"] >= base["accuracy"] - 1.0]
    if not within:
        return {"int32_lut": base["lut"], "int32_accuracy": base["accuracy"], "smallest_p": None}
    best = min(within, key=lambda r: (r["acc_bits"], r["lut"]))
    return {"int32_lut": base["lut"], "int32_accuracy": base["accuracy"], "smallest_p": best["acc_bits"],
            "recipe": best["recipe"], "lut": best["lut"], "accuracy": best["accuracy"],
            "lut_ratio": base["lut"] / best["lut"] if best["lut"] else None}


def runtime_headline(results: list[dict], head: dict) -> dict:
    """Runtime-writeable weights: FINN's datatype-bound design against a2qflow's guaranteed-P
    design with the same (trained) weights, so at equal accuracy: the LUT ratio per seed at
    the headline's P and recipe (else the smallest P with both designs), mean ± std, and the
    per-layer widths (K, P, value-based, datatype) that explain it."""
    pairs: dict[tuple, dict] = {}
    for r in results:
        if r["sizing"] in RUNTIME_SIZINGS:
            pairs.setdefault((r["recipe"], r["acc_bits"], r["seed"]), {})[r["sizing"]] = r
    pairs = {k: v for k, v in pairs.items() if len(v) == 2}
    if not pairs:
        return {}
    recipe, p = (head["recipe"], head["smallest_p"]) if head.get("smallest_p") else min(
        {(k[0], k[1]) for k in pairs}, key=lambda rp: (rp[1], rp[0]))
    chosen = sorted((k[2], v) for k, v in pairs.items() if k[:2] == (recipe, p))
    if not chosen:
        return {}
    ratios = [v["runtime-datatype"]["lut"] / v["runtime-guaranteed"]["lut"] for _, v in chosen]
    first = chosen[0][1]
    finn_widths = {w["node"]: w["acc"] for w in first["runtime-datatype"].get("widths", [])}
    layers = [{**w, "finn_acc": finn_widths.get(w["node"])} for w in first["runtime-guaranteed"].get("widths", [])]
    return {"recipe": recipe, "acc_bits": p, "seeds": [seed for seed, _ in chosen],
            "accuracy": statistics.mean(v["runtime-guaranteed"]["accuracy"] for _, v in chosen),
            "guaranteed_lut": statistics.mean(v["runtime-guaranteed"]["lut"] for _, v in chosen),
            "datatype_lut": statistics.mean(v["runtime-datatype"]["lut"] for _, v in chosen),
            "lut_ratio": statistics.mean(ratios), "lut_ratio_std": statistics.stdev(ratios) if len(ratios) > 1 else None,
            "layers": layers}


PLOT_CAPTIONS = {
    "lut_vs_p": "Left: total LUTs (Yosys) of every MVAU/VVAU and thresholding layer against the guaranteed "
                "accumulator width P, one line per recipe; dashed lines: the qat network with INT32 "
                "accumulators (black) and with FINN's value-based widths (green); with runtime-writeable weights, "
                "dash-dotted squares: a2qflow's guaranteed P, dotted triangles: FINN's datatype-bound sizing "
                "(same weights, same accuracy). Right: the same per layer "
                "for one recipe and seed (markers and dashes tell coinciding layers apart).",
    "accuracy_vs_p": "Test accuracy against P per recipe (mean over seeds, bars: standard deviation where "
                     "there are two or more seeds); dashed: the INT32 qat network.",
    "pareto": "Accuracy against LUTs for every cell; dotted: the Pareto front (no other cell has fewer "
              "LUTs and at least the same accuracy).",
}

CSV_FIELDS = ("key", "model", "dataset", "board", "recipe", "acc_bits", "seed", "sizing", "status", "accuracy",
              "lut", "ff", "dsp", "tool", "error")


def write_csv(results: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results)
    write_text_atomic(path, buf.getvalue())


def _relative_logs(row: dict, out: Path) -> dict:
    """The row with its layers' Yosys log paths relative to the output folder, so that
    results.json can be published (and moved) without naming this machine's folders."""
    if not row.get("layers"):
        return row
    root = out.resolve()

    def rel(log: str) -> str:
        path = Path(log)
        return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else log
    return {**row, "layers": [{**layer, "log": rel(layer.get("log", ""))} for layer in row["layers"]]}


def write_outputs(results: list[dict], out: Path) -> dict:
    """results.json/csv, plots and summary.md from the cell rows (failed cells listed apart)."""
    from . import compare_plots

    results = [_relative_logs(r, out) for r in results]
    failed = [r for r in results if r.get("status") == "failed"]
    partial = [r for r in results if r.get("status") != "failed" and r.get("unsynthesized")]
    results = [r for r in results if r.get("status") != "failed" and not r.get("unsynthesized")]
    rows = aggregate(results)
    head = headline(rows)
    runtime = runtime_headline(results, head)
    if runtime:
        head = {**head, "runtime_weights": runtime}
    write_json(out / "results.json", {"cells": results, "failed": failed, "partial": partial, "summary": rows,
                                       "headline": head})
    write_csv(results, out / "results.csv")
    plots = compare_plots.plot_all(results, rows, out) if results else []
    write_summary(out / "summary.md", summary_markdown(rows, head, plots, results, failed, partial), "a2qflow compare-acc")
    return head


def summary_markdown(rows: list[dict], head: dict, plots: list[Path], results: list[dict],
                     failed: list[dict] = (), partial: list[dict] = ()) -> str:
    tool = next((r["tool"] for r in results if r.get("tool")), "yosys")
    lines = ["# LUT usage against accumulator width", "",
             f"LUTs: {tool} `synth_xilinx`, all MVAU/VVAU and thresholding layers; accuracy: test split, "
             "mean over seeds.", ""]
    if head.get("smallest_p"):
        lines += [f"**{head['int32_lut']:.0f} LUT at INT32 -> {head['lut']:.0f} LUT at P={head['smallest_p']} "
                  f"({head['recipe']}), {head['lut_ratio']:.2f}x fewer**, within 1 point of the 32-bit model's "
                  f"accuracy ({head['accuracy']:.2f} vs {head['int32_accuracy']:.2f}).", ""]
    elif head.get("int32_lut") is not None:
        lines += ["No accumulator width in this grid stays within 1 point of the 32-bit model.", ""]
    lines += runtime_markdown(head.get("runtime_weights"))
    lines += ["| recipe | P | sizing | seeds | accuracy | LUT | FF | DSP |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = f" ± {r['accuracy_std']:.2f}" if r["seeds"] >= 2 else ""   # no spread from one seed
        lines.append(f"| {r['recipe']} | {r['acc_bits'] or '-'} | {r['sizing']} | {r['seeds']} | "
                     f"{r['accuracy']:.2f}{spread} | {r['lut']:.0f} | {r['ff']:.0f} | {r['dsp']:.0f} |")
    if partial:
        lines += ["", f"**{len(partial)} cell(s) not comparable** (not in the table): some dot-product layers "
                  "were built as HLS, which has no RTL to synthesize without Vitis HLS, so their LUT total "
                  "would leave them out.", ""]
        lines += [f"- `{r['key']}` (accuracy {r['accuracy']:.2f}): " + "; ".join(r["unsynthesized"]) for r in partial]
    if failed:
        lines += ["", f"**{len(failed)} cell(s) failed** (not in the table):", ""]
        lines += [f"- `{r['key']}`: {r['error']}" for r in failed]
    for plot in (p for p in plots if p.suffix == ".png"):
        lines += ["", f"![{plot.stem}]({plot.name})", "", PLOT_CAPTIONS.get(plot.stem, "")]
    return "\n".join(lines) + "\n"


def runtime_markdown(rt: dict | None) -> list[str]:
    """The runtime-writeable-weights headline and its per-layer widths."""
    if not rt:
        return []
    spread = f" ± {rt['lut_ratio_std']:.2f}" if rt["lut_ratio_std"] is not None else ""
    lines = [f"**Runtime-writeable weights, {rt['recipe']} P={rt['acc_bits']} ({rt['accuracy']:.2f} accuracy, "
             f"seeds {', '.join(map(str, rt['seeds']))}): FINN's datatype-bound design {rt['datatype_lut']:.0f} LUT, "
             f"a2qflow's guaranteed-P design {rt['guaranteed_lut']:.0f} LUT, {rt['lut_ratio']:.2f}{spread}x.** "
             "Both hold the same trained weights; the guaranteed design stays exact for any weights within "
             "the trained bound, FINN's for any weights of the datatype.", "",
             "| node | layer | K | P | value-based | datatype | a2qflow builds | FINN builds |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {w['node']} | {w['layer'] or '-'} | {w['fan_in']} | {w['acc_bits'] or '-'} | {w['value_bits']} | "
              f"{w['datatype_bits']} | {w['acc']} | {w['finn_acc']} |" for w in rt["layers"]]
    return lines + [""]
