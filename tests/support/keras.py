"""Importing Keras 3 for the tests, and writing inputs for the Node scripts."""
import json
import os


def import_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    try:
        import keras
    except ImportError as error:
        return None, f"Keras 3 is not installed ({error}): pip install tensorflow tf_keras"
    if not keras.__version__.startswith("3."):
        return None, f"keras {keras.__version__} is installed; these tests need Keras 3"
    return keras, ""


def write_input(path, x):
    path.write_text(json.dumps({"shape": list(x.shape), "hex": x.tobytes().hex(), "dtype": str(x.dtype)}))


# --------------------------------------------------------------------------------------------------
# Keras models converted and run by tfjs in Node, compared with Keras (tests/keras).

VARIANTS = {"float32": {}, "uint8": {"uint8": True}, "float16": {"float16": True}}


def randomize(model, seed):
    """Weights drawn from a fixed seed so outputs are non-trivial: variances positive, means and
    offsets small, the rest He-scaled normals."""
    import numpy as np
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape, path = tuple(w.shape), w.path
        if "int" in str(w.dtype):  # a Normalization's sample count
            continue
        if path.endswith("variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith("mean") or path.endswith("beta"):
            value = rng.normal(0.0, 0.2, shape)
        elif path.endswith("gamma"):
            value = rng.uniform(0.8, 1.2, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 4
            if "depthwise" in path:
                fan_in = int(np.prod(shape[:2]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        w.assign(value.astype(np.float32))
    finalize(model)


def finalize(model):
    """After assigning variables: layers that compute with values derived from their weights
    (Normalization's mean and variance) derive them again, as loading a model does, and predict
    traces anew (a traced predict holds those values as constants)."""
    for layer in model.layers:
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    model.predict_function = None


def model_input(shape, dtype, seed, scale=1.0):
    """A fixed input: token ids for int32, else normals times scale (uniform 0..scale if scale > 1,
    as for images that a model rescales itself)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    if dtype == "int32":
        return rng.integers(0, 50, shape).astype(np.int32)
    if scale > 1:
        return rng.uniform(0, scale, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def js_output(path):
    """The prediction load_layers_model.js wrote, and its whole record."""
    import numpy as np
    js = json.loads(path.read_text())
    assert js["tfjs"] == "4.22.0" and js["backend"] == "cpu"
    return np.frombuffer(bytes.fromhex(js["hex"]), "<f4").reshape(js["shape"]), js


def set_weights(model, values):
    """Assign web-model weights (by tfjs name) to a Keras 3 model's variables."""
    from qshard.keras import keras_variables
    for name, variable in keras_variables(model):
        variable.assign(values[name])
    finalize(model)


def convert_and_run(node, root, models, variants=VARIANTS, seed=0):
    """models: {name: (model, input shape, dtype[, input scale])}. Randomizes, writes every model in
    every variant under root, runs them all in one Node process; returns ({name: (model, x)},
    {key: error})."""
    from qshard import keras as qk
    from support.node import run_batched
    built, jobs = {}, {}
    for k, (name, (model, shape, dtype, *scale)) in enumerate(models.items()):
        randomize(model, seed + k)
        x = model_input(shape, dtype, 100 + seed + k, *scale)
        write_input(root / f"{name}.in.json", x)
        for variant, how in variants.items():
            key = f"{name}-{variant}"
            qk.save_web_model(model, root / key, shard_size=4096, **how)
            jobs[key] = [root / key, root / f"{name}.in.json", root / f"{key}.out.json"]
        built[name] = (model, x)
    return built, run_batched(node, "load_layers_model.js", jobs)


def tfjs_matches_keras(root, key, model, x, variant, tolerance=1e-5):
    """tfjs's prediction for root/key equals Keras's with the weights the web model holds (within
    tolerance of the output scale), strict loading placed exactly those weights, and a quantized
    variant differs from float32 only by what quantization implies."""
    import numpy as np
    from qshard import tfjs
    got, js = js_output(root / f"{key}.out.json")
    original = [v.numpy().copy() for v in model.weights]
    try:
        float_out = np.asarray(model(x, training=False))  # eager: no traced copy of derived values
        dequantized = tfjs.read_weights(root / key)
        # tfjs-layers drops the RNN cell's name ('lstm/lstm_cell/kernel' is its 'lstm/kernel'), as
        # for models from tf_keras.
        built_names = {w["name"] for w in js["weights"]}
        assert {n if n in built_names else "/".join(n.split("/")[:-2] + n.split("/")[-1:])
                for n in dequantized} == built_names
        set_weights(model, dequantized)
        want = np.asarray(model(x, training=False))
    finally:
        for v, a in zip(model.weights, original):
            v.assign(a)
        finalize(model)
    scale = np.abs(want).max()
    assert got.shape == want.shape and scale > 1e-3
    err = np.abs(got - want).max()
    assert err <= tolerance * scale, f"{key}: tfjs vs Keras with the same weights: {err:.3g} (scale {scale:.3g})"
    change = np.abs(got - float_out).max() / np.abs(float_out).max()
    if variant == "float32":
        assert change <= tolerance
    else:
        specs = {s.stored_dtype for s in tfjs.WebModel(root / key).specs}
        assert variant in specs
        assert 0 < change < (0.1 if variant == "uint8" else 0.01), f"{key}: relative change {change:.3g}"
