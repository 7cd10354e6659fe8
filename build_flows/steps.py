"""a2qflow's steps for FINN's builder: parity after each python-executable stage,
accumulator sizing to the guaranteed P, and the overflow check.

Each step has FINN's signature `step(model, cfg) -> model` and a `__name__`, so FINN's
`build_dataflow_cfg` runs it, times it and saves its intermediate model like its own.
The steps share one `BuildContext` (what the flow knows beyond FINN's config).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from . import overflow
from .sizing import SizeAccumulators, is_dot_product_node

Step = Callable[[ModelWrapper, object], ModelWrapper]


class ParityError(RuntimeError):
    """A FINN stage changed what the network computes."""


@dataclass
class BuildContext:
    run_dir: Path
    records: list[dict] | None          # layer records of an a2qflow graph; None: plain FINN graph
    parity_inputs: np.ndarray           # test samples (NCHW / NF as the model takes them)
    parity_expected: np.ndarray         # brevitas (or source QONNX) outputs for them
    classification: bool
    sizing_mode: str = "guaranteed"
    overflow_samples: int = 64
    runtime_weights: bool = False
    parity_log: list[dict] = field(default_factory=list)
    error: Exception | None = None
    check_seconds: float = 0.0          # time spent in parity and overflow checks

    def timed(self, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.check_seconds += time.perf_counter() - t0

    @property
    def report_dir(self) -> Path:
        path = self.run_dir / "reports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, name: str, data) -> None:
        (self.report_dir / name).write_text(json.dumps(data, indent=1, default=str))


def _named(name: str, fn: Step) -> Step:
    fn.__name__ = name
    return fn


def _failing(ctx: BuildContext, fn: Step) -> Step:
    """Keep the error for the flow: FINN's builder logs exceptions and returns -1."""
    def run(model, cfg):
        try:
            return fn(model, cfg)
        except Exception as err:
            ctx.error = err
            raise
    return _named(fn.__name__, run)


def execute(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """FINN python execution, one sample at a time (graphs are built for batch 1)."""
    from finn.core.onnx_exec import execute_onnx

    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute_onnx(model, {iname: x[i:i + 1]})[oname] for i in range(len(x))])


def check_parity(model: ModelWrapper, ctx: BuildContext, stage: str) -> dict:
    out = execute(model, ctx.parity_inputs).reshape(ctx.parity_expected.shape)
    err = float(np.abs(out - ctx.parity_expected).max())
    tol = 1e-4 * max(1.0, float(np.abs(ctx.parity_expected).max()))
    entry = {"stage": stage, "samples": len(out), "max_abs_error": err, "tolerance": tol}
    if ctx.classification:
        entry["argmax_agreement"] = float((out.argmax(1) == ctx.parity_expected.argmax(1)).mean())
    entry["passed"] = err <= tol and entry.get("argmax_agreement", 1.0) == 1.0
    ctx.parity_log = [e for e in ctx.parity_log if e["stage"] != stage] + [entry]
    ctx.write("parity.json", ctx.parity_log)
    if not entry["passed"]:
        raise ParityError(f"after {stage}: the graph no longer computes what the trained model does "
                          f"(max abs error {err:.3g}, argmax agreement {entry.get('argmax_agreement')})")
    return entry


def with_parity(ctx: BuildContext, step: str | Step) -> Step:
    """A step (FINN's, by name, or a step function), followed by a parity check of its result."""
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    inner = build_dataflow_step_lookup[step] if isinstance(step, str) else step
    name = inner.__name__ if not isinstance(step, str) else step

    def run(model, cfg):
        model = inner(model, cfg)
        ctx.timed(check_parity, model, ctx, name)
        return model
    return _failing(ctx, _named(name, run))


def size_accumulators(ctx: BuildContext, name: str, capture_inputs: bool) -> Step:
    """Set each MVAU/VVAU to its guaranteed P after FINN's width minimisation; on the
    python-executable graph also prove parity and keep the inputs each layer sees."""
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.infer_datatypes import InferDataTypes

    def run(model, cfg):
        sizer = SizeAccumulators(ctx.records, ctx.sizing_mode)
        model = model.transform(sizer)
        model = model.transform(RoundAndClipThresholds()).transform(InferDataTypes())
        ctx.write(f"{name}.json", [asdict(s) for s in sizer.sizings])
        if capture_inputs:
            ctx.timed(check_parity, model, ctx, name)
            ctx.timed(overflow.save_layer_inputs, model, ctx.parity_inputs[:ctx.overflow_samples], ctx.report_dir)
        return model
    return _failing(ctx, _named(name, run))


def runtime_writeable_weights(ctx: BuildContext) -> Step:
    """Make every MVAU/VVAU's weights writeable at run time (AXI-lite). FINN then sizes
    accumulators from the datatypes' worst case; the guaranteed P still holds for any
    weights trained within the layer's bound."""
    def run(model, cfg):
        for node in dot_product_nodes(model):
            inst = getCustomOp(node)
            inst.set_nodeattr("mem_mode", "internal_decoupled")
            inst.set_nodeattr("runtime_writeable_weights", 1)
        return model
    return _failing(ctx, _named("step_a2qflow_runtime_writeable_weights", run))


