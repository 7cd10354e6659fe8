"""Accumulator sizing from FINN's DataType ranges (unsigned, narrow, bipolar, binary, ternary),
checked against brute force: a width derived from a bit width alone would be wrong for
unsigned weights and for bipolar inputs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp

from a2qflow.build_flows.sizing import SizeAccumulators
from a2qflow.models import bounds
from a2qflow.models.certificate import IntType

from hw_graphs import mvau_graph

TYPES = ["INT2", "UINT2", "INT4", "UINT4", "BIPOLAR", "BINARY", "TERNARY", "INT3", "UINT3"]


@pytest.mark.parametrize("wdt, xdt", list(itertools.product(TYPES, TYPES)))
def test_datatype_worst_case_matches_brute_force(wdt, xdt):
    w, x = DataType[wdt], DataType[xdt]
    k = 2   # every sum over every weight and input of the types (the bound scales with k)
    w_vals = [v for v in range(int(w.min()), int(w.max()) + 1) if w.allowed(v)]
    x_vals = [v for v in range(int(x.min()), int(x.max()) + 1) if x.allowed(v)]
    sums = [sum(a * b for a, b in zip(ws, xs)) for ws in itertools.product(w_vals, repeat=k)
            for xs in itertools.product(x_vals, repeat=k)]
    assert bounds.datatype_dot_product_range(int(w.min()), int(w.max()), int(x.min()), int(x.max()), k) == \
        (min(sums), max(sums))


def test_narrow_weight_quantizer_range_comes_from_qonnx():
    assert (IntType.from_quant(4, True, True).lo, IntType.from_quant(4, True, True).hi) == (-7, 7)
    assert (IntType.from_quant(4, True, False).lo, IntType.from_quant(4, False, False).hi) == (-8, 15)
    assert (IntType.from_datatype(DataType["BIPOLAR"]).lo, IntType.from_datatype(DataType["BIPOLAR"]).hi) == (-1, 1)


def _size_runtime_weights(wdt: str, idt: str, mw: int = 64) -> tuple[str, int, int]:
    """A one-node MVAU with runtime-writeable weights and no guarantee: the width it gets,
    and the exact worst case over every weight of the type and every input."""
    model = mvau_graph(acc_bits=32, mw=mw, mh=16, pe=2, simd=4, idt=idt, wdt=wdt)
    inst = getCustomOp(model.graph.node[0])
    inst.set_nodeattr("runtime_writeable_weights", 1)
    sizer = SizeAccumulators(None, "guaranteed")
    model = model.transform(sizer)
    w, x = DataType[wdt], DataType[idt]
    lo, hi = bounds.datatype_dot_product_range(int(w.min()), int(w.max()), int(x.min()), int(x.max()), mw)
    return getCustomOp(model.graph.node[0]).get_nodeattr("accDataType"), lo, hi


def test_unsigned_weights_get_an_accumulator_that_holds_their_worst_case():
    """The issue's case: UINT2 weights, UINT4 inputs, 64 terms: up to 64*3*15 = 2880."""
    acc, lo, hi = _size_runtime_weights("UINT2", "UINT4")
    assert (lo, hi) == (0, 2880)
    assert DataType[acc].max() >= 2880 and DataType[acc].min() <= 0
    assert acc == "INT13"   # signed: 12 bits would hold only 2047


@pytest.mark.parametrize("wdt, idt", [("INT4", "BIPOLAR"), ("UINT4", "INT4"), ("INT2", "UINT2"), ("TERNARY", "INT3")])
def test_every_type_pair_is_sized_to_hold_its_worst_case(wdt, idt):
    acc, lo, hi = _size_runtime_weights(wdt, idt)
    dt = DataType[acc]
    assert dt.min() <= lo and hi <= dt.max()
    assert not (DataType[f"INT{dt.bitwidth() - 1}"].min() <= lo and hi <= DataType[f"INT{dt.bitwidth() - 1}"].max())


def test_overflow_check_uses_the_input_types_range(tmp_path):
    """BIPOLAR inputs reach -1: the overflow check's worst case must include them."""
    from a2qflow.build_flows import overflow

    model = mvau_graph(acc_bits=8, mw=16, mh=4, pe=2, simd=4, idt="BIPOLAR", wdt="INT4")
    w = np.full((16, 4), -8.0, np.float32)   # every weight -8: with inputs -1 the sum is +128
    model.set_initializer("weights", w)
    result = overflow.check_node(model, model.graph.node[0], None)
    assert result["worst_case_wraps"] == 4   # 128 does not fit INT8, on every channel


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_xnor_popcount_range_matches_every_input_exhaustively(k):
    """A binary (XNOR) layer counts inputs equal to their weight: 0..K for every weight
    vector, which the sizing and the overflow check use instead of a signed dot product."""
    for w in itertools.product((0, 1), repeat=k):
        counts = [sum(int(a == b) for a, b in zip(x, w)) for x in itertools.product((0, 1), repeat=k)]
        lo, hi = bounds.popcount_range(np.array([w]))
        assert (int(lo[0]), int(hi[0])) == (min(counts), max(counts)) == (0, k)


