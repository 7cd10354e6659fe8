"""The on-board benchmark: accuracy and agreement with the host model on the shipped test
set, throughput over batch sizes (finn-plus-driver's throughput_test fields), batch-1
latency percentiles, power where the board has sensors.

The report is JSON first, Markdown generated from it. While it runs it is
`bench.running.json`/`.md`, rewritten after every section through a temporary file and a
rename; it ends as `bench.json`/`.md` when complete, as `bench.failed.*` or
`bench.interrupted.*` otherwise, so a refused or interrupted run never replaces an earlier
complete report and never leaves a file claiming completeness.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import PACKAGE_FORMAT, power
from .driver import Accelerator, open_accelerator
from .manifest import Package, detect_board, load_package, package_board

REPORT_FORMAT = "a2qflow-bench/1"
SIM_LABEL = ("SIMULATED BOARD: host-side FINN python execution of the HW graph through the board driver; "
             "times and rates are host wall clock, NOT board measurements (see finn_estimate for the expected "
             "board figures)")
SIM_RTL_LABEL = ("SIMULATED BOARD, cycle-accurate RTL: the whole accelerator stitched from FINN's RTL and simulated in "
                 "Verilator behind the board driver; times and rates are simulated cycles at the board clock "
                 "(the DMA engines and host-side packing are not simulated), NOT board measurements")


@dataclass
class BenchConfig:
    batch_sizes: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    repeats: int = 5               # throughput runs per batch size; the median run is reported
    latency_runs: int = 1000
    warmup: int = 100              # latency runs excluded before measuring
    accuracy_batch: int = 100
    accuracy_samples: int | None = None   # None: the whole shipped test set
    power_seconds: float = 3.0

    @classmethod
    def for_sim(cls) -> "BenchConfig":
        """Python execution takes milliseconds per frame: a lighter default sweep."""
        return cls(batch_sizes=(1, 4, 16, 64, 256), repeats=3, latency_runs=100, warmup=10, accuracy_batch=100)


class ReportWriter:
    """The report files of one run: bench.running.* while it runs, then bench.* (complete)
    or bench.failed.* / bench.interrupted.*; each file replaced atomically."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def paths(self, status: str) -> tuple[Path, Path]:
        stem = "bench" if status == "complete" else f"bench.{status}"
        return self.out_dir / f"{stem}.json", self.out_dir / f"{stem}.md"

    @property
    def json_path(self) -> Path:
        return self.paths("complete")[0]

    def write(self, report: dict) -> None:
        report["updated"] = _now()
        json_path, md_path = self.paths(report["status"])
        _atomic_write(json_path, json.dumps(report, indent=1, default=_jsonable))
        _atomic_write(md_path, markdown(report))
        if report["status"] != "running":
            for path in self.paths("running"):
                path.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupt(signum, frame):
    raise _Interrupted(f"signal {signum}")


def run_benchmark(root: str | Path, *, sim: bool, board: str | None = None, driver: str = "auto",
                  cfg: BenchConfig | None = None, out_dir: str | Path | None = None,
                  log: Callable[[str], None] = print, sim_compute: Callable | None = None) -> dict:
    """Benchmark the package at `root` and write the reports; returns the report. Raises
    DeployError for a package that cannot run here (the report then says "failed").
    `sim_compute`: see driver.open_accelerator."""
    root = Path(root)
    cfg = cfg or (BenchConfig.for_sim() if sim else BenchConfig())
    if board is None:  # the simulated board is the package's own unless told otherwise
        board = package_board(root) if sim else detect_board()
    writer = ReportWriter(Path(out_dir) if out_dir else root / "reports")
    report = {"format": REPORT_FORMAT, "status": "running", "simulated": sim, "label": SIM_LABEL if sim else
              "measured on the board", "package": str(root.resolve()), "started": _now(), "host": socket.gethostname(),
              "python": platform.python_version(), "numpy": np.__version__, "config": asdict(cfg)}
    old = {s: signal.signal(s, _raise_interrupt) for s in _signals()}
    try:
        pkg = load_package(root, board, sim=sim)
        report.update(_package_info(pkg, board))
        acc = open_accelerator(pkg, sim=sim, driver=driver, sim_compute=sim_compute)
        report["driver"], report["notes"] = acc.backend, acc.notes
        if acc.cycle_accurate:
            report["label"], report["cycle_accurate"] = SIM_RTL_LABEL, True
        writer.write(report)
        for name, section in (("accuracy", _accuracy), ("throughput", _throughput), ("latency_batch1", _latency),
                              ("power", _power)):
            log(f"bench: {name}{' (simulated)' if sim else ''} ...")
            report[name] = section(acc, pkg, cfg)
            writer.write(report)
        report["status"] = "complete"
    except KeyboardInterrupt as err:
        report["status"], report["error"] = "interrupted", f"interrupted ({err or 'Ctrl-C'}); sections done: " \
            f"{[k for k in ('accuracy', 'throughput', 'latency_batch1', 'power') if k in report]}"
        writer.write(report)
        raise
    except Exception as err:
        report["status"], report["error"] = "failed", f"{type(err).__name__}: {err}"
        writer.write(report)
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    report["finished"] = _now()
    writer.write(report)
    return report


