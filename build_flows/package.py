"""The deployment package: everything the board needs, in `<run>/package/`.

    manifest.json            board, part, clock, what is inside, SHA-256 + size of every file
    bitfile/                 finn-accel.bit + .hwh (bitstream flow; absent: `"bitfile": null`, sim-only)
    driver/settings.json     finn-plus's MakePYNQDriver output (+ runtime_weights/ if any)
    data/                    test set from the training dataset, labels, the host model's outputs
    sim/hw_graph.onnx        the final HW graph, executed by the simulated board
    a2qflow_deploy/          the board-side code (a copy of deploy/), `python -m a2qflow_deploy bench`
    README.md                how to run it

With Vivado the settings come from FINN's own step_make_driver. Without it (estimate flow)
the same FINN transformation is run here on the final HW graph, after FINN's own IODMA
insertion and partitioning (what its Zynq build does before Vivado), so the driver sees the
same io_shape_dict either way. The package is written to a temporary folder and renamed into
place: an interrupted write never leaves a package with a manifest.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from io import StringIO
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow import __version__
from a2qflow.deploy import MODULE_NAME, PACKAGE_FORMAT
from a2qflow.deploy.manifest import MANIFEST, file_entries, sha256_file
from a2qflow.errors import A2qflowError
from a2qflow.hw_configs import Board, get_board

from . import finn_env, reference
from .reference import Reference
from .run_folder import RunFolder

HW_DOMAIN = "finn.custom_op.fpgadataflow"
CPU_OPS = ("Flatten", "Reshape", "Transpose", "Mul", "Add")   # parent-graph ops the board driver applies itself


class PackageError(A2qflowError, RuntimeError):
    """The run folder cannot be packaged; the message says what is missing."""


def deploy_sources() -> list[Path]:
    """The board-side sources (the one copy, deploy/ in the repository) a package ships."""
    import a2qflow.deploy

    return sorted(Path(a2qflow.deploy.__file__).resolve().parent.glob("*.py"))


# -- what the package holds ----------------------------------------------------------------

def sim_graph(folder: RunFolder) -> tuple[Path, str]:
    """The last saved HW graph made only of FINN HW layers (the dataflow partition after its
    final transformation), and the step that wrote it."""
    models = folder.intermediate_models
    steps = (folder.read_run() or {}).get("steps") or [
        p.stem for p in sorted(models.glob("step_*.onnx"), key=lambda p: p.stat().st_mtime)]
    for step in reversed(steps):
        path = folder.intermediate(step)
        if path.is_file() and _all_hw(_read_graph(path)):
            return path, step
    raise PackageError(f"{models}: no saved HW graph (all nodes FINN HW layers); did the build reach "
                       "step_create_dataflow_partition?")


def _read_graph(path: Path) -> ModelWrapper:
    try:
        return ModelWrapper(str(path))
    except Exception as e:      # protobuf's DecodeError and friends: a damaged file, said as such
        raise PackageError(f"{path}: not a readable ONNX graph ({type(e).__name__})") from None


def _all_hw(model: ModelWrapper) -> bool:
    return len(model.graph.node) > 0 and all(
        n.domain.startswith(HW_DOMAIN) and n.op_type not in ("StreamingDataflowPartition",)
        and not n.op_type.startswith("IODMA") for n in model.graph.node)


def io_wrapping(folder: RunFolder, graph: ModelWrapper) -> dict:
    """The network's input shape and the CPU-side ops of FINN's parent graph around the
    accelerator (dataflow_parent.onnx), as data the board driver applies."""
    parent_path = folder.intermediate_models / "dataflow_parent.onnx"
    if not parent_path.is_file():
        shape = graph.get_tensor_shape(graph.graph.input[0].name)
        return {"model_input_shape": list(shape), "pre": [], "post": []}
    parent = ModelWrapper(str(parent_path))
    sdps = [n for n in parent.graph.node if n.op_type == "StreamingDataflowPartition"]
    if len(sdps) != 1:
        raise PackageError(f"{parent_path}: {len(sdps)} dataflow partitions; the board package supports one")
    pre, post, seen_sdp = [], [], False
    for node in parent.graph.node:  # FINN keeps parent nodes in topological order
        if node is sdps[0]:
            seen_sdp = True
            continue
        if node.op_type not in CPU_OPS or (node.op_type in ("Mul", "Add") and
                                           parent.get_initializer(node.input[1]) is None):
            raise PackageError(f"{parent_path}: node {node.name} ({node.op_type}) runs outside the accelerator; "
                               f"the board driver applies only {', '.join(CPU_OPS)}")
        (post if seen_sdp else pre).append(_cpu_op(parent, node))
    name = parent.graph.input[0].name
    return {"model_input_shape": list(parent.get_tensor_shape(name)), "pre": pre, "post": post,
            "input_datatype": parent.get_tensor_datatype(name).name}


def _cpu_op(model: ModelWrapper, node) -> dict:
    if node.op_type == "Transpose":
        perm = [a.ints for a in node.attribute if a.name == "perm"][0]
        return {"op": "transpose", "perm": list(perm), "node": node.name}
    if node.op_type in ("Mul", "Add"):   # the output dequantization (build_flows.boundary)
        const = np.asarray(model.get_initializer(node.input[1]), dtype=np.float32)
        return {"op": node.op_type.lower(), "const": const.reshape(-1).tolist(), "shape": list(const.shape),
                "node": node.name}
    return {"op": "reshape", "shape": list(model.get_tensor_shape(node.output[0])[1:]), "node": node.name}


# pragma: no mutate start   (drives FINN's own transformations; docs/mutation.md)
def make_driver_settings(graph_path: Path, board: Board, out_dir: Path, scratch: Path) -> Path:
    """settings.json from finn-plus's MakePYNQDriver for a graph that never went through
    Vivado: FINN's IODMA insertion and partitioning as in its ZynqBuild, the IODMA instance
    names its Zynq project would give (idma0, odma0), then MakePYNQDriver itself."""
    finn_env.prepare_finn(scratch)
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import pynq_native_port_width
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    model = ModelWrapper(str(graph_path)).transform(InferDataLayouts())
    parts = Path(tempfile.mkdtemp(prefix="partitions_", dir=scratch))
    with contextlib.redirect_stdout(StringIO()):  # Floorplan prints a line per unplaced node
        for trn in (InsertIODMA(pynq_native_port_width[board.name]), InsertDWC(), SpecializeLayers(board.part),
                    Floorplan(), CreateDataflowPartition(partition_model_dir=str(parts))):
            model = model.transform(trn).transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    counts = {"idma": 0, "odma": 0}
    for node in model.graph.node:
        inst = getCustomOp(node)
        inner = ModelWrapper(inst.get_nodeattr("model"))
        kind = None
        if len(inner.graph.node) == 1 and inner.graph.node[0].op_type.startswith("IODMA"):
            kind = "idma" if model.find_producer(node.input[0]) is None else "odma"
        inst.set_nodeattr("instance_name", f"{kind}{counts[kind]}" if kind else node.name)
        if kind:
            counts[kind] += 1
    model = model.transform(MakePYNQDriver("zynq-iodma", "FINNDMAOverlay", clk_period_ns=board.clk_ns,
                                           board=board.name))
    shutil.copytree(model.get_metadata_prop("pynq_driver_dir"), out_dir)
    return out_dir / "settings.json"
# pragma: no mutate end


# -- the host model's view of the test set -------------------------------------------------

def host_test_set(folder: RunFolder, checkpoint: str | Path | None = None, max_samples: int = 500) -> Reference:
    """The test set the board must reproduce: the build's reference (test samples of the
    dataset the model was trained on, the trained model's outputs, labels), or, when a
    checkpoint is given, the brevitas model's outputs recomputed from it."""
    if checkpoint is not None:
        return reference.from_checkpoint(checkpoint, max_samples)
    if not (folder.reference / reference.REFERENCE_FILE).is_file():
        raise PackageError(f"{folder.root}: no reference/ test set and no checkpoint: nothing to test the board with")
    return Reference.load(folder.reference).head(max_samples)


