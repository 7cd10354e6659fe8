"""EP-init: start QAT inside the accumulator bound (A2Q+, ICML 2024, Sec. 4).

A2Q/A2Q+ clamp each channel's weight-norm parameter g to the budget T·s (T: the l1
budget of the layer's P and input bits, s: its per-channel weight scale). Loaded from a
float checkpoint, g is usually far above it, so the clamp shrinks the whole channel
uniformly and low-P layers round to zero. EP-init instead replaces every channel by its
Euclidean projection onto the set the quantizer actually constrains, and sets g to the
projected norm, so the first quantized weights are round-to-zero(projection / s).

For A2Q that set is the l1 ball; for A2Q+ it is {w : ||w - mean(w)||_1 <= T·s}, because
brevitas zero-centres before normalising (brevitas' own example projects the raw weights,
which is not the nearest point of that set).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from brevitas.core.scaling.pre_scaling import AccumulatorAwareParameterPreScaling

from .bounds import l1_budget
from .projection import project_l1_ball, project_zero_centred_l1_ball
from .recipes import weight_layers


def _pre_scaling(layer: nn.Module) -> AccumulatorAwareParameterPreScaling:
    for sub in layer.weight_quant.modules():
        if isinstance(sub, AccumulatorAwareParameterPreScaling):
            return sub
    raise TypeError(f"{layer.a2qflow_spec.name}: no accumulator-aware quantizer to initialise")


@torch.no_grad()
def apply_ep_init(model: nn.Module) -> dict[str, int]:
    """Project every constrained layer's channels onto its budget; returns, per layer,
    how many channels the projection moved."""
    moved: dict[str, int] = {}
    for name, layer in weight_layers(model):
        spec = layer.a2qflow_spec
        if not spec.constrained:
            continue
        pre = _pre_scaling(layer)
        w = layer.weight
        rows = w.reshape(w.shape[0], -1)
        scale = pre.scaling_impl(w).reshape(-1).to(rows.dtype)
        radius = scale * l1_budget(spec.method, spec.acc_bits, spec.input_bits, spec.input_signed)
        if spec.method == "a2q+":
            projected = project_zero_centred_l1_ball(rows, radius)
            norm = (projected - projected.mean(dim=1, keepdim=True)).abs().sum(dim=1)
        else:
            projected = project_l1_ball(rows, radius)
            norm = projected.abs().sum(dim=1)
        moved[name] = int((projected != rows).any(dim=1).sum())
        w.copy_(projected.reshape(w.shape))
        restrict = pre.restrict_clamp_scaling.restrict_value_impl
        pre.value.copy_(restrict.restrict_init_tensor(norm.clamp_min(1e-8)).reshape(pre.value.shape))
    return moved
