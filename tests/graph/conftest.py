"""Fixtures of the graph-model tests: Keras 3 and TensorFlow, or a loud skip (a failure under
QSHARD_REQUIRE_KERAS)."""
import pytest

from conftest import require
from support.keras import import_keras


@pytest.fixture(scope="session")
def keras():
    module, problem = import_keras()
    require(problem, "QSHARD_REQUIRE_KERAS", "THE GRAPH-MODEL CONVERSION TESTS")
    return module


@pytest.fixture(scope="session")
def tf(keras):
    import tensorflow
    return tensorflow
