"""Streamline steps for graphs FINN's `step_streamline` leaves unfinished.

FINN's `step_streamline` (Streamline -> lower convs -> NHWC -> Streamline) assumes a chain.
Two of a2qflow's networks are not one:

* Residual nets (`ResNet`): the stem's dequantization Mul sits on the fork to the skip
  branch, and Streamline never moves a node that feeds a fork, so a float Mul stays
  between two layers and the next conv stays a float Im2Col + MatMul (dataflow
  partitioning then fails). `step_streamline_residual` moves linear ops off forks first
  (`MoveLinearPastFork`), moves the equal scales of the two add inputs past the add only
  when neither producer is a fork (`MoveLinearPastEltwiseAddNoFork`: FINN's
  `MoveLinearPastEltwiseAdd` rewires a forking producer's other consumers to the add's
  output, silently changing results), after lowering moves the layout transposes past
  forks and adds so that they cancel or end up absorbed into thresholds, and rounds/clips
  the skip quantizer's thresholds to its unsigned input's range (FINN's Thresholding
  layer rejects negative thresholds on unsigned inputs).
* Nearest-neighbour upsampling (`ESPCN`): after lowering, the ONNX Resize sits between
  NHWC->NCHW and NCHW->NHWC transposes, and finn-plus 1.6.1's `step_convert_to_hw` only
  calls `InferUpsample` when the graph has an `Upsample` node, so a `Resize` is never
  converted. `step_streamline_upsample` makes the Resize NHWC (the transposes then cancel)
  and converts it to `UpsampleNearestNeighbour` (`step_convert_resize_to_hw`).

Every step has FINN's signature `step(model, cfg) -> model`, uses FINN/qonnx
transformations (plus two small guarded variants of FINN's own), and on a graph without
forks, joins or Resize nodes computes the same graph as FINN's `step_streamline`.
`streamline_kind(graph)` says which streamline step a graph needs (`STREAMLINE_STEPS`).
"""
from __future__ import annotations

from typing import Callable

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.composed import ComposedTransformation
from qonnx.util.basic import get_by_name

Step = Callable[[ModelWrapper, object], ModelWrapper]

RESAMPLE_OPS = ("Resize", "Upsample")


# ---------------------------------------------------------------- graph structure


def dynamic_inputs(model: ModelWrapper, node) -> list[str]:
    """The node's inputs that are computed (not initializers, not empty)."""
    return [i for i in node.input if i and model.get_initializer(i) is None]


def forked_tensors(model: ModelWrapper) -> list[str]:
    """Tensors read by more than one node (the start of a branch, e.g. a residual skip)."""
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in set(dynamic_inputs(model, node)):
            readers[name] = readers.get(name, 0) + 1
    return [name for name, count in readers.items() if count > 1]


def join_nodes(model: ModelWrapper) -> list:
    """Nodes adding or multiplying two computed tensors (where branches meet)."""
    return [n for n in model.graph.node
            if n.op_type in ("Add", "Sub", "Mul", "Concat") and len(dynamic_inputs(model, n)) > 1]


def has_branches(model: ModelWrapper) -> bool:
    return bool(forked_tensors(model) or join_nodes(model))


def has_resample(model: ModelWrapper) -> bool:
    """A nearest-neighbour Resize/Upsample (the only mode FINN has a layer for)."""
    for node in model.graph.node:
        mode = get_by_name(node.attribute, "mode") if node.op_type in RESAMPLE_OPS else None
        if node.op_type in RESAMPLE_OPS and (mode is None or mode.s.decode() == "nearest"):
            return True
    return False


# ---------------------------------------------------------------- transformations


