"""Web models written by qshard, read by the real JavaScript client.

Stock @tensorflow/tfjs 4.22.0 (pure JS, cpu backend) runs in Node from tests/js:
- decode_weights.js decodes every weight with tf.io.decodeWeights; each must equal qshard's own
  dequantization (qshard.tfjs.read_weights) bit for bit, and the original values where no
  quantization was asked (or the quantization error bound where it was);
- load_layers_model.js loads layers models with tf.loadLayersModel (strict) and runs predict; the
  output must match a numpy forward pass over qshard's dequantized weights.

Without node or tests/js/node_modules these tests skip loudly (install with
`npm ci --prefix tests/js`); QSHARD_REQUIRE_NODE=1 (set in CI) turns that skip into a failure.
All models are decoded in one node run and all layers models run in another, to stay fast.
"""
import json

import numpy as np
import pytest


from qshard import tfjs
from support.layers import conv_forward, conv_topology, conv_weights, dense_forward, dense_topology, dense_weights, write_layers_model
from support.node import TFJS_VERSION, run_batched, run_node

JS_NUMPY = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1"),
            "complex64": np.dtype("<c8")}


# --------------------------------------------------------------------------------------------------
# Node and the JS client: present, or a loud skip (a failure under QSHARD_REQUIRE_NODE).

# --------------------------------------------------------------------------------------------------
# Comparing values bit for bit.

def js_values(entry):
    """The values tfjs decoded, as numpy (strings: a list of bytes)."""
    if entry["dtype"] == "string":
        return [bytes.fromhex(h) for h in entry["strings"]]
    return np.frombuffer(bytes.fromhex(entry["hex"]), JS_NUMPY[entry["dtype"]]).reshape(entry["shape"])


