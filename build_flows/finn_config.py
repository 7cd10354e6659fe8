"""How a2qflow's settings travel through FINN's builder to its steps: FINN's own
DataflowBuildConfig with a2qflow's fields. Every a2qflow step is a function of (model, cfg)
like FINN's, reads what it needs from cfg and from the run folder, and changes neither."""
from __future__ import annotations

from dataclasses import dataclass

from finn.builder.build_dataflow_config import DataflowBuildConfig

from .config import DEFAULT_TARGET_FPS


@dataclass
class A2qflowDataflowConfig(DataflowBuildConfig):
    """FINN's build configuration plus what a2qflow's steps read."""
    a2qflow_run_dir: str = ""                # the run folder (reference/, reports/, model.qonnx)
    a2qflow_sizing: str = "guaranteed"       # config.SIZING_MODES
    a2qflow_runtime_weights: bool = False
    a2qflow_overflow_samples: int = 64
    a2qflow_streamline: str = "finn"         # config.STREAMLINE_KINDS (model_steps)
    a2qflow_folding_user_given: bool = False
    a2qflow_fallback_fps: int = DEFAULT_TARGET_FPS
    a2qflow_synth_family: str = "xc7"
    a2qflow_lut_only: bool = False
    a2qflow_rtl_sim_vectors: int = 256       # random vectors per layer in RTL simulation
    a2qflow_progress: bool = True            # progress bars for the long steps (off in sweep cells)
    a2qflow_parity_samples: int = 32         # reference samples each parity check runs
    a2qflow_integer_io: bool = True          # integer codes in, integer accumulators out (build_flows.boundary)
    a2qflow_test_samples: int = 500          # test samples streamed through the whole simulated accelerator
    a2qflow_jobs: int = 1                    # Yosys runs and Verilator compiles at once
    a2qflow_prefer_rtl: bool = False         # oss flow: RTL layers wherever FINN's rules allow (weights kept narrow)
