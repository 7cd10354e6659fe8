"""What a build is asked to do: `BuildConfig`, checked before anything is written. (How
these settings reach a2qflow's FINN steps: `finn_config.A2qflowDataflowConfig`.)"""
from __future__ import annotations

from dataclasses import dataclass

from a2qflow.errors import A2qflowError
from a2qflow.hw_configs import DEFAULT_BOARD

FLOWS = ("auto", "estimate", "oss", "bitstream")
# int32: the baseline FINN users start from; datatype: FINN's sizing for runtime-writeable weights
SIZING_MODES = ("guaranteed", "value", "int32", "datatype")
STREAMLINE_KINDS = ("finn", "residual", "upsample")
DEFAULT_TARGET_FPS = 100_000


class ConfigError(A2qflowError, ValueError):
    """A build setting out of range or contradicting another; the message names the field."""


@dataclass
class BuildConfig:
    """The choices of one build (what `a2qflow build` options set)."""
    board: str = DEFAULT_BOARD
    flow: str = "auto"                   # estimate | oss | bitstream | auto (bitstream when Vivado is found)
    sizing: str = "guaranteed"           # guaranteed P | value-based width | int32 baseline | datatype worst case
    target_fps: int | None = None        # auto-folding target when no folding config ships
    folding: str | None = None           # a FINN folding JSON; default hw_configs/folding/<model>/<board>.json
    model_name: str | None = None        # the network (folding config) for graphs that do not record it
    from_step: str | None = None         # resume an earlier build of the same folder at this step
    parity_samples: int = 32             # test samples checked after every python-executable stage
    overflow_samples: int = 64           # samples whose accumulator values the overflow check keeps
    runtime_weights: bool = False        # runtime-writeable weights (FINN alone would size from datatypes)
    lut_only: bool = False               # oss flow: synthesize without DSP inference
    package: bool = True                 # write <run>/package (the deployment package)
    rtl_sim: bool = True                 # oss/bitstream flows: Verilator-check every synthesized layer
    progress: bool = True                # progress bars for synthesis and simulation (off for sweep cells)
    integer_io: bool = True              # the accelerator takes the dataset's integer codes, outputs integers
    accelerator_sim: bool = True         # oss/bitstream flows: stitch the whole design and simulate it
    test_samples: int = 500              # test set: package, whole-design simulation, benchmark accuracy
    jobs: int = 0                        # Yosys runs and Verilator compiles at once (0: one per core)

    def validate(self) -> "BuildConfig":
        """Refuse settings that cannot work, before anything is written."""
        from a2qflow.hw_configs import get_board

        get_board(self.board)
        for name, value, valid in (("flow", self.flow, FLOWS), ("sizing", self.sizing, SIZING_MODES)):
            if value not in valid:
                raise ConfigError(f"{name} {value!r}; valid: {', '.join(valid)}")
        for name in ("parity_samples", "overflow_samples", "test_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.target_fps is not None and (not isinstance(self.target_fps, int) or self.target_fps < 1):
            raise ConfigError(f"target_fps must be a positive integer, got {self.target_fps!r}")
        if self.sizing == "value" and self.runtime_weights:
            raise ConfigError("sizing 'value' sizes from the weights in the graph, which runtime-writeable weights "
                              "replace; use sizing 'guaranteed'")
        return self
