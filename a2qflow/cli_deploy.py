"""`a2qflow package`, `a2qflow bench --sim`, `a2qflow deploy`: the deployment package, the
simulated-board benchmark, and the trip to a PYNQ board over ssh.

The benchmark always runs the package's own copy of the board code (`python -m
a2qflow_deploy` inside the package), here on the simulated board or on the board itself,
so what is measured is what ships. Remote access uses the OpenSSH client (`ssh`, `scp`).
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from a2qflow.deploy import MODULE_NAME as MODULE   # the board code's name inside a package

_SAFE_REMOTE = re.compile(r"^[A-Za-z0-9._/-]+$")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def ensure_package(run_dir: Path, checkpoint: str | None = None, samples: int = 500, force: bool = False) -> Path:
    """The run's package, (re)written when missing or older than the run's HW graph/bitfile."""
    from a2qflow.build_flows import package as pk

    try:
        if force or not package_is_current(run_dir):
            click.echo(f"writing the deployment package of {run_dir} ...", err=True)
            return pk.package_run(run_dir, checkpoint=checkpoint, max_samples=samples)
        return run_dir / pk.PACKAGE_DIR
    except (RuntimeError, ValueError, OSError) as err:   # PackageError, DatasetError, FINN's errors
        _fail(str(err))


def package_is_current(run_dir: Path) -> bool:
    """The package still matches the run: same HW graph, bitfile and hwh (checksums), and
    the board code of this a2qflow (an older copy makes the package stale too)."""
    from a2qflow.build_flows import package as pk
    from a2qflow.deploy.manifest import MANIFEST, sha256_file

    manifest_path = run_dir / pk.PACKAGE_DIR / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        graph, _ = pk.sim_graph(run_dir)
        files = manifest["files"]
    except (OSError, ValueError, KeyError, pk.PackageError):
        return False
    bitfile = pk.bitfile_sources(run_dir)
    sources = {manifest.get("hw_graph"): graph, **{f"{MODULE}/{src.name}": src for src in pk.deploy_sources()},
               **bitfile}
    shipped_code = {rel for rel in files if rel.startswith(f"{MODULE}/")}
    if shipped_code != {rel for rel in sources if rel.startswith(f"{MODULE}/")} or bool(manifest.get("bitfile")) != (
            bool(bitfile)):
        return False
    return all(rel in files and src.is_file() and files[rel]["sha256"] == sha256_file(src) for rel, src in sources.items())


@click.command("package")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="run folder of a finished `a2qflow build`")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="trained checkpoint whose predictions the board must reproduce (default: <run>/train/checkpoint.pt)")
@click.option("--samples", default=500, show_default=True, help="test samples shipped (from the test split)")
def package(run_dir: Path, checkpoint: str | None, samples: int) -> None:
    """Write <run>/package: bitfile (if built), driver settings, test set, host predictions, board code."""
    path = ensure_package(run_dir, checkpoint, samples, force=True)
    m = json.loads((path / "manifest.json").read_text())
    click.echo(f"package for {m['board']}: {path} ({len(m['files'])} files, {m['test_set']['samples']} test samples"
               f"{'' if m['bitfile'] else '; sim-only: ' + m['no_bitfile_reason']})")


def _bench_args(board: str | None, batch_sizes: str | None, repeats: int | None, latency_runs: int | None) -> list[str]:
    args = []
    for flag, value in (("--board", board), ("--batch-sizes", batch_sizes), ("--repeats", repeats),
                        ("--latency-runs", latency_runs)):
        if value is not None:
            args += [flag, str(value)]
    return args


@click.command("bench")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--sim", is_flag=True, help="run on the simulated board (required here: this host has no FPGA)")
@click.option("--board", default=None, help="simulate this board instead of the package's (shows the refusal)")
@click.option("--batch-sizes", default=None, help="comma list (default 1,4,16,64,256 on the simulated board)")
@click.option("--repeats", type=int, default=None, help="throughput runs per batch size")
@click.option("--latency-runs", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default <run>/reports/bench-sim")
def bench(run_dir: Path, sim: bool, board: str | None, batch_sizes: str | None, repeats: int | None,
          latency_runs: int | None, out: Path | None) -> None:
    """Benchmark the run's deployment package on the simulated board and print the report."""
    if not sim:
        _fail("this host has no FPGA board: use --sim, or `a2qflow deploy --run DIR --host user@board --bench`")
    pkg = ensure_package(run_dir)
    out = (out or run_dir / "reports" / "bench-sim").resolve()
    cmd = [sys.executable, "-m", MODULE, "bench", "--sim", "--out", str(out)]
    code = subprocess.call(cmd + _bench_args(board, batch_sizes, repeats, latency_runs), cwd=pkg)
    click.echo(f"reports: {out / 'bench.json'}, {out / 'bench.md'}", err=True)
    sys.exit(code)


# -- ssh -------------------------------------------------------------------------------------

@dataclass
class SshTarget:
    """An OpenSSH destination with the options every ssh/scp call shares."""

    host: str
    port: int | None = None
    identity: str | None = None
    options: list = field(default_factory=list)

    def _common(self, port_flag: str) -> list[str]:
        args = ["-o", "BatchMode=yes"]   # never hang on a password prompt
        for opt in self.options:
            args += ["-o", opt]
        if self.identity:
            args += ["-i", self.identity]
        if self.port:
            args += [port_flag, str(self.port)]
        return args

    def ssh(self, remote_command: str) -> list[str]:
        return ["ssh", *self._common("-p"), self.host, remote_command]

    def scp_to(self, local: Path, remote: str) -> list[str]:
        return ["scp", "-q", "-r", *self._common("-P"), str(local), f"{self.host}:{remote}"]

    def scp_from(self, remote: str, local: Path) -> list[str]:
        return ["scp", "-q", "-r", *self._common("-P"), f"{self.host}:{remote}", str(local)]


