"""The accelerator as a whole (issue 13): integer streams at its boundary, every layer FINN's
RTL, stitched into one design, simulated cycle-accurately in Verilator on the whole test set,
bit-exact against FINN's python execution and the trained model; the simulated board runs that
simulation. And the check can fail: a flipped weight word, or accumulators one bit below P on
the certificate's worst-case inputs, give wrong outputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.build_flows import stitch
from a2qflow.build_flows.run_folder import RunFolder
from a2qflow.build_flows.steps import execute, python_executable
from a2qflow.models import bounds

pytestmark = pytest.mark.slow


def test_demo_builds_an_all_integer_all_rtl_accelerator_simulated_whole(demo_run):
    out, output = demo_run
    folder = RunFolder(out)
    run = folder.read_run()
    assert run["status"] == "complete" and run["flow"] == "oss"
    boundary = folder.read_report("boundary.json")
    assert boundary["integer_input"] == {"dtype": "UINT5", "scale": 1 / 16}   # digits' pixels 0..16
    hw = ModelWrapper(str(folder.intermediate("step_a2qflow_accelerator_simulation")))
    assert all(n.op_type.endswith("_rtl") for n in hw.graph.node), [n.op_type for n in hw.graph.node]
    assert hw.get_tensor_datatype(hw.graph.input[0].name).name == "UINT5"
    assert hw.get_tensor_datatype(hw.graph.output[0].name).is_integer()
    sim = folder.read_report("accelerator_sim.json")
    assert sim["samples"] == 359 and sim["mismatches"] == 0 and sim["mismatches_with_stalls"] == 0
    assert sim["vs_trained_model"]["passed"] and sim["vs_trained_model"]["argmax_agreement"] == 1.0
    assert sim["cycles_per_image"] == sim["finn_estimated_cycles"] == 64   # the folding's slowest layer
    assert 0 < sim["latency_cycles"] < sim["finn_estimated_latency_cycles"]  # layers overlap
    assert any(d > 2 for d in sim["fifo"]["depths"].values())               # sized from observed occupancy
    assert "whole accelerator (Verilator, stitched FINN RTL): 359 images, 0 mismatches" in output


def test_simulated_board_runs_the_cycle_accurate_design(demo_run):
    out, output = demo_run
    bench = json.loads((out / "reports" / "bench-sim" / "bench.json").read_text())
    assert bench["status"] == "complete" and bench["cycle_accurate"]
    assert "cycle-accurate RTL" in bench["label"] and "cycle-accurate" in bench["driver"]
    shown = (out / "reports" / "bench-sim" / "bench.md").read_text()
    assert bench["label"] in shown and "python execution" not in shown     # the report says what ran
    assert bench["accuracy"]["host_mismatches"] == 0
    sim = json.loads((out / "reports" / "accelerator_sim.json").read_text())
    best = max(row["throughput[images/s]"] for row in bench["throughput"])
    # batches approach the steady state the whole-design simulation measured
    assert 0.9 * sim["images_per_s"] <= best <= sim["images_per_s"] * 1.001
    assert bench["latency_batch1"]["accelerator_on_buffers"]["p50_ms"] == pytest.approx(sim["latency_us"] / 1000,
                                                                                        rel=0.05)
    manifest = json.loads((out / "package" / "manifest.json").read_text())
    assert manifest["accelerator_sim"]["dir"] == "sim/accelerator" and "sim/accelerator/Vtop" in manifest["files"]


def test_a_flipped_weight_word_changes_the_outputs(demo_run, tmp_path):
    out, _ = demo_run
    design_dir = tmp_path / "design"
    shutil.copytree(out / "accelerator" / "design", design_dir)
    design = stitch.Design.load(design_dir)
    folder = RunFolder(out)
    codes = np.rint(np.load(out / "reference" / "input.npy")[:64] * 16).reshape(64, -1)
    clean = stitch.simulate(design, design_dir / "obj" / "Vtop", codes, tag="clean")["outputs"]
    weights = design_dir / "MVAU_rtl_1_memblock.dat"
    lines = weights.read_text().splitlines()
    lines[5] = ("8" if lines[5][0] != "8" else "0") + lines[5][1:]      # one 4-bit weight changed
    weights.write_text("\n".join(lines) + "\n")
    flipped = stitch.simulate(design, design_dir / "obj" / "Vtop", codes, tag="flipped")["outputs"]
    assert (flipped != clean).sum() > 0
    assert folder.read_report("accelerator_sim.json")["mismatches"] == 0   # the real one was exact


@pytest.mark.parametrize("below", [0, 1])
def test_accumulators_one_bit_below_p_give_wrong_outputs_on_worst_case_inputs(demo_run, tmp_path, below):
    """The demo's first MVAU alone, stitched (with FINN's FIFOs) and simulated on the
    certificate's worst-case inputs: exact at P, wrong where a dot product overflows P-1."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig  # noqa: F401 - FINN's settings
    from qonnx.core.datatype import DataType

    out, _ = demo_run
    hw = ModelWrapper(str(RunFolder(out).intermediate("step_a2qflow_accelerator_simulation")))
    mvau = next(n for n in hw.graph.node if n.op_type == "MVAU_rtl")
    single = _single_node(hw, mvau)
    inst = getCustomOp(single.graph.node[0])
    p = DataType[inst.get_nodeattr("accDataType")].bitwidth()
    for attr in ("accDataType", "outputDataType"):
        inst.set_nodeattr(attr, f"INT{p - below}")
    single.set_tensor_datatype(single.graph.output[0].name, DataType[f"INT{p - below}"])
    weights = single.get_initializer(mvau.input[1])               # (K, channels)
    idt = inst.get_input_datatype(0)
    x_max, x_min = bounds.worst_case_inputs(weights.T, int(idt.min()), int(idt.max()))
    codes = np.concatenate([x_max, x_min]).astype(np.int64)
    exact = np.rint(execute(python_executable(single), codes.astype(np.float32)))
    exact = exact.reshape(len(codes), -1).astype(np.int64)
    from a2qflow.hw_configs import get_board

    board = get_board("Pynq-Z2")
    graph = stitch.stream_infrastructure(single, board.part, board.clk_ns)
    design = stitch.write_design(graph, tmp_path / "design", monitors=False)
    binary, _ = stitch.compile_design(design)
    rtl = stitch.simulate(design, binary, codes, stall_seed=3)["outputs"]
    overflowing = (bounds.wrap_signed(exact, p - below) != exact)
    if below == 0:
        assert not overflowing.any() and np.array_equal(rtl, exact)
    else:
        assert overflowing.sum() > 0
        assert np.array_equal(rtl != exact, overflowing)                      # wrong exactly where it overflows
        assert np.array_equal(rtl, bounds.wrap_signed(exact, p - 1))          # two's-complement wrap