def bits(a):
    """Comparable integer bit patterns of a float32 / complex64 / int32 / bool array."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.complex64:
        a = a.view(np.float32)
    if a.dtype == np.float32:
        return a.view(np.uint32)
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    return a


def assert_same_bits(what, got, want):
    """got and want hold the same values bit for bit (the same dtype kind and shape too)."""
    if isinstance(want, np.ndarray) and want.dtype == object:
        want = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in want.reshape(-1)]
        assert got == want, f"{what}: string values differ: tfjs {got!r} vs expected {want!r}"
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    gb, wb = bits(got).reshape(-1), bits(want).reshape(-1)
    assert gb.dtype.itemsize == wb.dtype.itemsize, f"{what}: dtype {got.dtype} vs expected {want.dtype}"
    bad = np.flatnonzero(gb != wb)
    if bad.size:
        i = bad[0]
        flat_g, flat_w = got.reshape(-1), want.reshape(-1)
        if got.dtype == np.complex64:
            flat_g, flat_w = flat_g.view(np.float32), flat_w.view(np.float32)
        shown = lambda v, b: f"{v!r} (bits {int(b):#010x})" if gb.dtype == np.uint32 else repr(v)  # noqa: E731
        raise AssertionError(
            f"{what}: {bad.size} of {gb.size} values differ; first at flat index {i}: tfjs "
            f"{shown(flat_g[i], gb[i])} vs expected {shown(flat_w[i], wb[i])}")


# --------------------------------------------------------------------------------------------------
# The models whose weights tfjs decodes. Each builder writes a model into `folder` and returns
# {name: (original values, stored dtype expected in the manifest)}.

CASES = {}


def case(fn):
    CASES[fn.__name__[len("case_"):]] = fn
    return fn


def _rng(seed):
    return np.random.default_rng(seed)


def _f32_bits(*patterns):
    return np.array(patterns, np.uint32).view(np.float32)


SPECIAL_F32 = _f32_bits(
    0x00000000, 0x80000000,              # +0, -0
    0x00000001, 0x807fffff,              # smallest subnormal, largest negative subnormal
    0x00800000, 0x7f7fffff, 0xff7fffff,  # smallest normal, +-largest finite
    0x7f800000, 0xff800000,              # +-Inf
    0x7fc00000, 0x7fc12345, 0xffc00001,  # quiet NaNs with payloads and sign
    0x3f800000, 0xbf7fffff)              # 1, -(1 - ulp)


def _common(rng):
    """Weights of every shape kind, float32."""
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {
        "conv/kernel": f(3, 3, 2, 5),
        "conv/bias": f(5) * 0.1,
        "scalar": np.float32(-0.75),
        "one": f(1),
        "empty": np.zeros((0,), np.float32),
        "empty_3d": np.zeros((2, 0, 3), np.float32),
        "positive": rng.uniform(1000.0, 1000.5, (7, 9)).astype(np.float32),
        "negative": (-rng.exponential(2.0, 33) - 0.25).astype(np.float32),
        "constant": np.full((4, 4), 0.375, np.float32),
        "zeros": np.zeros(10, np.float32),
        "ties": (np.round(rng.standard_normal(300) * 40) / 2).astype(np.float32),
        "vector_edge": f(8 * 33 + 5),   # around the SIMD lane counts
    }


def _others():
    """Weights that are never quantized."""
    return {
        "step": (np.array(7, np.int32), "int32"),
        "ids": (np.array([-2 ** 31, -1, 0, 1, 2 ** 31 - 1], np.int32), "int32"),
        "ids_empty": (np.zeros((0, 3), np.int32), "int32"),
        "mask": (np.array([[True, False, True], [False, False, True]]), "bool"),
        "flag": (np.array(False), "bool"),
    }


def _write(folder, groups, targets=None, **kwargs):
    """write_weights with per-weight targets into a new folder; groups: [[(name, array), ...], ...]."""
    folder.mkdir(parents=True)
    tfjs.write_weights(groups, folder, targets=targets or {}, **kwargs)


def _single_dtype(seed, dtype):
    """Every shape kind plus a tensor big enough for the threaded kernels, all asked as `dtype`,
    beside int32 and bool weights: (weights, targets, expected)."""
    rng = _rng(seed)
    floats = _common(rng)
    floats["big"] = rng.standard_normal(300_000).astype(np.float32)
    others = _others()
    weights = {**floats, **{n: a for n, (a, _) in others.items()}}
    expected = {n: (a, dtype) for n, a in floats.items()}
    expected.update(others)
    return weights, {n: dtype for n in floats}, expected


@case
def case_float32_only(folder):
    rng = _rng(1)
    floats = _common(rng)
    floats["special"] = SPECIAL_F32
    groups = [[(n, a) for n, a in floats.items()],
              [("from_f64", rng.standard_normal((3, 2))), ("from_f16", rng.standard_normal(6).astype(np.float16))]]
    _write(folder, groups)
    expected = {n: (a, "float32") for n, a in floats.items()}
    expected["from_f64"] = (groups[1][0][1].astype(np.float32), "float32")
    expected["from_f16"] = (groups[1][1][1].astype(np.float32), "float32")
    return expected


@case
def case_uint8_all(folder):
    weights, targets, expected = _single_dtype(2, "uint8")
    _write(folder, [list(weights.items())], targets)
    return expected


@case
def case_uint16_all(folder):
    weights, targets, expected = _single_dtype(3, "uint16")
    _write(folder, [list(weights.items())], targets)
    return expected


@case
def case_float16_all(folder):
    weights, targets, expected = _single_dtype(4, "float16")
    rng = _rng(40)
    extra = {
        "f16_special": (_f32_bits(0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x3f800000), "float16"),
        "f16_overflow": (np.array([65504, 65519.996, 65520, -1e6, 3e38], np.float32), "float16"),
        "f16_subnormal": (np.array([6e-8, -6e-8, 5.96e-8, 2.9e-8, 3e-8, 1e-5, -6.1e-5, 1e-9, -1e-9], np.float32),
                          "float16"),
        "f16_mixed_inf": (np.concatenate([rng.standard_normal(50), [np.inf, -np.inf]]).astype(np.float32),
                          "float16"),
        "nan_kept": (SPECIAL_F32, "float32"),   # holds NaN: qshard keeps it float32
    }
    groups = [list(weights.items()), [(n, a) for n, (a, _) in extra.items()]]
    targets.update({n: "float16" for n in extra})
    _write(folder, groups, targets)
    expected.update(extra)
    return expected


@case
def case_mixed_groups_tiny_shards(folder):
    rng = _rng(5)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    plan = [
        [("g1/u8", f(10, 7), "uint8"), ("g1/u16", f(33), "uint16"), ("g1/f16", f(2, 3, 4), "float16"),
         ("g1/f32", f(25), None), ("g1/scalar_u8", np.float32(3.5), "uint8"),
         ("g1/empty_u16", np.zeros((3, 0), np.float32), "uint16"), ("g1/step", np.array(12, np.int32), None)],
        [("g2/mask", rng.random(13) < 0.5, None), ("g2/u8_odd", f(101), "uint8"),
         ("g2/vocab", np.array(["", "a", "héllo wörld", "x" * 150], object), None),
         ("g2/f16_scalar", np.float32(-2.0), "float16"), ("g2/ids", np.arange(-20, 20, dtype=np.int32), None),
         ("g2/complex", (f(9) + 1j * f(9)).astype(np.complex64), None), ("g2/inf_u8", _f32_bits(0x7f800000, 0), "uint8")],
        [("g3/only", f(64, 3), "uint16")],
    ]
    groups = [[(n, a) for n, a, _ in g] for g in plan]
    targets = {n: t for g in plan for n, _, t in g if t}
    _write(folder, groups, targets, shard_size=100)
    kinds = {np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool", np.dtype(np.complex64): "complex64",
             np.dtype(object): "string"}
    expected = {}
    for g in plan:
        for n, a, t in g:
            a = np.asarray(a)
            stored = t or kinds.get(a.dtype, "float32")
            if n == "g2/inf_u8":
                stored = "float32"  # +Inf cannot be uint8: kept
            expected[n] = (a, stored)
    return expected


def _float_source(folder, seed):
    """A float32 model.json (topology left opaque) with three groups, written by qshard."""
    rng = _rng(seed)
    floats = _common(rng)
    names = list(floats)
    groups = [[(n, floats[n]) for n in names[:5]] + [("step", np.array(3, np.int32))],
              [(n, floats[n]) for n in names[5:]], [("mask", np.array([True, False]))]]
    folder.mkdir(parents=True)
    manifest = tfjs.write_weights(groups, folder, write_manifest=False)
    doc = {"format": "graph-model", "generatedBy": "2.15.0", "convertedBy": "qshard tests",
           "modelTopology": {"node": []}, "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(doc))
    return floats


@case
def case_quantize_model_mixed(folder):
    floats = _float_source(folder.parent / (folder.name + "-src"), 6)
    tfjs.quantize_model(folder.parent / (folder.name + "-src"), folder, uint8=["conv/*", "ties"],
                        uint16=["positive", "negative", "vector_edge"], float16=True, keep=["constant"],
                        shard_size=100)
    targets = {"conv/kernel": "uint8", "conv/bias": "uint8", "ties": "uint8", "positive": "uint16",
               "negative": "uint16", "vector_edge": "uint16", "constant": "float32"}
    expected = {n: (a, targets.get(n, "float16")) for n, a in floats.items()}
    expected["step"] = (np.array(3, np.int32), "int32")
    expected["mask"] = (np.array([True, False]), "bool")
    return expected


@case
def case_quantize_model_requantized(folder):
    """uint8 -> uint16 -> float16: each pass re-quantizes the previous pass's dequantized values."""
    src = folder.parent / (folder.name + "-src")
    floats = _float_source(src, 7)
    tfjs.quantize_model(src, folder.parent / (folder.name + "-u8"), uint8=True)
    tfjs.quantize_model(folder.parent / (folder.name + "-u8"), folder.parent / (folder.name + "-u16"),
                        uint16=["conv/*", "ties", "one"], shard_size=64)
    tfjs.quantize_model(folder.parent / (folder.name + "-u16"), folder, float16=["positive", "negative"],
                        shard_size=1000)
    stored = {"conv/kernel": "uint16", "conv/bias": "uint16", "ties": "uint16", "one": "uint16",
              "positive": "float16", "negative": "float16"}
    # Originals for the error bounds: the values each weight was last quantized from.
    u8 = tfjs.read_weights(folder.parent / (folder.name + "-u8"))
    expected = {n: (u8[n] if n in stored else a, stored.get(n, "uint8")) for n, a in floats.items()}
    expected["step"] = (np.array(3, np.int32), "int32")
    expected["mask"] = (np.array([True, False]), "bool")
    return expected


