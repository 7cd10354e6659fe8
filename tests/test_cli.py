"""The CLI end to end on the embedded default, and its refusals."""
import json

from click.testing import CliRunner

from a2qflow.cli import main


def test_train_export_certify_from_the_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--model", "tfc", "--dataset", "digits", "--recipe", "a2q",
                                  "--acc-bits", "11", "--input-bits", "4", "--layer-acc-bits", "fc.3=14",
                                  "--float-epochs", "2", "--qat-epochs", "1", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "checkpoint.pt").is_file()
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "t" / "checkpoint.pt"),
                                  "--samples", "50"])
    assert result.exit_code == 0, result.output
    assert "argmax agreement 100.0%" in result.output
    cert = json.loads((tmp_path / "t" / "model.certificate.json").read_text())
    assert cert["passed"]
    assert {layer["name"]: layer["acc_bits"] for layer in cert["layers"]} == {
        "fc.0": 11, "fc.1": 11, "fc.2": 11, "fc.3": 14}
    result = runner.invoke(main, ["certify", str(tmp_path / "t" / "model.onnx"), "--json-out",
                                  str(tmp_path / "again.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "again.json").read_text()) == cert


def test_bad_arguments_are_named(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--layer-acc-bits", "fc.0:12", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "LAYER=BITS" in result.output
    result = runner.invoke(main, ["train", "--acc-bits", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "out of range" in result.output
    result = runner.invoke(main, ["train", "--model", "vgg99", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "unknown model 'vgg99'" in result.output
    result = runner.invoke(main, ["train", "--dataset", "mnist", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "train-images-idx3-ubyte" in result.output
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "none.pt")])
    assert result.exit_code == 1 and "none.pt" in result.output
