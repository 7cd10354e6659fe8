"""Deployment package and benchmark: manifest and checksums, the simulated board reproducing
the host model's predictions, refusals (other board, damaged package, bad input, no
bitfile), interrupted runs, driver selection, and the ssh path against a loopback server."""
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from a2qflow.build_flows import package as pk
from a2qflow.build_flows.reference import Reference
from a2qflow.build_flows.run_folder import RunFolder
from a2qflow.cli import main as cli
from a2qflow.deploy import bench, driver, io_spec, manifest, packing, power, sim
from a2qflow.deploy.errors import BoardMismatchError, DeployError, InputError, PackageIntegrityError

THROUGHPUT_FIELDS = {"runtime[ms]", "throughput[images/s]", "DRAM_in_bandwidth[MB/s]", "DRAM_out_bandwidth[MB/s]",
                     "fclk[mhz]", "batch_size", "fold_input[ms]", "pack_input[ms]", "copy_input_data_to_device[ms]",
                     "copy_output_data_from_device[ms]", "unpack_output[ms]", "unfold_output[ms]"}
EARLIER = '{"status": "complete"}'
SMALL = bench.BenchConfig(batch_sizes=(1, 8), repeats=2, latency_runs=10, warmup=2, accuracy_batch=16)


@pytest.fixture(scope="module")
def run_dir(tfc_run):
    """The shared estimate-flow TFC build for Pynq-Z2 and its package (64 test samples)."""
    return tfc_run


@pytest.fixture
def pkg_copy(run_dir, tmp_path):
    dest = tmp_path / "package"
    shutil.copytree(run_dir / "package", dest)
    return dest


class Spy:
    """A simulated accelerator that counts frames and returns the host model's outputs."""

    def __init__(self, pkg_dir: Path):
        p = manifest.Package(pkg_dir, json.loads((pkg_dir / "manifest.json").read_text()))
        self.io = io_spec.IOSpec.from_driver_information(p.driver_information())
        x = np.load(pkg_dir / "data" / "test_x.npy")
        native = p.manifest["io"].get("native_input")
        if native:    # the accelerator sees the dataset's integer codes
            x = np.rint(x / native["scale"])
        self.x = x.reshape(len(x), -1)
        self.y = np.load(pkg_dir / "data" / "host_output.npy")
        for op in reversed(p.manifest["io"]["post"]):   # back to the accelerator's integer outputs
            const = np.asarray(op.get("const", 0), np.float32).reshape(op.get("shape", ()))
            self.y = {"mul": lambda y: np.rint(y / const), "add": lambda y: y - const}[op["op"]](self.y)
        self.frames = 0
        self.fail_after = None

    def __call__(self, packed):
        if self.fail_after is not None and self.frames >= self.fail_after:
            raise KeyboardInterrupt("simulated Ctrl-C")
        self.frames += len(packed)
        # one DMA word carries one fold (SIMD values) of the input
        words = packed.reshape(-1, self.io.ishape_packed[0][-1])
        x = packing.unpack(words, self.io.idt[0], self.io.ishape_folded[0][-1]).reshape(len(packed), -1)
        rows = [int(np.flatnonzero((self.x == xi).all(1))[0]) for xi in x]
        out = self.y[rows].reshape((len(rows),) + self.io.oshape_folded[0][1:])
        return list(packing.pack(out, self.io.odt[0]))


# -- the package ---------------------------------------------------------------------------

def test_package_command_writes_a_verified_package_for_a_finished_run(run_dir, tfc_a2qplus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "package")
    result = CliRunner().invoke(cli, ["package", "--run", str(run), "--checkpoint", str(tfc_a2qplus), "--samples", "16"])
    assert result.exit_code == 0, result.output
    m = json.loads((run / "package" / "manifest.json").read_text())
    assert m["test_set"]["samples"] == 16 and np.load(run / "package" / m["test_set"]["x"]).shape == (16, 1, 8, 8)
    assert manifest.load_package(run / "package", "Pynq-Z2", sim=True).manifest["board"] == "Pynq-Z2"   # checksums hold


