"""Build reports: per-layer JSON and CSV first (reports/layers.json, layers.csv), a Markdown
summary generated from them. Every figure names the tool file it came from: FINN's estimate
reports (finn/report/), a2qflow's sizing and overflow reports, Yosys (reports/synth.json),
Vivado (FINN's post_synth_resources.json), Verilator (reports/rtl_sim.json)."""
from __future__ import annotations

import csv
import io

from a2qflow.hw_configs import Board

from . import run_folder as rf
from .sizing import dot_product_nodes, node_attrs
from .summary import markdown_table, write_summary

SHAPE_ATTRS = ("MW", "MH", "Channels", "Kernel", "PE", "SIMD", "inputDataType", "weightDataType",
               "accDataType", "outputDataType", "runtime_writeable_weights")
RESOURCE_KEYS = ("LUT", "BRAM_18K", "DSP", "URAM")
# the summary's per-layer table: short headers, explained in LAYER_LEGEND
LAYER_COLUMNS = ("node", "layer", "method", "MW", "MH", "PE", "SIMD", "input", "weight", "P", "value_bits",
                 "datatype_bits", "acc", "worst_case_wraps", "data_wraps", "wraps_at_P-1", "LUT_est", "DSP_est",
                 "cycles_est")
LAYER_LEGEND = ("P: the layer's guaranteed accumulator width; value_bits: the width these weights need "
                "(FINN's value-based minimisation); datatype_bits: the width any weights of the weight type "
                "need (FINN with runtime-writeable weights); acc: the width built; *_wraps: overflow check at the "
                "built width on worst-case inputs and test data, and worst-case wraps one bit below P; "
                "*_est: FINN's analytic estimates")


def layer_rows(folder: rf.RunFolder) -> list[dict]:
    resources = folder.read_finn_report(rf.FINN_ESTIMATE_RESOURCES, {})
    cycles = folder.read_finn_report(rf.FINN_ESTIMATE_CYCLES, {})
    sizing = {s["node"]: s for s in folder.read_report(rf.SIZING, [])}
    overflow = {o["node"]: o for o in folder.read_report(rf.OVERFLOW, [])}
    rows = []
    for node in dot_product_nodes(folder.final_model()):
        attrs = node_attrs(node, SHAPE_ATTRS)
        s, o, r = sizing.get(node.name, {}), overflow.get(node.name, {}), resources.get(node.name, {})
        rows.append({
            "node": node.name, "layer": s.get("layer"), "op": node.op_type, "method": s.get("method"),
            "MW": attrs.get("MW"), "MH": attrs.get("MH", attrs.get("Channels")),
            "PE": attrs.get("PE"), "SIMD": attrs.get("SIMD"),
            "input": attrs.get("inputDataType"), "weight": attrs.get("weightDataType"),
            "P": s.get("acc_bits"), "value_bits": s.get("value_bits"),
            "datatype_bits": s.get("datatype_bits"), "int32_default": 32,
            "finn_minimized": s.get("finn_acc"), "acc": attrs.get("accDataType"),
            "runtime_writeable": bool(attrs.get("runtime_writeable_weights")),
            "worst_case_wraps": o.get("worst_case_wraps"), "data_wraps": o.get("data_wraps"),
            "wraps_at_P-1": o.get("worst_case_wraps_at_p_minus_1"),
            "LUT_est": r.get("LUT"), "BRAM18_est": r.get("BRAM_18K"), "DSP_est": r.get("DSP"),
            "cycles_est": cycles.get(node.name)})
    return rows


def estimate_totals(resources: dict) -> dict:
    """FINN's whole-design estimate: its own "total" entry (summing the entries again would
    count every layer twice), else the sum of the per-layer entries."""
    total = resources.get("total")
    layers = [r for name, r in resources.items() if name != "total" and isinstance(r, dict)]
    return {k: (total.get(k, 0) if isinstance(total, dict) else sum(r.get(k) or 0 for r in layers))
            for k in RESOURCE_KEYS}


