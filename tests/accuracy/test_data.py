"""Data that does not fit the model: eval and mixed refuse it by file and array before predicting
(Keras's own error would be pages long and name neither), and the checks let sound data through."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from qshard import cli
from qshard.accuracy import data as eval_data
from qshard.accuracy.web_data import load_samples
from qshard.errors import EvalError, ModelInputError
from support.keras import import_keras

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from make_hostile import CASES  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras, problem = import_keras()
    require(problem, "QSHARD_REQUIRE_KERAS", "THE DATA-FIT TESTS")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, name="out")])
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return model, path


MISFITS = {
    "x-of-the-wrong-width": (dict(x=np.zeros((4, 5), np.float32), y=np.array([0, 1, 2, 0])), "accuracy",
                             "array 'x' has samples of shape [5], but the model takes [8]"),
    "y-rows-of-the-wrong-width": (dict(x=np.zeros((4, 8), np.float32), y=np.zeros((4, 5))), "accuracy",
                                  "array 'y' has rows of 5, but the model outputs 3 classes"),
    "a-class-the-model-lacks": (dict(x=np.zeros((4, 8), np.float32), y=np.array([0, 1, 7, 0])), "accuracy",
                                "array 'y' holds class 7, but the model outputs 3 classes"),
    "mae-targets-of-the-wrong-width": (dict(x=np.zeros((4, 8), np.float32), y=np.zeros((4, 2))), "mae",
                                       "array 'y' has 2 value(s) per sample, but the model outputs 3"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MISFITS))
def test_data_that_does_not_fit_the_model_is_refused(name, model_file, tmp_path, capsys):
    model, path = model_file
    arrays, metric, expected = MISFITS[name]
    np.savez(tmp_path / "d.npz", **arrays)
    assert cli.main(["eval", str(path), "--data", str(tmp_path / "d.npz"), "--metric", metric, "--tflite", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qshard: error: d.npz: ") and expected in err and err.count("\n") == 1, err
    with pytest.raises(EvalError, match="but the model"):
        eval_data.check_fits(model, arrays["x"], arrays["y"], metric, "d.npz")


@pytest.mark.slow
def test_sound_data_fits(model_file):
    model, _ = model_file
    eval_data.check_fits(model, np.zeros((4, 8), np.float32), np.array([0, 1, 2, 0]), "accuracy", "d.npz")
    eval_data.check_fits(model, np.zeros((4, 8), np.float32), np.eye(3)[[0, 1, 2, 0]], "accuracy", "d.npz")
    eval_data.check_fits(model, np.zeros((4, 8), np.float32), np.zeros((4, 3)), "mae", "d.npz")


def test_labels_and_inputs_are_checked_by_name():
    eval_data.check_labels(np.array([0.0, 2.0, 1.0]), "accuracy", "d.npz: array 'y'")  # integral floats are labels
    eval_data.check_labels(np.array([0.25, -3.5]), "mae", "d.npz: array 'y'")  # any finite target for MAE
    with pytest.raises(EvalError, match=r"d.npz: array 'y': accuracy needs integer class labels .* 2.5 at index \(1,\)"):
        eval_data.check_labels(np.array([0.0, 2.5]), "accuracy", "d.npz: array 'y'")
    with pytest.raises(EvalError, match=r"holds 2 non-finite value\(s\), the first inf at index \(0, 1\)"):
        eval_data.check_samples(np.array([[0, np.inf], [np.nan, 0]]), "d.npz: array 'x'")


LOAD_LEVEL = ("data_header_lies", "data_pickled_objects", "data_zip_bomb", "data_fifo", "data_device", "data_folder",
              "fuzz_data_zip_version_10_8", "fuzz_data_negative_dim", "fuzz_data_zero_and_huge_dims")


@pytest.mark.parametrize("name", LOAD_LEVEL)
def test_web_model_samples_are_read_as_hostile_input(name, tmp_path):
    """`qshard eval WEB_MODEL --data` reads its samples through the same checks (refused before
    the model's inputs are even looked at, so no tfjs is needed here)."""
    case = next(c for c in CASES if c.name == name)
    path = case.build(tmp_path)
    with pytest.raises(ModelInputError) as error:
        load_samples(path, None)
    assert str(error.value).startswith(f"{path}: ") and case.expected in str(error.value), str(error.value)
