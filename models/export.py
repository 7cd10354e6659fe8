"""QONNX export that keeps the accumulator guarantee.

brevitas' `export_qonnx` (0.13.x) writes the raw float weight, not the quantized one, into
the weight Quant node of A2Q/A2Q+ layers: the exported graph computes something else and
its integers break the bound. Here every weight initializer is replaced by the weight
brevitas actually computes (`quant_weight().value`), each layer's recipe, P, input bits and
signedness and weight bits are recorded in the graph (`a2qflow.layers` metadata), parity
with the brevitas model is proven on real samples, and the accumulator certificate is
checked. Only a graph that passes all three is written under its final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from brevitas.export import export_qonnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from a2qflow import __version__
from a2qflow.errors import A2qflowError

from . import certificate, parity
from .recipes import weight_layers
from .train import predict


class ExportError(A2qflowError, RuntimeError):
    """The exported graph does not compute what the brevitas model computes."""


def _record_inputs(model: nn.Module, sample: torch.Tensor) -> dict[str, tuple[int, bool]]:
    """Run the model once, with the A2Q quantizers caching their input, and return the
    bit width and signedness every weight layer really sees."""
    seen: dict[str, tuple[int, bool]] = {}
    hooks = []
    for name, layer in weight_layers(model):
        if hasattr(layer.weight_quant, "cache_inference_quant_act"):
            layer.weight_quant.cache_inference_quant_act = True

        def hook(mod, args, name=name):
            x = args[0]
            if hasattr(x, "bit_width") and x.bit_width is not None:
                seen[name] = (int(x.bit_width), bool(x.signed))
        hooks.append(layer.register_forward_pre_hook(hook))
    model.eval()
    with torch.no_grad():
        model(sample)
    for h in hooks:
        h.remove()
    return seen


def quantized_weights(layer: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(float value, integer) of the weight brevitas computes for a layer."""
    qw = layer.quant_weight()
    return qw.value.detach().cpu().numpy().astype(np.float32), qw.int().detach().cpu().numpy().astype(np.int64)


def layer_records(model: nn.Module, sample: torch.Tensor) -> list[dict]:
    seen = _record_inputs(model, sample)
    records = []
    for name, layer in weight_layers(model):
        spec = layer.a2qflow_spec
        if name not in seen:
            raise ExportError(f"layer {name}: its input is not a quantized tensor; FINN cannot build it")
        if seen[name] != (spec.input_bits, spec.input_signed):
            raise ExportError(f"layer {name}: sees {seen[name]} inputs (bits, signed) but its recipe assumed "
                              f"{(spec.input_bits, spec.input_signed)}")
        records.append({**spec.to_dict(), "onnx_weight": f"{name}.weight",
                        "weight_shape": list(layer.weight.shape)})
    return records


def _fix_weights(onnx_model: ModelWrapper, model: nn.Module, records: list[dict]) -> None:
    layers = dict(weight_layers(model))
    for rec in records:
        tensor = rec["onnx_weight"]
        if onnx_model.get_initializer(tensor) is None:
            raise ExportError(f"layer {rec['name']}: exported graph has no weight initializer {tensor!r}")
        value, q = quantized_weights(layers[rec["name"]])
        onnx_model.set_initializer(tensor, value)
        exported, _, _ = certificate.integer_weights(onnx_model, tensor, rec["name"])
        if not np.array_equal(exported, q):
            bad = np.argwhere(exported != q)[0]
            raise ExportError(f"layer {rec['name']}: exported integer weight at {tuple(bad)} is "
                              f"{exported[tuple(bad)]}, brevitas computes {q[tuple(bad)]}")


def check_parity(onnx_model: ModelWrapper, model: nn.Module, x: torch.Tensor, classification: bool
                 ) -> parity.ParityReport:
    """QONNX execution of the exported graph against the brevitas model on the same samples."""
    ref = predict(model, x).numpy()
    out = parity.execute_per_sample(onnx_model, x.numpy().astype(np.float32))
    return parity.compare(out, ref, classification, "export", reference="brevitas model")


@contextlib.contextmanager
def _seeded_tensor_names():
    """qonnx names new tensors from Python's global `random`: seeded here so the same model
    exports to the same bytes; the caller's random state is restored after."""
    state = random.getstate()
    random.seed(0)
    try:
        yield
    finally:
        random.setstate(state)


def export(model: nn.Module, samples: torch.Tensor, path: str | Path, *, classification: bool = True,
           extra_metadata: dict | None = None) -> tuple[Path, list[certificate.LayerCert], parity.ParityReport]:
    """Export, fix weights, record metadata, prove parity on `samples`, certify.

    Writes `path` and `path` with suffix `.certificate.json`. On any failure raises, and
    the graph and its certificate are left only as `<path>.rejected.onnx` and
    `<path>.rejected.certificate.json` for inspection (an earlier export at `path` stays as it was)."""
    path = Path(path)
    if len(samples) == 0:
        raise ExportError("export needs at least one test sample to prove parity")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    records = layer_records(model, samples[:8])
    staging = path.with_suffix(".rejected.onnx")
    with _seeded_tensor_names():
        export_qonnx(model, args=samples[:1], export_path=str(staging), dynamo=False)
        onnx_model = ModelWrapper(str(staging)).transform(InferShapes())
        _fix_weights(onnx_model, model, records)
    onnx_model.set_metadata_prop(certificate.LAYERS_KEY, json.dumps(records))
    onnx_model.set_metadata_prop("a2qflow.version", __version__)
    for key, value in (extra_metadata or {}).items():
        onnx_model.set_metadata_prop(f"a2qflow.{key}", json.dumps(value))
    onnx_model.save(str(staging))

    staged_cert = path.with_suffix(".rejected.certificate.json")
    certs = certificate.certify_and_record(onnx_model, staged_cert)
    report = check_parity(onnx_model, model, samples, classification)
    if not report.passed:
        raise ExportError(f"{report.message()}; graph kept as {staging}")
    os.replace(staged_cert, path.with_suffix(".certificate.json"))
    os.replace(staging, path)
    return path, certs, report


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, samples: int = 200
                      ) -> tuple[Path, list[certificate.LayerCert], parity.ParityReport]:
    """Export a checkpoint written by `train`, proving parity on its dataset's test split."""
    from .train import checkpoint_dataset, load_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    cfg, info = ckpt["config"], ckpt["dataset"]
    ds = checkpoint_dataset(ckpt)
    out = Path(out) if out else Path(checkpoint).with_name("model.onnx")
    meta = {"model": cfg["model"], "dataset": info, "recipe": cfg["recipe"], "metrics": ckpt["metrics"]}
    return export(model, ds.x_test[:samples], out, classification=info["task"] == "classification",
                  extra_metadata=meta)
