"""Training: seeded reproducibility, EP-init on the set the quantizer constrains, checkpoints."""
import json

import pytest
import torch

from a2qflow.models import bounds
from a2qflow.models.ep_init import _pre_scaling, apply_ep_init
from a2qflow.models.export import layer_records
from a2qflow.models.nets import NETWORKS
from a2qflow.models.recipes import Recipe, weight_layers
from a2qflow.models.train import (CheckpointError, TrainConfig, build_model, dataset_info, load_checkpoint, load_float_weights,
                                  predict, train)


def tiny_cfg(**kw):
    recipe = kw.pop("recipe", Recipe(method="a2q+", acc_bits=12, input_bits=4))
    return TrainConfig(recipe=recipe, float_epochs=2, qat_epochs=1, batch_size=128, **kw)


def test_training_is_reproducible(digits, tmp_path):
    a = train(tiny_cfg(seed=3), tmp_path / "a", digits)
    b = train(tiny_cfg(seed=3), tmp_path / "b", digits)
    assert a["metrics"] == b["metrics"]
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["state_dict"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train(tiny_cfg(seed=4), tmp_path / "c", digits)
    assert any(not torch.equal(sa[k], torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=False)
                               ["state_dict"][k]) for k in sa)
    assert json.loads((tmp_path / "a" / "train.json").read_text())["metrics"] == a["metrics"]
    assert c["device"] == "cpu" or torch.cuda.is_available()


def test_float_checkpoint_replaces_pretraining(digits, tmp_path):
    first = train(tiny_cfg(), tmp_path / "a", digits)
    again = train(tiny_cfg(float_checkpoint=str(tmp_path / "a" / "float.pt")), tmp_path / "b", digits)
    assert again["metrics"] == first["metrics"]
    assert not (tmp_path / "b" / "float.pt").exists()


@pytest.mark.parametrize("method", ["a2q", "a2q+"])
def test_ep_init_projects_onto_the_constrained_set(method, digits):
    recipe = Recipe(method=method, acc_bits=10, input_bits=4)
    info = dataset_info(digits)
    fmodel = build_model("tfc", recipe.as_float(), info)
    qmodel = build_model("tfc", recipe, info)
    load_float_weights(qmodel, fmodel.state_dict())
    before = {n: layer.weight.detach().clone() for n, layer in weight_layers(qmodel)}
    moved = apply_ep_init(qmodel)
    layer_records(qmodel, digits.x_test[:8])  # one forward so the quantizers know their input
    for name, layer in weight_layers(qmodel):
        spec = layer.a2qflow_spec
        rows = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        scale = _pre_scaling(layer).scaling_impl(layer.weight).reshape(-1, 1).detach()
        budget = bounds.l1_budget(method, spec.acc_bits, spec.input_bits, spec.input_signed)
        centred = rows - rows.mean(1, keepdim=True) if method == "a2q+" else rows
        norms = centred.abs().sum(1) / scale.reshape(-1)
        assert torch.all(norms <= budget * (1 + 1e-5))
        assert moved[name] == int((rows != before[name].reshape(rows.shape)).any(1).sum()) > 0
        if method == "a2q+":  # the projection keeps each channel's mean
            assert torch.allclose(rows.mean(1), before[name].reshape(rows.shape).mean(1), atol=1e-6)
        # the norm parameter g was set to the projected norm: the first quantized weights
        # are round-to-zero(projection / scale), not a uniformly shrunk channel
        expected = torch.trunc(centred / scale).clamp(-(2 ** (spec.weight_bits - 1) - 1), 2 ** (spec.weight_bits - 1) - 1)
        q = layer.quant_weight().int().reshape(rows.shape).float()
        assert (q != expected).float().mean() < 0.01


def test_checkpoint_round_trip_and_corrupt_file(digits, tmp_path):
    train(tiny_cfg(), tmp_path, digits)
    model, ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["config"]["recipe"]["method"] == "a2q+"
    again, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    assert torch.equal(predict(model, digits.x_test), predict(again, digits.x_test))
    acc = (predict(model, digits.x_test).argmax(1) == digits.y_test).float().mean().item() * 100
    assert acc == pytest.approx(ckpt["metrics"]["quant"]["accuracy"], abs=1e-4)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


class _RunsCode:
    """Unpickling this calls os.system: a checkpoint must never be able to do that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "a2qflow-checkpoint-1", "config": _RunsCode(marker), "dataset": {}, "metrics": {},
                "state_dict": {}}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt refused: it holds objects other than tensors"):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)   # the file really runs code when unpickled unsafely
    assert marker.exists()


def test_model_dataset_mismatch_is_refused(digits):
    with pytest.raises(ValueError, match="super-resolution"):
        build_model("espcn", Recipe(), dataset_info(digits))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg99", Recipe(), dataset_info(digits))
    assert set(NETWORKS) == {"tfc", "cnv", "mobilenet", "resnet", "espcn"}
