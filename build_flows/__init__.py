"""The FINN-based flow: the pipeline (train -> export -> build -> package), accumulator
sizing to the certified P, overflow and parity checks, Yosys synthesis and Verilator
simulation of FINN's RTL, reports, LUT-vs-P comparisons and sweeps.

Public API (imported on first use):

    from a2qflow.build_flows import BuildConfig, PipelineConfig, run_pipeline

    result = run_pipeline(PipelineConfig(onnx="runs/tfc/model.onnx", out="runs/tfc-z2",
                                         build=BuildConfig(board="Pynq-Z2", flow="oss")))

    from a2qflow.build_flows import build, reference      # one build of a graph you already have
    from a2qflow.build_flows import GridSpec, run_serial, write_outputs   # compare-acc
    from a2qflow.build_flows import regenerate                            # a2qflow report
"""
from importlib import import_module

_API = {"BuildConfig": ("config", "BuildConfig"), "PipelineConfig": ("pipeline", "PipelineConfig"),
        "run_pipeline": ("pipeline", "run"), "build": ("flow", "build"), "GridSpec": ("compare", "GridSpec"),
        "run_serial": ("compare", "run_serial"), "write_outputs": ("compare", "write_outputs"),
        "regenerate": ("regenerate", "regenerate"), "package_run": ("package", "package_run"),
        "RunFolder": ("run_folder", "RunFolder")}
__all__ = sorted(_API) + ["reference"]


def __getattr__(name: str):
    if name == "reference":
        return import_module(".reference", __name__)
    if name in _API:
        module, attr = _API[name]
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
