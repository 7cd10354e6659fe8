"""The simulated board: pynq's call surface on the build host, with an accelerator behind it.

pynq 4.0 needs numpy<2 and cannot live in the host environment (numpy 2), so this is a
minimal stand-in with the surface the driver uses, not a `pynq.Device` subclass:
- `SimDevice.allocate` gives ndarray buffers with a `device_address` and separate "DRAM":
  what the CPU writes reaches the DMA only after `flush()`, what the DMA writes is seen only
  after `invalidate()`, as on a Zynq with cacheable buffers (a driver that forgets either
  gets stale data here too);
- `SimOverlay` has FINN's IODMA instances (`idma0`, `odma0`) with their AXI-lite registers;
  starting the input DMA reads the packed frames from "DRAM", runs the accelerator, and
  writes its packed output where the output DMA points.
The accelerator is, where the package carries one, the whole design stitched from FINN's RTL
and compiled with Verilator at build time (`RTLAccelerator`: cycle-accurate; the board's
clock advances by the simulated cycles, so throughput and latency come from the hardware
description at the board clock). Otherwise FINN's python execution of the HW graph
(`HWGraphAccelerator`: bit-exact, but its times are host wall clock, labelled so).
Only the build host runs this: it needs the compiled simulator or finn and qonnx.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DeployError
from .io_spec import IOSpec
from .manifest import Package
from .packing import pack, parse_dtype, unpack_int

AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4


class SimBuffer(np.ndarray):
    """A pynq buffer stand-in: the array is the CPU's (cached) view of device memory."""

    def __array_finalize__(self, obj) -> None:
        self.sim_device = getattr(obj, "sim_device", None)
        self.device_address = getattr(obj, "device_address", 0)

    @property
    def physical_address(self) -> int:
        return self.device_address

    def flush(self) -> None:
        self.sim_device.dram_write(self.device_address, self.tobytes())

    def invalidate(self) -> None:
        raw = self.sim_device.dram_read(self.device_address, self.nbytes)
        self[...] = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)

    sync_to_device = flush
    sync_from_device = invalidate

    def freebuffer(self) -> None:
        self.sim_device.free(self.device_address)

    close = freebuffer


class SimDevice:
    """Host memory standing in for the board's DRAM, with made-up physical addresses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._dram: dict[int, bytearray] = {}
        self._next = 0x1000_0000

    def allocate(self, shape, dtype=np.uint8, cacheable: bool = True, target=None, **kwargs) -> SimBuffer:
        buf = np.zeros(shape, dtype=dtype).view(SimBuffer)
        buf.sim_device, buf.device_address = self, self._next
        self._dram[self._next] = bytearray(buf.nbytes)
        self._next += (buf.nbytes + 0xFFF) & ~0xFFF or 0x1000   # page-aligned like CMA allocations
        return buf

    def free(self, address: int) -> None:
        self._dram.pop(address, None)

    def _region(self, address: int, nbytes: int) -> tuple[bytearray, int]:
        for base, mem in self._dram.items():
            if base <= address and address + nbytes <= base + len(mem):
                return mem, address - base
        raise DeployError(f"simulated DMA access to unallocated memory at {address:#x} (+{nbytes} bytes)")

    def dram_read(self, address: int, nbytes: int) -> bytes:
        mem, off = self._region(address, nbytes)
        return bytes(mem[off:off + nbytes])

    def dram_write(self, address: int, data: bytes) -> None:
        mem, off = self._region(address, len(data))
        mem[off:off + len(data)] = data


class SimIODMA:
    """FINN's IODMA_hls AXI-lite registers; `on_start` runs when ap_start is written."""

    def __init__(self, name: str, on_start: Callable[["SimIODMA"], None]) -> None:
        self.name, self._on_start = name, on_start
        self.regs = {0x00: AP_IDLE, 0x10: 0, 0x14: 0, 0x1C: 0}

    @property
    def address(self) -> int:
        return self.regs[0x10] | (self.regs[0x14] << 32)

    @property
    def frames(self) -> int:
        return self.regs[0x1C]

    def read(self, offset: int) -> int:
        return self.regs.get(offset, 0)

    def write(self, offset: int, value: int) -> None:
        if offset == 0x00:
            if value & AP_START:
                self.regs[0x00] = AP_START
                self._on_start(self)
            return
        self.regs[offset] = int(value) & 0xFFFFFFFF

    def finish(self) -> None:
        self.regs[0x00] = AP_DONE | AP_IDLE


