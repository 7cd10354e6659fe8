"""Board-side entry point: `python -m a2qflow_deploy {bench,check,info}` in the package folder.

argparse, not click: the board's Python may have nothing beyond numpy and pynq.
Exit codes: 0 done, 2 the package cannot run here (damaged, other board, bad input),
130 interrupted (the report then says so).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DeployError
from .manifest import MANIFEST, detect_board, load_package, package_board


def default_package_dir() -> Path:
    """The package this code was shipped in (its parent folder), else the working directory."""
    shipped = Path(__file__).resolve().parent.parent
    return shipped if (shipped / MANIFEST).is_file() else Path.cwd()


def _batch_sizes(text: str) -> tuple:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of positive batch sizes, e.g. 1,8,64")
    return sizes


def _count(minimum: int):
    """An argparse type: an integer of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m a2qflow_deploy", description="a2qflow deployment package: "
                                "verify it and benchmark the accelerator on this board or on the simulated board")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("bench", "benchmark: accuracy, throughput, latency, power"),
                       ("check", "verify checksums and board without running anything"),
                       ("info", "print the manifest")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--package", type=Path, default=None, help="package folder (default: the one holding this code)")
        if name == "info":
            continue
        s.add_argument("--sim", action="store_true", help="simulated board on the build host (needs finn-plus)")
        s.add_argument("--board", default=None, help="this board's name (default: $A2QFLOW_BOARD or PYNQ's $BOARD; "
                       "with --sim, the package's board)")
        if name == "bench":
            s.add_argument("--driver", default="auto", choices=("auto", "finn-plus", "a2qflow"),
                           help="auto: finn-plus-driver when installed, else a2qflow's driver")
            s.add_argument("--batch-sizes", type=_batch_sizes, default=None, help="comma list, e.g. 1,8,64,512")
            s.add_argument("--repeats", type=_count(1), default=None, help="throughput runs per batch size")
            s.add_argument("--latency-runs", type=_count(1), default=None)
            s.add_argument("--warmup", type=_count(0), default=None, help="latency runs excluded before measuring")
            s.add_argument("--accuracy-samples", type=_count(1), default=None,
                           help="test samples checked (default: all)")
            s.add_argument("--out", type=Path, default=None, help="report folder (default: <package>/reports)")
    return p


def _config(args):
    from .bench import BenchConfig

    cfg = BenchConfig.for_sim() if args.sim else BenchConfig()
    for key in ("batch_sizes", "repeats", "latency_runs", "warmup", "accuracy_samples"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    return cfg


def main(argv: list | None = None) -> int:
    args = parser().parse_args(argv)
    root = args.package or default_package_dir()
    try:
        if args.command == "info":
            print((root / MANIFEST).read_text())
            return 0
        if args.command == "check":
            board = args.board or (package_board(root) if args.sim else detect_board())
            pkg = load_package(root, board, sim=args.sim)
            print(f"package {root} ok: {len(pkg.manifest['files'])} files verified, built for {pkg.board}"
                  f"{'' if pkg.manifest.get('bitfile') else ' (sim-only: no bitfile)'}")
            return 0
        from .bench import run_benchmark, summary_line, terminal

        report = run_benchmark(root, sim=args.sim, board=args.board, driver=args.driver, cfg=_config(args),
                               out_dir=args.out, log=lambda line: print(line, file=sys.stderr, flush=True))
        print(terminal(report))
        print(summary_line(report))
        print(f"full report: {args.out or root / 'reports'}/bench.md")
        return 0
    except KeyboardInterrupt:
        print("interrupted: the report says status 'interrupted'", file=sys.stderr)
        return 130
    except (DeployError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
