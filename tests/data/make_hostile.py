"""Hostile inputs of every kind qshard reads, built on the spot by tests/formats/test_hostile.py:
FIFOs, sockets and devices cannot live in git, and the rest is cheaper to build than to keep.
(tests/data/bad_models, from make_bad_models.py, holds the malformed web-model manifests.)

Each case is a function that writes an input under a folder and returns its path, registered with
the kind of input it is (which decides the commands it is run against) and the text the error
must contain. `python tests/data/make_hostile.py DIR` writes them all under DIR to look at."""
import json
import os
import socket
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

from qshard import tfjs
from qshard.example import dense_layer

# What each kind is: a tfjs web model folder; a weights file or folder for `quantize`; a Keras 2
# .h5 model or a .keras file for `convert` / `eval` / `mixed` / `tflite`; a SavedModel folder for
# `tflite`; a data file for --data and --calibration.
KINDS = ("web", "safetensors", "npz", "npy", "h5", "h5model", "keras", "savedmodel", "data")


@dataclass
class Case:
    name: str
    kind: str
    expected: str
    build: Callable[[Path], Path]
    only: Tuple[str, ...] = ()  # the commands that read the hostile part (default: every one of the kind)


CASES: List[Case] = []


def case(kind: str, expected: str, only: Tuple[str, ...] = ()):
    def register(build):
        CASES.append(Case(build.__name__, kind, expected, build, only))
        return build
    return register


# --------------------------------------------------------------------------------------------------
# Helpers.

def web_model(folder: Path, weights=None, doc_extra=None) -> Path:
    """A small layers model (float32 kernel, bias) whose model.json can be edited."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    weights = weights or [("dense/kernel", rng.standard_normal((8, 4)).astype(np.float32)),
                          ("dense/bias", rng.standard_normal(4).astype(np.float32))]
    manifest = tfjs.write_weights([weights], folder, write_manifest=False)
    doc = {"format": "layers-model", "modelTopology": {"class_name": "Sequential", "config": {
        "name": "s", "layers": [dense_layer("dense", 4, "linear", 8)]}}, "weightsManifest": manifest}
    doc.update(doc_extra or {})
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


def edit_manifest(folder: Path, edit) -> Path:
    doc = json.loads((folder / "model.json").read_text())
    edit(doc["weightsManifest"])
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


def swap_for_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def fifo_at(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / name)
    return root / name


def swap_for_socket(path: Path) -> None:
    """A bound UNIX socket left on disk (the socket object is closed; the file stays)."""
    path.unlink(missing_ok=True)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
    finally:
        s.close()


def safetensors(path: Path, header, data: bytes = b"") -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def npy_bytes(array=None, header: bytes = None, data: bytes = None) -> bytes:
    """An .npy file; a raw header dict text and data replace the array's when given."""
    if header is None:
        import io
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return buf.getvalue()
    header = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + (data or b"")


def npz(path: Path, members, compression=zipfile.ZIP_STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data if isinstance(data, bytes) else npy_bytes(data))
    return path


def lie_about_sizes(path: Path, member_size: int, stored: bool) -> Path:
    """Patch a one-member zip's declared sizes (local header and central directory) to member_size
    inflated (and, when stored, compressed too): what a zip bomb declares, without the bytes."""
    raw = bytearray(path.read_bytes())
    size = struct.pack("<I", member_size)
    local = raw.index(b"PK\x03\x04")
    raw[local + 22:local + 26] = size
    central = raw.index(b"PK\x01\x02")
    raw[central + 24:central + 28] = size
    if stored:
        raw[local + 18:local + 22] = size
        raw[central + 20:central + 24] = size
    path.write_bytes(bytes(raw))
    return path


def h5_model(path: Path, config=None, layer_names=(b"dense",), weight_names=(b"dense/kernel:0", b"dense/bias:0"),
             attrs=True) -> Path:
    """A Keras 2 (tf_keras) whole-model .h5 as tensorflowjs reads it: model_config + model_weights."""
    import h5py
    path.parent.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = {"class_name": "Sequential", "config": {"name": "s", "layers": [dense_layer("dense", 4, "linear", 8)]}}
    with h5py.File(path, "w") as f:
        if attrs:
            f.attrs["model_config"] = config if isinstance(config, str) else json.dumps(config)
            f.attrs["keras_version"] = "2.15.0"
            f.attrs["backend"] = "tensorflow"
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = list(layer_names)
        layer = group.create_group("dense")
        layer.attrs["weight_names"] = list(weight_names)
        layer.create_dataset("dense/kernel:0", data=np.ones((8, 4), np.float32))
        layer.create_dataset("dense/bias:0", data=np.zeros(4, np.float32))
    return path


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------------------------------
# Web models (beyond the malformed manifests of tests/data/bad_models).

def swap_for_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _swapped(file: str, swap, give_file: bool):
    """A web model with one of its files replaced by something that is not a regular file."""
    def build(root):
        folder = web_model(root / "m")
        swap(folder / file)
        return folder / file if give_file else folder
    return build


