"""One pipeline from a model to a built accelerator: train (or take a checkpoint, or a QONNX
graph) -> export with certificate -> reference samples -> FINN build -> package, all in one
run folder. The CLI's `build` and `demo`, every compare-acc/sweep cell and the benchmarks
call `run(config)`; nothing else chains these stages.

    from a2qflow.build_flows.pipeline import PipelineConfig, run
    from a2qflow.build_flows import BuildConfig
    from a2qflow.models import Recipe, TrainConfig

    result = run(PipelineConfig(train=TrainConfig(model="tfc", recipe=Recipe(acc_bits=12, input_bits=4)),
                                build=BuildConfig(board="Pynq-Z2", flow="oss"), out="runs/tfc-z2"))
    result.record["status"]      # 'complete'; result.folder.reports holds the reports
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from a2qflow.log import run_log
from a2qflow.models.certificate import LAYERS_KEY

from .config import BuildConfig, ConfigError
from .reference import Reference
from .run_folder import RunFolder


@dataclass
class PipelineConfig:
    """Where the model comes from (exactly one of `onnx`, `checkpoint`, `train`; none only
    to resume a run folder with `build.from_step`), how to build it, and where."""
    onnx: str | Path | None = None           # a QONNX graph (an a2qflow export, or any brevitas/FINN graph)
    checkpoint: str | Path | None = None     # a checkpoint written by `a2qflow train`
    train: object | None = None              # a models.train.TrainConfig: train first
    dataset: str | None = None               # graphs without a2qflow metadata: the dataset for references
    data_dir: str | Path | None = None       # folder of mnist/cifar10/bsd300
    export_samples: int = 200                # test samples that prove export parity
    build: BuildConfig = field(default_factory=BuildConfig)
    out: str | Path | None = None            # default: default_out(...)

    def sources(self) -> list[str]:
        return [name for name in ("onnx", "checkpoint", "train") if getattr(self, name) is not None]


@dataclass
class Run:
    """A finished (or refused) pipeline: its folder and its run.json."""
    folder: RunFolder
    record: dict
    onnx: Path


def default_out(cfg: PipelineConfig) -> Path:
    """runs/<model>-<board>[-P<P>]: the model and P from the graph, checkpoint or training
    configuration the build starts from."""
    board = cfg.build.board
    if cfg.onnx is not None:
        from a2qflow.models.graph import load_graph, metadata

        name = metadata(load_graph(cfg.onnx), "model") or Path(cfg.onnx).stem
        return Path("runs") / f"{name}-{board}"
    if cfg.checkpoint is not None:
        from a2qflow.models.train import read_checkpoint

        ckpt = read_checkpoint(cfg.checkpoint)
        recipe = ckpt["config"].get("recipe", {})
        return Path("runs") / f"{ckpt['config'].get('model', 'model')}-{board}-P{recipe.get('acc_bits')}"
    if cfg.train is not None:
        return Path("runs") / f"{cfg.train.model}-{board}-P{cfg.train.recipe.acc_bits}"
    raise ConfigError("no model to build: give a QONNX graph, a checkpoint or a training configuration")


def _check(cfg: PipelineConfig) -> None:
    """Refuse a contradictory or unreadable source before the run folder is touched."""
    cfg.build.validate()
    sources = cfg.sources()
    if len(sources) > 1:
        raise ConfigError(f"give one model source, not {' and '.join(sources)}")
    if not sources and cfg.build.from_step is None:
        raise ConfigError("no model to build: give a QONNX graph, a checkpoint or a training configuration")
    if not isinstance(cfg.export_samples, int) or cfg.export_samples < 1:
        raise ConfigError(f"export_samples must be a positive integer, got {cfg.export_samples!r}")
    if cfg.onnx is not None:
        from .flow import plan_graph

        plan_graph(cfg.onnx, cfg.build)
    if cfg.checkpoint is not None:
        from a2qflow.models.train import read_checkpoint

        read_checkpoint(cfg.checkpoint)
    if cfg.dataset is not None:
        from a2qflow.models.data import DATASETS

        if cfg.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")


def run(cfg: PipelineConfig, log: Callable[[str], None] = print) -> Run:
    """Train/export as needed, then build; everything in one run folder."""
    from a2qflow.models.graph import load_graph

    from . import reference
    from .flow import build

    from .flow import plan_flow

    _check(cfg)
    folder = RunFolder(Path(cfg.out) if cfg.out is not None else default_out(cfg))
    folder.claim()
    plan_flow(cfg.build, folder)
    inputs = tuple(Path(p) for p in (cfg.onnx, cfg.checkpoint) if p is not None)
    folder.begin(fresh=cfg.build.from_step is None, keep=inputs, dataset=cfg.dataset,
                 data_dir=str(cfg.data_dir) if cfg.data_dir else None)
    try:
        with run_log(folder.root):
            onnx, ref = _model_and_reference(cfg, folder, log, reference, load_graph)
            record = build(onnx, folder, ref, cfg.build)
    except KeyboardInterrupt as err:
        folder.update(status="interrupted", error=f"interrupted ({err or 'Ctrl-C'})")
        raise
    except Exception as err:
        if folder.run.get("status") == "running":
            folder.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    return Run(folder, record, onnx)


def _model_and_reference(cfg: PipelineConfig, folder: RunFolder, log, reference, load_graph
                         ) -> tuple[Path, Reference]:
    """The graph to build and what every stage is compared against."""
    from a2qflow.models.export import export_checkpoint
    from a2qflow.models.graph import metadata

    samples = max(cfg.build.parity_samples, cfg.build.test_samples)
    if not cfg.sources():   # resume: the folder's own graph and reference samples
        return folder.model, Reference.load(folder.reference)
    checkpoint = cfg.checkpoint
    if cfg.train is not None:
        from a2qflow.models.train import train

        log(f"training {cfg.train.model}/{cfg.train.dataset} {cfg.train.recipe.method} "
            f"P={cfg.train.recipe.acc_bits} -> {folder.train}")
        folder.update(stage="train", dataset=cfg.train.dataset,
                      data_dir=str(cfg.train.data_dir) if cfg.train.data_dir else None)
        train(cfg.train, folder.train)
        checkpoint = folder.train / "checkpoint.pt"
    if checkpoint is not None:
        from a2qflow.models.train import read_checkpoint

        trained = read_checkpoint(checkpoint)["config"]
        folder.update(stage="export", dataset=trained["dataset"], data_dir=trained.get("data_dir"))
        onnx, _, _ = export_checkpoint(checkpoint, folder.export / "model.onnx", cfg.export_samples)
        return onnx, reference.from_checkpoint(checkpoint, samples)
    graph = load_graph(cfg.onnx)
    onnx = Path(cfg.onnx)
    if not (cfg.dataset or metadata(graph, "dataset")):
        samples = cfg.build.parity_samples   # no test set without a dataset: the parity samples serve
    if graph.get_metadata_prop(LAYERS_KEY) is None:   # any exporter's graph: cleaned first, and built as cleaned
        from a2qflow.models.graph import cleaned

        graph = cleaned(graph)
        graph.save(str(folder.model))
        onnx = folder.model
    ref = reference.from_graph(graph, samples, cfg.dataset, cfg.data_dir)
    folder.update(stage="build", dataset=ref.dataset, data_dir=str(cfg.data_dir) if cfg.data_dir else None)
    return onnx, ref

