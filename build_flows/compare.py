"""`a2qflow compare-acc`: LUT usage against accumulator width, next to accuracy.

A comparison is a grid of cells. A cell trains (or reuses) one network for one recipe, P and
seed, exports it, builds it with FINN (estimate flow) and synthesizes its layers with Yosys.
Baseline cells build the `qat` network with INT32 accumulators and with FINN's value-based
widths. Each finished cell writes `cells/<key>/result.json`; a rerun skips finished cells,
so an interrupted comparison resumes. Float pre-training is shared by all cells of a seed.
Results: `results.csv`/`results.json`, plots (PNG + SVG) and `summary.md`.
"""
from __future__ import annotations

import csv
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BASELINES = ("int32", "value")


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
    sizing: str               # guaranteed | int32 | value

    @property
    def key(self) -> str:
        p = f"P{self.acc_bits}" if self.acc_bits else "noP"
        return f"{self.model}-{self.dataset}-{self.board}-{self.recipe}-{p}-s{self.seed}-{self.sizing}"


@dataclass
class GridSpec:
    model: str = "tfc"
    dataset: str = "digits"
    board: str = "Pynq-Z2"
    recipes: tuple[str, ...] = ("qat", "a2q", "a2q+")
    acc_bits: tuple[int, ...] = (10, 12, 14, 16, 20)
    seeds: tuple[int, ...] = (0,)
    input_bits: int = 4
    float_epochs: int = 10
    qat_epochs: int = 10
    lut_only: bool = False
    rtl_sim: bool = False     # Verilator-check each cell's layers (the build's oss step); off: LUTs are the point
    torch_threads: int = 1    # fixed: float sums in training depend on the thread count, and a cell
                              # must give the same numbers serially, on a Dask worker or elsewhere
    train_kwargs: dict = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        out = []
        for seed in self.seeds:
            for recipe in self.recipes:
                if recipe == "qat":
                    out += [Cell(self.model, self.dataset, self.board, "qat", None, seed, s) for s in BASELINES]
                else:
                    out += [Cell(self.model, self.dataset, self.board, recipe, p, seed, "guaranteed")
                            for p in self.acc_bits]
        return out


# besides the cell's key, what changes a cell's numbers (rtl_sim only checks): a cached cell or
# float checkpoint is reused only when these match, never silently across different settings
CELL_SETTINGS = ("input_bits", "float_epochs", "qat_epochs", "lut_only", "torch_threads", "train_kwargs")
FLOAT_SETTINGS = ("input_bits", "float_epochs", "torch_threads", "train_kwargs")


class StaleCacheError(ValueError):
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


def _train(cell: Cell, spec: GridSpec, root: Path) -> Path:
    import torch

    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig, train

    float_dir = root / "float" / f"{cell.model}-{cell.dataset}-s{cell.seed}"
    float_ckpt = float_dir / "float.pt"
    float_settings = _settings(spec, FLOAT_SETTINGS)
    if float_ckpt.is_file():
        settings_file = float_dir / "settings.json"
        _check_cached(json.loads(settings_file.read_text()) if settings_file.is_file() else None,
                      float_settings, float_dir)
    out = root / "cells" / cell.key / "train"
    recipe = Recipe(method=cell.recipe, acc_bits=cell.acc_bits or 32, input_bits=spec.input_bits)
    cfg = TrainConfig(model=cell.model, dataset=cell.dataset, recipe=recipe, seed=cell.seed,
                      float_epochs=spec.float_epochs, qat_epochs=spec.qat_epochs,
                      float_checkpoint=str(float_ckpt) if float_ckpt.is_file() else None, **spec.train_kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.torch_threads)
    try:
        train(cfg, out)
    finally:
        torch.set_num_threads(threads)
    if not float_ckpt.is_file() and (out / "float.pt").is_file():
        float_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(float_dir / "settings.json", float_settings)
        (out / "float.pt").replace(float_ckpt)
    return out / "checkpoint.pt"


