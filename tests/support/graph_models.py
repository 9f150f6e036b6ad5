"""The models the graph tests convert, built on the spot with fixed seeds (nothing downloaded):
each builder returns a Case (source, inputs, TensorFlow's own outputs, options)."""
import warnings

import numpy as np

from support.graph import Case


def randomize(keras, model, rng):
    """Non-trivial batch-norm statistics and biases (zeros would let folding bugs pass unseen)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.3, n).astype(np.float32))
    for w in model.weights:
        if getattr(w, "path", w.name).split(":")[0].endswith("bias"):
            w.assign(rng.normal(0, 0.2, w.shape).astype(np.float32))


def keras_case(keras, model, feeds, rng, **options):
    randomize(keras, model, rng)
    [key] = model.output_names
    return Case(model, feeds, {key: np.asarray(model(*feeds.values(), training=False))}, **options)


def dense_conv(keras, tf, rng, tmp):
    L = keras.layers
    inp = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("elu")(x)
    x = L.Conv2D(6, 1, activation="sigmoid")(x)
    x = L.Conv2D(6, 3, strides=2)(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Flatten()(x)
    x = L.Dense(10, activation="relu")(x)
    out = L.Dense(4)(x)
    return keras_case(keras, keras.Model(inp, out), {"image": rng.standard_normal((2, 12, 12, 3), np.float32)}, rng)


def rescaling_zero_padding(keras, tf, rng, tmp):
    L = keras.layers
    inp = keras.Input((10, 10, 3), name="pixels")
    x = L.Rescaling(1 / 255)(inp)
    x = L.ZeroPadding2D(((1, 2), (2, 1)))(x)
    x = L.Conv2D(5, 3, strides=2, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3, activation="softmax")(x)
    pixels = rng.uniform(0, 255, (2, 10, 10, 3)).astype(np.float32)
    return keras_case(keras, keras.Model(inp, out), {"pixels": pixels}, rng)


def two_inputs_two_outputs(keras, tf, rng, tmp):
    """Signature order: inputs and outputs by name, in the model's order, not alphabetical."""
    L = keras.layers
    image = keras.Input((6, 6, 1), name="zimage")
    extra = keras.Input((3,), name="aextra")
    x = L.Flatten()(L.Conv2D(3, 3, activation="relu")(image))
    x = L.Concatenate()([x, extra])
    score = L.Dense(1, name="zscore")(x)
    classes = L.Dense(4, activation="softmax", name="aclasses")(x)
    model = keras.Model([image, extra], [score, classes])
    randomize(keras, model, rng)
    feeds = {"zimage": rng.standard_normal((2, 6, 6, 1), np.float32),
             "aextra": rng.standard_normal((2, 3), np.float32)}
    got = model([feeds["zimage"], feeds["aextra"]], training=False)
    return Case(model, feeds, {"zscore": np.asarray(got[0]), "aclasses": np.asarray(got[1])})


def gru_text(keras, tf, rng, tmp):
    L = keras.layers
    inp = keras.Input((12,), dtype="int32", name="tokens")
    x = L.Embedding(50, 8)(inp)
    x = L.GRU(16)(x)  # Keras defaults: reset_after=True, tanh / sigmoid
    out = L.Dense(3)(x)
    model = keras.Model(inp, out)
    for w in model.weights:  # larger weights than the initializers give, so the output scale is not tiny
        w.assign(rng.normal(0, 0.6, w.shape).astype(np.float32))
    return keras_case(keras, model, {"tokens": rng.integers(0, 50, (3, 12)).astype(np.int32)}, rng)


def module_saved_model(keras, tf, rng, tmp):
    class Gelu(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(0, 0.5, (16, 8)).astype(np.float32))
            self.b = tf.Variable(rng.normal(0, 0.2, 8).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="features")])
        def serve(self, features):
            h = tf.matmul(features, self.w) + self.b
            return {"gelu": tf.nn.gelu(h, approximate=False), "tail": tf.math.erfc(h) * 2.0}

    module = Gelu()
    path = tmp / "module_saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    feeds = {"features": rng.standard_normal((4, 16), np.float32)}
    want = {k: v.numpy() for k, v in tf.saved_model.load(str(path)).signatures["serving_default"](**feeds).items()}
    return Case(path, feeds, want, structured_outputs=True)


def keras_export(keras, tf, rng, tmp):
    L = keras.layers
    inp = keras.Input((6, 6, 2), name="grid")
    x = L.Conv2D(4, 3, padding="same")(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("swish")(x)
    x = L.Flatten()(x)
    out = L.Dense(5)(x)
    model = keras.Model(inp, out)
    randomize(keras, model, rng)
    path = tmp / "exported"
    model.export(str(path), verbose=False)
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    [key] = serving.structured_input_signature[1]
    feeds = {key: rng.standard_normal((2, 6, 6, 2), np.float32)}
    want = {k: v.numpy() for k, v in serving(**feeds).items()}
    assert np.allclose(list(want.values())[0], model(feeds[key]), atol=1e-5)
    return Case(path, feeds, want)


def tf_keras_h5(keras, tf, rng, tmp):
    import tf_keras
    L = tf_keras.layers
    model = tf_keras.Sequential([L.InputLayer((8, 8, 3), name="image"), L.Conv2D(6, 3, use_bias=False),
                                 L.BatchNormalization(), L.Activation("relu"), L.GlobalAveragePooling2D(),
                                 L.Dense(4, activation="tanh")])
    randomize(tf_keras, model, rng)
    path = tmp / "model.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "HDF5 is legacy": this test is about that format
        model.save(str(path))
    feeds = {"image": rng.standard_normal((2, 8, 8, 3), np.float32)}
    return Case(path, feeds, {model.output_names[0]: model(feeds["image"], training=False).numpy()})


BUILDERS = [dense_conv, rescaling_zero_padding, two_inputs_two_outputs, gru_text, module_saved_model, keras_export,
            tf_keras_h5]
NAMES = [b.__name__ for b in BUILDERS]


def application(keras, rng, build, size):
    """A keras.applications model (weights=None, logits out) with random batch-norm statistics and
    biases, on random images."""
    model = build(input_shape=(size, size, 3), weights=None, classifier_activation=None)
    feeds = {model.inputs[0]._keras_history.operation.name: rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)}
    return keras_case(keras, model, feeds, rng)


def mobilenet_v2(keras, tf, rng, tmp):
    return application(keras, rng, keras.applications.MobileNetV2, 96)


def resnet50(keras, tf, rng, tmp):
    return application(keras, rng, keras.applications.ResNet50, 32)


def mobilenet_v3_small(keras, tf, rng, tmp):
    """Hard-swish everywhere, squeeze-excite blocks, its own Rescaling input layer."""
    return application(keras, rng, keras.applications.MobileNetV3Small, 64)


APPLICATIONS = [mobilenet_v2, resnet50, mobilenet_v3_small]
