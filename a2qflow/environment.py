"""Checks that an install holds the verified tool set; run by `make` after installing.

`python -m a2qflow.environment` exits non-zero, naming the problem, when the environment
holds a CUDA torch or nvidia-* packages (they come in when a resolver picks torch from
the index), or a brevitas that crashes on torch 2.13.
"""
from __future__ import annotations

import importlib.metadata as md
import sys

EXPECTED = {"torch": "2.13.0", "brevitas": "0.13.4", "finn-plus": "1.6.1", "qonnx": "1.0.0"}


def versions() -> dict[str, str]:
    """Versions of the packages the flow's results depend on (recorded in run files)."""
    out = {}
    for name in ("a2qflow", *EXPECTED, "onnx", "onnxruntime", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def problems() -> list[str]:
    found = []
    for name, want in EXPECTED.items():
        have = versions().get(name, "missing")
        if have.split("+")[0] != want:
            found.append(f"{name} {have}, expected {want}")
    cuda = sorted(d.metadata["Name"] for d in md.distributions()
                  if d.metadata["Name"].lower().startswith(("nvidia-", "cuda-", "triton")))
    if cuda:
        found.append(f"CUDA packages installed: {', '.join(cuda)}")
    try:
        import torch
        if torch.version.cuda is not None:
            found.append(f"torch {torch.__version__} is a CUDA build ({torch.version.cuda}); expected the CPU build")
    except ImportError:
        pass  # reported as missing above
    return found


def main() -> int:
    issues = problems()
    for issue in issues:
        print(f"environment: {issue}", file=sys.stderr)
    if not issues:
        print("environment: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
