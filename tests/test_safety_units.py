"""Unit tests of the safety-critical modules on small hand-built inputs (no training): the
deployment manifest, parity, the run folder, the board folder, the certificate, accumulator
sizing, the overflow check and the package. Written against mutation testing
(docs/mutation.md, `make mutation`): every expected number and message is written out here,
not recomputed with the code under test."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from a2qflow.build_flows import board as hb
from a2qflow.build_flows import run_folder as rf
from a2qflow.deploy import PACKAGE_FORMAT
from a2qflow.deploy import manifest as mf
from a2qflow.deploy.errors import BoardMismatchError, DeployError, PackageIntegrityError
from a2qflow.models import parity


def exact(message: str) -> str:
    """A pytest.raises `match` for the whole message."""
    return "^" + re.escape(message) + "$"


# ------------------------------------------------------------------------ deploy/manifest.py

@pytest.mark.parametrize("name, canon", [
    ("  pynqz2 ", "Pynq-Z2"), ("PYNQ-Z1", "Pynq-Z1"), ("pynq-z2", "Pynq-Z2"), ("ultra96", "Ultra96-V2"),
    ("Ultra96-V2", "Ultra96-V2"), ("zcu104", "ZCU104"), ("k26", "KV260_SOM"), ("kv260_som", "KV260_SOM"),
    (" MyBoard ", "MyBoard"),
])
def test_canonical_board_folds_pynq_spellings(name, canon):
    assert mf.canonical_board(name) == canon


def test_detect_board_prefers_a2qflow_board_then_pynq_board(monkeypatch):
    monkeypatch.delenv("A2QFLOW_BOARD", raising=False)
    monkeypatch.delenv("BOARD", raising=False)
    assert mf.detect_board() is None
    monkeypatch.setenv("BOARD", "pynqz1")
    assert mf.detect_board() == "Pynq-Z1"
    monkeypatch.setenv("A2QFLOW_BOARD", "")
    assert mf.detect_board() == "Pynq-Z1"
    monkeypatch.setenv("A2QFLOW_BOARD", "zcu104")
    assert mf.detect_board() == "ZCU104"


def test_package_board_reads_the_manifest_or_says_none(tmp_path):
    assert mf.package_board(tmp_path) is None
    (tmp_path / "manifest.json").write_text("{not json")
    assert mf.package_board(tmp_path) is None
    (tmp_path / "manifest.json").write_text("[1, 2]")
    assert mf.package_board(tmp_path) is None
    (tmp_path / "manifest.json").write_text('{"board": "ZCU104"}')
    assert mf.package_board(str(tmp_path)) == "ZCU104"


def test_sha256_and_file_entries_cover_files_larger_than_one_block(tmp_path):
    big = bytes(range(256)) * 5000 + b"tail"          # 1.28 MB: more than one 1 MiB block
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "big.bin").write_bytes(big)
    (tmp_path / "a.txt").write_bytes(b"abc")
    assert mf.sha256_file(tmp_path / "sub" / "big.bin") == hashlib.sha256(big).hexdigest()
    entries = mf.file_entries(tmp_path, ["sub/big.bin", "a.txt"])
    assert list(entries) == ["a.txt", "sub/big.bin"]
    assert entries["a.txt"] == {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                                "bytes": 3}
    assert entries["sub/big.bin"]["bytes"] == 1280004


def _package(root: Path, files: dict[str, bytes], **fields) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest = {"format": PACKAGE_FORMAT, "board": "Pynq-Z2", "part": "xc7z020clg400-1",
                "settings": "driver/settings.json", "test_set": {"x": "data/x.npy", "y": None},
                "files": mf.file_entries(root, list(files)), **fields}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_package_accessors(tmp_path):
    m = _package(tmp_path, {"driver/settings.json": b'{"driver_information": {"a": 1}}', "data/x.npy": b"x"},
                 bitfile="bitfile/a.bit")
    pkg = mf.Package(tmp_path, m)
    assert pkg.board == "Pynq-Z2"
    assert pkg.path("bitfile") == tmp_path / "bitfile/a.bit"
    assert pkg.path("hw_graph") is None
    assert pkg.test_set == {"x": "data/x.npy", "y": None}
    assert pkg.data_path("x") == tmp_path / "data/x.npy"
    assert pkg.data_path("y") is None
    assert pkg.driver_information() == {"a": 1}


def test_read_json_names_missing_and_unreadable_files(tmp_path):
    with pytest.raises(PackageIntegrityError, match=exact(f"driver settings {tmp_path / 'x.json'} is missing")):
        mf.read_json(tmp_path / "x.json", "driver settings")
    with pytest.raises(PackageIntegrityError, match=exact(f"driver settings {tmp_path / 's.json'} is missing")):
        mf.Package(tmp_path, {"settings": "s.json"}).driver_information()
    with pytest.raises(PackageIntegrityError, match=exact(f"package manifest {tmp_path / 'manifest.json'} is missing")):
        mf.load_manifest(tmp_path)
    (tmp_path / "x.json").write_text("nope")
    with pytest.raises(PackageIntegrityError, match=f"^driver settings {re.escape(str(tmp_path / 'x.json'))} is "
                                                    "unreadable or not JSON: Expecting value"):
        mf.read_json(tmp_path / "x.json", "driver settings")


def test_load_manifest_refuses_other_formats_and_missing_fields(tmp_path):
    m = _package(tmp_path, {"a": b"1"})
    assert mf.load_manifest(tmp_path) == m
    (tmp_path / "manifest.json").write_text(json.dumps({**m, "format": "a2qflow-deploy/0"}))
    with pytest.raises(PackageIntegrityError, match=exact(
            f"{tmp_path / 'manifest.json'}: format 'a2qflow-deploy/0', expected 'a2qflow-deploy/1'; "
            "rebuild the package with this a2qflow")):
        mf.load_manifest(tmp_path)
    for key in ("board", "files", "settings", "test_set"):
        (tmp_path / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != key}))
        with pytest.raises(PackageIntegrityError, match=exact(f"{tmp_path / 'manifest.json'}: field '{key}' missing")):
            mf.load_manifest(tmp_path)


def test_verify_files_names_every_missing_and_corrupt_file(tmp_path):
    m = _package(tmp_path, {"a.bin": b"aaaa", "b.bin": b"bbbb", "c.bin": b"cccc", "d.bin": b"dddd"})
    mf.verify_files(tmp_path, m)
    (tmp_path / "a.bin").unlink()
    (tmp_path / "c.bin").unlink()
    (tmp_path / "b.bin").write_bytes(b"bbbB")      # same size, other content
    (tmp_path / "d.bin").write_bytes(b"ddddd")     # other size
    with pytest.raises(PackageIntegrityError, match=exact(
            f"package {tmp_path} is damaged; missing: a.bin, c.bin; checksum mismatch (corrupt or edited): "
            "b.bin, d.bin. Copy the package again from the build host (a2qflow deploy) or rebuild it "
            "(a2qflow package)")):
        mf.verify_files(tmp_path, m)
    (tmp_path / "a.bin").write_bytes(b"aaaa")
    (tmp_path / "c.bin").write_bytes(b"cccc")
    with pytest.raises(PackageIntegrityError, match=r"damaged; checksum mismatch \(corrupt or edited\): b\.bin, "
                                                    r"d\.bin\. Copy"):
        mf.verify_files(tmp_path, m)
    (tmp_path / "b.bin").write_bytes(b"bbbb")
    (tmp_path / "d.bin").write_bytes(b"dddd")
    (tmp_path / "c.bin").unlink()
    with pytest.raises(PackageIntegrityError, match=r"damaged; missing: c\.bin\. Copy"):
        mf.verify_files(tmp_path, m)


def test_check_board_refuses_unknown_and_other_boards():
    m = {"board": "Pynq-Z2", "part": "xc7z020clg400-1"}
    mf.check_board(m, "pynqz2")
    mf.check_board(m, "Pynq-Z2")
    with pytest.raises(BoardMismatchError, match=exact(
            "cannot tell which board this is (no BOARD or A2QFLOW_BOARD variable); the package was built for "
            "Pynq-Z2: pass --board Pynq-Z2 if this is one")):
        mf.check_board(m, None)
    with pytest.raises(BoardMismatchError, match=exact(
            "this package was built for Pynq-Z2 (xc7z020clg400-1) but this board is ZCU104: rebuild with "
            "`a2qflow build --board ZCU104`")):
        mf.check_board(m, "zcu104")
    with pytest.raises(BoardMismatchError, match=r"built for Pynq-Z2 \(\?\) but"):
        mf.check_board({"board": "Pynq-Z2"}, "zcu104")


def test_load_package_verifies_before_returning(tmp_path):
    with pytest.raises(DeployError, match=exact(f"{tmp_path} is not a deployment package (no manifest.json); "
                                                "pass --package DIR")):
        mf.load_package(tmp_path, "Pynq-Z2")
    files = {"driver/settings.json": b"{}", "sim/hw_graph.onnx": b"g"}
    m = _package(tmp_path, files, bitfile=None, hw_graph="sim/hw_graph.onnx", no_bitfile_reason="oss flow")
    with pytest.raises(DeployError, match=exact(
            f"package {tmp_path} has no bitfile (oss flow); it runs only on the simulated board: "
            "python -m a2qflow_deploy bench --sim on the build host")):
        mf.load_package(tmp_path, "Pynq-Z2")
    pkg = mf.load_package(str(tmp_path), "pynqz2", sim=True)
    assert pkg.root == tmp_path and pkg.manifest == m
    with pytest.raises(BoardMismatchError):
        mf.load_package(tmp_path, "ZCU104", sim=True)
    m = _package(tmp_path, files, bitfile=None, hw_graph=None)
    with pytest.raises(DeployError, match=r"has no bitfile \(sim-only package\)"):
        mf.load_package(tmp_path, "Pynq-Z2")
    with pytest.raises(DeployError, match=exact(f"package {tmp_path} carries no HW graph, which the simulated "
                                                "board executes")):
        mf.load_package(tmp_path, "Pynq-Z2", sim=True)
    _package(tmp_path, files, bitfile="driver/settings.json", hw_graph=None)
    assert mf.load_package(tmp_path, "Pynq-Z2").manifest["bitfile"] == "driver/settings.json"
    (tmp_path / "sim/hw_graph.onnx").write_bytes(b"G")
    with pytest.raises(PackageIntegrityError):    # files are checked before the board
        mf.load_package(tmp_path, "ZCU104")


# ------------------------------------------------------------------------ models/parity.py

def test_compare_finds_the_worst_sample_and_output():
    expected = np.array([[1.0, -20.0, 3.0], [0.5, 0.25, 0.0]])
    out = expected.copy()
    out[1, 2] += 0.0015          # the largest difference
    out[0, 0] += 0.001
    r = parity.compare(out.astype(np.float32).ravel(), expected, classification=True, stage="step_x",
                       reference="QONNX graph")
    assert (r.stage, r.samples, r.worst_sample, r.worst_output, r.reference) == ("step_x", 2, 1, 2, "QONNX graph")
    assert r.max_abs_error == pytest.approx(0.0015, abs=1e-7)
    assert r.tolerance == pytest.approx(20 * 1e-4)
    assert r.argmax_agreement == 1.0 and r.passed
    assert parity.compare(out, expected, classification=False, stage="s").argmax_agreement is None
    assert parity.compare(out, expected, classification=False, stage="s").reference == "trained model"
    assert parity.check(r) is r


def test_compare_tolerance_is_at_least_1e_4_and_argmax_disagreement_fails():
    expected = np.array([[0.2, 0.1], [0.1, 0.3], [0.0, -0.5], [0.4, 0.0]])
    out = expected.copy()
    out[1] = [0.3, 0.1]              # sample 1's argmax changes: 3 of 4 agree
    r = parity.compare(out, expected, classification=True, stage="s")
    assert r.tolerance == pytest.approx(1e-4)
    assert r.argmax_agreement == 0.75
    assert r.max_abs_error == pytest.approx(0.2)
    assert (r.worst_sample, r.worst_output) == (1, 0)
    assert not r.passed
    assert r.to_dict() == {"stage": "s", "samples": 4, "max_abs_error": r.max_abs_error, "tolerance": r.tolerance,
                           "argmax_agreement": 0.75, "worst_sample": 1, "worst_output": 0,
                           "reference": "trained model", "passed": False}
    assert r.message() == ("after s the graph differs from the trained model: sample 1, output 0 by 0.2 "
                           "(tolerance 0.0001), argmax agreement 75.0%")
    with pytest.raises(parity.ParityError, match=exact(r.message())):
        parity.check(r)


def test_parity_report_passes_exactly_at_the_tolerance():
    r = parity.ParityReport("s", 1, 0.5, 0.5, None, 0, 0)
    assert r.passed
    assert r.message() == "after s the graph differs from the trained model: sample 0, output 0 by 0.5 (tolerance 0.5)"
    assert not parity.ParityReport("s", 1, 0.5000001, 0.5, None, 0, 0).passed
    assert not parity.ParityReport("s", 1, 0.0, 0.5, 0.99, 0, 0).passed
    assert parity.ParityReport("s", 1, 0.0, 0.5, 1.0, 0, 0).passed


def test_execute_per_sample_runs_one_sample_at_a_time():
    seen = []

    def execute(graph, feed):
        assert graph is model
        (name, x), = feed.items()
        seen.append((name, x.shape))
        return {"out": 2 * x, "other": None}

    model = SimpleNamespace(graph=SimpleNamespace(input=[SimpleNamespace(name="inp")],
                                                  output=[SimpleNamespace(name="out")]))
    x = np.arange(6.0).reshape(3, 2)
    assert np.array_equal(parity.execute_per_sample(model, x, execute), 2 * x)
    assert seen == [("inp", (1, 2))] * 3


# ------------------------------------------------------------------------ build_flows/run_folder.py

def test_write_json_is_atomic_and_readable(tmp_path):
    path = tmp_path / "a" / "b.json"
    rf.write_json(path, {"p": Path("x/y"), "n": [1]})
    assert path.read_text() == '{\n "p": "x/y",\n "n": [\n  1\n ]\n}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]
    assert rf.read_json(path) == {"p": "x/y", "n": [1]}
    assert rf.read_json(tmp_path / "none.json", default={"d": 1}) == {"d": 1}
    assert rf.read_json(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(rf.RunFolderError, match=f"^{re.escape(str(tmp_path / 'bad.json'))} is not valid JSON "
                                                r"\(.*\); was it edited\?$"):
        rf.read_json(tmp_path / "bad.json")


def test_snapshot_lists_files_not_folders_or_links(tmp_path):
    assert rf._snapshot(tmp_path / "nothing") == {}
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt").write_text("12345")
    (tmp_path / "g").write_text("1")
    (tmp_path / "link").symlink_to(tmp_path / "g")
    snap = rf._snapshot(tmp_path)
    assert sorted(snap) == ["d/e/f.txt", "g"]
    assert snap["d/e/f.txt"] == (5, (tmp_path / "d/e/f.txt").stat().st_mtime_ns)


def test_run_folder_paths(tmp_path):
    f = rf.RunFolder(str(tmp_path))
    assert f.root == tmp_path
    assert {k: getattr(f, k).relative_to(tmp_path).as_posix() for k in (
        "run_json", "model", "train", "export", "reference", "finn", "finn_tmp", "intermediate_models",
        "finn_report_dir", "finn_log", "rtl", "synth", "accelerator", "reports", "package")} == {
        "run_json": "run.json", "model": "model.qonnx", "train": "train", "export": "export",
        "reference": "reference", "finn": "finn", "finn_tmp": "finn_tmp",
        "intermediate_models": "finn/intermediate_models", "finn_report_dir": "finn/report",
        "finn_log": "finn/build_dataflow.log", "rtl": "rtl", "synth": "synth", "accelerator": "accelerator",
        "reports": "reports", "package": "package"}
    assert f.report("x.json") == tmp_path / "reports/x.json"
    assert f.finn_report("y.json") == tmp_path / "finn/report/y.json"
    assert f.intermediate("step_a") == tmp_path / "finn/intermediate_models/step_a.onnx"


def _one_node_onnx(path: Path, op="Relu"):
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2])
    model = ModelWrapper(qonnx_make_model(helper.make_graph([helper.make_node(op, ["inp"], ["out"], name=op)],
                                                            "g", [inp], [out])))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return model


def test_final_model_is_the_last_saved_step(tmp_path):
    f = rf.RunFolder(tmp_path)
    with pytest.raises(rf.RunFolderError, match=exact(f"{tmp_path}: no intermediate model of this build")):
        f.final_model()
    f.write_run({"steps": ["step_a", "step_b", "step_c"]})
    _one_node_onnx(f.intermediate("step_a"), "Relu")
    _one_node_onnx(f.intermediate("step_b"), "Sigmoid")
    assert f.final_model().graph.node[0].op_type == "Sigmoid"


def test_reports_older_than_the_run_are_not_read(tmp_path):
    f = rf.RunFolder(tmp_path)
    path = f.write_report("r.json", {"v": 1})
    assert path == tmp_path / "reports/r.json"
    assert f.read_report("r.json") == {"v": 1}                   # no run: any report is read
    f.write_run({"started_at": 1000.0})
    os.utime(path, (999.0, 999.0))                               # within the second before the start
    assert f.read_report("r.json") == {"v": 1}
    os.utime(path, (998.9, 998.9))
    assert f.read_report("r.json", default="old") == "old"
    f.run = {"started_at": 998.0}                                # this process's run wins over run.json
    assert f.read_report("r.json") == {"v": 1}
    f.run = {}
    rf.write_json(f.finn_report("e.json"), {"e": 2})
    os.utime(f.finn_report("e.json"), (990.0, 990.0))
    assert f.read_finn_report("e.json", default=0) == 0
    os.utime(f.finn_report("e.json"), (1000.0, 1000.0))
    assert f.read_finn_report("e.json") == {"e": 2}
    assert f.read_report("absent.json", default=5) == 5


def test_run_json_needs_the_run_format(tmp_path):
    f = rf.RunFolder(tmp_path)
    assert f.read_run() is None and not f.is_run()
    f.write_run({"status": "x"})
    assert json.loads(f.run_json.read_text()) == {"format": "a2qflow-run/1", "status": "x"}
    assert f.read_run() == {"format": "a2qflow-run/1", "status": "x"} and f.is_run()
    f.run_json.write_text(json.dumps({"format": "a2qflow-run/0"}))
    assert f.read_run() is None
    f.run_json.write_text("[1]")
    assert f.read_run() is None
    assert f.recorded_files() == []


def test_claim_refuses_a_file_and_someone_elses_folder(tmp_path):
    rf.RunFolder(tmp_path / "new").claim()
    (tmp_path / "empty").mkdir()
    rf.RunFolder(tmp_path / "empty").claim()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(rf.RunFolderError, match=exact(f"output {tmp_path / 'afile'} is a file, not a folder")):
        rf.RunFolder(tmp_path / "afile").claim()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("x")
    with pytest.raises(rf.RunFolderError, match=exact(
            f"output folder {tmp_path / 'theirs'} holds files but no a2qflow run (run.json); choose an empty or "
            "new folder")):
        rf.RunFolder(tmp_path / "theirs").claim()
    rf.RunFolder(tmp_path / "theirs").write_run({})
    rf.RunFolder(tmp_path / "theirs").claim()


def test_remove_recorded_deletes_only_recorded_files_inside_the_folder(tmp_path):
    root = tmp_path / "run"
    f = rf.RunFolder(root)
    for rel in ("a/b/c.txt", "a/d.txt", "keep.qonnx", "mine.txt", "x/y/z.txt", "e/f.txt", "e/user.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (tmp_path / "outside.txt").write_text("o")
    f.write_run({"files": ["a/b/c.txt", "a/d.txt", "keep.qonnx", "x/y/z.txt", "e/f.txt", "../outside.txt",
                           "gone.txt", "a"]})
    removed = f.remove_recorded(keep=(root / "keep.qonnx",))
    assert removed == ["a/b/c.txt", "a/d.txt", "x/y/z.txt", "e/f.txt"]
    assert (tmp_path / "outside.txt").is_file() and (root / "keep.qonnx").is_file()
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert left == ["e", "e/user.txt", "keep.qonnx", "mine.txt", "run.json"]


def test_begin_fresh_deletes_the_last_runs_files_and_resume_keeps_them(tmp_path):
    f = rf.RunFolder(tmp_path / "run")
    run = f.begin(flow="oss")
    assert run["status"] == "running" and run["flow"] == "oss" and run["files"] == []
    started = run["started_at"]
    assert set(run) == {"started", "started_at", "status", "flow", "updated", "files"}
    (f.root / "reports").mkdir()
    (f.root / "reports" / "r.json").write_text("{}")
    (f.root / "user.txt").write_text("u")
    run = f.update(status="failed")
    assert run["files"] == ["reports/r.json", "user.txt"]
    assert f.read_run()["status"] == "failed"

    g = rf.RunFolder(f.root)                              # resume: keeps files and start
    (f.root / "user.txt").unlink()
    (f.root / "user.txt").write_text("u")                 # recorded file still present
    run = g.begin(fresh=False, step="b")
    assert run["started_at"] == started and run["files"] == ["reports/r.json", "user.txt"]
    (f.root / "later.txt").write_text("l")
    assert g.files_written() == ["later.txt", "reports/r.json", "user.txt"]

    h = rf.RunFolder(f.root)                              # fresh: deletes what was recorded
    run = h.begin(fresh=True)
    assert run["files"] == [] and run["started_at"] >= started
    assert sorted(p.name for p in f.root.iterdir()) == ["later.txt", "run.json"]


def test_begin_defaults_to_fresh_creates_nested_folders_and_resume_keeps_the_start(tmp_path):
    f = rf.RunFolder(tmp_path / "out" / "exp" / "run")        # parents do not exist yet
    first = f.begin(flow="oss")
    (f.root / "old.txt").write_text("o")
    f.update(status="failed")
    time_str = first["started"]
    resumed = rf.RunFolder(f.root).begin(fresh=False)
    assert (resumed["started"], resumed["started_at"]) == (time_str, first["started_at"])
    assert rf.RunFolder(f.root).begin()["files"] == [] and not (f.root / "old.txt").exists()   # default: fresh


def test_files_written_without_begin_counts_every_file(tmp_path):
    f = rf.RunFolder(tmp_path)
    f.write_run({"status": "complete"})
    (tmp_path / "a.txt").write_text("a")
    assert rf.RunFolder(tmp_path).files_written() == ["a.txt"]


def test_remove_recorded_goes_on_after_an_entry_outside_the_folder(tmp_path):
    root = tmp_path / "run"
    f = rf.RunFolder(root)
    (root / "mine.txt").parent.mkdir(parents=True)
    (root / "mine.txt").write_text("m")
    (tmp_path / "outside.txt").write_text("o")
    f.write_run({"files": ["../outside.txt", "mine.txt"]})
    assert f.remove_recorded() == ["mine.txt"]
    assert (tmp_path / "outside.txt").is_file() and not (root / "mine.txt").exists()


def test_begin_resume_of_a_run_without_start_time_starts_it(tmp_path):
    f = rf.RunFolder(tmp_path)
    f.write_run({"status": "failed", "files": []})
    run = f.begin(fresh=False)
    assert isinstance(run["started_at"], float) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", run["started"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$", run["updated"])


# ------------------------------------------------------------------------ build_flows/board.py

def test_bench_args_validate_and_argv():
    assert hb.BenchArgs().validate().argv() == []
    args = hb.BenchArgs(board="Pynq-Z2", batch_sizes="1,8", repeats=1, latency_runs=2).validate()
    assert args.argv() == ["--board", "Pynq-Z2", "--batch-sizes", "1,8", "--repeats", "1", "--latency-runs", "2"]
    for bad in ("0,1", "a", ""):
        with pytest.raises(hb.BoardError, match=exact(f"--batch-sizes {bad!r}: expected a comma list of positive "
                                                      "integers, e.g. 1,8,64")):
            hb.BenchArgs(batch_sizes=bad).validate()
    with pytest.raises(hb.BoardError, match=exact("--repeats 0: must be at least 1")):
        hb.BenchArgs(repeats=0).validate()
    with pytest.raises(hb.BoardError, match=exact("--latency-runs 0: must be at least 1")):
        hb.BenchArgs(latency_runs=0).validate()
    with pytest.raises(Exception, match="NoSuchBoard"):
        hb.BenchArgs(board="NoSuchBoard").validate()


def test_ssh_and_scp_command_lines():
    common = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15",
              "-o", "ServerAliveCountMax=4"]
    t = hb.SshTarget("xilinx@b")
    assert t.ssh("ls") == ["ssh", *common, "xilinx@b", "ls"]
    t = hb.SshTarget("xilinx@b", port=2222, identity="/k", options=["StrictHostKeyChecking=no"])
    extra = ["-o", "StrictHostKeyChecking=no", "-i", "/k"]
    assert t.ssh("ls") == ["ssh", *common, *extra, "-p", "2222", "xilinx@b", "ls"]
    assert t.scp_to([Path("a"), Path("b")], "d/") == ["scp", "-q", "-r", *common, *extra, "-P", "2222", "a", "b",
                                                      "xilinx@b:d/"]
    assert t.scp_from("d/reports", Path("loc")) == ["scp", "-q", "-r", *common, *extra, "-P", "2222",
                                                    "xilinx@b:d/reports", "loc"]


def test_call_reports_the_last_error_line_and_timeouts():
    with pytest.raises(hb.BoardError, match=exact("copy failed (exit 3): second")):
        hb._call(["sh", "-c", "echo first >&2; echo second >&2; exit 3"], "copy", 10)
    with pytest.raises(hb.BoardError, match=exact("copy failed (exit 4): out")):
        hb._call(["sh", "-c", "echo out; exit 4"], "copy", 10)
    with pytest.raises(hb.BoardError, match=exact("copy failed (exit 5): no message")):
        hb._call(["sh", "-c", "exit 5"], "copy", 10)
    with pytest.raises(hb.BoardError, match=exact("bench: no answer within 0 s")):
        hb._call(["sleep", "5"], "bench", 0.2)
    assert hb._call(["sh", "-c", "exit 6"], "bench", 10, capture=False).returncode == 6
    assert hb._call(["sh", "-c", "echo hi"], "x", 10).stdout == "hi\n"


@pytest.mark.parametrize("remote", ["a2qflow/run", "x", "a/b.c_d-e/", "./x", "X"])
def test_remote_dir_accepts_plain_paths(remote):
    assert hb.check_remote_dir(remote) == remote


@pytest.mark.parametrize("remote", ["../x", "a/../b", "..", ".", "/", "./", "a b", "a;rm", "$HOME", ""])
def test_remote_dir_refuses_parent_home_and_shell_characters(remote):
    with pytest.raises(hb.BoardError, match=exact(f"--remote-dir {remote!r}: use a folder path of letters, digits, "
                                                  ". _ - / (no .., not the home folder itself)")):
        hb.check_remote_dir(remote)


def _prepare(tmp_path, remote="dep"):
    return subprocess.run(["sh", "-c", hb.prepare_remote_command(remote)], cwd=tmp_path, capture_output=True,
                          text=True)


def test_prepare_remote_command_refuses_an_unmarked_folder(tmp_path):
    proc = _prepare(tmp_path)
    assert proc.returncode == 0 and (tmp_path / "dep").is_dir()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "f").write_text("x")
    proc = _prepare(tmp_path, "theirs")
    assert proc.returncode == 3
    assert proc.stderr == "A2QFLOW-REFUSED: theirs exists and was not created by a2qflow deploy\n"
    assert (tmp_path / "theirs" / "f").is_file()


def test_prepare_remote_command_deletes_only_what_the_mark_lists(tmp_path):
    d = tmp_path / "home" / "dep"
    for rel in ("a/b/c.txt", "a/x.txt", "top.txt", "user.txt", "e/f/g.txt"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(rel)
    (d / "empty_user_dir").mkdir()
    (tmp_path / "victim.txt").write_text("v")
    (tmp_path / "home" / "victim2.txt").write_text("v")
    (d / hb.REMOTE_MARK).write_text("a/b/c.txt\na/x.txt\ntop.txt\n\n/etc/passwd\n../victim2.txt\n"
                                    "a/../../../victim.txt\ne/f/g.txt\nmissing.txt\n")
    proc = _prepare(tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    left = sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))
    assert left == ["user.txt"]
    assert (tmp_path / "victim.txt").is_file() and (tmp_path / "home" / "victim2.txt").is_file()
    d2 = tmp_path / "home" / "d2"
    d2.mkdir()
    (d2 / hb.REMOTE_MARK).write_text("")
    assert _prepare(tmp_path / "home", "d2").returncode == 0 and list(d2.iterdir()) == []


def test_prepare_remote_command_quotes_the_folder():
    cmd = hb.prepare_remote_command("a/b")
    assert cmd.startswith("d=a/b; ") and cmd.endswith('mkdir -p "$d"')


def test_stage_copies_only_the_listed_files_and_writes_the_mark(tmp_path):
    pkg = tmp_path / "pkg"
    _package(pkg, {"a/b.txt": b"b", "c.txt": b"c", "e/f/g.txt": b"g"})
    (pkg / "reports").mkdir()
    (pkg / "reports" / "bench.json").write_text("{}")     # local report: does not travel
    dest = tmp_path / "dest"
    dest.mkdir()
    top = hb._stage(pkg, dest)
    assert [p.name for p in top] == [hb.REMOTE_MARK, "a", "c.txt", "e", "manifest.json"]
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        hb.REMOTE_MARK, "a/b.txt", "c.txt", "e/f/g.txt", "manifest.json"]
    assert (dest / "a/b.txt").read_bytes() == b"b"
    mark = (dest / hb.REMOTE_MARK).read_text()
    assert mark == ("a/b.txt\nc.txt\ne/f/g.txt\nmanifest.json\nreports/bench.json\nreports/bench.md\nreports/bench.failed.json\n"
                    "reports/bench.failed.md\nreports/bench.interrupted.json\nreports/bench.interrupted.md\n"
                    "reports/bench.running.json\nreports/bench.running.md\n")


def test_board_command_line():
    assert hb._board_command("a2qflow/my run", "python3", "bench", ["--sim", "--board", "Pynq Z2"]) == (
        "cd 'a2qflow/my run' && PYTHONDONTWRITEBYTECODE=1 python3 -m a2qflow_deploy bench --sim --board 'Pynq Z2'")


# ------------------------------------------------------------------------ models/certificate.py

from a2qflow.models import certificate as cf  # noqa: E402

W0 = np.array([[3, -2, 1, 0], [-7, 7, 7, -7]])    # (channels, K): a2q+ norms 8 and 28, L1 norms 6 and 28


def _claim(**kw):
    return {"name": "fc0", "method": "a2q+", "acc_bits": 8, "onnx_weight": "W", "input_bits": 4,
            "input_signed": False, "weight_bits": 4, "weight_shape": [2, 4], "depthwise": False, **kw}


def qgraph(w=W0, claims=None, *, in_signed=0, in_narrow=None, in_scale=(0.25,), input_quant=True, transpose=True,
           wscale=0.5, wraw=None, op="MatMul", weight_first=False, zeropt=0.0, reshape=True, bits_init=4.0):
    """A QONNX graph as a2qflow's export writes it: input Quant (UINT4) -> Reshape -> MatMul with
    weights W (channels, K) -> Quant (INT4 narrow) -> Transpose, and the layer metadata."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    c, k = w.shape
    nodes, x = [], "inp"
    if input_quant:
        attrs = {"signed": in_signed, "rounding_mode": "ROUND"}
        if in_narrow is not None:
            attrs["narrow"] = in_narrow
        nodes.append(helper.make_node("Quant", ["inp", "xs", "xz", "xb"], ["xq"], domain="qonnx.custom_op.general",
                                      name="xquant", **attrs))
        x = "xq"
    if reshape:
        nodes.append(helper.make_node("Reshape", [x, "shape"], ["xr"], name="reshape"))
        x = "xr"
    nodes.append(helper.make_node("Quant", ["W", "ws", "wz", "wb"], ["wq"], domain="qonnx.custom_op.general",
                                  name="wquant", signed=1, narrow=1, rounding_mode="ROUND"))
    wt = "wq"
    if transpose:
        nodes.append(helper.make_node("Transpose", ["wq"], ["wt"], perm=[1, 0], name="wtrans"))
        wt = "wt"
    ins = [wt, x] if weight_first else [x, wt]
    nodes.append(helper.make_node(op, ins, ["out"], name="layer"))
    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, k])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, c])
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [inp], [out])))
    inits = {"ws": np.array(wscale, dtype=np.float32), "wz": np.array(0.0, dtype=np.float32),
             "wb": np.array(4.0, dtype=np.float32), "shape": np.array([1, k], dtype=np.int64),
             "W": (w * wscale if wraw is None else wraw).astype(np.float32)}
    if input_quant:
        inits.update(xs=np.array(in_scale, dtype=np.float32), xz=np.array(zeropt, dtype=np.float32),
                     xb=np.array(bits_init, dtype=np.float32))
    for name, value in inits.items():
        if value is not None:
            model.set_initializer(name, value)
    if claims is not False:
        model.set_metadata_prop(cf.LAYERS_KEY, json.dumps(claims or [_claim()]))
    return model


