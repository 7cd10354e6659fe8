"""Reading QONNX graphs: refused with one line naming the file and the reason when they
cannot be read, and the facts a graph records about itself (a2qflow metadata)."""
from __future__ import annotations

import json
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.errors import A2qflowError


class GraphError(A2qflowError, ValueError):
    """An ONNX file that cannot be read or used; the message names the file and the reason."""


def load_graph(path: str | Path) -> ModelWrapper:
    """An ONNX/QONNX graph from a file, checked to be a usable model (one input, one output)."""
    path = Path(path)
    if not path.exists():
        raise GraphError(f"{path}: no such ONNX file")
    if not path.is_file():
        raise GraphError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise GraphError(f"{path}: empty file, not an ONNX model")
    try:
        model = ModelWrapper(str(path))
    except Exception as err:  # onnx raises DecodeError, ValidationError and others
        raise GraphError(f"{path} is not a readable ONNX model: {type(err).__name__}: {err}") from err
    if len(model.graph.node) == 0:
        raise GraphError(f"{path}: the graph has no nodes")
    inputs = [i for i in model.graph.input if model.get_initializer(i.name) is None]   # TorchScript lists weights too
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise GraphError(f"{path}: the graph has {len(inputs)} inputs and {len(model.graph.output)} "
                         "outputs; a2qflow builds single-input, single-output networks")
    return model


def metadata(model: ModelWrapper, key: str, default=None):
    """A JSON value a2qflow recorded in the graph (`a2qflow.<key>`), or `default`."""
    raw = model.get_metadata_prop(f"a2qflow.{key}")
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError as err:
        raise GraphError(f"graph metadata 'a2qflow.{key}' is not JSON: {err}") from err


def cleaned(model: ModelWrapper) -> ModelWrapper:
    """A graph from any exporter made executable the way FINN's first step makes it
    (qonnx's cleanup_model: shapes inferred, constants folded, parameter inputs removed,
    unique names), plus datatype inference. For graphs without a2qflow metadata: a2qflow's
    own exports are already clean, and renaming their tensors would break the layer records
    their metadata names."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    try:
        return cleanup_model(model).transform(InferShapes()).transform(InferDataTypes())
    except Exception as err:  # qonnx raises assorted errors on graphs it cannot handle
        raise GraphError(f"qonnx cannot clean up the graph ({type(err).__name__}: {err}); is it a QONNX model?") from err
