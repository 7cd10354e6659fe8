"""a2qflow's steps for FINN's builder: parity after each python-executable stage, accumulator
sizing to the guaranteed P, the overflow check, folding checked against the graph, and the
open-source synthesis and RTL simulation of FINN's generated RTL.

Every step is a plain function of `(model, cfg)` like FINN's own (`cfg` is an
`A2qflowDataflowConfig`); FINN runs it, times it and saves its intermediate model. Steps that
wrap one of FINN's (FINN's step followed by a parity check) carry FINN's step name, so the
intermediate models keep FINN's names. What a step needs beyond the config it reads from the
run folder (the certified input graph, the reference samples) and what it finds it writes
there (reports/); no state lives between steps except in those files.

A step that refuses (an a2qflow error) records the refusal in reports/step_error.json and
raises it to FINN as a FINNUserError, which FINN logs as one line; the flow then raises
the original error class with its message.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import time
from dataclasses import asdict
from typing import Callable

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.errors import A2qflowError
from a2qflow.models import parity

from . import overflow, run_folder as rf
from .reference import Reference
from .sizing import SizeAccumulators, dot_product_nodes, layer_records

Step = Callable[[ModelWrapper, object], ModelWrapper]


class RtlMismatch(A2qflowError, RuntimeError):
    """FINN's generated RTL computes something else than FINN's python execution of the layer."""


class FoldingError(A2qflowError, ValueError):
    """A folding config the user gave does not fit the graph."""


class StepFailed(A2qflowError, RuntimeError):
    """A step refused with an error the flow does not know by name."""


def _folder(cfg) -> rf.RunFolder:
    return rf.RunFolder(cfg.a2qflow_run_dir)


def recorded(step: Step) -> Step:
    """Record an a2qflow refusal inside a step for the flow, and hand it to FINN as a
    FINNUserError (FINN logs those as one line instead of an internal-error traceback)."""
    from finn.util.exception import FINNUserError

    class StepRefused(FINNUserError):
        pass

    @functools.wraps(step)
    def run(model, cfg):
        try:
            return step(model, cfg)
        except A2qflowError as err:
            _folder(cfg).write_report(rf.STEP_ERROR, {"step": step.__name__, "type": type(err).__name__,
                                                      "message": str(err)})
            raise StepRefused(f"{step.__name__}: {err}") from err
    return run


def _timed(cfg, fn, *args):
    """Run a check and add its time to reports/check_seconds.json (the build's own overhead)."""
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        folder = _folder(cfg)
        seconds = folder.read_report(rf.CHECK_SECONDS, {}).get("seconds", 0.0)
        folder.write_report(rf.CHECK_SECONDS, {"seconds": seconds + time.perf_counter() - t0})


# ------------------------------------------------------------------ parity


def execute(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """FINN python execution, one sample at a time (graphs are built for batch 1)."""
    from finn.core.onnx_exec import execute_onnx

    return parity.execute_per_sample(model, x, execute_onnx)


def graph_inputs(model: ModelWrapper, ref: Reference) -> np.ndarray:
    """The reference inputs as this graph takes them: the dataset's integer codes once the
    flow has made the input integer (step_a2qflow_integer_input), else as the model took them."""
    native = ref.native is not None and model.get_tensor_datatype(model.graph.input[0].name).is_integer()
    return ref.native_x() if native else ref.x


def check_parity(model: ModelWrapper, cfg, stage: str) -> parity.ParityReport:
    """The graph against the reference outputs; reports/parity.json keeps every stage."""
    folder = _folder(cfg)
    ref = Reference.load(folder.reference).head(cfg.a2qflow_parity_samples)
    report = parity.compare(execute(model, graph_inputs(model, ref)), ref.expected, ref.classification, stage,
                            ref.source)
    log = [e for e in folder.read_report(rf.PARITY, []) if e["stage"] != stage] + [report.to_dict()]
    folder.write_report(rf.PARITY, log)
    return parity.check(report)


def _with_parity(finn_step: str, model: ModelWrapper, cfg) -> ModelWrapper:
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    model = build_dataflow_step_lookup[finn_step](model, cfg)
    _timed(cfg, check_parity, model, cfg, finn_step)
    return model


@recorded
def step_qonnx_to_finn(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_qonnx_to_finn, then parity."""
    return _with_parity("step_qonnx_to_finn", model, cfg)


@recorded
def step_a2qflow_integer_input(model: ModelWrapper, cfg) -> ModelWrapper:
    """The accelerator takes the dataset's integer codes (digits 0..16, 8-bit pixels) as
    FINN's examples do: the scale goes in front of the graph and streamlining absorbs it into
    the input quantizer's thresholds (build_flows.boundary). A dataset without integer codes,
    or a graph already taking integers, keeps its input; reports/boundary.json says which."""
    from .boundary import integer_input

    ref = Reference.load(_folder(cfg).reference)
    if not cfg.a2qflow_integer_io or ref.native is None:
        why = "not asked (--float-io)" if not cfg.a2qflow_integer_io else (
            f"dataset {ref.dataset} has no integer codes" if ref.dataset else "no dataset: its codes are unknown")
        _folder(cfg).write_report(rf.BOUNDARY, {"integer_input": None, "why_not": why})
        return model
    model = integer_input(model, ref.native["dtype"], ref.native["scale"])
    _folder(cfg).write_report(rf.BOUNDARY, {"integer_input": ref.native})
    _timed(cfg, check_parity, model, cfg, "step_a2qflow_integer_input")
    return model


@recorded
def step_tidy_up(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_tidy_up, then parity."""
    return _with_parity("step_tidy_up", model, cfg)


@recorded
def step_streamline(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_streamline, or the variant the graph needs (model_steps: residual adds,
    nearest-neighbour upsampling), then parity."""
    from .model_steps import STREAMLINE_STEPS

    model = STREAMLINE_STEPS[cfg.a2qflow_streamline](model, cfg)
    _timed(cfg, check_parity, model, cfg, "step_streamline")
    return model


@recorded
def step_convert_to_hw(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_convert_to_hw with the output dequantization (and a leading reshape) kept
    on the host side (build_flows.boundary.host_output), then parity."""
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    from .boundary import host_output

    convert = build_dataflow_step_lookup["step_convert_to_hw"]
    model = host_output(convert, model, cfg) if cfg.a2qflow_integer_io else convert(model, cfg)
    _timed(cfg, check_parity, model, cfg, "step_convert_to_hw")
    return model


# ------------------------------------------------------------------ accumulator sizing


def _size(model: ModelWrapper, cfg, report: str) -> ModelWrapper:
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.infer_datatypes import InferDataTypes

    records = layer_records(ModelWrapper(str(_folder(cfg).model)))
    sizer = SizeAccumulators(records, cfg.a2qflow_sizing)
    model = model.transform(sizer)
    model = model.transform(RoundAndClipThresholds()).transform(InferDataTypes())
    _folder(cfg).write_report(report, [asdict(s) for s in sizer.sizings])
    return model


@recorded
def step_a2qflow_size_accumulators_initial(model: ModelWrapper, cfg) -> ModelWrapper:
    """After FINN's first width minimisation: every MVAU/VVAU mapped back to its exported layer
    by its integer weights, re-certified, sized to its guaranteed P; parity, and the exact
    accumulator values the test samples produce in each layer (for the overflow check)."""
    model = _size(model, cfg, rf.SIZING_INITIAL)
    _timed(cfg, check_parity, model, cfg, "step_a2qflow_size_accumulators_initial")
    ref = Reference.load(_folder(cfg).reference).head(cfg.a2qflow_overflow_samples)
    _timed(cfg, overflow.save_layer_inputs, model, graph_inputs(model, ref),
           _folder(cfg).report(rf.LAYER_ACCUMULATORS))
    return model


@recorded
def step_a2qflow_size_accumulators(model: ModelWrapper, cfg) -> ModelWrapper:
    """After FINN's final width minimisation (which may widen accumulators again and narrow
    weight datatypes): sized to P once more, weights kept narrow for the RTL MVU."""
    model = _size(model, cfg, rf.SIZING)
    return _keep_weights_narrow(model, cfg) if cfg.a2qflow_prefer_rtl else model


@recorded
def step_a2qflow_check_overflow(model: ModelWrapper, cfg) -> ModelWrapper:
    """Every MVAU/VVAU at its final width: per-channel worst-case inputs and the test data
    reaching it must not wrap (reports/overflow.json; the same at P-1 is reported)."""
    results = _timed(cfg, overflow.check_model, model, _folder(cfg).report(rf.LAYER_ACCUMULATORS))
    _folder(cfg).write_report(rf.OVERFLOW, results)
    overflow.raise_on_wrap(results)
    return model


# ------------------------------------------------------------------ hardware choices


@recorded
def step_a2qflow_runtime_writeable_weights(model: ModelWrapper, cfg) -> ModelWrapper:
    """Every MVAU/VVAU's weights writeable at run time (AXI-lite). FINN then sizes
    accumulators from the datatypes' worst case; the guaranteed P still holds for any
    weights trained within the layer's bound."""
    for node in dot_product_nodes(model):
        inst = getCustomOp(node)
        inst.set_nodeattr("mem_mode", "internal_decoupled")
        inst.set_nodeattr("runtime_writeable_weights", 1)
    return model


@recorded
def step_a2qflow_prefer_rtl(model: ModelWrapper, cfg) -> ModelWrapper:
    """Ask FINN for the RTL MVU/VVU wherever its own rules allow one. Left to itself FINN picks
    the HLS MVAU for weights narrower than 4 bits after its width minimisation, which A2Q at
    small P produces; only RTL layers can be synthesized and simulated without Vitis HLS.
    FINN still falls back to HLS where the RTL unit cannot work (e.g. DSP48E1 with full-range
    weights, VVAU off Versal); those layers are reported as not synthesized."""
    for node in dot_product_nodes(model):
        getCustomOp(node).set_nodeattr("preferred_impl_style", "rtl")
    return _keep_weights_narrow(model, cfg)


def _keep_weights_narrow(model: ModelWrapper, cfg) -> ModelWrapper:
    """Weight datatypes that keep FINN's RTL MVU possible on DSP48E1 parts (sizing.KeepWeightsNarrow);
    reports/weights_narrow.json lists the layers that got one more weight bit."""
    from .sizing import KeepWeightsNarrow

    keep = KeepWeightsNarrow(cfg.fpga_part)
    model = model.transform(keep)
    folder = _folder(cfg)
    earlier = folder.read_report(rf.WEIGHTS_NARROW, [])
    folder.write_report(rf.WEIGHTS_NARROW, sorted(set(earlier) | set(keep.widened)))
    return model


@recorded
def step_apply_folding_config(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_apply_folding_config, after checking the file against this graph: FINN would
    otherwise fail late (PE not dividing MH) or silently leave a renamed layer unfolded.
    A file the user gave that does not fit is refused (file, node, field); a shipped default
    written for the model's standard layer sizes falls back to target-FPS auto-folding
    (a narrower or shallower variant of the net), and reports/folding.json says so."""
    from finn.builder.build_dataflow_steps import step_apply_folding_config as finn_apply
    from finn.builder.build_dataflow_steps import step_target_fps_parallelization

    from a2qflow.hw_configs import check_folding, layer_dims_from_model

    folder, path = _folder(cfg), cfg.folding_config_file
    if path is None:
        folder.write_report(rf.FOLDING, {"folding": "target_fps", "target_fps": cfg.target_fps})
        return model
    try:
        check_folding(path, layer_dims_from_model(model))
    except ValueError as err:
        if cfg.a2qflow_folding_user_given:
            raise FoldingError(f"folding config does not fit this graph: {err}") from err
        fallback = cfg.a2qflow_fallback_fps
        folder.write_report(rf.FOLDING, {"folding": "target_fps", "target_fps": fallback, "shipped_config": str(path),
                                         "why": f"the shipped config does not fit this graph: {err}"})
        return step_target_fps_parallelization(model, dataclasses.replace(cfg, folding_config_file=None,
                                                                          target_fps=fallback))
    folder.write_report(rf.FOLDING, {"folding": "file", "file": str(path),
                                     "user_given": cfg.a2qflow_folding_user_given})
    return finn_apply(model, cfg)


# ------------------------------------------------------------------ open-source synthesis, RTL simulation


@recorded
def step_a2qflow_oss_synthesis(model: ModelWrapper, cfg) -> ModelWrapper:
    """Yosys synth_xilinx of the RTL FINN generates for every MVAU/VVAU/Thresholding RTL layer
    (build_flows.rtl + oss_synth): RTL in <run>/rtl, logs in <run>/synth, reports/synth.json.
    HLS layers have no FINN-generated RTL without Vitis HLS; they are listed as skipped."""
    from .oss_synth import synthesize
    from .rtl import prepare_rtl, skipped_layers

    folder = _folder(cfg)
    layers = prepare_rtl(model, cfg.fpga_part, cfg.synth_clk_period_ns, folder.rtl)
    results = synthesize(layers, cfg.a2qflow_synth_family, folder.synth, lut_only=cfg.a2qflow_lut_only,
                         jobs=cfg.a2qflow_jobs, progress=cfg.a2qflow_progress and len(layers) > 1)
    folder.write_report(rf.SYNTH, {"family": cfg.a2qflow_synth_family, "lut_only": cfg.a2qflow_lut_only,
                                   "tool": results[0].version if results else None,
                                   "layers": [r.to_dict() for r in results],
                                   "total": results.total.to_dict() if results else None,
                                   "skipped": skipped_layers(folder.rtl)})
    return model


@recorded
def step_a2qflow_rtl_simulation(model: ModelWrapper, cfg) -> ModelWrapper:
    """Verilator simulation of every layer the oss step synthesized (build_flows.rtl_sim):
    random inputs with stream stalls and per-channel worst-case inputs, compared with the
    layer's python execution; any mismatch stops the build. reports/rtl_sim.json."""
    from .rtl import load_layers
    from .rtl_sim import missing_tools, verify_rtl

    folder = _folder(cfg)
    missing = missing_tools()
    if missing:
        folder.write_report(rf.RTL_SIM, {"skipped": f"Verilator needs {', '.join(missing)} (Debian: perl make g++)"})
        return model
    reports = _timed(cfg, verify_rtl, model, load_layers(folder.rtl), cfg.a2qflow_rtl_sim_vectors, 0,
                     folder.report(rf.RTL_SIM), cfg.a2qflow_progress, cfg.a2qflow_jobs)
    bad = [r for r in reports if "skipped" not in r and not r["passed"]]
    if bad:
        raise RtlMismatch("RTL simulation differs from python execution: " + "; ".join(
            f"{r['layer']} ({r['inputs']} inputs): {r['mismatches']} of {r['elements']} outputs" for r in bad))
    return model


@recorded
def step_a2qflow_accelerator_simulation(model: ModelWrapper, cfg) -> ModelWrapper:
    """The whole accelerator, stitched from FINN's RTL and simulated cycle-accurately in
    Verilator (build_flows.stitch): FIFO depths sized from observed occupancy, then the test set
    streamed through the sized design (and part of it again with random stalls), compared bit
    by bit with FINN's python execution of the HW graph and, through the host's output ops,
    with the trained model's predictions. reports/accelerator_sim.json; a mismatch stops the
    build. A graph with HLS-only layers is not simulated whole: the report names them."""
    from . import stitch

    folder = _folder(cfg)
    blocking = stitch.blocking_nodes(model)
    missing = rtl_sim_missing_tools()
    if blocking or missing:
        folder.write_report(rf.ACCELERATOR_SIM, {
            "skipped": (f"{len(blocking)} layer(s) without FINN-generated RTL" if blocking
                        else f"Verilator needs {', '.join(missing)}"), "blocking": blocking})
        return model
    ref = Reference.load(folder.reference).head(cfg.a2qflow_test_samples)
    codes = accelerator_inputs(folder, model, ref)
    t0 = time.perf_counter()
    sized, design, binary, fifos = stitch.size_fifos(model, cfg.fpga_part, cfg.synth_clk_period_ns,
                                                     folder.accelerator, codes)
    run = stitch.simulate(design, binary, codes)
    stalled = stitch.simulate(design, binary, codes[:64], stall_seed=7, tag="stalls")
    expected = _timed(cfg, execute, python_executable(model), codes.reshape(model_input_shape(model, len(codes))))
    expected = np.rint(expected).reshape(len(codes), -1).astype(np.int64)
    report = _accelerator_report(folder, ref, cfg, run, stalled, expected, fifos, design, time.perf_counter() - t0)
    folder.write_report(rf.ACCELERATOR_SIM, report)
    if report["mismatches"] or report["mismatches_with_stalls"] or run["extra_outputs"]:
        raise RtlMismatch(f"the whole accelerator in Verilator differs from FINN's python execution: "
                          f"{report['mismatches']} of {report['elements']} outputs "
                          f"({report['mismatches_with_stalls']} with stalls)")
    return model


def rtl_sim_missing_tools() -> list[str]:
    from .rtl_sim import missing_tools

    return missing_tools()


def python_executable(model: ModelWrapper) -> ModelWrapper:
    """A copy whose _rtl nodes run FINN's python implementation (exec_mode cppsim on an RTL
    node runs its python base class: nothing is compiled)."""
    executable = ModelWrapper(copy.deepcopy(model.model))
    for node in executable.graph.node:
        getCustomOp(node).set_nodeattr("exec_mode", "cppsim")
    return executable


def model_input_shape(model: ModelWrapper, n: int) -> tuple:
    return (n, *model.get_tensor_shape(model.graph.input[0].name)[1:])


def accelerator_inputs(folder: rf.RunFolder, model: ModelWrapper, ref: Reference) -> np.ndarray:
    """The reference inputs as the accelerator takes them: the dataset's integer codes, with
    the host's input ops (FINN's parent graph: flatten, layout) applied; (n, elements)."""
    from a2qflow.deploy.driver import apply_host_op

    from .package import io_wrapping

    x = ref.native_x() if ref.native is not None and model.get_tensor_datatype(
        model.graph.input[0].name).is_integer() else ref.x
    for op in io_wrapping(folder, model)["pre"]:
        x = apply_host_op(op, x)
    return np.asarray(x).reshape(len(x), -1)


def _accelerator_report(folder, ref, cfg, run, stalled, expected, fifos, design, seconds) -> dict:
    from a2qflow.deploy.driver import apply_host_op

    from .package import io_wrapping

    outputs = run["outputs"]
    host = outputs.astype(np.float32)
    for op in io_wrapping(folder, ModelWrapper(str(design.dir / "stitched.onnx")))["post"]:
        host = apply_host_op(op, host)
    agreement = parity.compare(host, ref.expected, ref.classification, "whole accelerator (Verilator)", ref.source)
    perf = folder.read_finn_report(rf.FINN_ESTIMATE_PERFORMANCE, {})
    clk_mhz = 1000.0 / cfg.synth_clk_period_ns
    cycles = run["steady_cycles_per_image"]
    return {
        "tool": "Verilator", "simulated": "cycle-accurate RTL of the whole accelerator (FINN-generated, stitched)",
        "samples": int(len(outputs)), "elements": int(outputs.size),
        "mismatches": int((outputs != expected).sum()),
        "mismatches_with_stalls": int((stalled["outputs"] != expected[:len(stalled["outputs"])]).sum()),
        "stall_samples": int(len(stalled["outputs"])), "extra_outputs": run["extra_outputs"],
        "vs_trained_model": agreement.to_dict(),
        "accuracy": float((host.argmax(1) == ref.labels[:len(host)]).mean())
        if ref.classification and ref.labels is not None else None,
        "cycles_per_image": cycles, "latency_cycles": run["first_latency_cycles"], "clk_mhz": clk_mhz,
        "images_per_s": clk_mhz * 1e6 / cycles if cycles else None,
        "latency_us": run["first_latency_cycles"] / clk_mhz,
        "finn_estimated_cycles": perf.get("max_cycles"), "finn_estimated_latency_cycles": perf.get("critical_path_cycles"),
        "fifo": fifos, "sim_cycles": run["cycles"], "sim_cycles_per_s": run["cycles"] / max(run["sim_seconds"], 1e-9),
        "seconds": seconds, "design": str(design.dir.relative_to(folder.root))}


# ------------------------------------------------------------------ refusals


# the errors a step may refuse with, by name: the flow raises the same class again
STEP_ERRORS: dict[str, type] = {}


def _register_errors() -> None:
    from a2qflow.models.certificate import CertificateError, ClaimMismatch
    from a2qflow.models.parity import ParityError

    from .rtl import AdjustmentError
    from .rtl_sim import RtlSimError
    from .oss_synth import SynthesisError

    for cls in (CertificateError, ClaimMismatch, ParityError, overflow.AccumulatorOverflow, RtlMismatch,
                FoldingError, AdjustmentError, RtlSimError, SynthesisError):
        STEP_ERRORS[cls.__name__] = cls


def step_error(folder: rf.RunFolder) -> A2qflowError | None:
    """The refusal a step recorded in this run, as its own error class."""
    if not STEP_ERRORS:
        _register_errors()
    record = folder.read_report(rf.STEP_ERROR)
    if not record:
        return None
    cls = STEP_ERRORS.get(record.get("type"), StepFailed)
    err = cls.__new__(cls)
    Exception.__init__(err, record.get("message", "a build step refused"))
    return err
