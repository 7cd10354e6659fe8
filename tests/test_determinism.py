"""Same seed, same bits: training pins its thread count (recorded in train.json) and turns on
deterministic algorithms, so processes that see one core or all cores write identical weights;
export names tensors from a seeded generator, so the same model gives the same file."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from a2qflow.models.recipes import Recipe
from a2qflow.models.train import TrainConfig, train

CHILD = r'''
import hashlib, json, os, sys, warnings
warnings.filterwarnings("ignore")
import torch
from a2qflow.models.recipes import Recipe
from a2qflow.models.train import TrainConfig, train
from a2qflow.models.export import export_checkpoint
default_threads = torch.get_num_threads()
out = sys.argv[1]
cfg = TrainConfig(model=sys.argv[2], dataset=sys.argv[3], recipe=Recipe(method="a2q+", acc_bits=12),
                  float_epochs=2, qat_epochs=2, device="cpu", limit=int(sys.argv[4]))
res = train(cfg, out)
state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["state_dict"]
h = hashlib.sha256()
for k in sorted(state):
    h.update(k.encode()); h.update(state[k].contiguous().numpy().tobytes())
onnx = export_checkpoint(os.path.join(out, "checkpoint.pt"), samples=16)[0]
print(json.dumps({"default_threads": default_threads, "after": torch.get_num_threads(), "hash": h.hexdigest(),
                  "onnx": hashlib.sha256(open(onnx, "rb").read()).hexdigest(), "metrics": res["metrics"],
                  "runtime": res["runtime"]}))
'''


def _train_in_child(out: Path, cores: set[int], model: str, dataset: str, limit: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out), model, dataset, str(limit)], capture_output=True,
                          text=True, env=env, preexec_fn=lambda: os.sched_setaffinity(0, cores), timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("model,dataset,limit", [("tfc", "digits", 400), ("cnv", "digits", 200),
                                                 ("espcn", "photos", 64)])
def test_same_weights_and_graph_with_one_core_and_all_cores(tmp_path, model, dataset, limit):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs at least two cores to vary the count")
    one = _train_in_child(tmp_path / "one", {cores[0]}, model, dataset, limit)
    many = _train_in_child(tmp_path / "many", set(cores), model, dataset, limit)
    assert one["default_threads"] == 1 and many["default_threads"] == len(cores)   # the setups really differ
    assert one["runtime"]["threads"] == many["runtime"]["threads"] == 1
    assert one["runtime"]["deterministic_algorithms"] is True
    assert many["after"] == len(cores)                                           # the caller's count restored
    assert one["hash"] == many["hash"] and one["metrics"] == many["metrics"]
    assert one["onnx"] == many["onnx"]                                           # byte-identical export


def test_threads_are_pinned_recorded_and_refused_when_wrong(digits, tmp_path):
    before = torch.get_num_threads()
    with pytest.raises(Exception, match="threads must be a positive integer"):
        train(TrainConfig(threads=0, float_epochs=1, qat_epochs=1), tmp_path / "bad", digits)
    assert not (tmp_path / "bad" / "train.json").exists()
    res = train(TrainConfig(recipe=Recipe(method="a2q+", acc_bits=16), float_epochs=2, qat_epochs=1, threads=2),
                tmp_path / "ok", digits)
    recorded = json.loads((tmp_path / "ok" / "train.json").read_text())
    assert recorded["runtime"]["threads"] == 2 and recorded["config"]["threads"] == 2
    assert torch.get_num_threads() == before


def test_after_init_accuracy_is_measured_with_fresh_batchnorm_statistics(digits, tmp_path, monkeypatch):
    """Where P=16 hardly binds, the projected network right after EP-init is as good as its
    float twin once BatchNorm sees the quantized network's statistics; with the float twin's
    stale statistics it is far worse (the second run, re-estimation switched off)."""
    cfg = TrainConfig(recipe=Recipe(method="a2q+", acc_bits=16), float_epochs=4, qat_epochs=1)
    fresh = train(cfg, tmp_path / "fresh", digits)["metrics"]
    assert fresh["bn_reestimation_batches"] >= 1
    assert fresh["after_init"]["accuracy"] >= fresh["float"]["accuracy"] - 5.0, fresh
    monkeypatch.setattr("a2qflow.models.train.reestimate_batchnorm", lambda *a, **k: 0)
    stale = train(cfg, tmp_path / "stale", digits)["metrics"]
    assert stale["float"] == fresh["float"]
    assert stale["after_init"]["accuracy"] < fresh["after_init"]["accuracy"] - 10.0, (stale, fresh)