class MoveLinearPastEltwiseAddNoFork(Transformation):
    """FINN's `MoveLinearPastEltwiseAdd` ((x*C) + (y*C) -> (x+y)*C, (x+A) + (y+B) ->
    (x+y) + (A+B)) restricted to producers that feed only the add.

    FINN's version moves the first producer past the add by renaming tensors; when that
    producer also feeds another branch, that branch then reads the add's output instead
    (the result changes without any error). Here a forking producer is first duplicated per
    consumer with FINN's `MoveLinearPastFork`, then FINN's transformation runs."""

    def _forking_producers(self, model: ModelWrapper) -> list:
        found = []
        for node in model.graph.node:
            if node.op_type != "Add" or len(dynamic_inputs(model, node)) != 2 or len(node.input) != 2:
                continue
            producers = [model.find_producer(i) for i in node.input]
            if any(p is None for p in producers) or producers[0] is producers[1]:
                continue
            if producers[0].op_type != producers[1].op_type or producers[0].op_type not in ("Add", "Mul"):
                continue
            if any(len(p.input) < 2 or model.get_initializer(p.input[1]) is None for p in producers):
                continue
            found += [p for p in producers if model.is_fork_node(p)]
        return found

    def apply(self, model: ModelWrapper):
        from finn.transformation.streamline.reorder import MoveLinearPastEltwiseAdd, MoveLinearPastFork

        forking = self._forking_producers(model)
        if forking:
            before = len(model.graph.node)
            model = model.transform(MoveLinearPastFork())
            if len(model.graph.node) != before:
                return model, True
            return model, False  # could not split the fork: leave this add alone
        return MoveLinearPastEltwiseAdd().apply(model)


def _same_perm_transposes(model: ModelWrapper, producers) -> bool:
    if not all(p is not None and p.op_type == "Transpose" for p in producers):
        return False
    return len({tuple(get_by_name(p.attribute, "perm").ints) for p in producers}) == 1


def move_transpose_past_join_add() -> Transformation:
    """FINN's `MoveTransposePastJoinAdd` (Add(T(x), T(y)) -> T(Add(x, y))), moving only
    transposes with the same permutation (FINN's own check of the permutations has no
    effect: it would move mismatched ones too)."""
    from finn.transformation.streamline.reorder import MoveTransposePastJoinAdd

    class MoveTransposePastJoinAddSamePerm(MoveTransposePastJoinAdd):
        def are_producers_identical(self, model, producers):
            return _same_perm_transposes(model, producers)

    return MoveTransposePastJoinAddSamePerm()


def branch_streamline() -> Transformation:
    """FINN's Streamline, with linear ops moved off forks and past joining adds, repeated
    until nothing changes (Streamline itself never reports a change, so the last pass
    always ends with it)."""
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MoveLinearPastFork

    return ComposedTransformation([MoveLinearPastFork(), Streamline(), MoveLinearPastEltwiseAddNoFork()])


def branch_layouts() -> Transformation:
    """After lowering: move transposes past forks and joining adds, cancel opposite pairs,
    absorb them into thresholds, max-pools and nearest-neighbour resizes (NHWC)."""
    from finn.transformation.streamline.absorb import (
        AbsorbConsecutiveTransposes,
        AbsorbTransposeIntoMultiThreshold,
        AbsorbTransposeIntoResize,
    )
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC, MoveTransposePastFork

    return ComposedTransformation([
        MoveTransposePastFork(), AbsorbConsecutiveTransposes(), AbsorbTransposeIntoMultiThreshold(),
        move_transpose_past_join_add(), MakeMaxPoolNHWC(), AbsorbTransposeIntoResize(),
        AbsorbConsecutiveTransposes(),
    ])


def resample_layouts() -> Transformation:
    """Nearest-neighbour Resize between NHWC->NCHW and NCHW->NHWC transposes: make it
    NHWC and let the transposes cancel."""
    from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes, AbsorbTransposeIntoResize

    return ComposedTransformation([AbsorbTransposeIntoResize(), AbsorbConsecutiveTransposes()])


# ---------------------------------------------------------------- steps


def _finish(model: ModelWrapper) -> ModelWrapper:
    """The end of FINN's step_streamline: TopK absorption and layouts."""
    from finn.transformation.streamline.absorb import AbsorbScalarMulAddIntoTopK
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    model = model.transform(AbsorbScalarMulAddIntoTopK())
    model = model.transform(InferDataLayouts())
    return model.transform(RemoveUnusedTensors())