def test_certify_reads_everything_from_the_graph():
    cert, = cf.certify(qgraph())
    assert (cert.name, cert.method, cert.acc_bits, cert.input_type, cert.input_range, cert.input_bits,
            cert.input_signed) == ("fc0", "a2q+", 8, "UINT4", (0, 15), 4, False)
    assert (cert.weight_type, cert.weight_bits, cert.fan_in, cert.channels) == ("INT4 (narrow)", 4, 4, 2)
    assert cert.budget == pytest.approx(254 / 15)
    assert (cert.max_constrained_norm, cert.min_safe_acc_bits, cert.value_bits, cert.datatype_bits) == (28, 9, 9, 10)
    assert not cert.passed and cert.failing_channels == [1]
    assert cert.per_channel == [
        cf.ChannelCert(channel=0, l1_norm=6, constrained_norm=8, min_safe_acc_bits=7, value_range=(-30, 60),
                       value_bits=7, passed=True),
        cf.ChannelCert(channel=1, l1_norm=28, constrained_norm=28, min_safe_acc_bits=9, value_range=(-210, 210),
                       value_bits=9, passed=False)]
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0, channel 1: a2q+ norm 28 exceeds the budget 16.933 of a 8-bit accumulator with UINT4 inputs "
            "(needs P=9; 1 channel(s) fail)")):
        cf.check([cert])


