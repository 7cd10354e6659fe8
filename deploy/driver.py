"""The accelerator driver and the front the benchmark talks to.

Two drivers, one interface (`batch_size`, `execute`, `execute_on_buffers`,
`throughput_test`), the method names and report fields of finn-plus-driver's FINNDMAOverlay:
- finn-plus-driver's own `FINNDMAOverlay`, when it is installed (a PYNQ board with numpy<2);
- `DmaDriver`, a2qflow's driver for FINN's zynq-iodma shell, written against pynq's call
  surface (`Overlay` attributes with `read`/`write`, `allocate`, buffers with
  `flush`/`invalidate`/`device_address`). It runs where finn-plus-driver is absent and on the
  simulated board, whose stand-in offers the same surface.
`Accelerator` wraps either: it applies the CPU-side ops of the parent graph (Flatten, ...),
refuses bad input before any DMA, and batches.
"""
from __future__ import annotations

import importlib.util
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DeployError, InputError
from .io_spec import IOSpec, check_accel_input
from .manifest import Package
from .packing import DType, pack, unpack

DRIVERS = ("auto", "finn-plus", "a2qflow")
DMA_TIMEOUT_S = 30.0      # FINN's driver polls forever; a hung accelerator should fail the run instead


class DmaDriver:
    """a2qflow's driver for FINN's zynq-iodma accelerators (register protocol of FINN's
    IODMA: 0x10/0x14 buffer address, 0x1C frame count, 0x00 control/status with ap_start=1,
    ap_done=2, ap_idle=4)."""

    def __init__(self, overlay, allocate: Callable, io: IOSpec, *, fclk_mhz: Callable[[], float],
                 batch_size: int = 1, clock: Callable[[], float] = time.perf_counter) -> None:
        # `clock`: the board's time in seconds (a simulated board advances it by simulated cycles)
        self.overlay, self.allocate, self.io, self._fclk, self.clock = overlay, allocate, io, fclk_mhz, clock
        self.idma = [getattr(overlay, name) for name in io.idma_names]
        self.odma = [getattr(overlay, name) for name in io.odma_names]
        self.ibuf_packed_device: list = []
        self.obuf_packed_device: list = []
        self.obuf_packed: list = []
        self.batch_size = batch_size

    # -- shapes at the current batch size (FINN's driver's accessors) --
    def _batched(self, shape: tuple) -> tuple:
        return (self._batch_size,) + tuple(shape[1:])

    def ishape_normal(self, ind: int = 0) -> tuple:
        return self._batched(self.io.ishape_normal[ind])

    def ishape_folded(self, ind: int = 0) -> tuple:
        return self._batched(self.io.ishape_folded[ind])

    def ishape_packed(self, ind: int = 0) -> tuple:
        return self._batched(self.io.ishape_packed[ind])

    def oshape_normal(self, ind: int = 0) -> tuple:
        return self._batched(self.io.oshape_normal[ind])

    def oshape_folded(self, ind: int = 0) -> tuple:
        return self._batched(self.io.oshape_folded[ind])

    def oshape_packed(self, ind: int = 0) -> tuple:
        return self._batched(self.io.oshape_packed[ind])

    def idt(self, ind: int = 0) -> DType:
        return self.io.idt[ind]

    def odt(self, ind: int = 0) -> DType:
        return self.io.odt[ind]

    @property
    def num_inputs(self) -> int:
        return len(self.io.idt)

    @property
    def num_outputs(self) -> int:
        return len(self.io.odt)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        """Reallocate the DMA buffers for `value` frames."""
        if int(value) < 1:
            raise ValueError(f"batch size must be >= 1, got {value}")
        self._batch_size = int(value)
        self.ibuf_packed_device = [self.allocate(shape=self.ishape_packed(i), dtype=np.uint8, cacheable=True)
                                   for i in range(self.num_inputs)]
        self.obuf_packed_device = [self.allocate(shape=self.oshape_packed(o), dtype=np.uint8, cacheable=True)
                                   for o in range(self.num_outputs)]
        self.obuf_packed = [np.empty(self.oshape_packed(o), dtype=np.uint8) for o in range(self.num_outputs)]

    # -- the data path --
    def fold_input(self, ibuf_normal: np.ndarray, ind: int = 0) -> np.ndarray:
        check_accel_input(self.io, ibuf_normal, self._batch_size, ind)
        return ibuf_normal.reshape(self.ishape_folded(ind))

    def pack_input(self, ibuf_folded: np.ndarray, ind: int = 0) -> np.ndarray:
        return pack(ibuf_folded, self.idt(ind))

    def copy_input_data_to_device(self, data: np.ndarray, ind: int = 0) -> None:
        np.copyto(self.ibuf_packed_device[ind], data)
        self.ibuf_packed_device[ind].flush()    # the DMA reads DRAM, not the CPU cache

    def copy_output_data_from_device(self, data: np.ndarray, ind: int = 0) -> None:
        self.obuf_packed_device[ind].invalidate()
        np.copyto(data, self.obuf_packed_device[ind])

    def unpack_output(self, obuf_packed: np.ndarray, ind: int = 0) -> np.ndarray:
        return unpack(obuf_packed, self.odt(ind), self.io.oshape_folded[ind][-1]).reshape(self.oshape_folded(ind))

    def unfold_output(self, obuf_folded: np.ndarray, ind: int = 0) -> np.ndarray:
        return obuf_folded.reshape(self.oshape_normal(ind))

    def execute_on_buffers(self, asynch: bool = False, batch_size: int | None = None) -> None:
        batch_size = self._batch_size if batch_size is None else batch_size
        if batch_size > self._batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the allocated {self._batch_size}")
        for o, dma in enumerate(self.odma):
            if not dma.read(0x00) & 0x4:
                raise DeployError(f"output DMA {o} is not idle: a previous run did not finish")
        for dma, buf in list(zip(self.odma, self.obuf_packed_device)) + list(zip(self.idma, self.ibuf_packed_device)):
            # outputs armed first so the stream never stalls on a missing sink
            dma.write(0x10, buf.device_address & 0xFFFFFFFF)
            dma.write(0x14, (buf.device_address >> 32) & 0xFFFFFFFF)
            dma.write(0x1C, batch_size)
            dma.write(0x00, 1)
        if not asynch:
            self.wait_until_finished()

    def wait_until_finished(self, timeout_s: float = DMA_TIMEOUT_S) -> None:
        deadline = time.perf_counter() + timeout_s
        for o, dma in enumerate(self.odma):
            while not dma.read(0x00) & 0x2:
                if time.perf_counter() > deadline:
                    raise DeployError(f"output DMA {o} did not finish within {timeout_s:.0f} s: the accelerator "
                                      "hangs (wrong bitfile for these settings?)")

    def execute(self, input_npy):
        """Pack, copy, run, unpack: FINN's `execute`, with every input checked first."""
        inputs = input_npy if isinstance(input_npy, list) else [input_npy]
        if len(inputs) != self.num_inputs:
            raise InputError(f"the accelerator takes {self.num_inputs} input(s), got {len(inputs)}")
        for i, x in enumerate(inputs):
            check_accel_input(self.io, x, self._batch_size, i)
        for i, x in enumerate(inputs):
            self.copy_input_data_to_device(self.pack_input(self.fold_input(x, i), i), i)
        self.execute_on_buffers()
        outputs = []
        for o in range(self.num_outputs):
            self.copy_output_data_from_device(self.obuf_packed[o], o)
            outputs.append(self.unfold_output(self.unpack_output(self.obuf_packed[o], o), o))
        return outputs[0] if self.num_outputs == 1 else outputs

    def throughput_test(self) -> dict:
        """One run on the allocated buffers plus the driver's own overheads, with the field
        names of finn-plus-driver's throughput_test."""
        res: dict = {}
        start = self.clock()
        self.execute_on_buffers()
        runtime = self.clock() - start
        res["runtime[ms]"] = runtime * 1000
        res["throughput[images/s]"] = self._batch_size / runtime
        total_in = sum(int(np.prod(self.ishape_packed(i))) for i in range(self.num_inputs))
        total_out = sum(int(np.prod(self.oshape_packed(o))) for o in range(self.num_outputs))
        res["DRAM_in_bandwidth[MB/s]"] = total_in * 0.000001 / runtime
        res["DRAM_out_bandwidth[MB/s]"] = total_out * 0.000001 / runtime
        res["fclk[mhz]"] = self._fclk()
        res["batch_size"] = self._batch_size
        x = random_input(self.idt(), self.ishape_normal())
        timings = [("fold_input[ms]", lambda v: self.fold_input(v)), ("pack_input[ms]", self.pack_input),
                   ("copy_input_data_to_device[ms]", self.copy_input_data_to_device)]
        for key, fn in timings:
            start = time.perf_counter()
            x = fn(x)
            res[key] = (time.perf_counter() - start) * 1000
        out = self.obuf_packed[0]
        for key, fn in (("copy_output_data_from_device[ms]", lambda v: self.copy_output_data_from_device(out) or out),
                        ("unpack_output[ms]", self.unpack_output), ("unfold_output[ms]", self.unfold_output)):
            start = time.perf_counter()
            out = fn(out)
            res[key] = (time.perf_counter() - start) * 1000
        return res