class SimOverlay:
    """One input and one output IODMA around an accelerator function on packed frames."""

    def __init__(self, device: SimDevice, io, compute: Callable[[np.ndarray], np.ndarray]) -> None:
        self.device, self.io, self.compute = device, io, compute
        self.ip_dict = {}
        self._pending: list[np.ndarray] = []   # output frames the output DMA has not taken yet
        self._armed: SimIODMA | None = None
        for name in io.idma_names:
            self._add(SimIODMA(name, self._input_started))
        for name in io.odma_names:
            self._add(SimIODMA(name, self._output_started))
        if len(io.idma_names) != 1 or len(io.odma_names) != 1:
            raise DeployError("the simulated board models one input and one output DMA")

    def _add(self, dma: SimIODMA) -> None:
        setattr(self, dma.name, dma)
        self.ip_dict[dma.name] = {"type": "xilinx.com:hls:IODMA", "simulated": True}

    def _input_started(self, dma: SimIODMA) -> None:
        frame_bytes = int(np.prod(self.io.ishape_packed[0][1:]))
        raw = self.device.dram_read(dma.address, dma.frames * frame_bytes)
        packed = np.frombuffer(raw, dtype=np.uint8).reshape((dma.frames,) + tuple(self.io.ishape_packed[0][1:]))
        self._pending.extend(self.compute(packed))
        dma.finish()
        self._drain()

    def _output_started(self, dma: SimIODMA) -> None:
        self._armed = dma
        self._drain()

    def _drain(self) -> None:
        """Stream output frames into the armed output DMA's buffer once it has all it asked for."""
        dma = self._armed
        if dma is None or len(self._pending) < dma.frames:
            return
        frames, self._pending = self._pending[:dma.frames], self._pending[dma.frames:]
        self.device.dram_write(dma.address, np.ascontiguousarray(np.stack(frames), dtype=np.uint8).tobytes())
        self._armed = None
        dma.finish()


def _prepare_finn() -> None:
    """FINN writes into FINN_BUILD_DIR and ~/.finn unless told otherwise."""
    scratch = Path(tempfile.gettempdir()) / "a2qflow_sim_finn"
    scratch.mkdir(exist_ok=True)
    os.environ.setdefault("FINN_BUILD_DIR", str(scratch))
    os.environ.setdefault("FINN_SETTINGS", str(scratch / "finn_settings.yaml"))


def generalized(model):
    """The HW graph with `_hls`/`_rtl` nodes turned back into FINN's generic HW ops, which
    have python execution (specialized ones need cppsim/rtlsim: Vitis HLS or Vivado XSI).
    Same attributes, weights, thresholds and datatypes; only the execution backend differs."""
    for node in model.graph.node:
        for suffix, domain in (("_hls", ".hls"), ("_rtl", ".rtl")):
            if node.op_type.endswith(suffix) and node.domain.endswith(domain):
                node.op_type = node.op_type[:-len(suffix)]
                node.domain = node.domain[:-len(domain)]
    return model


class HWGraphAccelerator:
    """Packed input frames -> packed output frames through FINN python execution."""

    def __init__(self, graph_path: Path, io) -> None:
        _prepare_finn()
        try:
            from finn.core.onnx_exec import execute_onnx
            from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
            from qonnx.core.datatype import DataType
            from qonnx.core.modelwrapper import ModelWrapper
        except ImportError as err:
            raise DeployError(f"the simulated board needs finn-plus (the build host's environment): {err}") from None
        self._exec, self._pack, self._unpack = execute_onnx, finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
        self.model = generalized(ModelWrapper(str(graph_path)))
        self.io = io
        self.idt, self.odt = DataType[io.idt[0].name], DataType[io.odt[0].name]
        self.iname, self.oname = self.model.graph.input[0].name, self.model.graph.output[0].name
        self.frames_run = 0

    def __call__(self, packed: np.ndarray) -> list[np.ndarray]:
        n = len(packed)
        folded = self._unpack(np.ascontiguousarray(packed), self.idt, (n,) + self.io.ishape_folded[0][1:],
                              reverse_inner=True, reverse_endian=True)
        x = folded.reshape((n,) + self.io.ishape_normal[0][1:]).astype(np.float32)
        frames = []
        for i in range(n):  # the graph is built for batch 1, like the accelerator's frames
            y = self._exec(self.model, {self.iname: x[i:i + 1]})[self.oname]
            y_folded = np.asarray(y, dtype=np.float32).reshape((1,) + self.io.oshape_folded[0][1:])
            frames.append(np.asarray(self._pack(y_folded, self.odt, reverse_inner=True, reverse_endian=True))[0])
        self.frames_run += n
        return frames