# -- writing --------------------------------------------------------------------------------

BITFILE, HWH = "bitfile/finn-accel.bit", "bitfile/finn-accel.hwh"   # in the package, named as FINN names them


def bitfile_sources(folder: RunFolder) -> dict[str, Path]:
    """Package path -> the run's file, for the bitfile and hwh of a bitstream build; empty without one."""
    bitdir = folder.finn / "bitfile"
    if not (bitdir / Path(BITFILE).name).is_file():
        return {}
    return {rel: bitdir / Path(rel).name for rel in (BITFILE, HWH)}


def _copy_bitfile(folder: RunFolder, dest: Path) -> dict:
    sources = bitfile_sources(folder)
    if not sources:
        flow = (folder.read_run() or {}).get("flow", "?")
        return {"bitfile": None, "hwh": None, "sim_only": True,
                "no_bitfile_reason": f"{flow} flow: no bitstream was synthesized (that needs Vivado)"}
    if not sources[HWH].is_file():
        raise PackageError(f"{sources[BITFILE]} has no {sources[HWH].name} beside it; pynq needs both")
    (dest / "bitfile").mkdir()
    for rel, src in sources.items():
        shutil.copyfile(src, dest / rel)
    return {"bitfile": BITFILE, "hwh": HWH, "sim_only": False}