def test_certify_a2q_and_qat_layers():
    cert, = cf.certify(qgraph(claims=[_claim(method="a2q", acc_bits=10)]))
    assert cert.budget == pytest.approx(511 / 16)
    assert [c.constrained_norm for c in cert.per_channel] == [6, 28]
    assert [c.min_safe_acc_bits for c in cert.per_channel] == [8, 10]
    assert cert.passed and cert.failing_channels == [] and cert.min_safe_acc_bits == 10
    cf.check([cert])
    cert, = cf.certify(qgraph(claims=[_claim(method="qat", acc_bits=None)]))
    assert (cert.acc_bits, cert.budget, cert.max_constrained_norm, cert.min_safe_acc_bits) == (None, None, None, None)
    assert cert.passed and [c.constrained_norm for c in cert.per_channel] == [None, None]
    assert [c.passed for c in cert.per_channel] == [True, True]
    cert, = cf.certify(qgraph(claims=[_claim(method="qat", acc_bits=16)]))
    assert cert.acc_bits is None


def test_certify_layer_popcount_and_signed_inputs():
    q = np.array([[1, 0, 1], [0, 0, 0]])
    binary = cf.IntType.from_datatype(cf.DataType["BINARY"])
    cert = cf.certify_layer("b", "qat", None, q, binary, binary, popcount=True)
    assert [c.value_range for c in cert.per_channel] == [(0, 3), (0, 3)]
    assert (cert.value_bits, cert.datatype_bits, cert.input_bits, cert.input_signed) == (3, 3, 1, False)
    int3 = cf.IntType.from_quant(3, True, False)
    assert (int3.name, int3.lo, int3.hi, int3.bits, int3.signed, int3.narrow) == ("INT3", -4, 3, 3, True, False)
    cert = cf.certify_layer("s", "a2q", 8, np.array([[2, -1]]), int3, cf.IntType.from_quant(2, True, True))
    assert cert.per_channel[0].value_range == (-11, 10)
    assert (cert.input_bits, cert.input_signed, cert.datatype_bits, cert.weight_type) == (3, True, 5, "INT2 (narrow)")
    assert cert.budget == pytest.approx(127 / 4)


def test_int_type_from_datatype():
    t = cf.IntType.from_datatype(cf.DataType["UINT3"])
    assert (t.name, t.lo, t.hi, t.bits, t.signed, t.narrow) == ("UINT3", 0, 7, 3, False, False)
    with pytest.raises(cf.CertificateError, match=exact("FLOAT32 is not an integer datatype")):
        cf.IntType.from_datatype(cf.DataType["FLOAT32"])
    assert cf.IntType.from_quant(4, False, False).name == "UINT4"


@pytest.mark.parametrize("raw, message", [
    ("{", "graph metadata 'a2qflow.layers' is not JSON: "),
    ('{"a": 1}', "graph metadata 'a2qflow.layers' must be a list of layer records"),
    ('[1]', "graph metadata 'a2qflow.layers' must be a list of layer records"),
    ('[{"name": "fc0", "method": "a2q"}]', "graph metadata 'a2qflow.layers', record 0 (fc0): missing field(s) "
                                           "acc_bits, onnx_weight, input_bits, input_signed, weight_bits, "
                                           "weight_shape, depthwise"),
    ('[{}]', "graph metadata 'a2qflow.layers', record 0 (?): missing field(s) name, method"),
])
def test_layer_claims_refuse_malformed_metadata(raw, message):
    model = qgraph(claims=False)
    model.set_metadata_prop(cf.LAYERS_KEY, raw)
    with pytest.raises(cf.CertificateError, match="^" + re.escape(message)):
        cf.layer_claims(model)


def test_layer_claims_refuse_missing_metadata_bad_method_and_width():
    with pytest.raises(cf.CertificateError, match=exact(
            "graph has no 'a2qflow.layers' metadata: not exported by a2qflow")):
        cf.layer_claims(qgraph(claims=False))
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: method 'a2q++'; valid: qat, a2q, a2q+")):
        cf.layer_claims(qgraph(claims=[_claim(method="a2q++")]))
    for p in (1, 65, "8", None, 8.0):
        with pytest.raises(cf.CertificateError, match=exact(f"layer fc0: field acc_bits {p!r} is not a width in 2..64")):
            cf.layer_claims(qgraph(claims=[_claim(acc_bits=p)]))
    for p in (2, 64):
        assert cf.layer_claims(qgraph(claims=[_claim(acc_bits=p)]))[0]["acc_bits"] == p
    assert cf.layer_claims(qgraph(claims=[_claim(method="qat", acc_bits="x")]))[0]["acc_bits"] == "x"


