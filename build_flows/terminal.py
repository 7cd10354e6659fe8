"""What the CLI prints after a build or a comparison: the headline figures in at most 100
columns, each naming the report file it comes from. The wide tables live in the Markdown and
HTML reports; the terminal shows what a user checks first."""
from __future__ import annotations

from pathlib import Path

from . import run_folder as rf
from .run_folder import RunFolder, read_json

WIDTH = 100


def _fit(lines: list[str]) -> str:
    return "\n".join(line if len(line) <= WIDTH else line[:WIDTH - 1] + "…" for line in lines)


def _table(rows: list[list[str]], headers: list[str]) -> list[str]:
    widths = [max(len(str(v)) for v in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*map(str, r)) for r in rows]


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, WIDTH)


def build_summary(folder: RunFolder) -> str:
    doc = folder.read_report(rf.LAYERS_JSON) or {}
    if not doc:
        return f"no report written; see {folder.run_json}"
    lines = [f"build for {doc['board']} ({doc['part']}), flow {doc['flow']}, accumulators sized: {doc['sizing']}"
             + ("" if doc["a2qflow_graph"] else " (plain FINN graph: value-based, nothing guaranteed)")]
    synth = {r["node"]: r for r in doc.get("synthesis", []) if r["tool"] != "Vivado"}
    rows = [[r["layer"] or "-", r["node"], r["P"] or "-", r["value_bits"], r["datatype_bits"], r["acc"],
             r["worst_case_wraps"], r["wraps_at_P-1"], synth.get(r["node"], {}).get("LUT", "-")] for r in doc["layers"]]
    lines += _table(rows, ["layer", "node", "P", "value", "dtype", "built", "wraps", "wraps@P-1", "LUT"])
    lines.append("P guaranteed width; value: width these weights need; dtype: width any weights of the type need;")
    lines.append("wraps: worst-case inputs at the built width (must be 0), and one bit below P; LUT: Yosys")
    t = doc["estimated_totals"]
    est = f"FINN estimate: {t['LUT']:.0f} LUT, {t['DSP']:g} DSP, {t['BRAM_18K']:g} BRAM18"
    if doc.get("estimated_fps"):
        est += f"; {doc['estimated_fps']:,.0f} images/s, {doc['estimated_latency_us']:.2f} µs"
    lines.append(est)
    yosys = [r for r in doc.get("synthesis", []) if r["tool"] != "Vivado"]
    if yosys:
        lines.append(f"{yosys[0]['tool']}: {sum(r['LUT'] for r in yosys)} LUT, {sum(r['FF'] for r in yosys)} FF, "
                     f"{sum(r['DSP'] for r in yosys)} DSP over {len(yosys)} layers ({rf.SYNTH})")
    sim = doc.get("rtl_sim")
    if isinstance(sim, list):
        ran = [r for r in sim if "skipped" not in r]
        lines.append(f"Verilator: {len(ran)} runs, {sum(r['elements'] for r in ran):,} outputs, "
                     f"{sum(r['mismatches'] for r in ran)} mismatches ({rf.RTL_SIM})")
    elif isinstance(sim, dict):
        lines.append(f"Verilator skipped: {sim['skipped']}")
    if doc.get("accelerator_sim"):
        from .report import accelerator_line

        lines += _wrap(accelerator_line(doc["accelerator_sim"]))
    parity = doc.get("parity") or []
    if parity:
        worst = max(p["max_abs_error"] for p in parity)
        ok = sum(p["passed"] for p in parity)
        lines.append(f"parity with the {doc.get('parity_reference') or 'reference'}: {ok}/{len(parity)} stages "
                     f"(max error {worst:.1e})")
    lines.append(f"full report: {folder.report(rf.SUMMARY)}")
    return _fit(lines)


def grid_summary(root: Path, head: dict) -> str:
    doc = read_json(root / "results.json") or {}
    rows = doc.get("summary", [])
    lines = []
    if head.get("smallest_p"):
        lines.append(f"INT32 {head['int32_lut']:.0f} LUT -> {head['lut']:.0f} LUT at P={head['smallest_p']} "
                     f"({head['recipe']}): {head['lut_ratio']:.2f}x fewer, within 1 point of the INT32 accuracy "
                     f"({head['accuracy']:.2f} vs {head['int32_accuracy']:.2f})")
    rt = head.get("runtime_weights")
    if rt:
        spread = f" ± {rt['lut_ratio_std']:.2f}" if rt["lut_ratio_std"] is not None else ""
        lines.append(f"runtime-writeable weights at P={rt['acc_bits']} ({rt['recipe']}): FINN datatype-bound "
                     f"{rt['datatype_lut']:.0f} LUT vs guaranteed P {rt['guaranteed_lut']:.0f} LUT, "
                     f"{rt['lut_ratio']:.2f}{spread}x")
    table = []
    for r in rows:
        acc = f"{r['accuracy']:.2f}" + (f" ± {r['accuracy_std']:.2f}" if r["seeds"] >= 2 else "")
        table.append([r["recipe"], r["acc_bits"] or "-", r["sizing"], r["seeds"], acc, f"{r['lut']:.0f}"])
    if table:
        lines += _table(table, ["recipe", "P", "sizing", "seeds", "accuracy", "LUT (Yosys)"])
    lines.append(f"results: {root / 'results.csv'}; summary with plots: {root / 'summary.md'}")
    return _fit(lines)
