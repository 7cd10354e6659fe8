"""Boards and folding configurations: what a build needs to know about the hardware.

Boards are data (`boards.yaml`, each figure with its source) so that adding a board or
correcting a figure never touches code; names and parts follow FINN's board map so a
`Board` can be handed straight to FINN's `DataflowBuildConfig` (board, fpga_part,
synth_clk_period_ns, shell_flow_type).

Folding configurations are FINN's own folding JSON (what `ApplyConfig` /
`step_apply_folding_config` read), one per model and board:
`folding/<model>/<board>.json`. Where none ships, the build falls back to FINN's
target-FPS auto-folding. Node names in those files are the ones FINN gives after
`SpecializeLayers` + `GiveUniqueNodeNames` (e.g. `MVAU_rtl_0`), so each model folder also
declares the layer dimensions it was written for (`layer_dims.json`), and `check_folding`
refuses a file whose PE/SIMD do not divide them before FINN would fail deep in codegen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from a2qflow.errors import A2qflowError

HERE = Path(__file__).resolve().parent
BOARDS_FILE = HERE / "boards.yaml"
FOLDING_DIR = HERE / "folding"
LAYER_DIMS_FILE = "layer_dims.json"

RESOURCE_KEYS = ("LUT", "FF", "BRAM_18K", "DSP", "URAM")
SHELL_FLOWS = ("vivado_zynq", "vitis_alveo")      # FINN's ShellFlowType values
FAMILIES = ("xc7", "xcup")                         # Yosys synth_xilinx -family
DSP_TYPES = ("DSP48E1", "DSP48E2", "DSP58")        # finn.util.basic.get_dsp_block values

# Folding fields with a closed set of values in FINN; anything else is passed through.
RAM_STYLES = ("auto", "block", "distributed", "ultra")
MEM_MODES = ("internal_embedded", "internal_decoupled", "external")
RES_TYPES = ("auto", "lut", "dsp")


class HwConfigError(A2qflowError, ValueError):
    """A board or folding file that is malformed or does not fit; the message names file and field."""


class UnknownBoardError(HwConfigError):
    """A board name that is not in boards.yaml; the message lists the valid names."""


@dataclass(frozen=True)
class Board:
    """One target board. `resources` is the whole device's programmable-logic budget
    (LUT, FF, BRAM_18K, DSP, URAM), what build reports compare estimates against."""

    name: str
    part: str
    clk_ns: float
    shell_flow: str
    family: str
    dsp: str
    resources: dict[str, int] = field(hash=False)
    power_rails: bool

    @property
    def clk_mhz(self) -> float:
        return 1000.0 / self.clk_ns


def _board(name: str, entry: Any, source: Path) -> Board:
    where = f"{source}: board {name!r}"
    if not isinstance(entry, dict):
        raise HwConfigError(f"{where}: expected a mapping, got {type(entry).__name__}")
    fields = ("part", "clk_ns", "shell_flow", "family", "dsp", "resources", "power_rails")
    missing = [f for f in fields if f not in entry]
    if missing:
        raise HwConfigError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(entry) - set(fields))
    if unknown:
        raise HwConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    if not isinstance(entry["part"], str) or not entry["part"]:
        raise HwConfigError(f"{where}: part must be a non-empty string")
    clk = entry["clk_ns"]
    if isinstance(clk, bool) or not isinstance(clk, (int, float)) or clk <= 0:
        raise HwConfigError(f"{where}: clk_ns must be a positive number, got {clk!r}")
    for key, allowed in (("shell_flow", SHELL_FLOWS), ("family", FAMILIES), ("dsp", DSP_TYPES)):
        if entry[key] not in allowed:
            raise HwConfigError(f"{where}: {key}={entry[key]!r}; valid: {', '.join(allowed)}")
    res = entry["resources"]
    if not isinstance(res, dict) or set(res) != set(RESOURCE_KEYS):
        got = sorted(res) if isinstance(res, dict) else res
        raise HwConfigError(f"{where}: resources must have exactly {', '.join(RESOURCE_KEYS)}; got {got}")
    for key, value in res.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise HwConfigError(f"{where}: resources.{key} must be a non-negative integer, got {value!r}")
    if not isinstance(entry["power_rails"], bool):
        raise HwConfigError(f"{where}: power_rails must be true or false")
    return Board(name=name, part=entry["part"], clk_ns=float(clk), shell_flow=entry["shell_flow"],
                 family=entry["family"], dsp=entry["dsp"],
                 resources={k: res[k] for k in RESOURCE_KEYS}, power_rails=entry["power_rails"])


def load_boards(path: str | Path = BOARDS_FILE) -> dict[str, Board]:
    """Read and validate a boards YAML; a bad entry is refused naming the board and field,
    so a typo in the data shows up at import, not as a wrong part in a Vivado run."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("boards"), dict) or not doc["boards"]:
        raise HwConfigError(f"{path}: expected a top-level 'boards:' mapping")
    return {str(name): _board(str(name), entry, path) for name, entry in doc["boards"].items()}


BOARDS: dict[str, Board] = load_boards()
DEFAULT_BOARD = "Pynq-Z2"   # the embedded default's board


def board_names() -> list[str]:
    return list(BOARDS)


def get_board(name: str) -> Board:
    """The board called `name`, matched exactly or case-insensitively (`pynq-z2`)."""
    if name in BOARDS:
        return BOARDS[name]
    folded = {key.casefold(): board for key, board in BOARDS.items()}
    board = folded.get(str(name).casefold())
    if board is None:
        raise UnknownBoardError(f"unknown board {name!r}; valid boards: {', '.join(BOARDS)}")
    return board


# -- folding configurations ---------------------------------------------------------------

