"""Bring your own model: FINN's classic BNN-PYNQ networks (brevitas_examples.bnn_pynq, untrained,
BatchNorm statistics randomized so thresholds differ per channel), exported by brevitas with
both exporters, build from their raw exports through the CLI. Every accumulator is checked
against worst-case inputs executed through FINN's own python execution of the node (an
independent computation), including the binary XNOR layers, whose accumulator counts matching
bits (0..K) and which FINN alone sizes one bit short."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.cli import main

pytestmark = pytest.mark.slow

NETS = ["tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "cnv_1w1a", "cnv_1w2a", "cnv_2w2a"]


def _bnn(name: str, seed: int = 0):
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    model, _ = model_with_cfg(name, pretrained=False)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 3)
            m.running_var.copy_(torch.rand(n, generator=g) * 20 + 5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval(), (1, 1, 28, 28) if name.startswith("tfc") else (1, 3, 32, 32)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> exporter -> path, exported once per module."""
    from brevitas.export import export_qonnx

    out, paths = tmp_path_factory.mktemp("bnn"), {}
    for name in NETS:
        model, shape = _bnn(name)
        for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
            path = out / f"{name}_{exporter}.onnx"
            export_qonnx(model, args=torch.rand(shape), export_path=str(path), dynamo=dynamo)
            paths.setdefault(name, {})[exporter] = path
    return paths


def _worst_case_accumulators(node, model) -> tuple[int, int]:
    """The node's accumulator over inputs built to reach each channel's extremes, executed by
    FINN's own python execution of the node (exact integers, no wrap)."""
    inst = getCustomOp(node)
    w = model.get_initializer(node.input[1])                   # (K, channels)
    idt = inst.get_input_datatype(0)
    if inst.get_nodeattr("binaryXnorMode"):                   # matching bits: x = w gives K, x = not w gives 0
        inputs = np.concatenate([w.T, 1 - w.T])
    else:
        lo, hi = idt.min(), idt.max()
        inputs = np.concatenate([np.where(w.T > 0, hi, lo), np.where(w.T > 0, lo, hi)])
    generic = copy.deepcopy(node)   # FINN's generic MVAU (python execution), not the _hls/_rtl specialization
    generic.op_type, generic.domain = "MVAU", "finn.custom_op.fpgadataflow"
    inst = getCustomOp(generic)
    inst.set_nodeattr("numInputVectors", [len(inputs)])
    ctx = {node.input[0]: inputs.astype(np.float32), node.output[0]: np.zeros((len(inputs), w.shape[1]), np.float32),
           node.input[1]: w.astype(np.float32)}
    for extra in node.input[2:]:
        ctx[extra] = model.get_initializer(extra)
    inst.execute_node(ctx, model.graph)
    out = np.rint(ctx[node.output[0]])
    return int(out.min()), int(out.max())


# every TFC export on both boards; each CNV export on one board (a CNV build takes ~30 s), both
# boards and both exporters covered for each CNV variant across the three
MATRIX = [(net, exporter, board) for net in NETS[:3] for exporter in ("torchscript", "dynamo")
          for board in ("Pynq-Z1", "ZCU104")]
MATRIX += [("cnv_1w1a", "torchscript", "Pynq-Z1"), ("cnv_1w1a", "dynamo", "ZCU104"),
           ("cnv_1w2a", "torchscript", "ZCU104"), ("cnv_1w2a", "dynamo", "Pynq-Z1"),
           ("cnv_2w2a", "torchscript", "Pynq-Z1"), ("cnv_2w2a", "dynamo", "ZCU104")]


@pytest.mark.parametrize("net, exporter, board", MATRIX)
def test_bnn_pynq_export_builds_as_it_is(exports, net, exporter, board, tmp_path):
    out = tmp_path / "run"
    samples = "4" if net.startswith("cnv") else "8"   # the first two are the quantizer's extremes
    result = CliRunner().invoke(main, ["build", "--onnx", str(exports[net][exporter]), "--flow", "estimate",
                                       "--board", board, "--parity-samples", samples, "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and not run["a2qflow_graph"]
    assert "input quantizer's grid" in run["parity_reference"]
    parity = json.loads((out / "reports" / "parity.json").read_text())
    assert parity and all(p["passed"] for p in parity)
    final = ModelWrapper(str(out / "finn" / "intermediate_models" / "step_a2qflow_size_accumulators.onnx"))
    checked = 0
    for node in final.graph.node:
        if not node.op_type.startswith("MVAU"):
            continue
        acc = DataType[getCustomOp(node).get_nodeattr("accDataType")]
        lo, hi = _worst_case_accumulators(node, final)
        assert acc.min() <= lo and hi <= acc.max(), (node.name, acc.name, lo, hi)
        checked += 1
    assert checked >= 4
    overflow = json.loads((out / "reports" / "overflow.json").read_text())
    assert all(o["worst_case_wraps"] == 0 for o in overflow)
