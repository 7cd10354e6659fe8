"""Streamline steps for residual graphs: a small a2q+ ResNet reaches FINN HW layers with
python-execution parity, and the guarded transformations do not change results where
FINN's own ones do."""
import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from a2qflow.build_flows import finn_env, model_steps
from a2qflow.build_flows.steps import execute

from conftest import quick_train

HW_DOMAIN = "finn.custom_op.fpgadataflow"


@pytest.fixture(scope="module")
def resnet_tidy(digits, tmp_path_factory):
    """A 2+1-epoch a2q+ ResNet (stem, one residual block per stage, 1x1 conv between
    stages), exported and through FINN's step_qonnx_to_finn and step_tidy_up, with its test
    inputs and the brevitas outputs for them."""
    from a2qflow.build_flows import reference
    from a2qflow.models.export import export_checkpoint

    ckpt = quick_train("resnet", "a2q+", digits, tmp_path_factory, acc_bits=14)
    path, _, _ = export_checkpoint(ckpt, tmp_path_factory.mktemp("resnet-onnx") / "resnet.onnx", samples=32)
    ref = reference.from_checkpoint(ckpt, 32)
    x, expected = ref.x, ref.expected
    tmp = tmp_path_factory.mktemp("resnet-finn")
    finn_env.prepare_finn(tmp / "finn_tmp")
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup as finn_steps

    cfg = _cfg(tmp / "finn")
    model = ModelWrapper(str(path))
    for name in ("step_qonnx_to_finn", "step_tidy_up"):
        model = finn_steps[name](model, cfg)
    return model, cfg, x, expected


def _cfg(out):
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    return DataflowBuildConfig(output_dir=str(out), synth_clk_period_ns=10.0, board="Pynq-Z1",
                               fpga_part="xc7z020clg400-1", generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
                               standalone_thresholds=True, steps=[])


def _assert_parity(model, x, expected):
    out = execute(model, x).reshape(expected.shape)
    assert np.abs(out - expected).max() < 1e-4
    assert (out.argmax(1) == expected.argmax(1)).all()


def test_residual_resnet_reaches_hw_layers_with_parity(resnet_tidy):
    from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup as finn_steps

    model, cfg, x, expected = resnet_tidy
    # the graph's forks pick the residual step, whatever the model is called
    assert model_steps.streamline_kind(model) == "residual"
    step = model_steps.STREAMLINE_STEPS["residual"]
    assert step is model_steps.step_streamline_residual

    model = step(model, cfg)
    _assert_parity(model, x, expected)
    assert not [n for n in model.graph.node if n.op_type == "Mul" and model.is_fork_node(n)]
    model = finn_steps["step_convert_to_hw"](model, cfg)
    _assert_parity(model, x, expected)

    non_hw = [n for n in model.graph.node if not n.domain.startswith(HW_DOMAIN)]
    assert [n.op_type for n in non_hw] == ["Transpose"] and non_hw[0].input[0] == model.graph.input[0].name
    assert model.analysis(unsupported_layers)[0] is True  # what step_create_dataflow_partition checks
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ElementwiseAdd") == 2 and ops.count("DuplicateStreams") == 2
    assert ops.count("MVAU") == 7 and "Pool" in ops and "ConvolutionInputGenerator" in ops
    # the adds see the integer outputs of the two branches' shared quantizer
    for add in model.get_nodes_by_op_type("ElementwiseAdd"):
        assert all(model.get_tensor_datatype(i).is_integer() for i in add.input)


def test_finns_own_streamline_leaves_the_fork_in_float(resnet_tidy):
    """Why the step exists: after FINN's step_streamline the stem's scale Mul still feeds
    the fork, the next conv stays a float Im2Col + MatMul and partitioning fails."""
    from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup as finn_steps

    model, cfg, _, _ = resnet_tidy
    plain = finn_steps["step_streamline"](model, cfg)
    assert [n for n in plain.graph.node if n.op_type == "Mul" and plain.is_fork_node(n)]
    plain = finn_steps["step_convert_to_hw"](plain, cfg)
    assert {"MatMul", "Im2Col"} <= {n.op_type for n in plain.graph.node}
    assert plain.analysis(unsupported_layers)[0] is False


def _mul_fork_into_add():
    """y = x*c + z*c, and x*c also feeds a Relu (a second output): the Mul is a fork."""
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "z", "y", "r")]
    nodes = [helper.make_node("Mul", ["x", "c"], ["a"]), helper.make_node("Mul", ["z", "c2"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Relu", ["a"], ["r"])]
    graph = helper.make_graph(nodes, "fork", vi[:2], vi[2:])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("c", np.float32(3.0))
    model.set_initializer("c2", np.float32(3.0))
    return model.transform(InferShapes())


def test_add_move_is_fork_safe():
    from finn.core.onnx_exec import execute_onnx
    from finn.transformation.streamline.reorder import MoveLinearPastEltwiseAdd

    inputs = {"x": np.array([[-2, -1, 1, 2]], np.float32), "z": np.ones((1, 4), np.float32)}
    model = _mul_fork_into_add()
    ref = execute_onnx(model, inputs)
    finn = execute_onnx(model.transform(MoveLinearPastEltwiseAdd()), inputs)
    assert not np.allclose(finn["r"], ref["r"])  # FINN's rewiring: the Relu now reads the sum
    moved = model.transform(model_steps.MoveLinearPastEltwiseAddNoFork())
    ours = execute_onnx(moved, inputs)
    assert all(np.array_equal(ours[k], ref[k]) for k in ("y", "r"))
    assert len(moved.get_nodes_by_op_type("Mul")) == 2  # one Mul moved past the add, one kept for the Relu


def test_chain_graph_keeps_finns_step():
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Relu", ["t"], ["y"])],
                              "chain", vi[:1], vi[1:])
    chain = ModelWrapper(qonnx_make_model(graph))
    assert model_steps.streamline_kind(chain) == "finn"
    assert model_steps.streamline_kind(_mul_fork_into_add()) == "residual"
