"""End to end through `flow.build` for the nets beyond the MLP: CNV-, MobileNet- and
ResNet-style classifiers and the ESPCN super-resolution net (FINN issue #1088's case).
Each trains briefly (real recipe), exports, certifies and builds to HW layers with
parity after every python-executable stage, every accumulator at its certified width
and no wrap on worst-case or real inputs."""
from __future__ import annotations

import json

import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.build_flows.config import BuildConfig
from a2qflow.build_flows.pipeline import PipelineConfig, run
from a2qflow.build_flows.sizing import dot_product_nodes

from conftest import quick_train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model, dataset, board, hw_op", [
    ("cnv", "digits", "ZCU104", "MVAU"),
    ("mobilenet", "digits", "Pynq-Z1", "VVAU"),
    ("resnet", "digits", "Pynq-Z1", "ElementwiseAdd"),
    ("espcn", "photos", "Pynq-Z1", "UpsampleNearestNeighbour"),
])
def test_net_builds_with_certified_accumulators(model, dataset, board, hw_op, tmp_path_factory):
    from a2qflow.models.data import load_dataset

    ckpt = quick_train(model, "a2q+", load_dataset(dataset), tmp_path_factory, acc_bits=14)
    out = tmp_path_factory.mktemp(f"build-{model}")
    record = run(PipelineConfig(checkpoint=ckpt, export_samples=8, out=out / "run",
                                build=BuildConfig(board=board, flow="estimate", package=False, parity_samples=8)),
                 log=lambda line: None).record
    assert record["status"] == "complete" and record["a2qflow_graph"]
    reports = out / "run" / "reports"
    parity = json.loads((reports / "parity.json").read_text())
    stages = [p["stage"] for p in parity]
    assert "step_convert_to_hw" in stages and any(s.startswith("step_streamline") for s in stages), stages
    assert all(p["passed"] for p in parity), parity
    final = ModelWrapper(str(sorted((out / "run" / "finn" / "intermediate_models").glob("*.onnx"),
                                    key=lambda p: p.stat().st_mtime)[-1]))
    assert any(n.op_type.startswith(hw_op) for n in final.graph.node), [n.op_type for n in final.graph.node]
    assert all(n.domain.startswith("finn.custom_op.fpgadataflow") for n in final.graph.node)
    sizing = {s["node"]: s for s in json.loads((reports / "step_a2qflow_size_accumulators.json").read_text())}
    nodes = dot_product_nodes(final)
    assert nodes and set(sizing) == {n.name for n in nodes}
    for node in nodes:
        s = sizing[node.name]
        expected = min(s["acc_bits"], s["datatype_bits"])
        assert getCustomOp(node).get_nodeattr("accDataType") == f"INT{expected}", (node.name, s)
    overflow = json.loads((reports / "overflow.json").read_text())
    assert all(o["worst_case_wraps"] == 0 and o["data_wraps"] == 0 for o in overflow)