# --------------------------------------------------------------------------------------------------
# Decode everything in one node run.

@pytest.fixture(scope="module")
def decoded(node, tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    built, jobs = {}, {}
    for name, builder in CASES.items():
        folder = root / name  # the builder creates it
        try:
            built[name] = (folder, builder(folder), "")
        except Exception as error:  # reported by that case's test
            built[name] = (folder, None, f"building the model failed: {type(error).__name__}: {error}")
            continue
        jobs[name] = [folder, root / f"{name}.tfjs.json"]
    errors = run_batched(node, "decode_weights.js", jobs)
    results = {}
    for name, (folder, expected, error) in built.items():
        error = error or errors.get(name, "")
        js = None if error else json.loads((root / f"{name}.tfjs.json").read_text())
        results[name] = (folder, expected, js, error)
    return results


def _check_original(what, spec, js, original, stored):
    """The independent check: tfjs's values against the values given to qshard."""
    original = np.asarray(original)
    if stored in ("float32", "int32", "bool", "complex64", "string"):
        assert_same_bits(f"{what} (stored {stored}, against the original)", js, original)
    elif stored == "float16":
        with np.errstate(over="ignore"):  # values beyond float16's range become +-Inf, as intended
            rounded = original.astype(np.float16).astype(np.float32)
        assert_same_bits(f"{what} (float16, against numpy's float16 round trip of the original)", js, rounded)
    else:
        q = spec.quantization
        error = np.abs(js.astype(np.float64) - original.astype(np.float64))
        bound = q.scale * (1 + 1e-6) + 2 * np.spacing(np.abs(original)).astype(np.float64)
        worst = np.argmax(error - bound) if error.size else 0
        assert error.size == 0 or np.all(error <= bound), (
            f"{what} ({stored}, min {q.min}, scale {q.scale}): tfjs value {js.reshape(-1)[worst]!r} is "
            f"{error.reshape(-1)[worst]} from the original {original.reshape(-1)[worst]!r}, more than the scale")


@pytest.mark.parametrize("name", list(CASES))
def test_tfjs_decodes_qshard_weights_exactly(decoded, name):
    folder, expected, js, error = decoded[name]
    assert not error, f"{name}: {error}"
    assert js["tfjs"] == TFJS_VERSION and js["backend"] == "cpu", f"{name}: ran {js['tfjs']} on {js['backend']}"
    model = tfjs.WebModel(folder)
    ours = tfjs.read_weights(folder)
    specs = {s.name: s for s in model.specs}
    assert set(js["weights"]) == set(specs) == set(expected), (
        f"{name}: weights decoded by tfjs {sorted(js['weights'])}, in the manifest {sorted(specs)}, "
        f"written {sorted(expected)}")
    # Group by group, tfjs saw exactly the bytes the specs describe: nothing left over.
    assert len(js["groups"]) == len(model.file.groups)
    for gi, (jg, group) in enumerate(zip(js["groups"], model.file.groups)):
        assert jg["names"] == [w.name for w in group.weights]
        used = sum(model.shards.where[w.name].nbytes for w in group.weights)
        assert jg["bytes"] == used, f"{name}: group {gi} has {jg['bytes']} bytes in its shards, the weights use {used}"
    for wname, spec in specs.items():
        entry = js["weights"][wname]
        what = f"{name}: weight {wname!r}"
        original, stored = expected[wname]
        assert spec.stored_dtype == stored, f"{what}: stored as {spec.stored_dtype}, expected {stored}"
        assert entry["dtype"] == spec.dtype, f"{what}: tfjs dtype {entry['dtype']} != manifest dtype {spec.dtype}"
        assert tuple(entry["shape"]) == spec.shape == np.shape(original), (
            f"{what}: tfjs shape {entry['shape']}, manifest {spec.shape}, original {np.shape(original)}")
        got = js_values(entry)
        # The point of this file: qshard's own reading of the model is what the browser computes.
        # (Shapes of qshard's values are checked by the two shape tests below.)
        mine = ours[wname]
        if spec.dtype != "string":
            assert mine.size == got.size, f"{what}: read_weights gives {mine.size} values, tfjs {got.size}"
            mine = mine.reshape(got.shape)
        assert_same_bits(f"{what} (against qshard.tfjs.read_weights)", got, mine)
        _check_original(what, spec, got, original, stored)


def _shape_mismatches(decoded, scalars):
    """[(case, weight, read_weights shape, tfjs shape)] where they differ, among the 0-d quantized
    weights (scalars=True) or all the others; and how many weights were compared."""
    found, compared = [], 0
    for name, (folder, _, js, error) in decoded.items():
        if error:  # (pytest.fail, not assert)
            pytest.fail(f"{name}: {error}")
        specs = {s.name: s for s in tfjs.WebModel(folder).specs}
        ours = tfjs.read_weights(folder)
        for wname, entry in js["weights"].items():
            if (specs[wname].shape == () and specs[wname].quantization is not None) != scalars:
                continue
            compared += 1
            if np.shape(ours[wname]) != tuple(entry["shape"]):
                found.append((name, wname, np.shape(ours[wname]), tuple(entry["shape"])))
    return found, compared


def test_read_weights_shapes_match_tfjs(decoded):
    found, compared = _shape_mismatches(decoded, scalars=False)
    assert compared > 50
    assert found == [], f"read_weights shapes differ from tfjs: {found}"


def test_read_weights_keeps_quantized_scalars_0d(decoded):
    found, compared = _shape_mismatches(decoded, scalars=True)
    if compared < 5:
        pytest.fail(f"the cases should hold several quantized scalars, found {compared}")
    assert found == [], f"read_weights shapes differ from tfjs for quantized scalars: {found}"


def test_tiny_shards_split_tensors_across_files(decoded):
    """The tiny-shard models really exercise tensors spanning shard files."""
    for name in ("mixed_groups_tiny_shards", "quantize_model_mixed"):
        folder, _, js, error = decoded[name]
        assert not error, f"{name}: {error}"
        model = tfjs.WebModel(folder)
        spanning = []
        for gi, group in enumerate(model.file.groups):
            sizes = [(folder / p).stat().st_size for p in group.paths]
            assert all(s <= 100 for s in sizes), f"{name}: group {gi} shard sizes {sizes} exceed 100 bytes"
            ends = np.cumsum(sizes)
            for w in group.weights:
                loc = model.shards.where[w.name]
                if loc.nbytes and np.searchsorted(ends, loc.offset, "right") != np.searchsorted(
                        ends, loc.offset + loc.nbytes - 1, "right"):
                    spanning.append(w.name)
        assert len(spanning) >= 3, f"{name}: only {spanning} span several shard files"


def test_int32_quantized_weights_decode_as_tfjs_rounds(node, tmp_path):
    """int32 weights stored as uint8 codes (older converters wrote them; quantize_model carries them
    over unchanged): tfjs dequantizes with Math.round(q * scale + min), which rounds halves up."""
    src = tmp_path / "src"
    src.mkdir()
    codes = np.arange(0, 256, 1, dtype=np.uint8)
    (src / "group1-shard1of1.bin").write_bytes(codes.tobytes())
    manifest = [{"paths": ["group1-shard1of1.bin"], "weights": [
        {"name": "ids", "shape": [256], "dtype": "int32",
         "quantization": {"dtype": "uint8", "min": -64.5, "scale": 0.5, "original_dtype": "int32"}}]}]
    (src / "weights_manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    report = tfjs.quantize_model(src, out, uint8=True)
    if report.changed:
        pytest.fail(f"quantize_model changed an int32 weight: {report.changed}")
    error = run_node(node, "decode_weights.js", [out, tmp_path / "out.json"])
    if error:
        pytest.fail(error)
    entry = json.loads((tmp_path / "out.json").read_text())["weights"]["ids"]
    got = js_values(entry)
    # Half of these values are exact halves: -64.5, -63.5, ... Math.round(x) = floor(x + 0.5).
    tfjs_rule = np.floor(codes * 0.5 - 64.5 + 0.5).astype(np.int32)
    if entry["dtype"] != "int32" or got.tolist() != tfjs_rule.tolist():
        pytest.fail(f"tfjs no longer decodes as Math.round(q * scale + min): {entry['dtype']} {got.tolist()}")
    assert_same_bits("int32 weight quantized as uint8 (against qshard.tfjs.read_weights)", got,
                     tfjs.read_weights(out)["ids"])


# --------------------------------------------------------------------------------------------------
# Layers models: loaded by tf.loadLayersModel and run by model.predict.

ARCHS = {"dense": (dense_topology, dense_weights, dense_forward, (5, 8)),
         "conv": (conv_topology, conv_weights, conv_forward, (4, 6, 6, 2))}
# name -> (architecture, how the model is made, stored dtype of each weight or one for all)
LAYERS_CASES = {
    "dense_float32": ("dense", {}, "float32"),
    "dense_uint8": ("dense", {"uint8": True}, "uint8"),
    "dense_mixed": ("dense", {"targets": {"dense/kernel": "uint8", "dense/bias": "float16",
                                          "dense_1/kernel": "uint16"}, "shard_size": 100},
                    {"dense/kernel": "uint8", "dense/bias": "float16", "dense_1/kernel": "uint16",
                     "dense_1/bias": "float32"}),
    "dense_quantize_model_uint16": ("dense", {"quantize_model": {"uint16": True}}, "uint16"),
    "conv_float32": ("conv", {}, "float32"),
    "conv_mixed": ("conv", {"uint8": ["*/kernel"], "float16": True, "shard_size": 256},
                   {"conv2d/kernel": "uint8", "dense/kernel": "uint8", "conv2d/bias": "float16",
                    "dense/bias": "float16"}),
    "conv_quantize_model_uint8": ("conv", {"quantize_model": {"uint8": True, "shard_size": 300}}, "uint8"),
}


@pytest.fixture(scope="module")
def predicted(node, tmp_path_factory):
    root = tmp_path_factory.mktemp("layers")
    built, jobs = {}, {}
    for seed, (name, (arch, how, _)) in enumerate(LAYERS_CASES.items()):
        topology, weights, _, input_shape = ARCHS[arch]
        folder = root / name
        groups = weights(seed)
        how = dict(how)
        try:
            if "quantize_model" in how:
                write_layers_model(root / f"{name}-src", topology(), groups)
                tfjs.quantize_model(root / f"{name}-src", folder, **how["quantize_model"])
            else:
                write_layers_model(folder, topology(), groups, **how)
        except Exception as error:
            built[name] = (folder, groups, None, f"building the model failed: {type(error).__name__}: {error}")
            continue
        x = _rng(100 + seed).standard_normal(input_shape).astype(np.float32)
        (root / f"{name}.in.json").write_text(json.dumps({"shape": list(x.shape), "hex": x.tobytes().hex()}))
        jobs[name] = [folder, root / f"{name}.in.json", root / f"{name}.out.json"]
        built[name] = (folder, groups, x, "")
    errors = run_batched(node, "load_layers_model.js", jobs)
    results = {}
    for name, (folder, groups, x, error) in built.items():
        error = error or errors.get(name, "")
        js = None if error else json.loads((root / f"{name}.out.json").read_text())
        results[name] = (folder, groups, x, js, error)
    return results


@pytest.mark.parametrize("name", list(LAYERS_CASES))
def test_tfjs_layers_model_predicts_with_qshard_weights(predicted, name):
    arch, _, stored = LAYERS_CASES[name]
    forward = ARCHS[arch][2]
    folder, groups, x, js, error = predicted[name]
    assert not error, f"{name}: {error}"
    assert js["tfjs"] == TFJS_VERSION and js["backend"] == "cpu"
    specs = {s.name: s for s in tfjs.WebModel(folder).specs}
    for wname, spec in specs.items():
        want = stored if isinstance(stored, str) else stored[wname]
        assert spec.stored_dtype == want, f"{name}: {wname} stored as {spec.stored_dtype}, expected {want}"
    # tfjs-layers built exactly the weights the manifest names (strict loading set them all).
    assert {w["name"]: tuple(w["shape"]) for w in js["weights"]} == {n: s.shape for n, s in specs.items()}
    assert js["dtype"] == "float32"
    got = np.frombuffer(bytes.fromhex(js["hex"]), "<f4").reshape(js["shape"])
    want = forward(tfjs.read_weights(folder), x)
    assert got.shape == want.shape, f"{name}: tfjs output shape {got.shape}, numpy {want.shape}"
    assert np.all(np.isfinite(got)), f"{name}: tfjs output {got}"
    scale = np.abs(want).max()
    assert scale > 0.1, f"{name}: degenerate test output {want}"
    err = np.abs(got - want)
    assert np.all(err <= 1e-5 * np.abs(want) + 1e-5 * scale), (
        f"{name}: tfjs predict differs from numpy over qshard's weights by up to {err.max()} "
        f"(output scale {scale})\ntfjs:\n{got}\nnumpy:\n{want}")
    if stored == "float32":
        # And, independently of qshard's reader, the float model computes with the original weights.
        original = {n: a for g in groups for n, a in g}
        np.testing.assert_allclose(got, forward(original, x), rtol=1e-5, atol=1e-5 * scale,
                                   err_msg=f"{name}: tfjs predict vs numpy with the original weights")


def test_tfjs_layers_refuses_misnamed_weights(node, tmp_path):
    """Strict loading is really on: a weight tfjs-layers cannot place makes the load fail, so the
    predictions above come from the weights qshard wrote."""
    groups = dense_weights(0)
    groups[1][1] = ("dense_1/bias_misnamed", groups[1][1][1])
    write_layers_model(tmp_path / "m", dense_topology(), groups)
    x = np.zeros((1, 8), np.float32)
    (tmp_path / "in.json").write_text(json.dumps({"shape": [1, 8], "hex": x.tobytes().hex()}))
    error = run_node(node, "load_layers_model.js", [tmp_path / "m", tmp_path / "in.json", tmp_path / "out.json"])
    assert "dense_1/bias_misnamed" in error, f"loading a misnamed weight did not fail as expected: {error!r}"


def test_the_readme_example_model_runs_in_tfjs(node, tmp_path):
    """`qshard example` + `qshard quantize --uint8` (the README's first command) loads in tfjs-layers
    and predicts what numpy computes over the dequantized weights."""
    from qshard import example
    src = example.write_example(tmp_path / "demo")
    tfjs.quantize_model(src, tmp_path / "demo-uint8", uint8=True)
    x = _rng(7).random((6, 64)).astype(np.float32)
    (tmp_path / "in.json").write_text(json.dumps({"shape": list(x.shape), "hex": x.tobytes().hex()}))
    for folder in (src, tmp_path / "demo-uint8"):
        error = run_node(node, "load_layers_model.js", [folder, tmp_path / "in.json", tmp_path / "out.json"])
        assert not error, error
        js = json.loads((tmp_path / "out.json").read_text())
        got = np.frombuffer(bytes.fromhex(js["hex"]), "<f4").reshape(js["shape"])
        want = example.forward(tfjs.read_weights(folder), x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
