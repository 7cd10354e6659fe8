"""The run folder: every path and report file name of a build in one place, and the record
of what a2qflow wrote there.

    run.json                 status, inputs, versions, steps with timings, skipped stages, and
                             `files`: every file this program wrote here (the manifest)
    train/ export/           training and export, when the build trained the model itself
    model.qonnx              the input graph (certified before FINN starts)
    reference/               test inputs and the trained model's outputs for them (parity)
    finn/                    FINN's output_dir: intermediate_models/ (every step), report/, log
    finn_tmp/                FINN's build folder (code generation)
    rtl/ synth/              RTL gathered per layer, Yosys logs (oss flow)
    reports/                 certificate, sizing, parity, overflow, folding, synthesis, RTL
                             simulation, layers.{json,csv}, summary.{md,html}
    package/                 the deployment package

Writers and readers take every path from `RunFolder`. A rebuild deletes only files the
manifest lists, never anything else a user put into the folder, and a folder that holds
files but no a2qflow run is refused as an output folder.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from a2qflow.errors import A2qflowError

RUN_FORMAT = "a2qflow-run/1"
RUN_JSON = "run.json"

# reports/ file names (each written by one step and read by the report)
CERTIFICATE = "certificate.json"
PARITY = "parity.json"
SIZING_INITIAL = "step_a2qflow_size_accumulators_initial.json"
SIZING = "step_a2qflow_size_accumulators.json"
OVERFLOW = "overflow.json"
LAYER_ACCUMULATORS = "layer_accumulators.npz"
FOLDING = "folding.json"
BOUNDARY = "boundary.json"
WEIGHTS_NARROW = "weights_narrow.json"
ACCELERATOR_SIM = "accelerator_sim.json"
SYNTH = "synth.json"
RTL_SIM = "rtl_sim.json"
LAYERS_JSON = "layers.json"
LAYERS_CSV = "layers.csv"
SUMMARY = "summary.md"
STEP_ERROR = "step_error.json"
CHECK_SECONDS = "check_seconds.json"
BENCH_SIM = "bench-sim"

# FINN's files in finn/ (its output_dir)
FINN_ESTIMATE_RESOURCES = "estimate_layer_resources.json"
FINN_ESTIMATE_CYCLES = "estimate_layer_cycles.json"
FINN_ESTIMATE_PERFORMANCE = "estimate_network_performance.json"
FINN_POST_SYNTH = "post_synth_resources.json"
FINN_TIME_PER_STEP = "time_per_step.json"
FINN_LOG = "build_dataflow.log"


class RunFolderError(A2qflowError, ValueError):
    """An output folder that a2qflow must not write into (someone else's files, a file)."""


def write_text_atomic(path: Path, text: str) -> None:
    """Write-then-rename: an interrupted write never leaves a half file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, default=str))


def read_json(path: Path, default=None):
    """A JSON file this program wrote, or `default` when it is absent."""
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise RunFolderError(f"{path} is not valid JSON ({err}); was it edited?") from err


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file under root."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


@dataclass
class RunFolder:
    """One build's folder: its paths, its run.json and the manifest of files it wrote."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._before: dict[str, tuple[int, int]] = {}   # files present before this run began
        self.run: dict = {}                              # this run's run.json, once begun

    # -- paths -----------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def model(self) -> Path:
        return self.root / "model.qonnx"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def reference(self) -> Path:
        return self.root / "reference"

    @property
    def finn(self) -> Path:
        return self.root / "finn"

    @property
    def finn_tmp(self) -> Path:
        return self.root / "finn_tmp"

    @property
    def intermediate_models(self) -> Path:
        return self.finn / "intermediate_models"

    @property
    def finn_report_dir(self) -> Path:
        return self.finn / "report"

    @property
    def finn_log(self) -> Path:
        return self.finn / FINN_LOG

    @property
    def rtl(self) -> Path:
        return self.root / "rtl"

    @property
    def synth(self) -> Path:
        return self.root / "synth"

    @property
    def accelerator(self) -> Path:
        """The whole stitched design (rtl, compiled simulator), build_flows.stitch."""
        return self.root / "accelerator"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def package(self) -> Path:
        return self.root / "package"

    def report(self, name: str) -> Path:
        return self.reports / name

    def finn_report(self, name: str) -> Path:
        return self.finn_report_dir / name

    def intermediate(self, step: str) -> Path:
        return self.intermediate_models / f"{step}.onnx"

    def final_model(self):
        """The last intermediate model of the build's step list (run.json `steps`)."""
        from qonnx.core.modelwrapper import ModelWrapper

        for step in reversed((self.read_run() or {}).get("steps", [])):
            if self.intermediate(step).is_file():
                return ModelWrapper(str(self.intermediate(step)))
        raise RunFolderError(f"{self.root}: no intermediate model of this build")

    # -- report files ----------------------------------------------------------------------
    def write_report(self, name: str, data) -> Path:
        path = self.report(name)
        write_json(path, data)
        return path

    def _this_run(self, path: Path) -> bool:
        """Whether `path` was written during this run: a report older than the run's start
        (an interrupted run's leftover, or a copy) is never read as this run's."""
        started = self.run.get("started_at") or (self.read_run() or {}).get("started_at")
        return path.is_file() and (started is None or path.stat().st_mtime >= started - 1.0)

    def read_report(self, name: str, default=None):
        path = self.report(name)
        return read_json(path, default) if self._this_run(path) else default

    def read_finn_report(self, name: str, default=None):
        path = self.finn_report(name)
        return read_json(path, default) if self._this_run(path) else default

    # -- run.json --------------------------------------------------------------------------
    def read_run(self) -> dict | None:
        run = read_json(self.run_json)
        return run if isinstance(run, dict) and run.get("format") == RUN_FORMAT else None

    def write_run(self, run: dict) -> None:
        write_json(self.run_json, {"format": RUN_FORMAT, **run})

    def is_run(self) -> bool:
        return self.read_run() is not None

    def claim(self) -> None:
        """Refuse an output folder a2qflow must not write into: a file, or a folder holding
        files when it holds no a2qflow run."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"output {self.root} is a file, not a folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.is_run():
            raise RunFolderError(f"output folder {self.root} holds files but no a2qflow run ({RUN_JSON}); "
                                 "choose an empty or new folder")

    # -- the manifest ----------------------------------------------------------------------
    def recorded_files(self) -> list[str]:
        return list((self.read_run() or {}).get("files", []))

    def remove_recorded(self, keep: tuple[Path, ...] = ()) -> list[str]:
        """Delete the files an earlier run recorded as its own (not `keep`, e.g. the input
        graph when it lies in this folder), then the folders that became empty. Files the
        manifest does not list stay, whoever put them there."""
        keep_resolved = {Path(k).resolve() for k in keep}
        removed = []
        for rel in self.recorded_files():
            path = self.root / rel
            if not path.resolve().is_relative_to(self.root.resolve()):   # a manifest never leaves the folder
                continue
            if path.is_file() and path.resolve() not in keep_resolved:
                path.unlink()
                removed.append(rel)
        for folder in sorted({(self.root / rel).parent for rel in removed}, key=lambda p: -len(p.parts)):
            while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        return removed

    def files_written(self) -> list[str]:
        """Files written since `begin` (new ones, and old ones this run rewrote), plus those
        this run already recorded."""
        now = _snapshot(self.root)
        mine = {rel for rel, stat in now.items() if self._before.get(rel) != stat}
        mine |= {rel for rel in self.run.get("files", []) if rel in now}
        return sorted(mine - {RUN_JSON})

    # -- one run's life --------------------------------------------------------------------
    def begin(self, fresh: bool = True, keep: tuple[Path, ...] = (), **fields) -> dict:
        """Claim the folder and start a run: a fresh run first deletes what the earlier run
        here recorded (not `keep`); a resumed one keeps it. run.json says 'running' before
        anything else is written, so an earlier 'complete' never stands for this run."""
        self.claim()
        earlier = self.read_run() or {}
        if fresh:
            self.remove_recorded(keep)
            earlier = {}
        self.root.mkdir(parents=True, exist_ok=True)
        self._before = _snapshot(self.root)
        # a resumed run keeps the files and the start of the run it continues
        self.run = {k: earlier[k] for k in ("files", "started", "started_at") if k in earlier}
        if fresh or "started_at" not in self.run:
            self.run.update(started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), started_at=time.time())
        return self.update(status="running", **fields)

    def update(self, **fields) -> dict:
        """run.json with `fields` and the current manifest."""
        self.run = {**self.run, **fields, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.run["files"] = self.files_written()
        self.write_run(self.run)
        return self.run
