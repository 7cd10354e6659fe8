"""The CLI end to end on the embedded default, and what it does with bad input: every refusal
is one line naming the problem, a non-zero exit code, no traceback, and every file that
existed before is left byte-identical."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from a2qflow.cli import main

from test_export import _lie, _tamper


def test_train_export_certify_from_the_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--model", "tfc", "--dataset", "digits", "--recipe", "a2q",
                                  "--acc-bits", "11", "--input-bits", "4", "--layer-acc-bits", "fc.3=14",
                                  "--float-epochs", "2", "--qat-epochs", "1", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "checkpoint.pt").is_file()
    assert "after init" in result.output and "{" not in result.output   # formatted, no raw dicts
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "t" / "checkpoint.pt"),
                                  "--samples", "50"])
    assert result.exit_code == 0, result.output
    assert "argmax agreement 100.0%" in result.output
    cert = json.loads((tmp_path / "t" / "model.certificate.json").read_text())
    assert cert["passed"]
    assert {layer["name"]: layer["acc_bits"] for layer in cert["layers"]} == {
        "fc.0": 11, "fc.1": 11, "fc.2": 11, "fc.3": 14}
    result = runner.invoke(main, ["certify", str(tmp_path / "t" / "model.onnx"), "--json-out",
                                  str(tmp_path / "again.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "again.json").read_text()) == cert


# ---------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def workspace(tfc_run, tfc_a2qplus, tfc_a2qplus_onnx, tmp_path_factory):
    """A folder with an earlier complete run, good and bad inputs, and other people's files."""
    ws = tmp_path_factory.mktemp("ws")
    shutil.copytree(tfc_run, ws / "run", ignore=shutil.ignore_patterns("finn_tmp"))
    shutil.copyfile(tfc_a2qplus, ws / "good.pt")
    shutil.copyfile(tfc_a2qplus_onnx, ws / "good.onnx")
    (ws / "run" / "reports" / "bench-sim").mkdir(parents=True)
    (ws / "run" / "reports" / "bench-sim" / "bench.json").write_text('{"status": "complete"}')
    (ws / "empty.onnx").write_bytes(b"")
    (ws / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"format": "a2qflow-checkpoint-1", "config": Exploit(ws / "pwned"), "dataset": {}, "metrics": {},
                "state_dict": {}}, ws / "evil.pt")
    _tamper(ws / "good.onnx", ws / "tampered.onnx")
    _lie(ws / "good.onnx", ws / "lying.onnx", input_bits=1, acc_bits=8)
    (ws / "afile").write_text("a file, not a folder")
    (ws / "theirs").mkdir()
    (ws / "theirs" / "thesis.tex").write_text("someone's work")
    (ws / "fold.json").write_text(json.dumps({"Defaults": {}, "MVAU_rtl_0": {"PE": 7, "SIMD": 8}}))
    grids = {"empty-recipes.yaml": "recipes: []\n", "zero-seeds.yaml": "seeds: 0\n",
             "zero-p.yaml": "acc_bits: [0, 12]\n", "typo.yaml": "modle: tfc\n", "notyaml.yaml": "a: [1, 2\n",
             "code.yaml": f"!!python/object/apply:os.system ['touch {ws / 'pwned'}']\n",
             "bad-board.yaml": "board: Pynq-Z9\n", "neg-epochs.yaml": "qat_epochs: -1\n"}
    for name, text in grids.items():
        (ws / name).write_text(text)
    return ws


class Exploit:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


