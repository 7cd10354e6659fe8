"""Every safety check of a build, shown to stop a real build: a fault is injected into the
flow (a FINN step that changes the graph, weights rewritten after certification, a flipped
weight word in the RTL), the build runs, and the refusal is asserted by its message, in one
line, with run.json saying 'failed'. Then the failed build resumes and completes."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from qonnx.custom_op.registry import getCustomOp

from a2qflow.build_flows import flow
from a2qflow.build_flows.run_folder import RunFolder
from a2qflow.cli import main


@pytest.fixture
def finn_step(monkeypatch):
    """Replace one of FINN's builder steps (by name) with `wrap(original)` for one test."""
    from a2qflow.build_flows import finn_env

    finn_env.prepare_finn()
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    def replace(name, wrap):
        original = build_dataflow_step_lookup[name]
        monkeypatch.setitem(build_dataflow_step_lookup, name, wrap(original))
    return replace


@pytest.fixture
def extra_step(monkeypatch):
    """Insert a step function into a2qflow's step list right after the named step."""
    def insert(after: str, step):
        original = flow.step_list

        def with_step(*args, **kwargs):
            steps = original(*args, **kwargs)
            names = flow.step_names(steps)
            return steps[:names.index(after) + 1] + [step] + steps[names.index(after) + 1:]
        monkeypatch.setattr(flow, "step_list", with_step)
    return insert


def _build(onnx, out, *extra):
    return CliRunner().invoke(main, ["build", "--onnx", str(onnx), "--flow", "estimate", "--out", str(out), *extra])


def _mvau(model, index: int = 1):
    return [n for n in model.graph.node if n.op_type.startswith("MVAU")][index]


def _refused(result, out, message: str) -> dict:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and "INTERNAL COMPILER ERROR" not in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and message in run["error"]
    return run


def test_a_finn_step_that_changes_results_is_stopped_by_parity(tfc_a2qplus_onnx, tmp_path, finn_step):
    def breaking(tidy_up):
        def step(model, cfg):
            model = tidy_up(model, cfg)
            for node in model.graph.node:   # one threshold moved: the graph computes something else
                if node.op_type == "MultiThreshold":
                    t = model.get_initializer(node.input[1]).copy()
                    t[:, 0] += 3.0
                    model.set_initializer(node.input[1], t)
                    break
            return model
        step.__name__ = "step_tidy_up"
        return step

    finn_step("step_tidy_up", breaking)
    out = tmp_path / "run"
    run = _refused(_build(tfc_a2qplus_onnx, out), out,
                   "after step_tidy_up the graph differs from the QONNX graph")
    assert "sample" in run["error"]
    parity = json.loads((out / "reports" / "parity.json").read_text())
    assert [p["stage"] for p in parity][-1] == "step_tidy_up" and not parity[-1]["passed"]
    assert parity[0]["passed"]                                   # step_qonnx_to_finn was still exact
    assert "step_tidy_up" in run["error"]


