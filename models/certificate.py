"""Accumulator certificate of an exported QONNX graph, derived from the graph itself.

For every weight layer the graph's `a2qflow.layers` metadata names, everything the bound
depends on is read from the graph: the integer weights the weight Quant node computes from
its initializer, their bit width, signedness and narrow range (the Quant node's inputs and
attributes), K from the weight shape, and the integer range of the inputs from the quantizer
(or integer datatype) that feeds the layer through value-preserving ops (Flatten, Reshape,
Transpose, MaxPool, ...). The metadata is a claim: each claimed field (input bits and
signedness, weight bits, weight shape, depthwise) is compared with what the graph says, and
a disagreement is refused naming the layer and the field. Only the method and P, which no
graph can show, are taken from the claim: they choose the bound that the real integers
must then meet, per output channel.

The certificate also gives the value-based worst case (the exact accumulator range of these
weights over the input range, what FINN's MinimizeAccumulatorWidth computes) and the
datatype worst case (any weights of the weight type, e.g. written at run time).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.errors import A2qflowError

from . import bounds

LAYERS_KEY = "a2qflow.layers"
# ops whose outputs are values of their (first) input: the range a quantizer sets passes through
VALUE_PRESERVING_OPS = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "MaxPool",
                        "Resize", "Upsample", "Slice", "DepthToSpace", "SpaceToDepth")
LAYER_OPS = ("MatMul", "Gemm", "Conv")
CLAIMED_FIELDS = ("input_bits", "input_signed", "weight_bits", "weight_shape", "depthwise")


class CertificateError(A2qflowError, ValueError):
    """A layer's integer weights break its bound, or the graph cannot be certified."""


class ClaimMismatch(CertificateError):
    """The graph's metadata claims something about a layer that the graph itself contradicts."""


@dataclass(frozen=True)
class IntType:
    """An integer range as a quantizer or FINN DataType defines it."""
    name: str            # e.g. UINT4, INT4 (narrow), BIPOLAR
    lo: int
    hi: int
    bits: int
    signed: bool
    narrow: bool = False

    @classmethod
    def from_datatype(cls, dt: DataType) -> "IntType":
        if not dt.is_integer():
            raise CertificateError(f"{dt.name} is not an integer datatype")
        return cls(dt.name, int(dt.min()), int(dt.max()), dt.bitwidth(), dt.signed())

    @classmethod
    def from_quant(cls, bits: int, signed: bool, narrow: bool) -> "IntType":
        from qonnx.custom_op.general.intquant import max_int, min_int

        name = f"{'' if signed else 'U'}INT{bits}" + (" (narrow)" if narrow else "")
        return cls(name, int(min_int(signed, narrow, bits)), int(max_int(signed, narrow, bits)), bits, signed, narrow)


@dataclass(frozen=True)
class LayerFacts:
    """What the graph says about one weight layer."""
    weights: np.ndarray  # integers, (output channels, ...) as the initializer is laid out
    weight_type: IntType
    input_type: IntType
    depthwise: bool

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weights.shape[1:]))


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
    acc_bits: int | None            # the guaranteed P (shown as P in reports)
    input_type: str                 # as read from the graph, e.g. UINT4
    input_range: tuple[int, int]
    input_bits: int                 # N of the bound: the N-bit range enclosing input_range
    input_signed: bool
    weight_type: str
    weight_bits: int
    fan_in: int
    channels: int
    budget: float | None
    max_constrained_norm: int | None
    min_safe_acc_bits: int | None
    value_bits: int                 # value-based width for the whole layer
    datatype_bits: int              # worst case over every weight of the weight type
    passed: bool
    failing_channels: list[int] = field(default_factory=list)
    per_channel: list[ChannelCert] = field(default_factory=list)


# ------------------------------------------------------------------------ reading the graph


