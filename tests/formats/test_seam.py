"""The source seam: every input kind is a registered source quantized by one loop, so a new kind is
one module. A fake kind registered here goes through the public paths (quantize_model, the CLI)."""
import json

import numpy as np
import pytest

from conftest import require
from qshard import tfjs
from qshard.cli import main
from qshard.errors import SourceError
from qshard.formats import sources
from qshard.formats.shards import Scratch
from support.files import same_output


def fake_arrays():
    rng = np.random.default_rng(7)
    return {"dense/kernel": rng.standard_normal((300, 20)).astype(np.float32),  # spans many chunks
            "dense/bias": rng.standard_normal(20).astype(np.float64),
            "steps": np.arange(5, dtype=np.int64)}


def open_fake(path):
    """A '.fake' file names a seed; its tensors are fake_arrays() (as a real module would parse them)."""
    if path.read_text().strip() != "fake":
        raise SourceError(f"{path}: not a fake model")
    tensors = []
    for name, array in fake_arrays().items():
        sources.check_tensor(f"{path}: {name}", array.shape, array.dtype)
        tensors.append(sources.Tensor(name, array.shape, array.dtype, sources.array_reader(array)))
    return sources.Source(path, "fake", tensors)


@pytest.fixture
def fake_kind(monkeypatch):
    monkeypatch.setattr(sources, "REGISTRY", dict(sources.REGISTRY))
    sources.register("fake", open_fake, lambda p: sources.has_suffix(p, ".fake"), "a .fake test model")
    return "fake"


def expected(tmp_path, **options):
    out = tmp_path / "in-memory"
    out.mkdir()
    tfjs.write_weights([list(fake_arrays().items())], out, **options)
    return out


def test_a_registered_kind_is_guessed_and_quantized_like_any_other(tmp_path, fake_kind):
    (tmp_path / "m.fake").write_text("fake")
    assert sources.guess_kind(tmp_path / "m.fake") == "fake"
    report = tfjs.quantize_model(tmp_path / "m.fake", tmp_path / "out", uint8=["dense/*"])
    same_output(tmp_path / "out", expected(tmp_path, uint8=["dense/*"]))
    assert report.changed == {"dense/kernel": "uint8", "dense/bias": "uint8"}
    assert report.bytes_in == 300 * 20 * 4 + 20 * 8 + 5 * 8


def test_a_registered_kind_through_the_cli(tmp_path, fake_kind, capsys):
    (tmp_path / "m.data").write_text("fake")
    assert main(["quantize", str(tmp_path / "m.data"), str(tmp_path / "out"), "--from", "fake",
                 "--float16", "-q"]) == 0
    same_output(tmp_path / "out", expected(tmp_path, float16=True))
    with pytest.raises(SourceError, match="cannot tell.*a .fake test model.*--from .*fake"):
        tfjs.quantize_model(tmp_path / "m.data", tmp_path / "out2")
    (tmp_path / "bad.fake").write_text("other")
    assert main(["quantize", str(tmp_path / "bad.fake"), str(tmp_path / "out3"), "-q"]) != 0
    assert "not a fake model" in capsys.readouterr().err
    assert not (tmp_path / "out3").exists()


@pytest.mark.parametrize("spelling", [np.dtype(np.int64), np.int64, "int64", "<i8"])
def test_a_tensor_dtype_in_any_numpy_spelling(spelling):
    # (sources on the numpy-free path give dtype.str, "<i8"; others numpy's own objects or names)
    tensor = sources.Tensor("steps", (5,), spelling, sources.array_reader(np.arange(5, dtype=np.int64)))
    assert (tensor.web_dtype, tensor.nbytes, tensor.stored_nbytes) == ("int32", 40, 20)
    chunks = list(tensor.stored_chunks(Scratch()))
    assert np.concatenate(chunks).view(np.int32).tolist() == [0, 1, 2, 3, 4]


