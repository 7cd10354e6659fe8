"""One-node HW graphs for the RTL tests (test_oss_synth, test_rtl_sim): FINN RTL layers with
chosen folding and accumulator width, built directly (no training, no export)."""
from __future__ import annotations

import numpy as np


def _one_node_model(node, in_shape, out_shape, in_dt: str, out_dt: str, inits: dict):
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, list(in_shape))
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(out_shape))
    model = ModelWrapper(qonnx_make_model(helper.make_graph([node], "hw", [inp], [out]),
                                          producer_name="a2qflow-test"))
    for name, (value, dt) in inits.items():
        model.set_initializer(name, value)
        model.set_tensor_datatype(name, DataType[dt])
    model.set_tensor_datatype("inp", DataType[in_dt])
    model.set_tensor_datatype("out", DataType[out_dt])
    return model


def mvau_graph(acc_bits: int, mw: int = 16, mh: int = 16, pe: int = 2, simd: int = 4, seed: int = 0,
               idt: str = "UINT4", wdt: str = "INT4"):
    """A one-node HW graph: MVAU_rtl, UINT4 activations, INT4 weights, no activation,
    weights streamed from on-chip memory (internal_decoupled), accumulator INT<acc_bits>.
    Weights (MW x MH) are uniform in the symmetric weight range."""
    from onnx import helper
    from qonnx.core.datatype import DataType

    node = helper.make_node(
        "MVAU_rtl", ["inp", "weights"], ["out"], name="MVAU_rtl_0",
        domain="finn.custom_op.fpgadataflow.rtl", backend="fpgadataflow",
        MW=mw, MH=mh, PE=pe, SIMD=simd, inputDataType=idt, weightDataType=wdt,
        outputDataType=f"INT{acc_bits}", accDataType=f"INT{acc_bits}", noActivation=1, ActVal=0,
        binaryXnorMode=0, numInputVectors=[1], mem_mode="internal_decoupled", ram_style="distributed",
        resType="auto")
    wmax = DataType[wdt].max()
    w = np.random.default_rng(seed).integers(-wmax, wmax + 1, size=(mw, mh)).astype(np.float32)
    return _one_node_model(node, [1, mw], [1, mh], idt, f"INT{acc_bits}", {"weights": (w, wdt)})


def thresholding_graph(channels: int = 16, pe: int = 2, in_bits: int = 12, out_bits: int = 4, seed: int = 0):
    """A one-node HW graph: Thresholding_rtl, INT<in_bits> inputs -> UINT<out_bits>, sorted
    random integer thresholds per channel (2^out_bits - 1 steps), stored in the layer."""
    from onnx import helper

    steps = 2**out_bits - 1
    idt, odt = f"INT{in_bits}", f"UINT{out_bits}"
    node = helper.make_node(
        "Thresholding_rtl", ["inp", "thresh"], ["out"], name="Thresholding_rtl_0",
        domain="finn.custom_op.fpgadataflow.rtl", backend="fpgadataflow",
        NumChannels=channels, PE=pe, numSteps=steps, inputDataType=idt, weightDataType=idt,
        outputDataType=odt, ActVal=0, numInputVectors=[1])
    half = 2 ** (in_bits - 1)
    t = np.sort(np.random.default_rng(seed).integers(-half, half, size=(channels, steps)), axis=1)
    return _one_node_model(node, [1, channels], [1, channels], idt, odt, {"thresh": (t.astype(np.float32), idt)})
