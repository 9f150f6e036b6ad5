"""`qshard eval --demo`: small models trained on the spot from data sets scikit-learn ships (nothing
downloaded), to show the evaluation table and the mixed-precision search end to end:

- digits: a small convnet on scikit-learn's 8x8 digits (accuracy);
- diabetes: a regression MLP on scikit-learn's diabetes data (MAE);
- digits-outlier: an MLP on digits whose hidden layer has one unit scaled up 1000x (its kernel column
  and bias times 1000, the next layer's row divided by 1000): the same function, as after folding a
  batch norm with a tiny variance, but one per-tensor uint8 range for the whole kernel now spans
  1000x the other columns' values, and they all round to a few levels. The search has something to find.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np

from qshard.accuracy.evaluate import Dataset, EvalError
from qshard.optional import require

OUTLIER_SCALE = 1000.0


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return require("keras", "eval", "the demo (it trains Keras models)", EvalError)


def _sklearn():
    return require("sklearn.datasets", "eval", "the demo (its data sets come from scikit-learn)", EvalError)


def digits(seed: int = 0):
    """(x_train, y_train, x_test, y_test): 8x8x1 images in [0, 1], labels 0-9; a fixed split."""
    d = _sklearn().load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1200], y[:1200], x[1200:], y[1200:]


def diabetes(seed: int = 0):
    d = _sklearn().load_diabetes()
    x = d.data.astype(np.float32)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = d.target.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:340], y[:340], x[340:], y[340:]


def digits_convnet(epochs: int = 12, seed: int = 0):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x, y, xt, yt = digits(seed)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
                              L.Conv2D(32, 3, activation="relu", name="conv2"), L.MaxPooling2D(name="pool"),
                              L.Flatten(name="flatten"), L.Dense(64, activation="relu", name="hidden"),
                              L.Dense(10, activation="softmax", name="classifier")], name="digits_convnet")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, Dataset("digits", xt, yt, "accuracy", calibration=x[:200])


def diabetes_mlp(epochs: int = 150, seed: int = 0):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x, y, xt, yt = diabetes(seed)
    model = keras.Sequential([keras.Input((10,)), L.Dense(64, activation="relu", name="dense1"),
                              L.Dense(32, activation="relu", name="dense2"), L.Dense(1, name="out")],
                             name="diabetes_mlp")
    model.compile(keras.optimizers.Adam(0.01), "mae")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, Dataset("diabetes", xt, yt, "mae", calibration=x[:200])


def digits_outlier(epochs: int = 15, seed: int = 0, unit: int = 0):
    """An MLP on digits, then one hidden unit rescaled by OUTLIER_SCALE (same function)."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x, y, xt, yt = digits(seed)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(name="flatten"),
                              L.Dense(64, activation="relu", name="hidden"),
                              L.Dense(32, activation="relu", name="hidden2"),
                              L.Dense(10, activation="softmax", name="classifier")], name="digits_outlier")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    rescale_unit(model.get_layer("hidden"), model.get_layer("hidden2"), unit, OUTLIER_SCALE)
    return model, Dataset("digits", xt, yt, "accuracy", calibration=x[:200])


def rescale_unit(layer, following, unit: int, factor: float) -> None:
    """Multiply one ReLU unit's incoming weights and bias by factor and divide its outgoing weights
    by it: relu(f z) = f relu(z), so the model computes the same function."""
    kernel, bias = [np.array(w) for w in layer.get_weights()]
    kernel[:, unit] *= factor
    bias[unit] *= factor
    layer.set_weights([kernel, bias])
    k2, b2 = [np.array(w) for w in following.get_weights()]
    k2[unit, :] /= factor
    following.set_weights([k2, b2])


def models() -> Dict[str, Tuple[object, Dataset]]:
    """The three demo models, trained, with their test data."""
    _sklearn()  # before Keras, whose import takes seconds: a missing scikit-learn is said at once
    return {"digits convnet": digits_convnet(), "diabetes MLP": diabetes_mlp(),
            "digits MLP, outlier unit": digits_outlier()}
