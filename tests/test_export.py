"""Export keeps the accumulator guarantee: parity with brevitas, certified integers, refusals."""
import json
import re

import numpy as np
import pytest
import torch
from brevitas.export import export_qonnx
from click.testing import CliRunner
from qonnx.core.modelwrapper import ModelWrapper

from a2qflow.models import certificate
from a2qflow.models.certificate import CertificateError, ClaimMismatch
from a2qflow.cli import main
from a2qflow.models import bounds
from a2qflow.models import export as export_mod
from a2qflow.models.export import export, export_checkpoint, quantized_weights
from a2qflow.models.recipes import weight_layers
from a2qflow.models.train import load_checkpoint

from conftest import quick_train


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tfc", "cnv", "mobilenet"])
@pytest.mark.parametrize("method", ["qat", "a2q", "a2q+"])
def test_export_parity_and_certificate(model, method, digits, tmp_path_factory):
    ckpt = quick_train(model, method, digits, tmp_path_factory)
    out = tmp_path_factory.mktemp("export") / f"{model}.onnx"
    path, certs, parity = export_checkpoint(ckpt, out, samples=100)
    assert parity.passed and parity.argmax_agreement == 1.0 and parity.max_abs_error < 1e-4
    assert path.is_file() and not out.with_suffix(".rejected.onnx").exists()
    doc = json.loads(out.with_suffix(".certificate.json").read_text())
    assert doc["passed"] and all(c.passed for c in certs)

    # the graph carries per-layer recipe, P, input bits/sign and weight bits ...
    graph = ModelWrapper(str(path))
    records = certificate.layer_claims(graph)
    qmodel, _ = load_checkpoint(ckpt)
    export_mod.layer_records(qmodel, digits.x_test[:8])  # caches inputs for quant_weight()
    layers = dict(weight_layers(qmodel))
    assert [r["name"] for r in records] == list(layers)
    for rec in records:
        spec = layers[rec["name"]].a2qflow_spec
        assert (rec["method"], rec["acc_bits"], rec["input_bits"], rec["input_signed"], rec["weight_bits"]) == (
            spec.method, spec.acc_bits, spec.input_bits, spec.input_signed, spec.weight_bits)
        # ... and its integers are exactly those brevitas computes
        q_graph, _, _ = certificate.integer_weights(graph, rec["onnx_weight"], rec["name"])
        assert np.array_equal(q_graph, quantized_weights(layers[rec["name"]])[1])
    for cert in certs:
        if cert.method != "qat":
            assert cert.min_safe_acc_bits <= cert.acc_bits
            assert cert.max_constrained_norm <= cert.budget
    if model == "mobilenet" and method == "a2q+":
        assert {c.method for c in certs if "features" in c.name} == {"a2q", "a2q+"}  # depthwise keeps A2Q


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet", "espcn"])
def test_export_parity_residual_and_superres(model, tmp_path_factory):
    from a2qflow.models.data import load_dataset

    ds = load_dataset("photos", limit=64) if model == "espcn" else load_dataset("digits")
    ckpt = quick_train(model, "a2q+", ds, tmp_path_factory)
    _, certs, parity = export_checkpoint(ckpt, tmp_path_factory.mktemp("x") / "m.onnx", samples=32)
    assert parity.passed and all(c.passed for c in certs)


def test_upstream_export_writes_raw_weights(tfc_a2qplus, digits, tmp_path):
    """brevitas' own export_qonnx puts float weights off the quantization grid for A2Q+
    layers; the certificate refuses such a graph (this is why export fixes weights)."""
    model, _ = load_checkpoint(tfc_a2qplus)
    records = export_mod.layer_records(model, digits.x_test[:8])
    export_qonnx(model, args=digits.x_test[:1], export_path=str(tmp_path / "raw.onnx"), dynamo=False)
    raw = ModelWrapper(str(tmp_path / "raw.onnx"))
    with pytest.raises(CertificateError, match="off the quantization grid"):
        certificate.integer_weights(raw, records[1]["onnx_weight"], records[1]["name"])


def test_tfc_export_matches_on_every_test_sample(tfc_a2qplus_onnx, tfc_a2qplus, digits):
    model, _ = load_checkpoint(tfc_a2qplus)
    parity = export_mod.check_parity(ModelWrapper(str(tfc_a2qplus_onnx)), model, digits.x_test, True)
    assert parity.samples == len(digits.x_test) and parity.passed


def _tamper(src, dst, layer="fc.1", channel=3):
    """Set one channel of a layer to the largest integer weight, keeping it on the grid."""
    graph = ModelWrapper(str(src))
    rec = next(r for r in certificate.layer_claims(graph) if r["name"] == layer)
    w = graph.get_initializer(rec["onnx_weight"]).copy()
    scale = graph.get_initializer(graph.find_consumer(rec["onnx_weight"]).input[1])
    w[channel] = (2 ** (rec["weight_bits"] - 1) - 1) * scale[channel]
    graph.set_initializer(rec["onnx_weight"], w)
    graph.save(str(dst))


def test_certificate_refuses_tampered_initializer(tfc_a2qplus_onnx, tmp_path):
    _tamper(tfc_a2qplus_onnx, tmp_path / "bad.onnx")
    certs = certificate.certify(ModelWrapper(str(tmp_path / "bad.onnx")))
    bad = next(c for c in certs if c.name == "fc.1")
    assert not bad.passed and bad.failing_channels == [3]
    assert bad.per_channel[3].min_safe_acc_bits > bad.acc_bits
    with pytest.raises(CertificateError, match=r"layer fc\.1, channel 3"):
        certificate.check(certs)
    result = CliRunner().invoke(main, ["certify", str(tmp_path / "bad.onnx")])
    assert result.exit_code == 1 and "layer fc.1, channel 3" in result.output
    assert CliRunner().invoke(main, ["certify", str(tfc_a2qplus_onnx)]).exit_code == 0