def random_input(dt: DType, shape: tuple, seed: int = 0) -> np.ndarray:
    """Random values of a FINN datatype in its numpy container (float32 like FINN's)."""
    rng = np.random.default_rng(seed)
    if dt.kind == "float":
        return rng.standard_normal(shape).astype(np.float32)
    if dt.kind == "bipolar":
        return (rng.integers(0, 2, shape) * 2 - 1).astype(np.float32)
    return rng.integers(int(dt.min), int(dt.max) + 1, shape).astype(np.float32)


def hwh_clock_mhz(bitfile: Path) -> float | None:
    """The accelerator clock the bitstream's clocking wizard generates (FINN's Zynq shell
    drives the dataflow from clk_wiz_0), read from the .hwh beside the bitfile."""
    hwh = Path(bitfile).with_suffix(".hwh")
    try:
        root = ET.parse(hwh).getroot()
    except (OSError, ET.ParseError):
        return None
    for module in root.iter("MODULE"):
        if module.get("INSTANCE") == "clk_wiz_0":
            params = {p.get("NAME"): p.get("VALUE") for p in module.iter("PARAMETER")}
            value = params.get("CLKOUT1_OUT_FREQ") or params.get("CLKOUT1_REQUESTED_OUT_FREQ")
            return float(value) if value else None
    return None


