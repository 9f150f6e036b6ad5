import pytest

from conftest import require
from support.keras import import_keras


@pytest.fixture(scope="module")
def keras():
    """Keras 3, or a loud skip (a failure under QSHARD_REQUIRE_KERAS)."""
    module, problem = import_keras()
    require(problem, "QSHARD_REQUIRE_KERAS", "THE KERAS TESTS")
    return module


@pytest.fixture(scope="module")
def tf_keras(keras):
    """tf_keras (Keras 2), for .h5 models, or a loud skip (a failure under QSHARD_REQUIRE_KERAS)."""
    try:
        import tf_keras
    except ImportError as error:
        require(f"tf_keras is missing ({error}): pip install tf_keras", "QSHARD_REQUIRE_KERAS",
                "THE tf_keras .h5 TESTS")
    return tf_keras