def test_export_refuses_weights_over_the_bound(tfc_a2qplus, digits, tmp_path, monkeypatch):
    """If the weights reaching the graph broke the bound, export fails naming the layer
    and channel and no graph is written under the final name."""
    real = export_mod.quantized_weights

    def inflated(layer):
        value, q = real(layer)
        if layer.a2qflow_spec.name == "fc.2":
            scale = value[5][q[5] != 0][0] / q[5][q[5] != 0][0]
            q = q.copy()
            q[5] = 2 ** (layer.a2qflow_spec.weight_bits - 1) - 1
            value = value.copy()
            value[5] = q[5] * scale
        return value, q

    monkeypatch.setattr(export_mod, "quantized_weights", inflated)
    model, _ = load_checkpoint(tfc_a2qplus)
    (tmp_path / "m.onnx").write_bytes(b"earlier export")   # a failed re-export must not touch it
    (tmp_path / "m.certificate.json").write_text("earlier certificate")
    with pytest.raises(CertificateError, match=r"layer fc\.2, channel 5"):
        export(model, digits.x_test[:16], tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"earlier export"
    assert (tmp_path / "m.certificate.json").read_text() == "earlier certificate"
    assert (tmp_path / "m.rejected.onnx").is_file()
    assert not json.loads((tmp_path / "m.rejected.certificate.json").read_text())["passed"]
    with pytest.raises(export_mod.ExportError, match="at least one test sample"):
        export(model, digits.x_test[:0], tmp_path / "m.onnx")


def test_certificate_value_range_is_exact(tfc_a2qplus_onnx):
    graph = ModelWrapper(str(tfc_a2qplus_onnx))
    for cert, rec in zip(certificate.certify(graph), certificate.layer_claims(graph)):
        q, _, _ = certificate.integer_weights(graph, rec["onnx_weight"], rec["name"])
        lo_x, hi_x = bounds.input_range(rec["input_bits"], rec["input_signed"])
        x_max, x_min = bounds.worst_case_inputs(q, lo_x, hi_x)
        for c in (0, q.shape[0] - 1):
            assert cert.per_channel[c].value_range == (int(q[c] @ x_min[c]), int(q[c] @ x_max[c]))
        assert cert.value_bits <= cert.acc_bits <= cert.datatype_bits


def test_corrupt_and_foreign_onnx_get_clear_errors(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage-not-a-protobuf" * 10)
    result = CliRunner().invoke(main, ["certify", str(tmp_path / "junk.onnx")])
    assert result.exit_code == 1 and "junk.onnx" in result.output
    result = CliRunner().invoke(main, ["certify", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 1 and "missing.onnx" in result.output
    # a valid ONNX without a2qflow metadata
    model = torch.nn.Linear(4, 2)
    torch.onnx.export(model, torch.rand(1, 4), str(tmp_path / "plain.onnx"), dynamo=False)
    result = CliRunner().invoke(main, ["certify", str(tmp_path / "plain.onnx")])
    assert result.exit_code == 1 and "not exported by a2qflow" in result.output


def _lie(src, dst, layer="fc.1", **claims):
    """Edit the metadata's claims about one layer, leaving the graph as it is."""
    graph = ModelWrapper(str(src))
    records = certificate.layer_claims(graph)
    for rec in records:
        if rec["name"] == layer:
            rec.update(claims)
    graph.set_metadata_prop(certificate.LAYERS_KEY, json.dumps(records))
    graph.save(str(dst))


@pytest.mark.parametrize("claims, field, found", [
    ({"input_bits": 1, "acc_bits": 8}, "input_bits", "4"),         # the lie: P=8 with 1-bit inputs
    ({"input_signed": True}, "input_signed", "False"),
    ({"weight_bits": 2}, "weight_bits", "4"),
    ({"weight_shape": [64, 32]}, "weight_shape", "[64, 64]"),
    ({"depthwise": True}, "depthwise", "False"),
])
def test_metadata_that_contradicts_the_graph_is_refused(tfc_a2qplus_onnx, tmp_path, claims, field, found):
    _lie(tfc_a2qplus_onnx, tmp_path / "lie.onnx", **claims)
    with pytest.raises(ClaimMismatch, match=rf"layer fc\.1: metadata claims {field}=.* but the graph has {re.escape(found)}"):
        certificate.certify(ModelWrapper(str(tmp_path / "lie.onnx")))
    result = CliRunner().invoke(main, ["certify", str(tmp_path / "lie.onnx")])
    assert result.exit_code == 1 and f"layer fc.1: metadata claims {field}=" in result.output
    assert "Traceback" not in result.output


def test_certificate_reads_input_and_weight_types_from_the_graph(tfc_a2qplus_onnx):
    graph = ModelWrapper(str(tfc_a2qplus_onnx))
    certs = certificate.certify(graph)
    assert {c.input_type for c in certs} == {"UINT4"}
    assert {c.weight_type for c in certs} == {"INT4 (narrow)"}
    # narrow INT4 weights (-7..7) times UINT4 inputs (0..15), K=64: any such weights need 14 bits
    assert certs[1].datatype_bits == 14 and certs[1].input_range == (0, 15)