W = "{ws}"
# (arguments, exit code, what the message must say); {ws} is the workspace
BAD_INPUTS = [
    (["train", "--layer-acc-bits", "fc.0:12", "--out", f"{W}/t1"], 2, "LAYER=BITS"),
    (["train", "--acc-bits", "1", "--out", f"{W}/t1"], 2, "1 is not in the range 2<=x<=64"),
    (["train", "--model", "vgg99", "--out", f"{W}/t1"], 2, "'vgg99' is not one of"),
    (["train", "--dataset", "mnist", "--out", f"{W}/t1"], 1, "train-images-idx3-ubyte"),
    (["train", "--layer-acc-bits", "fc9=14", "--out", f"{W}/t1"], 1, "names fc9, not a constrained layer"),
    (["train", "--float-epochs", "-1", "--out", f"{W}/t1"], 2, "--float-epochs"),
    (["train", "--out", f"{W}/afile"], 1, "afile is a file, not a folder"),
    (["train", "--out", f"{W}/theirs"], 1, "holds files but no a2qflow training"),
    (["export", "--checkpoint", f"{W}/missing.pt"], 1, "missing.pt does not exist"),
    (["export", "--checkpoint", f"{W}/evil.pt"], 1, "evil.pt refused: it holds objects other than tensors"),
    (["export", "--checkpoint", f"{W}/garbage.pt"], 1, "garbage.pt cannot be read"),
    (["export", "--checkpoint", f"{W}/good.pt", "--samples", "0"], 2, "--samples"),
    (["export", "--checkpoint", f"{W}/good.pt", "--out", f"{W}/theirs"], 2, "is a directory"),
    (["certify", f"{W}/empty.onnx"], 1, "empty.onnx: empty file, not an ONNX model"),
    (["certify", f"{W}/missing.onnx"], 1, "missing.onnx: no such ONNX file"),
    (["certify", f"{W}/lying.onnx"], 1, "layer fc.1: metadata claims input_bits=1 but the graph has 4"),
    (["certify", f"{W}/tampered.onnx"], 1, "layer fc.1, channel 3"),
    (["build", "--onnx", f"{W}/empty.onnx", "--out", f"{W}/b1"], 1, "empty.onnx: empty file"),
    (["build", "--onnx", f"{W}/good.onnx", "--out", f"{W}/afile"], 1, "afile is a file, not a folder"),
    (["build", "--onnx", f"{W}/good.onnx", "--out", f"{W}/theirs"], 1, "holds files but no a2qflow run"),
    (["build", "--out", f"{W}/run", "--from-step", "step_typo"], 1, "'step_typo' is not a step of this flow"),
    (["build", "--onnx", f"{W}/good.onnx", "--checkpoint", f"{W}/good.pt", "--out", f"{W}/b1"], 1,
     "give one model source, not onnx and checkpoint"),
    (["build", "--board", "Pynq-Z9", "--out", f"{W}/b1"], 2, "unknown board 'Pynq-Z9'; valid boards: Pynq-Z1"),
    (["build", "--onnx", f"{W}/good.onnx", "--flow", "bitstream", "--out", f"{W}/b1"], 1, "needs Vivado"),
    (["build", "--onnx", f"{W}/good.onnx", "--parity-samples", "0", "--out", f"{W}/b1"], 2, "--parity-samples"),
    (["build", "--onnx", f"{W}/good.onnx", "--sizing", "value", "--runtime-weights", "--out", f"{W}/b1"], 1,
     "sizing 'value' sizes from the weights in the graph"),
    (["build", "--onnx", f"{W}/lying.onnx", "--out", f"{W}/b1"], 1, "metadata claims input_bits=1"),
    (["build", "--onnx", f"{W}/tampered.onnx", "--out", f"{W}/run"], 1, "layer fc.1, channel 3"),
    (["build", "--checkpoint", f"{W}/evil.pt", "--out", f"{W}/b1"], 1, "evil.pt refused"),
    (["compare-acc", "--recipes", "qat,foo", "--out", f"{W}/c1"], 2, "a comma list of qat, a2q, a2q+"),
    (["compare-acc", "--acc-bits", "0,12", "--out", f"{W}/c1"], 2, "each in 2..64"),
    (["compare-acc", "--seeds", "0", "--out", f"{W}/c1"], 2, "--seeds"),
    (["compare-acc", "--out", f"{W}/theirs"], 1, "holds files but no a2qflow comparison"),
    (["sweep", "--grid", f"{W}/missing.yaml", "--out", f"{W}/s1"], 1, "missing.yaml: no such sweep file"),
    (["sweep", "--grid", f"{W}/empty-recipes.yaml", "--out", f"{W}/s1"], 1, "recipes is empty"),
    (["sweep", "--grid", f"{W}/zero-seeds.yaml", "--out", f"{W}/s1"], 1, "'seeds': 0 seeds runs nothing"),
    (["sweep", "--grid", f"{W}/zero-p.yaml", "--out", f"{W}/s1"], 1, "acc_bits [0]: each accumulator width must be"),
    (["sweep", "--grid", f"{W}/typo.yaml", "--out", f"{W}/s1"], 1, "unknown field(s) ['modle']"),
    (["sweep", "--grid", f"{W}/notyaml.yaml", "--out", f"{W}/s1"], 1, "notyaml.yaml: not valid YAML"),
    (["sweep", "--grid", f"{W}/code.yaml", "--out", f"{W}/s1"], 1, "code.yaml: not valid YAML"),
    (["sweep", "--grid", f"{W}/bad-board.yaml", "--out", f"{W}/s1"], 1, "unknown board 'Pynq-Z9'"),
    (["sweep", "--grid", f"{W}/neg-epochs.yaml", "--out", f"{W}/s1"], 1, "qat_epochs must be a non-negative"),
    (["sweep", "--grid", f"{W}/zero-p.yaml", "--workers", "0"], 2, "--workers"),
    (["report", W], 1, "not an a2qflow build, compare-acc or sweep folder"),
    (["report", f"{W}/afile"], 1, "afile: not a folder"),
    (["package", "--run", f"{W}/theirs"], 1, "not an a2qflow run folder"),
    (["package", "--run", f"{W}/run", "--samples", "0"], 2, "--samples"),
    (["bench", "--run", f"{W}/run", "--sim", "--latency-runs", "0"], 2, "--latency-runs"),
    (["bench", "--run", f"{W}/run", "--sim", "--repeats", "0"], 2, "--repeats"),
    (["bench", "--run", f"{W}/run", "--sim", "--batch-sizes", "0,4"], 1, "--batch-sizes '0,4'"),
    (["bench", "--run", f"{W}/run"], 2, "use --sim"),
    (["bench", "--run", f"{W}/theirs", "--sim"], 1, "not an a2qflow run folder"),
    (["deploy", "--run", f"{W}/run", "--host", "x@127.0.0.1", "--sim", "--remote-dir", "../x"], 1,
     "--remote-dir '../x'"),
    (["deploy", "--run", f"{W}/run", "--host", "x@127.0.0.1", "--sim", "--remote-dir", "."], 1, "--remote-dir '.'"),
    (["deploy", "--run", f"{W}/run", "--host", "x@127.0.0.1"], 1, "sim-only"),
    (["deploy", "--run", f"{W}/run", "--host", "x@127.0.0.1", "--port", "0"], 2, "--port"),
]


