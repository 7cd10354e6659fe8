"""The accelerator's integer boundary, as FINN's own examples draw it: integers in (the
dataset's native codes, e.g. digits' 0..16 or 8-bit pixels), integers out (the last
layer's accumulator), and what is float around them on the host.

* Input: `integer_input` puts the dataset's scale in front of the graph (qonnx
  MergeONNXModels with a one-node Mul, as FINN's end-to-end examples prepend ToTensor) and
  annotates the input with the integer datatype; FINN's streamlining then absorbs the scale
  into the input quantizer's thresholds, which become integer thresholds on the codes.
* Output: `host_output` runs FINN's step_convert_to_hw with the trailing float Mul/Add (the
  output dequantization: per-channel scale, bias) and a leading Reshape/Flatten detached, so
  they stay plain ONNX nodes that step_create_dataflow_partition leaves in FINN's parent graph
  (the host side) instead of becoming float ElementwiseMul or slow Reshape HW layers. The
  package records them as data (`host_ops`) and the board driver applies them.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

HOST_OUTPUT_OPS = ("Mul", "Add")          # with a constant operand: the output dequantization
HOST_INPUT_OPS = ("Reshape", "Flatten")   # a view of the input


def integer_input(model: ModelWrapper, dtype: str, scale: float) -> ModelWrapper:
    """The graph taking the dataset's integer codes (x = code * scale) instead of x."""
    from qonnx.transformation.merge_onnx_models import MergeONNXModels

    meta = {p.key: p.value for p in model.model.metadata_props}
    shape = model.get_tensor_shape(model.graph.input[0].name)
    inp = helper.make_tensor_value_info("native_input", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("native_scaled", TensorProto.FLOAT, shape)
    factor = helper.make_tensor("native_scale", TensorProto.FLOAT, [], [scale])
    pre = helper.make_graph([helper.make_node("Mul", ["native_input", "native_scale"], ["native_scaled"])],
                            "native_input", [inp], [out], [factor])
    model = model.transform(MergeONNXModels(ModelWrapper(helper.make_model(pre, opset_imports=[
        helper.make_opsetid("", 13)]))))
    for key, value in meta.items():   # MergeONNXModels builds a new ModelProto without them
        model.set_metadata_prop(key, value)
    model.set_tensor_datatype(model.graph.input[0].name, DataType[dtype])
    return model


def _trailing_host_ops(model: ModelWrapper) -> list:
    """Mul/Add-by-constant nodes at the end of the graph, in order."""
    nodes, tensor = [], model.graph.output[0].name
    while True:
        node = model.find_producer(tensor)
        if node is None or node.op_type not in HOST_OUTPUT_OPS or model.get_initializer(node.input[1]) is None:
            return nodes
        if len(model.find_consumers(node.input[0]) or []) != 1:
            return nodes
        nodes.insert(0, node)
        tensor = node.input[0]


def _copy(node) -> onnx.NodeProto:
    return onnx.NodeProto.FromString(node.SerializeToString())


def _detach_leading(model: ModelWrapper) -> tuple[ModelWrapper, list]:
    head = []
    while True:
        gin = model.graph.input[0]
        consumers = model.find_consumers(gin.name) or []
        if len(consumers) != 1 or consumers[0].op_type not in HOST_INPUT_OPS:
            return model, head
        node = consumers[0]
        inits = {i: model.get_initializer(i) for i in node.input[1:] if model.get_initializer(i) is not None}
        new_in = node.output[0]
        shape, dt = model.get_tensor_shape(new_in), model.get_tensor_datatype(gin.name)
        saved = _copy(node)
        model.graph.node.remove(node)
        for vi in [v for v in model.graph.value_info if v.name == new_in]:
            model.graph.value_info.remove(vi)
        model.graph.input.remove(gin)
        model.graph.input.insert(0, helper.make_tensor_value_info(new_in, TensorProto.FLOAT, shape))
        model.set_tensor_datatype(new_in, dt)
        head.append((saved, gin, inits))


def _reattach_leading(model: ModelWrapper, head: list) -> ModelWrapper:
    from qonnx.transformation.infer_shapes import InferShapes

    for saved, gin, inits in reversed(head):
        current = model.graph.input[0]
        saved.output[0] = current.name
        dt = model.get_tensor_datatype(current.name)
        model.graph.input.remove(current)
        model.graph.value_info.append(current)
        model.graph.input.insert(0, gin)
        model.graph.node.insert(0, saved)
        for name, value in inits.items():
            model.set_initializer(name, value)
        model.set_tensor_datatype(gin.name, dt)
    return model.transform(InferShapes()) if head else model


def _with_tail_detached(step, model: ModelWrapper, cfg) -> ModelWrapper:
    from qonnx.transformation.infer_shapes import InferShapes

    tail = _trailing_host_ops(model)
    if not tail:
        return step(model, cfg)
    out_vi, cut = model.graph.output[0], tail[0].input[0]
    saved = [_copy(n) for n in tail]
    inits = {n.input[1]: model.get_initializer(n.input[1]) for n in tail}
    for node in tail:
        model.graph.node.remove(node)
    shape, dt = model.get_tensor_shape(cut), model.get_tensor_datatype(cut)
    model.graph.output.remove(out_vi)
    for vi in [v for v in model.graph.value_info if v.name == cut]:   # an output, not a value_info
        model.graph.value_info.remove(vi)
    model.graph.output.append(helper.make_tensor_value_info(cut, TensorProto.FLOAT, shape))
    model.set_tensor_datatype(cut, dt)
    model = step(model, cfg)
    new_out = model.graph.output[0].name   # FINN's step may have renamed it
    saved[0].input[0] = new_out
    new_shape, new_dt = model.get_tensor_shape(new_out), model.get_tensor_datatype(new_out)
    model.graph.output.remove(model.graph.output[0])
    model.graph.value_info.append(helper.make_tensor_value_info(new_out, TensorProto.FLOAT, new_shape))
    model.set_tensor_datatype(new_out, new_dt)
    for node in saved:
        model.graph.node.append(node)
    for name, value in inits.items():
        model.set_initializer(name, value)
    model.graph.output.append(out_vi)
    return model.transform(InferShapes())


def host_output(step, model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's `step` (step_convert_to_hw) with the output dequantization and a leading
    reshape kept as plain ONNX nodes: they end up on the host side of the partition.
    (finn-plus has a filter for the output Mul, InferElementwiseBinaryOperation's
    reject_output_dequant, which its builder step does not use.)"""
    model, head = _detach_leading(model)
    model = _with_tail_detached(step, model, cfg)
    return _reattach_leading(model, head)
