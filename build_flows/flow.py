"""`a2qflow build`: FINN's builder with a2qflow's steps, one run folder per build
(layout: build_flows.run_folder).

Everything that can be refused is checked before the first file is written (settings,
board, flow, the graph and its certificate, `from_step`, the output folder), so a refused
build leaves an earlier run as it was. A build that starts marks run.json 'running' first
and ends it 'complete', 'failed' (with the error) or 'interrupted' (Ctrl-C, SIGTERM), so
an earlier result never passes for this one. A build resumes with `from_step` (FINN's
start_step: it reloads that step's predecessor from finn/intermediate_models).
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from a2qflow.environment import versions
from a2qflow.errors import A2qflowError, Interrupted
from a2qflow.hw_configs import Board, folding_config, get_board
from a2qflow.models import certificate
from a2qflow.models.catalog import NETWORK_NAMES
from a2qflow.models.graph import load_graph, metadata

from . import finn_env, report, run_folder as rf
from .config import DEFAULT_TARGET_FPS, BuildConfig, ConfigError
from .model_steps import streamline_kind
from .reference import Reference

PYTHON_EXEC_STEPS = ("step_qonnx_to_finn", "step_tidy_up", "step_streamline", "step_convert_to_hw")
BITSTREAM_STEPS = ("step_assign_ddr_weight_offsets", "step_generate_hardware", "step_create_stitched_ip",
                   "step_measure_rtlsim_performance", "step_out_of_context_synthesis", "step_prepare_synthesis",
                   "step_synthesize_bitfile", "step_make_driver", "step_deployment_package")


class BuildError(A2qflowError, RuntimeError):
    """A build stage failed; the message names the stage and the cause."""


def resolve_flow(flow: str, package: bool = True) -> tuple[str, list[str]]:
    """The flow to run and the stages skipped, with why."""
    tools = finn_env.xilinx_tools_available()
    if flow == "bitstream" and not tools:
        raise BuildError("--flow bitstream needs Vivado and Vitis HLS (XILINX_VIVADO set, vivado and vitis_hls on "
                         "PATH); use --flow oss or estimate")
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


def step_list(flow: str, runtime_weights: bool = False, rtl_sim: bool = True, accelerator_sim: bool = True) -> list:
    """FINN's default step sequence with a2qflow's steps inserted: FINN's steps by name,
    a2qflow's (and FINN's steps followed by a parity check) as functions of (model, cfg)."""
    from . import steps as s

    out = [s.step_qonnx_to_finn, s.step_a2qflow_integer_input, s.step_tidy_up, s.step_streamline,
           s.step_convert_to_hw,
           "step_minimize_bit_width_initial", s.step_a2qflow_size_accumulators_initial,
           "step_create_dataflow_partition"]
    if flow == "oss":
        out.append(s.step_a2qflow_prefer_rtl)
    out += ["step_specialize_layers", "step_target_fps_parallelization", s.step_apply_folding_config]
    if runtime_weights:
        out.append(s.step_a2qflow_runtime_writeable_weights)
    out += ["step_minimize_bit_width", s.step_a2qflow_size_accumulators, s.step_a2qflow_check_overflow,
            "step_transpose_decomposition", "step_generate_estimate_reports"]
    if flow == "bitstream":
        out += list(BITSTREAM_STEPS)
    if flow in ("oss", "bitstream"):  # with Vivado too: Yosys and Vivado numbers side by side
        out.append(s.step_a2qflow_oss_synthesis)
        if rtl_sim:
            out.append(s.step_a2qflow_rtl_simulation)
        if accelerator_sim:
            out.append(s.step_a2qflow_accelerator_simulation)
    return out


def step_names(steps: list) -> list[str]:
    return [s if isinstance(s, str) else s.__name__ for s in steps]


def dataflow_config(board: Board, folder: rf.RunFolder, flow: str, steps: list, config: BuildConfig,
                    folding: Path | None, streamline: str):
    from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType

    from .finn_config import A2qflowDataflowConfig

    outputs = [DataflowOutputType.ESTIMATE_REPORTS]
    if flow == "bitstream":
        outputs += [DataflowOutputType.STITCHED_IP, DataflowOutputType.BITFILE,
                    DataflowOutputType.PYNQ_DRIVER, DataflowOutputType.DEPLOYMENT_PACKAGE]
    return A2qflowDataflowConfig(
        output_dir=str(folder.finn), synth_clk_period_ns=board.clk_ns, board=board.name, fpga_part=board.part,
        shell_flow_type=ShellFlowType(board.shell_flow), generate_outputs=outputs, steps=steps,
        folding_config_file=str(folding) if folding else None,
        target_fps=None if folding else (config.target_fps or DEFAULT_TARGET_FPS),
        standalone_thresholds=True, save_intermediate_models=True, start_step=config.from_step,
        a2qflow_run_dir=str(folder.root.resolve()), a2qflow_sizing=config.sizing,
        a2qflow_runtime_weights=config.runtime_weights, a2qflow_overflow_samples=config.overflow_samples,
        a2qflow_streamline=streamline, a2qflow_folding_user_given=config.folding is not None,
        a2qflow_fallback_fps=config.target_fps or DEFAULT_TARGET_FPS, a2qflow_synth_family=board.family,
        a2qflow_lut_only=config.lut_only, a2qflow_progress=config.progress,
        a2qflow_parity_samples=config.parity_samples, a2qflow_integer_io=config.integer_io,
        a2qflow_test_samples=config.test_samples, a2qflow_jobs=config.jobs or min(4, os.cpu_count() or 1),
        a2qflow_prefer_rtl=flow == "oss")


@dataclass
class FlowPlan:
    """What a build of this configuration will run (checked before anything is written)."""
    board: Board
    flow: str
    skipped: list[str]
    steps: list
    names: list[str]


@dataclass
class GraphPlan:
    """What a build knows about its input graph (certified before anything is written)."""
    graph: object
    certs: list | None           # None: a graph without a2qflow metadata
    model_name: str | None
    folding: Path | None


def plan_flow(config: BuildConfig, folder: rf.RunFolder) -> FlowPlan:
    """Refuse settings that cannot run (board, flow, --from-step), writing nothing."""
    config.validate()
    board = get_board(config.board)
    flow, skipped = resolve_flow(config.flow, config.package)
    steps = step_list(flow, config.runtime_weights, config.rtl_sim, config.accelerator_sim)
    names = step_names(steps)
    if config.from_step is not None:
        _check_resumable(folder, config.from_step, names)
    return FlowPlan(board, flow, skipped, steps, names)


def plan_graph(onnx_path: str | Path, config: BuildConfig) -> GraphPlan:
    """Read and certify the input graph (a graph whose metadata contradicts it, or whose
    weights break their bound, is refused naming layer and field or channel), writing nothing."""
    graph = load_graph(onnx_path)
    certs = None
    if graph.get_metadata_prop(certificate.LAYERS_KEY) is not None:
        certs = certificate.certify(graph)
        certificate.check(certs)
    model_name = metadata(graph, "model") or config.model_name
    folding = Path(config.folding) if config.folding else (
        folding_config(model_name, config.board) if model_name in NETWORK_NAMES else None)
    if folding is not None and not folding.is_file():
        raise ConfigError(f"folding config {folding} does not exist")
    return GraphPlan(graph, certs, model_name, folding)


def build(onnx_path: str | Path, out: str | Path | rf.RunFolder, reference: Reference,
          config: BuildConfig | None = None) -> dict:
    """Certify the graph, run FINN with a2qflow's steps, write reports and the package;
    returns run.json. `out` may be a RunFolder a pipeline has already begun (it trained and
    exported into it)."""
    config = config or BuildConfig()
    folder = out if isinstance(out, rf.RunFolder) else rf.RunFolder(Path(out))
    onnx_path = Path(onnx_path)
    # -- everything that can be refused, before anything is written --
    fplan = plan_flow(config, folder)
    gplan = plan_graph(onnx_path, config)
    board, flow, skipped, steps, names = fplan.board, fplan.flow, fplan.skipped, fplan.steps, fplan.names
    graph, certs, model_name, folding = gplan.graph, gplan.certs, gplan.model_name, gplan.folding
    a2qflow_graph = certs is not None
    if not folder.run:
        folder.begin(fresh=config.from_step is None, keep=(onnx_path,))
    t0 = time.perf_counter()
    try:
        run = folder.update(input=str(onnx_path), board=board.name, part=board.part, clk_ns=board.clk_ns, flow=flow,
                            requested_flow=config.flow, sizing=config.sizing, a2qflow_graph=a2qflow_graph,
                            model=model_name, steps=names, from_step=config.from_step, skipped=skipped,
                            versions=versions(), config=asdict(config), parity_reference=reference.source)
        if certs is not None:
            certificate.write_certificate(certs, folder.report(rf.CERTIFICATE))
        if config.from_step is None or not folder.model.exists():
            _copy_input(onnx_path, folder.model)
            reference.head(max(config.parity_samples, config.test_samples)).save(folder.reference)
            folder.report(rf.PARITY).unlink(missing_ok=True)
        for stale in (rf.STEP_ERROR, rf.CHECK_SECONDS):   # this run's only
            folder.report(stale).unlink(missing_ok=True)
        finn_env.prepare_finn(folder.finn_tmp)
        cfg = dataflow_config(board, folder, flow, steps, config, folding, streamline_kind(graph))
        _run_finn(folder, cfg)
        run = folder.update(wall_s=time.perf_counter() - t0,
                            check_s=folder.read_report(rf.CHECK_SECONDS, {}).get("seconds", 0.0),
                            time_per_step=folder.read_finn_report(rf.FINN_TIME_PER_STEP, {}),
                            skipped=skipped + _skipped_inside_steps(folder))
        report.write_reports(folder, board, run)
        if config.package:
            _package(folder, board)
        return folder.update(status="complete", wall_s=time.perf_counter() - t0)
    except KeyboardInterrupt as err:
        folder.update(status="interrupted", error=f"interrupted ({err or 'Ctrl-C'})", wall_s=time.perf_counter() - t0)
        raise
    except Exception as err:
        folder.update(status="failed", error=f"{type(err).__name__}: {err}", wall_s=time.perf_counter() - t0)
        raise


def _check_resumable(folder: rf.RunFolder, from_step: str, names: list[str]) -> None:
    if from_step not in names:
        raise ConfigError(f"--from-step {from_step!r} is not a step of this flow; steps: {', '.join(names)}")
    earlier = folder.read_run()
    if earlier is None:
        raise ConfigError(f"--from-step {from_step!r}: {folder.root} holds no earlier build to resume")
    index = names.index(from_step)
    before = names[index - 1] if index else None
    if before and not folder.intermediate(before).is_file():
        raise ConfigError(f"--from-step {from_step!r}: the earlier build did not save "
                          f"{folder.intermediate(before).relative_to(folder.root)}, which the step starts from")


class _InterruptWatch:
    """FINN's builder catches KeyboardInterrupt and returns -1 like any failure; this notes
    that Ctrl-C or SIGTERM came, so the run can say 'interrupted'. Only the main thread can
    own signal handlers (a Dask worker's build leaves them to the worker)."""

    def __init__(self) -> None:
        self.interrupted = False
        self._old: dict = {}

    def _handler(self, signum, frame):
        self.interrupted = True
        raise Interrupted(signal.Signals(signum).name)

    def __enter__(self) -> "_InterruptWatch":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _run_finn(folder: rf.RunFolder, cfg) -> None:
    """FINN's build_dataflow_cfg; a step's refusal comes back as its own error class."""
    from finn.builder.build_dataflow import build_dataflow_cfg

    from .steps import step_error

    stdout, stderr = sys.stdout, sys.stderr
    try:
        with _InterruptWatch() as watch:
            try:
                code = build_dataflow_cfg(str(folder.model), cfg)
            except Exception as err:  # under pytest FINN re-raises instead of returning -1
                code = step_error(folder) or err
    finally:  # FINN's builder redirects both into its log and leaves them so
        sys.stdout, sys.stderr = stdout, stderr
    if watch.interrupted:
        raise Interrupted("SIGINT")
    if isinstance(code, BaseException):
        raise code
    if code != 0:
        raise step_error(folder) or BuildError(f"FINN's build failed; see {folder.finn_log}")


def _copy_input(onnx_path: Path, dest: Path) -> None:
    if onnx_path.resolve() != dest.resolve():  # rebuilding a run folder's own model.qonnx
        shutil.copyfile(onnx_path, dest)


def _skipped_inside_steps(folder: rf.RunFolder) -> list[str]:
    """What the oss steps could not do (layers without FINN-generated RTL, Verilator without its
    compiler): run.json lists it beside the skipped stages, so `complete` never hides it."""
    skipped = []
    synth, sim = folder.read_report(rf.SYNTH), folder.read_report(rf.RTL_SIM)
    if synth:
        skipped += [f"step_a2qflow_oss_synthesis: {s['node']} not synthesized ({s['reason']})"
                    for s in synth["skipped"] if s["node"].startswith(("MVAU", "VVAU", "Thresholding"))]
    if isinstance(sim, dict):
        skipped.append(f"step_a2qflow_rtl_simulation: {sim['skipped']}")
    whole = folder.read_report(rf.ACCELERATOR_SIM) or {}
    if whole.get("skipped"):
        blocking = ", ".join(f"{b['node']} ({b['why']})" for b in whole.get("blocking", []))
        skipped.append(f"step_a2qflow_accelerator_simulation: {whole['skipped']}" + (f": {blocking}" if blocking else ""))
    return skipped


def _package(folder: rf.RunFolder, board: Board) -> None:
    from .package import PackageError, package_run

    try:
        folder.update(package=str(package_run(folder, board, require_complete=False)))
    except PackageError as err:  # e.g. CPU-side ops around the accelerator the board driver cannot apply
        folder.update(skipped=folder.run["skipped"] + [f"deployment package: {err}"])
