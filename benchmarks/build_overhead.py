"""Wall time of `a2qflow build --flow estimate` against FINN's bare estimate build, same ONNX.

For each model (TFC on digits, CNV on digits): train briefly, export, then in one process
run FINN's `build_dataflow_cfg` with its own `estimate_only_dataflow_steps` and a2qflow's
estimate flow on the same graph and board, alternating, `--repeats` times each. Reports
a2qflow's time with and without its checks (parity, overflow: measured inside the steps)
and the ratio to bare FINN. Target: overhead <= 1.2x bare FINN, checks excluded.

    python benchmarks/build_overhead.py [--models tfc,cnv] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def bare_finn(onnx: Path, out: Path, board) -> float:
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import (DataflowBuildConfig, DataflowOutputType,
                                                    estimate_only_dataflow_steps)

    cfg = DataflowBuildConfig(output_dir=str(out), synth_clk_period_ns=board.clk_ns, board=board.name,
                              fpga_part=board.part, generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
                              steps=list(estimate_only_dataflow_steps), target_fps=100_000,
                              standalone_thresholds=True, save_intermediate_models=True)
    stdout, stderr = sys.stdout, sys.stderr
    t0 = time.perf_counter()
    try:
        code = build_dataflow_cfg(str(onnx), cfg)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    if code != 0:
        raise RuntimeError(f"bare FINN build failed, see {out}/build_dataflow.log")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tfc,cnv")
    parser.add_argument("--board", default="Pynq-Z1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from a2qflow.build_flows import finn_env
    from a2qflow.build_flows.config import BuildConfig
    from a2qflow.build_flows.pipeline import PipelineConfig, run
    from a2qflow.hw_configs import get_board
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig

    board = get_board(args.board)
    work = Path(tempfile.mkdtemp(prefix="a2qflow-overhead-"))
    finn_env.prepare_finn(work / "finn_tmp")
    rows = []
    for model in args.models.split(","):
        build_cfg = BuildConfig(board=board.name, flow="estimate", target_fps=100_000, package=False)
        first = run(PipelineConfig(train=TrainConfig(model=model, recipe=Recipe(method="a2q+", acc_bits=14, input_bits=4),
                                                     float_epochs=2, qat_epochs=1), export_samples=64,
                                   build=build_cfg, out=work / model / "trained"), log=lambda line: None)
        onnx = first.onnx
        bare, ours, checks = [], [], []
        for i in range(args.repeats):
            bare.append(bare_finn(onnx, work / model / f"bare{i}", board))
            record = run(PipelineConfig(onnx=onnx, build=build_cfg, out=work / model / f"a2qflow{i}"),
                         log=lambda line: None).record
            ours.append(record["wall_s"])
            checks.append(record["check_s"])
        b, o, c = statistics.median(bare), statistics.median(ours), statistics.median(checks)
        rows.append({"model": model, "bare_finn_s": b, "a2qflow_s": o, "checks_s": c,
                     "ratio_excl_checks": (o - c) / b, "ratio_total": o / b})

    print(f"\n{'model':6} {'bare FINN s':>12} {'a2qflow s':>10} {'checks s':>9} {'ratio (no checks)':>18} {'ratio total':>12}")
    for r in rows:
        print(f"{r['model']:6} {r['bare_finn_s']:12.2f} {r['a2qflow_s']:10.2f} {r['checks_s']:9.2f} "
              f"{r['ratio_excl_checks']:18.2f} {r['ratio_total']:12.2f}")
    print("build overhead: " + "; ".join(
        f"{r['model']} {r['ratio_excl_checks']:.2f}x bare FINN without checks, {r['ratio_total']:.2f}x with "
        f"({r['a2qflow_s']:.1f} s total)" for r in rows) + f" [board {board.name}, median of {args.repeats}]")
    return rows


if __name__ == "__main__":
    main()