@pytest.mark.parametrize("field, value, found", [
    ("input_bits", 8, "4 (UINT4 inputs)"), ("input_signed", True, "False (UINT4 inputs)"), ("weight_bits", 3, "4"),
    ("weight_shape", [4, 2], "[2, 4]"), ("depthwise", True, "False"),
])
def test_claims_the_graph_contradicts_are_refused(field, value, found):
    with pytest.raises(cf.ClaimMismatch, match=exact(
            f"layer fc0: metadata claims {field}={value!r} but the graph has {found}; the graph was edited "
            "after export")):
        cf.certify(qgraph(claims=[_claim(**{field: value})]))


def test_input_type_from_quantizers_datatypes_and_refusals():
    facts = cf.layer_facts(qgraph(in_signed=1, in_narrow=1), "W", "fc0")
    assert (facts.input_type.lo, facts.input_type.hi, facts.input_type.name) == (-7, 7, "INT4 (narrow)")
    assert facts.fan_in == 4 and not facts.depthwise and facts.weight_type.name == "INT4 (narrow)"
    assert np.array_equal(facts.weights, W0)
    facts = cf.layer_facts(qgraph(in_signed=1), "W", "fc0")
    assert (facts.input_type.lo, facts.input_type.hi) == (-8, 7)
    model = qgraph(input_quant=False)
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0: input 'xr' is not quantized (no quantizer or integer datatype reaches it; found a float "
            "graph input)")):
        cf.layer_facts(model, "W", "fc0")
    model.set_tensor_datatype("inp", cf.DataType["UINT2"])
    assert cf.layer_facts(model, "W", "fc0").input_type.name == "UINT2"
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0: input quantizer xquant has a per-channel scale; the dot product is then not an integer "
            "dot product")):
        cf.layer_facts(qgraph(in_scale=(0.25, 0.5, 0.5, 0.5)), "W", "fc0")
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0: quantizer xquant has a non-zero zero point; an integer accumulator needs zero-point 0")):
        cf.layer_facts(qgraph(zeropt=1.0), "W", "fc0")
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: bit width: 'xb' is not a constant integer")):
        cf.layer_facts(qgraph(bits_init=4.5), "W", "fc0")


def test_input_type_of_a_non_quantizer_producer_and_a_bipolar_quantizer():
    from onnx import helper

    model = qgraph(reshape=False)
    model.graph.node[0].output[0] = "pre"
    model.graph.node.insert(1, helper.make_node("Relu", ["pre"], ["xq"], name="relu"))
    with pytest.raises(cf.CertificateError, match=r"input 'xq' is not quantized \(.*; found Relu\)$"):
        cf.layer_facts(model, "W", "fc0")
    model = qgraph(reshape=False)
    model.graph.node[0].op_type = "BipolarQuant"
    assert cf.layer_facts(model, "W", "fc0").input_type.name == "BIPOLAR"
    assert cf.quant_type(model, model.graph.node[0], "x").name == "BIPOLAR"


def test_quant_type_defaults_to_signed_wide():
    model = qgraph()
    node = model.graph.node[0]
    del node.attribute[:]
    t = cf.quant_type(model, node, "x")
    assert (t.name, t.lo, t.hi, t.signed, t.narrow) == ("INT4", -8, 7, True, False)
    model.graph.node[0].input[2] = "not_an_init"
    with pytest.raises(cf.CertificateError, match="non-zero zero point"):
        cf.quant_type(model, model.graph.node[0], "x")


def test_integer_weights_refusals():
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: weight tensor 'nope' is not a quantized initializer")):
        cf.layer_facts(qgraph(), "nope", "fc0")
    model = qgraph()
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0, weights: initializer is off the quantization grid by 0.2 steps (raw float weights, as "
            "brevitas' export writes for A2Q layers)")):
        cf.layer_facts(qgraph(wraw=W0 * 0.5 + 0.1), "W", "fc0")
    assert cf.layer_facts(qgraph(wraw=W0 * 0.5 + 0.0004), "W", "fc0").weights.tolist() == W0.tolist()
    [n for n in model.graph.node if n.name == "wquant"][0].input[1] = "scale_tensor"
    with pytest.raises(cf.CertificateError, match=exact("layer fc0, weights: quantizer scale 'scale_tensor' is not "
                                                        "a constant")):
        cf.layer_facts(model, "W", "fc0")
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: its quantized weights feed no MatMul/Gemm/Conv "
                                                        "node")):
        cf.layer_facts(qgraph(op="Add"), "W", "fc0")
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: its weights are not the second input of MatMul")):
        cf.layer_facts(qgraph(weight_first=True), "W", "fc0")
    facts = cf.layer_facts(qgraph(transpose=False, wraw=(W0 * 0.5 * 1.0)), "W", "fc0")
    assert facts.weights.shape == (2, 4)


def test_integer_weights_are_what_the_quant_node_computes():
    w = np.array([[9, -9, 1, 0], [0, 0, 0, 0]])     # beyond INT4 narrow: the Quant node clips to -7..7
    facts = cf.layer_facts(qgraph(w=w), "W", "fc0")
    assert facts.weights.tolist() == [[7, -7, 1, 0], [0, 0, 0, 0]]


def test_integer_weights_follow_the_quant_nodes_rounding_mode():
    """The integers are what the Quant node computes with its own rounding mode: weights a hair
    below the grid (within the 1e-3-step tolerance) round up under ROUND and down under FLOOR."""
    wraw = (W0 - 0.0004) * 0.5
    assert cf.layer_facts(qgraph(wraw=wraw), "W", "fc0").weights.tolist() == W0.tolist()
    model = qgraph(wraw=wraw)
    wquant = [n for n in model.graph.node if n.name == "wquant"][0]
    [a for a in wquant.attribute if a.name == "rounding_mode"][0].s = b"FLOOR"
    floor = [[2, -3, 0, -1], [-7, 6, 6, -7]]          # W0 - 1, clipped to INT4 narrow (-7..7)
    assert cf.layer_facts(model, "W", "fc0").weights.tolist() == floor


def test_integer_weights_refuse_unconsumed_and_non_initializer_weights():
    model = qgraph()
    model.set_initializer("lonely", np.ones((2, 4), dtype=np.float32))     # an initializer nothing reads
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0: weight tensor 'lonely' is not a quantized initializer")):
        cf.layer_facts(model, "lonely", "fc0")
    model = qgraph()
    model.del_initializer("W")                                              # a Quant reads W, but W is computed
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: weight tensor 'W' is not a quantized initializer")):
        cf.layer_facts(model, "W", "fc0")


def test_refusals_name_the_layer_and_an_unnamed_quantizer_by_its_output():
    model = qgraph()
    wquant = [n for n in model.graph.node if n.name == "wquant"][0]
    wquant.name = ""
    model.set_initializer("wz", np.array(1.0, dtype=np.float32))
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0, weights: quantizer wq has a non-zero zero point; an integer accumulator needs zero-point 0")):
        cf.layer_facts(model, "W", "fc0")
    model = qgraph(in_scale=(0.25, 0.5, 0.5, 0.5))
    model.graph.node[0].name = ""
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0: input quantizer xq has a per-channel scale; the dot product is then not an integer "
            "dot product")):
        cf.layer_facts(model, "W", "fc0")
    model = qgraph()
    model.graph.node[0].input[3] = "computed_bits"                          # bit width not an initializer
    with pytest.raises(cf.CertificateError, match=exact("layer fc0: bit width: 'computed_bits' is not a constant "
                                                        "integer")):
        cf.layer_facts(model, "W", "fc0")
    with pytest.raises(cf.CertificateError, match=exact("layer fc7: weight tensor 'nope' is not a quantized "
                                                        "initializer")):
        cf.certify(qgraph(claims=[_claim(name="fc7", onnx_weight="nope")]))


def test_write_certificate_and_certify_and_record(tmp_path):
    path = tmp_path / "r" / "s" / "certificate.json"
    with pytest.raises(cf.CertificateError, match="channel 1"):
        cf.certify_and_record(qgraph(), path)
    doc = json.loads(path.read_text())
    assert doc["passed"] is False and doc["layers"][0]["failing_channels"] == [1]
    assert path.read_text().startswith('{\n "passed": false,\n "layers": [\n  {\n   "name": "fc0"')
    certs = cf.certify_and_record(qgraph(claims=[_claim(acc_bits=9)]), path)
    assert json.loads(path.read_text())["passed"] is True and certs[0].passed


def test_summary_rows():
    certs = cf.certify(qgraph()) + cf.certify(qgraph(claims=[_claim(method="qat", acc_bits=None)]))
    assert cf.summary_rows(certs) == [
        {"layer": "fc0", "method": "a2q+", "P": 8, "input": "UINT4", "K": 4, "norm": 28, "budget": "16.9",
         "min P": 9, "value": 9, "dtype": 10, "ok": "NO"},
        {"layer": "fc0", "method": "qat", "P": None, "input": "UINT4", "K": 4, "norm": None, "budget": None,
         "min P": None, "value": 9, "dtype": 10, "ok": "yes"}]


def test_depthwise_conv_facts():
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    def conv(group, wshape):
        nodes = [helper.make_node("Quant", ["W", "ws", "wz", "wb"], ["wq"], domain="qonnx.custom_op.general",
                                  signed=1, narrow=1),
                 helper.make_node("Conv", ["inp", "wq"], ["out"], group=group, kernel_shape=[3, 3])]
        inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, 2, 5, 5])
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 3, 3])
        m = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [inp], [out])))
        for n, v in {"W": np.ones(wshape), "ws": np.array(1.0), "wz": np.array(0.0), "wb": np.array(4.0)}.items():
            m.set_initializer(n, np.asarray(v, dtype=np.float32))
        m.set_tensor_datatype("inp", cf.DataType["UINT4"])
        return cf.layer_facts(m, "W", "c")

    assert conv(2, (2, 1, 3, 3)).depthwise and conv(2, (2, 1, 3, 3)).fan_in == 9
    assert not conv(1, (2, 2, 3, 3)).depthwise
    assert not conv(1, (2, 1, 3, 3)).depthwise      # one input channel, not grouped: a plain conv
    assert not conv(2, (4, 2, 3, 3)).depthwise      # grouped, not depthwise


# ------------------------------------------------------------------------ sizing.py / overflow.py

from a2qflow.build_flows import overflow as ov  # noqa: E402
from a2qflow.build_flows import sizing as sz  # noqa: E402


def mvau(w, acc="INT16", idt="UINT4", wdt="INT4", no_act=1, xnor=0, runtime=0):
    """One MVAU_rtl node with the given weights (MW fan-in x MH channels)."""
    from hw_graphs import mvau_graph
    from qonnx.custom_op.registry import getCustomOp

    mw, mh = w.shape
    model = mvau_graph(16, mw=mw, mh=mh, pe=1, simd=1, idt=idt, wdt=wdt)
    model.set_initializer("weights", w.astype(np.float32))
    inst = getCustomOp(model.graph.node[0])
    for k, v in dict(accDataType=acc, noActivation=no_act, binaryXnorMode=xnor,
                     runtime_writeable_weights=runtime).items():
        inst.set_nodeattr(k, v)
    return model


def _rec(w, method="a2q+", p=9, name="fc0"):
    rows = w.T
    return {"name": name, "method": method, "acc_bits": p, "weight_shape": list(rows.shape),
            "_key": np.sort(np.abs(rows), axis=1)}


def test_size_accumulators_in_every_mode():
    w = W0.T.copy()                      # MW=4 fan-in, MH=2 channels
    cases = {("guaranteed", 9): "INT9", ("guaranteed", 12): "INT10", ("value", 12): "INT9",
             ("datatype", 12): "INT10", ("int32", 12): "INT32"}
    for (mode, p), acc in cases.items():
        model = mvau(w)
        t = sz.SizeAccumulators([_rec(w, p=p)], mode)
        model = model.transform(t)
        node = model.graph.node[0]
        from qonnx.custom_op.registry import getCustomOp
        inst = getCustomOp(node)
        assert inst.get_nodeattr("accDataType") == acc, (mode, p)
        bits = int(acc[3:])
        assert inst.get_nodeattr("outputDataType") == f"INT{-(-bits // 8) * 8}"   # a graph output: byte-aligned
        s, = t.sizings
        assert (s.node, s.layer, s.method, s.fan_in, s.value_bits, s.datatype_bits, s.finn_acc, s.acc,
                s.runtime_writeable) == ("MVAU_rtl_0", "fc0", "a2q+", 4, 9, 10, "INT16", acc, False)
        assert s.acc_bits == p


