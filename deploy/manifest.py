"""The deployment package on disk: manifest, checksums, board identity.

A package is a folder: `manifest.json` lists every file with its SHA-256 and size and says
which board the bitstream was built for. Loading verifies all of it before anything touches
the FPGA, so a truncated copy or a package for another board fails with a message that names
the file or both boards, instead of as a hung DMA or silently wrong numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import PACKAGE_FORMAT
from .errors import BoardMismatchError, DeployError, PackageIntegrityError

MANIFEST = "manifest.json"

# FINN's board names (as in hw_configs/boards.yaml) and what PYNQ images call the same board
# in their BOARD environment variable.
BOARD_ALIASES = {
    "Pynq-Z1": ("pynq-z1", "pynqz1"),
    "Pynq-Z2": ("pynq-z2", "pynqz2"),
    "Ultra96-V2": ("ultra96-v2", "ultra96v2", "ultra96"),
    "ZCU104": ("zcu104",),
    "KV260_SOM": ("kv260_som", "kv260", "k26"),
}


def canonical_board(name: str) -> str:
    """FINN's name for a board, from FINN's or PYNQ's spelling; unknown names pass through."""
    folded = name.strip().casefold()
    for canon, aliases in BOARD_ALIASES.items():
        if folded == canon.casefold() or folded in aliases:
            return canon
    return name.strip()


def detect_board() -> str | None:
    """The board this code runs on: A2QFLOW_BOARD, else PYNQ's BOARD variable (set by every
    PYNQ image in /etc/environment)."""
    for var in ("A2QFLOW_BOARD", "BOARD"):
        if os.environ.get(var):
            return canonical_board(os.environ[var])
    return None


def package_board(root: Path) -> str | None:
    """The board a package names (the simulated board's default), None if unreadable."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text()).get("board")
    except (OSError, ValueError, AttributeError):
        return None   # load_package then reports the damaged manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(root: Path, rel_paths: list[str]) -> dict[str, dict]:
    """Manifest `files` entries (POSIX relative path -> sha256, bytes)."""
    return {rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size} for rel in sorted(rel_paths)}


@dataclass
class Package:
    root: Path
    manifest: dict

    @property
    def board(self) -> str:
        return self.manifest["board"]

    def path(self, key: str) -> Path | None:
        """The file a manifest field names (`bitfile`, `settings`, ...), or None if unset."""
        rel = self.manifest.get(key)
        return self.root / rel if rel else None

    @property
    def test_set(self) -> dict:
        return self.manifest["test_set"]

    def data_path(self, key: str) -> Path | None:
        rel = self.test_set.get(key)
        return self.root / rel if rel else None

    def driver_information(self) -> dict:
        """settings.json's `driver_information`, as finn-plus's MakePYNQDriver wrote it."""
        return read_json(self.path("settings"), "driver settings")["driver_information"]


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PackageIntegrityError(f"{what} {path} is missing") from None
    except (OSError, ValueError) as err:
        raise PackageIntegrityError(f"{what} {path} is unreadable or not JSON: {err}") from None


def load_manifest(root: Path) -> dict:
    manifest = read_json(root / MANIFEST, "package manifest")
    if manifest.get("format") != PACKAGE_FORMAT:
        raise PackageIntegrityError(f"{root / MANIFEST}: format {manifest.get('format')!r}, expected "
                                    f"{PACKAGE_FORMAT!r}; rebuild the package with this a2qflow")
    for key in ("board", "files", "settings", "test_set"):
        if key not in manifest:
            raise PackageIntegrityError(f"{root / MANIFEST}: field {key!r} missing")
    return manifest


def verify_files(root: Path, manifest: dict) -> None:
    """Every listed file present with its recorded size and SHA-256; names all bad files."""
    missing, corrupt = [], []
    for rel, entry in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            missing.append(rel)
        elif path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            corrupt.append(rel)
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    problems += [f"checksum mismatch (corrupt or edited): {', '.join(corrupt)}"] if corrupt else []
    if problems:
        raise PackageIntegrityError(f"package {root} is damaged; {'; '.join(problems)}. Copy the package "
                                    "again from the build host (a2qflow deploy) or rebuild it (a2qflow package)")


def check_board(manifest: dict, board: str | None) -> None:
    """Refuse a package built for another board; `board` None means unknown (refused too:
    loading a bitstream for another part can hang the board)."""
    built = manifest["board"]
    if board is None:
        raise BoardMismatchError(f"cannot tell which board this is (no BOARD or A2QFLOW_BOARD variable); the "
                                 f"package was built for {built}: pass --board {built} if this is one")
    if canonical_board(board) != canonical_board(built):
        raise BoardMismatchError(f"this package was built for {built} ({manifest.get('part', '?')}) but this board "
                                 f"is {canonical_board(board)}: rebuild with `a2qflow build --board "
                                 f"{canonical_board(board)}`")


def load_package(root: str | Path, board: str | None, *, sim: bool = False) -> Package:
    """Read and verify a package for `board` (None: unknown). On hardware (`sim` False) a
    bitfile is required; a sim-only package (estimate flow, no Vivado) says so."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise DeployError(f"{root} is not a deployment package (no {MANIFEST}); pass --package DIR")
    manifest = load_manifest(root)
    verify_files(root, manifest)
    check_board(manifest, board)
    pkg = Package(root, manifest)
    if not sim and not manifest.get("bitfile"):
        raise DeployError(f"package {root} has no bitfile ({manifest.get('no_bitfile_reason', 'sim-only package')}); "
                          "it runs only on the simulated board: python -m a2qflow_deploy bench --sim on the build host")
    if sim and not manifest.get("hw_graph"):
        raise DeployError(f"package {root} carries no HW graph, which the simulated board executes")
    return pkg