def synthesis_rows(folder: rf.RunFolder) -> list[dict]:
    """Per-layer synthesis results with a `tool` column: Yosys (reports/synth.json, the oss
    step) and, after a bitstream build, Vivado (FINN's post_synth_resources.json)."""
    rows = []
    yosys = folder.read_report(rf.SYNTH)
    for r in (yosys or {}).get("layers", []):
        rows.append({"tool": r["version"].split(" (")[0], "node": r["node"], "acc_bits": r["acc_bits"],
                     "LUT": r["lut"], "FF": r["ff"], "CARRY": r["carry"], "DSP": r["dsp"], "BRAM18": r["bram18"],
                     "LUTRAM": r["lutram"], "seconds": r["seconds"], "no_LUTRAM": r.get("nolutram", False)})
    vivado = folder.read_finn_report(rf.FINN_POST_SYNTH, {})
    for node, res in vivado.items():
        if isinstance(res, dict) and node != "(top)":
            rows.append({"tool": "Vivado", "node": node, "acc_bits": None, "LUT": res.get("LUT"),
                         "FF": res.get("FF"), "CARRY": res.get("CARRY"), "DSP": res.get("DSP"),
                         "BRAM18": res.get("BRAM_18K"), "LUTRAM": res.get("LUTRAM"), "seconds": None})
    return rows


def write_reports(folder: rf.RunFolder, board: Board, run: dict) -> dict:
    rows = layer_rows(folder)
    perf = folder.read_finn_report(rf.FINN_ESTIMATE_PERFORMANCE, {})
    doc = {"board": board.name, "part": board.part, "clk_ns": board.clk_ns, "flow": run["flow"],
           "a2qflow_graph": run["a2qflow_graph"], "sizing": run["sizing"], "layers": rows,
           "estimated_totals": estimate_totals(folder.read_finn_report(rf.FINN_ESTIMATE_RESOURCES, {})),
           "budget": board.resources,
           "estimated_fps": perf.get("estimated_throughput_fps"),
           "estimated_latency_us": perf["estimated_latency_ns"] / 1000 if "estimated_latency_ns" in perf else None,
           "parity": folder.read_report(rf.PARITY, []), "parity_reference": run.get("parity_reference"),
           "skipped": run["skipped"], "folding": folder.read_report(rf.FOLDING, {}),
           "synthesis": synthesis_rows(folder), "rtl_sim": folder.read_report(rf.RTL_SIM),
           "accelerator_sim": folder.read_report(rf.ACCELERATOR_SIM), "boundary": folder.read_report(rf.BOUNDARY),
           "synthesis_skipped": (folder.read_report(rf.SYNTH) or {}).get("skipped", [])}
    folder.write_report(rf.LAYERS_JSON, doc)
    if rows:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        rf.write_text_atomic(folder.report(rf.LAYERS_CSV), buf.getvalue())
    write_summary(folder.report(rf.SUMMARY), markdown(doc), f"a2qflow build {folder.root.name}")
    return doc


