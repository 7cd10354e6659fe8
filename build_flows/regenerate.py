"""`a2qflow report`: rewrite the Markdown/HTML summaries of a build, compare-acc or sweep
folder from its JSON/CSV. A folder that is none of these is refused and nothing is written."""
from __future__ import annotations

from pathlib import Path

from a2qflow.errors import A2qflowError

from . import compare, report, sweep
from .run_folder import RunFolder, read_json


class NotAResultFolder(A2qflowError, ValueError):
    """`a2qflow report` was pointed at a folder that holds no a2qflow results."""


def _grid_rows(folder: Path) -> list[dict]:
    """Every cell row of a compare-acc folder's results.json, as write_outputs took them."""
    doc = read_json(folder / "results.json")
    return doc["cells"] + doc.get("failed", []) + doc.get("partial", [])


def regenerate(path: str | Path) -> Path:
    """The summary of a build (run.json), a compare-acc grid (results.json) or a sweep
    (grid.json of kind 'sweep' with one grid folder per model/dataset/board); returns it."""
    from a2qflow.hw_configs import get_board

    path = Path(path)
    if not path.is_dir():
        raise NotAResultFolder(f"{path}: not a folder")
    marker = read_json(path / compare.GRID_MARKER) or {}
    if marker.get("kind") == "sweep":
        grids = sorted(p.parent for p in path.glob("*/results.json"))
        if not grids:
            raise NotAResultFolder(f"{path}: a sweep folder without any grid results yet")
        sweep.write_sweep_outputs([r for g in grids for r in _grid_rows(g)], path, nested=True)
        return path / "summary.md"
    if (path / "results.json").is_file():
        compare.write_outputs(_grid_rows(path), path)
        return path / "summary.md"
    folder = RunFolder(path)
    run = folder.read_run()
    if run is None:
        raise NotAResultFolder(f"{path}: not an a2qflow build, compare-acc or sweep folder (no run.json, "
                               "results.json or sweep grid.json); nothing written")
    if run.get("status") != "complete":
        raise NotAResultFolder(f"{path}: the build's status is {run.get('status')!r}; a report is only written for "
                               f"a complete build{': ' + run['error'] if run.get('error') else ''}")
    report.write_reports(folder, get_board(run["board"]), run)
    return folder.report("summary.md")