def _copy_driver(folder: RunFolder, board: Board, graph: Path, dest: Path) -> dict:
    finn_driver = folder.finn / "driver"
    if (finn_driver / "settings.json").is_file():
        shutil.copytree(finn_driver, dest / "driver")
        source = "finn-plus step_make_driver (MakePYNQDriver) of the bitstream build"
    else:
        make_driver_settings(graph, board, dest / "driver", folder.finn_tmp)
        source = "finn-plus MakePYNQDriver, run by a2qflow on the final HW graph after FINN's IODMA insertion"
    weights = dest / "driver" / "runtime_weights"
    return {"settings": "driver/settings.json", "settings_source": source,
            "runtime_weights": "driver/runtime_weights" if weights.is_dir() and any(weights.iterdir()) else None}


def _write_data(dest: Path, ts: Reference) -> dict:
    (dest / "data").mkdir()
    np.save(dest / "data" / "test_x.npy", np.ascontiguousarray(ts.x, dtype=np.float32))
    np.save(dest / "data" / "host_output.npy", np.ascontiguousarray(ts.expected, dtype=np.float32))
    if ts.labels is not None:
        np.save(dest / "data" / "test_y.npy", np.ascontiguousarray(ts.labels))
    return {"x": "data/test_x.npy", "y": "data/test_y.npy" if ts.labels is not None else None,
            "host_output": "data/host_output.npy", "samples": int(len(ts.x)), "task": ts.task,
            "dataset": ts.dataset, "host_model": ts.source}


ACCELERATOR_DIR = "sim/accelerator"


def accelerator_sources(folder: RunFolder) -> dict[str, Path]:
    """Package path -> the run's file, for the whole-design simulator the build compiled
    (build_flows.stitch: binary, design description, weight and threshold files); empty
    when the build made none (estimate flow, HLS-only layers)."""
    design = folder.accelerator / "design"
    if not (design / "obj" / "Vtop").is_file() or not (design / "design.json").is_file():
        return {}
    data = json.loads((design / "design.json").read_text())["data"]
    files = {f"{ACCELERATOR_DIR}/Vtop": design / "obj" / "Vtop", f"{ACCELERATOR_DIR}/design.json": design / "design.json"}
    files.update({f"{ACCELERATOR_DIR}/{name}": design / name for name in data})
    return files