def test_manifest_lists_every_file_with_its_checksum(run_dir):
    root = run_dir / "package"
    m = json.loads((root / "manifest.json").read_text())
    assert m["format"] == "a2qflow-deploy/1" and m["board"] == "Pynq-Z2" and m["part"] == "xc7z020clg400-1"
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(m["files"]) == on_disk
    for rel, entry in m["files"].items():
        assert entry["sha256"] == manifest.sha256_file(root / rel) and entry["bytes"] == (root / rel).stat().st_size
    # estimate flow: no bitfile, and the package says so
    assert m["bitfile"] is None and m["sim_only"] and "Vivado" in m["no_bitfile_reason"]
    # finn-plus MakePYNQDriver's settings, consistent with the driver's packing
    info = json.loads((root / "driver" / "settings.json").read_text())["driver_information"]
    assert info["driver_type"] == "FINNDMAOverlay" and info["platform"] == "zynq-iodma" and info["fclk_mhz"] == 100.0
    io = driver.IOSpec.from_driver_information(info)
    assert io.idma_names == ["idma0"] and io.odma_names == ["odma0"]
    # the test set comes from the training dataset, with labels and the host model's outputs
    ts = m["test_set"]
    assert ts["dataset"] == "digits" and ts["samples"] == 64 and "brevitas" in ts["host_model"]
    assert np.load(root / ts["x"]).shape == (64, 1, 8, 8) and np.load(root / ts["y"]).shape == (64,)
    assert np.load(root / ts["host_output"]).shape == (64, 10)
    # the board code is the repository's deploy/ sources, byte for byte
    for src in pk.deploy_sources():
        assert (root / "a2qflow_deploy" / src.name).read_bytes() == src.read_bytes()
    assert m["finn_estimate"]["estimated_throughput_fps"] > 0 and m["io"]["pre"][0]["op"] == "reshape"


HWH = """<?xml version="1.0"?><EDKSYSTEM><MODULES>
<MODULE INSTANCE="clk_wiz_0"><PARAMETERS><PARAMETER NAME="CLKOUT1_OUT_FREQ" VALUE="125.0"/></PARAMETERS></MODULE>
</MODULES></EDKSYSTEM>"""


def test_fake_bitfile_is_packaged_with_hwh_and_finns_driver_settings(run_dir, tmp_path):
    """What a Vivado build leaves in finn/ (bitfile/, driver/) goes into the package as is."""
    run = tmp_path / "run"
    for rel in ("run.json", "model.qonnx", "finn/intermediate_models", "finn/report"):
        src, dst = run_dir / rel, run / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    (run / "finn" / "bitfile").mkdir()
    (run / "finn" / "bitfile" / "finn-accel.bit").write_bytes(b"\x00bitstream" * 100)
    (run / "finn" / "bitfile" / "finn-accel.hwh").write_text(HWH)
    shutil.copytree(run_dir / "package" / "driver", run / "finn" / "driver")
    data = run_dir / "package" / "data"
    out = pk.write_package(RunFolder(run), "Pynq-Z2", Reference(
        np.load(data / "test_x.npy"), np.load(data / "host_output.npy"), True, "host model", np.load(data / "test_y.npy")))
    m = json.loads((out / "manifest.json").read_text())
    assert m["bitfile"] == "bitfile/finn-accel.bit" and not m["sim_only"] and "step_make_driver" in m["settings_source"]
    assert m["files"]["bitfile/finn-accel.hwh"]["sha256"] == manifest.sha256_file(out / "bitfile" / "finn-accel.hwh")
    assert manifest.load_package(out, "Pynq-Z2", sim=False).path("bitfile").is_file()
    assert driver.hwh_clock_mhz(out / "bitfile" / "finn-accel.bit") == 125.0
    with open(out / "bitfile" / "finn-accel.bit", "r+b") as f:   # one flipped byte
        f.seek(5)
        f.write(b"X")
    with pytest.raises(PackageIntegrityError, match="checksum mismatch.*bitfile/finn-accel.bit"):
        manifest.load_package(out, "Pynq-Z2", sim=False)


def test_package_refuses_a_board_the_run_was_not_built_for(run_dir):
    with pytest.raises(pk.PackageError, match="built for Pynq-Z2, not ZCU104"):
        pk.write_package(RunFolder(run_dir), "ZCU104", Reference(np.zeros((1, 64), np.float32),
                                                                 np.zeros((1, 10), np.float32), True, "zeros"))