for _name, _file, _swap, _what, _give_file in (
        ("fifo_shard", "group1-shard1of1.bin", swap_for_fifo, "shard file is a FIFO (named pipe)", False),
        ("socket_shard", "group1-shard1of1.bin", swap_for_socket, "shard file is a socket", False),
        ("folder_shard", "group1-shard1of1.bin", swap_for_folder, "shard file is a folder", False),
        ("fifo_model_json", "model.json", swap_for_fifo, "model JSON is a FIFO (named pipe)", True),
        ("fifo_model_json_in_folder", "model.json", swap_for_fifo, "model JSON is a FIFO (named pipe)", False)):
    CASES.append(Case(f"web_{_name}", "web", f"the {_what}, not a regular file", _swapped(_file, _swap, _give_file)))


@case("web", "the model JSON is 2147483648 bytes; qshard reads at most")
def web_huge_model_json(root):
    folder = web_model(root / "m")
    os.truncate(folder / "model.json", 1 << 31)  # sparse: costs no disk
    return folder


def _path_case(path):
    def build(root):
        folder = web_model(root / "m")
        if os.path.dirname(path):
            os.makedirs(folder / os.path.dirname(path), exist_ok=True)
        os.rename(folder / "group1-shard1of1.bin", folder / path)

        def edit(manifest):
            manifest[0]["paths"] = [path]
        return edit_manifest(folder, edit)
    return build


for _name, _path, _why in (("percent_dotdot", "%2e%2e", "'%'"), ("percent", "a%41.bin", "'%'"),
                           ("backslash", "sub\\x.bin", "a backslash"), ("query", "a.bin?v=1", "'?'"),
                           ("fragment", "a.bin#x", "'#'"), ("tab", "a\tb.bin", "a tab or line break"),
                           ("trailing_space", "a.bin ", "a trailing space or control character")):
    CASES.append(Case(f"web_path_{_name}", "web", f"holds {_why}", _path_case(_path)))


@case("web", "float16 quantization of a int32 weight: tfjs accepts it only for float32")
def web_float16_int32(root):
    folder = web_model(root / "m", [("step", np.arange(4, dtype=np.int32))])

    def edit(manifest):
        manifest[0]["weights"][0]["quantization"] = {"dtype": "float16", "original_dtype": "int32"}
    return edit_manifest(folder, edit)


@case("web", "quantization is null")
def web_quantization_null(root):
    return edit_manifest(web_model(root / "m"), lambda m: m[0]["weights"][0].update(quantization=None))


@case("web", "holds NaN, which is not JSON")
def web_nan_token(root):
    folder = web_model(root / "m", doc_extra={"userDefinedMetadata": {"threshold": float("nan")}})
    return folder


@case("web", "nests 701 levels deep; qshard reads at most 512")
def web_deep_json(root):
    folder = web_model(root / "m")
    text = (folder / "model.json").read_text()
    (folder / "model.json").write_text(text[:-1] + ', "deep": ' + deep(700) + "}")
    return folder


@case("web", "has 1000000 elements, which need at least 4000000 bytes, but its shards hold 64")
def web_string_count_lies(root):
    folder = web_model(root / "m")
    (folder / "group1-shard1of1.bin").write_bytes(b"\0" * 64)
    return edit_manifest(folder, lambda m: m[0].update(weights=[{"name": "s", "shape": [1000000], "dtype": "string"}]))


@case("web", "has 1099511627776 elements; qshard reads string weights of at most 16777216")
def web_string_count_beyond_limit(root):
    folder = web_model(root / "m")
    (folder / "group1-shard1of1.bin").write_bytes(b"\0" * 64)
    return edit_manifest(folder, lambda m: m[0].update(weights=[{"name": "s", "shape": [1 << 40], "dtype": "string"}]))


@case("web", "more elements than any real tensor")
def web_many_huge_dims(root):
    folder = web_model(root / "m")
    return edit_manifest(folder, lambda m: m[0]["weights"][0].update(shape=[10 ** 300] * 20000))


# --------------------------------------------------------------------------------------------------
# safetensors.

def _tensor_header(**info):
    return {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], **info}}


@case("safetensors", "safetensors header length 4096 does not fit the file")
def st_header_length_lies(root):
    path = safetensors(root / "m.safetensors", _tensor_header(), b"\0" * 8)
    raw = bytearray(path.read_bytes())
    raw[:8] = struct.pack("<Q", 4096)
    path.write_bytes(bytes(raw))
    return path


@case("safetensors", "safetensors header: invalid JSON")
def st_header_not_json(root):
    return safetensors(root / "m.safetensors", b'{"w": {"dtype": ', b"\0" * 8)


@case("safetensors", "NaN is not JSON")
def st_header_nan(root):
    return safetensors(root / "m.safetensors", b'{"__metadata__": {"x": NaN}}')


@case("safetensors", "the header nests 601 levels deep")
def st_header_deep(root):
    return safetensors(root / "m.safetensors", ('{"__metadata__": ' + deep(600) + "}").encode())