def _copy_accelerator(folder: RunFolder, dest: Path) -> dict:
    sources = accelerator_sources(folder)
    if not sources:
        return {"accelerator_sim": None}
    for rel, src in sources.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)   # copy2 keeps the simulator executable
    design = json.loads((dest / ACCELERATOR_DIR / "design.json").read_text())
    design["binary"] = "Vtop"
    (dest / ACCELERATOR_DIR / "design.json").write_text(json.dumps(design, indent=1))
    measured = folder.read_report("accelerator_sim.json", {})
    return {"accelerator_sim": {"dir": ACCELERATOR_DIR, "tool": "Verilator",
                                "cycles_per_image": measured.get("cycles_per_image"),
                                "latency_cycles": measured.get("latency_cycles")}}


def _copy_code(dest: Path) -> None:
    code = dest / MODULE_NAME
    code.mkdir()
    for src in deploy_sources():
        shutil.copyfile(src, code / src.name)


def _check_test_set(io: dict, ts: Reference) -> None:
    want = tuple(io["model_input_shape"][1:])
    if tuple(ts.x.shape[1:]) != want:
        raise PackageError(f"test inputs have shape {ts.x.shape}; the network takes (N, {', '.join(map(str, want))})")
    if len(ts.expected) != len(ts.x) or (ts.labels is not None and len(ts.labels) != len(ts.x)):
        raise PackageError(f"test set lengths differ: x {len(ts.x)}, labels "
                           f"{None if ts.labels is None else len(ts.labels)}, host outputs {len(ts.expected)}")


def _listing(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.name != MANIFEST]


def write_package(folder: RunFolder, board: Board | str, test_set: Reference) -> Path:
    """Write `<run>/package/` from a finished build and a test set (inputs as the trained
    network takes them, the host model's outputs, labels if known); returns its path.
    Without a bitfile (estimate/oss flow) the package is still written, marked sim-only. It
    is written beside the old one and swapped in whole: no half package carries a manifest."""
    board = get_board(board) if isinstance(board, str) else board
    run = folder.read_run() or {}
    if run.get("board") and get_board(run["board"]).name != board.name:
        raise PackageError(f"run {folder.root} was built for {run['board']}, not {board.name}")
    graph_path, step = sim_graph(folder)
    io = io_wrapping(folder, ModelWrapper(str(graph_path)))
    if DataType[io.get("input_datatype", "FLOAT32")].is_integer() and test_set.native is not None:
        io["native_input"] = test_set.native   # the driver turns model inputs into the dataset's codes
    _check_test_set(io, test_set)
    tmp = folder.root / f".{folder.package.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {"format": PACKAGE_FORMAT, "board": board.name, "part": board.part, "clk_mhz": board.clk_mhz,
                "power_rails": board.power_rails, "platform": "zynq-iodma", "run": folder.root.name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "a2qflow_version": __version__,
                "build": {k: run.get(k) for k in ("flow", "sizing", "versions")},
                "entry": f"python3 -m {MODULE_NAME} bench"}
    manifest.update(_copy_bitfile(folder, tmp))
    manifest.update(_copy_driver(folder, board, graph_path, tmp))
    (tmp / "sim").mkdir()
    shutil.copyfile(graph_path, tmp / "sim" / "hw_graph.onnx")
    manifest.update(hw_graph="sim/hw_graph.onnx", hw_graph_step=step, io=io)
    manifest.update(_copy_accelerator(folder, tmp))
    manifest["test_set"] = _write_data(tmp, test_set)
    manifest["finn_estimate"] = folder.read_finn_report("estimate_network_performance.json")
    _copy_code(tmp)
    (tmp / "README.md").write_text(_readme(manifest))
    manifest["files"] = file_entries(tmp, _listing(tmp))
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return _swap_in(tmp, folder.package)


