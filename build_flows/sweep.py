"""`a2qflow sweep`: compare-acc cells as Dask tasks, on a LocalCluster or any scheduler.

A sweep file (YAML) holds GridSpec fields; `model`, `dataset` and `board` may be lists, and
the sweep is their product, each combination a compare-acc grid:

    model: tfc
    dataset: digits
    board: [Pynq-Z2, ZCU104]
    recipes: [a2q, a2q+]
    acc_bits: [10, 12, 14]      # or "10:16:2"
    seeds: 2                    # 0..N-1, or a list
    float_epochs: 5
    qat_epochs: 5
    out: runs/sweep-digits      # optional; --out wins

Each cell is the same `compare.attempt_cell` a serial compare-acc runs, so results are the
same; finished cells (cells/<key>/result.json) are skipped on re-run; a failed cell comes
back as a row with its error while the others finish. The first cell of each (model,
dataset, seed) trains the float model the others start from, so those wait for it.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import fields
from pathlib import Path

import yaml

from a2qflow.errors import A2qflowError

from .compare import (Cell, GridSpec, GridSpecError, attempt_cell, check_cached, claim_check, claim_grid_folder,
                      parse_acc_bits, validate_spec, write_csv, write_outputs)
from .summary import write_summary

GRID_FIELDS = {f.name for f in fields(GridSpec)}
LIST_FIELDS = ("model", "dataset", "board")


class SweepFileError(A2qflowError, ValueError):
    """A sweep file that cannot be read; the message names the file and the field."""


def _as_tuple(value, name: str, path: Path, kind=str) -> tuple:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, kind) for v in items):
        raise SweepFileError(f"{path}: field {name!r} must be a {kind.__name__} or a list of them, got {value!r}")
    return tuple(items)


def load_sweep(path: str | Path) -> tuple[list[GridSpec], Path | None]:
    """The grids of a sweep file, and its `out` folder if it names one."""
    path = Path(path)
    if not path.is_file():
        raise SweepFileError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepFileError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise SweepFileError(f"{path}: expected a mapping of grid fields, got {type(data).__name__}")
    out = data.pop("out", None)
    unknown = sorted(set(data) - GRID_FIELDS)
    if unknown:
        raise SweepFileError(f"{path}: unknown field(s) {unknown}; valid: {sorted(GRID_FIELDS | {'out'})}")
    common = {k: v for k, v in data.items() if k not in LIST_FIELDS}
    if "recipes" in common:
        common["recipes"] = _as_tuple(common["recipes"], "recipes", path)
        bad = [r for r in common["recipes"] if r not in ("qat", "a2q", "a2q+")]
        if bad:
            raise SweepFileError(f"{path}: field 'recipes': unknown recipe(s) {bad}; valid: qat, a2q, a2q+")
    if "acc_bits" in common:
        bits = common["acc_bits"]
        try:
            common["acc_bits"] = parse_acc_bits(bits) if isinstance(bits, str) else _as_tuple(bits, "acc_bits", path, int)
        except ValueError as err:
            raise SweepFileError(f"{path}: field 'acc_bits': {err}") from err
    if "seeds" in common:
        seeds = common["seeds"]
        if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds < 1:
            raise SweepFileError(f"{path}: field 'seeds': {seeds} seeds runs nothing; give a count >= 1 or a list")
        common["seeds"] = tuple(range(seeds)) if isinstance(seeds, int) else _as_tuple(seeds, "seeds", path, int)
    axes = [_as_tuple(data.get(k, getattr(GridSpec, k)), k, path) for k in LIST_FIELDS]
    specs = []
    for combo in itertools.product(*axes):
        try:
            specs.append(validate_spec(GridSpec(**dict(zip(LIST_FIELDS, combo)), **common)))
        except (GridSpecError, TypeError, ValueError) as err:
            raise SweepFileError(f"{path}: {err}") from err
    return specs, Path(out) if out else None


def sweep_cells(specs: list[GridSpec]) -> list[tuple[Cell, GridSpec]]:
    return [(cell, spec) for spec in specs for cell in spec.cells()]


def _float_group(cell: Cell) -> tuple:
    return cell.model, cell.dataset, cell.seed


def run_dask(jobs: list[tuple[Cell, GridSpec]], root: Path, client, progress=None) -> list[dict]:
    """Submit every cell to `client`; the first cell of each float group runs first and the
    rest of the group after it (they reuse its float checkpoint). Returns rows in job order."""
    from distributed import as_completed

    futures, leaders = [], {}
    for cell, spec in jobs:
        leader = leaders.get(_float_group(cell))
        fut = client.submit(_after, leader, cell, spec, str(root), key=f"cell-{cell.key}", pure=False)
        leaders.setdefault(_float_group(cell), fut)
        futures.append(fut)
    for fut in as_completed(futures):
        if progress is not None:
            progress(fut.result())
    return [f.result() for f in futures]


def _after(_leader_row, cell: Cell, spec: GridSpec, root: str) -> dict:
    """A cell task; its first argument only orders it after its float group's first cell."""
    return attempt_cell(cell, spec, root)