class RTLAccelerator:
    """Packed input frames -> packed output frames through the package's compiled whole-design
    simulator (Verilator, build_flows.stitch): each call streams the frames through the RTL and
    adds the cycles it took to `cycles`."""

    def __init__(self, folder: Path, io) -> None:
        import json

        self.dir = Path(folder)
        self.design = json.loads((self.dir / "design.json").read_text())
        self.binary = self.dir / self.design["binary"]
        if not self.binary.is_file():
            raise DeployError(f"the package's simulator {self.binary} is missing")
        self.io = io
        self.in_dt, self.out_dt = parse_dtype(self.design["in_dtype"]), parse_dtype(self.design["out_dtype"])
        self.cycles = 0                 # simulated cycles of every frame run so far
        self.frames_run = 0

    def _words(self, key: str) -> int:
        return int(np.prod(self.design[key][1:-1]))

    def __call__(self, packed: np.ndarray) -> list[np.ndarray]:
        import subprocess

        n = len(packed)
        per_word_in, per_word_out = self.design["in_shape"][-1], self.design["out_shape"][-1]
        codes = unpack_int(np.ascontiguousarray(packed).reshape(n * self._words("in_shape"), -1), self.in_dt,
                           per_word_in)
        words = pack(codes, self.in_dt)
        words = np.pad(words, ((0, 0), (0, 4 * -(-self.design["in_width"] // 32) - words.shape[1])))
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "in.bin").write_bytes(words.tobytes())
            proc = subprocess.run([str(self.binary.resolve()), str(tmp / "in.bin"), str(tmp / "out.bin"),
                                   str(tmp / "times.bin"), str(n), str(self._words("in_shape")),
                                   str(self._words("out_shape")), "0"],
                                  cwd=self.dir, capture_output=True, text=True, timeout=3600)
            if proc.returncode:
                raise DeployError(f"the simulated accelerator failed (exit {proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-300:]}")
            cycles = int(proc.stdout.split("cycles=")[1].split()[0])
            out_bytes = 4 * -(-self.design["out_width"] // 32)
            out = np.fromfile(tmp / "out.bin", dtype=np.uint8).reshape(-1, out_bytes)
        values = unpack_int(out, self.out_dt, per_word_out).reshape(n * self._words("out_shape"), per_word_out)
        frames = pack(values, self.out_dt).reshape(n, -1)
        self.cycles += cycles
        self.frames_run += n
        return list(frames.reshape((n,) + tuple(self.io.oshape_packed[0][1:])))


class SimBoard:
    """The package's board, simulated: device, overlay and accelerator wired together, and
    the board's clock: simulated cycles at the board clock for the RTL accelerator, host wall
    clock for python execution."""

    def __init__(self, pkg: Package, compute: Callable | None = None) -> None:
        self.pkg = pkg
        self.clk_mhz = float(pkg.manifest["clk_mhz"])
        io = IOSpec.from_driver_information(pkg.driver_information())
        self.device = SimDevice(f"simulated {pkg.board}")
        rtl = pkg.manifest.get("accelerator_sim")
        if compute is not None:
            self.accelerator, self.cycle_accurate = compute, False
        elif rtl:
            self.accelerator, self.cycle_accurate = RTLAccelerator(pkg.root / rtl["dir"], io), True
        else:
            self.accelerator, self.cycle_accurate = HWGraphAccelerator(pkg.path("hw_graph"), io), False
        self.overlay = SimOverlay(self.device, io, self.accelerator)
        graph = pkg.manifest.get("hw_graph_step")
        graph = f"the HW graph saved after {graph}" if graph else "the final HW graph"
        if self.cycle_accurate:
            self.notes = [f"simulated {pkg.board}, cycle-accurate RTL: the whole accelerator stitched from FINN's RTL, "
                          f"simulated in Verilator; times are simulated cycles at {self.clk_mhz:g} MHz (DMA and "
                          "host-side packing not included)"]
        else:
            self.notes = [f"simulated {pkg.board}: every timing is host wall clock of FINN's python execution of "
                          f"{graph}, not a board measurement"]
        if pkg.driver_information().get("runtime_weights"):
            self.notes.append("runtime-writeable weights: the simulated accelerator takes them from the HW graph")

    def clock(self) -> float:
        """Seconds on the board's clock: simulated cycles / clock for the RTL accelerator."""
        if self.cycle_accurate:
            return self.accelerator.cycles / (self.clk_mhz * 1e6)
        return time.perf_counter()

    def allocate(self, shape, dtype=np.uint8, **kwargs) -> SimBuffer:
        return self.device.allocate(shape, dtype, **kwargs)