def layer_claims(model: ModelWrapper) -> list[dict]:
    """The per-layer records of the graph's metadata (claims, checked by `certify`)."""
    raw = model.get_metadata_prop(LAYERS_KEY)
    if raw is None:
        raise CertificateError(f"graph has no '{LAYERS_KEY}' metadata: not exported by a2qflow")
    try:
        claims = json.loads(raw)
    except ValueError as err:
        raise CertificateError(f"graph metadata '{LAYERS_KEY}' is not JSON: {err}") from err
    needed = ("name", "method", "acc_bits", "onnx_weight", *CLAIMED_FIELDS)
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise CertificateError(f"graph metadata '{LAYERS_KEY}' must be a list of layer records")
    for i, claim in enumerate(claims):
        missing = [k for k in needed if k not in claim]
        if missing:
            raise CertificateError(f"graph metadata '{LAYERS_KEY}', record {i} ({claim.get('name', '?')}): "
                                   f"missing field(s) {', '.join(missing)}")
        if claim["method"] not in bounds.METHODS:
            raise CertificateError(f"layer {claim['name']}: method {claim['method']!r}; valid: "
                                   f"{', '.join(bounds.METHODS)}")
        constrained = claim["method"] in bounds.CONSTRAINED_METHODS
        p = claim["acc_bits"]
        if constrained and not (isinstance(p, int) and 2 <= p <= 64):
            raise CertificateError(f"layer {claim['name']}: field acc_bits {p!r} is not a width in 2..64")
    return claims


def _initializer_int(model: ModelWrapper, tensor: str, what: str) -> int:
    value = model.get_initializer(tensor)
    if value is None or value.size != 1 or float(value) != int(value):
        raise CertificateError(f"{what}: {tensor!r} is not a constant integer")
    return int(value)


def quant_type(model: ModelWrapper, node, what: str) -> IntType:
    """The integer range a QONNX Quant/BipolarQuant node produces (scaled by its scale)."""
    from qonnx.util.basic import get_by_name

    if node.op_type == "BipolarQuant":
        return IntType.from_datatype(DataType["BIPOLAR"])
    if len(node.input) > 2:
        zeropt = model.get_initializer(node.input[2])
        if zeropt is None or np.any(zeropt != 0):
            raise CertificateError(f"{what}: quantizer {node.name or node.output[0]} has a non-zero zero point; "
                                   "an integer accumulator needs zero-point 0")
    bits = _initializer_int(model, node.input[3], f"{what}: bit width")
    signed = get_by_name(node.attribute, "signed")
    narrow = get_by_name(node.attribute, "narrow")
    return IntType.from_quant(bits, bool(signed.i) if signed else True, bool(narrow.i) if narrow else False)


def input_type(model: ModelWrapper, tensor: str, what: str) -> IntType:
    """The integer range of `tensor`: from the quantizer that produces it through
    value-preserving ops, or from its integer datatype annotation (a graph input)."""
    start = tensor
    producer = model.find_producer(tensor)
    while producer is not None and producer.op_type in VALUE_PRESERVING_OPS:
        tensor = producer.input[0]
        producer = model.find_producer(tensor)
    if producer is not None and producer.op_type in ("Quant", "BipolarQuant"):
        scale = model.get_initializer(producer.input[1]) if producer.op_type == "Quant" else np.ones(1)
        if scale is None or scale.size != 1:
            raise CertificateError(f"{what}: input quantizer {producer.name or producer.output[0]} has a "
                                   "per-channel scale; the dot product is then not an integer dot product")
        return quant_type(model, producer, what)
    dt = model.get_tensor_datatype(tensor)
    if dt.is_integer():
        return IntType.from_datatype(dt)
    raise CertificateError(f"{what}: input {start!r} is not quantized (no quantizer or integer datatype "
                           f"reaches it; found {producer.op_type if producer is not None else 'a float graph input'})")


