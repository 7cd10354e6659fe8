"""Build reports: per-layer JSON and CSV first, a Markdown summary generated from them."""
from __future__ import annotations

import csv
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
           "parity": _load(out / "reports" / "parity.json", []), "skipped": run["skipped"]}
    (out / "reports" / "layers.json").write_text(json.dumps(doc, indent=1))
    if rows:
        with (out / "reports" / "layers.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    (out / "reports" / "summary.md").write_text(markdown(doc))
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
    t, b = doc["estimated_totals"], doc["budget"]
    lines += ["", f"FINN estimates (all HW layers): {t['LUT']:.0f} LUT ({100 * t['LUT'] / b['LUT']:.1f}% of {b['LUT']}), "
              f"{t['BRAM_18K']} BRAM18, {t['DSP']} DSP.",
              f"Estimated throughput {doc['estimated_fps']:.0f} FPS, latency {doc['estimated_latency_us']:.2f} µs "
              f"at the board clock." if doc["estimated_fps"] else "No performance estimate.", ""]
    if doc["parity"]:
        lines += ["Parity with the trained model (python execution): " + ", ".join(
            f"{p['stage']} {'ok' if p['passed'] else 'FAIL'} ({p['max_abs_error']:.1e})" for p in doc["parity"]), ""]
    if doc["skipped"]:
        lines += ["Skipped stages:", *[f"- {s}" for s in doc["skipped"]], ""]
    return "\n".join(lines)
