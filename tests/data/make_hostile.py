"""Hostile inputs of every kind qshard reads, built on the spot by tests/formats/test_hostile.py:
FIFOs, sockets and devices cannot live in git, and the rest is cheaper to build than to keep.
(tests/data/bad_models, from make_bad_models.py, holds the malformed web-model manifests.)

Each case is a function that writes an input under a folder and returns its path, registered with
the kind of input it is (which decides the commands it is run against) and the text the error
must contain. The cases live in hostile_weights.py (web models, safetensors, .npz, .npy) and
hostile_keras.py (HDF5, Keras, SavedModel, data files, fuzzing findings), which register them here
when imported (at the bottom). `python tests/data/make_hostile.py DIR` writes them all under DIR."""
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


def encrypted_npz(path: Path, members) -> Path:
    """A stored zip whose members claim to be encrypted (general-purpose flag bit 0, set in each local
    header and central directory entry), as the fuzzer built: zipfile asks for a password on open."""
    raw = bytearray(npz(path, members).read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at >= 0:
            raw[at + flags_at] |= 0x1
            at = raw.find(signature, at + 4)
    path.write_bytes(bytes(raw))
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


def data_file(root, **arrays):
    return npz(root / "d.npz", {f"{k}.npy": v for k, v in arrays.items()})


X = np.zeros((3, 8), np.float32)
Y = np.array([0, 1, 2])


def main(out: Path) -> None:
    import make_hostile  # (run as a script this module is __main__; the cases register in make_hostile)
    for c in make_hostile.CASES:
        c.build(out / c.name)
        print(c.kind, c.name)


# The cases, registered as their modules are imported.
import hostile_weights  # noqa: E402,F401,I001
import hostile_keras  # noqa: E402,F401

if __name__ == "__main__":
    main(Path(sys.argv[1]))
