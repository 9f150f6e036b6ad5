"""Web models: byte-identical to tensorflowjs 4.22's write_weights, readable both ways, re-quantization,
safe paths, atomic output."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import qshard
from qshard.formats import manifest as mf
from qshard.formats import patterns
from qshard import reference, tfjs
from qshard.errors import ManifestError, OutputError, PatternError, ShardError


@pytest.fixture(scope="module")
def tfjs_io(tfjs_quantization):
    return reference.load("write_weights"), reference.load("read_weights")


def sample_groups(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return [
        [("conv/kernel", f(3, 3, 4, 8)), ("conv/bias", f(8)), ("step", np.array(7, np.int32)),
         ("mask", np.array([True, False, True, True, False])), ("vocab", np.array(["a", "héllo", ""], object))],
        [],
        [("dense/kernel", f(30, 20)), ("dense/bias", f(20)), ("scalar", np.float32(0.25)),
         ("zeros", np.zeros((0, 4), np.float32)), ("const", np.full(17, -2.5, np.float32)),
         ("ids", np.arange(-5, 6, dtype=np.int32)), ("c", (f(5) + 1j * f(5)).astype(np.complex64))],
        [("big", f(700)), ("f64", rng.standard_normal(9)), ("i64", np.arange(4, dtype=np.int64))],
    ]


def as_tfjs(groups):
    return [[{"name": n, "data": np.array(d, copy=True)} for n, d in g]
            for g in groups]


def folder_bytes(path):
    return {name: (Path(path) / name).read_bytes() for name in sorted(os.listdir(path))}


MAPS = [
    None,
    {"uint8": True},
    {"uint16": True},
    {"float16": True},
    {"uint8": ["conv/*", "big"], "uint16": "dense/kernel", "float16": ["dense/bias", "scalar", "f64"]},
    {"uint8": ["*/kernel"], "float16": True},
    {"uint16": ["const", "scalar"], "uint8": True},
]


@pytest.mark.parametrize("qmap", MAPS, ids=[str(m) for m in MAPS])
@pytest.mark.parametrize("shard_size", [5, 77, 4096, 4 * 1024 * 1024])
def test_write_weights_byte_identical_to_tensorflowjs(tfjs_io, tmp_path, qmap, shard_size, capsys):
    ww, _ = tfjs_io
    groups = sample_groups()
    if qmap is not None:  # tensorflowjs crashes quantizing an empty float32 tensor (documented deviation)
        groups = [[(n, d) for n, d in g if n != "zeros"] for g in groups]
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir(), ours.mkdir()
    m_theirs = ww.write_weights(as_tfjs(groups), str(theirs), shard_size_bytes=shard_size,
                                quantization_dtype_map=qmap)
    names = [n for g in groups for n, _ in g]
    q = reference.load("quantization")
    targets = {n: np.dtype(t).name for n, t in q.map_layers_to_quantization_dtype(names, qmap).items()}
    m_ours = tfjs.write_weights(groups, ours, shard_size=shard_size, targets=targets)
    assert json.dumps(m_ours) == json.dumps(m_theirs)
    assert folder_bytes(ours) == folder_bytes(theirs)


def test_pattern_arguments_match_tensorflowjs_maps(tfjs_io):
    q = reference.load("quantization")
    names = ["conv1/kernel", "conv1/bias", "dense/kernel", "dense/bias", "emb"]
    cases = [({"uint8": ["conv1/*"]}, dict(uint8=["conv1/*"])),
             ({"uint8": True, "float16": ["*/bias"]}, dict(uint8=True, float16=["*/bias"])),
             ({"uint16": "dense/*", "uint8": ["emb"]}, dict(uint16="dense/*", uint8=["emb"]))]
    for qmap, kwargs in cases:
        expected = {n: np.dtype(t).name for n, t in q.map_layers_to_quantization_dtype(names, qmap).items()}
        assert patterns.resolve(names, **kwargs) == expected
    assert patterns.resolve(names, uint8=True, keep=["conv1/*"]) == {"dense/kernel": "uint8", "dense/bias": "uint8",
                                                                     "emb": "uint8"}
    with pytest.raises(PatternError, match="matches both uint8 and float16"):
        patterns.resolve(names, uint8=["*/kernel"], float16=["conv1/*"])
    with pytest.raises(PatternError, match="only one dtype may be given without patterns"):
        patterns.resolve(names, uint8=True, uint16=[])


def test_reading_each_others_output(tfjs_io, tmp_path):
    ww, rw = tfjs_io
    groups = [[(n, d) for n, d in g if n != "zeros"] for g in sample_groups(1)]
    qmap = {"uint8": ["conv/*"], "uint16": ["dense/*"], "float16": ["big"]}
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir(), ours.mkdir()
    m_theirs = ww.write_weights(as_tfjs(groups), str(theirs), shard_size_bytes=333, quantization_dtype_map=qmap)
    tfjs.write_weights(groups, ours, shard_size=333, uint8=["conv/*"], uint16=["dense/*"], float16=["big"])
    ours_read_theirs = tfjs.read_weights(theirs)
    theirs_read_ours = {e["name"]: e["data"] for e in
                        rw.read_weights(json.loads((ours / "weights_manifest.json").read_text()), str(ours), flatten=True)}
    theirs_read_theirs = {e["name"]: e["data"] for e in rw.read_weights(m_theirs, str(theirs), flatten=True)}
    assert set(ours_read_theirs) == set(theirs_read_ours) == set(theirs_read_theirs)
    for name, expected in theirs_read_theirs.items():
        for got in (ours_read_theirs[name], theirs_read_ours[name]):
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            if expected.dtype == object:
                assert got.tolist() == expected.tolist()
            else:
                assert got.tobytes() == expected.tobytes(), name


def test_raw_codes_and_views(tmp_path):
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    tfjs.write_weights([[("w", x), ("b", x[:10])]], tmp_path, uint8=True)
    raw = tfjs.read_weights(tmp_path, raw=True)
    codes, params = qshard.quantize(x, "uint8")
    assert raw["w"].dtype == np.uint8 and raw["w"].tobytes() == codes.tobytes()
    # Both hand out memory of their own (shards are read, never mapped): writing to it leaves the file alone.
    stored = tfjs.WebModel(tmp_path).stored("w")
    stored[:] = 0
    raw["w"][:] = 0
    assert tfjs.read_weights(tmp_path, raw=True)["w"].tobytes() == codes.tobytes()
    assert tfjs.read_weights(tmp_path)["w"].tobytes() == qshard.dequantize(codes, params).tobytes()


def test_read_weights_survive_the_shard_being_rewritten(tmp_path):
    """Arrays from read_weights are not views of the file: rewriting or truncating the shard in place
    later changes nothing (a view would change, or die of SIGBUS on a truncated mapping)."""
    x = np.arange(4096, dtype=np.float32)
    tfjs.write_weights([[("w", x)]], tmp_path)
    got = tfjs.read_weights(tmp_path)["w"]
    shard = tmp_path / "group1-shard1of1.bin"
    shard.write_bytes(b"\0" * 16)
    assert got.tobytes() == x.tobytes()


def make_model(folder, groups, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    m = tfjs.write_weights(groups, folder, write_manifest=False, **kwargs)
    doc = {"format": "graph-model", "generatedBy": "2.x", "convertedBy": "test",
           "modelTopology": {"node": [{"name": "x", "op": "Placeholder", "attr": {"v": 1.5e-7}}]},
           "weightsManifest": m, "signature": {"inputs": {}}, "userDefinedMetadata": {"k": [1, 2]}}
    (folder / "model.json").write_text(json.dumps(doc))
    return doc


def test_quantize_model_matches_direct_write_and_keeps_other_keys(tmp_path):
    groups = sample_groups(2)
    doc = make_model(tmp_path / "src", groups)
    report = tfjs.quantize_model(tmp_path / "src", tmp_path / "out", uint8=True, float16=["*/bias"],
                                 keep=["conv/kernel"], shard_size=1000)
    out_doc = json.loads((tmp_path / "out" / "model.json").read_text())
    assert list(out_doc) == list(doc)
    assert {k: v for k, v in out_doc.items() if k != "weightsManifest"} == \
           {k: v for k, v in doc.items() if k != "weightsManifest"}
    targets = patterns.resolve([n for g in groups for n, _ in g], uint8=True, float16=["*/bias"], keep=["conv/kernel"])
    direct = tmp_path / "direct"
    direct.mkdir()
    m = tfjs.write_weights(groups, direct, shard_size=1000, targets=targets)
    assert out_doc["weightsManifest"] == m
    assert {k: v for k, v in folder_bytes(tmp_path / "out").items() if k.endswith(".bin")} == \
           {k: v for k, v in folder_bytes(direct).items() if k.endswith(".bin")}
    assert report.changed["conv/bias"] == "float16" and "conv/kernel" not in report.changed
    assert report.bytes_out < report.bytes_in


def test_requantizing_a_quantized_model(tmp_path):
    x = np.random.default_rng(3).standard_normal(4000).astype(np.float32)
    make_model(tmp_path / "u8", [[("w", x), ("v", x[:100])]], uint8=True)
    tfjs.quantize_model(tmp_path / "u8", tmp_path / "u16", uint16=["w"])
    spec = {s.name: s for s in tfjs.WebModel(tmp_path / "u16").specs}
    assert spec["w"].quantization.dtype == "uint16" and spec["v"].quantization.dtype == "uint8"
    dequantized = tfjs.read_weights(tmp_path / "u8")["w"]
    codes, params = qshard.quantize(dequantized, "uint16")
    assert tfjs.read_weights(tmp_path / "u16", raw=True)["w"].tobytes() == codes.tobytes()
    assert spec["w"].quantization.min == params.min and spec["w"].quantization.scale == params.scale


def test_older_manifest_int32_quantized_and_no_original_dtype(tmp_path):
    ids = np.array([-300, 0, 5, 1000, 999], np.int32)
    codes, params = qshard.quantize(ids.astype(np.float32), "uint8")
    (tmp_path / "group1-shard1of1.bin").write_bytes(codes.tobytes())
    manifest = [{"paths": ["group1-shard1of1.bin"], "weights": [
        {"name": "ids", "shape": [5], "dtype": "int32",
         "quantization": {"min": params.min, "scale": params.scale, "dtype": "uint8"}}]}]
    (tmp_path / "weights_manifest.json").write_text(json.dumps(manifest))
    values = tfjs.read_weights(tmp_path)["ids"]
    assert values.dtype == np.int32
    exact = codes * params.scale + params.min
    assert values.tolist() == np.floor(exact + 0.5).astype(np.int32).tolist()  # Math.round, as tfjs
    python_reader = tfjs.read_weights(tmp_path, rounding="half_even")["ids"]
    assert python_reader.tolist() == np.round(exact).astype(np.int32).tolist()  # as tensorflowjs's Python


def test_nonfinite_tensors_are_kept_and_reported(tmp_path):
    x = np.ones(10, np.float32)
    nan, inf = x.copy(), x.copy()
    nan[2] = np.nan
    inf[3] = -np.inf
    make_model(tmp_path / "src", [[("nan", nan), ("inf", inf), ("ok", x * 3)]])
    report = tfjs.quantize_model(tmp_path / "src", tmp_path / "u8", uint8=True)
    assert {k.name for k in report.kept} == {"nan", "inf"} and set(report.changed) == {"ok"}
    specs = {s.name: s for s in tfjs.WebModel(tmp_path / "u8").specs}
    assert specs["nan"].quantization is None and specs["inf"].quantization is None
    report = tfjs.quantize_model(tmp_path / "src", tmp_path / "f16", float16=True)
    assert [k.name for k in report.kept] == ["nan"]
    values = tfjs.read_weights(tmp_path / "f16")
    assert values["inf"][3] == -np.inf and np.isnan(values["nan"][2])


def test_output_is_atomic(tmp_path):
    make_model(tmp_path / "src", sample_groups(4))
    tfjs.quantize_model(tmp_path / "src", tmp_path / "out", uint8=True)
    before = folder_bytes(tmp_path / "out")
    with pytest.raises(OutputError, match="already exists"):
        tfjs.quantize_model(tmp_path / "src", tmp_path / "out", uint16=True)

    def explode(done, total):
        if done > total // 3:
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected"):
        tfjs.quantize_model(tmp_path / "src", tmp_path / "out", uint16=True, force=True, progress=explode)
    assert folder_bytes(tmp_path / "out") == before  # the previous complete version
    with pytest.raises(RuntimeError, match="injected"):
        tfjs.quantize_model(tmp_path / "src", tmp_path / "new", uint16=True, progress=explode)
    assert not (tmp_path / "new").exists()
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]  # no temporary litter
    tfjs.quantize_model(tmp_path / "src", tmp_path / "out", uint16=True, force=True)
    assert folder_bytes(tmp_path / "out") != before
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]


@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/passwd", "http://example.com/x.bin", "a/../../x.bin",
                                 "link.bin"])
def test_paths_outside_the_folder_are_refused(tmp_path, bad):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4)
    os.symlink(tmp_path / "outside.bin", model / "link.bin")
    manifest = [{"paths": [bad], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}]}]
    (model / "weights_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="outside|leaves|not a relative"):
        tfjs.read_weights(model)
    from qshard.formats.summary import verify
    assert not verify(model).ok


def test_a_symlinked_folder_is_followed_only_inside_the_model(tmp_path):
    # (shard paths are checked one part at a time: a link anywhere along one is resolved)
    model, outside = tmp_path / "model", tmp_path / "outside"
    (model / "real").mkdir(parents=True)
    outside.mkdir()
    for folder in (model / "real", outside):
        (folder / "w.bin").write_bytes(np.float32([1.5]).tobytes())
    os.symlink(model / "real", model / "inner")
    os.symlink(outside, model / "outer")
    for via, ok in [("inner", True), ("outer", False)]:
        manifest = [{"paths": [f"{via}/w.bin"], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}]}]
        (model / "weights_manifest.json").write_text(json.dumps(manifest))
        if ok:
            assert tfjs.read_weights(model)["w"].tolist() == [1.5]
        else:
            with pytest.raises(ShardError, match="'outer/w.bin' resolves outside the model folder"):
                tfjs.read_weights(model)


@pytest.mark.parametrize("text,message", [
    ("", "the file is empty"),
    ("{not json", "invalid JSON"),
    ('{"modelTopology": {}}', "needs a 'weightsManifest'"),
    ("5", "expected a model.json object"),
    ('[{"paths": []}]', "missing or invalid 'weights'"),
    ('[{"paths": [], "weights": [{"name": "w", "shape": [-1], "dtype": "float32"}]}]', "non-negative integers"),
    ('[{"paths": [], "weights": [{"name": "w", "shape": [1], "dtype": "float64"}]}]', "unknown dtype 'float64'"),
    ('[{"paths": [], "weights": [{"name": "w", "shape": [1], "dtype": "float32", '
     '"quantization": {"dtype": "uint4"}}]}]', "unknown quantization dtype"),
    ('[{"paths": [], "weights": [{"name": "w", "shape": [1], "dtype": "float32", '
     '"quantization": {"dtype": "uint8", "min": 0, "scale": 0}}]}]', "scale must be > 0"),
    ('[{"paths": [], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}, '
     '{"name": "w", "shape": [1], "dtype": "float32"}]}]', "duplicate weight name 'w'"),
])
def test_bad_manifests_name_the_file_and_entry(tmp_path, text, message):
    (tmp_path / "weights_manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=message) as info:
        mf.load(tmp_path)
    assert "weights_manifest.json" in str(info.value)


def test_size_mismatches_are_errors_and_verify_reports_them(tmp_path):
    from qshard.formats.summary import verify
    x = np.arange(100, dtype=np.float32)
    make_model(tmp_path / "m", [[("w", x)]], shard_size=128)
    assert verify(tmp_path / "m").ok
    shard = tmp_path / "m" / "group1-shard2of4.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-4])
    with pytest.raises(ShardError, match="group 0"):
        tfjs.read_weights(tmp_path / "m")
    result = verify(tmp_path / "m")
    assert not result.ok and "4 bytes missing" in result.problems[0]
    shard.write_bytes(data + b"xx")
    assert "2 extra bytes" in verify(tmp_path / "m").problems[0]
    shard.unlink()
    assert "shard file is missing" in verify(tmp_path / "m").problems[0]


def test_failure_with_writes_in_flight_leaves_no_litter(tmp_path):
    # Small shards keep a background write in flight almost all the time; a failure at any
    # point must still leave the parent folder exactly as it was.
    make_model(tmp_path / "src", [[("w", np.random.default_rng(9).standard_normal(200_000).astype(np.float32))]])
    for cut in (0.1, 0.3, 0.5, 0.7, 0.9):
        def explode(done, total, cut=cut):
            if done > total * cut:
                raise RuntimeError("injected failure")
        with pytest.raises(RuntimeError):
            tfjs.quantize_model(tmp_path / "src", tmp_path / "out", uint16=True, shard_size=4096, progress=explode)
        assert sorted(os.listdir(tmp_path)) == ["src"]


def test_verify_checks_string_groups_group_by_group(tmp_path):
    from qshard.formats.summary import verify
    make_model(tmp_path / "m", [[("vocab", np.array(["alpha", "beta"], object))],
                                [("w", np.arange(4, dtype=np.float32))]])
    assert verify(tmp_path / "m").ok
    shard = tmp_path / "m" / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    problems = verify(tmp_path / "m").problems
    assert len(problems) == 1 and "string weight 'vocab' runs past the end" in problems[0]
    shard.write_bytes(shard.read_bytes() + b"xyz")
    assert "(1 extra bytes;" in verify(tmp_path / "m").problems[0]


def test_report_notes_non_float_weights_only_when_a_pattern_names_them(tmp_path):
    groups = [[("ids", np.arange(6, dtype=np.int32)), ("w", np.linspace(-1, 1, 50, dtype=np.float32))]]
    make_model(tmp_path / "src", groups, uint8=["w"])
    explicit = tfjs.quantize_model(tmp_path / "src", tmp_path / "a", uint16=["ids"])
    assert [(k.name, k.asked) for k in explicit.kept] == [("ids", "uint16")]
    assert "only float32 weights are quantized" in explicit.kept[0].reason and explicit.changed == {}
    bare = tfjs.quantize_model(tmp_path / "src", tmp_path / "b", uint16=True)
    assert bare.kept == [] and bare.changed == {"w": "uint16"}
    same = tfjs.quantize_model(tmp_path / "src", tmp_path / "c", uint8=True)  # w is already uint8
    assert same.kept == [] and same.changed == {}
    np.savez(tmp_path / "m.npz", ids=np.arange(3, dtype=np.int64), w=np.ones(4, np.float32))
    streamed = tfjs.quantize_model(tmp_path / "m.npz", tmp_path / "d", float16=["ids", "w"])
    assert [k.name for k in streamed.kept] == ["ids"] and streamed.changed == {"w": "float16"}
