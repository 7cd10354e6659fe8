"""Size every MVAU/VVAU accumulator to the width the layer's certificate guarantees.

FINN's MinimizeAccumulatorWidth derives each width from the weight *values* (or, with
runtime-writeable weights, from the datatype worst case). An A2Q/A2Q+ layer carries a
stronger fact: every weight set within its bound fits P bits. `SizeAccumulators` maps each
HW node back to the layer recorded in the graph by a2qflow's export, re-certifies the
integer weights the node really holds (refusing, by layer and channel, any that break the
bound), and sets `accDataType` to INT<P> (or the datatype worst case when a small fan-in
makes that narrower) — or to the value-based width when asked.
Thresholds are then rounded and clipped to that range by FINN's RoundAndClipThresholds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.util.basic import roundup_to_integer_multiple

from a2qflow.models import certificate
from a2qflow.models.certificate import IntType

from .config import SIZING_MODES

HW_DOT_PRODUCT_OPS = ("MVAU", "VVAU")


def is_dot_product_node(node) -> bool:
    return node.op_type.split("_")[0] in HW_DOT_PRODUCT_OPS


def is_popcount_node(inst) -> bool:
    """A binary layer whose accumulator counts the inputs equal to their weight: FINN's
    binaryXnorMode MVAU (BINARY weights and inputs), and BIPOLAR x BIPOLAR, which FINN and
    finn-hlslib (XnorMul) compute as the same popcount."""
    xnor = "binaryXnorMode" in inst.get_nodeattr_types() and inst.get_nodeattr("binaryXnorMode")
    bipolar = DataType["BIPOLAR"]
    return bool(xnor) or (inst.get_input_datatype(0) == bipolar and inst.get_input_datatype(1) == bipolar)


def dot_product_nodes(model: ModelWrapper) -> list:
    return [n for n in model.graph.node if is_dot_product_node(n)]


def node_attrs(node, names: tuple[str, ...]) -> dict:
    """The named attributes a HW node has."""
    inst = getCustomOp(node)
    types = inst.get_nodeattr_types()
    return {a: inst.get_nodeattr(a) for a in names if a in types}


def node_weight_rows(model: ModelWrapper, node) -> np.ndarray | None:
    """A node's integer weights as (output channels, fan-in) rows; None if not in the graph."""
    w = model.get_initializer(node.input[1])
    if w is None:
        return None
    inst = getCustomOp(node)
    if node.op_type.startswith("VVAU"):
        return w.reshape(inst.get_nodeattr("Channels"), -1)
    return w.T  # MVAU weights are (MW, MH)


@dataclass
class NodeSizing:
    node: str
    layer: str | None           # the recorded a2qflow layer, None for plain FINN graphs
    method: str | None
    acc_bits: int | None        # the layer's guaranteed P (None: no guarantee)
    fan_in: int                 # K: the dot product's length
    value_bits: int
    datatype_bits: int
    finn_acc: str               # what FINN's minimisation chose before
    acc: str                    # what this step set
    runtime_writeable: bool


def match_layers(model: ModelWrapper, records: list[dict]) -> dict[str, dict]:
    """HW node name -> layer record, matched by integer weights (row by row, up to sign,
    order within a row free: FINN reorders conv weights and may fold signs into them)."""
    unmatched = list(records)
    matches: dict[str, dict] = {}
    for node in model.graph.node:
        if not is_dot_product_node(node):
            continue
        rows = node_weight_rows(model, node)
        if rows is None:
            raise certificate.CertificateError(f"{node.name}: weights are not in the graph; cannot map it to a layer")
        key = np.sort(np.abs(np.rint(rows)), axis=1)
        for rec in unmatched:
            c, k = rec["weight_shape"][0], int(np.prod(rec["weight_shape"][1:]))
            if (c, k) == rows.shape and rec.get("_key") is not None and np.array_equal(rec["_key"], key):
                matches[node.name] = rec
                unmatched.remove(rec)
                break
        else:
            raise certificate.CertificateError(
                f"{node.name}: its weights match no layer recorded in the graph (shape {rows.shape}); "
                "weights changed after export or the graph was not exported by a2qflow")
    return matches


def layer_records(qonnx_model: ModelWrapper) -> list[dict] | None:
    """The certified layers of an a2qflow graph (the metadata's claims, checked against the
    graph), each with the sorted |integer| rows of its weights for matching HW nodes; None for
    a graph without a2qflow metadata (plain FINN/QONNX: value-based widths)."""
    if qonnx_model.get_metadata_prop(certificate.LAYERS_KEY) is None:
        return None
    out = []
    for claim in certificate.layer_claims(qonnx_model):
        facts = certificate.layer_facts(qonnx_model, claim["onnx_weight"], claim["name"])
        certificate.check_claim(claim, facts)
        q = facts.weights
        out.append({**claim, "_key": np.sort(np.abs(q.reshape(q.shape[0], -1)), axis=1)})
    return out


