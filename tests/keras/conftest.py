import pytest

from conftest import require


@pytest.fixture(scope="module")
def tf_keras(keras):
    """tf_keras (Keras 2), for .h5 models, or a loud skip (a failure under QSHARD_REQUIRE_KERAS)."""
    try:
        import tf_keras
    except ImportError as error:
        require(f"tf_keras is missing ({error}): pip install tf_keras", "QSHARD_REQUIRE_KERAS",
                "THE tf_keras .h5 TESTS")
    return tf_keras
