"""Parity: does a graph still compute what the trained model computes?

One comparison and one tolerance for every stage that checks it: export (QONNX against the
brevitas model) and each python-executable FINN stage of a build (the HW graph against the
reference outputs). Outputs agree when the largest absolute difference is within
`RELATIVE_TOLERANCE` of the largest reference output (at least 1: float32 rounding of a
re-associated graph, far below one quantization step) and, for classifiers, every argmax
is the same.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from a2qflow.errors import A2qflowError

RELATIVE_TOLERANCE = 1e-4


class ParityError(A2qflowError, RuntimeError):
    """A graph computes something else than the model it was derived from."""


@dataclass
class ParityReport:
    stage: str
    samples: int
    max_abs_error: float
    tolerance: float
    argmax_agreement: float | None     # fraction; classifiers only
    worst_sample: int                  # where the largest difference is
    worst_output: int
    reference: str = "trained model"   # what the outputs were compared with

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance and self.argmax_agreement in (None, 1.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def message(self) -> str:
        """One line: stage, sample, output and by how much."""
        agree = "" if self.argmax_agreement is None else f", argmax agreement {100 * self.argmax_agreement:.1f}%"
        return (f"after {self.stage} the graph differs from the {self.reference}: sample {self.worst_sample}, "
                f"output {self.worst_output} by {self.max_abs_error:.3g} (tolerance {self.tolerance:.3g}){agree}")


def compare(out: np.ndarray, expected: np.ndarray, classification: bool, stage: str,
            reference: str = "trained model") -> ParityReport:
    """Compare outputs with the reference outputs for the same samples."""
    out = np.asarray(out, dtype=np.float64).reshape(np.shape(expected))
    expected = np.asarray(expected, dtype=np.float64)
    diff = np.abs(out - expected).reshape(len(expected), -1)
    sample, output = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else (0, 0)
    tol = RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()) if expected.size else 1.0)
    agree = None
    if classification:
        agree = float((out.reshape(len(out), -1).argmax(1) == expected.reshape(len(expected), -1).argmax(1)).mean())
    return ParityReport(stage, len(expected), float(diff.max()) if diff.size else 0.0, tol, agree,
                        int(sample), int(output), reference)


def check(report: ParityReport) -> ParityReport:
    """Raise ParityError with the report's one-line message when it did not pass."""
    if not report.passed:
        raise ParityError(report.message())
    return report


def execute_per_sample(model, x: np.ndarray, execute: Callable | None = None) -> np.ndarray:
    """Run a QONNX/FINN graph one sample at a time (graphs are exported for batch 1);
    `execute` defaults to qonnx's execute_onnx (FINN's handles HW layers)."""
    if execute is None:
        from qonnx.core.onnx_exec import execute_onnx as execute
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute(model, {iname: x[i:i + 1]})[oname] for i in range(len(x))])
