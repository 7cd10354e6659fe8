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
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow import __version__
from a2qflow.deploy import MODULE_NAME, PACKAGE_FORMAT
from a2qflow.deploy.manifest import MANIFEST, file_entries
from a2qflow.hw_configs import Board, get_board

from . import finn_env

PACKAGE_DIR = "package"
HW_DOMAIN = "finn.custom_op.fpgadataflow"
CPU_OPS = ("Flatten", "Reshape", "Transpose")   # parent-graph ops the board driver applies itself


class PackageError(RuntimeError):
    """The run folder cannot be packaged; the message says what is missing."""


@dataclass
class HostTestSet:
    x: np.ndarray
    y: np.ndarray | None
    host_output: np.ndarray
    task: str
    dataset: str | None
    source: str


def deploy_sources() -> list[Path]:
    """The board-side sources (the one copy, deploy/ in the repository) a package ships."""
    import a2qflow.deploy

    return sorted(Path(a2qflow.deploy.__file__).resolve().parent.glob("*.py"))


# -- what the package holds ----------------------------------------------------------------

def sim_graph(run_dir: Path) -> tuple[Path, str]:
    """The last saved HW graph made only of FINN HW layers (the dataflow partition after its
    final transformation), and the step that wrote it."""
    run = _run_json(run_dir)
    models = run_dir / "finn" / "intermediate_models"
    steps = run.get("steps") or [p.stem for p in sorted(models.glob("step_*.onnx"), key=lambda p: p.stat().st_mtime)]
    for step in reversed(steps):
        path = models / f"{step}.onnx"
        if path.is_file() and _all_hw(ModelWrapper(str(path))):
            return path, step
    raise PackageError(f"{models}: no saved HW graph (all nodes FINN HW layers); did the build reach "
                       "step_create_dataflow_partition?")


def _all_hw(model: ModelWrapper) -> bool:
    return len(model.graph.node) > 0 and all(
        n.domain.startswith(HW_DOMAIN) and n.op_type not in ("StreamingDataflowPartition",)
        and not n.op_type.startswith("IODMA") for n in model.graph.node)


def io_wrapping(run_dir: Path, graph: ModelWrapper) -> dict:
    """The network's input shape and the CPU-side ops of FINN's parent graph around the
    accelerator (dataflow_parent.onnx), as data the board driver applies."""
    parent_path = run_dir / "finn" / "intermediate_models" / "dataflow_parent.onnx"
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
        if node.op_type not in CPU_OPS:
            raise PackageError(f"{parent_path}: node {node.name} ({node.op_type}) runs outside the accelerator; "
                               f"the board driver applies only {', '.join(CPU_OPS)}")
        (post if seen_sdp else pre).append(_cpu_op(parent, node))
    name = parent.graph.input[0].name
    return {"model_input_shape": list(parent.get_tensor_shape(name)), "pre": pre, "post": post}


def _cpu_op(model: ModelWrapper, node) -> dict:
    if node.op_type == "Transpose":
        perm = [a.ints for a in node.attribute if a.name == "perm"][0]
        return {"op": "transpose", "perm": list(perm), "node": node.name}
    return {"op": "reshape", "shape": list(model.get_tensor_shape(node.output[0])[1:]), "node": node.name}


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


# -- the host model's view of the test set -------------------------------------------------

def host_test_set(run_dir: str | Path, checkpoint: str | Path | None = None, max_samples: int = 500) -> HostTestSet:
    """Test samples of the dataset the model was trained on, their labels and the host
    model's outputs: the trained brevitas model when its checkpoint is known (given, or
    `<run>/train/checkpoint.pt` as `a2qflow build` writes it), else the QONNX graph (export
    proved the two agree) on the dataset it records, else the build's reference samples
    (no labels)."""
    run_dir = Path(run_dir)
    ckpt = Path(checkpoint) if checkpoint else run_dir / "train" / "checkpoint.pt"
    if ckpt.is_file():
        return _from_checkpoint(ckpt, max_samples)
    graph_path = run_dir / "model.qonnx"
    meta = ModelWrapper(str(graph_path)).get_metadata_prop("a2qflow.dataset") if graph_path.is_file() else None
    if meta:
        from a2qflow.models.data import DatasetError

        try:
            return _from_graph(graph_path, json.loads(meta), max_samples)
        except DatasetError:
            pass  # a dataset on a folder this host lacks: the reference samples still serve
    return _from_reference(run_dir)