def prefer_rtl_dot_products(ctx: BuildContext) -> Step:
    """Ask FINN for the RTL MVU/VVU wherever its own rules allow one. Left to itself FINN picks
    the HLS MVAU for weights narrower than 4 bits after its width minimisation, which A2Q at
    small P produces; only RTL layers can be synthesized and simulated without Vitis HLS.
    FINN still falls back to HLS where the RTL unit cannot work (e.g. DSP48E1 with full-range
    weights, VVAU off Versal); those layers are reported as not synthesized."""
    def run(model, cfg):
        for node in dot_product_nodes(model):
            getCustomOp(node).set_nodeattr("preferred_impl_style", "rtl")
        return model
    return _failing(ctx, _named("step_a2qflow_prefer_rtl", run))


def apply_folding(ctx: BuildContext, user_given: bool, fallback_fps: int) -> Step:
    """FINN's step_apply_folding_config, after checking the file against this graph: FINN would
    otherwise fail late (PE not dividing MH) or silently leave a renamed layer unfolded.
    A file the user gave that does not fit is refused (file, node, field); a shipped default
    written for the model's standard layer sizes falls back to target-FPS auto-folding
    (a narrower or shallower variant of the net), and reports/folding.json says so."""
    from finn.builder.build_dataflow_steps import step_apply_folding_config, step_target_fps_parallelization

    from a2qflow.hw_configs import check_folding, layer_dims_from_model

    def run(model, cfg):
        path = cfg.folding_config_file
        if path is None:
            ctx.write("folding.json", {"folding": "target_fps", "target_fps": cfg.target_fps})
            return model
        try:
            check_folding(path, layer_dims_from_model(model))
        except ValueError as err:
            if user_given:
                raise ValueError(f"folding config does not fit this graph: {err}") from err
            ctx.write("folding.json", {"folding": "target_fps", "target_fps": fallback_fps, "shipped_config": path,
                                       "why": f"the shipped config does not fit this graph: {err}"})
            cfg.folding_config_file, cfg.target_fps = None, fallback_fps
            return step_target_fps_parallelization(model, cfg)
        ctx.write("folding.json", {"folding": "file", "file": path, "user_given": user_given})
        return step_apply_folding_config(model, cfg)
    return _failing(ctx, _named("step_apply_folding_config", run))


def check_overflow(ctx: BuildContext) -> Step:
    def run(model, cfg):
        results = ctx.timed(overflow.check_model, model, ctx.report_dir)
        ctx.write("overflow.json", results)
        overflow.raise_on_wrap(results)
        return model
    return _failing(ctx, _named("step_a2qflow_check_overflow", run))


def oss_synthesis(ctx: BuildContext, family: str, lut_only: bool) -> Step:
    """Yosys synth_xilinx of the RTL FINN generates for every MVAU/VVAU/Thresholding RTL layer
    (build_flows.rtl + oss_synth): RTL in <run>/rtl, logs in <run>/synth, reports/synth.json.
    HLS layers have no FINN-generated RTL without Vitis HLS; they are listed as skipped."""
    from .oss_synth import synthesize
    from .rtl import prepare_rtl, skipped_layers

    def run(model, cfg):
        rtl_dir = ctx.run_dir / "rtl"
        layers = prepare_rtl(model, cfg.fpga_part, cfg.synth_clk_period_ns, rtl_dir)
        results = synthesize(layers, family, ctx.run_dir / "synth", lut_only=lut_only, progress=len(layers) > 1)
        ctx.write("synth.json", {"family": family, "lut_only": lut_only,
                                 "tool": results[0].version if results else None,
                                 "layers": [r.to_dict() for r in results],
                                 "total": results.total.to_dict() if results else None,
                                 "skipped": skipped_layers(rtl_dir)})
        return model
    return _failing(ctx, _named("step_a2qflow_oss_synthesis", run))


class RtlMismatch(RuntimeError):
    """FINN's generated RTL computes something else than FINN's python execution of the layer."""


def rtl_simulation(ctx: BuildContext) -> Step:
    """Verilator simulation of every layer the oss step synthesized (build_flows.rtl_sim):
    random inputs with stream stalls and per-channel worst-case inputs, compared with the
    layer's python execution; any mismatch stops the build. reports/rtl_sim.json."""
    from .rtl import load_layers
    from .rtl_sim import missing_tools, verify_rtl

    def run(model, cfg):
        missing = missing_tools()
        if missing:
            ctx.write("rtl_sim.json", {"skipped": f"Verilator needs {', '.join(missing)} (Debian: perl make g++)"})
            return model
        reports = ctx.timed(verify_rtl, model, load_layers(ctx.run_dir / "rtl"), 256, 0,
                            ctx.report_dir / "rtl_sim.json")
        bad = [r for r in reports if "skipped" not in r and not r["passed"]]
        if bad:
            raise RtlMismatch("RTL simulation differs from python execution: " + "; ".join(
                f"{r['layer']} ({r['inputs']} inputs): {r['mismatches']} of {r['elements']} outputs" for r in bad))
        return model
    return _failing(ctx, _named("step_a2qflow_rtl_simulation", run))


def dot_product_nodes(model: ModelWrapper) -> list:
    return [n for n in model.graph.node if is_dot_product_node(n)]


def node_attrs(node, names: tuple[str, ...]) -> dict:
    inst = getCustomOp(node)
    types = inst.get_nodeattr_types()
    return {a: inst.get_nodeattr(a) for a in names if a in types}
