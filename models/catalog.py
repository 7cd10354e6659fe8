"""The names the rest of a2qflow chooses from: networks, datasets, quantization recipes.
Plain data (no torch), so the CLI can offer them as choices without loading a network;
`nets.NETWORKS` and `data.DATASETS` are keyed by exactly these names."""
from __future__ import annotations

from .bounds import CONSTRAINED_METHODS, METHODS

NETWORK_NAMES: tuple[str, ...] = ("tfc", "cnv", "mobilenet", "resnet", "espcn")
DATASET_NAMES: tuple[str, ...] = ("digits", "digits28", "mnist1d", "mnist", "cifar10", "bsd300", "photos")
RECIPE_NAMES: tuple[str, ...] = METHODS            # qat | a2q | a2q+
CONSTRAINED_RECIPES: tuple[str, ...] = CONSTRAINED_METHODS

# The defaults every entry point shares (train, build, demo, compare-acc, sweep files): the
# embedded default, TFC on the bundled digits with A2Q+ at P=12 and 4-bit inputs.
DEFAULT_MODEL = "tfc"
DEFAULT_DATASET = "digits"
DEFAULT_METHOD = "a2q+"
DEFAULT_DEPTHWISE_METHOD = "a2q"      # the A2Q+ paper's Fig. 4: A2Q does better on depthwise convs
DEFAULT_WEIGHT_BITS = 4
DEFAULT_ACT_BITS = 4
DEFAULT_INPUT_BITS = 4
DEFAULT_ACC_BITS = 12
DEFAULT_LAST_WEIGHT_BITS = 8
DEFAULT_FLOAT_EPOCHS = 10
DEFAULT_QAT_EPOCHS = 10
DEFAULT_SEED = 0
DEFAULT_GRID_ACC_BITS: tuple[int, ...] = (10, 12, 14, 16, 20)