def finn_plus_driver_version() -> str | None:
    if importlib.util.find_spec("finn_plus_driver") is None:
        return None
    from importlib import metadata

    try:
        return metadata.version("finn-plus-driver")
    except metadata.PackageNotFoundError:
        return "unknown version"


class Accelerator:
    """What the benchmark drives: model-level input (as the trained network takes it) in,
    model-level output out, through whichever driver was selected."""

    def __init__(self, driver, pkg: Package, *, backend: str, simulated: bool, notes: list | None = None,
                 cycle_accurate: bool = False) -> None:
        self.driver, self.pkg, self.backend, self.simulated = driver, pkg, backend, simulated
        self.cycle_accurate = cycle_accurate     # simulated board whose clock counts RTL cycles
        self.io = IOSpec.from_driver_information(pkg.driver_information())
        wrap = pkg.manifest["io"]
        self.model_input_shape = tuple(wrap["model_input_shape"])
        self.pre, self.post = wrap["pre"], wrap["post"]
        self.native = wrap.get("native_input")
        self.notes = notes or []

    def to_accel(self, x) -> np.ndarray:
        """Check model-level input and apply the parent graph's CPU-side ops."""
        if not isinstance(x, np.ndarray):
            raise InputError(f"expected a numpy array, got {type(x).__name__}")
        want = self.model_input_shape[1:]
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
            raise InputError(f"input shape {tuple(x.shape)}: the network takes (N, {', '.join(map(str, want))})")
        if x.dtype != np.float32:   # as the trained network takes it; no silent conversion
            raise InputError(f"input dtype {x.dtype}: the network takes float32; convert explicitly "
                             "(x.astype(np.float32))")
        if self.native is not None:   # the accelerator takes the dataset's integer codes
            x = np.rint(x / self.native["scale"]).astype(np.float32)
        for op in self.pre:
            x = apply_host_op(op, x)
        check_accel_input(self.io, x)
        return x

    def from_accel(self, y: np.ndarray) -> np.ndarray:
        for op in self.post:
            y = apply_host_op(op, y)
        return y

    def set_batch(self, n: int) -> None:
        if self.driver.batch_size != n:
            self.driver.batch_size = n

    def run(self, x: np.ndarray) -> np.ndarray:
        a = self.to_accel(x)
        self.set_batch(len(a))
        return self.from_accel(self.driver.execute(a))

    def predict(self, x: np.ndarray, batch: int) -> np.ndarray:
        return np.concatenate([self.run(x[i:i + batch]) for i in range(0, len(x), batch)])