def integer_weights(model: ModelWrapper, weight_tensor: str, layer: str) -> tuple[np.ndarray, IntType, object]:
    """The integers the weight Quant node computes from its initializer, their type, and the
    node consuming them (through a Transpose, as brevitas exports Linear layers)."""
    from qonnx.custom_op.general.quant import quant
    from qonnx.util.basic import get_by_name

    w = model.get_initializer(weight_tensor)
    consumer = model.find_consumer(weight_tensor)
    if w is None or consumer is None or consumer.op_type != "Quant":
        raise CertificateError(f"layer {layer}: weight tensor {weight_tensor!r} is not a quantized initializer")
    what = f"layer {layer}, weights"
    wtype = quant_type(model, consumer, what)
    scale = model.get_initializer(consumer.input[1])
    if scale is None:
        raise CertificateError(f"{what}: quantizer scale {consumer.input[1]!r} is not a constant")
    ratio = w / scale
    off_grid = float(np.abs(ratio - np.round(ratio)).max()) if w.size else 0.0
    if off_grid > 1e-3:
        raise CertificateError(f"{what}: initializer is off the quantization grid by {off_grid:.3g} steps (raw "
                               "float weights, as brevitas' export writes for A2Q layers)")
    mode = get_by_name(consumer.attribute, "rounding_mode")
    # what the Quant node computes (rounding and clipping to its range), as integers
    values = quant(w, scale, np.zeros(1), np.asarray(float(wtype.bits)), wtype.signed, wtype.narrow,
                   mode.s.decode() if mode else "ROUND")
    q = np.rint(values / scale).astype(np.int64)
    layer_node = model.find_consumer(consumer.output[0])
    if layer_node is not None and layer_node.op_type == "Transpose":
        layer_node = model.find_consumer(layer_node.output[0])
    if layer_node is None or layer_node.op_type not in LAYER_OPS:
        raise CertificateError(f"layer {layer}: its quantized weights feed no {'/'.join(LAYER_OPS)} node")
    return q, wtype, layer_node


def _weight_path(model: ModelWrapper, weight_tensor: str) -> set[str]:
    """The tensors from a weight initializer to its layer (Quant output, Transpose output)."""
    path, tensor = {weight_tensor}, weight_tensor
    while (consumer := model.find_consumer(tensor)) is not None and consumer.op_type in ("Quant", "Transpose"):
        tensor = consumer.output[0]
        path.add(tensor)
    return path


def layer_facts(model: ModelWrapper, weight_tensor: str, layer: str) -> LayerFacts:
    """Everything the bound of one layer depends on, read from the graph."""
    from qonnx.util.basic import get_by_name

    q, wtype, node = integer_weights(model, weight_tensor, layer)
    if len(node.input) < 2 or node.input[0] in _weight_path(model, weight_tensor):
        raise CertificateError(f"layer {layer}: its weights are not the second input of {node.op_type}")
    xtype = input_type(model, node.input[0], f"layer {layer}")  # MatMul(A, B), Gemm(A, B), Conv(X, W)
    group = get_by_name(node.attribute, "group") if node.op_type == "Conv" else None
    depthwise = bool(group and group.i > 1 and q.shape[1] == 1)
    return LayerFacts(q, wtype, xtype, depthwise)


def check_claim(claim: dict, facts: LayerFacts) -> None:
    """Refuse metadata that says something else than the graph, naming layer and field."""
    n, signed = bounds.enclosing_input_type(facts.input_type.lo, facts.input_type.hi)
    found = {"input_bits": n, "input_signed": signed, "weight_bits": facts.weight_type.bits,
             "weight_shape": list(facts.weights.shape), "depthwise": facts.depthwise}
    for key in CLAIMED_FIELDS:
        if claim[key] != found[key]:
            extra = f" ({facts.input_type.name} inputs)" if key.startswith("input") else ""
            raise ClaimMismatch(f"layer {claim['name']}: metadata claims {key}={claim[key]!r} but the graph has "
                                f"{found[key]!r}{extra}; the graph was edited after export")


# ------------------------------------------------------------------------ the certificate