def run_cell(cell: Cell, spec: GridSpec, root: str | Path) -> dict:
    """Train -> export -> build -> synthesize one cell; cached in cells/<key>/result.json."""
    from a2qflow.models.export import export_checkpoint

    from . import reference
    from .flow import BuildOptions, build

    root = Path(root)
    cell_dir = root / "cells" / cell.key
    done = cell_dir / "result.json"
    settings = _settings(spec, CELL_SETTINGS)
    if done.is_file():
        result = json.loads(done.read_text())
        _check_cached(result.get("settings"), settings, cell_dir)
        return result
    t0 = time.perf_counter()
    ckpt = _train(cell, spec, root)
    onnx, _, _ = export_checkpoint(ckpt, cell_dir / "model.onnx", samples=100)
    run = build(str(onnx), cell_dir / "build", reference.from_checkpoint(ckpt, 16),
                BuildOptions(board=cell.board, flow="oss", sizing=cell.sizing, model_name=cell.model,
                             lut_only=spec.lut_only, package=False, rtl_sim=spec.rtl_sim))
    synth = json.loads((cell_dir / "build" / "reports" / "synth.json").read_text())
    if synth["total"] is None:
        raise ValueError(f"{cell.key}: no layer of the built graph has FINN-generated RTL to synthesize; "
                         f"skipped: {synth['skipped']}")
    # FINN builds a dot product as HLS where its RTL MVU does not apply (e.g. on DSP48E1 parts when
    # a layer's weights reach the datatype's minimum); without Vitis HLS those layers have no RTL,
    # so this cell's LUT total would leave them out: kept, but marked and kept out of comparisons
    unsynthesized = _unsynthesized(synth)
    metrics = json.loads((ckpt.parent / "train.json").read_text())["metrics"]["quant"]
    sizing = json.loads((cell_dir / "build" / "reports" / "step_a2qflow_size_accumulators.json").read_text())
    result = {**asdict(cell), "key": cell.key, "accuracy": metrics.get("accuracy", metrics.get("psnr_db")),
              "metric": "accuracy" if "accuracy" in metrics else "psnr_db",
              "acc_widths": {s["node"]: s["acc"] for s in sizing},
              "layers": synth["layers"], "lut": synth["total"]["lut"], "ff": synth["total"]["ff"],
              "dsp": synth["total"]["dsp"], "tool": synth["tool"],
              "build_status": run["status"], "unsynthesized": unsynthesized, "settings": settings,
              "seconds": time.perf_counter() - t0}
    _write_atomic(done, result)
    (cell_dir / "error.json").unlink(missing_ok=True)
    return result


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
        _write_atomic(cell_dir / "error.json", row)
        return row


def _write_atomic(path: Path, data: dict) -> None:
    """Write-then-rename: an interrupted write never leaves a file that looks finished."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


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


CSV_FIELDS = ("key", "model", "dataset", "board", "recipe", "acc_bits", "seed", "sizing", "status", "accuracy",
              "lut", "ff", "dsp", "tool", "error")


def write_csv(results: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)


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
    from .report import write_summary

    results = [_relative_logs(r, out) for r in results]
    failed = [r for r in results if r.get("status") == "failed"]
    partial = [r for r in results if r.get("status") != "failed" and r.get("unsynthesized")]
    results = [r for r in results if r.get("status") != "failed" and not r.get("unsynthesized")]
    rows = aggregate(results)
    head = headline(rows)
    (out / "results.json").write_text(json.dumps({"cells": results, "failed": failed, "partial": partial, "summary": rows,
                                                  "headline": head}, indent=1))
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
    elif head:
        lines += ["No accumulator width in this grid stays within 1 point of the 32-bit model.", ""]
    lines += ["| recipe | P | sizing | seeds | accuracy | LUT | FF | DSP |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['acc_bits'] or '-'} | {r['sizing']} | {r['seeds']} | "
                     f"{r['accuracy']:.2f} ± {r['accuracy_std']:.2f} | {r['lut']:.0f} | {r['ff']:.0f} | {r['dsp']:.0f} |")
    if partial:
        lines += ["", f"**{len(partial)} cell(s) not comparable** (not in the table): some dot-product layers "
                  "were built as HLS, which has no RTL to synthesize without Vitis HLS, so their LUT total "
                  "would leave them out.", ""]
        lines += [f"- `{r['key']}` (accuracy {r['accuracy']:.2f}): " + "; ".join(r["unsynthesized"]) for r in partial]
    if failed:
        lines += ["", f"**{len(failed)} cell(s) failed** (not in the table):", ""]
        lines += [f"- `{r['key']}`: {r['error']}" for r in failed]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots if p.suffix == ".png"]
    return "\n".join(lines) + "\n"
