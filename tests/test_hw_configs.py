"""Boards follow FINN's board map; shipped folding configs are FINN's format and fold
their layers evenly; malformed configs are refused naming the node and field."""
import dataclasses
import json

import pytest

from a2qflow import hw_configs
from a2qflow.hw_configs import (BOARDS, Board, UnknownBoardError, board_names, check_folding,
                                declared_layer_dims, folding_config, get_board, layer_dims_from_model,
                                load_boards, shipped_folding_configs)

EXPECTED_BOARDS = ["Pynq-Z1", "Pynq-Z2", "Ultra96-V2", "ZCU104", "KV260_SOM", "AUP-ZU3_8GB"]
# FINN's resource table key for each board's device (finn/util/platforms.py); KV260 has none
FINN_PLATFORM = {"Pynq-Z1": "Pynq-Z1", "Pynq-Z2": "Pynq-Z2", "Ultra96-V2": "Ultra96", "ZCU104": "ZCU104",
                 "AUP-ZU3_8GB": "AUP-ZU3_8GB"}


# -- boards -----------------------------------------------------------------------------

def test_all_boards_load():
    assert board_names() == EXPECTED_BOARDS
    for name, board in BOARDS.items():
        assert isinstance(board, Board) and board.name == name
        assert board.shell_flow == "vivado_zynq"
        assert board.clk_ns == 10.0 and board.clk_mhz == 100.0
        assert set(board.resources) == set(hw_configs.RESOURCE_KEYS)
        assert all(isinstance(v, int) and v >= 0 for v in board.resources.values())
    assert [n for n, b in BOARDS.items() if b.power_rails] == ["Ultra96-V2", "ZCU104", "KV260_SOM"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        BOARDS["ZCU104"].part = "xc7z020clg400-1"


def test_parts_equal_finn_board_map():
    # finn.util.basic imports without Vivado (no XSI / XILINX_VIVADO check at import)
    from finn.util.basic import get_dsp_block, pynq_part_map

    for name, board in BOARDS.items():
        assert name in pynq_part_map, f"{name} is not a FINN board name"
        assert board.part == pynq_part_map[name], name
        assert board.dsp == get_dsp_block(board.part), name
        assert board.family == ("xc7" if board.part.startswith("xc7") else "xcup"), name


def test_resources_agree_with_finn_platform_tables():
    """Data-sheet totals vs FINN's own (rounded) floorplanner tables: catches a typo'd digit."""
    from finn.util.platforms import platforms

    for name, key in FINN_PLATFORM.items():
        lut, ff, bram18, uram, dsp = platforms[key]().compute_resources[0]
        ours = BOARDS[name].resources
        for res, finn_value in (("LUT", lut), ("FF", ff), ("BRAM_18K", bram18), ("URAM", uram), ("DSP", dsp)):
            assert abs(ours[res] - finn_value) <= 0.05 * max(finn_value, 1), (name, res, ours[res], finn_value)
    assert BOARDS["Pynq-Z1"].resources == {"LUT": 53200, "FF": 106400, "BRAM_18K": 280, "DSP": 220, "URAM": 0}
    assert BOARDS["KV260_SOM"].resources == {"LUT": 117120, "FF": 234240, "BRAM_18K": 288, "DSP": 1248, "URAM": 64}


def test_unknown_board_lists_valid_names():
    with pytest.raises(UnknownBoardError) as err:
        get_board("Pynq-Z3")
    assert isinstance(err.value, ValueError)
    for name in EXPECTED_BOARDS:
        assert name in str(err.value)


def test_case_insensitive_lookup():
    assert get_board("pynq-z2") is BOARDS["Pynq-Z2"]
    assert get_board("zcu104") is BOARDS["ZCU104"]
    assert get_board("kv260_som").part == "xck26-sfvc784-2LV-c"
    assert get_board("Ultra96-V2") is BOARDS["Ultra96-V2"]


def test_malformed_boards_yaml_is_refused(tmp_path):
    good = {"part": "xc7z020clg400-1", "clk_ns": 10, "shell_flow": "vivado_zynq", "family": "xc7", "dsp": "DSP48E1",
            "resources": {"LUT": 1, "FF": 1, "BRAM_18K": 1, "DSP": 1, "URAM": 0}, "power_rails": False}
    path = tmp_path / "boards.yaml"
    path.write_text(json.dumps({"boards": {"Mine": good}}))  # JSON is YAML
    assert load_boards(path)["Mine"].clk_ns == 10.0
    for bad, field in ((dict(good, family="xc8"), "family"),
                       (dict(good, resources={"LUT": 1}), "resources"),
                       (dict(good, clk_ns=0), "clk_ns"),
                       ({k: v for k, v in good.items() if k != "part"}, "part")):
        path.write_text(json.dumps({"boards": {"Mine": bad}}))
        with pytest.raises(ValueError, match=f"Mine.*{field}"):
            load_boards(path)


# -- folding configurations -------------------------------------------------------------

def test_folding_config_lookup():
    for model, board in (("tfc", "Pynq-Z2"), ("tfc", "Pynq-Z1"), ("cnv", "Pynq-Z1"), ("cnv", "ZCU104")):
        path = folding_config(model, board)
        assert path is not None and path.is_file() and path.name == f"{board}.json"
    assert folding_config("TFC", "pynq-z2") == folding_config("tfc", "Pynq-Z2")
    assert folding_config("tfc", "ZCU104") is None          # -> target-FPS auto-folding
    assert folding_config("mobilenet", "Pynq-Z2") is None
    with pytest.raises(UnknownBoardError):
        folding_config("tfc", "Pynq-Z3")


def test_shipped_folding_configs_are_valid():
    shipped = shipped_folding_configs()
    assert {(p.parent.name, p.stem) for p in shipped} == {
        ("tfc", "Pynq-Z2"), ("tfc", "Pynq-Z1"), ("cnv", "Pynq-Z1"), ("cnv", "ZCU104")}
    for path in shipped:
        doc = json.loads(path.read_text())
        assert path.stem in BOARDS
        dims = declared_layer_dims(path.parent.name)
        check_folding(path, dims)
        # every dot-product layer is folded explicitly, and its fold actually parallelizes
        for node, (mh, mw) in dims.items():
            if node.startswith("MVAU"):
                assert {"PE", "SIMD"} <= set(doc[node]), f"{path}: {node} has no PE/SIMD"
                assert mh % doc[node]["PE"] == 0 and mw % doc[node]["SIMD"] == 0


def _write(tmp_path, doc):
    path = tmp_path / "folding.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


DIMS = {"MVAU_rtl_0": (64, 64), "MVAU_rtl_3": (10, 64), "Thresholding_rtl_0": (64, 64)}


def test_bad_pe_is_refused_naming_node_and_field(tmp_path):
    path = _write(tmp_path, {"MVAU_rtl_0": {"PE": 8, "SIMD": 8}, "MVAU_rtl_3": {"PE": 4, "SIMD": 2}})
    with pytest.raises(ValueError, match=r"MVAU_rtl_3: PE=4 does not divide MH=10"):
        check_folding(path, DIMS)


@pytest.mark.parametrize("doc, message", [
    ({"MVAU_rtl_0": {"SIMD": 12}}, r"MVAU_rtl_0: SIMD=12 does not divide MW=64"),
    ({"MVAU_rtl_0": {"PE": 0}}, r"MVAU_rtl_0: PE=0 must be a positive integer"),
    ({"MVAU_rtl_0": {"PE": "8"}}, r"MVAU_rtl_0: PE='8' must be a positive integer"),
    ({"Thresholding_rtl_0": {"PE": 3}}, r"Thresholding_rtl_0: PE=3 does not divide MH=64"),
    ({"MVAU_rtl_0": {"ram_style": "bram"}}, r"MVAU_rtl_0: ram_style='bram'"),
    ({"MVAU_rtl_0": [8, 8]}, r"MVAU_rtl_0: settings must be an object"),
    ({"MVAU_hls_0": {"PE": 8}}, r"MVAU_hls_0: not a layer of the graph"),
    ({"Defaults": {"PE": [8, ["MVAU_rtl"]]}}, r"Defaults.PE"),
    ({"Defaults": {"ram_style": ["block"]}}, r"Defaults.ram_style"),
    ({"Defaults": {"ram_style": ["block", "MVAU_rtl"]}}, r"Defaults.ram_style: op types"),
    ([1, 2], r"top level must be an object"),
    ("{not json", r"not valid JSON"),
])
def test_malformed_folding_is_refused(tmp_path, doc, message):
    with pytest.raises(ValueError, match=message):
        check_folding(_write(tmp_path, doc), DIMS)


def test_unknown_nodes_can_be_allowed(tmp_path):
    check_folding(_write(tmp_path, {"MVAU_hls_7": {"PE": 3}}), DIMS, allow_unknown_nodes=True)


def test_layer_dims_from_a_finn_graph():
    """The dims convention on hand-made HW nodes (no export, no Vivado)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    nodes = [
        helper.make_node("Thresholding_rtl", ["x", "t"], ["a"], domain="finn.custom_op.fpgadataflow.rtl",
                         name="Thresholding_rtl_0", NumChannels=64, PE=1),
        helper.make_node("MVAU_hls", ["a", "w"], ["b"], domain="finn.custom_op.fpgadataflow.hls",
                         name="MVAU_hls_0", MW=64, MH=10, PE=1, SIMD=1),
        helper.make_node("VVAU_rtl", ["b", "v"], ["y"], domain="finn.custom_op.fpgadataflow.rtl",
                         name="VVAU_rtl_0", Channels=32, Kernel=[3, 3], PE=1, SIMD=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    dims = layer_dims_from_model(ModelWrapper(qonnx_make_model(graph)))
    assert dims == {"Thresholding_rtl_0": (64, 64), "MVAU_hls_0": (10, 64), "VVAU_rtl_0": (32, 9)}


@pytest.mark.slow
@pytest.mark.parametrize("model, shape", [("tfc", [64]), ("cnv", [1, 8, 8])])
def test_declared_dims_match_finn_graph(model, shape, tmp_path):
    """The node names and dims the shipped configs were written for are what FINN gives
    our networks after step_specialize_layers (catches renamed nodes after a FINN update)."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper

    from a2qflow.build_flows import finn_env
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import build_model

    finn_env.prepare_finn(tmp_path / "finn_tmp")
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    info = {"input_shape": shape, "num_classes": 10, "task": "classification", "input_signed": False,
            "name": "digits", "upscale": None}
    net = build_model(model, Recipe(method="a2q+", input_bits=8, acc_bits=16), info).eval()
    with torch.no_grad():
        net(torch.rand(16, *shape))
    onnx_path = tmp_path / f"{model}.onnx"
    export_qonnx(net, args=torch.rand(1, *shape), export_path=str(onnx_path), dynamo=False)
    cfg = DataflowBuildConfig(
        output_dir=str(tmp_path / "out"), synth_clk_period_ns=10.0, board="Pynq-Z1", fpga_part=BOARDS["Pynq-Z1"].part,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS], standalone_thresholds=True,
        save_intermediate_models=True,
        steps=["step_qonnx_to_finn", "step_tidy_up", "step_streamline", "step_convert_to_hw",
               "step_create_dataflow_partition", "step_specialize_layers"])
    assert build_dataflow_cfg(str(onnx_path), cfg) == 0
    graph = ModelWrapper(str(tmp_path / "out" / "intermediate_models" / "step_specialize_layers.onnx"))
    dims = layer_dims_from_model(graph)
    assert dims == declared_layer_dims(model)
    for path in shipped_folding_configs():
        if path.parent.name == model:
            check_folding(path, dims)