def test_size_accumulators_without_records_and_with_runtime_weights():
    from qonnx.custom_op.registry import getCustomOp

    w = W0.T.copy()
    for runtime, acc in ((0, "INT9"), (1, "INT10")):
        model = mvau(w, runtime=runtime, no_act=0)
        model.set_tensor_datatype("out", cf.DataType["UINT4"])
        getCustomOp(model.graph.node[0]).set_nodeattr("outputDataType", "UINT4")
        t = sz.SizeAccumulators(None)
        model.transform(t)
        s, = t.sizings
        assert (s.layer, s.method, s.acc_bits, s.acc, s.runtime_writeable) == (None, None, None, acc, bool(runtime))
        assert getCustomOp(model.graph.node[0]).get_nodeattr("outputDataType") == "UINT4"
    with pytest.raises(ValueError, match=exact("accumulator sizing mode 'best'; valid: guaranteed, value, int32, "
                                               "datatype")):
        sz.SizeAccumulators(None, "best")


def test_size_accumulators_refuses_weights_breaking_the_bound():
    w = W0.T.copy()
    with pytest.raises(cf.CertificateError, match=exact(
            "layer fc0, channel 1: a2q+ norm 28 exceeds the budget 16.933 of a 8-bit accumulator with UINT4 inputs "
            "(needs P=9; 1 channel(s) fail)")):
        mvau(w).transform(sz.SizeAccumulators([_rec(w, p=8)]))


def test_match_layers_by_weights_up_to_sign_and_order():
    w = W0.T.copy()
    model = mvau(w)
    other = _rec(np.array([[1, 1], [1, 1], [1, 1], [1, 2]]), name="other")
    flipped = -w[::-1]                   # rows permuted within, signs flipped: still the same layer
    assert sz.match_layers(model, [other, _rec(flipped)])["MVAU_rtl_0"]["name"] == "fc0"
    with pytest.raises(cf.CertificateError, match=exact(
            "MVAU_rtl_0: its weights match no layer recorded in the graph (shape (2, 4)); weights changed after "
            "export or the graph was not exported by a2qflow")):
        sz.match_layers(model, [other, {**_rec(w), "_key": None}])
    with pytest.raises(cf.CertificateError, match="match no layer"):
        sz.match_layers(model, [{**_rec(w), "weight_shape": [4, 2]}])
    model.graph.initializer.remove(model.graph.initializer[0])
    with pytest.raises(cf.CertificateError, match=exact(
            "MVAU_rtl_0: weights are not in the graph; cannot map it to a layer")):
        sz.match_layers(model, [_rec(w)])
    assert sz.node_weight_rows(model, model.graph.node[0]) is None


def test_match_layers_and_sizing_look_past_other_nodes():
    """A node that is no dot product (here before the layer) does not end the matching, and a
    layer whose output feeds another node keeps its accumulator type as output (FINN
    byte-aligns only graph outputs)."""
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    w = W0.T.copy()
    model = mvau(w)
    model.graph.node.insert(0, helper.make_node("Relu", ["pre"], ["pre_out"], name="relu_first"))
    assert sz.match_layers(model, [_rec(w)])["MVAU_rtl_0"]["name"] == "fc0"
    model = mvau(w)
    model.graph.node[0].output[0] = "acc"
    model.graph.node.append(helper.make_node("Relu", ["acc"], ["out"], name="relu_after"))
    model = model.transform(sz.SizeAccumulators([_rec(w)]))
    inst = getCustomOp(model.graph.node[0])
    assert (inst.get_nodeattr("accDataType"), inst.get_nodeattr("outputDataType")) == ("INT9", "INT9")


def test_layer_records_name_the_layer_in_refusals():
    with pytest.raises(cf.CertificateError, match=exact("layer fc3: weight tensor 'nope' is not a quantized "
                                                        "initializer")):
        sz.layer_records(qgraph(claims=[_claim(name="fc3", onnx_weight="nope")]))


def test_layer_records_check_the_claims():
    assert sz.layer_records(qgraph(claims=False)) is None
    rec, = sz.layer_records(qgraph())
    assert rec["name"] == "fc0" and rec["_key"].tolist() == [[0, 1, 2, 3], [7, 7, 7, 7]]
    with pytest.raises(cf.ClaimMismatch):
        sz.layer_records(qgraph(claims=[_claim(weight_bits=8)]))


def test_node_attrs_and_popcount_detection():
    from qonnx.custom_op.registry import getCustomOp

    model = mvau(W0.T.copy())
    node = model.graph.node[0]
    assert sz.node_attrs(node, ("MW", "MH", "nonexistent")) == {"MW": 4, "MH": 2}
    assert not sz.is_popcount_node(getCustomOp(node))
    assert sz.is_popcount_node(getCustomOp(mvau(np.ones((3, 2)), idt="BINARY", wdt="BINARY", xnor=1).graph.node[0]))
    assert sz.is_popcount_node(getCustomOp(mvau(np.ones((3, 2)), idt="BIPOLAR", wdt="BIPOLAR").graph.node[0]))
    assert not sz.is_popcount_node(getCustomOp(mvau(np.ones((3, 2)), idt="BIPOLAR", wdt="INT2").graph.node[0]))
    assert not sz.is_popcount_node(getCustomOp(mvau(np.ones((3, 2)), idt="INT2", wdt="BIPOLAR").graph.node[0]))
    assert [sz.is_dot_product_node(SimpleNamespace(op_type=t)) for t in ("MVAU_rtl", "VVAU_hls", "MVAUx", "Thresholding")] \
        == [True, True, False, False]


def test_vvau_weight_rows():
    from onnx import helper
    from hw_graphs import _one_node_model

    node = helper.make_node("VVAU_hls", ["inp", "w"], ["out"], domain="finn.custom_op.fpgadataflow.hls",
                            backend="fpgadataflow", Channels=2, Kernel=[2, 1], PE=1, SIMD=1, Dim=[1, 1],
                            inputDataType="UINT4", weightDataType="INT4", outputDataType="INT16",
                            accDataType="INT16", noActivation=1)
    w = np.arange(4, dtype=np.float32).reshape(2, 1, 2, 1)
    model = _one_node_model(node, [1, 1, 1, 4], [1, 1, 1, 2], "UINT4", "INT16", {"w": (w, "INT4")})
    assert sz.node_weight_rows(model, model.graph.node[0]).tolist() == [[0, 1], [2, 3]]


def test_overflow_check_node_counts_worst_case_and_data_wraps():
    w = W0.T[:3, :].copy()               # channels [3, -2, 1] and [-7, 7, 7]: sums -30..60 and -105..210
    model = mvau(w, acc="INT9")
    r = ov.check_node(model, model.graph.node[0], np.array([100, -129, 5, 300, 7]))
    assert r == {"node": "MVAU_rtl_0", "acc": "INT9", "acc_bits": 9, "signed_acc": True, "worst_case_channels": 2,
                 "worst_case_wraps": 0, "worst_case_wraps_at_p_minus_1": 1, "first_wrapping_channel_at_p_minus_1": 1,
                 "data_values": 5, "data_wraps": 1, "data_wraps_at_p_minus_1": 2, "data_max_abs": 300}
    model = mvau(w, acc="INT8")
    r = ov.check_node(model, model.graph.node[0], np.array([], dtype=np.int64))
    assert (r["worst_case_wraps"], r["worst_case_wraps_at_p_minus_1"], r["first_wrapping_channel_at_p_minus_1"]) \
        == (1, 1, 1)
    assert (r["data_values"], r["data_wraps"], r["data_wraps_at_p_minus_1"]) == (0, None, None)
    model = mvau(w, acc="INT7")
    r = ov.check_node(model, model.graph.node[0], None)
    assert (r["worst_case_wraps"], r["worst_case_wraps_at_p_minus_1"], r["first_wrapping_channel_at_p_minus_1"]) \
        == (1, 2, 0)
    model = mvau(w, acc="INT10")
    r = ov.check_node(model, model.graph.node[0], None)
    assert (r["worst_case_wraps"], r["worst_case_wraps_at_p_minus_1"], r["first_wrapping_channel_at_p_minus_1"]) \
        == (0, 0, None)
    with pytest.raises(ov.AccumulatorOverflow, match=exact(
            "MVAU_rtl_0: INT9 accumulator wraps on 0 worst-case channel(s) and 1 test-data value(s)")):
        ov.raise_on_wrap([{"node": "a", "acc": "INT9", "worst_case_wraps": 0, "data_wraps": None},
                          {"node": "MVAU_rtl_0", "acc": "INT9", "worst_case_wraps": 0, "data_wraps": 1}])
    with pytest.raises(ov.AccumulatorOverflow, match=exact(
            "b: INT8 accumulator wraps on 2 worst-case channel(s) and None test-data value(s)")):
        ov.raise_on_wrap([{"node": "b", "acc": "INT8", "worst_case_wraps": 2, "data_wraps": None}])
    ov.raise_on_wrap([{"node": "a", "acc": "INT9", "worst_case_wraps": 0, "data_wraps": 0}])


def test_overflow_check_of_unsigned_accumulators_and_popcounts():
    w = np.array([[1, 2], [3, 0], [1, 1]])           # all >= 0: sums 0..75 and 0..45 for UINT4 inputs
    model = mvau(w, acc="UINT7")
    r = ov.check_node(model, model.graph.node[0], np.array([0, 127, 128, -1]))
    assert (r["signed_acc"], r["worst_case_wraps"], r["worst_case_wraps_at_p_minus_1"]) == (False, 0, 2)
    assert (r["data_wraps"], r["data_wraps_at_p_minus_1"], r["first_wrapping_channel_at_p_minus_1"]) == (2, 2, 0)
    model = mvau(w, acc="UINT6")
    assert ov.check_node(model, model.graph.node[0], None)["worst_case_wraps"] == 1
    assert ov.check_node(model, model.graph.node[0], np.array([63, 62]))["data_wraps"] == 0   # signed 6 bits: 2
    model = mvau(w, acc="UINT5")
    assert ov.check_node(model, model.graph.node[0], None)["worst_case_wraps"] == 2
    model = mvau(np.ones((8, 1)), acc="UINT3", idt="BINARY", wdt="BINARY", xnor=1)
    assert ov.check_node(model, model.graph.node[0], None)["worst_case_wraps"] == 1          # popcount 8 = 2^3
    model = mvau(np.ones((7, 1)), acc="UINT3", idt="BINARY", wdt="BINARY", xnor=1)
    assert ov.check_node(model, model.graph.node[0], None)["worst_case_wraps"] == 0
    model = mvau(np.array([[1, 0], [0, 0], [1, 1], [1, 0]]), acc="INT4", idt="BINARY", wdt="BINARY", xnor=1)
    r = ov.check_node(model, model.graph.node[0], None)           # popcount 0..4 per channel
    assert (r["worst_case_wraps"], r["worst_case_wraps_at_p_minus_1"]) == (0, 2)
    model = mvau(np.array([[1, -1], [-1, -1], [1, 1]]), acc="INT3", idt="BIPOLAR", wdt="BIPOLAR")
    r = ov.check_node(model, model.graph.node[0], None)           # popcount 0..3
    assert (r["worst_case_wraps"], r["worst_case_wraps_at_p_minus_1"]) == (0, 2)


def test_overflow_check_model_reads_the_saved_accumulators(tmp_path):
    model = mvau(W0.T[:3, :].copy(), acc="INT9")
    results = ov.check_model(model, tmp_path / "none.npz")
    assert [r["data_values"] for r in results] == [0]
    np.savez_compressed(tmp_path / "acc.npz", **{"0": np.array([300, 1])})
    r, = ov.check_model(model, tmp_path / "acc.npz")
    assert (r["data_values"], r["data_wraps"]) == (2, 1)


# ------------------------------------------------------------------------ build_flows/package.py

from a2qflow.build_flows import package as pk  # noqa: E402
from a2qflow.build_flows.reference import Reference  # noqa: E402


def _hw_run(root: Path, *, steps=("step_a", "step_hw"), driver=True, status="complete", board="Pynq-Z2") -> rf.RunFolder:
    """A finished run folder without FINN: a non-HW and an all-HW intermediate model, FINN's
    driver settings, run.json."""
    folder = rf.RunFolder(root)
    folder.write_run({"status": status, "board": board, "flow": "oss", "sizing": "guaranteed", "versions": {"x": 1},
                      "steps": list(steps)})
    _one_node_onnx(folder.intermediate("step_a"), "Relu")
    mvau(W0.T.copy(), acc="INT9").save(str(folder.intermediate("step_hw")))
    if driver:
        (folder.finn / "driver").mkdir(parents=True)
        (folder.finn / "driver" / "settings.json").write_text('{"driver_information": {}}')
    return folder


def _ref(n=3, labels=True):
    x = np.arange(n * 4, dtype=np.float64).reshape(n, 4)
    return Reference(x, np.ones((n, 2)) / 3, True, "trained model", np.arange(n) if labels else None, dataset="digits")


