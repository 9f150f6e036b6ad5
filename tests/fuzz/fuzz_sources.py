"""Fuzz the other readers with atheris: safetensors headers, .npz members (as weights and as eval
data), and Keras .h5 model configs. Each input picks one target; any exception other than qshard's
own user errors (QshardError) is a finding. Run by CI for a bounded time; longer by hand:
    python tests/fuzz/fuzz_sources.py -max_total_time=600
A finding becomes a case of tests/data/hostile_*.py: QSHARD_FUZZ_KEEP=DIR python
tests/fuzz/fuzz_sources.py CRASH-FILE copies the file the input built into DIR.
"""
import json
import os
import shutil
import struct
import tempfile
import zipfile

import atheris
from harness import fuzz, refusing

with atheris.instrument_imports():
    from qshard.accuracy import data as eval_data
    from qshard.formats import sources
    from qshard.formats.shards import Scratch
    from qshard.keras.load import load_model_parts

WORK = tempfile.mkdtemp(prefix="qshard-fuzz-sources-")
ST_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "U64", "F8", "", None, 3]
NPY_DESCR = ["'<f4'", "'<f2'", "'>f8'", "'<i8'", "'|b1'", "'|u1'", "'<c8'", "'|O'", "'|V4'", "'<U3'", "'<M8[s]'",
             "[('a', '<f4')]", "'xx'", "()", "None"]
DIMS = [0, 1, 2, 3, 7, 100, 1 << 20, 1 << 32, 1 << 62, -1, True, 2.5, "3", None]
LAYERS = ["Dense", "Conv2D", "InputLayer", "Flatten", "Activation", "Sequential", "Lambda", "", None, 7]
KEYS = ["name", "units", "activation", "batch_input_shape", "filters", "kernel_size", "layers", "inbound_nodes",
        "input_layers", "output_layers", "config", "class_name", "use_bias", "dtype"]


def shape(fdp):
    return [fdp.PickValueInList(DIMS) if fdp.ConsumeIntInRange(0, 7) == 0 else fdp.ConsumeIntInRange(0, 40)
            for _ in range(fdp.ConsumeIntInRange(0, 4))]


def value(fdp, depth=0):
    """A JSON value, mostly small and plausible, sometimes deep or odd."""
    pick = fdp.ConsumeIntInRange(0, 9)
    if depth > 6 or pick < 3:
        return fdp.PickValueInList([0, 1, 8, -1, 2.5, True, None, "relu", "linear", "x", [None, 8], [], {}])
    if pick < 6:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if pick < 9:
        return {fdp.PickValueInList(KEYS): value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}
    return json.loads("[" * 40 + "]" * 40)


def read_all(source):
    scratch = Scratch()
    try:
        for tensor in source.tensors:
            for _ in tensor.float32_chunks(scratch) if tensor.web_dtype == "float32" else tensor.stored_chunks(scratch):
                pass
    finally:
        source.close()


def build_safetensors(fdp, path):
    if fdp.ConsumeIntInRange(0, 5) == 0:
        header = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    else:
        entries = {}
        for i in range(fdp.ConsumeIntInRange(0, 3)):
            entries[fdp.PickValueInList([f"t{i}", "", "__metadata__", "\udcff", "a/b"])] = {
                "dtype": fdp.PickValueInList(ST_DTYPES), "shape": shape(fdp),
                "data_offsets": [fdp.ConsumeIntInRange(-2, 64), fdp.PickValueInList([0, 4, 8, 16, 64, 1 << 40, -1])]}
        header = json.dumps(entries).encode("utf-8", "surrogatepass")
    length = len(header) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 1 << 20)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length) + header + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 128)))


def read_safetensors(fdp, path):
    read_all(sources.open_source(path, "safetensors"))


def npy_member(fdp):
    if fdp.ConsumeIntInRange(0, 6) == 0:
        return b"\x93NUMPY" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    dims = shape(fdp)
    header = (f"{{'descr': {fdp.PickValueInList(NPY_DESCR)}, 'fortran_order': {fdp.ConsumeBool()}, "
              f"'shape': ({', '.join(map(repr, dims))}{',' if len(dims) == 1 else ''}), }}").encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    version = fdp.PickValueInList([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09"])
    size = struct.pack("<H" if version == b"\x01\x00" else "<I", len(header))
    return b"\x93NUMPY" + version + size + header + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256))


def build_npz(fdp, path):
    compression = zipfile.ZIP_DEFLATED if fdp.ConsumeIntInRange(0, 3) == 0 else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression) as z:
        for name in ("x", "y", "calibration", "w")[:fdp.ConsumeIntInRange(0, 4)]:
            z.writestr(f"{name}.npy", npy_member(fdp))
    if fdp.ConsumeIntInRange(0, 5) == 0:  # a cut or patched archive
        raw = bytearray(open(path, "rb").read())
        if raw:
            at = fdp.ConsumeIntInRange(0, len(raw) - 1)
            raw[at:at + 4] = fdp.ConsumeBytes(4)
        with open(path, "wb") as f:
            f.write(bytes(raw[:fdp.ConsumeIntInRange(0, len(raw))] if fdp.ConsumeBool() else raw))


def read_npz(fdp, path):
    refusing(lambda: read_all(sources.open_source(path, "npz")))
    refusing(eval_data.labelled, path, fdp.PickValueInList(["accuracy", "mae"]))
    eval_data.inputs(path, "x")


def build_h5_model(fdp, path):
    import h5py
    config = {"class_name": fdp.PickValueInList(["Sequential", "Functional", "Model", "Other", None]),
              "config": {"name": "m", "layers": [
                  {"class_name": fdp.PickValueInList(LAYERS), "config": value(fdp), "name": "l",
                   "inbound_nodes": value(fdp)} for _ in range(fdp.ConsumeIntInRange(0, 3))],
                  "input_layers": value(fdp), "output_layers": value(fdp)}}
    if fdp.ConsumeIntInRange(0, 4) == 0:
        config = value(fdp)
    text = json.dumps(config) if fdp.ConsumeIntInRange(0, 9) else fdp.ConsumeUnicodeNoSurrogates(100).replace("\0", "")
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = text
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [fdp.PickValueInList([b"l", b"dense", b""]) for _ in range(fdp.ConsumeIntInRange(0, 2))]
        layer = weights.create_group("l")
        layer.attrs["weight_names"] = [fdp.PickValueInList([b"w", b"l/w", b"missing"]) for _ in range(fdp.ConsumeIntInRange(0, 2))]
        layer.create_dataset("w", data=b"x" if fdp.ConsumeIntInRange(0, 5) == 0 else [[1.0, 2.0]])


def read_h5_model(fdp, path):
    load_model_parts(path)


TARGETS = [(build_safetensors, read_safetensors, "m.safetensors"), (build_npz, read_npz, "m.npz"),
           (build_h5_model, read_h5_model, "m.h5")]
KEEP = os.environ.get("QSHARD_FUZZ_KEEP")  # a folder: copy each built file there (to turn a finding into a case)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    build, read, name = TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)]
    shutil.rmtree(WORK, ignore_errors=True)
    os.mkdir(WORK)
    path = os.path.join(WORK, name)
    build(fdp, path)
    if KEEP:
        shutil.copy(path, KEEP)
    refusing(read, fdp, path)


if __name__ == "__main__":
    fuzz(one_input, WORK)
