"""The FINN-based flow: certificate, accumulator sizing, overflow and parity checks, Yosys
synthesis and Verilator simulation of FINN's RTL, reports, LUT-vs-P comparisons and sweeps.

Public API (imported on first use):

    from a2qflow.build_flows import BuildOptions, build, reference

    ref = reference.from_checkpoint("runs/tfc/checkpoint.pt", 32)
    run = build("runs/tfc/model.onnx", "runs/tfc-z2", ref, BuildOptions(board="Pynq-Z2", flow="oss"))

    from a2qflow.build_flows import GridSpec, run_serial, write_outputs   # compare-acc
    from a2qflow.build_flows import regenerate                            # a2qflow report
"""
from importlib import import_module

_API = {"BuildOptions": "flow", "build": "flow", "load_graph": "flow", "certify": "certificate",
        "check": "certificate", "CertificateError": "certificate", "GridSpec": "compare", "run_serial": "compare",
        "write_outputs": "compare", "regenerate": "report", "package_run": "package"}
__all__ = sorted(_API) + ["reference"]


def __getattr__(name: str):
    if name == "reference":
        return import_module(".reference", __name__)
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
