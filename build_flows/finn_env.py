"""Make finn-plus usable with or without Xilinx tools, decided once per process.

finn-plus 1.6.1 imports `finn.xsi.SimEngine` when its builder module loads, and that lazy
name raises `OSError: XILINX_VIVADO environment variable not set` without Vivado; its
builder also asks for the Vivado root when writing `metadata_builder.json` at the end of
every build. The front end (transformations, python execution, estimates, HDL code
generation) needs neither. Without Vivado we bind those two names to stand-ins that say
why they are unavailable; with Vivado nothing is touched.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

_PREPARED = False


def vivado_available() -> bool:
    root = os.environ.get("XILINX_VIVADO")
    return bool(root) and Path(root).is_dir() and shutil.which("vivado") is not None


def vitis_hls_available() -> bool:
    return shutil.which("vitis_hls") is not None


def xilinx_tools_available() -> bool:
    return vivado_available() and vitis_hls_available()


class _NoSimEngine:
    """Stands in for finn.xsi.SimEngine where Vivado's XSI does not exist."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("RTL simulation through Vivado XSI needs XILINX_VIVADO; it is not installed here")


def prepare_finn(build_dir: str | Path | None = None) -> None:
    """Set FINN's settings and build folder and, without Vivado, the two stand-ins above.
    Call before importing `finn.builder`."""
    global _PREPARED
    build_dir = Path(build_dir or os.environ.get("FINN_BUILD_DIR") or Path.cwd() / "build" / "finn_tmp").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    # FINN otherwise creates and reads ~/.finn/settings.yaml
    os.environ.setdefault("FINN_SETTINGS", str(build_dir / "finn_settings.yaml"))
    if _PREPARED:
        # FINN reads its settings once per process: point them at this build's folder, or a
        # second build in the same process (compare-acc, tests) writes into the first's
        from finn.util.settings import get_settings

        get_settings().finn_build_dir = build_dir
        return
    import finn.xsi
    from finn.util import settings

    if not vivado_available():
        finn.xsi.SimEngine = _NoSimEngine
    settings.initialize_dummy_settings()
    import finn.builder.build_dataflow as build_dataflow

    if not vivado_available():
        build_dataflow.get_vivado_root = lambda: "none (Vivado not installed)"
    _PREPARED = True