def _from_checkpoint(ckpt: Path, max_samples: int) -> HostTestSet:
    from a2qflow.models.train import checkpoint_dataset, load_checkpoint, predict

    model, data = load_checkpoint(ckpt)
    info, ds = data["dataset"], checkpoint_dataset(data)
    x, y = ds.x_test[:max_samples], ds.y_test[:max_samples]
    return HostTestSet(x.numpy().astype(np.float32), y.numpy(), predict(model, x).numpy().astype(np.float32),
                   info["task"], info["name"], f"brevitas model {ckpt}")


def _from_graph(graph_path: Path, info: dict, max_samples: int) -> HostTestSet:
    from a2qflow.models.data import load_dataset
    from a2qflow.models.export import run_onnx

    ds = load_dataset(info["name"])
    x = ds.x_test[:max_samples].numpy().astype(np.float32)
    return HostTestSet(x, ds.y_test[:max_samples].numpy(), run_onnx(ModelWrapper(str(graph_path)), x).astype(np.float32),
                   info["task"], info["name"], f"QONNX graph {graph_path} (parity with the trained model proven at export)")


def _from_reference(run_dir: Path) -> HostTestSet:
    ref = run_dir / "reference"
    if not (ref / "input.npy").is_file():
        raise PackageError(f"{run_dir}: no checkpoint, no dataset recorded in model.qonnx and no reference/input.npy: "
                           "nothing to test the board with")
    out = np.load(ref / "expected_output.npy")
    return HostTestSet(np.load(ref / "input.npy"), None, out, "classification" if out.ndim == 2 else "superres", None,
                   f"build reference samples {ref} (no labels)")


# -- writing --------------------------------------------------------------------------------