def folding_config(model: str, board: str) -> Path | None:
    """The shipped FINN folding JSON for `model` on `board`, or None when there is none
    (the build then uses FINN's target-FPS auto-folding). Unknown boards raise."""
    path = FOLDING_DIR / model.lower() / f"{get_board(board).name}.json"
    return path if path.is_file() else None


def shipped_folding_configs() -> list[Path]:
    """Every folding JSON in the package (all files but each model's layer_dims.json)."""
    return sorted(p for p in FOLDING_DIR.glob("*/*.json") if p.name != LAYER_DIMS_FILE)


def declared_layer_dims(model: str) -> dict[str, tuple[int, int]]:
    """The layer dimensions a model's shipped configs were written for: node name ->
    (MH, MW). For MVAUs that is (output rows, input columns); for other nodes (MH, MW) are
    the dimensions their PE and SIMD fold (channels, or VVAU's channels and kernel size)."""
    path = FOLDING_DIR / model.lower() / LAYER_DIMS_FILE
    doc = json.loads(path.read_text())
    return {name: (int(mh), int(mw)) for name, (mh, mw) in doc["layers"].items()}


def layer_dims_from_model(model) -> dict[str, tuple[int, int]]:
    """(MH, MW) per foldable node of a FINN HW graph (a qonnx ModelWrapper), in the
    convention of `check_folding`: PE must divide MH, SIMD must divide MW. Lets the flow
    check a folding file against the graph it is about to be applied to."""
    from qonnx.custom_op.registry import getCustomOp

    # op type prefix -> (attribute PE folds, attribute SIMD folds); kernel dims multiply
    sources = {"MVAU": ("MH", "MW"), "VVAU": ("Channels", "Kernel"),
               "Thresholding": ("NumChannels", "NumChannels"),
               "ConvolutionInputGenerator": ("IFMChannels", "IFMChannels"),
               "FMPadding": ("NumChannels", "NumChannels"), "Pool": ("Channels", "Channels"),
               "LabelSelect": ("Labels", "Labels")}
    dims: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        base = node.op_type.rsplit("_", 1)[0] if node.op_type.endswith(("_hls", "_rtl")) else node.op_type
        if base not in sources:
            continue
        inst = getCustomOp(node)
        values = []
        for attr in sources[base]:
            value = inst.get_nodeattr(attr)
            if isinstance(value, (list, tuple)):        # VVAU Kernel = [kh, kw]
                prod = 1
                for v in value:
                    prod *= int(v)
                value = prod
            values.append(int(value))
        dims[node.name] = (values[0], values[1])
    return dims


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_enum(where: str, key: str, value: Any) -> None:
    allowed = {"ram_style": RAM_STYLES, "mem_mode": MEM_MODES, "resType": RES_TYPES}.get(key)
    if allowed is not None and value not in allowed:
        raise HwConfigError(f"{where}: {key}={value!r}; valid: {', '.join(allowed)}")


def check_folding(path: str | Path, layer_dims: dict[str, tuple[int, int]], *,
                  allow_unknown_nodes: bool = False) -> None:
    """Refuse a folding JSON that FINN would only reject late (or silently mis-apply).

    Checks the file is FINN's format ({"Defaults": {attr: [value, [op types] | "all", ...]},
    "<node>": {attr: value}}), that every per-node PE divides MH and SIMD divides MW of
    `layer_dims[node]`, and that ram_style/mem_mode/resType have values FINN knows.
    A node missing from `layer_dims` is an error unless `allow_unknown_nodes`: FINN
    would only warn and leave that layer unfolded, which hides a renamed node.
    PE/SIMD in "Defaults" are refused: they would apply to layers of any size.
    Raises ValueError naming the node and field.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HwConfigError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise HwConfigError(f"{path}: top level must be an object of node name -> settings")

    defaults = doc.get("Defaults", {})
    if not isinstance(defaults, dict):
        raise HwConfigError(f"{path}: Defaults must be an object of attribute -> [value, op types, ...]")
    for key, spec in defaults.items():
        where = f"{path}: Defaults.{key}"
        if not isinstance(spec, list) or not spec or len(spec) % 2:
            raise HwConfigError(f"{where}: must be a list of (value, op types) pairs, got {spec!r}")
        if key in ("PE", "SIMD"):
            raise HwConfigError(f"{where}: set PE/SIMD per node, where they can be checked against the layer")
        for value, ops in zip(spec[::2], spec[1::2]):
            if not (ops == "all" or (isinstance(ops, list) and ops and all(isinstance(o, str) for o in ops))):
                raise HwConfigError(f"{where}: op types must be \"all\" or a list of op type names, got {ops!r}")
            if ops == "all" and len(spec) > 2:
                raise HwConfigError(f"{where}: \"all\" must be the only (value, op types) pair")
            _check_enum(where, key, value)

    for node, settings in doc.items():
        if node == "Defaults":
            continue
        if not isinstance(settings, dict):
            raise HwConfigError(f"{path}: node {node}: settings must be an object, got {settings!r}")
        if node not in layer_dims:
            if allow_unknown_nodes:
                continue
            raise HwConfigError(f"{path}: node {node}: not a layer of the graph "
                             f"(known: {', '.join(layer_dims) or 'none'})")
        mh, mw = layer_dims[node]
        for key, dim, dim_name in (("PE", mh, "MH"), ("SIMD", mw, "MW")):
            if key not in settings:
                continue
            value = settings[key]
            if not _positive_int(value):
                raise HwConfigError(f"{path}: node {node}: {key}={value!r} must be a positive integer")
            if dim % value:
                raise HwConfigError(f"{path}: node {node}: {key}={value} does not divide {dim_name}={dim}")
        for key, value in settings.items():
            _check_enum(f"{path}: node {node}", key, value)
