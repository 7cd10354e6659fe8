"""compare-acc grids and Dask sweeps (build_flows.compare, build_flows.sweep).

The slow test runs real cells (train -> export -> FINN build -> Yosys) of a tiny TFC
(one hidden layer of 16) on digits: serially, then on a Dask LocalCluster."""
from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from click.testing import CliRunner

from a2qflow.build_flows import compare, sweep
from a2qflow.cli import main

TINY = {"model_kwargs": {"hidden": [16], "depth": 1}}


def test_parse_acc_bits():
    assert compare.parse_acc_bits("10:14") == (10, 11, 12, 13, 14)
    assert compare.parse_acc_bits("10:16:3") == (10, 13, 16)
    assert compare.parse_acc_bits("12,16") == (12, 16)
    for bad in ("", "x", "1:4", "10:20:2:1", "70", "12,,16"):
        with pytest.raises(ValueError, match="accumulator widths"):
            compare.parse_acc_bits(bad)


def test_grid_cells_have_baselines_for_qat_only():
    spec = compare.GridSpec(recipes=("qat", "a2q+"), acc_bits=(12, 14), seeds=(0, 1))
    cells = spec.cells()
    assert len(cells) == 2 * (2 + 2)
    assert {c.sizing for c in cells if c.recipe == "qat"} == {"int32", "value"}
    assert {c.acc_bits for c in cells if c.recipe == "a2q+"} == {12, 14}
    assert len({c.key for c in cells}) == len(cells)


def test_sweep_file_product_and_fields(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: tfc\ndataset: digits\nboard: [Pynq-Z2, ZCU104]\nrecipes: [a2q, a2q+]\n"
                    "acc_bits: '10:14:2'\nseeds: 2\nout: somewhere\n")
    specs, out = sweep.load_sweep(path)
    assert [s.board for s in specs] == ["Pynq-Z2", "ZCU104"] and str(out) == "somewhere"
    assert specs[0].acc_bits == (10, 12, 14) and specs[0].seeds == (0, 1) and specs[0].recipes == ("a2q", "a2q+")
    assert len(sweep.sweep_cells(specs)) == 2 * 2 * 3 * 2


@pytest.mark.parametrize("text, field", [("modle: tfc\n", "modle"), ("recipes: [a2q, a3q]\n", "recipes"),
                                         ("acc_bits: [12, x]\n", "acc_bits"), ("- a\n- b\n", "mapping")])
def test_bad_sweep_file_names_the_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(sweep.SweepFileError, match=field) as err:
        sweep.load_sweep(path)
    assert "bad.yaml" in str(err.value)


def test_cached_cell_is_reused_only_with_the_same_settings(tmp_path):
    spec = compare.GridSpec(recipes=("a2q+",), acc_bits=(12,))
    cell = spec.cells()[0]
    cell_dir = tmp_path / "cells" / cell.key
    cell_dir.mkdir(parents=True)
    cached = {"key": cell.key, "lut": 123, "unsynthesized": [],
              "settings": json.loads(json.dumps({n: getattr(spec, n) for n in compare.CELL_SETTINGS}))}
    (cell_dir / "result.json").write_text(json.dumps(cached))
    assert compare.attempt_cell(cell, spec, tmp_path) == {**cached, "status": "complete"}
    changed = compare.attempt_cell(cell, dataclasses.replace(spec, lut_only=True, qat_epochs=3), tmp_path)
    assert changed["status"] == "failed" and changed["error"].startswith("StaleCacheError")
    assert "lut_only: cached False, now True" in changed["error"] and "qat_epochs: cached 10, now 3" in changed["error"]
    assert json.loads((cell_dir / "result.json").read_text()) == cached   # kept, not overwritten


