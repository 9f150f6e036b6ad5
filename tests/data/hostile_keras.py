"""Hostile HDF5 files, Keras models, SavedModel folders and data files, and the files behind the fuzzers'
findings (see make_hostile.py)."""
import os
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np

from make_hostile import (CASES, Case, X, Y, case, data_file, deep, encrypted_npz, fifo_at, h5_model, lie_about_sizes,
                          npy_bytes, npz)

# --------------------------------------------------------------------------------------------------
# HDF5 weights (quantize) and Keras 2 .h5 models (convert).

@case("h5", "its data lives in other files")
def h5_external_storage_fifo(root):
    import h5py
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "raw.bin")
    with h5py.File(root / "m.h5", "w") as f:
        f.create_dataset("w", shape=(4,), dtype="<f4", external=[(str(root / "raw.bin"), 0, 16)])
    return root / "m.h5"


@case("h5", "more elements than any real tensor")
def h5_huge_shape(root):
    import h5py
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "m.h5", "w") as f:
        f.create_dataset("w", shape=(1 << 50,), dtype="<f4", chunks=(1024,))
    return root / "m.h5"


@case("h5", "not a readable HDF5 file")
def h5_not_hdf5(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "m.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    return root / "m.h5"


@case("h5", "the HDF5 file is a FIFO (named pipe)")
def h5_fifo(root):
    return fifo_at(root, "m.h5")


@case("h5model", "model_config must be an object with 'class_name' and 'config'", only=("convert", "quantize-keras"))
def h5model_config_without_config(root):
    return h5_model(root / "m.h5", {"class_name": "Sequential"})


@case("h5model", "a malformed Keras .h5 model (KeyError: 'class_name')", only=("convert", "quantize-keras"))
def h5model_layer_without_class(root):
    return h5_model(root / "m.h5", {"class_name": "Sequential", "config": {"layers": [{"config": {}}]}})


@case("h5model", "model_config: invalid JSON", only=("convert", "quantize-keras"))
def h5model_config_not_json(root):
    return h5_model(root / "m.h5", '{"class_name": ')


@case("h5model", "the model_config nests 901 levels deep", only=("convert", "quantize-keras"))
def h5model_config_deep(root):
    return h5_model(root / "m.h5", '{"class_name": "Sequential", "config": ' + deep(900) + "}")


@case("h5model", "lists 'missing', which the file does not have", only=("convert", "quantize-keras"))
def h5model_missing_layer(root):
    return h5_model(root / "m.h5", layer_names=(b"dense", b"missing"))


@case("h5model", "links to another file, which qshard does not open", only=("convert", "quantize-keras"))
def h5model_external_link(root):
    import h5py
    path = h5_model(root / "m.h5")
    os.mkfifo(root / "other.h5")
    with h5py.File(path, "a") as f:
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense/dense/bias:0"] = h5py.ExternalLink(str(root / "other.h5"), "/b")
    return path


@case("h5model", "the HDF5 model is a FIFO (named pipe)")
def h5model_fifo(root):
    return fifo_at(root, "m.h5")


# --------------------------------------------------------------------------------------------------
# .keras files (refused before Keras is imported).

@case("keras", "is not a readable zip archive")
def keras_not_a_zip(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "m.keras").write_bytes(b"not a zip at all")
    return root / "m.keras"


@case("keras", "is not a readable zip archive")
def keras_truncated(root):
    path = npz(root / "m.keras", {"config.json": b"{}", "model.weights.h5": b"0" * 4000}, zipfile.ZIP_STORED)
    path.write_bytes(path.read_bytes()[:2000])
    return path


@case("keras", "the .keras file: has no 'config.json'")
def keras_without_config(root):
    return npz(root / "m.keras", {"metadata.json": b"{}", "model.weights.h5": b"0" * 10}, zipfile.ZIP_DEFLATED)


@case("keras", "config.json: invalid JSON")
def keras_config_not_json(root):
    return npz(root / "m.keras", {"config.json": b'{"class_name": ', "model.weights.h5": b"0"}, zipfile.ZIP_DEFLATED)


@case("keras", "config.json is not a JSON object")
def keras_config_not_an_object(root):
    return npz(root / "m.keras", {"config.json": b"[1, 2]"}, zipfile.ZIP_DEFLATED)


@case("h5model", "an HDF5 file without a model_config (weights only?)", only=("convert", "quantize-keras"))
def h5model_without_model_config(root):
    return h5_model(root / "m.h5", attrs=False)


@case("keras", "to 4000000000 (a zip bomb?)")
def keras_zip_bomb(root):
    path = npz(root / "m.keras", {"model.weights.h5": b"0" * 10}, zipfile.ZIP_DEFLATED)
    return lie_about_sizes(path, 4_000_000_000, stored=False)


@case("keras", "the .keras file is a FIFO (named pipe)")
def keras_fifo(root):
    return fifo_at(root, "m.keras")


# --------------------------------------------------------------------------------------------------
# SavedModel folders (tflite; refused before TensorFlow is imported).

@case("savedmodel", "the SavedModel file is a FIFO (named pipe)")
def savedmodel_fifo_variables(root):
    folder = root / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    os.mkfifo(folder / "variables" / "variables.index")
    return folder


@case("savedmodel", "not a SavedModel folder (no saved_model.pb)", only=("tflite",))
def savedmodel_without_pb(root):
    (root / "saved" / "variables").mkdir(parents=True)
    return root / "saved"


# --------------------------------------------------------------------------------------------------
# Data files (eval --data, mixed --data, tflite --calibration).

@case("data", "array 'x': holds 1 non-finite value(s), the first nan at index (1, 2)")
def data_nan_input(root):
    x = X.copy()
    x[1, 2] = np.nan
    return data_file(root, x=x, y=Y)


@case("data", "array 'y': holds 1 non-finite value(s), the first inf", only=("eval", "mixed"))
def data_inf_label(root):
    return data_file(root, x=X, y=np.array([0.0, np.inf, 1.0]))


@case("data", "accuracy needs integer class labels (or one-hot rows), but it holds 0.5", only=("eval", "mixed"))
def data_fractional_labels(root):
    return data_file(root, x=X, y=np.array([0.0, 0.5, 1.0]))


@case("data", "class labels must be >= 0, but it holds -1", only=("eval", "mixed"))
def data_negative_labels(root):
    return data_file(root, x=X, y=np.array([0, -1, 1]))


@case("data", "x has 3 samples and y 2", only=("eval", "mixed"))
def data_lengths_differ(root):
    return data_file(root, x=X, y=Y[:2])


@case("data", "is a single number; it needs a first axis of samples")
def data_scalar_input(root):
    return data_file(root, x=np.float32(1.0), y=np.int64(0))


@case("data", "but 8 bytes follow it")
def data_header_lies(root):
    lie = npy_bytes(header=b"{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 8), }", data=b"\0" * 8)
    return npz(root / "d.npz", {"x.npy": lie, "y.npy": Y})


@case("data", "holds object values; data arrays must be numbers or booleans")
def data_pickled_objects(root):
    obj = npy_bytes(header=b"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", data=b"\0" * 24)
    return npz(root / "d.npz", {"x.npy": obj, "y.npy": Y})


@case("data", "to 4000000000 (a zip bomb?)")
def data_zip_bomb(root):
    return keras_zip_bomb(root).rename(root / "d.npz")


@case("data", "the data file is a FIFO (named pipe)")
def data_fifo(root):
    return fifo_at(root, "d.npz")


@case("data", "the data file is a character device")
def data_device(root):
    return Path("/dev/zero")


@case("data", "the data file is a folder")
def data_folder(root):
    (root / "d.npz").mkdir(parents=True)
    return root / "d.npz"


@case("data", "needs arrays 'x', 'y'; has 'inputs'", only=("eval", "mixed"))
def data_missing_arrays(root):
    return data_file(root, inputs=X)


# --------------------------------------------------------------------------------------------------
# Files built by tests/fuzz/fuzz_sources.py that once escaped as other exceptions (kept in
# tests/data/fuzz_findings/).

FINDINGS = Path(__file__).parent / "fuzz_findings"


def _finding(name: str, kind: str, expected: str, only: Tuple[str, ...] = ()):
    def build(root):
        root.mkdir(parents=True, exist_ok=True)
        target = root / ("d.npz" if kind == "data" else "m.npz")
        target.write_bytes((FINDINGS / f"{name}.npz").read_bytes())
        return target
    CASES.append(Case(f"fuzz_{kind}_{name}", kind, expected, build, only))


_finding("header_outside_file", "npz", "x.npy: corrupt zip entry (its header lies outside the file)")  # was OSError
_finding("header_outside_file", "data", "array 'x': cannot be read", only=("tflite",))
_finding("zip_version_10_8", "npz", "is not a readable zip archive (zip file version 10.8)")  # NotImplementedError
_finding("zip_version_10_8", "data", "is not a readable zip archive (zip file version 10.8)")
_finding("negative_dim", "data", "shape must be a list of non-negative integers, got [6, -1, 0]",
         only=("tflite",))  # a ValueError from reshape
_finding("zero_and_huge_dims", "data", "has more elements than any real tensor", only=("tflite",))  # ValueError


@case("data", "member 'x.npy' of the data file (.npz) is encrypted")
def data_encrypted_member(root):
    return encrypted_npz(root / "d.npz", {"x.npy": X, "y.npy": Y})

