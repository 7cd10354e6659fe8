"""The direction of dependencies is checked, not hoped for: import-linter's contracts in
pyproject.toml ([tool.importlinter]) over the package as it installs. The top-level folders
map into the a2qflow package (setuptools package-dir); import-linter walks one folder tree,
so the check runs on a tree of links laid out as the install lays out the package."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _installed_layout(root: Path) -> Path:
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):
        target = root.joinpath(*package.split("."))
        if package == "a2qflow":
            target.mkdir(parents=True)
            for f in (REPO / folder).glob("*.py"):
                (target / f.name).symlink_to(f)
        else:
            target.symlink_to(REPO / folder, target_is_directory=True)
    return root


def test_import_contracts_hold(tmp_path):
    layout = _installed_layout(tmp_path / "layout")
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(layout)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken" in proc.stdout, proc.stdout