def certify_layer(name: str, method: str, acc_bits: int | None, q: np.ndarray, xtype: IntType,
                  wtype: IntType, popcount: bool = False) -> LayerCert:
    """Check every output channel of integer weights q (channels, ...) against the method's
    bound at P for inputs of type xtype; weights of type wtype give the datatype worst case.
    `popcount`: a binary (XNOR) layer, whose accumulator counts matching bits (FINN's
    binaryXnorMode, finn-hlslib XnorMul): 0..K on every channel, whatever the weights."""
    n, signed = bounds.enclosing_input_type(xtype.lo, xtype.hi)
    lo, hi = bounds.popcount_range(q) if popcount else bounds.dot_product_range(q, xtype.lo, xtype.hi)
    l1 = bounds.l1_norm(q)
    constrained = method in bounds.CONSTRAINED_METHODS
    budget = bounds.l1_budget(method, acc_bits, n, signed) if constrained else None
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
    failing = [c.channel for c in channels if not c.passed]
    return LayerCert(
        name=name, method=method, acc_bits=acc_bits if constrained else None, input_type=xtype.name,
        input_range=(xtype.lo, xtype.hi), input_bits=n, input_signed=signed, weight_type=wtype.name,
        weight_bits=wtype.bits, fan_in=fan_in, channels=q.shape[0], budget=budget,
        max_constrained_norm=int(norms.max()) if constrained else None,
        min_safe_acc_bits=max(c.min_safe_acc_bits for c in channels) if constrained else None,
        value_bits=bounds.signed_bits_for_range(int(lo.min()), int(hi.max())),
        datatype_bits=bounds.signed_bits_for_range(
            *((0, fan_in) if popcount else bounds.datatype_dot_product_range(wtype.lo, wtype.hi, xtype.lo, xtype.hi,
                                                                             fan_in))),
        passed=not failing, failing_channels=failing, per_channel=channels)


def certify(model: ModelWrapper) -> list[LayerCert]:
    """Certify every layer the metadata names (without raising on a failing channel; a
    claim the graph contradicts is refused)."""
    certs = []
    for claim in layer_claims(model):
        facts = layer_facts(model, claim["onnx_weight"], claim["name"])
        check_claim(claim, facts)
        certs.append(certify_layer(claim["name"], claim["method"], claim["acc_bits"], facts.weights,
                                   facts.input_type, facts.weight_type))
    return certs


def check(certs: list[LayerCert]) -> None:
    """Raise naming the first failing layer and channel."""
    for cert in certs:
        if not cert.passed:
            ch = cert.per_channel[cert.failing_channels[0]]
            raise CertificateError(
                f"layer {cert.name}, channel {ch.channel}: {cert.method} norm {ch.constrained_norm} exceeds "
                f"the budget {cert.budget:.3f} of a {cert.acc_bits}-bit accumulator with "
                f"{cert.input_type} inputs (needs P={ch.min_safe_acc_bits}; "
                f"{len(cert.failing_channels)} channel(s) fail)")


def write_certificate(certs: list[LayerCert], path: Path) -> None:
    doc = {"passed": all(c.passed for c in certs), "layers": [asdict(c) for c in certs]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def certify_and_record(model: ModelWrapper, path: Path) -> list[LayerCert]:
    """Certify, write the certificate to `path` (a failing one too: it names the channels),
    then raise naming the first failing layer and channel."""
    certs = certify(model)
    write_certificate(certs, path)
    check(certs)
    return certs


def summary_rows(certs: list[LayerCert]) -> list[dict]:
    """One row per layer for the terminal table (short column names: see `SUMMARY_LEGEND`)."""
    return [{"layer": c.name, "method": c.method, "P": c.acc_bits, "input": c.input_type, "K": c.fan_in,
             "norm": c.max_constrained_norm, "budget": None if c.budget is None else f"{c.budget:.1f}",
             "min P": c.min_safe_acc_bits, "value": c.value_bits, "dtype": c.datatype_bits,
             "ok": "yes" if c.passed else "NO"} for c in certs]


SUMMARY_LEGEND = ("P: guaranteed accumulator bits; K: dot-product length; norm: largest channel norm the "
                  "method bounds; budget: its limit at P; min P: smallest safe P; value: bits these weights "
                  "need; dtype: bits any weights of the weight type need")