def _run(cmd: list[str], what: str, capture: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if proc.returncode != 0 and capture:
        _fail(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc


def _stage(pkg: Path, dest: Path) -> Path:
    """Only what the manifest lists (plus the manifest): no local reports or caches travel."""
    manifest = json.loads((pkg / "manifest.json").read_text())
    for rel in list(manifest["files"]) + ["manifest.json"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pkg / rel, dest / rel)
    return dest


def _board_command(remote_dir: str, python: str, sub: str, args: list[str]) -> str:
    return f"cd {shlex.quote(remote_dir)} && {python} -m {MODULE} {sub} {' '.join(shlex.quote(a) for a in args)}"


def _fetch_reports(target: SshTarget, remote_dir: str, dest: Path) -> Path | None:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(target.scp_from(f"{remote_dir}/reports", Path(tmp)), capture_output=True, text=True)
        got = Path(tmp) / "reports"
        if proc.returncode != 0 or not (got / "bench.json").is_file():
            click.echo(f"no benchmark report to bring back ({(proc.stderr or '').strip() or 'none written'})", err=True)
            return None
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("bench.json", "bench.md"):
            if (got / name).is_file():
                shutil.copyfile(got / name, dest / name)
    return dest


@click.command("deploy")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", required=True, help="ssh destination, e.g. xilinx@pynq")
@click.option("--port", "-p", type=int, default=None, help="ssh port")
@click.option("--identity", "-i", type=click.Path(exists=True, dir_okay=False), default=None, help="ssh private key")
@click.option("--ssh-option", "-o", "ssh_options", multiple=True, help="extra ssh/scp -o option (repeatable)")
@click.option("--remote-dir", default=None, help="package folder on the board (default a2qflow/<run name>, "
              "relative to the remote home)")
@click.option("--python", "remote_python", default="python3", show_default=True,
              help="the board's python command; PYNQ images need root for the FPGA, e.g. "
                   "'sudo -E /usr/local/share/pynq-venv/bin/python3'")
@click.option("--bench", "run_bench", is_flag=True, help="run the benchmark and bring the report back")
@click.option("--sim", is_flag=True, help="the far side runs the simulated board (a host with a2qflow; for tests)")
@click.option("--board", default=None, help="the board's name when its image does not set BOARD")
@click.option("--batch-sizes", default=None)
@click.option("--repeats", type=int, default=None)
@click.option("--latency-runs", type=int, default=None)
def deploy(run_dir: Path, host: str, port: int | None, identity: str | None, ssh_options: tuple[str, ...],
           remote_dir: str | None, remote_python: str, run_bench: bool, sim: bool, board: str | None,
           batch_sizes: str | None, repeats: int | None, latency_runs: int | None) -> None:
    """Copy the run's deployment package to a board over ssh, verify it there, and with
    --bench run the benchmark and bring the report back to <run>/reports/board."""
    for tool in ("ssh", "scp"):
        if shutil.which(tool) is None:
            _fail(f"{tool} not found: install the OpenSSH client")
    remote_dir = remote_dir or f"a2qflow/{run_dir.resolve().name}"
    if not _SAFE_REMOTE.match(remote_dir) or ".." in remote_dir.split("/"):
        _fail(f"--remote-dir {remote_dir!r}: use letters, digits, . _ - / only (no ..)")
    pkg = ensure_package(run_dir)
    _verify_local(pkg, sim)
    target = SshTarget(host, port, identity, list(ssh_options))
    parent = str(Path(remote_dir).parent)
    _run(target.ssh(f"mkdir -p {shlex.quote(parent)} && rm -rf {shlex.quote(remote_dir)}"), f"ssh {host}", capture=True)
    with tempfile.TemporaryDirectory() as tmp:
        _run(target.scp_to(_stage(pkg, Path(tmp) / "package"), remote_dir), f"scp to {host}", capture=True)
    click.echo(f"copied {pkg} to {host}:{remote_dir}")
    check_args = (["--sim"] if sim else []) + (["--board", board] if board else [])
    check = _run(target.ssh(_board_command(remote_dir, remote_python, "check", check_args)), f"check on {host}", True)
    click.echo(check.stdout.strip())
    if not run_bench:
        return
    args = (["--sim"] if sim else []) + _bench_args(board, batch_sizes, repeats, latency_runs)
    code = subprocess.call(target.ssh(_board_command(remote_dir, remote_python, "bench", args)))
    dest = _fetch_reports(target, remote_dir, run_dir / "reports" / ("board-sim" if sim else "board"))
    if dest:
        click.echo(f"report brought back: {dest / 'bench.json'}, {dest / 'bench.md'}")
    sys.exit(code)


def _verify_local(pkg: Path, sim: bool) -> None:
    """Checksums here first, and no copying of a package the board cannot run."""
    from a2qflow.deploy.errors import DeployError
    from a2qflow.deploy.manifest import load_manifest, verify_files

    try:
        manifest = load_manifest(pkg)
        verify_files(pkg, manifest)
    except DeployError as err:
        _fail(str(err))
    if not sim and not manifest.get("bitfile"):
        _fail(f"{pkg} is sim-only ({manifest.get('no_bitfile_reason')}): nothing a board can run. Build with "
              "`a2qflow build --flow bitstream` on a machine with Vivado, or pass --sim")


COMMANDS = (package, bench, deploy)
