"""FINN build flow: accumulators sized to the certified P, refusals, plain-FINN graphs,
the overflow check's ability to fail, and the Vivado branch's wiring."""
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.build_flows import finn_env, flow, overflow, reference
from a2qflow.build_flows.config import BuildConfig, ConfigError
from a2qflow.build_flows.flow import build
from a2qflow.build_flows.reference import Reference
from a2qflow.build_flows.run_folder import RunFolder
from a2qflow.build_flows.sizing import dot_product_nodes
from a2qflow.cli import main
from a2qflow.hw_configs import UnknownBoardError
from a2qflow.models.certificate import CertificateError

from test_export import _tamper


@pytest.fixture(scope="module")
def tfc_build(tfc_a2qplus, tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    run = build(str(_exported(tfc_a2qplus, out)), out / "run", reference.from_checkpoint(tfc_a2qplus, 16),
                BuildConfig(board="Pynq-Z2", flow="estimate", model_name="tfc", package=False))
    return out / "run", run


def _exported(ckpt, out):
    from a2qflow.models.export import export_checkpoint

    return export_checkpoint(ckpt, out / "export" / "model.onnx", samples=32)[0]


def _final(run_dir):
    return ModelWrapper(str(run_dir / "finn" / "intermediate_models" / "step_generate_estimate_reports.onnx"))


def test_sizing_sets_exactly_the_guaranteed_p(tfc_build):
    run_dir, run = tfc_build
    assert run["status"] == "complete" and run["flow"] == "estimate" and run["a2qflow_graph"]
    cert = {layer["name"]: layer for layer in json.loads((run_dir / "reports" / "certificate.json").read_text())["layers"]}
    nodes = dot_product_nodes(_final(run_dir))
    sizing = {s["node"]: s for s in json.loads((run_dir / "reports" / "step_a2qflow_size_accumulators.json").read_text())}
    assert len(nodes) == len(cert) == 4
    for node in nodes:
        layer = sizing[node.name]["layer"]
        assert cert[layer]["acc_bits"] < cert[layer]["datatype_bits"]
        assert getCustomOp(node).get_nodeattr("accDataType") == f"INT{cert[layer]['acc_bits']}"
    # every stage that can run in python matched the trained model
    parity = json.loads((run_dir / "reports" / "parity.json").read_text())
    assert [p["stage"] for p in parity] == ["step_qonnx_to_finn", "step_a2qflow_integer_input", "step_tidy_up", "step_streamline",
                                            "step_convert_to_hw", "step_a2qflow_size_accumulators_initial"]
    assert all(p["passed"] and p["argmax_agreement"] == 1.0 for p in parity)
    rows = json.loads((run_dir / "reports" / "layers.json").read_text())["layers"]
    assert all(r["worst_case_wraps"] == 0 and r["data_wraps"] == 0 for r in rows)
    assert (run_dir / "reports" / "layers.csv").read_text().count("\n") == 5
    assert "Skipped stages" in (run_dir / "reports" / "summary.md").read_text()
    assert set(run["time_per_step"]) >= {"step_a2qflow_size_accumulators", "step_a2qflow_check_overflow"}


def test_overflow_check_finds_the_wrap_at_p_minus_1(tfc_build):
    run_dir, _ = tfc_build
    results = json.loads((run_dir / "reports" / "overflow.json").read_text())
    assert all(r["worst_case_wraps"] == 0 for r in results)
    # the trained fc layers use their budget up to the last bit: P-1 wraps on some channel
    assert any(r["worst_case_wraps_at_p_minus_1"] > 0 for r in results)
    # and the check itself raises once a node is one bit short
    model = _final(run_dir)
    tight = [n for n in dot_product_nodes(model) if overflow.check_node(model, n, None)["worst_case_wraps_at_p_minus_1"]]
    assert tight
    inst = getCustomOp(tight[0])
    overflow.raise_on_wrap([overflow.check_node(model, tight[0], None)])   # at P: no wrap, no error
    inst.set_nodeattr("accDataType", f"INT{DataType[inst.get_nodeattr('accDataType')].bitwidth() - 1}")
    with pytest.raises(overflow.AccumulatorOverflow, match=tight[0].name):
        overflow.raise_on_wrap([overflow.check_node(model, tight[0], None)])


def test_runtime_writeable_weights_get_the_guaranteed_p(tfc_a2qplus, tmp_path):
    run = build(str(_exported(tfc_a2qplus, tmp_path)), tmp_path / "run", reference.from_checkpoint(tfc_a2qplus, 8),
                BuildConfig(flow="estimate", runtime_weights=True, package=False))
    sizing = json.loads((tmp_path / "run" / "reports" / "step_a2qflow_size_accumulators.json").read_text())
    for s in sizing:
        assert s["runtime_writeable"]
        # FINN falls back to the datatype worst case (rounded up to a byte on the graph's output
        # layer); the certificate's P is smaller
        finn_bits = s["datatype_bits"] if s is not sizing[-1] else -(-s["datatype_bits"] // 8) * 8
        assert s["finn_acc"] == f"INT{finn_bits}" and s["acc"] == f"INT{s['acc_bits']}"
        assert s["acc_bits"] < s["datatype_bits"]
    assert run["status"] == "complete"


def test_tampered_weights_are_refused_before_the_build_touches_anything(tfc_a2qplus_onnx, tmp_path):
    _tamper(tfc_a2qplus_onnx, tmp_path / "bad.onnx", layer="fc.2", channel=7)
    ref = Reference(np.zeros((2, 64), np.float32), np.zeros((2, 10), np.float32), True, "zeros")
    run_dir = tmp_path / "run"
    RunFolder(run_dir).write_run({"status": "complete", "files": []})   # an earlier build
    before = (run_dir / "run.json").read_bytes()
    with pytest.raises(CertificateError, match=r"layer fc\.2, channel 7"):
        build(str(tmp_path / "bad.onnx"), run_dir, ref, BuildConfig(flow="estimate", package=False))
    assert (run_dir / "run.json").read_bytes() == before and sorted(p.name for p in run_dir.iterdir()) == ["run.json"]
    result = CliRunner().invoke(main, ["build", "--onnx", str(tmp_path / "bad.onnx"), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 1 and "layer fc.2, channel 7" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r2").exists()


def test_plain_finn_graph_builds_with_value_based_widths(tfc_a2qplus_onnx, tmp_path):
    graph = ModelWrapper(str(tfc_a2qplus_onnx))
    graph.graph.ClearField("metadata_props")
    graph.save(str(tmp_path / "plain.onnx"))
    ref = reference.from_graph(ModelWrapper(str(tmp_path / "plain.onnx")), 8)
    assert "digits test split" not in ref.source and "input quantizer's grid" in ref.source
    assert ref.x.min() == 0 and np.allclose(ref.x.max(), 15 * ref.x[ref.x > 0].min())   # UINT4 codes x scale
    run = build(str(tmp_path / "plain.onnx"), tmp_path / "run", ref, BuildConfig(flow="estimate", package=False))
    assert not run["a2qflow_graph"]
    sizing = json.loads((tmp_path / "run" / "reports" / "step_a2qflow_size_accumulators.json").read_text())
    assert sizing and all(s["layer"] is None and s["acc"] == f"INT{s['value_bits']}" for s in sizing)
    assert "Plain FINN graph" in (tmp_path / "run" / "reports" / "summary.md").read_text()
    # weights written at run time and no guarantee: only the datatypes bound the sum
    build(str(tmp_path / "plain.onnx"), tmp_path / "rtw", ref, BuildConfig(flow="estimate", package=False,
                                                                           runtime_weights=True))
    sizing = json.loads((tmp_path / "rtw" / "reports" / "step_a2qflow_size_accumulators.json").read_text())
    assert all(s["acc"] == f"INT{s['datatype_bits']}" and s["value_bits"] < s["datatype_bits"] for s in sizing)
    with pytest.raises(ConfigError, match="runtime-writeable weights"):
        build(str(tmp_path / "plain.onnx"), tmp_path / "rtw2", ref,
              BuildConfig(flow="estimate", sizing="value", runtime_weights=True))


def test_value_sizing_option_uses_value_based_width(tfc_a2qplus, tmp_path):
    build(str(_exported(tfc_a2qplus, tmp_path)), tmp_path / "run", reference.from_checkpoint(tfc_a2qplus, 8),
          BuildConfig(flow="estimate", sizing="value", package=False))
    for s in json.loads((tmp_path / "run" / "reports" / "step_a2qflow_size_accumulators.json").read_text()):
        assert s["acc"] == f"INT{s['value_bits']}" and s["value_bits"] <= s["acc_bits"]


def test_resume_from_step(tfc_build):
    run_dir, first = tfc_build
    ref = Reference.load(run_dir / "reference")
    (run_dir / "reports" / "overflow.json").unlink()
    run = build(str(run_dir / "model.qonnx"), run_dir, ref,
                BuildConfig(flow="estimate", from_step="step_a2qflow_size_accumulators", package=False))
    assert run["status"] == "complete" and run["from_step"] == "step_a2qflow_size_accumulators"
    assert "step_streamline" not in run["time_per_step"]
    assert json.loads((run_dir / "reports" / "overflow.json").read_text())   # rewritten by the resumed step



def test_fresh_build_into_a_used_folder_deletes_only_what_the_last_run_recorded(tfc_build, tmp_path):
    run_dir, _ = tfc_build
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("finn_tmp"))
    stale = out / "reports" / "synth.json"   # e.g. left by an interrupted oss run: not in the manifest
    stale.write_text(json.dumps({"layers": [], "total": None, "skipped": [], "tool": "Yosys 0.99"}))
    os.utime(stale, (1, 1))
    (out / "reports" / "notes.txt").write_text("mine")            # the user's files stay
    (out / "finn" / "keep.txt").write_text("mine too")
    recorded = RunFolder(out).recorded_files()
    assert "reports/summary.md" in recorded and "finn/report/estimate_layer_resources.json" in recorded
    ref = Reference.load(out / "reference")
    run = build(str(out / "model.qonnx"), out, ref, BuildConfig(flow="estimate", package=False))  # its own input
    assert run["status"] == "complete"
    assert (out / "reports" / "notes.txt").read_text() == "mine" and (out / "finn" / "keep.txt").read_text() == "mine too"
    assert "reports/notes.txt" not in run["files"] and "reports/synth.json" not in run["files"]
    assert "Yosys 0.99" not in (out / "reports" / "summary.md").read_text()   # a leftover is never read as this run's
    assert set(run["files"]) >= {"reports/summary.md", "finn/intermediate_models/step_tidy_up.onnx"}
    assert (out / "model.qonnx").is_file()   # the input of this build, though an earlier build wrote it


def test_unknown_board_lists_valid_ones(tmp_path):
    result = CliRunner().invoke(main, ["build", "--board", "Pynq-Z9", "--out", str(tmp_path)])
    assert result.exit_code == 2
    for name in ("Pynq-Z1", "Pynq-Z2", "Ultra96-V2", "ZCU104", "KV260_SOM", "AUP-ZU3_8GB"):
        assert name in result.output
    with pytest.raises(UnknownBoardError):
        build(str(tmp_path / "x.onnx"), tmp_path, None, BuildConfig(board="nope"))


def test_corrupt_onnx_gets_a_clear_error(tmp_path):
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00\x01 definitely not onnx" * 20)
    result = CliRunner().invoke(main, ["build", "--onnx", str(tmp_path / "corrupt.onnx"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "corrupt.onnx is not a readable ONNX model" in result.output
    result = CliRunner().invoke(main, ["build", "--onnx", str(tmp_path / "absent.onnx"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "absent.onnx: no such ONNX file" in result.output


def test_without_vivado_auto_is_oss_and_names_every_skipped_stage(monkeypatch):
    monkeypatch.setattr(finn_env, "xilinx_tools_available", lambda: False)
    monkeypatch.setattr(finn_env, "vivado_available", lambda: False)
    monkeypatch.setattr(finn_env, "vitis_hls_available", lambda: False)
    resolved, skipped = flow.resolve_flow("auto")
    assert resolved == "oss" and [s.split(":")[0] for s in skipped] == list(flow.BITSTREAM_STEPS)
    assert all("XILINX_VIVADO unset, vitis_hls missing" in s for s in skipped)
    assert "package/ is written without a bitfile" in skipped[-1]
    with pytest.raises(flow.BuildError, match="--flow bitstream needs Vivado"):
        flow.resolve_flow("bitstream")


def test_fake_vivado_selects_finns_bitstream_steps_wiring_only(tfc_a2qplus, monkeypatch, tmp_path):
    """Without Vivado we cannot run it, but the wiring is checked: with the tools present,
    auto selects the bitstream flow with FINN's synthesis, driver and deployment steps and
    outputs, after a2qflow's sizing and overflow steps."""
    monkeypatch.setattr(finn_env, "xilinx_tools_available", lambda: True)
    resolved, skipped = flow.resolve_flow("auto")
    assert (resolved, skipped) == ("bitstream", [])
    finn_env.prepare_finn(tmp_path / "finn_tmp")
    from finn.builder.build_dataflow_config import DataflowOutputType

    steps = flow.step_list("bitstream")
    names = flow.step_names(steps)
    oss = ["step_a2qflow_oss_synthesis", "step_a2qflow_rtl_simulation", "step_a2qflow_accelerator_simulation"]
    assert names[-len(flow.BITSTREAM_STEPS) - len(oss):] == list(flow.BITSTREAM_STEPS) + oss   # Yosys beside Vivado
    assert names.index("step_a2qflow_size_accumulators") < names.index("step_a2qflow_check_overflow") \
        < names.index("step_generate_estimate_reports") < names.index("step_generate_hardware")
    assert names.index("step_minimize_bit_width") < names.index("step_a2qflow_size_accumulators")
    from a2qflow.hw_configs import get_board

    cfg = flow.dataflow_config(get_board("Pynq-Z2"), RunFolder(tmp_path), "bitstream", steps,
                               BuildConfig(model_name="tfc"), None, "finn")
    assert {DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
            DataflowOutputType.DEPLOYMENT_PACKAGE} <= set(cfg.generate_outputs)
    assert cfg.fpga_part == "xc7z020clg400-1" and cfg.board == "Pynq-Z2" and cfg.synth_clk_period_ns == 10.0
    assert cfg.standalone_thresholds and cfg.save_intermediate_models
    monkeypatch.setattr(finn_env, "xilinx_tools_available", lambda: False)
    assert flow.resolve_flow("auto")[0] == "oss"
    assert flow.step_names(flow.step_list("oss"))[-len(oss) - 1:] == ["step_generate_estimate_reports"] + oss
    assert not set(oss) & set(flow.step_names(flow.step_list("estimate")))
    names = flow.step_names(flow.step_list("oss"))
    assert names.index("step_a2qflow_prefer_rtl") == names.index("step_specialize_layers") - 1
    with pytest.raises(flow.BuildError, match="needs Vivado"):
        flow.resolve_flow("bitstream")


def test_shipped_folding_checked_against_the_graph(tfc_build):
    run_dir, _ = tfc_build
    folding = json.loads((run_dir / "reports" / "folding.json").read_text())
    assert folding["folding"] == "file" and folding["file"].endswith("tfc/Pynq-Z2.json") and not folding["user_given"]


def test_user_folding_that_does_not_fit_is_refused_naming_node(tfc_a2qplus_onnx, tmp_path):
    bad = tmp_path / "fold.json"
    bad.write_text(json.dumps({"Defaults": {}, "MVAU_rtl_0": {"PE": 7, "SIMD": 8}}))
    result = CliRunner().invoke(main, ["build", "--onnx", str(tfc_a2qplus_onnx), "--flow", "estimate",
                                       "--folding", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "folding config does not fit this graph" in result.output and "MVAU_rtl_0" in result.output
    assert "PE=7" in result.output and "fold.json" in result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_second_build_in_one_process_uses_its_own_finn_folder(tmp_path):
    from finn.util.basic import make_build_dir

    finn_env.prepare_finn(tmp_path / "a")
    finn_env.prepare_finn(tmp_path / "b")
    assert str(make_build_dir("x_")).startswith(str((tmp_path / "b").resolve()))


def test_report_regenerates_a_build_summary_and_refuses_failed_runs(tfc_build, tmp_path):
    from a2qflow.build_flows.regenerate import NotAResultFolder, regenerate

    run_dir, _ = tfc_build
    summary = run_dir / "reports" / "summary.md"
    before = summary.read_text()
    summary.unlink()
    assert regenerate(run_dir) == summary and summary.read_text() == before
    assert "<table>" in summary.with_suffix(".html").read_text()
    RunFolder(tmp_path / "f").write_run({"status": "failed", "error": "ParityError: x"})
    with pytest.raises(NotAResultFolder, match="status is 'failed'.*ParityError"):
        regenerate(tmp_path / "f")
    # a parent folder of runs is none of build, compare or sweep: refused, nothing written
    shutil.copytree(run_dir, tmp_path / "runs" / "a", ignore=shutil.ignore_patterns("finn", "finn_tmp"))
    before = sorted(p for p in (tmp_path / "runs").rglob("*"))
    result = CliRunner().invoke(main, ["report", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "not an a2qflow build, compare-acc or sweep folder" in result.output
    assert sorted(p for p in (tmp_path / "runs").rglob("*")) == before


def test_fake_vivado_report_sits_beside_yosys_in_the_synthesis_table(tmp_path):
    """With Vivado, FINN writes post_synth_resources.json per node; the report lists those
    rows next to Yosys' for the same layers, with a tool column."""
    from a2qflow.build_flows.report import synthesis_markdown, synthesis_rows

    (tmp_path / "reports").mkdir()
    (tmp_path / "finn" / "report").mkdir(parents=True)
    yosys = {"node": "MVAU_rtl_0", "acc_bits": 12, "lut": 646, "ff": 900, "carry": 30, "dsp": 8, "bram18": 0,
             "lutram": 134, "seconds": 9.0, "version": "Yosys 0.70 (git sha1 x)"}
    (tmp_path / "reports" / "synth.json").write_text(json.dumps({"layers": [yosys], "skipped": []}))
    (tmp_path / "finn" / "report" / "post_synth_resources.json").write_text(json.dumps(
        {"MVAU_rtl_0": {"LUT": 701.0, "FF": 950.0, "DSP": 8.0, "BRAM_18K": 0.0}}))
    rows = synthesis_rows(RunFolder(tmp_path))
    assert [(r["tool"], r["node"], r["LUT"]) for r in rows] == [("Yosys 0.70", "MVAU_rtl_0", 646),
                                                                 ("Vivado", "MVAU_rtl_0", 701.0)]
    text = "\n".join(synthesis_markdown(rows, []))
    assert "Yosys 0.70 total: 646 LUT" in text and "Vivado total: 701.0 LUT" in text
