"""Networks, quantization recipes, datasets, training, EP-init and QONNX export.

Public API (imported on first use, so `a2qflow.models.bounds` stays light):

    from a2qflow.models import Recipe, TrainConfig, train_model, export_checkpoint, load_dataset

    recipe = Recipe(method="a2q+", acc_bits=12, input_bits=4)
    train_model(TrainConfig(model="tfc", dataset="digits", recipe=recipe), "runs/tfc")
    onnx_path, certificate, parity = export_checkpoint("runs/tfc/checkpoint.pt", "runs/tfc/model.onnx")
"""
from importlib import import_module

# name -> (module, attribute); `train_model` because the submodule `train` takes the name `train`
_API = {"Recipe": "recipes", "TrainConfig": "train", "train_model": ("train", "train"), "load_checkpoint": "train",
        "export_checkpoint": "export", "load_dataset": "data", "NETWORKS": "nets"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