def test_summary_lists_failed_cells_and_headline(tmp_path):
    """Aggregation and the headline ratio from hand-made rows (no tools involved)."""
    base = {"model": "tfc", "dataset": "digits", "board": "Pynq-Z2", "seed": 0, "ff": 1, "dsp": 0, "tool": "Yosys"}
    rows = [{**base, "key": "i", "recipe": "qat", "acc_bits": None, "sizing": "int32", "accuracy": 97.0, "lut": 1000},
            {**base, "key": "a", "recipe": "a2q+", "acc_bits": 10, "sizing": "guaranteed", "accuracy": 80.0, "lut": 500},
            {**base, "key": "b", "recipe": "a2q+", "acc_bits": 12, "sizing": "guaranteed", "accuracy": 96.5, "lut": 600},
            {**base, "key": "c", "recipe": "a2q+", "acc_bits": 14, "sizing": "guaranteed", "accuracy": 97.0, "lut": 700},
            {**base, "key": "f", "recipe": "a2q", "acc_bits": 12, "sizing": "guaranteed", "status": "failed",
             "error": "DatasetError: nope"},
            {**base, "key": "h", "recipe": "a2q", "acc_bits": 8, "sizing": "guaranteed", "accuracy": 40.0, "lut": 90,
             "layers": [], "unsynthesized": ["MVAU_hls_0: HLS"]}]
    for r in rows[:4]:
        r["layers"] = [{"node": "MVAU_rtl_0", "lut": r["lut"] // 2}, {"node": "MVAU_rtl_1", "lut": r["lut"] // 2}]
    head = compare.write_outputs(rows, tmp_path)
    assert head["smallest_p"] == 12 and head["lut_ratio"] == pytest.approx(1000 / 600)
    summary = (tmp_path / "summary.md").read_text()
    assert "1.67x fewer" in summary and "1 cell(s) failed" in summary and "DatasetError: nope" in summary
    assert "1 cell(s) not comparable" in summary and "`h` (accuracy 40.00): MVAU_hls_0" in summary
    assert [r["key"] for r in csv.DictReader((tmp_path / "results.csv").open())] == ["i", "a", "b", "c"]
    for name in ("lut_vs_p", "accuracy_vs_p", "pareto"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000 and (tmp_path / f"{name}.svg").is_file()
    (tmp_path / "summary.md").unlink()
    (tmp_path / "summary.html").unlink()
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "summary.md").read_text() == summary
    assert "<table>" in (tmp_path / "summary.html").read_text()


@pytest.mark.slow
def test_dask_sweep_equals_serial_skips_finished_and_reports_failures(tmp_path):
    spec = compare.GridSpec(recipes=("a2q+",), acc_bits=(10, 14), float_epochs=2, qat_epochs=2,
                            train_kwargs=TINY)
    serial = compare.run_serial(spec.cells(), spec, tmp_path / "serial")
    assert len(serial) == 2
    assert all(r["status"] == "complete" for r in serial), serial
    head = compare.write_outputs(serial, tmp_path / "serial")
    assert (tmp_path / "serial" / "summary.md").is_file() and head == {}   # no INT32 baseline in this grid
    for r in serial:
        bits = [int(w.removeprefix("INT")) for w in r["acc_widths"].values()]
        assert r["lut"] > 0 and r["tool"].startswith("Yosys") and max(bits) == r["acc_bits"], (r["key"], bits)

    # the same cells and two that cannot run (mnist without its folder), through the CLI on Dask
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"dataset": ["digits", "mnist"], "recipes": ["a2q+"], "acc_bits": [10, 14],
                                "float_epochs": 2, "qat_epochs": 2, "train_kwargs": TINY}))   # JSON is YAML
    root = tmp_path / "dask"
    result = CliRunner().invoke(main, ["sweep", "--grid", str(grid), "--workers", "2", "--out", str(root)])
    assert result.exit_code == 1 and "2 cell(s) failed" in result.output, result.output   # the others are written
    rows = json.loads((root / "tfc-digits-Pynq-Z2" / "results.json").read_text())["cells"]
    finished = {p: p.stat().st_mtime_ns for p in root.glob("cells/*/result.json")}
    again = CliRunner().invoke(main, ["sweep", "--grid", str(grid), "--workers", "2", "--out", str(root)])
    assert again.exit_code == 1
    done = {r["key"]: r for r in rows if r["status"] == "complete"}
    assert len(done) == len(serial)
    for r in serial:
        d = done[r["key"]]
        assert (d["accuracy"], d["lut"], d["ff"], d["dsp"], d["acc_widths"]) == \
            (r["accuracy"], r["lut"], r["ff"], r["dsp"], r["acc_widths"])
    assert {p: p.stat().st_mtime_ns for p in root.glob("cells/*/result.json")
            if "-mnist-" not in p.parent.name} == \
        {p: t for p, t in finished.items() if "-mnist-" not in p.parent.name}   # skipped, not redone
    assert "tfc-digits-Pynq-Z2" in (root / "summary.md").read_text()
    failed = json.loads((root / "tfc-mnist-Pynq-Z2" / "results.json").read_text())["failed"]
    assert len(failed) == 2 and all("needs --data-dir" in r["error"] for r in failed)


