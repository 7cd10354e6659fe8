"""`a2qflow build`: FINN's builder with a2qflow's steps, one run folder per build.

Run folder:
    run.json                 inputs, versions, flow, steps done with timings, skipped stages
    model.qonnx              the input graph (certified before FINN starts)
    reference/               test inputs and the trained model's outputs for them
    finn/                    FINN's output_dir: intermediate_models/ (every step), report/
    reports/                 certificate, sizing, parity, overflow, layers.{json,csv}, summary.md

A build resumes with `from_step` (FINN's start_step: it reloads that step's predecessor
from finn/intermediate_models). `run.json` says `"status": "complete"` only when every
requested stage ran; a failed build leaves `"status": "failed"` and the error.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.environment import versions
from a2qflow.hw_configs import Board, folding_config, get_board

from . import certificate, finn_env, report
from .model_steps import streamline_step_for
from .sizing import SIZING_MODES, attach_weight_keys
from .steps import (BuildContext, apply_folding, check_overflow, oss_synthesis, prefer_rtl_dot_products,
                    rtl_simulation, runtime_writeable_weights, size_accumulators, with_parity)

if TYPE_CHECKING:  # FINN is imported once its environment is prepared (finn_env)
    from finn.builder.build_dataflow_config import DataflowBuildConfig

FLOWS = ("auto", "estimate", "oss", "bitstream")
DEFAULT_TARGET_FPS = 100_000
PYTHON_EXEC_STEPS = ("step_qonnx_to_finn", "step_tidy_up", "step_streamline", "step_convert_to_hw")
BITSTREAM_STEPS = ("step_assign_ddr_weight_offsets", "step_generate_hardware", "step_create_stitched_ip",
                   "step_measure_rtlsim_performance", "step_out_of_context_synthesis", "step_prepare_synthesis",
                   "step_synthesize_bitfile", "step_make_driver", "step_deployment_package")


class BuildError(RuntimeError):
    """A build stage failed; the message names the stage and the cause."""


@dataclass
class BuildOptions:
    board: str = "Pynq-Z2"
    flow: str = "auto"
    sizing: str = "guaranteed"           # or "value": FINN's value-based width, certified
    target_fps: int | None = None        # used when no folding config ships for model+board
    folding: str | None = None           # a FINN folding JSON; default: hw_configs/folding/<model>/<board>.json
    model_name: str | None = None
    from_step: str | None = None
    overflow_samples: int = 64
    runtime_weights: bool = False        # runtime-writeable weights (FINN then sizes from datatypes)
    lut_only: bool = False               # oss flow: synthesize without DSP inference
    package: bool = True                 # write <run>/package (deployment package, build_flows.package)
    rtl_sim: bool = True                 # oss/bitstream flows: Verilator-check every synthesized layer


def resolve_flow(flow: str, package: bool = True) -> tuple[str, list[str]]:
    """The flow to run and the stages skipped, with why."""
    if flow not in FLOWS:
        raise ValueError(f"unknown flow {flow!r}; valid: {', '.join(FLOWS)}")
    tools = finn_env.xilinx_tools_available()
    if flow == "bitstream" and not tools:
        raise BuildError("--flow bitstream needs Vivado and Vitis HLS (XILINX_VIVADO set, vivado and vitis_hls on "
                         "PATH); use --flow estimate or auto")
    if flow == "auto":
        flow = "bitstream" if tools else "oss"
    if flow == "bitstream":
        return flow, []
    if tools:
        why = f"not requested (--flow {flow})"
    else:
        why = (f"needs Vivado/Vitis HLS (XILINX_VIVADO {'unset' if not finn_env.vivado_available() else 'set'}, "
               f"vitis_hls {'missing' if not finn_env.vitis_hls_available() else 'found'})")
    skipped = [f"{s}: {why}" for s in BITSTREAM_STEPS]
    if package:  # FINN's deployment folder needs the bitfile; a2qflow's package/ does not
        skipped[-1] += "; package/ is written without a bitfile, for the simulated board"
    return flow, skipped


def step_list(ctx: BuildContext, flow: str, streamline: str | Callable = "step_streamline",
              folding_user_given: bool = False, target_fps: int | None = None, board: Board | None = None,
              lut_only: bool = False, rtl_sim: bool = True) -> list:
    """FINN's default step sequence with a2qflow's steps inserted (same names as FINN's);
    `streamline` replaces FINN's streamline step for graphs that need more (model_steps)."""
    front = [streamline if s == "step_streamline" else s for s in PYTHON_EXEC_STEPS]
    steps = [with_parity(ctx, s) for s in front]
    steps += ["step_minimize_bit_width_initial",
              size_accumulators(ctx, "step_a2qflow_size_accumulators_initial", capture_inputs=True),
              "step_create_dataflow_partition"]
    if flow == "oss":
        steps.append(prefer_rtl_dot_products(ctx))
    steps += ["step_specialize_layers", "step_target_fps_parallelization",
              apply_folding(ctx, folding_user_given, target_fps or DEFAULT_TARGET_FPS)]
    if ctx.runtime_weights:
        steps.append(runtime_writeable_weights(ctx))
    steps += ["step_minimize_bit_width",
              size_accumulators(ctx, "step_a2qflow_size_accumulators", capture_inputs=False),
              check_overflow(ctx), "step_transpose_decomposition", "step_generate_estimate_reports"]
    if flow == "bitstream":
        steps += list(BITSTREAM_STEPS)
    if flow in ("oss", "bitstream"):  # with Vivado too: Yosys and Vivado numbers side by side
        steps.append(oss_synthesis(ctx, (board or get_board("Pynq-Z2")).family, lut_only))
        if rtl_sim:
            steps.append(rtl_simulation(ctx))
    return steps


def step_names(steps: list) -> list[str]:
    return [s if isinstance(s, str) else s.__name__ for s in steps]


def dataflow_config(board: Board, out: Path, flow: str, steps: list, opts: BuildOptions) -> DataflowBuildConfig:
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType, ShellFlowType

    outputs = [DataflowOutputType.ESTIMATE_REPORTS]
    if flow == "bitstream":
        outputs += [DataflowOutputType.STITCHED_IP, DataflowOutputType.BITFILE,
                    DataflowOutputType.PYNQ_DRIVER, DataflowOutputType.DEPLOYMENT_PACKAGE]
    folding = opts.folding or (folding_config(opts.model_name, board.name) if opts.model_name else None)
    return DataflowBuildConfig(
        output_dir=str(out / "finn"), synth_clk_period_ns=board.clk_ns, board=board.name, fpga_part=board.part,
        shell_flow_type=ShellFlowType(board.shell_flow), generate_outputs=outputs, steps=steps,
        folding_config_file=str(folding) if folding else None,
        target_fps=None if folding else (opts.target_fps or DEFAULT_TARGET_FPS),
        standalone_thresholds=True, save_intermediate_models=True, start_step=opts.from_step)


def load_graph(path: str | Path) -> ModelWrapper:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        return ModelWrapper(str(path))
    except Exception as err:  # onnx raises DecodeError and others
        raise ValueError(f"{path} is not a readable ONNX model: {err}") from err


def _write_run(out: Path, run: dict) -> None:
    (out / "run.json").write_text(json.dumps(run, indent=1, default=str))


def build(onnx_path: str | Path, out: str | Path, reference: tuple[np.ndarray, np.ndarray, bool],
          opts: BuildOptions) -> dict:
    """Certify the graph, run FINN with a2qflow's steps, write reports; returns run.json."""
    out = Path(out)
    board = get_board(opts.board)
    if opts.sizing not in SIZING_MODES:
        raise ValueError(f"sizing {opts.sizing!r}; valid: {', '.join(SIZING_MODES)}")
    if opts.sizing == "value" and opts.runtime_weights:
        raise ValueError("sizing 'value' sizes from the weights in the graph, which runtime-writeable weights "
                         "replace; use sizing 'guaranteed'")
    flow, skipped = resolve_flow(opts.flow, opts.package)
    graph = load_graph(onnx_path)
    recorded_model = graph.get_metadata_prop("a2qflow.model")
    if recorded_model:  # the graph knows its network: its folding config, not --model's
        opts.model_name = json.loads(recorded_model)
    out.mkdir(parents=True, exist_ok=True)
    earlier_build = (out / "run.json").is_file()   # only then are its subfolders ours to clear
    # before anything else is written: a folder holding an earlier build must not say complete
    run = {"status": "running", "input": str(onnx_path), "board": board.name, "flow": flow}
    _write_run(out, run)
    try:
        if opts.from_step is None and earlier_build:
            _clear_previous_outputs(out, Path(onnx_path))
        records = _certify(graph, out)
        if opts.from_step is None or not (out / "model.qonnx").exists():
            _copy_input(Path(onnx_path), out / "model.qonnx")
        x, expected, classification = reference
        (out / "reference").mkdir(exist_ok=True)
        np.save(out / "reference" / "input.npy", x)
        np.save(out / "reference" / "expected_output.npy", expected)
    except Exception as err:
        _write_run(out, {**run, "status": "failed", "error": repr(err)})
        raise

    finn_env.prepare_finn(out / "finn_tmp")
    from finn.builder.build_dataflow import build_dataflow_cfg

    ctx = BuildContext(out, records, x, expected, classification, opts.sizing, opts.overflow_samples,
                       opts.runtime_weights)
    steps = step_list(ctx, flow, streamline_step_for(opts.model_name, graph), opts.folding is not None,
                      opts.target_fps, board, opts.lut_only, opts.rtl_sim)
    if opts.from_step and opts.from_step not in step_names(steps):
        err = ValueError(f"--from-step {opts.from_step!r} is not a step of this flow; "
                         f"steps: {', '.join(step_names(steps))}")
        _write_run(out, {**run, "status": "failed", "error": repr(err)})
        raise err
    run = {**run, "part": board.part, "clk_ns": board.clk_ns, "requested_flow": opts.flow, "sizing": opts.sizing,
           "a2qflow_graph": records is not None, "steps": step_names(steps), "from_step": opts.from_step,
           "skipped": skipped, "versions": versions(), "options": {**opts.__dict__}}
    _write_run(out, run)
    t0 = time.perf_counter()
    stdout, stderr = sys.stdout, sys.stderr
    try:
        code = build_dataflow_cfg(str(out / "model.qonnx"), dataflow_config(board, out, flow, steps, opts))
    except Exception as err:  # some errors escape FINN's builder; the run folder must still say failed
        code, ctx.error = -1, ctx.error or err
    finally:  # FINN's builder redirects both into its log and leaves them so
        sys.stdout, sys.stderr = stdout, stderr
    run["wall_s"] = time.perf_counter() - t0
    run["check_s"] = ctx.check_seconds
    timings = out / "finn" / "report" / "time_per_step.json"
    run["time_per_step"] = json.loads(timings.read_text()) if timings.is_file() else {}
    if code != 0:
        run["status"] = "failed"
        run["error"] = repr(ctx.error) if ctx.error else f"FINN build failed; see {out / 'finn' / 'build_dataflow.log'}"
        _write_run(out, run)
        if ctx.error:
            raise ctx.error
        raise BuildError(run["error"])
    run["skipped"] += _skipped_inside_steps(out / "reports")
    report.write_reports(out, board, run)
    if opts.package:
        _package(out, board, run)
    run["status"] = "complete"
    _write_run(out, run)
    return run


# what a build writes into its run folder (train/ and other user files are left alone)
BUILD_OUTPUTS = ("finn", "reports", "rtl", "synth", "package", "reference")


def _clear_previous_outputs(out: Path, onnx_path: Path) -> None:
    """A fresh build into a used folder: reports of the earlier build must not pass as this one's."""
    for name in BUILD_OUTPUTS:
        path = out / name
        if path.is_dir() and not onnx_path.resolve().is_relative_to(path.resolve()):
            shutil.rmtree(path)


def _certify(graph: ModelWrapper, out: Path) -> list[dict] | None:
    """The graph's per-layer records, certified (certificate.json written, failing channel
    refused); None for a plain FINN/QONNX graph (value-based widths, said in the report)."""
    try:
        records = certificate.layer_metadata(graph)
    except certificate.CertificateError:
        return None
    certificate.certify_and_record(graph, _reports(out) / "certificate.json")
    return attach_weight_keys(graph, records)


def _copy_input(onnx_path: Path, dest: Path) -> None:
    if onnx_path.resolve() != dest.resolve():  # rebuilding a run folder's own model.qonnx
        shutil.copyfile(onnx_path, dest)


def _skipped_inside_steps(reports: Path) -> list[str]:
    """What the oss steps could not do (layers without FINN-generated RTL, Verilator without its
    compiler): run.json lists it beside the skipped stages, so `complete` never hides it."""
    skipped = []
    synth, sim = reports / "synth.json", reports / "rtl_sim.json"
    if synth.is_file():
        skipped += [f"step_a2qflow_oss_synthesis: {s['node']} not synthesized ({s['reason']})"
                    for s in json.loads(synth.read_text())["skipped"]
                    if s["node"].startswith(("MVAU", "VVAU", "Thresholding"))]
    if sim.is_file() and isinstance(report := json.loads(sim.read_text()), dict):
        skipped.append(f"step_a2qflow_rtl_simulation: {report['skipped']}")
    return skipped


def _package(out: Path, board: Board, run: dict) -> None:
    from .package import PackageError, package_run

    try:
        run["package"] = str(package_run(out, board, require_complete=False))
    except PackageError as err:  # e.g. CPU-side ops around the accelerator the board driver cannot apply
        run["skipped"].append(f"deployment package: {err}")


def _reports(out: Path) -> Path:
    path = out / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path