def test_packing_matches_finn():
    from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    from qonnx.core.datatype import DataType
    from qonnx.util.basic import gen_finn_dt_tensor

    for name in ("BINARY", "BIPOLAR", "UINT2", "INT3", "UINT4", "INT4", "UINT7", "UINT8", "INT8", "INT12",
                 "INT16", "UINT24", "INT32", "FLOAT32"):
        for shape in ((1, 64, 1), (3, 5, 7), (2, 10, 4)):
            x = gen_finn_dt_tensor(DataType[name], shape).astype(np.float32)
            ref = finnpy_to_packed_bytearray(x, DataType[name], reverse_inner=True, reverse_endian=True)
            dt = packing.parse_dtype(f"DataType['{name}']")
            got = packing.pack(x, dt)
            assert got.shape == ref.shape and np.array_equal(got, ref), (name, shape)
            back = packed_bytearray_to_finnpy(np.ascontiguousarray(ref), DataType[name], shape, reverse_inner=True,
                                              reverse_endian=True)
            assert np.array_equal(packing.unpack(got, dt, shape[-1]), back)


def test_board_code_imports_nothing_host_only(tmp_path):
    """deploy/ runs on the board's Python: only the standard library and numpy at import,
    checked on the statements and by importing the shipped copy with host packages blocked."""
    host_only = ("torch", "brevitas", "finn", "qonnx", "onnx", "a2qflow", "click", "yaml", "pynq")
    (tmp_path / "a2qflow_deploy").mkdir()
    for src in pk.deploy_sources():
        shutil.copyfile(src, tmp_path / "a2qflow_deploy" / src.name)
        for node in ast.parse(src.read_text()).body:  # module-level statements only
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert not any(n.split(".")[0] in host_only for n in names), (src.name, names)
    blocker = ("import sys\nclass B:\n def find_spec(self, name, *a):\n"
               f"  if name.split('.')[0] in {host_only!r}: raise ImportError('host-only: ' + name)\n"
               "sys.meta_path.insert(0, B())\n"
               "import a2qflow_deploy.cli, a2qflow_deploy.bench, a2qflow_deploy.driver, a2qflow_deploy.sim, "
               "a2qflow_deploy.power\n")
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_board_code_parses_as_python_3_8():
    """PYNQ 2.7 images ship Python 3.8; PYNQ 3.x 3.10."""
    for src in pk.deploy_sources():
        ast.parse(src.read_text(), feature_version=(3, 8))


def test_power_from_fake_pynq_rails(monkeypatch):
    class Sensor:
        def __init__(self, value):
            self.value = value

    class Rail:
        def __init__(self, watts):
            self.power = Sensor(watts)

    fake = type(sys)("pynq")
    fake.get_rails = lambda: {"12V": Rail(5.0), "INT": Rail(1.0), "1V8": type("NoPower", (), {"power": None})()}
    monkeypatch.setitem(sys.modules, "pynq", fake)
    calls = []
    result = power.measure(lambda: calls.append(1), seconds=0.2, period_s=0.01)
    assert result["available"] and result["total_rail"] == "12V" and result["idle_W"] == result["busy_W"] == 5.0
    assert set(result["rails_busy_W"]) == {"12V", "INT"} and result["busy_runs"] == len(calls) > 0
    monkeypatch.setitem(sys.modules, "pynq", None)   # no pynq at all
    assert not power.measure(lambda: None, seconds=0.01)["available"]


# -- the simulated board -------------------------------------------------------------------

def test_simulated_board_reproduces_the_host_models_predictions(run_dir, tmp_path):
    """The HW graph, executed behind the board driver (pack, DMA registers, unpack), gives
    the host model's predictions on the shipped test set; every number is labelled."""
    report = bench.run_benchmark(run_dir / "package", sim=True, cfg=SMALL, out_dir=tmp_path, log=lambda s: None)
    assert report["status"] == "complete" and report["simulated"] and "SIMULATED" in report["label"]
    acc = report["accuracy"]
    assert acc["samples"] == 64 and acc["host_mismatches"] == 0 and acc["max_abs_diff_vs_host"] < 1e-4
    assert acc["accuracy"] == acc["host_accuracy"] and acc["accuracy"] > 0.5
    assert [row["batch_size"] for row in report["throughput"]] == [1, 8]
    for row in report["throughput"]:
        assert THROUGHPUT_FIELDS <= set(row) and row["simulated"] and row["fclk[mhz]"] == 100.0
    lat = report["latency_batch1"]
    assert lat["simulated"] and lat["runs"] == 10 and lat["warmup_excluded"] == 2
    assert lat["end_to_end"]["p50_ms"] <= lat["end_to_end"]["p90_ms"] <= lat["end_to_end"]["p99_ms"]
    assert report["power"] == {"available": False, "reason": "simulated board: no power sensors"}
    assert report["finn_estimate"]["estimated_throughput_fps"] > 0 and report["finn_estimate"]["clk_mhz"] == 100.0
    md = (tmp_path / "bench.md").read_text()
    assert "SIMULATED BOARD" in md and "throughput[images/s] (simulated)" in md and "INCOMPLETE" not in md
    assert json.loads((tmp_path / "bench.json").read_text())["status"] == "complete"
    assert not list(tmp_path.glob(".*.tmp"))