def test_sim_graph_is_the_last_all_hw_step(tmp_path):
    folder = _hw_run(tmp_path / "run")
    assert pk.sim_graph(folder) == (folder.intermediate("step_hw"), "step_hw")
    folder.write_run({"steps": ["step_hw", "step_a"]})
    assert pk.sim_graph(folder) == (folder.intermediate("step_hw"), "step_hw")
    folder.write_run({"steps": ["step_a", "step_missing"]})
    with pytest.raises(pk.PackageError, match=exact(
            f"{folder.intermediate_models}: no saved HW graph (all nodes FINN HW layers); did the build reach "
            "step_create_dataflow_partition?")):
        pk.sim_graph(folder)
    folder.run_json.unlink()                             # no run.json: the saved steps by time
    os.utime(folder.intermediate("step_a"), (2000, 2000))
    os.utime(folder.intermediate("step_hw"), (1000, 1000))
    assert pk.sim_graph(folder)[1] == "step_hw"
    mvau(W0.T.copy(), acc="INT10").save(str(folder.intermediate("step_b")))
    os.utime(folder.intermediate("step_b"), (3000, 3000))
    assert pk.sim_graph(folder)[1] == "step_b"                   # the newest HW graph, not the last by name
    folder.intermediate("step_b").unlink()
    folder.intermediate("step_hw").write_bytes(b"\x08garbage")
    with pytest.raises(pk.PackageError, match=exact(f"{folder.intermediate('step_hw')}: not a readable ONNX graph "
                                                    "(DecodeError)")):
        pk.sim_graph(folder)


def test_all_hw_excludes_partitions_iodma_and_empty_graphs():
    def graph(*nodes):
        return SimpleNamespace(graph=SimpleNamespace(node=[SimpleNamespace(domain=d, op_type=t) for d, t in nodes]))

    hw = "finn.custom_op.fpgadataflow.rtl"
    assert pk._all_hw(graph((hw, "MVAU_rtl"), ("finn.custom_op.fpgadataflow", "Thresholding_hls")))
    assert not pk._all_hw(graph())
    assert not pk._all_hw(graph((hw, "MVAU_rtl"), ("", "Relu")))
    assert not pk._all_hw(graph((hw, "MVAU_rtl"), ("finn.custom_op.fpgadataflow", "StreamingDataflowPartition")))
    assert not pk._all_hw(graph((hw, "IODMA_hls"), (hw, "MVAU_rtl")))
    assert not pk._all_hw(graph(("qonnx.custom_op.general", "MVAU_rtl")))


