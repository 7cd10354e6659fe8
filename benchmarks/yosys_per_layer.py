"""LUTs per layer against accumulator width, by real synthesis (Yosys synth_xilinx), on the demo TFC.

Builds (or reuses) `a2qflow demo` (TFC on digits, A2Q+ P=12, Pynq-Z2: every layer MVAU_rtl /
Thresholding_rtl), and the same exported network built with `--sizing int32` (the INT32
accumulators FINN users start from). Then for every MVAU/Thresholding layer takes the RTL
FINN generates (build_flows.rtl.prepare_rtl) and synthesizes it with Yosys for the board's
family (build_flows.oss_synth.synthesize) at:
  INT32     the flow's int32 build
  P         the flow's guaranteed build (each layer's certified P)
  P-k       the guaranteed graph with each MVAU's accumulator narrowed by k bits and the
            thresholds re-clipped (FINN's RoundAndClipThresholds) -- below the guarantee,
            so NOT a valid build (it may overflow); it shows the trend only (--below 1..)
Weights are identical at every width; memories (LUTRAM/BRAM/SRL) are reported apart.
Prints one table (seconds and LUT/FF/CARRY/DSP per layer and width) and a headline line
with the LUT ratio INT32 -> P per layer and in total.

    python benchmarks/yosys_per_layer.py [--run runs/bench-yosys] [--below 1] [--jobs 2]
        [--lut-only] [--compute-only]
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

GRAPH = Path("finn/intermediate_models/step_generate_estimate_reports.onnx")


def ensure_build(run: Path, args: list[str]) -> Path:
    """The HW graph of an a2qflow run folder, built with the CLI when missing."""
    graph = run / GRAPH
    if not graph.exists():
        print(f"building: a2qflow {' '.join(args)} --out {run}", flush=True)
        cmd = [sys.executable, "-c", "from a2qflow.cli import main; main()", *args, "--out", str(run)]
        subprocess.run(cmd, check=True)
    if not graph.exists():
        raise SystemExit(f"{graph} missing after the build; see {run}/finn/build_dataflow.log")
    return graph


def narrowed(model, delta: int):
    """Copy of a HW graph with every MVAU/VVAU accumulator `delta` bits narrower, outputs
    and downstream thresholds following (as a2qflow's sizing step does)."""
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.util.basic import roundup_to_integer_multiple

    model = ModelWrapper(copy.deepcopy(model.model))
    for node in model.graph.node:
        if node.op_type.split("_")[0] in ("MVAU", "VVAU"):
            inst = getCustomOp(node)
            bits = DataType[inst.get_nodeattr("accDataType")].bitwidth() - delta
            inst.set_nodeattr("accDataType", f"INT{bits}")
            if inst.get_nodeattr("noActivation"):
                out = bits if model.find_direct_successors(node) else roundup_to_integer_multiple(bits, 8)
                inst.set_nodeattr("outputDataType", f"INT{out}")
    return model.transform(RoundAndClipThresholds()).transform(InferDataTypes())


def synth_variant(label: str, model, part: str, clk_ns: float, family: str, work: Path, jobs: int,
                  lut_only: bool, compute_only: bool):
    from a2qflow.build_flows.oss_synth import synthesize
    from a2qflow.build_flows.rtl import prepare_rtl

    t0 = time.perf_counter()
    layers = prepare_rtl(model, part, clk_ns, work / label / "rtl")
    prep = time.perf_counter() - t0
    res = synthesize(layers, family, work / label / "synth", lut_only=lut_only, jobs=jobs,
                     compute_only=compute_only)
    return {"label": label, "prepare_s": prep, "results": res}


def format_table(variants: list[dict]) -> str:
    names = [r.node for r in variants[0]["results"]]
    head = ["layer", "op"]
    for v in variants:
        head += [f"{v['label']} acc", "LUT", "FF", "CARRY", "DSP", "LUTRAM", "s"]
    rows = []
    for i, name in enumerate(names + ["TOTAL"]):
        row = [name, ""]
        for v in variants:
            r = v["results"].total if name == "TOTAL" else v["results"][i]
            if name != "TOTAL":
                row[1] = r.op_type.replace("_rtl", "")
            row += [str(r.acc_bits if r.acc_bits is not None else "-"), str(r.lut), str(r.ff), str(r.carry),
                    str(r.dsp), str(r.lutram + r.srl), f"{r.seconds:.1f}"]
        rows.append(row)
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda cells: "  ".join(c.rjust(w) if j > 1 else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def headline(base: dict, guaranteed: dict, family: str, lut_only: bool) -> str:
    parts = []
    for b, g in zip(base["results"], guaranteed["results"]):
        if b.lut != g.lut or b.op_type.startswith(("MVAU", "VVAU")):
            parts.append(f"{b.node} {b.lut}->{g.lut} (x{b.lut / g.lut:.2f})")
    bt, gt = base["results"].total, guaranteed["results"].total
    first = base["results"][0]
    return (f"headline: LUT INT32 -> P ({family}{', LUT-only' if lut_only else ''}, {first.version}): "
            + "; ".join(parts)
            + f"; total {bt.lut}->{gt.lut} LUT (x{bt.lut / gt.lut:.2f}, -{100 * (1 - gt.lut / bt.lut):.1f}%),"
              f" FF {bt.ff}->{gt.ff}, DSP {bt.dsp}->{gt.dsp}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bench-yosys"),
                        help="folder for the builds and synthesis (reused when present)")
    parser.add_argument("--below", type=int, default=1, help="also synthesize P-1 .. P-BELOW (0: none)")
    parser.add_argument("--jobs", type=int, default=2, help="Yosys runs at once")
    parser.add_argument("--lut-only", action="store_true", help="no DSPs: behavioural MVU datapath, -nodsp")
    parser.add_argument("--compute-only", action="store_true", help="MVU without its weight memory")
    args = parser.parse_args(argv)

    from qonnx.core.modelwrapper import ModelWrapper

    from a2qflow.build_flows import finn_env
    from a2qflow.hw_configs import get_board

    run = args.run.resolve()
    finn_env.prepare_finn(run / "finn_tmp")
    demo_graph = ensure_build(run / "demo", ["demo"])
    info = json.loads((run / "demo" / "run.json").read_text())
    onnx = run / "demo" / "export" / "model.onnx"
    int32_graph = ensure_build(run / "int32", ["build", "--onnx", str(onnx), "--board", info["board"],
                                               "--sizing", "int32"])
    board = get_board(info["board"])
    part, clk_ns, family = info["part"], info["clk_ns"], board.family
    print(f"board {board.name} ({part}), Yosys family {family}; "
          f"{'LUT-only' if args.lut_only else 'DSP allowed'}{', compute only' if args.compute_only else ''}",
          flush=True)

    tag = f"{family}{'_lutonly' if args.lut_only else ''}{'_compute' if args.compute_only else ''}"
    work = run / f"yosys_{tag}"
    guaranteed = ModelWrapper(str(demo_graph))
    models = [("INT32", ModelWrapper(str(int32_graph))), ("P", guaranteed)]
    models += [(f"P-{k}", narrowed(guaranteed, k)) for k in range(1, args.below + 1)]
    variants = [synth_variant(label, m, part, clk_ns, family, work, args.jobs, args.lut_only, args.compute_only)
                for label, m in models]
    table = format_table(variants)
    print(table)
    line = headline(variants[0], variants[1], family, args.lut_only)
    print(line)
    (work / "table.txt").write_text(table + "\n" + line + "\n")
    (work / "results.json").write_text(json.dumps(
        [{"label": v["label"], "prepare_s": v["prepare_s"], "layers": [r.to_dict() for r in v["results"]],
          "total": v["results"].total.to_dict()} for v in variants], indent=1))
    return variants


if __name__ == "__main__":
    main()
