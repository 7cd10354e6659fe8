"""What goes onto the board: the deployment package's reader, the accelerator driver, the
benchmark, and the simulated board.

Runs on the board's own Python (PYNQ image: numpy<2, pynq, maybe finn-plus-driver; Python
3.8 or newer), so no module here imports anything at module level beyond the standard library
and numpy. The build copies these sources verbatim into every deployment package as the
stand-alone package `a2qflow_deploy` (`python -m a2qflow_deploy bench` on the board); inside
this repository the same files are `a2qflow.deploy`. Hence relative imports only.

The simulated board (`sim.py`) imports finn/qonnx lazily: it runs only on the build host.

Public API:

    from a2qflow.deploy import load_package, run_benchmark

    pkg = load_package("runs/demo/package", board=None, sim=True)   # checksums and board checked
    report = run_benchmark("runs/demo/package", sim=True)            # the report `bench` writes
"""

PACKAGE_FORMAT = "a2qflow-deploy/1"
MODULE_NAME = "a2qflow_deploy"      # the name these sources have inside a package

from .bench import run_benchmark  # noqa: E402 - after the constants the modules import
from .manifest import load_package  # noqa: E402
