"""Quantization recipes: `qat`, `a2q`, `a2q+`, defined once and applied to every network.

A network never names a brevitas quantizer itself. It asks its `Recipe` for each layer
(`recipe.linear(...)`, `recipe.conv2d(...)`, `recipe.relu(...)`, `recipe.input_quant(...)`),
and the recipe decides the weight quantizer, the bit widths and the accumulator width P of
that layer. Every weight layer carries a `LayerSpec` (attribute `a2qflow_spec`) that export
writes into the QONNX graph and the certificate checks.

Defaults follow A2Q+ (ICML 2024):
* depthwise convolutions use A2Q even in the `a2q+` recipe (their tiny K gains little from
  zero-centring; the paper's Fig. 4) — `depthwise_method`;
* the first layer sees `input_bits`-bit inputs (4 by default, the embedded default's) and is
  constrained like every other layer unless `first_layer="unconstrained"`; `first_method`
  gives it its own recipe (A2Q+ makes every first-layer filter sum to zero, which discards
  local brightness: conv nets recover far better after init with A2Q there, still within P);
* the last layer is constrained too unless `last_layer="unconstrained"`, in which case it
  gets plain per-channel weights of `last_weight_bits` bits (8 by default) and no P.
Every constrained layer gets the global P unless `layer_acc_bits` names it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch.nn as nn
from brevitas import nn as qnn
from brevitas.quant import (
    Int8AccumulatorAwareWeightQuant,
    Int8AccumulatorAwareZeroCenterWeightQuant,
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Uint8ActPerTensorFloat,
)

from . import catalog
from .bounds import CONSTRAINED_METHODS, METHODS

SCALING_MIN_VAL = 1e-8


class PerChannelWeight(Int8WeightPerChannelFloat):
    """`qat`: per-channel float-scaled narrow signed weights, no accumulator constraint."""
    bit_width = None
    scaling_min_val = SCALING_MIN_VAL


class A2QWeight(Int8AccumulatorAwareWeightQuant):
    """`a2q`: l1 norm of each channel bounded by the A2Q budget of its P."""
    bit_width = None
    scaling_min_val = SCALING_MIN_VAL
    pre_scaling_min_val = SCALING_MIN_VAL


class A2QPlusWeight(Int8AccumulatorAwareZeroCenterWeightQuant):
    """`a2q+`: zero-centred channels, bounded by the relaxed A2Q+ budget of its P."""
    bit_width = None
    scaling_min_val = SCALING_MIN_VAL
    pre_scaling_min_val = SCALING_MIN_VAL


class UnsignedAct(Uint8ActPerTensorFloat):
    bit_width = None
    scaling_min_val = SCALING_MIN_VAL


class SignedAct(Int8ActPerTensorFloat):
    bit_width = None
    scaling_min_val = SCALING_MIN_VAL


WEIGHT_QUANTS = {"qat": PerChannelWeight, "a2q": A2QWeight, "a2q+": A2QPlusWeight}


@dataclass(frozen=True)
class LayerSpec:
    """What the recipe decided for one weight layer; recorded in the exported graph."""
    name: str
    method: str                # qat | a2q | a2q+
    weight_bits: int
    input_bits: int
    input_signed: bool
    acc_bits: int | None       # guaranteed P; None for unconstrained layers
    depthwise: bool = False

    @property
    def constrained(self) -> bool:
        return self.method in CONSTRAINED_METHODS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recipe:
    method: str = catalog.DEFAULT_METHOD
    weight_bits: int = catalog.DEFAULT_WEIGHT_BITS
    act_bits: int = catalog.DEFAULT_ACT_BITS
    input_bits: int = catalog.DEFAULT_INPUT_BITS
    acc_bits: int = catalog.DEFAULT_ACC_BITS
    layer_acc_bits: dict[str, int] = field(default_factory=dict)
    depthwise_method: str = catalog.DEFAULT_DEPTHWISE_METHOD
    first_method: str | None = None      # None: the recipe's method
    first_layer: str = "constrained"     # or "unconstrained"
    last_layer: str = "constrained"      # or "unconstrained"
    last_weight_bits: int = catalog.DEFAULT_LAST_WEIGHT_BITS
    # False builds the float twin of a network (same module names, plain torch layers),
    # used for float pre-training before EP-init and QAT.
    quantized: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown recipe {self.method!r}; valid: {', '.join(METHODS)}")
        if self.depthwise_method not in METHODS:
            raise ValueError(f"unknown depthwise_method {self.depthwise_method!r}; valid: {', '.join(METHODS)}")
        if self.first_method is not None and self.first_method not in METHODS:
            raise ValueError(f"unknown first_method {self.first_method!r}; valid: {', '.join(METHODS)}")
        for opt in ("first_layer", "last_layer"):
            if getattr(self, opt) not in ("constrained", "unconstrained"):
                raise ValueError(f"{opt} must be 'constrained' or 'unconstrained', got {getattr(self, opt)!r}")
        for name, bits in (("weight_bits", self.weight_bits), ("act_bits", self.act_bits),
                           ("input_bits", self.input_bits), ("last_weight_bits", self.last_weight_bits)):
            if not 1 <= bits <= 16:
                raise ValueError(f"{name}={bits} out of range 1..16")
        for name, p in {"acc_bits": self.acc_bits, **self.layer_acc_bits}.items():
            if not 2 <= p <= 64:
                raise ValueError(f"accumulator width {p} for {name!r} out of range 2..64")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def as_float(self) -> "Recipe":
        return dataclasses.replace(self, quantized=False)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        return cls(**d)

    # -- per-layer decisions -------------------------------------------------------------
    def layer_spec(self, name: str, *, input_bits: int, input_signed: bool, depthwise: bool = False,
                   first: bool = False, last: bool = False) -> LayerSpec:
        method = self.depthwise_method if depthwise and self.method != "qat" else self.method
        if first and self.first_method is not None:
            method = self.first_method
        unconstrained = (first and self.first_layer == "unconstrained") or (
            last and self.last_layer == "unconstrained")
        weight_bits = self.weight_bits
        if unconstrained:
            method = "qat"
            weight_bits = self.last_weight_bits if last else self.weight_bits
        acc_bits = self.layer_acc_bits.get(name, self.acc_bits) if method != "qat" else None
        return LayerSpec(name, method, weight_bits, input_bits, input_signed, acc_bits, depthwise)

    def _weight_kwargs(self, spec: LayerSpec) -> dict:
        kwargs = {"weight_quant": WEIGHT_QUANTS[spec.method], "weight_bit_width": spec.weight_bits}
        if spec.constrained:
            kwargs["weight_accumulator_bit_width"] = spec.acc_bits
        return kwargs

    # -- layer constructors used by every network ----------------------------------------
    def linear(self, spec: LayerSpec, in_features: int, out_features: int) -> nn.Module:
        if not self.quantized:
            layer = nn.Linear(in_features, out_features, bias=False)
        else:
            layer = qnn.QuantLinear(in_features, out_features, bias=False, **self._weight_kwargs(spec))
        layer.a2qflow_spec = spec
        return layer

    def conv2d(self, spec: LayerSpec, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
               padding: int = 0, groups: int = 1) -> nn.Module:
        shape = dict(stride=stride, padding=padding, groups=groups, bias=False)
        if not self.quantized:
            layer = nn.Conv2d(in_ch, out_ch, kernel, **shape)
        else:
            layer = qnn.QuantConv2d(in_ch, out_ch, kernel, **shape, **self._weight_kwargs(spec))
        layer.a2qflow_spec = spec
        return layer

    def input_quant(self, signed: bool) -> nn.Module:
        return self._act(SignedAct if signed else UnsignedAct, self.input_bits, qnn.QuantIdentity, nn.Identity)

    def relu(self, bits: int | None = None, output: bool = False) -> nn.Module:
        """A quantized ReLU; `output=True` for a network's last activation (returns a plain tensor)."""
        return self._act(UnsignedAct, bits or self.act_bits, qnn.QuantReLU, nn.ReLU, not output)

    def signed_act(self, bits: int | None = None) -> nn.Module:
        return self._act(SignedAct, bits or self.act_bits, qnn.QuantIdentity, nn.Identity)

    def _act(self, quant, bits, quant_cls, float_cls, return_quant_tensor=True) -> nn.Module:
        if not self.quantized:
            return float_cls()
        return quant_cls(act_quant=quant, bit_width=bits, return_quant_tensor=return_quant_tensor)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The recipe-built weight layers of a model, in definition order."""
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "a2qflow_spec")]