@case("safetensors", "has more elements than any real tensor")
def st_shape_overflows_int64(root):
    # 2^96 elements: int64 arithmetic wraps it to 0, which the data_offsets [0, 0] would "match".
    return safetensors(root / "m.safetensors", _tensor_header(shape=[1 << 32] * 3, data_offsets=[0, 0]))


@case("safetensors", "bad shape [True]")
def st_bool_shape(root):
    return safetensors(root / "m.safetensors", _tensor_header(shape=[True]), b"\0" * 8)


@case("safetensors", "fall outside the file")
def st_offsets_past_end(root):
    return safetensors(root / "m.safetensors", _tensor_header(data_offsets=[0, 1 << 40]), b"\0" * 8)


@case("safetensors", "weight name must be a non-empty string")
def st_empty_name(root):
    return safetensors(root / "m.safetensors", {"": _tensor_header()["w"]}, b"\0" * 8)


@case("safetensors", "is not valid Unicode")
def st_lone_surrogate_name(root):
    return safetensors(root / "m.safetensors", b'{"w\\udcff": {"dtype": "F32", "shape": [2], '
                                               b'"data_offsets": [0, 8]}}', b"\0" * 8)


@case("safetensors", "the safetensors file is a FIFO (named pipe)")
def st_fifo(root):
    return fifo_at(root, "m.safetensors")


# --------------------------------------------------------------------------------------------------
# .npz and folders of .npy.

@case("npz", "is not a readable zip archive")
def npz_not_a_zip(root):
    (root).mkdir(parents=True, exist_ok=True)
    (root / "m.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    return root / "m.npz"


@case("npz", "compressed members (numpy.savez_compressed) cannot be read in place")
def npz_compressed(root):
    return npz(root / "m.npz", {"w.npy": np.ones(4, np.float32)}, zipfile.ZIP_DEFLATED)


def npy_header(descr: str, shape: str, fortran: bool = False) -> bytes:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()


def _npz_member(header: bytes, data: bytes):
    return lambda root: npz(root / "m.npz", {"w.npy": npy_bytes(header=header, data=data)})


for _name, _header, _data, _expected in (
        ("header_lies", npy_header("'<f4'", "(1000000,)"), b"\0" * 16, "but only 16 bytes follow it"),
        ("object_dtype", npy_header("'|O'", "(1,)"), b"\0" * 8, "object arrays are not supported"),
        ("hostile_header", b"{'descr': " + b"(" * 3000 + b")" * 3000 + b"}", b"", "not a readable .npy array"),
        ("void_dtype", npy_header("'|V8'", "(1,)"), b"\0" * 8, "has no TensorFlow.js counterpart")):
    CASES.append(Case(f"npz_{_name}", "npz", _expected, _npz_member(_header, _data)))


@case("npz", "the .npz archive is a FIFO (named pipe)")
def npz_fifo(root):
    return fifo_at(root, "m.npz")


@case("npy", "the .npy file is a FIFO (named pipe)")
def npy_fifo_member(root):
    folder = root / "weights"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.ones(3, np.float32))
    os.mkfifo(folder / "b.npy")
    return folder


@case("npy", "but only 12 bytes follow it")
def npy_header_lies(root):
    folder = root / "weights"
    folder.mkdir(parents=True)
    (folder / "w.npy").write_bytes(npy_bytes(header=b"{'descr': '<f4', 'fortran_order': True, "
                                                    b"'shape': (1000, 1000), }", data=b"\0" * 12))
    return folder


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


@case("h5model", "model_config must be an object with 'class_name' and 'config'", only=("convert",))
def h5model_config_without_config(root):
    return h5_model(root / "m.h5", {"class_name": "Sequential"})


@case("h5model", "a malformed Keras .h5 model (KeyError: 'class_name')", only=("convert",))
def h5model_layer_without_class(root):
    return h5_model(root / "m.h5", {"class_name": "Sequential", "config": {"layers": [{"config": {}}]}})


@case("h5model", "model_config: invalid JSON", only=("convert",))
def h5model_config_not_json(root):
    return h5_model(root / "m.h5", '{"class_name": ')


@case("h5model", "the model_config nests 901 levels deep", only=("convert",))
def h5model_config_deep(root):
    return h5_model(root / "m.h5", '{"class_name": "Sequential", "config": ' + deep(900) + "}")


@case("h5model", "lists 'missing', which the file does not have", only=("convert",))
def h5model_missing_layer(root):
    return h5_model(root / "m.h5", layer_names=(b"dense", b"missing"))


@case("h5model", "links to another file, which qshard does not open", only=("convert",))
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

def data_file(root, **arrays):
    return npz(root / "d.npz", {f"{k}.npy": v for k, v in arrays.items()})


X = np.zeros((3, 8), np.float32)
Y = np.array([0, 1, 2])


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


def main(out: Path) -> None:
    for c in CASES:
        c.build(out / c.name)
        print(c.kind, c.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