def _parent(path: Path, ops: list[tuple[str, dict]]):
    """dataflow_parent.onnx: `ops` around one StreamingDataflowPartition, in order."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    nodes, inits, t = [], {}, "inp"
    for i, (op, kw) in enumerate(ops):
        out = f"t{i}"
        if op == "SDP":
            nodes.append(helper.make_node("StreamingDataflowPartition", [t], [out], name="sdp",
                                          domain="finn.custom_op.fpgadataflow"))
        elif op in ("Mul", "Add"):
            nodes.append(helper.make_node(op, [t, f"c{i}"], [out], name=f"{op}_{i}"))
            if kw.get("const") is not None:
                inits[f"c{i}"] = np.asarray(kw["const"], dtype=np.float32)
        elif op == "Reshape":
            nodes.append(helper.make_node(op, [t, f"c{i}"], [out], name=f"Reshape_{i}"))
            inits[f"c{i}"] = np.array(kw["shape"], dtype=np.int64)
        elif op == "Transpose":
            nodes.append(helper.make_node(op, [t], [out], perm=kw["perm"], name=f"Transpose_{i}"))
        else:
            nodes.append(helper.make_node(op, [t], [out], name=f"{op}_{i}"))
        t = out
    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, 2, 3])
    out = helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "p", [inp], [out])))
    for k, v in inits.items():
        model.set_initializer(k, v)
    for i, (op, kw) in enumerate(ops):
        if "out_shape" in kw:
            model.set_tensor_shape(f"t{i}", kw["out_shape"])
    model.set_tensor_datatype("inp", DataType["UINT8"])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))


def test_io_wrapping_reads_the_cpu_ops_around_the_partition(tmp_path):
    folder = _hw_run(tmp_path / "run")
    graph = pk.ModelWrapper(str(folder.intermediate("step_hw")))
    assert pk.io_wrapping(folder, graph) == {"model_input_shape": [1, 4], "pre": [], "post": []}
    parent = folder.intermediate_models / "dataflow_parent.onnx"
    _parent(parent, [("Transpose", {"perm": [0, 2, 1]}), ("Reshape", {"shape": [1, 6], "out_shape": [1, 6]}),
                     ("SDP", {}), ("Mul", {"const": [[0.5, 2.0]]}), ("Add", {"const": [1.0]}),
                     ("Flatten", {"out_shape": [1, 2]})])
    io = pk.io_wrapping(folder, graph)
    assert io == {"model_input_shape": [1, 2, 3], "input_datatype": "UINT8",
                  "pre": [{"op": "transpose", "perm": [0, 2, 1], "node": "Transpose_0"},
                          {"op": "reshape", "shape": [6], "node": "Reshape_1"}],
                  "post": [{"op": "mul", "const": [0.5, 2.0], "shape": [1, 2], "node": "Mul_3"},
                           {"op": "add", "const": [1.0], "shape": [1], "node": "Add_4"},
                           {"op": "reshape", "shape": [2], "node": "Flatten_5"}]}
    _parent(parent, [("SDP", {}), ("Relu", {})])
    with pytest.raises(pk.PackageError, match=exact(
            f"{parent}: node Relu_1 (Relu) runs outside the accelerator; the board driver applies only Flatten, "
            "Reshape, Transpose, Mul, Add")):
        pk.io_wrapping(folder, graph)
    _parent(parent, [("SDP", {}), ("Mul", {"const": None})])
    with pytest.raises(pk.PackageError, match=r"node Mul_1 \(Mul\) runs outside the accelerator"):
        pk.io_wrapping(folder, graph)
    _parent(parent, [("SDP", {}), ("Add", {"const": None})])
    with pytest.raises(pk.PackageError, match=r"node Add_1 \(Add\) runs outside the accelerator"):
        pk.io_wrapping(folder, graph)
    _parent(parent, [("SDP", {}), ("SDP", {})])
    with pytest.raises(pk.PackageError, match=exact(f"{parent}: 2 dataflow partitions; the board package supports "
                                                    "one")):
        pk.io_wrapping(folder, graph)


def test_host_test_set_from_the_reference_folder(tmp_path):
    folder = _hw_run(tmp_path / "run")
    with pytest.raises(pk.PackageError, match=exact(f"{folder.root}: no reference/ test set and no checkpoint: nothing "
                                                    "to test the board with")):
        pk.host_test_set(folder)
    _ref(5).save(folder.reference)
    ts = pk.host_test_set(folder, max_samples=2)
    assert ts.x.shape == (2, 4) and ts.labels.tolist() == [0, 1]
    assert len(pk.host_test_set(folder).x) == 5
    _ref(501).save(folder.reference)
    assert len(pk.host_test_set(folder).x) == 500
    seen = []
    monkey = pk.reference.from_checkpoint
    try:
        pk.reference.from_checkpoint = lambda ckpt, n: seen.append((ckpt, n)) or "ts"
        assert pk.host_test_set(folder, "ck.pt", 7) == "ts" and seen == [("ck.pt", 7)]
    finally:
        pk.reference.from_checkpoint = monkey


def test_check_test_set_refuses_wrong_shapes_and_lengths():
    io = {"model_input_shape": [1, 4]}
    pk._check_test_set(io, _ref(3))
    with pytest.raises(pk.PackageError, match=exact("test inputs have shape (3, 4); the network takes (N, 2, 2)")):
        pk._check_test_set({"model_input_shape": [1, 2, 2]}, _ref(3))
    bad = _ref(3)
    bad.expected = bad.expected[:2]
    with pytest.raises(pk.PackageError, match=exact("test set lengths differ: x 3, labels 3, host outputs 2")):
        pk._check_test_set(io, bad)
    bad = _ref(3)
    bad.labels = bad.labels[:1]
    with pytest.raises(pk.PackageError, match=exact("test set lengths differ: x 3, labels 1, host outputs 3")):
        pk._check_test_set(io, bad)
    pk._check_test_set(io, _ref(3, labels=False))
    bad = _ref(3, labels=False)
    bad.expected = bad.expected[:1]
    with pytest.raises(pk.PackageError, match=exact("test set lengths differ: x 3, labels None, host outputs 1")):
        pk._check_test_set(io, bad)


def test_write_package_lists_every_file_and_verifies(tmp_path):
    folder = _hw_run(tmp_path / "run")
    (folder.package).mkdir(parents=True)
    (folder.package / "stale.txt").write_text("old package")
    pkg = pk.write_package(folder, "Pynq-Z2", _ref(3))
    assert pkg == folder.package and not (pkg / "stale.txt").exists()
    assert sorted(p.name for p in folder.root.iterdir() if p.name.startswith(".")) == []
    m = json.loads((pkg / "manifest.json").read_text())
    files = sorted(m["files"])
    code = sorted(f"a2qflow_deploy/{p.name}" for p in pk.deploy_sources())
    assert files == sorted(["README.md", "data/host_output.npy", "data/test_x.npy", "data/test_y.npy",
                            "driver/settings.json", "sim/hw_graph.onnx", *code])
    assert "__init__.py" in [Path(c).name for c in code] and "manifest.py" in [Path(c).name for c in code]
    assert (m["format"], m["board"], m["part"], m["platform"], m["run"], m["entry"]) == (
        "a2qflow-deploy/1", "Pynq-Z2", "xc7z020clg400-1", "zynq-iodma", "run", "python3 -m a2qflow_deploy bench")
    assert m["build"] == {"flow": "oss", "sizing": "guaranteed", "versions": {"x": 1}}
    assert (m["bitfile"], m["hwh"], m["sim_only"]) == (None, None, True)
    assert m["no_bitfile_reason"] == "oss flow: no bitstream was synthesized (that needs Vivado)"
    assert (m["settings"], m["runtime_weights"], m["hw_graph"], m["hw_graph_step"]) == (
        "driver/settings.json", None, "sim/hw_graph.onnx", "step_hw")
    assert m["settings_source"] == "finn-plus step_make_driver (MakePYNQDriver) of the bitstream build"
    assert m["io"] == {"model_input_shape": [1, 4], "pre": [], "post": []}
    assert m["accelerator_sim"] is None and m["finn_estimate"] is None
    assert m["test_set"] == {"x": "data/test_x.npy", "y": "data/test_y.npy", "host_output": "data/host_output.npy",
                             "samples": 3, "task": "classification", "dataset": "digits", "host_model": "trained model"}
    assert np.load(pkg / "data/test_x.npy").dtype == np.float32
    assert np.load(pkg / "data/test_x.npy").tolist() == np.arange(12.0).reshape(3, 4).tolist()
    assert np.load(pkg / "data/host_output.npy").dtype == np.float32
    assert np.load(pkg / "data/host_output.npy").tolist() == np.full((3, 2), np.float32(1 / 3)).tolist()
    assert np.load(pkg / "data/test_y.npy").tolist() == [0, 1, 2]
    assert m["files"]["sim/hw_graph.onnx"]["sha256"] == mf.sha256_file(folder.intermediate("step_hw"))
    readme = (pkg / "README.md").read_text()
    assert readme.startswith("# a2qflow deployment package: Pynq-Z2 (xc7z020clg400-1)\n\nBuilt by a2qflow ")
    assert ("from run `run`; runs on the simulated board only (no bitfile: oss flow: no bitstream was synthesized "
            "(that needs Vivado)).") in readme
    assert mf.load_package(pkg, "Pynq-Z2", sim=True).manifest == m
    assert pk.package_is_current(folder)
    assert pk.ensure_package(folder, log=pytest.fail) == pkg

    pkg2 = pk.write_package(folder, pk.get_board("Pynq-Z2"), _ref(2, labels=False))
    m2 = json.loads((pkg2 / "manifest.json").read_text())
    assert m2["test_set"]["y"] is None and "data/test_y.npy" not in m2["files"]
    assert not (pkg2 / "data/test_y.npy").exists()


def test_write_package_records_board_clock_time_native_input_and_finn_estimate(tmp_path):
    folder = _hw_run(tmp_path / "run")
    native = {"dtype": "UINT8", "scale": 1.0}

    def ref(native, shape=(3, 2, 3)):
        x = np.arange(18, dtype=np.float64)[:np.prod(shape)].reshape(shape)
        return Reference(x, np.ones((3, 2)) / 3, True, "trained model", None, dataset="digits", native=native)

    m = json.loads((pk.write_package(folder, "Pynq-Z2", ref(native, (3, 4))) / "manifest.json").read_text())
    assert "native_input" not in m["io"]                   # float model input: the driver feeds it as it is
    assert (m["clk_mhz"], m["power_rails"]) == (100.0, False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", m["created"])
    _parent(folder.intermediate_models / "dataflow_parent.onnx", [("SDP", {})])     # UINT8 model input
    estimate = {"critical_path_cycles": 12, "max_cycles": 4}
    (folder.finn_report_dir).mkdir(parents=True)
    (folder.finn_report_dir / "estimate_network_performance.json").write_text(json.dumps(estimate))
    m = json.loads((pk.write_package(folder, "Pynq-Z2", ref(native)) / "manifest.json").read_text())
    assert m["io"]["input_datatype"] == "UINT8" and m["io"]["native_input"] == native
    assert m["finn_estimate"] == estimate
    m = json.loads((pk.write_package(folder, "Pynq-Z2", ref(None)) / "manifest.json").read_text())
    assert "native_input" not in m["io"]                   # integer input, but no dataset codes known


def test_write_package_and_swap_in_clear_leftovers_of_an_interrupted_write(tmp_path):
    folder = _hw_run(tmp_path / "run")
    (folder.root / ".package.tmp").mkdir()
    (folder.root / ".package.tmp" / "half.txt").write_text("half written")
    pkg = pk.write_package(folder, "Pynq-Z2", _ref(2))
    (folder.root / ".package.old").mkdir()
    (folder.root / ".package.old" / "older.txt").write_text("an old package left behind")
    assert pk.write_package(folder, "Pynq-Z2", _ref(2)) == pkg
    assert sorted(p.name for p in folder.root.iterdir() if p.name.startswith(".")) == []
    assert not (pkg / "half.txt").exists() and mf.load_package(pkg, "Pynq-Z2", sim=True).manifest


def test_package_defaults_to_500_samples_and_passes_checkpoint_and_samples_on(tmp_path, monkeypatch):
    folder = _hw_run(tmp_path / "run")
    _ref(501).save(folder.reference)
    samples = lambda pkg: json.loads((pkg / "manifest.json").read_text())["test_set"]["samples"]  # noqa: E731
    assert samples(pk.package_run(folder)) == 500
    assert samples(pk.ensure_package(folder, force=True, log=lambda s: None)) == 500
    assert samples(pk.ensure_package(folder, samples=7, force=True, log=lambda s: None)) == 7
    seen = []
    monkeypatch.setattr(pk.reference, "from_checkpoint", lambda ckpt, n: seen.append((ckpt, n)) or _ref(2))
    assert samples(pk.ensure_package(folder, checkpoint="model.pt", samples=9, force=True, log=lambda s: None)) == 2
    assert samples(pk.package_run(folder, checkpoint="other.pt")) == 2
    assert seen == [("model.pt", 9), ("other.pt", 500)]


def test_package_is_current_goes_stale_on_every_source_change(tmp_path):
    folder = _hw_run(tmp_path / "run")
    assert not pk.package_is_current(folder)                      # no package yet
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    assert pk.package_is_current(folder)
    readme = folder.package / "README.md"
    readme.write_text(readme.read_text() + "edited")
    assert not pk.package_is_current(folder)                      # a shipped file edited
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    (folder.package / "data/test_x.npy").unlink()
    assert not pk.package_is_current(folder)                      # a shipped file missing
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    mvau(W0.T.copy(), acc="INT10").save(str(folder.intermediate("step_hw")))
    assert not pk.package_is_current(folder)                      # the HW graph changed
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    bitdir = folder.finn / "bitfile"
    bitdir.mkdir()
    (bitdir / "finn-accel.bit").write_bytes(b"bit")
    (bitdir / "finn-accel.hwh").write_bytes(b"hwh")
    assert not pk.package_is_current(folder)                      # a bitfile appeared
    _ref(3).save(folder.reference)
    logs = []
    pkg = pk.ensure_package(folder, log=logs.append)
    assert logs == [f"writing the deployment package of {folder.root} ..."]
    m = json.loads((pkg / "manifest.json").read_text())
    assert (m["bitfile"], m["hwh"], m["sim_only"]) == ("bitfile/finn-accel.bit", "bitfile/finn-accel.hwh", False)
    assert (pkg / "bitfile/finn-accel.bit").read_bytes() == b"bit"
    assert "runs on the board." in (pkg / "README.md").read_text()
    assert pk.package_is_current(folder)
    (bitdir / "finn-accel.hwh").write_bytes(b"hwh2")
    assert not pk.package_is_current(folder)                      # the hwh changed
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    m = json.loads((folder.package / "manifest.json").read_text())
    m["files"]["a2qflow_deploy/extra.py"] = m["files"]["README.md"]
    (folder.package / "a2qflow_deploy/extra.py").write_bytes((folder.package / "README.md").read_bytes())
    (folder.package / "manifest.json").write_text(json.dumps(m))
    assert not pk.package_is_current(folder)                      # board code of another a2qflow
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    m = json.loads((folder.package / "manifest.json").read_text())
    (folder.package / "manifest.json").write_text(json.dumps({**m, "bitfile": None}))
    assert not pk.package_is_current(folder)                      # manifest says no bitfile, the run has one
    (folder.package / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != "files"}))
    assert not pk.package_is_current(folder)
    (folder.package / "manifest.json").write_text("{")
    assert not pk.package_is_current(folder)
    pk.write_package(folder, "Pynq-Z2", _ref(3))
    (bitdir / "finn-accel.hwh").unlink()
    assert not pk.package_is_current(folder)
    with pytest.raises(pk.PackageError, match=exact(f"{bitdir / 'finn-accel.bit'} has no finn-accel.hwh beside it; "
                                                    "pynq needs both")):
        pk.write_package(folder, "Pynq-Z2", _ref(3))


def test_sim_only_reason_names_the_flow(tmp_path):
    folder = _hw_run(tmp_path / "run")
    folder.write_run({"steps": ["step_hw"]})
    assert pk._copy_bitfile(folder, tmp_path)["no_bitfile_reason"] == ("? flow: no bitstream was synthesized (that "
                                                                       "needs Vivado)")


def test_certificate_passes_a_norm_exactly_at_the_budget():
    binary = cf.IntType.from_datatype(cf.DataType["BINARY"])
    cert = cf.certify_layer("b", "a2q+", 4, np.array([[7, -7], [7, -8]]), binary, cf.IntType.from_quant(4, True, False))
    assert cert.budget == 14.0 and [c.constrained_norm for c in cert.per_channel] == [14, 16]
    assert [c.passed for c in cert.per_channel] == [True, False]


def test_shipped_intact():
    assert not pk._shipped_intact(Path("/nonexistent/x"), {"sha256": "0"})


def test_package_run_refusals(tmp_path):
    folder = rf.RunFolder(tmp_path / "none")
    with pytest.raises(pk.PackageError, match=exact(f"{folder.root} is not an a2qflow run folder (no run.json)")):
        pk.package_run(folder)
    folder = _hw_run(tmp_path / "nob", board=None)
    with pytest.raises(pk.PackageError, match=exact(f"{folder.root}: run.json names no board; pass the board")):
        pk.package_run(folder.root)
    folder = _hw_run(tmp_path / "running", status="running")
    with pytest.raises(pk.PackageError, match=exact(f"run {folder.root} is not complete (status 'running'); finish "
                                                    "the build first")):
        pk.package_run(str(folder.root))
    _ref(4).save(folder.reference)
    pkg = pk.package_run(folder.root, require_complete=False, max_samples=2)
    assert json.loads((pkg / "manifest.json").read_text())["test_set"]["samples"] == 2
    with pytest.raises(pk.PackageError, match=exact(f"run {folder.root} was built for Pynq-Z2, not ZCU104")):
        pk.package_run(folder.root, "ZCU104", require_complete=False)
    folder = _hw_run(tmp_path / "done")
    _ref(2).save(folder.reference)
    assert json.loads((pk.package_run(folder, "Pynq-Z2") / "manifest.json").read_text())["board"] == "Pynq-Z2"


def test_swap_in_replaces_the_old_package_whole(tmp_path):
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "new").write_text("n")
    assert pk._swap_in(tmp_path / "tmp", tmp_path / "package") == tmp_path / "package"
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "newer").write_text("n")
    pk._swap_in(tmp_path / "tmp", tmp_path / "package")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["package", "package/newer"]


def test_listing_skips_the_manifest_and_caches(tmp_path):
    for rel in ("a.txt", "manifest.json", "c/__pycache__/x.pyc", "c/d.py", "sub/manifest.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert sorted(pk._listing(tmp_path)) == ["a.txt", "c/d.py"]


def test_accelerator_sources_and_copy(tmp_path):
    folder = _hw_run(tmp_path / "run")
    assert pk.accelerator_sources(folder) == {}
    design = folder.accelerator / "design"
    (design / "obj").mkdir(parents=True)
    (design / "obj" / "Vtop").write_bytes(b"bin")
    assert pk.accelerator_sources(folder) == {}                  # no design.json
    (design / "design.json").write_text(json.dumps({"data": ["w0.dat"], "binary": "/abs/Vtop"}))
    (design / "w0.dat").write_text("w")
    src = pk.accelerator_sources(folder)
    assert src == {"sim/accelerator/Vtop": design / "obj" / "Vtop", "sim/accelerator/design.json": design / "design.json",
                   "sim/accelerator/w0.dat": design / "w0.dat"}
    (design / "obj" / "Vtop").chmod(0o755)
    folder.write_report("accelerator_sim.json", {"cycles_per_image": 10, "latency_cycles": 12})
    dest = tmp_path / "dest"
    dest.mkdir()
    assert pk._copy_accelerator(folder, dest) == {"accelerator_sim": {
        "dir": "sim/accelerator", "tool": "Verilator", "cycles_per_image": 10, "latency_cycles": 12}}
    assert json.loads((dest / "sim/accelerator/design.json").read_text()) == {"data": ["w0.dat"], "binary": "Vtop"}
    assert os.access(dest / "sim/accelerator/Vtop", os.X_OK)
    assert (design / "obj" / "Vtop").read_bytes() == b"bin"
    folder.report("accelerator_sim.json").unlink()               # simulator built, not measured (yet)
    assert pk._copy_accelerator(folder, tmp_path / "dest2") == {"accelerator_sim": {
        "dir": "sim/accelerator", "tool": "Verilator", "cycles_per_image": None, "latency_cycles": None}}
    pkg = pk.write_package(folder, "Pynq-Z2", _ref(2))
    assert pk.package_is_current(folder)
    (design / "w0.dat").write_text("w2")
    assert not pk.package_is_current(folder)                     # a weight file of the simulator changed
    shutil_rm = __import__("shutil").rmtree
    shutil_rm(folder.accelerator)
    assert not pk.package_is_current(folder)                     # the package has a simulator, the run none
    assert sorted(json.loads((pkg / "manifest.json").read_text())["files"]).count("sim/accelerator/Vtop") == 1


def test_copy_driver_reports_runtime_weights(tmp_path):
    folder = _hw_run(tmp_path / "run")
    (folder.finn / "driver" / "runtime_weights").mkdir()
    dest = tmp_path / "d1"
    dest.mkdir()
    assert pk._copy_driver(folder, None, None, dest)["runtime_weights"] is None      # empty folder
    (folder.finn / "driver" / "runtime_weights" / "0.dat").write_text("1")
    dest = tmp_path / "d2"
    dest.mkdir()
    assert pk._copy_driver(folder, None, None, dest)["runtime_weights"] == "driver/runtime_weights"
    calls = []
    monkey = pk.make_driver_settings
    try:
        pk.make_driver_settings = lambda *a: calls.append(a) or (a[2].mkdir(parents=True))
        folder = _hw_run(tmp_path / "run2", driver=False)
        dest = tmp_path / "d3"
        dest.mkdir()
        got = pk._copy_driver(folder, "B", Path("g.onnx"), dest)
        assert calls == [(Path("g.onnx"), "B", dest / "driver", folder.finn_tmp)]
        assert got == {"settings": "driver/settings.json", "settings_source": "finn-plus MakePYNQDriver, run by a2qflow "
                       "on the final HW graph after FINN's IODMA insertion", "runtime_weights": None}
    finally:
        pk.make_driver_settings = monkey


def _fake_ssh(monkeypatch, answers):
    """subprocess.run of the board module answered from `answers` (first word of the remote
    command or 'scp-to'/'scp-from' -> (returncode, stdout, stderr)); scp from the board brings
    a bench.json back. Like subprocess.run, the output comes back only when captured, and as
    text only with text=True."""
    calls = []

    def run(cmd, capture_output=False, text=False, timeout=None):
        calls.append((cmd, timeout))
        if cmd[0] == "scp":
            key = "scp-from" if ":" in cmd[-2] else "scp-to"
            rc, out, err = answers.get(key, (0, "", ""))
            if key == "scp-from" and rc == 0:
                (Path(cmd[-1]) / "reports").mkdir()
                (Path(cmd[-1]) / "reports" / "bench.json").write_text("{}")
                (Path(cmd[-1]) / "reports" / "other.json").write_text("{}")
        else:
            word = "prepare" if cmd[-1].startswith("d=") else cmd[-1].split(" -m a2qflow_deploy ")[1].split()[0]
            rc, out, err = answers.get(word, (0, f"{word} ok\n", ""))
        if not capture_output:
            out = err = None
        elif not text:
            out, err = out.encode(), err.encode()
        return subprocess.CompletedProcess(cmd, rc, out, err)

    monkeypatch.setattr(hb.subprocess, "run", run)
    monkeypatch.setattr(hb.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return calls


def _deploy_setup(tmp_path, monkeypatch, **fields):
    folder = rf.RunFolder(tmp_path / "myrun")
    folder.write_run({"status": "complete"})
    pkg = folder.package
    _package(pkg, {"driver/settings.json": b"{}", "bitfile/a.bit": b"bit"}, **{"bitfile": "bitfile/a.bit", **fields})

    def ensure_package(f, log):             # packages this run, logging through the caller's log
        assert f is folder and callable(log)
        return pkg

    monkeypatch.setattr(hb, "ensure_package", ensure_package)
    return folder, pkg


def test_deploy_with_fake_ssh_copies_checks_benches_and_brings_the_report_back(tmp_path, monkeypatch):
    folder, pkg = _deploy_setup(tmp_path, monkeypatch)
    calls = _fake_ssh(monkeypatch, {})
    logs = []
    cfg = hb.DeployConfig(hb.SshTarget("xilinx@b"), bench=True, bench_args=hb.BenchArgs(board="Pynq-Z2", repeats=2))
    assert hb.deploy(folder, cfg, log=logs.append) == 0
    remote = [c[0][-1] for c in calls if c[0][0] == "ssh"]
    assert remote[0] == hb.prepare_remote_command("a2qflow/myrun")
    assert remote[1:] == ["cd a2qflow/myrun && PYTHONDONTWRITEBYTECODE=1 python3 -m a2qflow_deploy check --board Pynq-Z2",
                          "cd a2qflow/myrun && PYTHONDONTWRITEBYTECODE=1 python3 -m a2qflow_deploy bench --board "
                          "Pynq-Z2 --repeats 2"]
    assert [c[1] for c in calls] == [300.0, 900.0, 300.0, 7200.0, 900.0]
    scp_to = calls[1][0]
    assert scp_to[-1] == "xilinx@b:a2qflow/myrun/" and [Path(p).name for p in scp_to[-5:-1]] == [
        hb.REMOTE_MARK, "bitfile", "driver", "manifest.json"]
    assert calls[4][0][-2] == "xilinx@b:a2qflow/myrun/reports"
    board_reports = folder.report("board")
    assert logs == [f"copied {pkg} to xilinx@b:a2qflow/myrun", "check ok", f"report brought back: {board_reports}"]
    assert sorted(p.name for p in board_reports.iterdir()) == ["bench.json"]


def test_deploy_with_fake_ssh_without_bench_and_to_a_simulated_board(tmp_path, monkeypatch):
    folder, pkg = _deploy_setup(tmp_path, monkeypatch, bitfile=None, no_bitfile_reason="oss flow")
    calls = _fake_ssh(monkeypatch, {"bench": (2, "", "")})
    with pytest.raises(hb.BoardError, match=exact(
            f"{pkg} is sim-only (oss flow): nothing a board can run. Build with `a2qflow build --flow bitstream` on "
            "a machine with Vivado, or pass --sim")):
        hb.deploy(folder, hb.DeployConfig(hb.SshTarget("h")), log=lambda s: None)
    assert calls == []
    logs = []
    cfg = hb.DeployConfig(hb.SshTarget("h"), remote_dir="x/y", python="py3", sim=True)
    assert hb.deploy(folder, cfg, log=logs.append) == 0
    assert [c[0][-1] for c in calls][1:] == ["h:x/y/", "cd x/y && PYTHONDONTWRITEBYTECODE=1 py3 -m a2qflow_deploy check --sim"]
    cfg.bench = True
    assert hb.deploy(folder, cfg, log=logs.append) == 2
    assert calls[-2][0][-1] == "cd x/y && PYTHONDONTWRITEBYTECODE=1 py3 -m a2qflow_deploy bench --sim"
    assert logs[-1] == f"report brought back: {folder.report('board-sim')}"


def test_deploy_refusals(tmp_path, monkeypatch):
    folder, pkg = _deploy_setup(tmp_path, monkeypatch)
    calls = _fake_ssh(monkeypatch, {"prepare": (3, "", "A2QFLOW-REFUSED: x\n")})
    cfg = hb.DeployConfig(hb.SshTarget("h"))
    with pytest.raises(hb.BoardError, match=exact("h:a2qflow/myrun exists and was not created by a2qflow deploy; give "
                                                  "another --remote-dir (nothing was changed there)")):
        hb.deploy(folder, cfg, log=lambda s: None)
    assert len(calls) == 1
    _fake_ssh(monkeypatch, {"prepare": (3, "", "other\n")})
    with pytest.raises(hb.BoardError, match=exact("ssh h failed (exit 3): other")):
        hb.deploy(folder, cfg, log=lambda s: None)
    _fake_ssh(monkeypatch, {"prepare": (255, "", "")})
    with pytest.raises(hb.BoardError, match=exact("ssh h failed (exit 255): ")):
        hb.deploy(folder, cfg, log=lambda s: None)
    _fake_ssh(monkeypatch, {"check": (1, "", "bad checksum\n")})
    with pytest.raises(hb.BoardError, match=exact("check on h failed (exit 1): bad checksum")):
        hb.deploy(folder, cfg, log=lambda s: None)
    _fake_ssh(monkeypatch, {"scp-to": (1, "", "disk full\n")})
    with pytest.raises(hb.BoardError, match=exact("scp to h failed (exit 1): disk full")):
        hb.deploy(folder, cfg, log=lambda s: None)
    (pkg / "driver/settings.json").write_text("{ }")
    with pytest.raises(hb.BoardError, match=r"damaged; checksum mismatch \(corrupt or edited\): driver/settings\.json"):
        hb.deploy(folder, cfg, log=lambda s: None)
    with pytest.raises(hb.BoardError, match=r"^--remote-dir '\.\./x'"):
        hb.deploy(folder, hb.DeployConfig(hb.SshTarget("h"), remote_dir="../x"), log=lambda s: None)
    with pytest.raises(hb.BoardError, match=r"^--repeats 0"):
        hb.deploy(folder, hb.DeployConfig(hb.SshTarget("h"), bench_args=hb.BenchArgs(repeats=0)), log=lambda s: None)
    folder.run_json.unlink()
    with pytest.raises(hb.BoardError, match=exact(f"{folder.root} is not an a2qflow run folder (no run.json)")):
        hb.deploy(folder, cfg, log=lambda s: None)
    monkeypatch.setattr(hb.shutil, "which", lambda tool: None if tool == "scp" else "/bin/ssh")
    with pytest.raises(hb.BoardError, match=exact("scp not found: install the OpenSSH client")):
        hb.deploy(folder, cfg, log=lambda s: None)
    monkeypatch.setattr(hb.shutil, "which", lambda tool: None if tool == "ssh" else "/bin/scp")
    with pytest.raises(hb.BoardError, match=exact("ssh not found: install the OpenSSH client")):
        hb.deploy(folder, cfg, log=lambda s: None)


def test_deploy_says_when_the_bench_does_not_answer_or_leaves_no_report(tmp_path, monkeypatch):
    folder, pkg = _deploy_setup(tmp_path, monkeypatch)
    _fake_ssh(monkeypatch, {"scp-from": (1, "", "no such file\n")})
    logs = []
    cfg = hb.DeployConfig(hb.SshTarget("h"), bench=True)
    assert hb.deploy(folder, cfg, log=logs.append) == 0
    assert logs[-1] == "no benchmark report to bring back (no such file)"
    fake = hb.subprocess.run

    def bench_hangs(cmd, **kw):
        if cmd[0] == "ssh" and " bench" in cmd[-1]:
            raise subprocess.TimeoutExpired(cmd, kw["timeout"])
        return fake(cmd, **kw)

    monkeypatch.setattr(hb.subprocess, "run", bench_hangs)
    with pytest.raises(hb.BoardError, match=exact("bench on h: no answer within 7200 s")):
        hb.deploy(folder, cfg, log=logs.append)


def test_fetch_reports_says_why_nothing_came_back(tmp_path, monkeypatch):
    _fake_ssh(monkeypatch, {"scp-from": (1, "", "no such file\n")})
    logs = []
    assert hb._fetch_reports(hb.SshTarget("h"), "d", tmp_path / "out", logs.append) is None
    assert logs == ["no benchmark report to bring back (no such file)"] and not (tmp_path / "out").exists()

    def timeout(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, 1)

    monkeypatch.setattr(hb.subprocess, "run", timeout)
    assert hb._fetch_reports(hb.SshTarget("h"), "d", tmp_path / "out", logs.append) is None
    assert logs[-1] == "no benchmark report brought back: the copy timed out"
    monkeypatch.setattr(hb.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "", ""))
    assert hb._fetch_reports(hb.SshTarget("h"), "d", tmp_path / "out", logs.append) is None
    assert logs[-1] == "no benchmark report to bring back (none written)"
    _fake_ssh(monkeypatch, {})
    assert hb._fetch_reports(hb.SshTarget("h"), "d", tmp_path / "out", logs.append) == tmp_path / "out"
    (tmp_path / "out" / "bench.json").write_text("old")                  # a later bench: same folder again
    assert hb._fetch_reports(hb.SshTarget("h"), "d", tmp_path / "out", logs.append) == tmp_path / "out"
    assert (tmp_path / "out" / "bench.json").read_text() == "{}"


def test_bench_sim_runs_the_packages_own_code(tmp_path, monkeypatch):
    folder, pkg = _deploy_setup(tmp_path, monkeypatch)
    seen = []

    class Proc:
        def __init__(self, cmd, cwd):
            seen.append((cmd, cwd))

        def wait(self, timeout=None):
            return 7

    monkeypatch.setattr(hb.subprocess, "Popen", Proc)
    assert hb.bench_sim(folder, hb.BenchArgs(repeats=3), log=lambda s: None) == 7
    (cmd, cwd), = seen
    assert cwd == pkg
    assert cmd[1:] == ["-m", "a2qflow_deploy", "bench", "--sim", "--out", str(folder.report("bench-sim").resolve()),
                       "--repeats", "3"]
    assert hb.bench_sim(folder, hb.BenchArgs(), out=tmp_path / "o", log=lambda s: None) == 7
    assert seen[-1][0][-2:] == ["--out", str((tmp_path / "o").resolve())]
    folder.run_json.unlink()
    with pytest.raises(hb.BoardError, match=exact(f"{folder.root} is not an a2qflow run folder (no run.json)")):
        hb.bench_sim(folder, hb.BenchArgs())
    with pytest.raises(hb.BoardError, match="--latency-runs 0"):
        hb.bench_sim(folder, hb.BenchArgs(latency_runs=0))


def test_bench_sim_stops_the_child_when_interrupted(tmp_path, monkeypatch):
    """Ctrl-C while the simulated bench runs: the child is terminated and waited for at most
    30 s, then the interrupt goes on."""
    folder, pkg = _deploy_setup(tmp_path, monkeypatch)
    events = []

    class Proc:
        def __init__(self, cmd, cwd):
            pass

        def wait(self, timeout=None):
            events.append(("wait", timeout))
            if len(events) == 1:
                raise KeyboardInterrupt
            return -15

        def terminate(self):
            events.append(("terminate",))

    monkeypatch.setattr(hb.subprocess, "Popen", Proc)
    with pytest.raises(KeyboardInterrupt):
        hb.bench_sim(folder, hb.BenchArgs(), log=lambda s: None)
    assert events == [("wait", None), ("terminate",), ("wait", 30)]


def test_save_layer_inputs_keeps_each_nodes_exact_accumulator_values(tmp_path):
    model = mvau(W0.T.copy(), acc="INT9")
    node = model.graph.node[0]
    node.op_type, node.domain = "MVAU", "finn.custom_op.fpgadataflow"    # python-executable HW layer
    x = np.array([[15, 0, 15, 0], [1, 2, 3, 4]], dtype=np.float32)
    ov.save_layer_inputs(model, x, tmp_path / "r" / "s" / "acc.npz")
    data = dict(np.load(tmp_path / "r" / "s" / "acc.npz"))
    assert list(data) == ["0"] and data["0"].dtype == np.int64
    assert data["0"].tolist() == [60, 0, 2, 0]        # [3,-2,1,0].x and [-7,7,7,-7].x per sample


def test_save_layer_inputs_reads_inner_nodes_and_rewrites_an_existing_folder(tmp_path):
    """The accumulator values of a layer inside the graph (not its output) are kept, and saving
    again into the same folder (a rerun) replaces the file."""
    from onnx import helper

    model = mvau(W0.T.copy(), acc="INT9")
    node = model.graph.node[0]
    node.op_type, node.domain = "MVAU", "finn.custom_op.fpgadataflow"
    node.output[0] = "acc"
    model.graph.node.append(helper.make_node("Relu", ["acc"], ["out"], name="relu"))
    model.set_tensor_shape("acc", [1, 2])
    path = tmp_path / "r" / "acc.npz"
    ov.save_layer_inputs(model, np.array([[15, 0, 15, 0]], dtype=np.float32), path)
    assert dict(np.load(path))["0"].tolist() == [60, 0]
    ov.save_layer_inputs(model, np.array([[1, 2, 3, 4]], dtype=np.float32), path)
    assert dict(np.load(path))["0"].tolist() == [2, 0]