def markdown(doc: dict) -> str:
    """The human view of layers.json."""
    lines = [f"# Build report: {doc['board']} ({doc['part']}, {1000 / doc['clk_ns']:.0f} MHz), flow `{doc['flow']}`", ""]
    if not doc["a2qflow_graph"]:
        lines += ["**Plain FINN graph** (no a2qflow metadata): accumulators use FINN's value-based widths; "
                  "nothing guarantees them for other weights.", ""]
    else:
        lines += [f"Accumulators sized to the **{doc['sizing']}** width; every MVAU/VVAU re-certified in the HW graph.", ""]
    lines += markdown_table(doc["layers"], list(LAYER_COLUMNS)) + ["", LAYER_LEGEND + "."]
    folding = doc.get("folding", {})
    if folding.get("why"):
        lines += ["", f"Folding: FINN target-FPS auto-folding ({folding['target_fps']} FPS) because {folding['why']}."]
    elif folding.get("file"):
        lines += ["", f"Folding: {folding['file']} (checked against the graph)."]
    t, b = doc["estimated_totals"], doc["budget"]
    lines += ["", f"FINN estimates (finn/report/{rf.FINN_ESTIMATE_RESOURCES}, total): {t['LUT']:.0f} LUT "
              f"({100 * t['LUT'] / b['LUT']:.1f}% of {b['LUT']}), {t['BRAM_18K']:g} BRAM18, {t['DSP']:g} DSP.",
              f"Estimated throughput {doc['estimated_fps']:.0f} FPS, latency {doc['estimated_latency_us']:.2f} µs "
              f"at the board clock (FINN's estimate)." if doc["estimated_fps"] else "No performance estimate.", ""]
    lines += synthesis_markdown(doc.get("synthesis", []), doc.get("synthesis_skipped", []))
    lines += rtl_sim_markdown(doc.get("rtl_sim"))
    lines += accelerator_markdown(doc.get("accelerator_sim"), doc.get("boundary"))
    if doc["parity"]:
        against = doc.get("parity_reference") or "reference"
        lines += [f"Parity with the {against} (FINN python execution): " + ", ".join(
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
    lines = ["Synthesis per layer (real tool output, not estimates; reports/synth.json):", ""]
    lines += markdown_table(rows, cols)
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
    lines = [f"RTL simulation (Verilator, FINN-generated RTL vs python execution; reports/{rf.RTL_SIM}): "
             f"{len(ran)} runs, {sum(r['elements'] for r in ran)} outputs, {sum(r['mismatches'] for r in ran)} "
             f"mismatches, {min((r['cycles_per_s'] for r in ran), default=0) / 1e6:.1f}-"
             f"{max((r['cycles_per_s'] for r in ran), default=0) / 1e6:.1f} M cycles/s."]
    lines += [f"- not simulated: {r['layer']} ({r['skipped']})" for r in reports if "skipped" in r]
    return lines + [""]


def accelerator_line(sim: dict) -> str:
    """One line: the whole accelerator in Verilator (reports/accelerator_sim.json)."""
    if sim.get("skipped"):
        return (f"whole accelerator not simulated: {sim['skipped']}"
                + (f" ({', '.join(b['node'] for b in sim['blocking'])})" if sim.get("blocking") else ""))
    deeper = {k: v for k, v in sim["fifo"]["depths"].items() if v != sim["fifo"]["default_depths"].get(k)}
    return (f"whole accelerator (Verilator, stitched FINN RTL): {sim['samples']} images, {sim['mismatches']} "
            f"mismatches; {sim['cycles_per_image']:g} cycles/image (FINN estimate {sim['finn_estimated_cycles']}), "
            f"{sim['images_per_s']:,.0f} images/s and first-image latency {sim['latency_cycles']} cycles "
            f"({sim['latency_us']:.2f} µs) at {sim['clk_mhz']:g} MHz; FIFOs sized from simulation: "
            f"{len(deeper)} of {len(sim['fifo']['depths'])} deeper than FINN's default")


def accelerator_markdown(sim: dict | None, boundary: dict | None) -> list[str]:
    lines = []
    if boundary is not None:
        native = boundary.get("integer_input")
        lines += [f"Accelerator input: the dataset's integer codes ({native['dtype']}, x = code x {native['scale']:.6g}), "
                  "output: integer accumulators, the output scale applied on the host." if native else
                  f"Accelerator input: float, as the model takes it ({boundary.get('why_not')}).", ""]
    if sim is None:
        return lines
    lines += [accelerator_line(sim) + f" (reports/{rf.ACCELERATOR_SIM}).", ""]
    if not sim.get("skipped"):
        agree = sim["vs_trained_model"]
        lines += [f"Against the trained model: max error {agree['max_abs_error']:.1e}, argmax agreement "
                  f"{100 * (agree['argmax_agreement'] or 0):.1f}%"
                  + (f", accuracy {100 * sim['accuracy']:.2f}%" if sim.get("accuracy") is not None else "")
                  + f"; with random stream stalls on {sim['stall_samples']} images: {sim['mismatches_with_stalls']} "
                  f"mismatches. Simulation {sim['sim_cycles_per_s'] / 1e3:,.0f} k cycles/s.", ""]
    return lines