def run_sweep(specs: list[GridSpec], root: Path, scheduler: str | None = None, workers: int | None = None,
              progress=None, log=print) -> tuple[list[dict], dict]:
    """`a2qflow sweep`: every cell of every grid as Dask tasks, then the outputs; returns the
    cell rows and the headline(s). Refused before anything runs or is written when the
    folder is someone else's or cached cells were computed with other settings. The local
    cluster is closed whatever happens (Ctrl-C stops its worker processes)."""
    from distributed import Client

    if workers is not None and workers < 1:
        raise GridSpecError(f"--workers {workers}: must be at least 1")
    root = Path(root)
    claim_check(root)
    jobs = sweep_cells(specs)
    for spec in specs:
        check_cached(spec.cells(), spec, root)
    claim_grid_folder(root, "sweep" if len(specs) > 1 else "compare")
    client = Client(scheduler, timeout="30s") if scheduler else local_client(workers)
    log(f"sweep: {len(jobs)} cells on {scheduler or 'a LocalCluster'} "
        f"({len(client.scheduler_info()['workers'])} workers) -> {root}")
    try:
        results = run_dask(jobs, root.resolve(), client, progress)
    finally:
        cluster = None if scheduler else client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    return results, write_sweep_outputs(results, root, nested=len(specs) > 1)


def local_client(workers: int | None = None):
    """A LocalCluster of process workers, one thread each, sized to the machine; cells are
    CPU-bound (training, Yosys) and each uses one core well."""
    import os

    from distributed import Client, LocalCluster

    n = workers or max(1, (os.cpu_count() or 1))
    # silence_logs: a worker's "killing" notices at shutdown are the normal end of a sweep, not news
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster)


def grid_name(row: dict) -> str:
    return f"{row['model']}-{row['dataset']}-{row['board']}"


def write_sweep_outputs(results: list[dict], root: Path, nested: bool) -> dict:
    """Not nested (one grid): its outputs in root. Nested (model x dataset x board): each
    grid's outputs in root/<model>-<dataset>-<board>/ (LUTs of different nets never share a
    table), root/results.csv holds every cell and root/summary.md links the grids."""
    if not nested:
        return write_outputs(results, root)
    heads, lines = {}, ["# Sweep", "", "| grid | cells | failed | headline |", "|---|---|---|---|"]
    for name in dict.fromkeys(grid_name(r) for r in results):
        rows = [r for r in results if grid_name(r) == name]
        (root / name).mkdir(parents=True, exist_ok=True)
        heads[name] = head = write_outputs(rows, root / name)
        failed = sum(r.get("status") == "failed" for r in rows)
        ratio = f"{head['lut_ratio']:.2f}x fewer LUT at P={head['smallest_p']}" if head.get("lut_ratio") else "-"
        lines.append(f"| [{name}]({name}/summary.md) | {len(rows)} | {failed} | {ratio} |")
    write_summary(root / "summary.md", "\n".join(lines) + "\n", "a2qflow sweep")
    write_csv(results, root / "results.csv")
    return heads
