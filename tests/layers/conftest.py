"""A made-up Keras model with the failure per-tensor uint8 has on real models: batch norm folded into
its filters leaves output channels orders of magnitude apart (here each channel's scale compensated
by the next layer, so the function stays a sane one), written as a tfjs layers model by qshard."""
import numpy as np
import pytest

SIDE = 12


def _spread(rng, n):
    return (10 ** rng.uniform(-2, 1.5, n)).astype(np.float32)


def build(keras, root, norm: bool):
    """(layers model folder, samples .npz, x): Conv2D [-> BatchNormalization -> ReLU] -> DepthwiseConv2D
    -> MaxPooling2D -> Conv2D -> Flatten -> Dense, with wide per-channel ranges in c1 (and the batch
    norm's statistics) and in c2; without the norm, c1 has the relu."""
    from qshard.keras.convert import save_web_model
    rng = np.random.default_rng(11)
    keras.utils.set_random_seed(11)  # the initial weights too: unseeded, one draw in many failed the equalization test
    L = keras.layers
    inp = keras.Input((SIDE, SIDE, 3), name="image")
    x = L.Conv2D(12, 3, padding="same", name="c1", activation=None if norm else "relu")(inp)
    if norm:
        x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(x))
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(16, 1, activation="relu", name="c2")(x)
    x = L.Flatten(name="flat")(x)
    model = keras.Model(inp, L.Dense(10, name="fc")(x))
    s1, s2 = _spread(rng, 12), _spread(rng, 16)
    k, b = model.get_layer("c1").get_weights()
    model.get_layer("c1").set_weights([k * s1, b * s1])
    if norm:
        gamma, beta = rng.uniform(0.5, 1.5, 12).astype(np.float32), rng.uniform(-0.2, 0.2, 12).astype(np.float32)
        model.get_layer("bn1").set_weights([gamma, beta, rng.uniform(-0.1, 0.1, 12).astype(np.float32) * s1,
                                            (rng.uniform(0.5, 2, 12) * s1 ** 2).astype(np.float32)])
    else:
        k = model.get_layer("dw").get_weights()
        model.get_layer("dw").set_weights([k[0] / s1[None, None, :, None], k[1]])
    k, b = model.get_layer("c2").get_weights()
    model.get_layer("c2").set_weights([k * s2, b * s2])
    k, b = model.get_layer("fc").get_weights()
    model.get_layer("fc").set_weights([k / np.tile(s2, k.shape[0] // 16)[:, None], b])
    save_web_model(model, root / "model")
    x = rng.standard_normal((12, SIDE, SIDE, 3)).astype(np.float32)
    np.savez(root / "samples.npz", x=x)
    return root / "model", root / "samples.npz", x


@pytest.fixture(scope="session")
def wide_layers(tmp_path_factory, keras):
    """The model of build() with its batch norm."""
    return build(keras, tmp_path_factory.mktemp("wide_layers"), norm=True)


@pytest.fixture(scope="session")
def folded_layers(tmp_path_factory, keras):
    """The model of build() without a batch norm: the spread sits in the filters alone."""
    return build(keras, tmp_path_factory.mktemp("folded_layers"), norm=False)
