"""The build host's side of the board: the simulated-board benchmark of a run's package, and
the trip to a PYNQ board over ssh (copy, verify, benchmark, bring the report back).

The benchmark always runs the package's own copy of the board code (`python -m
a2qflow_deploy` inside the package), here on the simulated board or on the board itself,
so what is measured is what ships. Remote access uses the OpenSSH client (`ssh`, `scp`),
every call with a connect timeout, keep-alives and an overall timeout.

On the board, `deploy` writes only into a folder it created itself and marked with
`.a2qflow-deploy` (the list of files it wrote there). An existing folder without that mark
is refused by name; replacing a marked one deletes only the files its mark lists.
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
from typing import Callable

from a2qflow.deploy import MODULE_NAME
from a2qflow.errors import A2qflowError

from .package import ensure_package
from .run_folder import BENCH_SIM, RunFolder

REMOTE_MARK = ".a2qflow-deploy"
# what the board code writes into its package folder besides the package (bench reports)
BOARD_OUTPUTS = tuple(f"reports/bench{status}.{ext}" for status in ("", ".failed", ".interrupted", ".running")
                      for ext in ("json", "md"))
_SAFE_REMOTE = re.compile(r"^[A-Za-z0-9._/-]+$")
CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 15
COPY_TIMEOUT_S = 900.0
CHECK_TIMEOUT_S = 300.0


class BoardError(A2qflowError, RuntimeError):
    """The board could not be reached or refused what was asked; the message says which."""


@dataclass
class BenchArgs:
    """Benchmark settings passed to the board code (None: its default)."""
    board: str | None = None
    batch_sizes: str | None = None
    repeats: int | None = None
    latency_runs: int | None = None

    def validate(self) -> "BenchArgs":
        """Refused here, before a package is written or a report touched."""
        if self.batch_sizes is not None:
            try:
                sizes = [int(v) for v in self.batch_sizes.split(",")]
            except ValueError:
                sizes = []
            if not sizes or min(sizes) < 1:
                raise BoardError(f"--batch-sizes {self.batch_sizes!r}: expected a comma list of positive integers, "
                                 "e.g. 1,8,64")
        for name in ("repeats", "latency_runs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BoardError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        if self.board is not None:
            from a2qflow.hw_configs import get_board

            get_board(self.board)
        return self

    def argv(self) -> list[str]:
        out = []
        for flag, value in (("--board", self.board), ("--batch-sizes", self.batch_sizes), ("--repeats", self.repeats),
                            ("--latency-runs", self.latency_runs)):
            if value is not None:
                out += [flag, str(value)]
        return out


def bench_sim(folder: RunFolder, args: BenchArgs, out: Path | None = None, log: Callable[[str], None] = print) -> int:
    """Benchmark the run's package on the simulated board (the package's own board code in a
    child process); returns its exit code. Reports: <run>/reports/bench-sim/bench.json on
    success, bench.failed.json / bench.interrupted.json otherwise (an earlier bench.json stays)."""
    args.validate()
    if not folder.is_run():
        raise BoardError(f"{folder.root} is not an a2qflow run folder (no run.json)")
    pkg = ensure_package(folder, log=log)
    out = (out or folder.report(BENCH_SIM)).resolve()
    cmd = [sys.executable, "-m", MODULE_NAME, "bench", "--sim", "--out", str(out), *args.argv()]
    proc = subprocess.Popen(cmd, cwd=pkg)
    try:
        return proc.wait()
    except BaseException:   # Ctrl-C reaches the child too (same process group); SIGTERM may not
        proc.terminate()
        proc.wait(timeout=30)
        raise


@dataclass
class SshTarget:
    """An OpenSSH destination with the options every ssh/scp call shares."""

    host: str
    port: int | None = None
    identity: str | None = None
    options: list = field(default_factory=list)

    def _common(self, port_flag: str) -> list[str]:
        args = ["-o", "BatchMode=yes",                       # never hang on a password prompt
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",   # an unreachable host fails in seconds
                "-o", f"ServerAliveInterval={KEEPALIVE_S}", "-o", "ServerAliveCountMax=4"]
        for opt in self.options:
            args += ["-o", opt]
        if self.identity:
            args += ["-i", self.identity]
        if self.port:
            args += [port_flag, str(self.port)]
        return args

    def ssh(self, remote_command: str) -> list[str]:
        return ["ssh", *self._common("-p"), self.host, remote_command]

    def scp_to(self, local: list[Path], remote: str) -> list[str]:
        return ["scp", "-q", "-r", *self._common("-P"), *map(str, local), f"{self.host}:{remote}"]

    def scp_from(self, remote: str, local: Path) -> list[str]:
        return ["scp", "-q", "-r", *self._common("-P"), f"{self.host}:{remote}", str(local)]


def _call(cmd: list[str], what: str, timeout: float | None, capture: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BoardError(f"{what}: no answer within {timeout:.0f} s") from None
    if proc.returncode != 0 and capture:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise BoardError(f"{what} failed (exit {proc.returncode}): {detail[-1] if detail else 'no message'}")
    return proc


def check_remote_dir(remote_dir: str) -> str:
    if not _SAFE_REMOTE.match(remote_dir) or ".." in remote_dir.split("/") or remote_dir.strip("/.") == "":
        raise BoardError(f"--remote-dir {remote_dir!r}: use a folder path of letters, digits, . _ - / "
                         "(no .., not the home folder itself)")
    return remote_dir


def prepare_remote_command(remote_dir: str) -> str:
    """POSIX shell run on the board: refuse an existing folder a2qflow did not create (no
    mark); in one it did, delete the files its mark lists and the folders left empty; then
    make sure the folder exists."""
    d = shlex.quote(remote_dir)
    return (f"d={d}; "
            f'if [ -e "$d" ] && [ ! -f "$d/{REMOTE_MARK}" ]; then '
            f'echo "A2QFLOW-REFUSED: $d exists and was not created by a2qflow deploy" >&2; exit 3; fi; '
            f'if [ -f "$d/{REMOTE_MARK}" ]; then '
            f'while IFS= read -r f; do case "$f" in ""|/*|*..*) continue;; esac; rm -f -- "$d/$f"; '
            f'done < "$d/{REMOTE_MARK}"; rm -f -- "$d/{REMOTE_MARK}"; '
            f'find "$d" -depth -mindepth 1 -type d -empty -exec rmdir {{}} \\; ; fi; '
            f'mkdir -p "$d"')


def _stage(pkg: Path, dest: Path) -> list[Path]:
    """Only what the manifest lists (plus the manifest and the mark): no local reports or
    caches travel. Returns the top-level entries to copy."""
    manifest = json.loads((pkg / "manifest.json").read_text())
    listed = list(manifest["files"]) + ["manifest.json"]
    for rel in listed:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pkg / rel, dest / rel)
    (dest / REMOTE_MARK).write_text("\n".join(listed + list(BOARD_OUTPUTS) + [""]))
    return sorted(dest.iterdir())


def _board_command(remote_dir: str, python: str, sub: str, args: list[str]) -> str:
    # no __pycache__ on the board: the folder then holds only files the mark lists
    return (f"cd {shlex.quote(remote_dir)} && PYTHONDONTWRITEBYTECODE=1 {python} -m {MODULE_NAME} {sub} "
            + " ".join(shlex.quote(a) for a in args))


def _fetch_reports(target: SshTarget, remote_dir: str, dest: Path, log) -> Path | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run(target.scp_from(f"{remote_dir}/reports", Path(tmp)), capture_output=True,
                                  text=True, timeout=COPY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log("no benchmark report brought back: the copy timed out")
            return None
        got = Path(tmp) / "reports"
        names = [n for n in (Path(p).name for p in BOARD_OUTPUTS) if (got / n).is_file()]
        if proc.returncode != 0 or not names:
            log(f"no benchmark report to bring back ({(proc.stderr or '').strip() or 'none written'})")
            return None
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(got / name, dest / name)
    return dest


@dataclass
class DeployConfig:
    target: SshTarget
    remote_dir: str | None = None      # default a2qflow/<run name>, relative to the remote home
    python: str = "python3"
    bench: bool = False
    sim: bool = False                  # the far side runs the simulated board
    bench_args: BenchArgs = field(default_factory=BenchArgs)
    bench_timeout_s: float = 7200.0


def deploy(folder: RunFolder, cfg: DeployConfig, log: Callable[[str], None] = print) -> int:
    """Copy the run's package to the board, verify it there, and with `bench` run the
    benchmark and bring the report back to <run>/reports/board (board-sim with `sim`).
    Returns the benchmark's exit code (0 without `bench`)."""
    from a2qflow.deploy.errors import DeployError
    from a2qflow.deploy.manifest import load_manifest, verify_files

    for tool in ("ssh", "scp"):
        if shutil.which(tool) is None:
            raise BoardError(f"{tool} not found: install the OpenSSH client")
    cfg.bench_args.validate()
    remote_dir = check_remote_dir(cfg.remote_dir or f"a2qflow/{folder.root.resolve().name}")
    if not folder.is_run():
        raise BoardError(f"{folder.root} is not an a2qflow run folder (no run.json)")
    pkg = ensure_package(folder, log=log)
    try:   # checksums here first, and no copying of a package the board cannot run
        manifest = load_manifest(pkg)
        verify_files(pkg, manifest)
    except DeployError as err:
        raise BoardError(str(err)) from None
    if not cfg.sim and not manifest.get("bitfile"):
        raise BoardError(f"{pkg} is sim-only ({manifest.get('no_bitfile_reason')}): nothing a board can run. Build "
                         "with `a2qflow build --flow bitstream` on a machine with Vivado, or pass --sim")
    target = cfg.target
    prepared = subprocess.run(target.ssh(prepare_remote_command(remote_dir)), capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S)
    if prepared.returncode == 3 and "A2QFLOW-REFUSED" in prepared.stderr:
        raise BoardError(f"{target.host}:{remote_dir} exists and was not created by a2qflow deploy; "
                         "give another --remote-dir (nothing was changed there)")
    if prepared.returncode != 0:
        detail = (prepared.stderr or prepared.stdout).strip().splitlines()
        raise BoardError(f"ssh {target.host} failed (exit {prepared.returncode}): {detail[-1] if detail else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        _call(target.scp_to(_stage(pkg, Path(tmp)), remote_dir + "/"), f"scp to {target.host}", COPY_TIMEOUT_S)
    log(f"copied {pkg} to {target.host}:{remote_dir}")
    check_args = (["--sim"] if cfg.sim else []) + (["--board", cfg.bench_args.board] if cfg.bench_args.board else [])
    check = _call(target.ssh(_board_command(remote_dir, cfg.python, "check", check_args)),
                  f"check on {target.host}", CHECK_TIMEOUT_S)
    log(check.stdout.strip())
    if not cfg.bench:
        return 0
    args = (["--sim"] if cfg.sim else []) + cfg.bench_args.argv()
    proc = _call(target.ssh(_board_command(remote_dir, cfg.python, "bench", args)), f"bench on {target.host}",
                 cfg.bench_timeout_s, capture=False)
    dest = _fetch_reports(target, remote_dir, folder.report("board-sim" if cfg.sim else "board"), log)
    if dest:
        log(f"report brought back: {dest}")
    return proc.returncode
