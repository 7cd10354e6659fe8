"""FINN datatypes and the accelerator's stream packing, in plain numpy.

The layout is the one FINN's drivers use for DMA buffers (finnpy_to_packed_bytearray with
reverse_inner=True and reverse_endian=True): the innermost (folded) dimension of n values of
b bits forms one little-endian word in which value i occupies bits [i*b, (i+1)*b), padded
with zeros to whole bytes. Written from that definition, not copied: finn-plus-driver needs
qonnx and bitstring, which a board without it may lack. Tests check it against FINN's own
packing for every datatype the driver accepts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError

_INT_RE = re.compile(r"^(U?)INT(\d+)$")


@dataclass(frozen=True)
class DType:
    """One FINN DataType the driver can move: INTn, UINTn, BINARY, BIPOLAR, FLOAT32."""

    name: str
    bits: int
    kind: str           # "int", "uint", "binary", "bipolar", "float"

    @property
    def signed(self) -> bool:
        return self.kind in ("int", "bipolar", "float")

    @property
    def min(self) -> float:
        return {"int": -(2 ** (self.bits - 1)), "uint": 0, "binary": 0, "bipolar": -1}.get(self.kind, -np.inf)

    @property
    def max(self) -> float:
        return {"int": 2 ** (self.bits - 1) - 1, "uint": 2 ** self.bits - 1, "binary": 1,
                "bipolar": 1}.get(self.kind, np.inf)

    def check(self, x: np.ndarray, what: str = "input") -> None:
        """Refuse a numpy array this datatype cannot carry exactly (dtype, integrality, range)."""
        if self.kind == "float":
            if x.dtype != np.float32:
                raise InputError(f"{what}: the accelerator takes {self.name} as numpy float32, got {x.dtype}; "
                                 "convert explicitly (x.astype(np.float32))")
            if not np.all(np.isfinite(x)):
                raise InputError(f"{what}: contains NaN or infinity")
            return
        if x.dtype.kind not in "iuf":
            raise InputError(f"{what}: the accelerator takes {self.name} values, got numpy {x.dtype}")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise InputError(f"{what}: contains NaN or infinity")
        if x.dtype.kind == "f" and not np.all(np.floor(x) == x):
            raise InputError(f"{what}: the accelerator takes {self.name} (integers); got non-integer floats")
        if x.size and (x.min() < self.min or x.max() > self.max):
            raise InputError(f"{what}: values {x.min()}..{x.max()} outside {self.name}'s range {self.min}..{self.max}")
        if self.kind == "bipolar" and x.size and not np.all(np.abs(x) == 1):
            raise InputError(f"{what}: BIPOLAR takes only -1 and +1")


def parse_dtype(text: str) -> DType:
    """`DataType['UINT4']` (as settings.json writes it) or `UINT4`."""
    name = text.strip()
    if name.startswith("DataType["):
        name = name[len("DataType["):].rstrip("]").strip("'\"")
    match = _INT_RE.match(name)
    if match and 1 <= int(match.group(2)) <= 64:
        return DType(name, int(match.group(2)), "uint" if match.group(1) else "int")
    if name in ("BINARY", "BIPOLAR"):
        return DType(name, 1, name.lower())
    if name == "FLOAT32":
        return DType(name, 32, "float")
    raise ValueError(f"datatype {text!r} is not supported by a2qflow's driver (INTn, UINTn, BINARY, "
                     "BIPOLAR, FLOAT32); finn-plus-driver handles the others")


def packed_bytes(n: int, dt: DType) -> int:
    """Bytes of one packed word of n values."""
    return (n * dt.bits + 7) // 8


def _codes(values: np.ndarray, dt: DType) -> np.ndarray:
    """Each value's bit pattern as uint64 (two's complement for signed integers)."""
    if dt.kind == "float":
        return np.ascontiguousarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    ints = np.asarray(values).astype(np.int64)
    if dt.kind == "bipolar":
        ints = (ints + 1) // 2
    return ints.astype(np.uint64) & np.uint64((1 << dt.bits) - 1 if dt.bits < 64 else 2 ** 64 - 1)


def pack(values: np.ndarray, dt: DType) -> np.ndarray:
    """Pack the innermost dimension into uint8 words (see module docstring)."""
    values = np.asarray(values)
    lead, n = values.shape[:-1], values.shape[-1]
    codes = _codes(values, dt)
    if dt.bits in (8, 16, 32, 64):  # whole bytes: little-endian bytes of each value, in order
        return codes.astype(f"<u{dt.bits // 8}").view(np.uint8).reshape(*lead, n * dt.bits // 8)
    bits = np.unpackbits(codes.astype("<u8").view(np.uint8).reshape(*lead, n, 8), axis=-1, bitorder="little")
    bits = bits[..., :dt.bits].reshape(*lead, n * dt.bits)
    pad = packed_bytes(n, dt) * 8 - n * dt.bits
    if pad:
        bits = np.concatenate([bits, np.zeros((*lead, pad), np.uint8)], axis=-1)
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack_int(packed: np.ndarray, dt: DType, n: int) -> np.ndarray:
    """Inverse of `pack` for integer types, exact: n values per word as int64 (BINARY 0/1,
    BIPOLAR -1/+1). Extra bytes beyond a word's packed size (stream padding) are ignored."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    lead = packed.shape[:-1]
    if packed.shape[-1] < packed_bytes(n, dt):
        raise ValueError(f"packed words of {packed.shape[-1]} bytes cannot hold {n} x {dt.name}")
    if dt.kind == "float":
        raise ValueError("unpack_int: FLOAT32 is not an integer type")
    bits = np.unpackbits(packed, axis=-1, bitorder="little")[..., :n * dt.bits].reshape(*lead, n, dt.bits)
    codes = (bits.astype(np.uint64) << np.arange(dt.bits, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)
    if dt.kind == "bipolar":
        return codes.astype(np.int64) * 2 - 1
    signed = codes.astype(np.int64)
    if dt.kind == "int" and dt.bits < 64:
        signed[signed >= 2 ** (dt.bits - 1)] -= 2 ** dt.bits
    return signed


def unpack(packed: np.ndarray, dt: DType, n: int) -> np.ndarray:
    """Inverse of `pack`: n values per word, as float32 (FINN's container type)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if packed.shape[-1] != packed_bytes(n, dt):
        raise ValueError(f"packed words of {packed.shape[-1]} bytes cannot hold {n} x {dt.name}")
    if dt.kind == "float":
        return packed.reshape(*packed.shape[:-1], n * 4).view("<f4").astype(np.float32)
    return unpack_int(packed, dt, n).astype(np.float32)
