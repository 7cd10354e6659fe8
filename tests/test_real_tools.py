"""What this suite's fakes cannot prove, run on the real tools where they exist: a bitstream
built by Vivado and Vitis HLS, and the benchmark on a real PYNQ board. Each test runs the real
thing when it is there and otherwise skips, saying what it needs. The `..._fake_...` tests
elsewhere check the wiring (steps, files, the ssh protocol); these check that the tools and
the board accept it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from a2qflow.build_flows import finn_env
from a2qflow.cli import main


@pytest.mark.vivado
@pytest.mark.slow
@pytest.mark.skipif(not finn_env.xilinx_tools_available(),
                    reason="needs Vivado and Vitis HLS (XILINX_VIVADO set, vivado and vitis_hls on PATH)")
def test_bitstream_build_with_vivado_packages_the_bitfile(tfc_a2qplus_onnx, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["build", "--onnx", str(tfc_a2qplus_onnx), "--flow", "bitstream",
                                       "--board", "Pynq-Z2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["flow"] == "bitstream" and run["skipped"] == []
    manifest = json.loads((out / "package" / "manifest.json").read_text())
    assert manifest["bitfile"] == "bitfile/finn-accel.bit" and not manifest["sim_only"]
    assert (out / "package" / "bitfile" / "finn-accel.hwh").is_file()
    sizing = json.loads((out / "reports" / "step_a2qflow_size_accumulators.json").read_text())
    assert all(s["acc"] == f"INT{s['acc_bits']}" for s in sizing)     # Vivado built the certified widths


@pytest.mark.board
def test_benchmark_on_a_real_board_matches_the_host_model():
    host, run = os.environ.get("A2QFLOW_BOARD_HOST"), os.environ.get("A2QFLOW_BOARD_RUN")
    if not host or not run:
        pytest.skip("needs a PYNQ board: set A2QFLOW_BOARD_HOST (ssh destination, e.g. xilinx@pynq) and "
                    "A2QFLOW_BOARD_RUN (a run folder built with --flow bitstream for that board)")
    python = os.environ.get("A2QFLOW_BOARD_PYTHON", "sudo -E /usr/local/share/pynq-venv/bin/python3")
    result = CliRunner().invoke(main, ["deploy", "--run", run, "--host", host, "--bench", "--python", python])
    assert result.exit_code == 0, result.output
    bench = json.loads((Path(run) / "reports" / "board" / "bench.json").read_text())
    assert bench["status"] == "complete" and not bench["simulated"]
    assert bench["accuracy"]["host_mismatches"] == 0 and bench["throughput"]
