"""The public API the README documents: a2qflow.models, a2qflow.build_flows, a2qflow.deploy."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["a2qflow.models", "a2qflow.build_flows"])
def test_every_public_name_resolves(module):
    import importlib

    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mod.nope


def test_deploy_api_and_light_imports():
    from a2qflow.deploy import load_package, run_benchmark

    assert callable(load_package) and callable(run_benchmark)
    # importing the packages (and the bounds module) must not pull torch or FINN
    code = ("import sys, a2qflow.models, a2qflow.build_flows, a2qflow.deploy, a2qflow.models.bounds; "
            "print(sorted(m for m in ('torch', 'finn', 'brevitas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