def _run_json(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


BITFILE, HWH = "bitfile/finn-accel.bit", "bitfile/finn-accel.hwh"   # in the package, named as FINN names them


def bitfile_sources(run_dir: Path) -> dict[str, Path]:
    """Package path -> the run's file, for the bitfile and hwh of a bitstream build; empty without one."""
    bitdir = Path(run_dir) / "finn" / "bitfile"
    if not (bitdir / Path(BITFILE).name).is_file():
        return {}
    return {rel: bitdir / Path(rel).name for rel in (BITFILE, HWH)}


def _copy_bitfile(run_dir: Path, dest: Path) -> dict:
    sources = bitfile_sources(run_dir)
    if not sources:
        flow = _run_json(run_dir).get("flow", "?")
        return {"bitfile": None, "hwh": None, "sim_only": True,
                "no_bitfile_reason": f"{flow} flow: no bitstream was synthesized (that needs Vivado)"}
    if not sources[HWH].is_file():
        raise PackageError(f"{sources[BITFILE]} has no {sources[HWH].name} beside it; pynq needs both")
    (dest / "bitfile").mkdir()
    for rel, src in sources.items():
        shutil.copyfile(src, dest / rel)
    return {"bitfile": BITFILE, "hwh": HWH, "sim_only": False}


def _copy_driver(run_dir: Path, board: Board, graph: Path, dest: Path) -> dict:
    finn_driver = run_dir / "finn" / "driver"
    if (finn_driver / "settings.json").is_file():
        shutil.copytree(finn_driver, dest / "driver")
        source = "finn-plus step_make_driver (MakePYNQDriver) of the bitstream build"
    else:
        make_driver_settings(graph, board, dest / "driver", run_dir / "finn_tmp")
        source = "finn-plus MakePYNQDriver, run by a2qflow on the final HW graph after FINN's IODMA insertion"
    weights = dest / "driver" / "runtime_weights"
    return {"settings": "driver/settings.json", "settings_source": source,
            "runtime_weights": "driver/runtime_weights" if weights.is_dir() and any(weights.iterdir()) else None}


def _write_data(dest: Path, test_x: np.ndarray, test_y: np.ndarray | None, host_output: np.ndarray) -> dict:
    (dest / "data").mkdir()
    np.save(dest / "data" / "test_x.npy", np.ascontiguousarray(test_x, dtype=np.float32))
    np.save(dest / "data" / "host_output.npy", np.ascontiguousarray(host_output, dtype=np.float32))
    if test_y is not None:
        np.save(dest / "data" / "test_y.npy", np.ascontiguousarray(test_y))
    return {"x": "data/test_x.npy", "y": "data/test_y.npy" if test_y is not None else None,
            "host_output": "data/host_output.npy"}


def _copy_code(dest: Path) -> None:
    code = dest / MODULE_NAME
    code.mkdir()
    for src in deploy_sources():
        shutil.copyfile(src, code / src.name)


def _check_test_set(io: dict, test_x: np.ndarray, test_y, host_output: np.ndarray) -> None:
    want = tuple(io["model_input_shape"][1:])
    if tuple(test_x.shape[1:]) != want:
        raise PackageError(f"test inputs have shape {test_x.shape}; the network takes (N, {', '.join(map(str, want))})")
    if len(host_output) != len(test_x) or (test_y is not None and len(test_y) != len(test_x)):
        raise PackageError(f"test set lengths differ: x {len(test_x)}, y {None if test_y is None else len(test_y)}, "
                           f"host outputs {len(host_output)}")


def _listing(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.name != MANIFEST]


def write_package(run_dir: str | Path, board: Board | str, test_x: np.ndarray, test_y: np.ndarray | None,
                  host_output: np.ndarray, *, task: str = "classification", dataset: str | None = None,
                  host_source: str = "host model") -> Path:
    """Write `<run_dir>/package/` from a finished build and a test set; returns its path.

    `test_x`: test inputs as the trained network takes them (N, ...); `test_y`: labels (or
    targets), None if unknown; `host_output`: the host model's outputs for `test_x`. Without
    a bitfile (estimate flow) the package is still written, marked sim-only."""
    run_dir = Path(run_dir)
    board = get_board(board) if isinstance(board, str) else board
    run = _run_json(run_dir)
    if run.get("board") and get_board(run["board"]).name != board.name:
        raise PackageError(f"run {run_dir} was built for {run['board']}, not {board.name}")
    graph_path, step = sim_graph(run_dir)
    io = io_wrapping(run_dir, ModelWrapper(str(graph_path)))
    test_x = np.asarray(test_x)
    _check_test_set(io, test_x, test_y, np.asarray(host_output))
    tmp = run_dir / f".{PACKAGE_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {"format": PACKAGE_FORMAT, "board": board.name, "part": board.part, "clk_mhz": board.clk_mhz,
                "power_rails": board.power_rails, "platform": "zynq-iodma", "run": run_dir.name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "a2qflow_version": __version__,
                "build": {k: run.get(k) for k in ("flow", "sizing", "versions")},
                "entry": f"python3 -m {MODULE_NAME} bench"}
    manifest.update(_copy_bitfile(run_dir, tmp))
    manifest.update(_copy_driver(run_dir, board, graph_path, tmp))
    (tmp / "sim").mkdir()
    shutil.copyfile(graph_path, tmp / "sim" / "hw_graph.onnx")
    manifest.update(hw_graph="sim/hw_graph.onnx", hw_graph_step=step, io=io)
    manifest["test_set"] = {**_write_data(tmp, test_x, test_y, np.asarray(host_output)), "samples": int(len(test_x)),
                            "task": task, "dataset": dataset, "host_model": host_source}
    perf = run_dir / "finn" / "report" / "estimate_network_performance.json"
    manifest["finn_estimate"] = json.loads(perf.read_text()) if perf.is_file() else None
    _copy_code(tmp)
    (tmp / "README.md").write_text(_readme(manifest))
    manifest["files"] = file_entries(tmp, _listing(tmp))
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return _swap_in(tmp, run_dir / PACKAGE_DIR)


def _swap_in(tmp: Path, final: Path) -> Path:
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def package_run(run_dir: str | Path, board: Board | str | None = None, *, checkpoint: str | Path | None = None,
                max_samples: int = 500, require_complete: bool = True) -> Path:
    """Package a finished run folder: the board from run.json unless given, the test set
    (at most `max_samples`) from `host_test_set`. `require_complete=False` lets the build
    call this before it marks run.json complete."""
    run_dir = Path(run_dir)
    run = _run_json(run_dir)
    if board is None:
        if not run.get("board"):
            raise PackageError(f"{run_dir}: no run.json naming the board; pass the board")
        board = run["board"]
    if require_complete and run and run.get("status") != "complete":
        raise PackageError(f"run {run_dir} is not complete (status {run.get('status')!r}); finish the build first")
    ts = host_test_set(run_dir, checkpoint, max_samples)
    return write_package(run_dir, board, ts.x, ts.y, ts.host_output, task=ts.task, dataset=ts.dataset,
                         host_source=ts.source)


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