def apply_host_op(op: dict, x: np.ndarray) -> np.ndarray:
    """One host-side op of the manifest (reshape, transpose, output scale or bias) on a batch."""
    if op["op"] == "reshape":
        return x.reshape((x.shape[0],) + tuple(op["shape"]))
    if op["op"] == "transpose":
        return np.transpose(x, op["perm"])
    if op["op"] in ("mul", "add"):   # the output dequantization: per-channel scale or bias
        const = np.asarray(op["const"], dtype=np.float32).reshape(op["shape"])
        return (x * const if op["op"] == "mul" else x + const).astype(np.float32)
    raise DeployError(f"CPU-side op {op['op']!r} in the manifest is not supported by this driver")


def open_accelerator(pkg: Package, *, sim: bool, driver: str = "auto", sim_compute: Callable | None = None
                     ) -> Accelerator:
    """The accelerator of `pkg`: on the simulated board, or on this board's FPGA with
    finn-plus-driver (auto, when installed) or a2qflow's driver on pynq. `sim_compute`
    replaces the simulated accelerator's HW graph (packed frames in, packed frames out)."""
    if driver not in DRIVERS:
        raise DeployError(f"unknown driver {driver!r}; valid: {', '.join(DRIVERS)}")
    if sim:
        if driver == "finn-plus":
            raise DeployError("finn-plus-driver drives real pynq hardware only; the simulated board runs a2qflow's "
                              "driver (--driver a2qflow or auto)")
        from .sim import SimBoard

        board = SimBoard(pkg, sim_compute)
        io = IOSpec.from_driver_information(pkg.driver_information())
        backend = ("a2qflow driver on the simulated board (cycle-accurate RTL, Verilator)" if board.cycle_accurate
                   else "a2qflow driver on the simulated board (FINN python execution of the HW graph)")
        return Accelerator(DmaDriver(board.overlay, board.allocate, io, fclk_mhz=lambda: board.clk_mhz,
                                     clock=board.clock), pkg, backend=backend, simulated=True, notes=board.notes,
                           cycle_accurate=board.cycle_accurate)
    version = finn_plus_driver_version()
    if driver == "finn-plus" and version is None:
        raise DeployError("--driver finn-plus: finn-plus-driver is not installed (pip install finn-plus-driver "
                          "in the board's PYNQ environment)")
    if driver != "a2qflow" and version is not None:
        return Accelerator(_finn_plus_overlay(pkg), pkg, backend=f"finn-plus-driver {version} (FINNDMAOverlay)",
                           simulated=False)
    return Accelerator(_pynq_dma_driver(pkg), pkg, backend="a2qflow driver on pynq", simulated=False)


def _finn_plus_overlay(pkg: Package):
    """finn-plus-driver's overlay, constructed the way its own CLI does from settings.json."""
    from finn_plus_driver import get_driver_class

    info = pkg.driver_information()
    driver_dir = pkg.path("settings").parent
    kwargs = dict(info)
    kwargs.setdefault("runtime_weight_dir", str(driver_dir / "runtime_weights"))
    kwargs.setdefault("mlo_weight_dir", str(driver_dir / "mlo_weights"))
    return get_driver_class(info["driver_type"])(str(pkg.path("bitfile")), **kwargs)


def _pynq_dma_driver(pkg: Package) -> DmaDriver:
    info = pkg.driver_information()
    if info.get("platform", "zynq-iodma") != "zynq-iodma":
        raise DeployError(f"a2qflow's driver handles FINN's zynq-iodma shell, not {info.get('platform')!r}; "
                          "install finn-plus-driver")
    if info.get("runtime_weights") or info.get("external_weights"):
        raise DeployError("this accelerator loads weights at run time (runtime-writeable or external weights); "
                          "finn-plus-driver does that: pip install finn-plus-driver in the board's PYNQ environment")
    try:
        import pynq
    except ImportError:
        raise DeployError("pynq is not installed: run on a PYNQ board (or use --sim on the build host)") from None
    overlay = pynq.Overlay(str(pkg.path("bitfile")))
    from pynq.ps import Clocks

    accel_clk = hwh_clock_mhz(pkg.path("bitfile"))
    if accel_clk is not None:
        Clocks.fclk0_mhz = 100.0   # FINN's shell feeds its clocking wizard a fixed 100 MHz (as finn-plus-driver)
    return DmaDriver(overlay, pynq.allocate, IOSpec.from_driver_information(info),
                     fclk_mhz=lambda: float(accel_clk or Clocks.fclk0_mhz))