class SizeAccumulators(Transformation):
    """Set accDataType of every MVAU/VVAU to its guaranteed P (mode "guaranteed"), its
    value-based width ("value"), the datatype worst case ("datatype": FINN's sizing for
    runtime-writeable weights) or 32 bits ("int32"); in "guaranteed" mode layers without a
    guarantee get the value-based width (the datatype width when weights are runtime-writeable)."""

    def __init__(self, records: list[dict] | None, mode: str = "guaranteed"):
        super().__init__()
        if mode not in SIZING_MODES:
            raise ValueError(f"accumulator sizing mode {mode!r}; valid: {', '.join(SIZING_MODES)}")
        self.records, self.mode = records, mode
        self.sizings: list[NodeSizing] = []

    def apply(self, model: ModelWrapper):
        matches = match_layers(model, self.records) if self.records is not None else {}
        self.sizings = []
        for node in model.graph.node:
            if is_dot_product_node(node):
                self.sizings.append(self._size(model, node, matches.get(node.name)))
        return model, False

    def _size(self, model: ModelWrapper, node, rec: dict | None) -> NodeSizing:
        inst = getCustomOp(node)
        rows = np.rint(node_weight_rows(model, node)).astype(np.int64)
        # certified for the input and weight types the hardware really has (FINN's DataType
        # ranges: unsigned, bipolar, binary), not for the recorded ones
        xtype = IntType.from_datatype(inst.get_input_datatype(0))
        wtype = IntType.from_datatype(inst.get_input_datatype(1))
        cert = certificate.certify_layer(rec["name"] if rec else node.name, rec["method"] if rec else "qat",
                                         rec["acc_bits"] if rec else None, rows, xtype, wtype,
                                         popcount=is_popcount_node(inst))
        certificate.check([cert])
        finn_acc = inst.get_nodeattr("accDataType")
        runtime_weights = bool(inst.get_nodeattr("runtime_writeable_weights"))
        if self.mode == "int32":
            bits = 32
        elif self.mode == "datatype":
            # what FINN builds for runtime-writeable weights: any weights of the datatype fit
            bits = cert.datatype_bits
        elif rec and cert.acc_bits is not None and self.mode == "guaranteed":
            # a small fan-in can make the datatype worst case (true for any weights of
            # the weight datatype) tighter than the layer's P; both are guarantees
            bits = min(cert.acc_bits, cert.datatype_bits)
        elif runtime_weights:
            # no guarantee and weights written at run time: only the datatypes bound the sum
            bits = cert.datatype_bits
        else:
            bits = cert.value_bits
        acc = DataType[f"INT{bits}"]
        inst.set_nodeattr("accDataType", acc.name)
        if inst.get_nodeattr("noActivation"):
            out = acc
            if model.find_direct_successors(node) is None:  # FINN's rule: graph outputs are byte-aligned
                out = DataType[f"INT{roundup_to_integer_multiple(bits, 8)}"]
            inst.set_nodeattr("outputDataType", out.name)
        return NodeSizing(node.name, rec["name"] if rec else None, cert.method if rec else None,
                          cert.acc_bits if rec else None, int(rows.shape[1]), cert.value_bits, cert.datatype_bits, finn_acc, acc.name,
                          runtime_weights)


class KeepWeightsNarrow(Transformation):
    """FINN's RTL MVU on DSP48E1 parts (Zynq-7000) takes only narrow-range weights (no
    -2^(b-1)). a2qflow's recipes quantize weights narrow, but FINN's weight-width minimisation
    can pick a datatype whose minimum the weights reach (weights -4..3 become INT3), after which
    FINN builds that layer as HLS, which nothing here can synthesize or simulate. One bit more
    of weight datatype keeps the weights narrow and the layer RTL; `widened` lists the nodes."""

    def __init__(self, fpgapart: str):
        super().__init__()
        self.fpgapart = fpgapart
        self.widened: list[str] = []

    def apply(self, model: ModelWrapper):
        from finn.util.basic import get_dsp_block

        if get_dsp_block(self.fpgapart) != "DSP48E1":
            return model, False
        for node in dot_product_nodes(model):
            inst = getCustomOp(node)
            weights = model.get_initializer(node.input[1])
            wdt = inst.get_input_datatype(1)
            binary = "binaryXnorMode" in inst.get_nodeattr_types() and inst.get_nodeattr("binaryXnorMode")
            if weights is None or binary or not wdt.signed() or wdt.bitwidth() < 2 or weights.min() > wdt.min():
                continue
            inst.set_nodeattr("weightDataType", f"INT{wdt.bitwidth() + 1}")
            model.set_tensor_datatype(node.input[1], DataType[f"INT{wdt.bitwidth() + 1}"])
            self.widened.append(node.name)
        return model, False