def step_streamline_residual(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_streamline for graphs with forks and joins (residual adds): every
    Streamline also moves linear ops off forks and past joining adds, and after lowering
    the layout transposes are moved past forks and adds until they cancel or are absorbed.
    Nearest-neighbour Resize nodes also become NHWC UpsampleNearestNeighbour layers."""
    from finn.transformation.streamline.absorb import (
        AbsorbConsecutiveTransposes,
        AbsorbScalarBiasIntoMultiThreshold,
        AbsorbTransposeIntoMultiThreshold,
    )
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    model = model.transform(AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(branch_streamline())
    if model.get_nodes_by_op_type("Conv"):
        model = model.transform(LowerConvsToMatMul())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(AbsorbTransposeIntoMultiThreshold())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(AbsorbConsecutiveTransposes())
    model = model.transform(branch_layouts())
    model = model.transform(ConvertBipolarMatMulToXnorPopcount())
    model = model.transform(branch_streamline())
    model = clip_thresholds_to_input_range(model)
    model = convert_resize_to_hw(model)
    return _finish(model)


def clip_thresholds_to_input_range(model: ModelWrapper) -> ModelWrapper:
    """FINN's RoundAndClipThresholds where a MultiThreshold on integer data has thresholds
    outside the input's range. A skip branch's signed quantizer reads the unsigned output
    of a ReLU quantizer: its negative thresholds are always passed, and FINN's Thresholding
    layer rejects them (step_minimize_bit_width asserts non-negative thresholds for unsigned
    inputs before FINN itself rounds and clips). Rounding up and clipping is exact on
    integer inputs; graphs without such thresholds are left as they are."""
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds

    for node in model.get_nodes_by_op_type("MultiThreshold"):
        dt = model.get_tensor_datatype(node.input[0])
        thresholds = model.get_initializer(node.input[1])
        if thresholds is not None and dt.is_integer() and (
                thresholds.min() < dt.min() or thresholds.max() > dt.max() + 1):
            return model.transform(RoundAndClipThresholds())
    return model


def convert_resize_to_hw(model: ModelWrapper) -> ModelWrapper:
    """NHWC nearest-neighbour Resize/Upsample nodes on integer data -> FINN's
    UpsampleNearestNeighbour (what step_convert_to_hw would do if it looked for Resize)."""
    from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    if not has_resample(model):
        return model
    model = model.transform(resample_layouts())
    model = model.transform(InferDataLayouts())
    return model.transform(InferUpsample())


def step_convert_resize_to_hw(model: ModelWrapper, cfg) -> ModelWrapper:
    """A step of its own for FINN's flow: run after FINN's step_streamline and before
    step_convert_to_hw (which turns the transposes around the Resize into Shuffle layers)
    on graphs with nearest-neighbour upsampling; a no-op without Resize/Upsample."""
    return convert_resize_to_hw(model)


def step_streamline_upsample(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_streamline, then the nearest-neighbour Resize made NHWC and converted to
    UpsampleNearestNeighbour (finn-plus 1.6.1's step_convert_to_hw leaves Resize unmapped)."""
    from finn.builder.build_dataflow_steps import step_streamline

    return convert_resize_to_hw(step_streamline(model, cfg))


def step_streamline_chain(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's own step_streamline, for graphs without forks, joins or resampling."""
    from finn.builder.build_dataflow_steps import step_streamline

    return step_streamline(model, cfg)


# config.STREAMLINE_KINDS -> the step that streamlines such a graph
STREAMLINE_STEPS: dict[str, Step] = {
    "finn": step_streamline_chain,
    "residual": step_streamline_residual,
    "upsample": step_streamline_upsample,
}


def streamline_kind(graph: ModelWrapper) -> str:
    """Which streamline step a graph needs, decided by its structure (a ResNet-like graph
    under any name gets the residual step)."""
    if has_branches(graph):
        return "residual"
    if has_resample(graph):
        return "upsample"
    return "finn"