def test_sim_dma_sees_only_flushed_data(run_dir):
    """The simulated DRAM is separate from the CPU's view: unflushed writes do not reach it."""
    dev = sim.SimDevice("test")
    buf = dev.allocate((4,), np.uint8)
    buf[:] = 7
    assert dev.dram_read(buf.device_address, 4) == b"\0" * 4
    buf.flush()
    assert dev.dram_read(buf.device_address, 4) == b"\7" * 4
    dev.dram_write(buf.device_address, b"\1\2\3\4")
    assert list(buf) == [7] * 4
    buf.invalidate()
    assert list(buf) == [1, 2, 3, 4]


def test_interrupted_benchmark_leaves_no_complete_report(pkg_copy, tmp_path):
    spy = Spy(pkg_copy)
    spy.fail_after = 40   # mid-way through the accuracy pass
    with pytest.raises(KeyboardInterrupt):
        bench.run_benchmark(pkg_copy, sim=True, cfg=SMALL, out_dir=tmp_path, log=lambda s: None, sim_compute=spy)
    report = json.loads((tmp_path / "bench.interrupted.json").read_text())
    assert report["status"] == "interrupted" and "accuracy" not in report
    assert "INCOMPLETE" in (tmp_path / "bench.interrupted.md").read_text()
    assert not (tmp_path / "bench.json").exists() and not list(tmp_path.glob("bench.running.*"))
    assert not list(tmp_path.glob(".*.tmp"))


# -- refusals ------------------------------------------------------------------------------

def test_package_for_another_board_refuses_to_load(pkg_copy, tmp_path):
    with pytest.raises(BoardMismatchError, match=r"built for Pynq-Z2.*this board is ZCU104"):
        manifest.load_package(pkg_copy, "ZCU104", sim=True)
    with pytest.raises(BoardMismatchError, match="cannot tell which board"):
        manifest.load_package(pkg_copy, None, sim=False)
    manifest.load_package(pkg_copy, "pynqz2", sim=True)   # PYNQ's spelling of the same board
    # through the board's CLI: exit 2, a report that says failed, and an earlier complete report kept
    from a2qflow.deploy.cli import main

    (tmp_path / "bench.json").write_text(EARLIER)
    assert main(["bench", "--package", str(pkg_copy), "--sim", "--board", "ZCU104", "--out", str(tmp_path)]) == 2
    report = json.loads((tmp_path / "bench.failed.json").read_text())
    assert report["status"] == "failed" and "ZCU104" in report["error"] and "Pynq-Z2" in report["error"]
    assert (tmp_path / "bench.json").read_text() == EARLIER


def test_damaged_package_is_refused_naming_the_file(pkg_copy):
    settings = pkg_copy / "driver" / "settings.json"
    settings.write_text(settings.read_text().replace('"fclk_mhz": 100.0', '"fclk_mhz": 200.0'))
    (pkg_copy / "data" / "test_x.npy").unlink()
    with pytest.raises(PackageIntegrityError) as err:
        manifest.load_package(pkg_copy, "Pynq-Z2", sim=True)
    assert "missing: data/test_x.npy" in str(err.value) and "checksum mismatch" in str(err.value)
    assert "driver/settings.json" in str(err.value)
    (pkg_copy / "manifest.json").write_text("{not json")
    with pytest.raises(PackageIntegrityError, match="not JSON"):
        manifest.load_package(pkg_copy, "Pynq-Z2", sim=True)