def _swap_in(tmp: Path, final: Path) -> Path:
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def package_run(run: str | Path | RunFolder, board: Board | str | None = None, *,
                checkpoint: str | Path | None = None, max_samples: int = 500, require_complete: bool = True) -> Path:
    """Package a finished run folder: the board from run.json unless given, the test set
    (at most `max_samples`) from `host_test_set`. `require_complete=False` lets the build
    call this before it marks run.json complete."""
    folder = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    record = folder.read_run()
    if record is None:
        raise PackageError(f"{folder.root} is not an a2qflow run folder (no run.json)")
    board = board or record.get("board")
    if board is None:
        raise PackageError(f"{folder.root}: run.json names no board; pass the board")
    if require_complete and record.get("status") != "complete":
        raise PackageError(f"run {folder.root} is not complete (status {record.get('status')!r}); "
                           "finish the build first")
    return write_package(folder, board, host_test_set(folder, checkpoint, max_samples))


def package_is_current(folder: RunFolder) -> bool:
    """The package still matches the run: same HW graph, bitfile and hwh (checksums), and
    the board code of this a2qflow (an older copy makes the package stale too), and every
    file the manifest lists is still in the package as written."""
    try:
        manifest = json.loads((folder.package / MANIFEST).read_text())
        graph, _ = sim_graph(folder)
        files = manifest["files"]
    except (OSError, ValueError, KeyError, PackageError):
        return False
    bitfile = bitfile_sources(folder)
    accelerator = accelerator_sources(folder)
    sources = {manifest.get("hw_graph"): graph, **{f"{MODULE_NAME}/{src.name}": src for src in deploy_sources()},
               **bitfile, **{rel: src for rel, src in accelerator.items() if not rel.endswith("design.json")}}
    if bool(manifest.get("accelerator_sim")) != bool(accelerator):
        return False
    shipped_code = {rel for rel in files if rel.startswith(f"{MODULE_NAME}/")}
    if shipped_code != {rel for rel in sources if rel.startswith(f"{MODULE_NAME}/")} or bool(
            manifest.get("bitfile")) != bool(bitfile):
        return False
    sources_unchanged = all(rel in files and src.is_file() and files[rel]["sha256"] == sha256_file(src)
                            for rel, src in sources.items())
    return sources_unchanged and all(_shipped_intact(folder.package / rel, entry) for rel, entry in files.items())


def _shipped_intact(path: Path, entry: dict) -> bool:
    return path.is_file() and entry.get("sha256") == sha256_file(path)


def ensure_package(folder: RunFolder, checkpoint: str | None = None, samples: int = 500,
                   force: bool = False, log=print) -> Path:
    """The run's package, (re)written when missing, forced, or older than the run's HW
    graph, bitfile or board code."""
    if force or not package_is_current(folder):
        log(f"writing the deployment package of {folder.root} ...")
        return package_run(folder, checkpoint=checkpoint, max_samples=samples)
    return folder.package


def _readme(m: dict) -> str:
    where = ("on the board" if m["bitfile"] else
             "on the simulated board only (no bitfile: " + m["no_bitfile_reason"] + ")")
    return f"""# a2qflow deployment package: {m['board']} ({m['part']})

Built by a2qflow {m['a2qflow_version']} from run `{m['run']}`; runs {where}.

On the board (PYNQ image, copied here by `a2qflow deploy --run <run> --host xilinx@<board>`):

    cd <this folder>
    sudo -E python3 -m {MODULE_NAME} check     # checksums + board identity
    sudo -E python3 -m {MODULE_NAME} bench     # -> reports/bench.json, reports/bench.md

On the build host (simulated board, every figure labelled simulated):

    python -m {MODULE_NAME} bench --sim

`--driver finn-plus` uses finn-plus-driver's FINNDMAOverlay (default when installed);
`--driver a2qflow` a2qflow's own driver on pynq. manifest.json lists every file's SHA-256.
"""