def test_resume_after_a_failed_build_completes(tfc_a2qplus_onnx, tmp_path, finn_step, monkeypatch):
    def failing(step):
        def run(model, cfg):
            raise RuntimeError("disk full (injected)")
        run.__name__ = step.__name__
        return run

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

        m.setitem(build_dataflow_step_lookup, "step_create_dataflow_partition",
                  failing(build_dataflow_step_lookup["step_create_dataflow_partition"]))
        result = _build(tfc_a2qplus_onnx, out, "--parity-samples", "16")
    assert result.exit_code == 1 and json.loads((out / "run.json").read_text())["status"] == "failed"
    result = CliRunner().invoke(main, ["build", "--out", str(out), "--from-step", "step_create_dataflow_partition"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["from_step"] == "step_create_dataflow_partition"
    assert "step_streamline" not in run["time_per_step"]          # not run again
    assert run["flow"] == "estimate" and run["config"]["parity_samples"] == 16   # the earlier run's settings


def test_weights_rewritten_after_certification_are_stopped_by_the_overflow_check(tfc_a2qplus_onnx, tmp_path,
                                                                                 extra_step):
    def overload(model, cfg):
        """Channel 3 of the second MVAU: every weight at the type's maximum (within the
        datatype, beyond the bound), after sizing certified the original weights."""
        node = _mvau(model)
        w = model.get_initializer(node.input[1]).copy()
        w[:, 3] = getCustomOp(node).get_input_datatype(1).max()
        model.set_initializer(node.input[1], w)
        return model
    overload.__name__ = "step_test_overload_weights"

    extra_step("step_a2qflow_size_accumulators", overload)
    out = tmp_path / "run"
    _refused(_build(tfc_a2qplus_onnx, out), out, "INT12 accumulator wraps on 1 worst-case channel(s)")
    overflow = json.loads((out / "reports" / "overflow.json").read_text())
    assert [o["worst_case_wraps"] for o in overflow] == [0, 1, 0, 0]


@pytest.mark.parametrize("change, message", [
    ("signs", "layer fc.1, channel 3: a2q+ norm"),                    # same magnitudes: the layer matches,
    ("magnitudes", "weights match no layer recorded in the graph"),  # its bound breaks; else no match
])
def test_weights_changed_inside_finn_are_refused_when_sized(tfc_a2qplus_onnx, tmp_path, finn_step, change, message):
    def tamper(minimize):
        def step(model, cfg):
            model = minimize(model, cfg)
            node = _mvau(model)
            w = model.get_initializer(node.input[1]).copy()
            w[:, 3] = np.abs(w[:, 3]) if change == "signs" else w[:, 3] + 1
            model.set_initializer(node.input[1], w)
            return model
        step.__name__ = "step_minimize_bit_width_initial"
        return step

    finn_step("step_minimize_bit_width_initial", tamper)
    out = tmp_path / "run"
    _refused(_build(tfc_a2qplus_onnx, out), out, message)


def test_a_flipped_weight_word_in_the_rtl_stops_the_oss_build_and_resume_completes(demo_run, tmp_path):
    out, _ = demo_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    weights = copy / "rtl" / "MVAU_rtl_1" / "memblock.dat"
    original = weights.read_text()
    lines = original.splitlines()
    lines[3] = ("f" if lines[3][0] != "f" else "0") + lines[3][1:]
    weights.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["build", "--out", str(copy), "--from-step", "step_a2qflow_rtl_simulation"])
    _refused(result, copy, "RTL simulation differs from python execution: MVAU_rtl_1")
    sim = json.loads((copy / "reports" / "rtl_sim.json").read_text())
    assert sum(r["mismatches"] for r in sim if r.get("layer") == "MVAU_rtl_1") > 0
    assert all(r["mismatches"] == 0 for r in sim if r.get("layer") not in (None, "MVAU_rtl_1") and "skipped" not in r)
    weights.write_text(original)
    result = CliRunner().invoke(main, ["build", "--out", str(copy), "--from-step", "step_a2qflow_rtl_simulation"])
    assert result.exit_code == 0, result.output
    assert RunFolder(copy).read_run()["status"] == "complete"


def test_a_package_whose_sources_changed_is_rewritten(tfc_run, tmp_path):
    from a2qflow.build_flows.package import PackageError, ensure_package, package_is_current, sim_graph
    from qonnx.core.modelwrapper import ModelWrapper
    from a2qflow.deploy.manifest import sha256_file

    run = tmp_path / "run"
    shutil.copytree(tfc_run, run)
    folder = RunFolder(run)
    assert package_is_current(folder)
    graph, _ = sim_graph(folder)
    original = graph.read_bytes()
    graph.write_bytes(original + b"\x00")               # a damaged HW graph: refused by name, never shipped
    assert not package_is_current(folder)
    with pytest.raises(PackageError, match=f"{graph.name}: not a readable ONNX graph"):
        ensure_package(folder, log=lambda line: None)
    graph.write_bytes(original)
    model = ModelWrapper(str(graph))                    # the HW graph changed after packaging: checksums differ
    model.set_metadata_prop("edited", "after packaging")
    model.save(str(graph))
    assert not package_is_current(folder)
    ensure_package(folder, log=lambda line: None)
    manifest = json.loads((run / "package" / "manifest.json").read_text())
    assert manifest["files"][manifest["hw_graph"]]["sha256"] == sha256_file(graph)
    assert package_is_current(folder)
    shipped = run / "package" / manifest["hw_graph"]
    shipped.write_bytes(shipped.read_bytes()[:-1])      # the shipped copy damaged
    assert not package_is_current(folder)


def _weights_at_the_bound(method_budget: float, channels: int, fan_in: int, w_max: int, scale: float,
                          seed: int) -> np.ndarray:
    """Integer weights (channels, fan_in) whose positive and negative parts each sum to
    scale * budget / 2 (A2Q+'s norm is 2 * max of the two), spread at random over the row,
    each weight within +-w_max: new weights as a retrained or fine-tuned model might bring."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((channels, fan_in), np.int64)
    half = int(scale * method_budget / 2)
    for row in rows:
        order = rng.permutation(fan_in)
        for sign, part in ((1, order[: fan_in // 2]), (-1, order[fan_in // 2:])):
            for _ in range(half):
                free = part[np.abs(row[part]) < w_max]
                row[rng.choice(free)] += sign
    return rows


def test_any_weights_within_the_bound_run_bit_exact_on_the_built_accumulator(demo_run, tmp_path):
    """What runtime-writeable weights rely on: a layer built for P stays exact in RTL for ANY
    weights the certificate accepts at P, not only the trained ones. New weights at the edge
    of the bound are written into the built layer's weight memory (FINN's own file writer) and
    the layer's RTL runs the inputs that reach every channel's extremes; weights beyond the
    bound are refused by the certificate and, loaded anyway, wrap in the same RTL."""
    from qonnx.core.modelwrapper import ModelWrapper

    from a2qflow.build_flows import rtl, rtl_sim
    from a2qflow.models import bounds, certificate

    out, _ = demo_run
    shutil.copytree(out / "rtl", tmp_path / "rtl")            # the shared run stays as built
    layer = next(x for x in rtl.load_layers(tmp_path / "rtl") if x.name == "MVAU_rtl_1")
    model = ModelWrapper(str(RunFolder(out).intermediate("step_a2qflow_rtl_simulation")))
    node = next(n for n in model.graph.node if n.name == layer.name)
    inst = getCustomOp(node)
    memblock = layer.dir / "memblock.dat"
    rewritten = tmp_path / "memblock.dat"
    inst.make_weight_file(model.get_initializer(node.input[1]), "decoupled_verilog_dat", str(rewritten))
    assert rewritten.read_text() == memblock.read_text()      # the writer reproduces the built memory
    p = int(inst.get_nodeattr("accDataType").removeprefix("INT"))
    assert p == layer.acc_bits == 12
    xtype = certificate.IntType.from_datatype(inst.get_input_datatype(0))
    wtype = certificate.IntType.from_datatype(inst.get_input_datatype(1))
    mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
    n_bits, signed = bounds.enclosing_input_type(xtype.lo, xtype.hi)
    budget = bounds.a2q_plus_l1_budget(p, n_bits)
    w_max = min(-wtype.lo, wtype.hi) - 1                     # narrow range, as FINN's RTL MVU on DSP48E1 needs

    for scale, seed, within in ((1.0, 1, True), (1.0, 2, True), (1.3, 3, False)):
        rows = _weights_at_the_bound(budget, mh, mw, w_max, scale, seed)
        cert = certificate.certify_layer(layer.name, "a2q+", p, rows, xtype, wtype)
        lo, hi = bounds.dot_product_range(rows, xtype.lo, xtype.hi)
        if within:
            certificate.check([cert])
            # the weights use the width: some channel needs all P bits (exceeds P-1 bits)
            assert max(-lo.min(), hi.max()) > 2 ** (p - 2) and cert.value_bits == p
        else:
            with pytest.raises(certificate.CertificateError, match=rf"layer {layer.name}, channel \d+: a2q\+ norm"):
                certificate.check([cert])
        model.set_initializer(node.input[1], rows.T.astype(np.float32))
        inst.make_weight_file(rows.T, "decoupled_verilog_dat", str(memblock))
        x = np.concatenate([rtl_sim.worst_case_vectors(model, layer.name), rtl_sim.random_inputs(layer, 32, seed)])
        report = rtl_sim.check_layer(model, layer.name, layer, x, tmp_path / f"sim{seed}")
        if within:
            assert report["passed"] and report["overflowing"] == 0, report
        else:   # the RTL is a P-bit accumulator: exact results wrap, the RTL equals them wrapped
            assert report["overflowing"] > 0 and report["mismatches"] > 0 and report["mismatches_vs_wrapped"] == 0