def test_sim_only_package_refuses_hardware(pkg_copy):
    with pytest.raises(DeployError, match="no bitfile.*--sim"):
        manifest.load_package(pkg_copy, "Pynq-Z2", sim=False)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 1, 8, 8), np.float64), "float32"),
    (np.zeros((2, 8, 8, 1), np.float32), r"shape \(2, 8, 8, 1\)"),      # NHWC instead of NCHW
    (np.zeros((2, 64), np.float32), "shape"),
    (np.full((2, 1, 8, 8), np.nan, np.float32), "NaN"),
    ([[0.0] * 64], "numpy array"),
])
def test_bad_input_is_refused_before_any_dma(pkg_copy, bad, message):
    spy = Spy(pkg_copy)
    acc = driver.open_accelerator(manifest.load_package(pkg_copy, "Pynq-Z2", sim=True), sim=True, sim_compute=spy)
    with pytest.raises(InputError, match=message):
        acc.run(bad)
    idma = acc.driver.idma[0]
    assert spy.frames == 0 and idma.regs[0x10] == 0 and idma.regs[0x00] == sim.AP_IDLE
    # the driver itself checks too (batch size, dtype, value range of integer inputs)
    with pytest.raises(InputError, match="shape"):
        acc.driver.execute(np.zeros((3, 64), np.float32))
    assert spy.frames == 0
    good = np.load(pkg_copy / "data" / "test_x.npy")[:2]
    host = np.load(pkg_copy / "data" / "host_output.npy")[:2]   # brevitas' float scale: equal up to rounding
    assert np.allclose(acc.run(good), host, rtol=1e-6, atol=1e-6) and spy.frames == 2


def test_integer_datatypes_refuse_out_of_range_values():
    dt = packing.parse_dtype("DataType['UINT4']")
    dt.check(np.array([0, 15], np.uint8))
    for bad, message in ((np.array([16.0]), "outside"), (np.array([1.5]), "non-integer"), (np.array(["a"]), "numpy")):
        with pytest.raises(InputError, match=message):
            dt.check(bad)
    with pytest.raises(ValueError, match="not supported"):
        packing.parse_dtype("DataType['FIXED<8,4>']")


# -- driver selection on a board -----------------------------------------------------------

def _as_if_built(pkg_copy) -> manifest.Package:
    """The package as a bitstream build would have it (a placeholder bitfile: nothing is flashed)."""
    m = json.loads((pkg_copy / "manifest.json").read_text())
    (pkg_copy / "bitfile").mkdir()
    (pkg_copy / "bitfile" / "finn-accel.bit").write_bytes(b"bit")
    m.update(bitfile="bitfile/finn-accel.bit", hwh="bitfile/finn-accel.hwh", sim_only=False)
    return manifest.Package(pkg_copy, m)


def test_fake_finn_plus_driver_is_called_with_the_package_settings(pkg_copy, tmp_path, monkeypatch):
    fake = tmp_path / "site" / "finn_plus_driver"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "CALLS = []\nclass FINNDMAOverlay:\n"
        "    def __init__(self, bitfile_name, **kwargs):\n        CALLS.append((bitfile_name, kwargs))\n"
        "def get_driver_class(name):\n    assert name == 'FINNDMAOverlay'\n    return FINNDMAOverlay\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    acc = driver.open_accelerator(_as_if_built(pkg_copy), sim=False)
    import finn_plus_driver

    bitfile, kwargs = finn_plus_driver.CALLS[0]
    assert acc.backend.startswith("finn-plus-driver") and bitfile.endswith("bitfile/finn-accel.bit")
    assert kwargs["platform"] == "zynq-iodma" and kwargs["io_shape_dict"]["idma_names"] == ["idma0"]
    assert kwargs["runtime_weight_dir"] == str(pkg_copy / "driver" / "runtime_weights")
    with pytest.raises(DeployError, match="finn-plus-driver drives real pynq"):
        driver.open_accelerator(manifest.load_package(pkg_copy, "Pynq-Z2", sim=True), sim=True, driver="finn-plus")
    sys.modules.pop("finn_plus_driver", None)


def test_a2qflow_driver_without_pynq_says_what_is_missing(pkg_copy):
    with pytest.raises(DeployError, match="pynq is not installed"):
        driver.open_accelerator(_as_if_built(pkg_copy), sim=False, driver="a2qflow")


# -- host commands ---------------------------------------------------------------------------

def test_package_goes_stale_when_the_board_code_changes(run_dir, tmp_path, monkeypatch):
    from a2qflow.build_flows.package import package_is_current

    assert package_is_current(RunFolder(run_dir))
    extra = tmp_path / "newmodule.py"
    extra.write_text("# newer board code\n")
    sources = sorted([*pk.deploy_sources(), extra])
    monkeypatch.setattr(pk, "deploy_sources", lambda: sources)
    assert not package_is_current(RunFolder(run_dir))