def _signals() -> list:
    # ssh hang-up and kill end the run like Ctrl-C: the report then says "interrupted"
    if threading.current_thread() is not threading.main_thread():
        return []   # only the main thread may set handlers
    return [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]


def _package_info(pkg: Package, board: str | None) -> dict:
    m = pkg.manifest
    estimate = dict(m.get("finn_estimate") or {})
    if estimate:
        estimate["clk_mhz"] = m.get("clk_mhz")
        estimate["source"] = "FINN estimate_network_performance.json (analytic, at the board clock)"
    return {"board": board, "package_board": m["board"], "part": m.get("part"), "flow": (m.get("build") or {}).get("flow"),
            "bitfile": m.get("bitfile"), "package_format": PACKAGE_FORMAT, "run": m.get("run"),
            "test_set_info": {k: v for k, v in m["test_set"].items() if k not in ("x", "y", "host_output")},
            "finn_estimate": estimate or None}


def _accuracy(acc: Accelerator, pkg: Package, cfg: BenchConfig) -> dict:
    n = cfg.accuracy_samples
    x = np.load(pkg.data_path("x"), allow_pickle=False)[:n]
    host = np.load(pkg.data_path("host_output"), allow_pickle=False)[:n]
    y = np.load(pkg.data_path("y"), allow_pickle=False)[:n] if pkg.data_path("y") else None
    t0 = time.perf_counter()
    out = acc.predict(x, cfg.accuracy_batch).reshape(host.shape)
    wall = time.perf_counter() - t0
    res = {"samples": int(len(x)), "batch_size": cfg.accuracy_batch, "wall_s": wall, "simulated": acc.simulated,
           "max_abs_diff_vs_host": float(np.abs(out.astype(np.float64) - host).max()) if len(x) else 0.0}
    if pkg.test_set.get("task", "classification") == "classification":
        pred, host_pred = out.reshape(len(x), -1).argmax(1), host.reshape(len(x), -1).argmax(1)
        differ = np.flatnonzero(pred != host_pred)
        res.update(host_mismatches=int(len(differ)), mismatch_indices=differ[:20].tolist())
        if y is not None:
            res.update(accuracy=float((pred == y).mean()), correct=int((pred == y).sum()),
                       host_accuracy=float((host_pred == y).mean()))
        else:
            res["accuracy"] = None
            res["accuracy_note"] = "the package ships no labels"
    else:
        tol = 1e-4 * max(1.0, float(np.abs(host).max()))
        differ = np.flatnonzero(np.abs(out - host).reshape(len(x), -1).max(1) > tol)
        res.update(host_mismatches=int(len(differ)), mismatch_indices=differ[:20].tolist(), tolerance=tol)
        if y is not None:
            mse = float(np.mean((np.clip(out, 0, 1).reshape(y.shape) - y) ** 2))
            res["psnr_db"] = float(10 * np.log10(1.0 / max(mse, 1e-12)))
    return res


