"""The whole accelerator as one design, without Vivado: FINN's own RTL for every node,
joined by a top module generated from the HW graph, compiled once with Verilator and driven
by a compiled C++ harness that streams a test set through it with AXI-stream backpressure.

    HW graph (specialized, folded, accumulators sized; every node _rtl)
      -> FINN's InsertDWC, InsertFIFO(create_shallow_fifos), SpecializeLayers, PrepareIP
      -> `gather`: each node's FINN-generated files and finn-rtllib sources, copied into one
         folder and adjusted on the copies (templates/rtl_patches.yaml)
      -> `top_context` + templates/stitched_top.sv.j2: one wire bundle per graph tensor, each
         node's in<i>_V/out<j>_V on its tensors, every internal_decoupled MVAU fed by its
         memstream weight streamer (as FINN's block-design script connects it), FIFO
         occupancy counters as monitor ports
      -> `compile_design`: Verilator + templates/stitched_harness.cpp (cached by content)
      -> `simulate`: integer images in, integer outputs, cycles per image and first-image
         latency out.

FIFO sizing (FINN's own, rtlsim-based, needs Vivado's XSI): built with FINN_SIMULATION, every
FIFO is FINN's fifo_gauge (unbounded, records its largest occupancy); the measured maxima
become the FIFO depths of the design that is then built and measured (`size_fifos`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.deploy.packing import pack, parse_dtype, unpack_int
from a2qflow.errors import A2qflowError

from . import rtl, rtl_sim
from .sources import apply_patch, render, template_path

TOP = "a2qflow_accel"
HARNESS = "stitched_harness.cpp"
DESIGN_FILE = "design.json"
GAUGE_DEFINE = "FINN_SIMULATION"   # FINN's switch: FIFOs become fifo_gauge (unbounded, occupancy counted)
# the per-file adjustments of FINN's sources (rtl_patches.yaml), by file name
ADJUSTMENTS = {"fifo.sv": "fifo_abits_scalar", "add_multi.sv": "hoist_add_multi_function",
               "mvu.sv": "drop_recovery_watchdog", "mvu_vvu_8sx9_dsp58.sv": "drop_recovery_watchdog",
               "thresholding.sv": "guard_threshold_scope_select"}


class StitchError(A2qflowError, RuntimeError):
    """The whole design cannot be stitched, compiled or simulated; the message says why."""


@dataclass
class Design:
    """A stitched design on disk: its folder, top, sources and stream interface."""
    dir: Path
    sources: list[str]
    data: list[str]
    adjustments: list[str]
    in_width: int                   # padded stream widths (bits)
    out_width: int
    in_shape: list                  # folded shapes of one image: (..., elements per stream word)
    out_shape: list
    in_dtype: str
    out_dtype: str
    monitors: list[str] = field(default_factory=list)   # FIFO nodes, in monitor-port order
    fifo_depths: dict = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    top: str = TOP
    # cycles without an input or output transfer before the harness calls the design hung: at
    # least twice what the layers need for one image (FINN's per-node estimates, summed), as a
    # slowly folded layer may hold the first output back far longer than a fixed limit
    idle_limit: int = rtl_sim.IDLE_LIMIT

    def to_json(self) -> dict:
        return {**asdict(self), "dir": str(self.dir)}

    @classmethod
    def load(cls, folder: Path) -> "Design":
        data = json.loads((Path(folder) / DESIGN_FILE).read_text())
        return cls(**{**data, "dir": Path(folder)})

    @property
    def words_in(self) -> int:
        return int(np.prod(self.in_shape[1:-1]))

    @property
    def words_out(self) -> int:
        return int(np.prod(self.out_shape[1:-1]))


# ------------------------------------------------------------------ FINN's stream infrastructure


def blocking_nodes(model: ModelWrapper) -> list[dict]:
    """Nodes without FINN-generated RTL (HLS-only layers): they block a whole-design simulation."""
    return [{"node": n.name, "op_type": n.op_type,
             "why": "HLS layer: its RTL comes from Vitis HLS, which is not installed" if n.op_type.endswith("_hls")
             else "not a FINN hardware layer with RTL"} for n in model.graph.node if not n.op_type.endswith("_rtl")]


def stream_infrastructure(model: ModelWrapper, part: str, clk_ns: float,
                          fifo_depths: dict | None = None) -> ModelWrapper:
    """FINN's width converters and FIFOs inserted, every node specialized and its HDL generated
    (no Xilinx tool; FINN's code folders go to its build folder, the run's finn_tmp/). FIFO
    depths from `fifo_depths` (node name -> depth) where given."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.transformation.general import GiveUniqueNodeNames

    model = ModelWrapper(copy.deepcopy(model.model))
    model = model.transform(InsertDWC()).transform(InsertFIFO(create_shallow_fifos=True))
    model = model.transform(SpecializeLayers(part)).transform(GiveUniqueNodeNames())
    for node in model.graph.node:
        inst = getCustomOp(node)
        # PrepareIP skips nodes whose code folder is set: a changed depth would keep the old HDL
        inst.set_nodeattr("code_gen_dir_ipgen", "")
        if node.op_type.startswith("StreamingFIFO") and fifo_depths and node.name in fifo_depths:
            inst.set_nodeattr("depth", int(fifo_depths[node.name]))
    return model.transform(PrepareIP(part, clk_ns))


