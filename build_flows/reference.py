"""What a build and its deployment package compare against: test inputs, the reference
model's outputs for them, and labels where the dataset has them.

One reference serves every check of a run: the parity after each FINN stage (a few
samples), the package's test set (more samples, with labels) and the benchmark's accuracy.
The reference model is the trained brevitas model when its checkpoint is known, else the
QONNX graph itself (an a2qflow export proved the two agree). Inputs are the test split of
the dataset the graph records or the user names; without one, inputs on the grid of the
graph's input quantizer (its integer codes times its scale, extremes included), never
arbitrary floats, which can land on rounding ties no real input produces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.errors import A2qflowError
from a2qflow.models import parity
from a2qflow.models.certificate import VALUE_PRESERVING_OPS, IntType, quant_type
from a2qflow.models.data import NATIVE_INPUTS, load_dataset
from a2qflow.models.graph import metadata

REFERENCE_FILE = "reference.json"


class ReferenceError(A2qflowError, ValueError):
    """No usable test inputs for a graph (wrong dataset shape, nothing recorded)."""


@dataclass
class Reference:
    x: np.ndarray                    # inputs, as the network takes them (N, ...)
    expected: np.ndarray             # the reference model's outputs for x
    classification: bool
    source: str                      # what `expected` comes from, as reports name it
    labels: np.ndarray | None = None
    task: str = "classification"
    dataset: str | None = None
    native: dict | None = None       # the dataset's integer inputs: x = code * scale ({"dtype", "scale"})

    def head(self, n: int) -> "Reference":
        """The first n samples."""
        return Reference(self.x[:n], self.expected[:n], self.classification, self.source,
                         None if self.labels is None else self.labels[:n], self.task, self.dataset, self.native)

    def native_x(self) -> np.ndarray:
        """The inputs as the dataset's integer codes (what an integer-input accelerator takes)."""
        if self.native is None:
            raise ReferenceError(f"dataset {self.dataset} has no integer input format")
        codes = self.x / self.native["scale"]
        if np.abs(codes - np.rint(codes)).max(initial=0) > 1e-3:
            raise ReferenceError(f"inputs are not multiples of {self.native['scale']:.6g}: not {self.dataset}'s codes")
        return np.rint(codes).astype(np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "input.npy", np.ascontiguousarray(self.x, dtype=np.float32))
        np.save(folder / "expected_output.npy", np.ascontiguousarray(self.expected, dtype=np.float32))
        if self.labels is not None:
            np.save(folder / "labels.npy", np.ascontiguousarray(self.labels))
        (folder / REFERENCE_FILE).write_text(json.dumps(
            {"source": self.source, "classification": self.classification, "task": self.task,
             "dataset": self.dataset, "samples": len(self.x), "labels": self.labels is not None,
             "native": self.native}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "Reference":
        """A saved reference; arrays are read as data (no pickles)."""
        meta = json.loads((folder / REFERENCE_FILE).read_text())
        labels = np.load(folder / "labels.npy", allow_pickle=False) if meta.get("labels") else None
        return cls(np.load(folder / "input.npy", allow_pickle=False),
                   np.load(folder / "expected_output.npy", allow_pickle=False),
                   bool(meta["classification"]), meta["source"], labels, meta.get("task", "classification"),
                   meta.get("dataset"), meta.get("native"))


def from_checkpoint(checkpoint: str | Path, samples: int) -> Reference:
    """Test samples of the checkpoint's dataset and the brevitas model's outputs for them."""
    from a2qflow.models.train import checkpoint_dataset, load_checkpoint, predict

    model, ckpt = load_checkpoint(checkpoint)
    ds = checkpoint_dataset(ckpt)
    x = ds.x_test[:samples]
    info = ckpt["dataset"]
    return Reference(x.numpy().astype(np.float32), predict(model, x).numpy(), info["task"] == "classification",
                     "trained brevitas model", ds.y_test[:samples].numpy(), info["task"], info["name"],
                     NATIVE_INPUTS.get(info["name"]))


def from_graph(graph: ModelWrapper, samples: int, dataset: str | None = None,
               data_dir: str | Path | None = None) -> Reference:
    """Inputs of the dataset the graph records (or `dataset`), else on the input
    quantizer's grid; outputs from QONNX execution of the graph itself."""
    info = metadata(graph, "dataset")
    name = dataset or (info or {}).get("name")
    shape = tuple(d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim)
    if name:
        ds = load_dataset(name, data_dir, limit=None)
        if tuple(ds.input_shape) != tuple(shape[1:]):
            raise ReferenceError(f"dataset {name} has inputs of shape {tuple(ds.input_shape)}; the graph takes "
                                 f"{tuple(shape[1:])}")
        x = ds.x_test[:samples].numpy().astype(np.float32)
        labels, task = ds.y_test[:samples].numpy(), ds.task
        outputs = graph.get_tensor_shape(graph.graph.output[0].name)
        if ds.task == "classification" and outputs and outputs[-1] != ds.num_classes:
            raise ReferenceError(f"dataset {name} has {ds.num_classes} classes; the graph has {outputs[-1]} outputs")
        what = "QONNX graph (parity with the trained model proven at export)" if info else "QONNX graph"
        source = f"{what} on the {name} test split"
    else:
        x, grid = grid_inputs(graph, samples, shape)
        labels, task = None, None
        source = f"QONNX graph on {grid} (graph names no dataset)"
    expected = parity.execute_per_sample(graph, x)
    task = task or ("classification" if expected.ndim == 2 else "superres")
    native = NATIVE_INPUTS.get(name) if name else None
    if native and model_input_is_integer(graph):
        native = None   # the graph already takes integers: nothing to convert
    return Reference(x, expected, task == "classification", source, labels, task, name, native)


def model_input_is_integer(graph: ModelWrapper) -> bool:
    return graph.get_tensor_datatype(graph.graph.input[0].name).is_integer()


def grid_inputs(graph: ModelWrapper, samples: int, shape: tuple, seed: int = 0) -> tuple[np.ndarray, str]:
    """Inputs that reach the graph's input quantizer exactly on its grid (its integer codes
    times its scale), over its whole range: the first sample at its minimum code, the second at
    its maximum, the rest uniform. Elementwise preprocessing between the graph input and the
    quantizer (brevitas' bnn_pynq nets compute 2x - 1) is inverted, so such inputs lie as far
    from a rounding tie as inputs can."""
    rng = np.random.default_rng(seed)
    quant = _input_quantizer(graph)
    if quant is None:
        return (rng.random((samples, *shape[1:]), dtype=np.float32),
                "uniform [0, 1) inputs (no input quantizer found to put them on its grid)")
    if quant.op_type == "BipolarQuant":
        itype, scale = IntType.from_datatype(DataType["BIPOLAR"]), _scale(graph, quant)
        values = rng.choice(np.array([-1, 1]), size=(samples, *shape[1:]))
    else:
        itype, scale = quant_type(graph, quant, "input quantizer"), _scale(graph, quant)
        values = rng.integers(itype.lo, itype.hi + 1, size=(samples, *shape[1:]))
    values[:1], values[1:2] = itype.lo, itype.hi
    a, b = _affine_to(graph, quant.input[0], shape)
    x = ((values * scale - b) / a).astype(np.float32)
    return x, f"inputs on the input quantizer's grid ({itype.name} codes, scale {float(np.max(scale)):.4g})"


# ops between the graph input and its quantizer that grid_inputs can invert (elementwise affine)
AFFINE_OPS = ("Mul", "Add", "Sub", "Div")


def _input_quantizer(graph: ModelWrapper):
    """The first quantizer the graph input reaches through value-preserving and elementwise
    affine ops (with constant operands), or None."""
    tensor = graph.graph.input[0].name
    while True:
        consumers = graph.find_consumers(tensor)
        if len(consumers) != 1:
            return None
        node = consumers[0]
        if node.op_type in ("Quant", "BipolarQuant"):
            return node
        constant_operands = all(graph.get_initializer(i) is not None for i in node.input if i != tensor)
        if node.op_type not in VALUE_PRESERVING_OPS + AFFINE_OPS or not constant_operands:
            return None
        tensor = node.output[0]


def _scale(graph: ModelWrapper, quant) -> np.ndarray:
    if quant.op_type == "BipolarQuant":
        return np.asarray(graph.get_initializer(quant.input[1]), dtype=np.float64)
    return np.asarray(graph.get_initializer(quant.input[1]), dtype=np.float64)


def _affine_to(graph: ModelWrapper, tensor: str, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Per element, the slope and offset of the graph's map from its input to `tensor`
    (read off executions at x = 0 and x = 1, checked at x = 0.5)."""
    from qonnx.core.onnx_exec import execute_onnx

    iname = graph.graph.input[0].name

    def at(value: float) -> np.ndarray:
        ctx = execute_onnx(graph, {iname: np.full((1, *shape[1:]), value, np.float32)}, return_full_exec_context=True)
        return np.asarray(ctx[tensor], dtype=np.float64).reshape((1, *shape[1:]))

    b, one, half = at(0.0), at(1.0), at(0.5)
    a = one - b
    if np.any(a == 0) or not np.allclose(half, b + a / 2, atol=1e-6):
        raise ReferenceError("the graph's preprocessing before its input quantizer is not an invertible "
                             "elementwise affine map; give --dataset for its parity inputs")
    return a, b
