"""Hostile web models, safetensors files, .npz archives and folders of .npy (see make_hostile.py)."""
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from make_hostile import (CASES, Case, case, deep, edit_manifest, encrypted_npz, fifo_at, npy_bytes, npz, safetensors,
                          swap_for_fifo, swap_for_socket, web_model)

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


@case("npz", "is encrypted; qshard reads only unencrypted archives")
def npz_encrypted_member(root):
    return encrypted_npz(root / "w.npz", {"w.npy": np.ones((2, 3), np.float32)})

