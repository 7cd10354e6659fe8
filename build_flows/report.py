"""Build reports: per-layer JSON and CSV first, a Markdown summary generated from them."""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.hw_configs import Board

from .steps import dot_product_nodes, node_attrs

SHAPE_ATTRS = ("MW", "MH", "Channels", "Kernel", "PE", "SIMD", "inputDataType", "weightDataType",
               "accDataType", "outputDataType", "runtime_writeable_weights")


def _load(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def final_model(out: Path) -> ModelWrapper:
    models = sorted((out / "finn" / "intermediate_models").glob("*.onnx"), key=lambda p: p.stat().st_mtime)
    return ModelWrapper(str(models[-1]))


def layer_rows(out: Path) -> list[dict]:
    finn_report = out / "finn" / "report"
    resources = _load(finn_report / "estimate_layer_resources.json", {})
    cycles = _load(finn_report / "estimate_layer_cycles.json", {})
    sizing = {s["node"]: s for s in _load(out / "reports" / "step_a2qflow_size_accumulators.json", [])}
    overflow = {o["node"]: o for o in _load(out / "reports" / "overflow.json", [])}
    rows = []
    for node in dot_product_nodes(final_model(out)):
        attrs = node_attrs(node, SHAPE_ATTRS)
        s, o, r = sizing.get(node.name, {}), overflow.get(node.name, {}), resources.get(node.name, {})
        rows.append({
            "node": node.name, "layer": s.get("layer"), "op": node.op_type, "method": s.get("method"),
            "MW": attrs.get("MW"), "MH": attrs.get("MH", attrs.get("Channels")),
            "PE": attrs.get("PE"), "SIMD": attrs.get("SIMD"),
            "input": attrs.get("inputDataType"), "weight": attrs.get("weightDataType"),
            "guaranteed_P": s.get("guaranteed_bits"), "value_bits": s.get("value_bits"),
            "finn_datatype_bits": s.get("datatype_bits"), "int32_default": 32,
            "finn_minimized": s.get("finn_acc"), "acc": attrs.get("accDataType"),
            "runtime_writeable": bool(attrs.get("runtime_writeable_weights")),
            "worst_case_wraps": o.get("worst_case_wraps"), "data_wraps": o.get("data_wraps"),
            "wraps_at_P-1": o.get("worst_case_wraps_at_p_minus_1"),
            "LUT_est": r.get("LUT"), "BRAM18_est": r.get("BRAM_18K"), "DSP_est": r.get("DSP"),
            "cycles_est": cycles.get(node.name)})
    return rows


def synthesis_rows(out: Path) -> list[dict]:
    """Per-layer synthesis results with a `tool` column: Yosys (reports/synth.json, the oss
    step) and, after a bitstream build, Vivado (FINN's post_synth_resources.json)."""
    rows = []
    yosys = _load(out / "reports" / "synth.json")
    for r in (yosys or {}).get("layers", []):
        rows.append({"tool": r["version"].split(" (")[0], "node": r["node"], "acc_bits": r["acc_bits"],
                     "LUT": r["lut"], "FF": r["ff"], "CARRY": r["carry"], "DSP": r["dsp"], "BRAM18": r["bram18"],
                     "LUTRAM": r["lutram"], "seconds": r["seconds"], "no_LUTRAM": r.get("nolutram", False)})
    vivado = _load(out / "finn" / "report" / "post_synth_resources.json", {})
    for node, res in vivado.items():
        if isinstance(res, dict) and node != "(top)":
            rows.append({"tool": "Vivado", "node": node, "acc_bits": None, "LUT": res.get("LUT"),
                         "FF": res.get("FF"), "CARRY": res.get("CARRY"), "DSP": res.get("DSP"),
                         "BRAM18": res.get("BRAM_18K"), "LUTRAM": res.get("LUTRAM"), "seconds": None})
    return rows


def write_reports(out: Path, board: Board, run: dict) -> dict:
    rows = layer_rows(out)
    finn_report = out / "finn" / "report"
    perf = _load(finn_report / "estimate_network_performance.json", {})
    resources = _load(finn_report / "estimate_layer_resources.json", {})
    totals = {k: sum((r.get(k) or 0) for r in resources.values() if isinstance(r, dict))
              for k in ("LUT", "BRAM_18K", "DSP", "URAM")}
    doc = {"board": board.name, "part": board.part, "clk_ns": board.clk_ns, "flow": run["flow"],
           "a2qflow_graph": run["a2qflow_graph"], "sizing": run["sizing"], "layers": rows,
           "estimated_totals": totals, "budget": board.resources,
           "estimated_fps": perf.get("estimated_throughput_fps"),
           "estimated_latency_us": perf["estimated_latency_ns"] / 1000 if "estimated_latency_ns" in perf else None,
           "parity": _load(out / "reports" / "parity.json", []), "skipped": run["skipped"],
           "folding": _load(out / "reports" / "folding.json", {}),
           "synthesis": synthesis_rows(out),
           "rtl_sim": _load(out / "reports" / "rtl_sim.json"),
           "synthesis_skipped": (_load(out / "reports" / "synth.json") or {}).get("skipped", [])}
    (out / "reports" / "layers.json").write_text(json.dumps(doc, indent=1))
    if rows:
        with (out / "reports" / "layers.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    write_summary(out / "reports" / "summary.md", markdown(doc), f"a2qflow build {out.name}")
    return doc


def markdown(doc: dict) -> str:
    """The human view of layers.json."""
    lines = [f"# Build report: {doc['board']} ({doc['part']}, {1000 / doc['clk_ns']:.0f} MHz), flow `{doc['flow']}`", ""]
    if not doc["a2qflow_graph"]:
        lines += ["**Plain FINN graph** (no a2qflow metadata): accumulators use FINN's value-based widths; "
                  "nothing guarantees them for other weights.", ""]
    else:
        lines += [f"Accumulators sized to the **{doc['sizing']}** width; every MVAU/VVAU re-certified in the HW graph.", ""]
    cols = ["node", "layer", "method", "MW", "MH", "PE", "SIMD", "input", "weight", "guaranteed_P", "value_bits",
            "finn_datatype_bits", "int32_default", "acc", "worst_case_wraps", "data_wraps", "wraps_at_P-1",
            "LUT_est", "DSP_est", "cycles_est"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in doc["layers"]:
        lines.append("| " + " | ".join("-" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    folding = doc.get("folding", {})
    if folding.get("why"):
        lines += ["", f"Folding: FINN target-FPS auto-folding ({folding['target_fps']} FPS) because {folding['why']}."]
    elif folding.get("file"):
        lines += ["", f"Folding: {folding['file']} (checked against the graph)."]
    t, b = doc["estimated_totals"], doc["budget"]
    lines += ["", f"FINN estimates (all HW layers): {t['LUT']:.0f} LUT ({100 * t['LUT'] / b['LUT']:.1f}% of {b['LUT']}), "
              f"{t['BRAM_18K']} BRAM18, {t['DSP']} DSP.",
              f"Estimated throughput {doc['estimated_fps']:.0f} FPS, latency {doc['estimated_latency_us']:.2f} µs "
              f"at the board clock." if doc["estimated_fps"] else "No performance estimate.", ""]
    lines += synthesis_markdown(doc.get("synthesis", []), doc.get("synthesis_skipped", []))
    lines += rtl_sim_markdown(doc.get("rtl_sim"))
    if doc["parity"]:
        lines += ["Parity with the trained model (python execution): " + ", ".join(
            f"{p['stage']} {'ok' if p['passed'] else 'FAIL'} ({p['max_abs_error']:.1e})" for p in doc["parity"]), ""]
    if doc["skipped"]:
        lines += ["Skipped stages:", *[f"- {s}" for s in doc["skipped"]], ""]
    return "\n".join(lines)


def synthesis_markdown(rows: list[dict], skipped: list[dict]) -> list[str]:
    if not rows and not skipped:
        return []
    if not rows:
        return ["No layer synthesized. Not synthesized: "
                + "; ".join(f"{s['node']} ({s['reason']})" for s in skipped), ""]
    cols = ["tool", "node", "acc_bits", "LUT", "FF", "CARRY", "DSP", "BRAM18", "LUTRAM", "no_LUTRAM"]
    lines = ["Synthesis per layer (real tool output, not estimates):", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("-" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    for tool in dict.fromkeys(r["tool"] for r in rows):
        mine = [r for r in rows if r["tool"] == tool]
        lines.append(f"\n{tool} total: " + ", ".join(f"{sum(r[k] or 0 for r in mine)} {k}" for k in ("LUT", "FF", "DSP")))
    if skipped:
        lines += ["", "Not synthesized: " + "; ".join(f"{s['node']} ({s['reason']})" for s in skipped)]
    return lines + [""]


def rtl_sim_markdown(reports) -> list[str]:
    if reports is None:
        return []
    if isinstance(reports, dict):
        return [f"RTL simulation skipped: {reports['skipped']}", ""]
    ran = [r for r in reports if "skipped" not in r]
    lines = [f"RTL simulation (Verilator, FINN-generated RTL vs python execution): {len(ran)} runs, "
             f"{sum(r['elements'] for r in ran)} outputs, {sum(r['mismatches'] for r in ran)} mismatches, "
             f"{min((r['cycles_per_s'] for r in ran), default=0) / 1e6:.1f}-"
             f"{max((r['cycles_per_s'] for r in ran), default=0) / 1e6:.1f} M cycles/s."]
    lines += [f"- not simulated: {r['layer']} ({r['skipped']})" for r in reports if "skipped" in r]
    return lines + [""]


PAGE_STYLE = ("body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}"
              "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
              "img{max-width:100%}")


def write_summary(path: Path, text: str, title: str) -> None:
    """summary.md and, beside it, the same as a static summary.html (plots linked, not copied)."""
    from markdown_it import MarkdownIt

    path.write_text(text)
    body = MarkdownIt("commonmark").enable("table").render(text)
    path.with_suffix(".html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}</style></head><body>{body}</body></html>\n")


def _grid_rows(folder: Path) -> list[dict]:
    """Every cell row of a compare-acc folder's results.json, as write_outputs took them."""
    doc = _load(folder / "results.json")
    return doc["cells"] + doc.get("failed", []) + doc.get("partial", [])


def regenerate(path: str | Path) -> Path:
    """Rewrite the Markdown/HTML summary of a run folder from its JSON/CSV: a build
    (run.json), a compare-acc grid (results.json) or a sweep of several grids."""
    from a2qflow.hw_configs import get_board

    from . import compare, sweep

    path = Path(path)
    if (path / "results.json").is_file():
        compare.write_outputs(_grid_rows(path), path)
        return path / "summary.md"
    grids = sorted(p.parent for p in path.glob("*/results.json"))
    if grids:
        sweep.write_sweep_outputs([r for g in grids for r in _grid_rows(g)], path, nested=True)
        return path / "summary.md"
    run = _load(path / "run.json")
    if run is None:
        raise FileNotFoundError(f"{path}: not a run folder (no run.json, results.json or grid folders)")
    if run.get("status") != "complete":
        raise ValueError(f"{path}: the build's status is {run.get('status')!r}; a report is only written for a "
                         f"complete build{': ' + run['error'] if run.get('error') else ''}")
    write_reports(path, get_board(run["board"]), run)
    return path / "reports" / "summary.md"