def test_host_bench_command_runs_the_shipped_code_on_the_simulated_board(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "--run", str(run_dir)])
    assert result.exit_code == 2 and "use --sim" in result.output   # no FPGA here: --sim required
    result = runner.invoke(cli, ["bench", "--run", str(run_dir), "--sim", "--batch-sizes", "1,4", "--repeats", "1",
                                 "--latency-runs", "5", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["status"] == "complete" and report["accuracy"]["host_mismatches"] == 0
    assert report["package"] == str((run_dir / "package").resolve())


def test_deploy_refuses_a_sim_only_package_before_copying(run_dir):
    result = CliRunner().invoke(cli, ["deploy", "--run", str(run_dir), "--host", "nobody@127.0.0.1", "-p", "1"])
    assert result.exit_code == 1 and "sim-only" in result.output and "--flow bitstream" in result.output


@pytest.mark.slow
def test_deploy_over_ssh_to_a_fake_board_on_loopback(run_dir, tmp_path):
    """`a2qflow deploy` with the OpenSSH client against a loopback server whose commands are
    the far side (sshd if installed, else asyncssh); the far side runs the simulated board.
    The board's own folders survive: an existing folder a2qflow did not create is refused, and
    redeploying into a2qflow's folder deletes only the files its mark lists."""
    import ssh_loopback   # tests/ is on sys.path (pytest's rootdir conftest)

    server = ssh_loopback.start(tmp_path / "server", {"BOARD": "Pynq-Z2"})
    try:
        def remote(rel):
            return str(server.home / rel) if server.kind == "sshd" else rel

        base = ["deploy", "--run", str(run_dir), "--host", "xilinx@127.0.0.1", "-p", str(server.port), "-i",
                str(server.client_key), "--python", sys.executable]
        for opt in server.ssh_options():
            base += ["-o", opt]
        # somebody's folder on the board: refused by name, nothing in it touched
        theirs = server.home / "work"
        theirs.mkdir()
        (theirs / "notes.txt").write_text("keep me")
        result = CliRunner().invoke(cli, base + ["--sim", "--remote-dir", remote("work")])
        assert result.exit_code == 1 and "exists and was not created by a2qflow deploy" in result.output
        assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
        for bad in (".", "..", "a/../../x"):
            result = CliRunner().invoke(cli, base + ["--sim", "--remote-dir", bad])
            assert result.exit_code == 1 and "--remote-dir" in result.output

        args = base + ["--remote-dir", remote("boards/demo")]
        result = CliRunner().invoke(cli, args + ["--bench", "--sim", "--batch-sizes", "1,4", "--repeats", "1",
                                                 "--latency-runs", "5"])
        assert result.exit_code == 0, result.output
        far = server.home / "boards" / "demo"
        assert (far / "manifest.json").is_file() and (far / "a2qflow_deploy" / "bench.py").is_file()
        assert (far / ".a2qflow-deploy").is_file() and not list(far.rglob("__pycache__"))
        back = json.loads((run_dir / "reports" / "board-sim" / "bench.json").read_text())
        assert back["status"] == "complete" and back["simulated"] and back["accuracy"]["host_mismatches"] == 0
        assert back["package"] == str(far.resolve())
        # a user's file inside a2qflow's folder survives a redeploy; a2qflow's own files are replaced
        (far / "my_results.csv").write_text("mine")
        (far / "a2qflow_deploy" / "bench.py").write_text("# stale copy")
        result = CliRunner().invoke(cli, args + ["--sim"])
        assert result.exit_code == 0, result.output
        assert (far / "my_results.csv").read_text() == "mine"
        assert (far / "a2qflow_deploy" / "bench.py").read_bytes() == (run_dir / "package" / "a2qflow_deploy" /
                                                                      "bench.py").read_bytes()
        # the far side refuses a package for another board, naming both
        result = CliRunner().invoke(cli, args + ["--sim", "--board", "ZCU104"])
        assert result.exit_code == 1 and "Pynq-Z2" in result.output and "ZCU104" in result.output
    finally:
        server.stop()


def test_ssh_calls_carry_timeouts_and_keepalives():
    from a2qflow.build_flows.board import SshTarget

    cmd = " ".join(SshTarget("xilinx@pynq", 22).ssh("true"))
    assert "ConnectTimeout=15" in cmd and "ServerAliveInterval=15" in cmd and "BatchMode=yes" in cmd
    assert "ConnectTimeout=15" in " ".join(SshTarget("h").scp_to([Path("a")], "d/"))