# ------------------------------------------------------------------ sources


def _node_files(node, inst) -> list[Path]:
    files = [Path(f) for f in inst.get_rtl_file_list(abspath=True)]
    if node.op_type in rtl.DOT_PRODUCT_RTL and inst.get_nodeattr("mem_mode") == "internal_decoupled":
        lib, gen = rtl.rtllib(), Path(inst.get_nodeattr("code_gen_dir_ipgen"))
        files += [lib / "axi/hdl/axilite.sv", lib / "memstream/hdl/memstream.sv",
                  lib / "memstream/hdl/memstream_axi.sv", gen / f"{node.name}_memstream_wrapper.v"]
    return files


def gather(model: ModelWrapper, rtl_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Every node's sources (once per file name, packages first) and data files in rtl_dir,
    adjusted on the copies; returns (sources, data files, adjustments made)."""
    rtl_dir.mkdir(parents=True, exist_ok=True)
    sources, data, adjustments = [], [], []
    for node in model.graph.node:
        inst = getCustomOp(node)
        for path in _node_files(node, inst):
            if path.name in sources:
                continue
            text = path.read_text()
            if path.name in ADJUSTMENTS:
                text = apply_patch(ADJUSTMENTS[path.name], text, path.name)
                adjustments.append(f"{path.name}: {ADJUSTMENTS[path.name]}")
            elif path.name.endswith("_memstream_wrapper.v"):
                text = apply_patch("per_node_init_file", text, path.name, node=node.name)
                adjustments.append(f"{path.name}: per_node_init_file")
            (rtl_dir / path.name).write_text(text)
            sources.append(path.name)
        for dat in sorted(Path(inst.get_nodeattr("code_gen_dir_ipgen")).glob("*.dat")):
            name = f"{node.name}_memblock.dat" if dat.name == "memblock.dat" else dat.name
            shutil.copyfile(dat, rtl_dir / name)
            data.append(name)
    sources.sort(key=lambda s: not s.endswith("_pkg.sv"))   # Verilator reads packages before their users
    return sources, data, adjustments


_PORT = re.compile(r"^\s*(input|output)\s+(?:wire\s+|logic\s+|reg\s+)?(?:signed\s+)?(?:\[[^\]]*\]\s*)?(\w+)", re.M)


def _balanced(text: str, i: int) -> int:
    depth = 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    raise StitchError("unbalanced parentheses in a generated wrapper")


def module_ports(path: Path, module: str) -> list[tuple[str, str]]:
    """(direction, name) of the ANSI port list of `module` in a generated wrapper."""
    text = re.sub(r"//[^\n]*", "", path.read_text())
    text = re.sub(r"/\*.*?\*/|\(\*.*?\*\)", "", text, flags=re.S)
    m = re.search(r"\bmodule\s+%s\b\s*" % re.escape(module), text)
    if m is None:
        raise StitchError(f"module {module} not found in {path}")
    i = m.end()
    if text[i] == "#":   # parameter list
        i = _balanced(text, text.index("(", i))
    i = text.index("(", i)
    return _PORT.findall(text[i + 1:_balanced(text, i) - 1])


def _dynamic_inputs(model: ModelWrapper, node) -> list[str]:
    return [t for t in node.input if t and model.get_initializer(t) is None]


def _stream(name: str) -> list[tuple[str, str]]:
    return [("TDATA", f"{name}_tdata"), ("TVALID", f"{name}_tvalid"), ("TREADY", f"{name}_tready")]


def top_context(model: ModelWrapper, monitors: bool) -> dict:
    """What templates/stitched_top.sv.j2 needs: streams (one per tensor) and instances."""
    gin, gout = model.graph.input[0].name, model.graph.output[0].name
    wires: dict[str, str] = {}

    def wire(tensor: str) -> str:
        return wires.setdefault(tensor, f"s{len(wires)}")

    streams, instances, fifo_monitors = [], [], []
    for tensor in [gin] + [o for n in model.graph.node for o in n.output]:
        producer, consumers = model.find_producer(tensor), model.find_consumers(tensor) or []
        if len(consumers) > 1:
            raise StitchError(f"tensor {tensor} has {len(consumers)} consumers; AXI streams are point to point "
                              "(graphs with forks are not stitched yet)")
        width = (getCustomOp(producer).get_outstream_width_padded(list(producer.output).index(tensor)) if producer
                 else getCustomOp(consumers[0]).get_instream_width_padded(
                     _dynamic_inputs(model, consumers[0]).index(tensor)))
        if consumers:
            needs = getCustomOp(consumers[0]).get_instream_width_padded(_dynamic_inputs(model, consumers[0]).index(tensor))
            if needs != width:
                raise StitchError(f"tensor {tensor}: {width}-bit producer, {needs}-bit consumer (a width converter "
                                  "is missing)")
        streams.append({"name": wire(tensor), "width": width,
                        "comment": f"{tensor}: {producer.name if producer else 'in0_V'} -> "
                                   f"{consumers[0].name if consumers else 'out0_V'}"})
    for node in model.graph.node:
        inst = getCustomOp(node)
        gen = Path(inst.get_nodeattr("code_gen_dir_ipgen"))
        types = inst.get_nodeattr_types()
        module = inst.get_nodeattr("gen_top_module") if "gen_top_module" in types and \
            inst.get_nodeattr("gen_top_module") else node.name
        source = next(p for p in _node_files(node, inst) if p.parent == gen and not p.name.endswith("_memstream_wrapper.v"))
        ports = module_ports(source, module)
        names = {n for _, n in ports}
        conns = [(p, "ap_clk") for p in ("ap_clk", "ap_clk2x") if p in names] + [("ap_rst_n", "ap_rst_n")]
        for i, tensor in enumerate(_dynamic_inputs(model, node)):
            conns += [(f"in{i}_V_{s}", sig) for s, sig in _stream(wire(tensor))]
        for j, tensor in enumerate(node.output):
            conns += [(f"out{j}_V_{s}", sig) for s, sig in _stream(wire(tensor))]
        if monitors and node.op_type.startswith("StreamingFIFO") and {"count", "maxcount"} <= names:
            conns += [("count", f"{node.name}_count"), ("maxcount", f"{node.name}_maxcount")]
            fifo_monitors.append({"fifo": node.name})
        if node.op_type in rtl.DOT_PRODUCT_RTL and inst.get_nodeattr("mem_mode") == "internal_decoupled":
            weights = f"{node.name}_wstrm"
            streams.append({"name": weights, "width": (inst.get_instream_width_padded(1) + 7) // 8 * 8,
                            "comment": f"weights of {node.name}: memstream -> in1_V"})
            conns += [(f"in1_V_{s}", sig) for s, sig in _stream(weights)]
            mem_ports = module_ports(gen / f"{node.name}_memstream_wrapper.v", f"{node.name}_memstream_wrapper")
            mem = [(p, "ap_clk") for _, p in mem_ports if p in ("ap_clk", "ap_clk2x")] + [("ap_rst_n", "ap_rst_n")]
            mem += [(f"m_axis_0_{s.lower()}", sig) for s, sig in _stream(weights)]
            used = {p for p, _ in mem}
            mem += [(p, "'0") for d, p in mem_ports if d == "input" and p not in used]
            mem += [(p, "") for d, p in mem_ports if d == "output" and p not in used]
            instances.append({"module": f"{node.name}_memstream_wrapper", "name": f"{node.name}_wmem",
                              "comment": f"{node.name} weights ({node.name}_memblock.dat)", "conns": mem})
        used = {p for p, _ in conns}
        conns += [(p, "'0") for d, p in ports if d == "input" and p not in used]
        conns += [(p, "") for d, p in ports if d == "output" and p not in used]
        instances.append({"module": module, "name": f"{node.name}_i", "conns": conns,
                          "comment": f"{node.name} ({node.op_type})"})
    first, last = getCustomOp(model.graph.node[0]), getCustomOp(model.graph.node[-1])
    return {"top": TOP, "graph_name": model.graph.name, "streams": streams, "instances": instances,
            "monitors": fifo_monitors, "global_in": wire(gin), "global_out": wire(gout),
            "in_width": first.get_instream_width_padded(0), "out_width": last.get_outstream_width_padded(0)}


def write_design(model: ModelWrapper, folder: Path, monitors: bool) -> Design:
    """The stitched design of a HW graph with its stream infrastructure, in folder."""
    folder = Path(folder).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    sources, data, adjustments = gather(model, folder)
    ctx = top_context(model, monitors)
    (folder / f"{TOP}.sv").write_text(render("stitched_top.sv.j2", **ctx))
    first, last = getCustomOp(model.graph.node[0]), getCustomOp(model.graph.node[-1])
    design = Design(folder, sources + [f"{TOP}.sv"], data, adjustments, ctx["in_width"], ctx["out_width"],
                    [int(v) for v in first.get_folded_input_shape(0)], [int(v) for v in last.get_folded_output_shape(0)],
                    first.get_input_datatype(0).name, last.get_output_datatype(0).name,
                    [m["fifo"] for m in ctx["monitors"]],
                    {n.name: int(getCustomOp(n).get_nodeattr("depth")) for n in model.graph.node
                     if n.op_type.startswith("StreamingFIFO")}, [n.name for n in model.graph.node],
                    idle_limit=max(rtl_sim.IDLE_LIMIT, 2 * sum(int(getCustomOp(n).get_exp_cycles())
                                                               for n in model.graph.node)))
    (folder / DESIGN_FILE).write_text(json.dumps(design.to_json(), indent=1))
    model.save(str(folder / "stitched.onnx"))
    return design


# ------------------------------------------------------------------ Verilator


def compile_design(design: Design, defines: tuple[str, ...] = ()) -> tuple[Path, float]:
    """Verilate and compile the top with the harness into <design>/obj (reused when sources,
    harness and options are unchanged); returns (binary, compile seconds, 0 when reused)."""
    obj = design.dir / "obj"
    args = [*rtl_sim.VERILATOR_ARGS, *[f"+define+{d}" for d in defines], "--top-module", design.top,
            "--prefix", "Vtop", "-o", "Vtop", "-CFLAGS",
            f"-DIDLE_LIMIT={design.idle_limit}" + (f" -DA2Q_N_FIFOS={len(design.monitors)}" if design.monitors else "")]
    key = hashlib.sha256(json.dumps([args, rtl_sim.make_overrides()]).encode())
    for name in design.sources:
        key.update(name.encode() + (design.dir / name).read_bytes())
    key.update(template_path(HARNESS).read_bytes())
    stamp = obj / "build.json"
    if (obj / "Vtop").is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key.hexdigest():
        return obj / "Vtop", 0.0
    missing = rtl_sim.missing_tools()
    if missing:
        raise StitchError(f"Verilator needs {', '.join(missing)} (Debian: perl make g++)")
    shutil.rmtree(obj, ignore_errors=True)
    obj.mkdir(parents=True)
    shutil.copyfile(template_path(HARNESS), design.dir / HARNESS)
    env = {**os.environ, "VERILATOR_ROOT": str(rtl_sim.verilator_root())}
    t0 = time.perf_counter()
    log = obj / "build.log"
    with open(log, "w") as logf:
        for cmd in ([*rtl_sim.verilator_command(), *args, "--Mdir", str(obj), str(design.dir / HARNESS),
                     *[str(design.dir / f) for f in design.sources]],
                    ["make", "-s", "-C", str(obj), "-f", "Vtop.mk", *rtl_sim.make_overrides()]):
            if cmd[0] == "make":
                rtl_sim.copy_runtime(rtl_sim.runtime_cache(), obj)
            logf.write("$ " + " ".join(cmd) + "\n")
            logf.flush()
            if subprocess.run(cmd, cwd=design.dir, env=env, stdout=logf, stderr=subprocess.STDOUT).returncode:
                raise StitchError(f"the whole design did not compile; see {log}")
    rtl_sim.copy_runtime(obj, rtl_sim.runtime_cache())
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"key": key.hexdigest(), "compile_seconds": seconds}))
    return obj / "Vtop", seconds


def _port_bytes(width: int) -> int:
    return 4 * (-(-width // 32))


def pack_images(design: Design, codes: np.ndarray) -> np.ndarray:
    """Integer images (n, elements) as stream words, FINN's layout, padded to whole uint32."""
    dt = parse_dtype(design.in_dtype)
    words = np.asarray(codes, dtype=np.int64).reshape(-1, design.in_shape[-1])
    if words.size and (words.min() < dt.min or words.max() > dt.max):
        raise StitchError(f"inputs {int(words.min())}..{int(words.max())} outside {design.in_dtype}")
    packed = pack(words, dt)
    return np.pad(packed, ((0, 0), (0, _port_bytes(design.in_width) - packed.shape[1])))


def unpack_images(design: Design, data: np.ndarray, n: int) -> np.ndarray:
    data = np.asarray(data, dtype=np.uint8).reshape(-1, _port_bytes(design.out_width))
    return unpack_int(data, parse_dtype(design.out_dtype), design.out_shape[-1]).reshape(n, -1)


def simulate(design: Design, binary: Path, codes: np.ndarray, stall_seed: int = 0, tag: str = "run",
             timeout_s: float = 1800) -> dict:
    """Stream n integer images through the compiled design; outputs, cycles and timings."""
    n = len(codes)
    run = design.dir / f"run_{tag}"
    run.mkdir(exist_ok=True)
    words = pack_images(design, codes)
    (run / "in.bin").write_bytes(words.tobytes())
    cmd = [str(Path(binary).resolve()), str(run / "in.bin"), str(run / "out.bin"), str(run / "times.bin"), str(n),
           str(design.words_in), str(design.words_out), str(stall_seed)]
    try:
        proc = subprocess.run(cmd, cwd=design.dir, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise StitchError(f"the whole-design simulation exceeded {timeout_s:.0f} s") from None
    (run / "sim.log").write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    m = re.search(r"cycles=(\d+) seconds=([\d.]+) extra=(\d+) inputs_consumed=(\d+)", proc.stdout)
    if proc.returncode or m is None:
        raise StitchError(f"the whole-design simulation failed (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-300:]}{_where_stalled(design, proc.stdout)}")
    times = np.fromfile(run / "times.bin", dtype=np.uint64).reshape(n, 2).astype(np.int64)
    done, half = times[:, 1], n // 2
    return {"outputs": unpack_images(design, np.fromfile(run / "out.bin", dtype=np.uint8), n),
            "cycles": int(m.group(1)), "sim_seconds": float(m.group(2)), "extra_outputs": int(m.group(3)),
            "inputs_consumed": int(m.group(4)), "input_words": len(words),
            "first_latency_cycles": int(times[0, 1] - times[0, 0] + 1),
            "steady_cycles_per_image": float((done[-1] - done[half]) / (n - 1 - half)) if n - 1 - half > 0 else None,
            "fifo_maxcount": {design.monitors[int(i)]: int(v)
                              for i, v in re.findall(r"fifo (\d+) maxcount (\d+)", proc.stdout)}}


def _where_stalled(design: Design, stdout: str) -> str:
    """On a stall with FIFO monitors: the node the data stopped before (the one after the last
    FIFO still holding words), so a deadlock names its place."""
    counts = {design.monitors[int(i)]: int(v) for i, v in re.findall(r"fifo (\d+) count (\d+)", stdout)}
    holding = [f for f in design.monitors if counts.get(f)]
    if not holding:
        return ""
    last = holding[-1]
    following = design.nodes[design.nodes.index(last) + 1:] if last in design.nodes else []
    after = following[0] if following else "the output"
    return f"; data stops at {after}: its input FIFO {last} holds {counts[last]} words and every FIFO after it is empty"


FIFO_SIZING_IMAGES = 4


def size_fifos(model: ModelWrapper, part: str, clk_ns: float, folder: Path, codes: np.ndarray
               ) -> tuple[ModelWrapper, Design, Path, dict]:
    """FIFO depths from observed occupancy: a gauge build (FINN_SIMULATION: unbounded FIFOs
    that count) streams the first FIFO_SIZING_IMAGES images, each FIFO gets depth max(2, its
    largest occupancy), and the sized design is generated and compiled. Returns (sized HW graph,
    design, binary, record)."""
    gauge_graph = stream_infrastructure(model, part, clk_ns)
    gauge = write_design(gauge_graph, folder / "gauge", monitors=True)
    binary, gauge_compile = compile_design(gauge, (GAUGE_DEFINE,))
    # a few images, as FINN's own FIFO sizing does: with the input streamed at full rate, the
    # FIFO in front of the slowest layer would otherwise grow with the number of images
    observed = simulate(gauge, binary, codes[:FIFO_SIZING_IMAGES], tag="gauge")["fifo_maxcount"]
    depths = {name: max(2, count) for name, count in observed.items()}
    sized_graph = stream_infrastructure(model, part, clk_ns, depths)
    design = write_design(sized_graph, folder / "design", monitors=False)
    binary, compile_s = compile_design(design)
    record = {"default_depths": gauge.fifo_depths, "observed_max_occupancy": observed, "depths": design.fifo_depths,
              "compile_seconds": {"gauge": gauge_compile, "design": compile_s}}
    return sized_graph, design, binary, record