def test_every_builtin_kind_is_registered_in_guessing_order():
    assert sources.KINDS == ("tfjs", "safetensors", "npz", "h5", "keras")
    with pytest.raises(SourceError, match="unknown source kind 'gguf'"):
        sources.open_source(".", "gguf")


def test_a_web_model_is_a_source_with_groups_and_stored_quantization(tmp_path):
    arrays = {"a": np.linspace(-1, 1, 5000, dtype=np.float32), "b": np.arange(6, dtype=np.int32),
              "c": np.array([b"x", b"yz"], dtype=object)}
    (tmp_path / "m").mkdir()
    tfjs.write_weights([[("a", arrays["a"])], [("b", arrays["b"]), ("c", arrays["c"])]], tmp_path / "m", uint8="a")
    assert sources.guess_kind(tmp_path / "m") == "tfjs"
    with sources.open_source(tmp_path / "m") as source:
        assert [[t.name for t in g] for g in source.tensor_groups()] == [["a"], ["b", "c"]]
        a, b, c = source.tensors
        assert (a.web_dtype, a.quantization.dtype, a.stored_nbytes) == ("float32", "uint8", 5000)
        assert a.file_range.stored == "uint8" and a.file_range.count == 5000
        values = np.concatenate([x.copy() for x in a.float32_chunks(Scratch())])
        np.testing.assert_array_equal(values, tfjs.read_weights(tmp_path / "m")["a"])
        assert np.concatenate(list(b.stored_chunks(Scratch()))).tobytes() == arrays["b"].tobytes()
        assert c.web_dtype == "string" and sum(x.size for x in c.stored_chunks(Scratch())) == c.stored_nbytes
        assert source.inputs[0].name == "weights_manifest.json" and len(source.inputs) == 3
    # Re-quantized through the loop, the untouched group keeps its bytes and the manifest its JSON form.
    tfjs.quantize_model(tmp_path / "m", tmp_path / "out", uint16="a")
    manifest = json.loads((tmp_path / "out" / "weights_manifest.json").read_text())
    assert [w["name"] for g in manifest for w in g["weights"]] == ["a", "b", "c"]
    assert manifest[0]["weights"][0]["quantization"]["dtype"] == "uint16"
    assert (tmp_path / "out" / manifest[1]["paths"][0]).read_bytes() == \
        (tmp_path / "m" / json.loads((tmp_path / "m" / "weights_manifest.json").read_text())[1]["paths"][0]).read_bytes()


@pytest.mark.slow
def test_a_keras_file_quantizes_as_convert_writes_it(tmp_path, keras):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(40), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    assert sources.guess_kind(tmp_path / "m.keras") == "keras"
    assert main(["quantize", str(tmp_path / "m.keras"), str(tmp_path / "out"), "--uint8", "dense*/kernel", "-q"]) == 0
    assert main(["convert", str(tmp_path / "m.keras"), str(tmp_path / "converted"), "--uint8", "dense*/kernel",
                 "-q"]) == 0
    same_output(tmp_path / "out", tmp_path / "converted")
    assert json.loads((tmp_path / "out" / "model.json").read_text())["format"] == "layers-model"


@pytest.mark.slow
def test_a_tf_keras_h5_model_with_from_keras(tmp_path, keras):
    from qshard.keras import save_web_model
    try:
        import tf_keras
    except ImportError as error:
        require(f"tf_keras is missing ({error}): pip install tf_keras", "QSHARD_REQUIRE_KERAS", "THE tf_keras TEST")
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(8, name="d")])
    model.save(tmp_path / "m.h5")
    assert sources.guess_kind(tmp_path / "m.h5") == "h5"  # plain HDF5 datasets unless --from keras
    tfjs.quantize_model(tmp_path / "m.h5", tmp_path / "out", kind="keras", float16=True)
    save_web_model(tmp_path / "m.h5", tmp_path / "converted", float16=True)
    same_output(tmp_path / "out", tmp_path / "converted")
    assert [w["name"] for w in json.loads((tmp_path / "out" / "model.json").read_text())["weightsManifest"][0]
            ["weights"]] == ["d/kernel", "d/bias"]