@pytest.mark.parametrize("xdt, wdt, xnor", [("BINARY", "BINARY", 1), ("BIPOLAR", "BIPOLAR", 0)])
def test_binary_layers_are_sized_and_checked_as_popcounts(xdt, wdt, xnor):
    from a2qflow.build_flows import overflow

    k = 64
    model = mvau_graph(acc_bits=32, mw=k, mh=8, pe=2, simd=4, idt=xdt, wdt=wdt)
    node = model.graph.node[0]
    inst = getCustomOp(node)
    inst.set_nodeattr("binaryXnorMode", xnor)
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2, size=(k, 8)) if wdt == "BINARY" else rng.choice([-1, 1], size=(k, 8))
    model.set_initializer("weights", w.astype(np.float32))
    model = model.transform(SizeAccumulators(None, "value"))
    acc = DataType[getCustomOp(model.graph.node[0]).get_nodeattr("accDataType")]
    assert acc.max() >= k and acc.min() <= 0 and acc.bitwidth() == 8    # 0..64: INT8, FINN's formula gives INT7
    result = overflow.check_node(model, model.graph.node[0], None)
    assert result["worst_case_wraps"] == 0 and result["worst_case_wraps_at_p_minus_1"] == 8   # 64 needs all 8 bits


@pytest.mark.parametrize("part, widened", [("xc7z020clg400-1", True), ("xczu7ev-ffvc1156-2-e", False)])
def test_weights_reaching_the_datatype_minimum_are_kept_narrow_on_dsp48e1(part, widened):
    """FINN builds the RTL MVU on DSP48E1 only for narrow weights; its own minimisation can
    make narrow-quantized weights non-narrow (-4..3 typed INT3). One more weight bit keeps the
    layer RTL there; on DSP48E2 parts nothing changes."""
    from a2qflow.build_flows.sizing import KeepWeightsNarrow

    model = mvau_graph(acc_bits=12, mw=16, mh=4, pe=2, simd=4, wdt="INT3")
    w = np.random.default_rng(0).integers(-4, 4, size=(16, 4)).astype(np.float32)
    w[0, 0] = -4
    model.set_initializer("weights", w)
    keep = KeepWeightsNarrow(part)
    model = model.transform(keep)
    wdt = getCustomOp(model.graph.node[0]).get_nodeattr("weightDataType")
    assert (wdt, keep.widened) == (("INT4", ["MVAU_rtl_0"]) if widened else ("INT3", []))


def _keep_narrow(model, part="xc7z020clg400-1"):
    from a2qflow.build_flows.sizing import KeepWeightsNarrow

    keep = KeepWeightsNarrow(part)
    model = model.transform(keep)
    types = [(getCustomOp(n).get_nodeattr("weightDataType"), model.get_tensor_datatype(n.input[1]).name)
             for n in model.graph.node]
    return types, keep.widened


def _weights(model, values, name="weights"):
    w = np.resize(np.asarray(values, dtype=np.float32), model.get_initializer(name).shape)
    model.set_initializer(name, w)
    return model


def test_keep_weights_narrow_widens_the_node_attribute_and_the_tensor_by_exactly_one_bit():
    """A weight datatype only wider would build (HLS or a waste of a bit), one narrower would wrap
    the weights: the attribute FINN builds from and the tensor's datatype both become INT<b+1>.
    The smallest signed type with a minimum, INT2 (-2..1), is widened too."""
    model = _weights(mvau_graph(acc_bits=12, mw=4, mh=4, pe=2, simd=2, wdt="INT3"), [-4, 3, 0, -1])
    assert _keep_narrow(model) == ([("INT4", "INT4")], ["MVAU_rtl_0"])
    model = _weights(mvau_graph(acc_bits=12, mw=4, mh=4, pe=2, simd=2, wdt="INT2"), [-2, 1, 0, -1])
    assert _keep_narrow(model) == ([("INT3", "INT3")], ["MVAU_rtl_0"])


def test_keep_weights_narrow_leaves_narrow_unsigned_and_runtime_weights_alone():
    narrow = _weights(mvau_graph(acc_bits=12, mw=4, mh=4, pe=2, simd=2, wdt="INT3"), [-3, 3, 0, -1])
    assert _keep_narrow(narrow) == ([("INT3", "INT3")], [])                  # -3..3 is already narrow
    unsigned = _weights(mvau_graph(acc_bits=12, mw=4, mh=4, pe=2, simd=2, wdt="UINT3"), [0, 7, 1, 2])
    assert _keep_narrow(unsigned) == ([("UINT3", "UINT3")], [])              # reaches its minimum 0: no sign
    runtime = mvau_graph(acc_bits=12, mw=4, mh=4, pe=2, simd=2, wdt="INT3")
    runtime.del_initializer("weights")                                        # weights not in the graph
    assert _keep_narrow(runtime) == ([("INT3", "INT3")], [])


def test_keep_weights_narrow_looks_at_every_layer():
    """A layer that needs nothing does not stop the check of the layers after it."""
    from onnx import helper

    model = mvau_graph(acc_bits=12, mw=4, mh=4, pe=2, simd=2, wdt="INT3")
    _weights(model, [-3, 3, 0, -1])                                           # first layer: narrow already
    second = helper.make_node("MVAU_rtl", ["out", "weights2"], ["out2"], name="MVAU_rtl_1")
    second.domain = model.graph.node[0].domain
    second.attribute.extend(model.graph.node[0].attribute)
    model.graph.node.append(second)
    model.graph.output[0].name = "out2"
    model.set_initializer("weights2", np.resize(np.float32([-4, 3, 0, -1]), (4, 4)))
    model.set_tensor_datatype("weights2", DataType["INT3"])
    assert _keep_narrow(model) == ([("INT3", "INT3"), ("INT4", "INT4")], ["MVAU_rtl_1"])