@pytest.mark.slow
def test_runtime_weights_compare_guaranteed_p_with_finn_datatype_sizing(tmp_path):
    """MNIST-sized input (784 = K of the first layer): FINN must size runtime-writeable
    weights for any 4-bit weights (datatype bound), a2qflow for any weights within the
    trained bound (P). Same trained weights, so the same accuracy; fewer LUTs at P."""
    spec = compare.GridSpec(dataset="digits28", recipes=("a2q+",), acc_bits=(12,), float_epochs=2, qat_epochs=2,
                            runtime_weights=True, train_kwargs=TINY)
    assert [c.sizing for c in spec.cells()] == ["guaranteed", "runtime-guaranteed", "runtime-datatype"]
    rows = compare.run_serial(spec.cells(), spec, tmp_path)
    assert all(r["status"] == "complete" for r in rows), rows
    by = {r["sizing"]: r for r in rows}
    assert len({r["accuracy"] for r in rows}) == 1                       # one set of trained weights
    guaranteed, finn = by["runtime-guaranteed"]["widths"], by["runtime-datatype"]["widths"]
    first = guaranteed[0]
    assert first["fan_in"] == 784 and first["acc"] == "INT12" and first["datatype_bits"] > 12 + 3
    assert [w["acc"] for w in finn] == [f"INT{w['datatype_bits']}" for w in finn]
    assert all(int(w["acc"][3:]) <= 12 for w in guaranteed)
    assert by["runtime-datatype"]["lut"] > by["runtime-guaranteed"]["lut"]
    head = compare.write_outputs(rows, tmp_path)
    rt = head["runtime_weights"]
    assert rt["acc_bits"] == 12 and rt["lut_ratio"] == by["runtime-datatype"]["lut"] / by["runtime-guaranteed"]["lut"]
    summary = (tmp_path / "summary.md").read_text()
    assert "Runtime-writeable weights, a2q+ P=12" in summary and "| 784 | 12 |" in summary


@pytest.mark.slow
def test_compare_acc_command_trains_builds_synthesizes_and_reports(tmp_path):
    """The README's compare-acc, smallest settings: one a2q+ cell of the default TFC."""
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, ["compare-acc", "--recipes", "a2q+", "--acc-bits", "12", "--float-epochs", "1",
                                       "--qat-epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [(c["recipe"], c["acc_bits"], c["status"]) for c in cells] == [("a2q+", 12, "complete")]
    widths = {int(w.removeprefix("INT")) for w in cells[0]["acc_widths"].values()}
    assert max(widths) == 12 and cells[0]["lut"] > 0 and cells[0]["tool"].startswith("Yosys")
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert rows[0]["lut"] == str(cells[0]["lut"])                      # the CSV is the JSON's numbers
    assert (out / "lut_vs_p.png").stat().st_size > 0 and "a2q+" in (out / "summary.md").read_text()
