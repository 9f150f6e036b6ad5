"""Fixtures of the graph-model tests (keras, node: tests/conftest.py)."""
import pytest


@pytest.fixture(scope="session")
def tf(keras):
    """TensorFlow (Keras 3's backend here)."""
    import tensorflow
    return tensorflow
