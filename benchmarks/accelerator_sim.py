"""The whole accelerator, simulated: cycles per image and latency against FINN's estimate, per board.

Trains the demo TFC once (digits, A2Q+ P=12; reused when --work already holds it), builds it
for every board with the oss flow (FINN's RTL, stitched and simulated whole in Verilator:
build_flows.stitch), and reads each run's reports/accelerator_sim.json. Prints one row per
board: the part family, the board clock, simulated steady-state cycles per image and FINN's
estimate (its slowest layer), first-image latency in cycles (simulated and FINN's critical
path), images/s at the board clock, the simulator's speed (cycles/s), the design's compile
time, and the output mismatches against FINN's python execution (0 expected). Boards without
a shipped folding config are folded by FINN for --target-fps. Ends with a headline line.
Every figure is simulated; nothing here ran on a board.

`--net cnv-nopool` does the same for a conv net: the CNV-style net (a2q+ P=14) without its
max-pool layers (FINN's StreamingMaxPool has no RTL), so every layer has FINN RTL (FMPadding,
ConvolutionInputGenerator, width converters, MVAU, Thresholding), built unfolded (an empty
folding file: SIMD = PE = 1 everywhere; the shipped CNV folding names the pool layers).

    python benchmarks/accelerator_sim.py [--net tfc|cnv-nopool] [--boards Pynq-Z2,ZCU104]
        [--work runs/bench-accel] [--target-fps 1000000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from a2qflow.cli import main; main()"]


def a2qflow(*args: str) -> None:
    print("a2qflow " + " ".join(args), flush=True)
    subprocess.run([*CLI, *args], check=True)


def trained_checkpoint(work: Path, net: str) -> Path:
    ckpt = work / "train" / "checkpoint.pt"
    if ckpt.exists():
        return ckpt
    if net == "tfc":
        a2qflow("train", "--model", "tfc", "--dataset", "digits", "--recipe", "a2q+", "--acc-bits", "12",
                "--out", str(work / "train"))
    else:   # the CLI has no option for the pool layers: the Python API
        from a2qflow.models.recipes import Recipe
        from a2qflow.models.train import TrainConfig, train

        train(TrainConfig(model="cnv", dataset="digits", recipe=Recipe(method="a2q+", acc_bits=14, input_bits=4),
                          model_kwargs={"pool_after": ()}), work / "train")
    return ckpt


def accelerator_report(work: Path, ckpt: Path, board: str, target_fps: int, net: str) -> dict:
    run = work / board
    report = run / "reports" / "accelerator_sim.json"
    if not report.exists():
        folding = []
        if net != "tfc":   # unfolded: the shipped CNV folding names layers this net lacks
            (work / "no-folding.json").write_text(json.dumps({"Defaults": {}}))
            folding = ["--folding", str(work / "no-folding.json")]
        a2qflow("build", "--checkpoint", str(ckpt), "--board", board, "--flow", "oss",
                "--target-fps", str(target_fps), *folding, "--out", str(run))
    return json.loads(report.read_text())


def row(board: str, part: str, r: dict) -> list[str]:
    if "skipped" in r:
        return [board, part, "-", "-", "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"]
    return [board, part, f"{r['clk_mhz']:g}", f"{r['cycles_per_image']:g}", str(r["finn_estimated_cycles"]),
            str(r["latency_cycles"]), str(r["finn_estimated_latency_cycles"]), f"{r['images_per_s']:,.0f}",
            f"{r['sim_cycles_per_s'] / 1e6:.2f} M", f"{r['fifo'].get('compile_seconds', {}).get('design', 0):.0f}",
            f"{r['mismatches']} of {r['elements']}"]


def main() -> None:
    from a2qflow.hw_configs import BOARDS, get_board

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=("tfc", "cnv-nopool"), default="tfc")
    ap.add_argument("--boards", default=",".join(BOARDS), help="comma list of FINN board names")
    ap.add_argument("--work", type=Path, default=None, help="default runs/bench-accel[-<net>]")
    ap.add_argument("--target-fps", type=int, default=1_000_000, help="folding target where none ships")
    args = ap.parse_args()
    boards = [get_board(b) for b in args.boards.split(",")]
    work = args.work or Path("runs/bench-accel" + ("" if args.net == "tfc" else f"-{args.net}"))
    ckpt = trained_checkpoint(work, args.net)
    head = ["board", "part", "MHz", "cycles/image", "FINN est.", "latency cycles", "FINN latency", "images/s",
            "sim speed", "compile s", "mismatches"]
    rows, ratios = [], []
    for board in boards:
        r = accelerator_report(work, ckpt, board.name, args.target_fps, args.net)
        rows.append(row(board.name, board.part, r))
        if "skipped" not in r:
            ratios.append(r["cycles_per_image"] / r["finn_estimated_cycles"])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    for line in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)))
    if ratios:
        print(f"HEADLINE (simulated): {len(ratios)} boards, simulated cycles per image / FINN's estimate "
              f"{min(ratios):.3f}..{max(ratios):.3f}; all outputs bit-exact: "
              f"{all(r[-1].startswith('0 of') for r in rows if r[2] != '-')}")


if __name__ == "__main__":
    main()