def _throughput(acc: Accelerator, pkg: Package, cfg: BenchConfig) -> list:
    rows = []
    for batch in cfg.batch_sizes:
        acc.set_batch(int(batch))
        acc.driver.execute_on_buffers()   # warm-up: first-touch of fresh buffers
        runs = [acc.driver.throughput_test() for _ in range(cfg.repeats)]
        runs.sort(key=lambda r: r["runtime[ms]"])
        row = dict(runs[len(runs) // 2])
        row["throughput_min[images/s]"] = runs[-1]["throughput[images/s]"]
        row["throughput_max[images/s]"] = runs[0]["throughput[images/s]"]
        row["repeats"], row["simulated"] = cfg.repeats, acc.simulated
        rows.append(row)
    return rows


def _percentiles(seconds: list) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
            "max_ms": float(ms.max())}


def _latency(acc: Accelerator, pkg: Package, cfg: BenchConfig) -> dict:
    """Batch-1 latency: end to end (check, pack, DMA, unpack: what an application sees) and
    on the DMA buffers alone; warm-up runs excluded."""
    x = np.load(pkg.data_path("x"), allow_pickle=False)
    acc.set_batch(1)
    clock = getattr(acc.driver, "clock", time.perf_counter)   # a cycle-accurate simulated board: simulated time
    end_to_end, on_buffers = [], []
    for i in range(cfg.warmup + cfg.latency_runs):
        sample = x[i % len(x):i % len(x) + 1]
        t0 = clock()
        acc.run(sample)
        t1 = clock()
        acc.driver.execute_on_buffers()
        t2 = clock()
        if i >= cfg.warmup:
            end_to_end.append(t1 - t0)
            on_buffers.append(t2 - t1)
    return {"runs": cfg.latency_runs, "warmup_excluded": cfg.warmup, "end_to_end": _percentiles(end_to_end),
            "accelerator_on_buffers": _percentiles(on_buffers), "simulated": acc.simulated}


def _power(acc: Accelerator, pkg: Package, cfg: BenchConfig) -> dict:
    if acc.simulated:
        return power.unavailable("simulated board: no power sensors")
    if not pkg.manifest.get("power_rails"):
        return power.unavailable(f"{pkg.board} exposes no power rails to PYNQ")
    acc.set_batch(int(max(cfg.batch_sizes)))
    return power.measure(acc.driver.execute_on_buffers, cfg.power_seconds)


# -- Markdown view --------------------------------------------------------------------------

def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def markdown(r: dict) -> str:
    sim = " (simulated)" if r.get("simulated") else ""
    lines = [f"# a2qflow benchmark: {r.get('package_board', '?')}{' — SIMULATED BOARD' if r.get('simulated') else ''}",
             ""]
    if r["status"] != "complete":
        lines += [f"**INCOMPLETE — status: {r['status']}.** {r.get('error', '')} Numbers below are partial.", ""]
    if r.get("simulated"):
        lines += [f"> {r.get('label') or SIM_LABEL}", ""]
    lines += [f"- status: **{r['status']}**; driver: {r.get('driver', '-')}; flow: {r.get('flow', '-')}; "
              f"bitfile: {r.get('bitfile') or 'none (sim-only package)'}",
              f"- package: {r.get('package')}; host: {r.get('host')}; started {r.get('started')}", ""]
    a = r.get("accuracy")
    if a:
        lines += [f"## Accuracy on the shipped test set{sim}", "",
                  f"- samples: {a['samples']}; accuracy: {_pct(a.get('accuracy'))} (host model: "
                  f"{_pct(a.get('host_accuracy'))})",
                  f"- predictions differing from the host model: **{a['host_mismatches']}** (expected 0); "
                  f"max |output - host| = {a['max_abs_diff_vs_host']:.2e}", ""]
    if r.get("throughput"):
        cols = ["batch_size", "runtime[ms]", "throughput[images/s]", "DRAM_in_bandwidth[MB/s]",
                "DRAM_out_bandwidth[MB/s]", "fclk[mhz]", "pack_input[ms]", "unpack_output[ms]"]
        lines += [f"## Throughput{sim}", "", "| " + " | ".join(f"{c}{sim}" if c != "batch_size" else c for c in cols)
                  + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |" for row in r["throughput"]]
        lines.append("")
    lat = r.get("latency_batch1")
    if lat:
        lines += [f"## Latency, batch 1, {lat['runs']} runs after {lat['warmup_excluded']} warm-up{sim}", "",
                  "| path | p50 ms | p90 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
        for key in ("end_to_end", "accelerator_on_buffers"):
            p = lat[key]
            lines.append(f"| {key}{sim} | {_fmt(p['p50_ms'])} | {_fmt(p['p90_ms'])} | {_fmt(p['p99_ms'])} | "
                         f"{_fmt(p['mean_ms'])} |")
        lines.append("")
    pw = r.get("power")
    if pw:
        lines += ["## Power", "", f"- idle {pw['idle_W']:.2f} W, busy {pw['busy_W']:.2f} W ({pw['total_rail']})"
                  if pw.get("available") else f"- unavailable: {pw['reason']}", ""]
    est = r.get("finn_estimate")
    if est:
        lines += ["## FINN's estimate for the board (for comparison)", "",
                  f"- {_fmt(est.get('estimated_throughput_fps'))} images/s, latency "
                  f"{_fmt((est.get('estimated_latency_ns') or 0) / 1000)} µs at {_fmt(est.get('clk_mhz'))} MHz "
                  f"(critical path {est.get('critical_path_cycles')} cycles, slowest node {est.get('max_cycles_node_name')} "
                  f"{est.get('max_cycles')} cycles/frame)", ""]
    for note in r.get("notes") or []:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def terminal(r: dict) -> str:
    """The report for a terminal (at most 100 columns); bench.md holds every field."""
    sim = " (simulated)" if r.get("simulated") else ""
    lines = [f"benchmark {r.get('package_board', '?')}{' - SIMULATED BOARD' if r.get('simulated') else ''}: "
             f"status {r['status']}, driver {r.get('driver', '-')}"]
    if r["status"] != "complete":
        lines.append(f"INCOMPLETE: {r.get('error', '')}"[:100])
    a = r.get("accuracy")
    if a:
        lines.append(f"accuracy {_pct(a.get('accuracy'))} on {a['samples']} samples (host model "
                     f"{_pct(a.get('host_accuracy'))}), {a['host_mismatches']} predictions differ from the host model")
    if r.get("throughput"):
        lines.append(f"{'batch':>6} {'images/s' + sim:>22} {'runtime ms':>12} {'pack ms':>9} {'unpack ms':>10}")
        for row in r["throughput"]:
            lines.append(f"{row['batch_size']:>6} {_fmt(row['throughput[images/s]']):>22} "
                         f"{_fmt(row['runtime[ms]']):>12} {_fmt(row.get('pack_input[ms]')):>9} "
                         f"{_fmt(row.get('unpack_output[ms]')):>10}")
    lat = r.get("latency_batch1")
    if lat:
        p = lat["end_to_end"]
        lines.append(f"batch-1 latency{sim}: p50 {_fmt(p['p50_ms'])} ms, p90 {_fmt(p['p90_ms'])} ms, "
                     f"p99 {_fmt(p['p99_ms'])} ms ({lat['runs']} runs)")
    est = r.get("finn_estimate")
    if est:
        lines.append(f"FINN's estimate for the board: {_fmt(est.get('estimated_throughput_fps'))} images/s, "
                     f"{_fmt((est.get('estimated_latency_ns') or 0) / 1000)} µs at {_fmt(est.get('clk_mhz'))} MHz")
    pw = r.get("power")
    if pw:
        lines.append(f"power: idle {pw['idle_W']:.2f} W, busy {pw['busy_W']:.2f} W" if pw.get("available")
                     else f"power: unavailable ({pw['reason']})")
    return "\n".join(lines)


def summary_line(r: dict) -> str:
    """One line of headline figures."""
    a, t = r.get("accuracy") or {}, r.get("throughput") or []
    best = max((row["throughput[images/s]"] for row in t), default=None)
    p50 = (r.get("latency_batch1") or {}).get("end_to_end", {}).get("p50_ms")
    tag = "SIMULATED " if r.get("simulated") else ""
    return (f"{tag}{r.get('package_board')}: status {r['status']}, accuracy {_pct(a.get('accuracy'))}, "
            f"{a.get('host_mismatches', '-')} mismatches vs host, best {_fmt(best)} images/s, "
            f"batch-1 p50 {_fmt(p50)} ms")
