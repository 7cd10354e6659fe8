"""Training: float pre-training (or a float checkpoint) -> EP-init -> QAT, seeded.

Writes into its output folder: `float.pt` (the float twin), `checkpoint.pt` (the quantized
model with everything needed to rebuild it) and `train.json` (config, metrics, timings).
"""
from __future__ import annotations

import dataclasses
import contextlib
import json
import math
import os
import pickle
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from brevitas.graph.calibrate import calibration_mode
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from a2qflow.errors import A2qflowError

from . import catalog
from .data import Dataset, load_dataset
from .ep_init import apply_ep_init
from .nets import NETWORKS
from .recipes import Recipe, weight_layers


@dataclass
class TrainConfig:
    model: str = catalog.DEFAULT_MODEL
    dataset: str = catalog.DEFAULT_DATASET
    data_dir: str | None = None
    recipe: Recipe = field(default_factory=Recipe)
    model_kwargs: dict = field(default_factory=dict)
    float_epochs: int = catalog.DEFAULT_FLOAT_EPOCHS
    qat_epochs: int = catalog.DEFAULT_QAT_EPOCHS
    batch_size: int = 64
    lr: float = 2e-3
    qat_lr: float = 1e-3
    seed: int = catalog.DEFAULT_SEED
    ep_init: bool = True
    float_checkpoint: str | None = None
    limit: int | None = None
    device: str | None = None      # default: cuda when present, else cpu
    # Intra-op threads for training. Float sums (matmul/conv/BN reductions) are split by thread
    # count, so a different count gives different weights; fixed, not "all cores".
    threads: int = 1
    # Batches (of 256) for BatchNorm re-estimation after init (None: one pass over x_train).
    # 1 batch already gives the after-init accuracy within ~1-2 points of a full pass (digits).
    bn_batches: int | None = 16

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["recipe"] = self.recipe.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{**d, "recipe": Recipe.from_dict(d["recipe"])})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def runtime_info() -> dict:
    """What, besides the seed, decides the trained bits: recorded in train.json."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{k.lower(): os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}}


@contextlib.contextmanager
def deterministic_torch(threads: int):
    """Fixed intra-op thread count and deterministic algorithms for the block; the caller's
    settings are restored after (so library users and tests are not left changed)."""
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield runtime_info()
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])


def dataset_info(ds: Dataset) -> dict:
    """What a checkpoint needs to rebuild the network without loading the data."""
    from .data import NATIVE_INPUTS

    return {"name": ds.name, "task": ds.task, "input_shape": list(ds.input_shape),
            "num_classes": ds.num_classes, "input_signed": ds.input_signed, "upscale": ds.upscale,
            "native_input": NATIVE_INPUTS.get(ds.name)}


def build_model(model: str, recipe: Recipe, info: dict, **kwargs) -> nn.Module:
    net = _build_network(model, recipe, info, **kwargs)
    constrained = {m.a2qflow_spec.name for _, m in weight_layers(net) if m.a2qflow_spec.constrained}
    unknown = sorted(set(recipe.layer_acc_bits) - constrained)
    if unknown:  # a typo would otherwise leave that layer at the global P without a word
        raise ValueError(f"--layer-acc-bits names {', '.join(unknown)}, not a constrained layer of {model}; "
                         f"constrained layers: {', '.join(sorted(constrained)) or 'none'}")
    return net


def _build_network(model: str, recipe: Recipe, info: dict, **kwargs) -> nn.Module:
    if model not in NETWORKS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(NETWORKS)}")
    shape = tuple(info["input_shape"])
    if model == "espcn":
        if info["task"] != "superres":
            raise ValueError(f"espcn is a super-resolution net; dataset {info['name']!r} is {info['task']}")
        return NETWORKS[model](recipe, shape, upscale=info["upscale"], input_signed=info["input_signed"], **kwargs)
    if info["task"] != "classification":
        raise ValueError(f"{model} is a classifier; dataset {info['name']!r} is {info['task']}")
    if model != "tfc" and len(shape) != 3:
        raise ValueError(f"{model} needs image inputs (C,H,W); dataset {info['name']!r} gives {shape}")
    return NETWORKS[model](recipe, shape, info["num_classes"], input_signed=info["input_signed"], **kwargs)


def _output(y):
    return y.value if hasattr(y, "value") and not isinstance(y, torch.Tensor) else y


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([_output(model(x[i:i + batch_size].to(device))).cpu() for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, ds: Dataset) -> dict:
    """Accuracy (%) for classifiers, PSNR (dB) for super-resolution, on the held-out split."""
    out = predict(model, ds.x_test)
    if ds.task == "superres":
        mse = torch.mean((out.clamp(0, 1) - ds.y_test) ** 2).item()
        return {"psnr_db": 10 * math.log10(1.0 / max(mse, 1e-12))}
    return {"accuracy": 100.0 * (out.argmax(1) == ds.y_test).float().mean().item()}


def fit(model: nn.Module, ds: Dataset, epochs: int, lr: float, batch_size: int, seed: int,
        progress: Progress, desc: str) -> list[float]:
    device = next(model.parameters()).device
    loss_fn = nn.MSELoss() if ds.task == "superres" else nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    gen = torch.Generator().manual_seed(seed)
    task = progress.add_task(desc, total=epochs, metric="")
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(ds.x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(_output(model(ds.x_train[idx].to(device))), ds.y_train[idx].to(device))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        losses.append(total / len(order))
        progress.update(task, advance=1, metric=f"loss {losses[-1]:.4f}")
    return losses


def load_float_weights(qmodel: nn.Module, float_state: dict) -> None:
    """Load a float twin's weights into the quantized net and re-derive the quantizers'
    scales from them (brevitas initialises scales when a weight Parameter is assigned)."""
    missing, unexpected = qmodel.load_state_dict(float_state, strict=False)
    if unexpected:
        raise ValueError(f"float checkpoint has tensors the network lacks: {unexpected[:5]}")
    not_quant = [k for k in missing if "quant" not in k]
    if not_quant:
        raise ValueError(f"float checkpoint lacks tensors of the network: {not_quant[:5]}")
    for _, layer in weight_layers(qmodel):
        layer.weight = nn.Parameter(layer.weight.detach().clone())


@torch.no_grad()
def calibrate_activations(model: nn.Module, x: torch.Tensor, batch_size: int = 256, batches: int = 4) -> None:
    """Set activation scales from float statistics before QAT, so that training (and the
    after-init accuracy) starts from sensible ranges rather than the quantizers' defaults."""
    device = next(model.parameters()).device
    with calibration_mode(model):
        for i in range(0, min(len(x), batch_size * batches), batch_size):
            model(x[i:i + batch_size].to(device))
    model.eval()


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
                         batches: int | None = None) -> int:
    """Recompute every BatchNorm's running mean/var for the *quantized* network.

    After EP-init and calibration the running statistics are stale: they come from the float
    twin, moved 4 steps (momentum 0.1) towards batches seen with weight quantization off, so
    they match neither the projected nor the (A2Q+: zero-centred) quantized weights. Reset
    them and take the cumulative average (momentum=None) of the batch statistics over
    `batches` batches (None: one pass over x) in train mode, without gradients.
    Must run after `calibrate_activations`: in train mode brevitas' activation quantizers
    collect statistics until calibration has initialised their scales; afterwards a
    train-mode forward changes nothing but the BatchNorm buffers. QAT then runs in train
    mode (batch statistics), so this changes the after-init metric, not the trained weights.
    Returns the number of batches used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    device = next(model.parameters()).device
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    used = 0
    for i in range(0, len(x), batch_size):
        if batches is not None and used >= batches:
            break
        xb = x[i:i + batch_size]
        if len(xb) < 2:   # BatchNorm needs two samples in train mode
            break
        model(xb.to(device))
        used += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()
    return used


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[metric]}"), TimeElapsedColumn())


class TrainError(A2qflowError, ValueError):
    """Training settings or an output folder that cannot be used."""


def claim_output(out: Path) -> None:
    """Refuse a file, or a folder holding files but no earlier training (train.json)."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"output {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "train.json").is_file():
        raise TrainError(f"output folder {out} holds files but no a2qflow training (train.json); "
                         "choose an empty or new folder")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Refuse settings that cannot train, naming the field."""
    from .catalog import DATASET_NAMES, NETWORK_NAMES

    if cfg.model not in NETWORK_NAMES:
        raise TrainError(f"unknown model {cfg.model!r}; valid: {', '.join(NETWORK_NAMES)}")
    if cfg.dataset not in DATASET_NAMES:
        raise TrainError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASET_NAMES)}")
    for name in ("float_epochs", "qat_epochs"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TrainError(f"{name} must be a non-negative integer, got {value!r}")
    if cfg.float_epochs == 0 and not cfg.float_checkpoint:
        raise TrainError("float_epochs 0 needs a float checkpoint to start from (--float-checkpoint)")
    for name in ("batch_size",):
        if getattr(cfg, name) < 1:
            raise TrainError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("lr", "qat_lr"):
        if not getattr(cfg, name) > 0:
            raise TrainError(f"{name} must be positive, got {getattr(cfg, name)}")
    if cfg.limit is not None and cfg.limit < 1:
        raise TrainError(f"limit must be at least 1, got {cfg.limit}")
    if isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int) or cfg.threads < 1:
        raise TrainError(f"threads must be a positive integer, got {cfg.threads!r}")
    if cfg.bn_batches is not None and cfg.bn_batches < 1:
        raise TrainError(f"bn_batches must be at least 1 (or None for one pass), got {cfg.bn_batches}")
    return cfg


def train(cfg: TrainConfig, out_dir: str | Path, ds: Dataset | None = None) -> dict:
    """Run the whole training recipe; returns the metrics written to train.json."""
    out = Path(out_dir)
    validate(cfg)
    claim_output(out)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ds = ds or load_dataset(cfg.dataset, cfg.data_dir, limit=cfg.limit)
    info = dataset_info(ds)
    build_model(cfg.model, cfg.recipe, info, **cfg.model_kwargs)   # refuses a bad recipe before anything is written
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps({"status": "running", "config": cfg.to_dict()}, indent=2))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with deterministic_torch(cfg.threads) as runtime, _progress() as progress:
        seed_everything(cfg.seed)
        fmodel = build_model(cfg.model, cfg.recipe.as_float(), info, **cfg.model_kwargs).to(device)
        if cfg.float_checkpoint:
            fmodel.load_state_dict(torch.load(cfg.float_checkpoint, map_location=device, weights_only=True))
        else:
            fit(fmodel, ds, cfg.float_epochs, cfg.lr, cfg.batch_size, cfg.seed, progress, "float pre-training")
            torch.save(fmodel.state_dict(), out / "float.pt")
        float_metrics = evaluate(fmodel, ds)
        timings["float_s"] = time.perf_counter() - t0

        seed_everything(cfg.seed)
        qmodel = build_model(cfg.model, cfg.recipe, info, **cfg.model_kwargs).to(device)
        load_float_weights(qmodel, fmodel.state_dict())
        moved = apply_ep_init(qmodel) if cfg.ep_init else {}
        calibrate_activations(qmodel, ds.x_train)
        bn_batches = reestimate_batchnorm(qmodel, ds.x_train, batches=cfg.bn_batches)
        init_metrics = evaluate(qmodel, ds)
        t1 = time.perf_counter()
        fit(qmodel, ds, cfg.qat_epochs, cfg.qat_lr, cfg.batch_size, cfg.seed + 1, progress,
            f"QAT {cfg.recipe.method} P={cfg.recipe.acc_bits}")
        timings["qat_s"] = time.perf_counter() - t1
        quant_metrics = evaluate(qmodel, ds)
    metrics = {"float": float_metrics, "after_init": init_metrics, "quant": quant_metrics,
               "ep_init_channels_moved": moved, "bn_reestimation_batches": bn_batches}
    save_checkpoint(out / "checkpoint.pt", qmodel.cpu(), cfg, info, metrics)
    result = {"status": "complete", "config": cfg.to_dict(), "dataset": info, "metrics": metrics,
              "timings": timings, "device": str(device), "runtime": runtime}
    (out / "train.json").write_text(json.dumps(result, indent=2))
    return result


CHECKPOINT_FORMAT = "a2qflow-checkpoint-1"


def save_checkpoint(path: Path, model: nn.Module, cfg: TrainConfig, info: dict, metrics: dict) -> None:
    """Tensors and JSON-compatible data only, so that `read_checkpoint` loads it as data."""
    plain = json.loads(json.dumps({"config": cfg.to_dict(), "dataset": info, "metrics": metrics}))
    torch.save({"format": CHECKPOINT_FORMAT, **plain, "state_dict": model.state_dict()}, path)


def checkpoint_dataset(ckpt: dict) -> Dataset:
    """The dataset a checkpoint was trained on, loaded as training loaded it."""
    cfg = ckpt["config"]
    return load_dataset(cfg["dataset"], cfg["data_dir"], limit=cfg["limit"])


class CheckpointError(A2qflowError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, read as data: tensors and plain (JSON-like) values only.
    Nothing in the file runs (`torch.load(weights_only=True)`): a pickle that would call
    anything else is refused with one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"unsupported GLOBAL (\S+)", str(err))
        if found:
            raise CheckpointError(f"checkpoint {path} refused: it holds objects other than tensors and plain data "
                                  f"(it would load {found.group(1)}), which a2qflow never loads") from None
        raise CheckpointError(f"checkpoint {path} cannot be read: not a PyTorch file of tensors and plain data") from None
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an a2qflow checkpoint (field 'format' is not {CHECKPOINT_FORMAT!r})")
    for key, kind in (("config", dict), ("dataset", dict), ("metrics", dict), ("state_dict", dict)):
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"checkpoint {path}: field {key!r} missing or not a {kind.__name__}")
    return ckpt


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the quantized network saved by `train`; returns (model in eval mode, checkpoint)."""
    ckpt = read_checkpoint(path)
    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
        model = build_model(cfg.model, cfg.recipe, ckpt["dataset"], **cfg.model_kwargs)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} does not describe a network a2qflow can rebuild: "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    return model.eval(), ckpt
