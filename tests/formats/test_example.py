"""The embedded example model: deterministic, valid, and a sensible thing to quantize."""
import json

import numpy as np

from qshard import example, tfjs
from qshard.formats.summary import verify


def test_example_model_is_a_valid_layers_model(tmp_path):
    out = example.write_example(tmp_path / "ex")
    doc = json.loads((out / "model.json").read_text())
    assert doc["format"] == "layers-model"
    layers = doc["modelTopology"]["config"]["layers"]
    assert [layer["config"]["units"] for layer in layers] == [256, 128, 10]
    assert layers[0]["config"]["batch_input_shape"] == [None, 64]
    assert verify(out).ok
    values = tfjs.read_weights(out)
    expected = dict(example.weights())
    assert set(values) == set(expected)
    for name, array in expected.items():
        assert values[name].tobytes() == array.tobytes()
    x = np.random.default_rng(1).random((5, 64))
    probabilities = example.forward(values, x)
    assert probabilities.shape == (5, 10) and np.allclose(probabilities.sum(axis=1), 1)


def test_example_quantized_predictions_stay_close(tmp_path):
    src = example.write_example(tmp_path / "ex")
    tfjs.quantize_model(src, tmp_path / "u8", uint8=True)
    x = np.random.default_rng(2).random((50, 64))
    p32 = example.forward(tfjs.read_weights(src), x)
    p8 = example.forward(tfjs.read_weights(tmp_path / "u8"), x)
    assert 0 < np.abs(p8 - p32).max() < 0.02  # changed, but only a little
    assert (p8.argmax(axis=1) == p32.argmax(axis=1)).mean() >= 0.9
