"""Writes tests/data/bad_models/: one folder per malformed web model, each with expected.txt holding
the text its error message must contain. Run from the repository root to regenerate:
    python tests/data/make_bad_models.py"""
import json
import os
import shutil
import struct
from pathlib import Path

ROOT = Path(__file__).parent / "bad_models"
F32 = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)


def weight(name="w", shape=(4,), dtype="float32", **extra):
    return {"name": name, "shape": list(shape), "dtype": dtype, **extra}


def manifest(weights, paths=("group1-shard1of1.bin",)):
    return [{"paths": list(paths), "weights": weights}]


def case(name, expected, files):
    folder = ROOT / name
    folder.mkdir(parents=True)
    for file, content in files.items():
        if isinstance(content, (list, dict)):
            content = json.dumps(content)
        if isinstance(content, str):
            content = content.encode()
        (folder / file).write_bytes(content)
    (folder / "expected.txt").write_text(expected)
    return folder


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    m = "weights_manifest.json"
    shard = {"group1-shard1of1.bin": F32}
    case("invalid_json", "weights_manifest.json: invalid JSON", {m: '[{"paths": [}'})
    case("empty_model_json", "model.json: the file is empty", {"model.json": b""})
    case("not_utf8", "not UTF-8 text", {m: b'[{"paths": [], "weights": [{"name": "\xff"}]}]'})
    case("manifest_not_a_list", "must be a list of groups", {"model.json": {"weightsManifest": {"paths": []}}})
    case("model_json_without_manifest", "needs a 'weightsManifest'", {"model.json": {"modelTopology": {}}})
    case("group_missing_weights", "missing or invalid 'weights'", {m: [{"paths": []}], **shard})
    case("weight_missing_shape", "shape must be a list", {m: manifest([{"name": "w", "dtype": "float32"}]), **shard})
    case("unknown_dtype", "unknown dtype 'float64'", {m: manifest([weight(dtype="float64")]), **shard})
    case("unknown_quantization_dtype", "unknown quantization dtype 'uint4'",
         {m: manifest([weight(quantization={"dtype": "uint4"})]), **shard})
    case("negative_shape", "non-negative integers", {m: manifest([weight(shape=(-4,))]), **shard})
    case("fractional_shape", "non-negative integers", {m: manifest([weight(shape=(2.5,))]), **shard})
    case("huge_shape", "more elements than any real tensor",
         {m: manifest([weight(shape=(2 ** 40, 2 ** 40, 2 ** 40))]), **shard})
    case("duplicate_names", "duplicate weight name 'w'", {m: manifest([weight(), weight()]), **shard})
    case("non_unicode_name", "not valid Unicode", {m: '[{"paths": [], "weights": [{"name": "a\\udcff", '
                                                      '"shape": [0], "dtype": "float32"}]}]'})
    for label, value in (("zero", "0"), ("nan", "NaN"), ("inf", "Infinity")):
        text = ('[{"paths": ["group1-shard1of1.bin"], "weights": [{"name": "w", "shape": [4], "dtype": "float32", '
                f'"quantization": {{"dtype": "uint8", "min": 0, "scale": {value}}}}}]}}]')
        expected = "scale must be > 0" if label == "zero" else "not a finite number"
        case(f"scale_{label}", expected, {m: text, "group1-shard1of1.bin": b"\0\1\2\3"})
    case("short_shard", "the shards hold 12 bytes but its weights need 16 (4 bytes missing", {m: manifest([weight()]), "group1-shard1of1.bin": F32[:12]})
    case("long_shard", "(4 extra bytes;", {m: manifest([weight()]), "group1-shard1of1.bin": F32 + b"abcd"})
    case("missing_shard", "group1-shard1of1.bin: shard file is missing", {m: manifest([weight()])})
    case("extra_shard", "(4 extra bytes;", {m: manifest([weight()], ("a.bin", "b.bin")), "a.bin": F32, "b.bin": b"more"})
    case("empty_shard", "shard file is empty", {m: manifest([weight()], ("a.bin", "b.bin")), "a.bin": F32, "b.bin": b""})
    for label, path in (("dotdot", "../outside.bin"), ("absolute", "/etc/hostname"),
                        ("url", "https://example.com/group1-shard1of1.bin"), ("nested_dotdot", "x/../../outside.bin")):
        expected = "not a relative file name" if label in ("absolute", "url") else "leaves the model folder"
        case(f"path_{label}", expected, {m: manifest([weight()], (path,))})
    folder = case("path_symlink_out", "resolves outside the model folder (symlink)", {m: manifest([weight()], ("link.bin",))})
    os.symlink("../../../../README.md", folder / "link.bin")


if __name__ == "__main__":
    main()
