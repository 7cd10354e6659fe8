"""What a build compares every stage against: test inputs and the trained model's outputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.models.data import load_dataset
from a2qflow.models.export import run_onnx
from a2qflow.models.train import checkpoint_dataset, load_checkpoint, predict

Reference = tuple[np.ndarray, np.ndarray, bool]   # inputs, expected outputs, is classification


def from_checkpoint(checkpoint: str | Path, samples: int) -> Reference:
    """Test samples and the brevitas model's outputs for them."""
    model, ckpt = load_checkpoint(checkpoint)
    x = checkpoint_dataset(ckpt).x_test[:samples]
    return x.numpy().astype(np.float32), predict(model, x).numpy(), ckpt["dataset"]["task"] == "classification"


def from_graph(graph: ModelWrapper, samples: int, seed: int = 0,
               data_dir: str | Path | None = None) -> tuple[Reference, str]:
    """Test samples of the dataset recorded in an a2qflow graph (folder datasets such as
    mnist need `data_dir`), else uniform [0, 1) inputs, and the QONNX graph's own outputs
    (export proved those equal the trained model's)."""
    meta = graph.get_metadata_prop("a2qflow.dataset")
    shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    if meta:
        info = json.loads(meta)
        x = load_dataset(info["name"], data_dir, limit=samples).x_test[:samples].numpy().astype(np.float32)
        source, classification = f"{info['name']} test split", info["task"] == "classification"
    else:
        x = np.random.default_rng(seed).random((samples, *shape[1:]), dtype=np.float32)
        source, classification = "uniform random inputs (graph names no dataset)", None
    expected = run_onnx(graph, x)
    if classification is None:
        classification = expected.ndim == 2
    return (x, expected, classification), source
