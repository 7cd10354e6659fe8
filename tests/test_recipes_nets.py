import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear

from a2qflow.models.nets import NETWORKS
from a2qflow.models.recipes import A2QPlusWeight, A2QWeight, PerChannelWeight, Recipe, weight_layers

SHAPES = {"tfc": (1, 8, 8), "cnv": (1, 8, 8), "mobilenet": (1, 8, 8), "resnet": (1, 8, 8), "espcn": (1, 8, 8)}


def build(name, recipe):
    kwargs = {"upscale": 2} if name == "espcn" else {"num_classes": 10}
    return NETWORKS[name](recipe, SHAPES[name], **kwargs)


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("method", ["qat", "a2q", "a2q+"])
def test_every_net_takes_every_recipe(name, method):
    model = build(name, Recipe(method=method, acc_bits=14))
    out = model.train()(torch.rand(4, *SHAPES[name]))
    assert out.shape == ((4, 1, 16, 16) if name == "espcn" else (4, 10))
    layers = weight_layers(model)
    assert layers, "recipe-built layers are found"
    for module_name, layer in layers:
        spec = layer.a2qflow_spec
        assert spec.name == module_name  # metadata and overrides name layers by module path
        assert isinstance(layer, (QuantLinear, QuantConv2d))
        expected = {"qat": PerChannelWeight, "a2q": A2QWeight, "a2q+": A2QPlusWeight}[spec.method]
        assert issubclass(layer.weight_quant.quant_injector, expected)
        assert (spec.acc_bits is None) == (spec.method == "qat")


def test_depthwise_uses_a2q_in_a2qplus_recipe_by_default():
    model = build("mobilenet", Recipe(method="a2q+"))
    specs = [layer.a2qflow_spec for _, layer in weight_layers(model)]
    dw = [s for s in specs if s.depthwise]
    assert dw and all(s.method == "a2q" for s in dw)
    assert all(s.method == "a2q+" for s in specs if not s.depthwise)
    model = build("mobilenet", Recipe(method="a2q+", depthwise_method="a2q+"))
    assert all(layer.a2qflow_spec.method == "a2q+" for _, layer in weight_layers(model))


def test_first_layer_recipe_keeps_p_and_leaves_the_others():
    model = build("resnet", Recipe(method="a2q+", acc_bits=13, first_method="a2q"))
    specs = [layer.a2qflow_spec for _, layer in weight_layers(model)]
    assert specs[0].method == "a2q" and specs[0].acc_bits == 13
    assert issubclass(weight_layers(model)[0][1].weight_quant.quant_injector, A2QWeight)
    assert all(s.method == "a2q+" for s in specs[1:])
    with pytest.raises(ValueError, match="unknown first_method 'a2q-'"):
        Recipe(first_method="a2q-")


def test_per_layer_acc_bits_and_first_last_options():
    recipe = Recipe(method="a2q+", acc_bits=12, input_bits=8, layer_acc_bits={"fc.1": 18},
                    first_layer="unconstrained", last_layer="unconstrained", last_weight_bits=8)
    specs = {n: layer.a2qflow_spec for n, layer in weight_layers(build("tfc", recipe))}
    assert specs["fc.0"].method == "qat" and specs["fc.0"].acc_bits is None
    assert specs["fc.1"].acc_bits == 18 and specs["fc.2"].acc_bits == 12
    assert specs["fc.3"].method == "qat" and specs["fc.3"].weight_bits == 8
    # the first layer sees the network input, the others a 4-bit unsigned ReLU
    assert (specs["fc.0"].input_bits, specs["fc.1"].input_bits) == (8, 4)


def test_layer_acc_bits_must_name_a_constrained_layer():
    from a2qflow.models.train import build_model

    info = {"name": "digits", "task": "classification", "input_shape": [64], "num_classes": 10,
            "input_signed": False, "upscale": None}
    with pytest.raises(ValueError, match=r"names fc9, not a constrained layer of tfc; constrained layers: fc.0"):
        build_model("tfc", Recipe(method="a2q+", layer_acc_bits={"fc9": 14}), info)
    with pytest.raises(ValueError, match="names fc.0, not a constrained layer"):  # unconstrained: plain qat
        build_model("tfc", Recipe(method="a2q+", layer_acc_bits={"fc.0": 14}, first_layer="unconstrained"), info)
    build_model("tfc", Recipe(method="a2q+", layer_acc_bits={"fc.0": 14}), info)


@pytest.mark.parametrize("bad, message", [
    ({"method": "a2q++"}, "unknown recipe"),
    ({"acc_bits": 1}, "out of range"),
    ({"layer_acc_bits": {"fc.0": 100}}, "fc.0"),
    ({"first_layer": "frozen"}, "first_layer"),
    ({"weight_bits": 0}, "weight_bits"),
])
def test_bad_recipe_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        Recipe(**bad)


def test_float_twin_has_the_quantized_nets_tensor_names():
    recipe = Recipe(method="a2q+")
    for name in NETWORKS:
        float_keys = set(build(name, recipe.as_float()).state_dict())
        quant_keys = set(build(name, recipe).state_dict())
        assert float_keys <= quant_keys
        assert all("quant" in k for k in quant_keys - float_keys)