@pytest.mark.parametrize("args, code, message", BAD_INPUTS, ids=[" ".join(a[:2]) + f"-{i}"
                                                                 for i, (a, _, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_in_one_line_and_loses_nothing(workspace, args, code, message):
    before = _snapshot(workspace)
    result = CliRunner().invoke(main, [a.format(ws=workspace) for a in args])
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, AttributeError))
    if code == 1:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output
    assert _snapshot(workspace) == before   # nothing changed, nothing added, nothing deleted
    assert not (workspace / "pwned").exists()


def test_ssh_to_an_unreachable_board_fails_in_seconds(workspace):
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["deploy", "--run", str(workspace / "run"), "--host", "x@127.0.0.1", "-p", "1",
                                       "--sim", "--remote-dir", "a2qflow/x", "-o", "ConnectTimeout=3"])
    assert result.exit_code == 1 and "ssh x@127.0.0.1 failed" in result.output
    assert time.perf_counter() - t0 < 60


def test_debug_shows_the_traceback(workspace):
    result = CliRunner().invoke(main, ["--debug", "certify", str(workspace / "empty.onnx")])
    assert result.exit_code == 1 and type(result.exception).__name__ == "GraphError"


def test_sigterm_during_a_build_leaves_an_interrupted_run_that_a_rerun_completes(tfc_a2qplus_onnx, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "a2qflow.cli", "build", "--onnx", str(tfc_a2qplus_onnx), "--flow", "estimate",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "finn" / "intermediate_models" / "step_qonnx_to_finn.onnx").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["files"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
