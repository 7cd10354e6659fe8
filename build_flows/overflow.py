"""Overflow check of every MVAU/VVAU at its final accumulator width.

A P-bit two's-complement accumulator computes every partial sum mod 2^P, so its final
value is wrap_P(exact dot product) whatever the order of additions. A layer therefore
never overflows on an input exactly when wrap_P(exact) == exact. The exact sums come
from (a) per-channel worst-case inputs built from the node's integer weights (the input
that maximises, and the one that minimises, each channel's sum: the extremes over all
inputs) and (b) the test data reaching the node in the python-executed HW graph. The same
check at P-1 bits is reported too: on a layer whose bound is tight it must find wraps,
which shows the check can fail.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from a2qflow.errors import A2qflowError
from a2qflow.models import bounds

from .sizing import dot_product_nodes, is_popcount_node, node_weight_rows


class AccumulatorOverflow(A2qflowError, ArithmeticError):
    """An accumulator wraps on an input the check tried."""


def save_layer_inputs(model: ModelWrapper, x: np.ndarray, path: Path) -> None:
    """Run the python-executable HW graph on samples and keep each dot-product node's exact
    accumulator values (nodes with standalone thresholds output them unchanged)."""
    from finn.core.onnx_exec import execute_onnx

    nodes = dot_product_nodes(model)
    iname = model.graph.input[0].name
    sums: dict[str, list[np.ndarray]] = {str(i): [] for i in range(len(nodes))}
    for k in range(len(x)):
        ctx = execute_onnx(model, {iname: x[k:k + 1]}, return_full_exec_context=True)
        for i, node in enumerate(nodes):
            if getCustomOp(node).get_nodeattr("noActivation"):
                sums[str(i)].append(np.rint(ctx[node.output[0]]).astype(np.int64).ravel())
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{i: np.concatenate(v) for i, v in sums.items() if v})


def _fits(values: np.ndarray, bits: int) -> np.ndarray:
    return bounds.wrap_signed(values, bits) == values


def check_node(model: ModelWrapper, node, data_sums: np.ndarray | None) -> dict:
    inst = getCustomOp(node)
    acc = DataType[inst.get_nodeattr("accDataType")]
    p = acc.bitwidth()
    idt = inst.get_input_datatype(0)
    rows = np.rint(node_weight_rows(model, node)).astype(np.int64)
    if is_popcount_node(inst):
        # the count of inputs equal to their weight: the weights themselves give K, their
        # complement 0 (BINARY 0/1 or BIPOLAR -1/+1)
        complement = (1 - rows) if idt.min() == 0 else -rows
        extremes = np.stack([(rows == rows).sum(1), (complement == rows).sum(1)], axis=1)
    else:
        x_max, x_min = bounds.worst_case_inputs(rows, int(idt.min()), int(idt.max()))
        extremes = np.stack([(rows * x_max).sum(1), (rows * x_min).sum(1)], axis=1)  # (channels, 2)
    result = {"node": node.name, "acc": acc.name, "acc_bits": p, "signed_acc": acc.signed(),
              "worst_case_channels": int(rows.shape[0]),
              "worst_case_wraps": int((~_fits(extremes, p)).any(1).sum()) if acc.signed() else None,
              "worst_case_wraps_at_p_minus_1": int((~_fits(extremes, p - 1)).any(1).sum()),
              "first_wrapping_channel_at_p_minus_1": None,
              "data_values": 0, "data_wraps": None, "data_wraps_at_p_minus_1": None}
    if not acc.signed():  # FINN's own unsigned choice for all-positive ranges; compare as unsigned
        result["worst_case_wraps"] = int(((extremes < 0) | (extremes >= 2**p)).any(1).sum())
    tight = np.flatnonzero((~_fits(extremes, p - 1)).any(1))
    if tight.size:
        result["first_wrapping_channel_at_p_minus_1"] = int(tight[0])
    if data_sums is not None and data_sums.size:
        result["data_values"] = int(data_sums.size)
        result["data_wraps"] = int((~_fits(data_sums, p)).sum()) if acc.signed() else int(
            ((data_sums < 0) | (data_sums >= 2**p)).sum())
        result["data_wraps_at_p_minus_1"] = int((~_fits(data_sums, p - 1)).sum())
        result["data_max_abs"] = int(np.abs(data_sums).max())
    return result


def check_model(model: ModelWrapper, accumulators: Path) -> list[dict]:
    """Every dot-product node, with the accumulator values `save_layer_inputs` kept."""
    path = Path(accumulators)
    data = dict(np.load(path, allow_pickle=False)) if path.is_file() else {}
    return [check_node(model, node, data.get(str(i))) for i, node in enumerate(dot_product_nodes(model))]


def raise_on_wrap(results: list[dict]) -> None:
    for r in results:
        if r["worst_case_wraps"] or r["data_wraps"]:
            raise AccumulatorOverflow(
                f"{r['node']}: {r['acc']} accumulator wraps on {r['worst_case_wraps']} worst-case channel(s) "
                f"and {r['data_wraps']} test-data value(s)")
