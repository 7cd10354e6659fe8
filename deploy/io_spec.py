"""The accelerator's input/output description from FINN's driver settings (settings.json's
io_shape_dict), shared by the driver and the simulated board."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DeployError, InputError
from .packing import packed_bytes, parse_dtype


@dataclass
class IOSpec:
    """settings.json's io_shape_dict: per input/output the datatype and the normal, folded
    and packed shapes (batch 1) and the IODMA instance name."""

    idt: list
    odt: list
    ishape_normal: list
    ishape_folded: list
    ishape_packed: list
    oshape_normal: list
    oshape_folded: list
    oshape_packed: list
    idma_names: list
    odma_names: list

    @classmethod
    def from_driver_information(cls, info: dict) -> "IOSpec":
        io = info["io_shape_dict"]
        tup = lambda shapes: [tuple(int(d) for d in s) for s in shapes]  # noqa: E731
        spec = cls([parse_dtype(t) for t in io["idt"]], [parse_dtype(t) for t in io["odt"]],
                   tup(io["ishape_normal"]), tup(io["ishape_folded"]), tup(io["ishape_packed"]),
                   tup(io["oshape_normal"]), tup(io["oshape_folded"]), tup(io["oshape_packed"]),
                   list(io.get("idma_names", ["idma0"])), list(io.get("odma_names", ["odma0"])))
        spec.check()
        return spec

    def check(self) -> None:
        """The packed shapes must be what packing the folded shapes gives (else the settings
        and this driver disagree on the layout: refuse rather than send garbage)."""
        for kind, dts, folded, packed in (("input", self.idt, self.ishape_folded, self.ishape_packed),
                                          ("output", self.odt, self.oshape_folded, self.oshape_packed)):
            for i, (dt, f, p) in enumerate(zip(dts, folded, packed)):
                if tuple(f[:-1]) + (packed_bytes(f[-1], dt),) != tuple(p):
                    raise DeployError(f"settings.json {kind} {i}: packed shape {p} does not match folded shape "
                                      f"{f} of {dt.name}")


def check_accel_input(io: IOSpec, x, batch: int | None = None, ind: int = 0) -> None:
    """Refuse input the accelerator cannot take exactly, before anything is copied."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"input {ind}: expected a numpy array, got {type(x).__name__}")
    want = io.ishape_normal[ind][1:]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want) or (batch is not None and x.shape[0] != batch):
        expect = f"({batch if batch is not None else 'N'}, {', '.join(map(str, want))})"
        raise InputError(f"input {ind}: shape {tuple(x.shape)}, the accelerator takes {expect}")
    io.idt[ind].check(x, f"input {ind}")