def _single_node(model: ModelWrapper, node) -> ModelWrapper:
    """A graph holding one node of `model`, with its initializers and datatypes."""
    from onnx import TensorProto, helper
    from qonnx.util.basic import qonnx_make_model

    shape_in = model.get_tensor_shape(node.input[0])
    shape_out = model.get_tensor_shape(node.output[0])
    graph = helper.make_graph([node], "single", [helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT,
                                                                               shape_in)],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, shape_out)])
    single = ModelWrapper(qonnx_make_model(graph, producer_name="a2qflow-test"))
    for name in node.input[1:]:
        single.set_initializer(name, model.get_initializer(name))
        single.set_tensor_datatype(name, model.get_tensor_datatype(name))
    single.set_tensor_datatype(node.input[0], model.get_tensor_datatype(node.input[0]))
    single.set_tensor_datatype(node.output[0], model.get_tensor_datatype(node.output[0]))
    return single


def test_a_stalled_design_names_the_node_the_data_stopped_at(tmp_path):
    """A deadlock in the stitched design (the harness times out) names the node whose input
    FIFO still holds words while every FIFO after it is empty."""
    from a2qflow.build_flows.stitch import Design, _where_stalled

    design = Design(tmp_path, [], [], [], 8, 8, [1, 1], [1, 1], "UINT4", "INT8",
                    monitors=["FIFO_0", "FIFO_1", "FIFO_2"],
                    nodes=["FIFO_0", "Thresholding_rtl_0", "FIFO_1", "MVAU_rtl_1", "FIFO_2", "MVAU_rtl_2"])
    stalled = "fifo 0 count 3\nfifo 1 count 17\nfifo 2 count 0\n"
    assert _where_stalled(design, stalled) == ("; data stops at MVAU_rtl_1: its input FIFO FIFO_1 holds 17 words "
                                               "and every FIFO after it is empty")
    assert _where_stalled(design, "fifo 0 count 0\nfifo 1 count 0\nfifo 2 count 0\n") == ""
    assert "data stops at MVAU_rtl_2" in _where_stalled(design, "fifo 2 count 5\n")
