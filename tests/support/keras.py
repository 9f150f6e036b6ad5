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
