"""Accumulator certificate of an exported QONNX graph.

For every recipe-built weight layer recorded in the graph's `a2qflow.layers` metadata, read
the integer weights the graph really computes (weight initializer / scale of its Quant
node) and, per output channel, check them against the layer's bound at its guaranteed P.
Also give the value-based worst case (the exact accumulator range for the layer's input
range, as FINN's MinimizeAccumulatorWidth computes it) and the datatype worst case.
A layer over its bound raises `CertificateError` naming the layer and channel.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.models import bounds

LAYERS_KEY = "a2qflow.layers"


class CertificateError(ValueError):
    """A layer's integer weights break the accumulator bound recorded for it."""


@dataclass
class ChannelCert:
    channel: int
    l1_norm: int
    constrained_norm: int | None    # the norm the method's budget bounds (None: unconstrained)
    min_safe_acc_bits: int | None   # smallest P whose budget holds this channel
    value_range: tuple[int, int]    # exact min/max of the dot product over the input range
    value_bits: int
    passed: bool


@dataclass
class LayerCert:
    name: str
    method: str
    acc_bits: int | None
    input_bits: int
    input_signed: bool
    weight_bits: int
    fan_in: int
    channels: int
    budget: float | None
    max_constrained_norm: int | None
    min_safe_acc_bits: int | None
    value_bits: int                 # value-based width for the whole layer
    datatype_bits: int              # worst case from datatypes alone (weights' bit width)
    passed: bool
    failing_channels: list[int] = field(default_factory=list)
    per_channel: list[ChannelCert] = field(default_factory=list)


def layer_metadata(model: ModelWrapper) -> list[dict]:
    raw = model.get_metadata_prop(LAYERS_KEY)
    if raw is None:
        raise CertificateError(f"graph has no '{LAYERS_KEY}' metadata: not exported by a2qflow")
    return json.loads(raw)


def integer_weights(model: ModelWrapper, weight_tensor: str, layer: str) -> np.ndarray:
    """The integers the weight Quant node produces from its initializer."""
    consumer = model.find_consumer(weight_tensor)
    w = model.get_initializer(weight_tensor)
    if consumer is None or consumer.op_type != "Quant" or w is None:
        raise CertificateError(f"layer {layer}: weight tensor {weight_tensor!r} is not a quantized initializer")
    scale = model.get_initializer(consumer.input[1])
    ratio = w / scale
    q = np.round(ratio)
    off_grid = np.abs(ratio - q).max() if q.size else 0.0
    if off_grid > 1e-3:
        raise CertificateError(
            f"layer {layer}: weight initializer is off the quantization grid by {off_grid:.3g} "
            "steps (raw float weights, as brevitas' export writes for A2Q layers)")
    return q.astype(np.int64)


def certify_layer(meta: dict, q: np.ndarray) -> LayerCert:
    method, p = meta["method"], meta["acc_bits"]
    n, signed = meta["input_bits"], meta["input_signed"]
    x_lo, x_hi = bounds.input_range(n, signed)
    lo, hi = bounds.dot_product_range(q, x_lo, x_hi)
    l1 = bounds.l1_norm(q)
    constrained = method in bounds.CONSTRAINED_METHODS
    budget = bounds.l1_budget(method, p, n, signed) if constrained else None
    norms = bounds.constrained_norm(method, q) if constrained else None
    channels = []
    for c in range(q.shape[0]):
        norm = int(norms[c]) if constrained else None
        channels.append(ChannelCert(
            channel=c, l1_norm=int(l1[c]), constrained_norm=norm,
            min_safe_acc_bits=bounds.min_safe_acc_bits(method, norm, n, signed) if constrained else None,
            value_range=(int(lo[c]), int(hi[c])),
            value_bits=bounds.signed_bits_for_range(int(lo[c]), int(hi[c])),
            passed=(norm <= budget) if constrained else True))
    fan_in = int(np.prod(q.shape[1:]))
    w_lo, w_hi = bounds.input_range(meta["weight_bits"], signed=True)
    products = [w * x for w in (w_lo, w_hi) for x in (x_lo, x_hi)]
    dt_lo, dt_hi = fan_in * min(products), fan_in * max(products)
    failing = [c.channel for c in channels if not c.passed]
    return LayerCert(
        name=meta["name"], method=method, acc_bits=p, input_bits=n, input_signed=signed,
        weight_bits=meta["weight_bits"], fan_in=fan_in, channels=q.shape[0], budget=budget,
        max_constrained_norm=int(norms.max()) if constrained else None,
        min_safe_acc_bits=max(c.min_safe_acc_bits for c in channels) if constrained else None,
        value_bits=bounds.signed_bits_for_range(int(lo.min()), int(hi.max())),
        datatype_bits=bounds.signed_bits_for_range(dt_lo, dt_hi),
        passed=not failing, failing_channels=failing, per_channel=channels)


def certify(model: ModelWrapper | str | Path) -> list[LayerCert]:
    """Certify every recorded layer of a graph (without raising)."""
    if not isinstance(model, ModelWrapper):
        model = ModelWrapper(str(model))
    return [certify_layer(meta, integer_weights(model, meta["onnx_weight"], meta["name"]))
            for meta in layer_metadata(model)]


def check(certs: list[LayerCert]) -> None:
    """Raise naming the first failing layer and channel."""
    for cert in certs:
        if not cert.passed:
            ch = cert.per_channel[cert.failing_channels[0]]
            raise CertificateError(
                f"layer {cert.name}, channel {ch.channel}: {cert.method} norm {ch.constrained_norm} exceeds "
                f"the budget {cert.budget:.3f} of a {cert.acc_bits}-bit accumulator with "
                f"{cert.input_bits}-bit {'signed' if cert.input_signed else 'unsigned'} inputs "
                f"(needs P={ch.min_safe_acc_bits}; {len(cert.failing_channels)} channel(s) fail)")


def write_certificate(certs: list[LayerCert], path: Path) -> None:
    doc = {"passed": all(c.passed for c in certs), "layers": [asdict(c) for c in certs]}
    path.write_text(json.dumps(doc, indent=1))


def certify_and_record(model: ModelWrapper, path: Path) -> list[LayerCert]:
    """Certify, write the certificate to `path` (a failing one too: it names the channels),
    then raise naming the first failing layer and channel."""
    certs = certify(model)
    write_certificate(certs, path)
    check(certs)
    return certs


def summary_rows(certs: list[LayerCert]) -> list[dict]:
    """One row per layer for the CLI table."""
    return [{"layer": c.name, "method": c.method, "P": c.acc_bits, "N": f"{'s' if c.input_signed else 'u'}{c.input_bits}",
             "K": c.fan_in, "max norm": c.max_constrained_norm, "budget": None if c.budget is None else round(c.budget, 2),
             "min safe P": c.min_safe_acc_bits, "value bits": c.value_bits, "datatype bits": c.datatype_bits,
             "pass": c.passed} for c in certs]
