"""Shared fixtures: small trained models, so export and certificate tests see real weights."""
from __future__ import annotations

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")


@pytest.fixture(scope="session")
def digits():
    from a2qflow.models.data import load_dataset

    return load_dataset("digits")


def quick_train(model: str, method: str, ds, tmp_path_factory, acc_bits: int = 12, **recipe_kw):
    """A few epochs of the real recipe: float -> EP-init -> QAT."""
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig, train

    cfg = TrainConfig(model=model, dataset=ds.name, recipe=Recipe(method=method, acc_bits=acc_bits, input_bits=4,
                                                                  **recipe_kw),
                      float_epochs=2, qat_epochs=1, batch_size=128)
    out = tmp_path_factory.mktemp(f"{model}-{method.replace('+', 'plus')}")
    train(cfg, out, ds)
    return out / "checkpoint.pt"


@pytest.fixture(scope="session")
def tfc_a2qplus(digits, tmp_path_factory):
    return quick_train("tfc", "a2q+", digits, tmp_path_factory)


@pytest.fixture(scope="session")
def tfc_a2qplus_onnx(tfc_a2qplus, tmp_path_factory):
    from a2qflow.models.export import export_checkpoint

    path, _, _ = export_checkpoint(tfc_a2qplus, tmp_path_factory.mktemp("onnx") / "tfc.onnx", samples=64)
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tfc_run(tfc_a2qplus, tfc_a2qplus_onnx, tmp_path_factory):
    """One estimate-flow TFC build for Pynq-Z2 through the pipeline, with its deployment
    package (64 test samples from the checkpoint): shared by the CLI and deploy tests."""
    from a2qflow.build_flows import package
    from a2qflow.build_flows.config import BuildConfig
    from a2qflow.build_flows.pipeline import PipelineConfig, run

    out = tmp_path_factory.mktemp("tfc-run") / "run"
    result = run(PipelineConfig(onnx=tfc_a2qplus_onnx, build=BuildConfig(flow="estimate", package=False), out=out),
                 log=lambda line: None)
    package.package_run(result.folder, checkpoint=tfc_a2qplus, max_samples=64)
    return out


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`a2qflow demo`, the README's main job, run once: the default TFC trained on digits,
    built with the oss flow (Yosys, per-layer and whole-design Verilator simulation),
    packaged and benchmarked on the cycle-accurate simulated board. Tests read it; tests that
    change a run folder work on a copy."""
    from click.testing import CliRunner

    from a2qflow.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output
