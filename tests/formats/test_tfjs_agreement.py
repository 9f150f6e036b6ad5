"""`qshard verify` and stock tfjs 4.22 agree: what tfjs refuses, verify reports (and every reader
refuses); the shard paths verify accepts are exactly those a browser resolves to the same file as
the file system does."""
import json
import posixpath
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from make_hostile import edit_manifest, web_model  # noqa: E402
from support.node import run_node  # noqa: E402

from qshard.errors import ShardError  # noqa: E402
from qshard.formats.shards import safe_shard_path  # noqa: E402
from qshard.formats.summary import verify  # noqa: E402


def _float16_int32(folder):
    web_model(folder, [("step", np.arange(4, dtype=np.int32))])
    # 4 int32 elements as float16 take 8 bytes: the shard is sized for it, so only the dtype is wrong.
    (folder / "group1-shard1of1.bin").write_bytes(np.arange(4, dtype=np.float16).tobytes())
    edit_manifest(folder, lambda m: m[0]["weights"][0].update(
        quantization={"dtype": "float16", "original_dtype": "int32"}))


def _quantization_null(folder):
    edit_manifest(web_model(folder), lambda m: m[0]["weights"][0].update(quantization=None))


def _nan_token(folder):
    web_model(folder, doc_extra={"userDefinedMetadata": {"threshold": float("nan")}})


REFUSED_BY_TFJS = {"float16-on-int32": _float16_int32, "quantization-null": _quantization_null,
                   "nan-token": _nan_token}


@pytest.mark.parametrize("name", sorted(REFUSED_BY_TFJS))
def test_what_tfjs_refuses_verify_reports(name, node, tmp_path):
    folder = tmp_path / name
    REFUSED_BY_TFJS[name](folder)
    error = run_node(node, "decode_weights.js", [folder, tmp_path / "out.json"])
    assert error, f"tfjs decoded {name}"
    assert not verify(folder).ok


def test_a_sound_model_passes_both(node, tmp_path):
    web_model(tmp_path / "m")
    assert run_node(node, "decode_weights.js", [tmp_path / "m", tmp_path / "out.json"]) == ""
    assert verify(tmp_path / "m").ok


PATHS = ["a.bin", "sub/a.bin", "sub/./a.bin", "a b.bin", "ü.bin", "a;b.bin", "a&b=c.bin", "a+b.bin", "a'b(1).bin",
         "a@b:c.bin", "a$b!c.bin", "a,b~c.bin", "[a].bin", "{a}.bin", "a|b.bin", "a^b.bin", "a`b.bin", "a<b>.bin",
         '"a".bin', "%2e%2e", "sub/%2E%2e/a.bin", "a%41.bin", "a%zz.bin", "a%20b.bin", "sub\\a.bin", "a.bin?v=1",
         "a.bin#x", "a\tb.bin", "a\nb.bin", "a\rb.bin", "a.bin ", " a.bin", "a\x7fb.bin", "a\x01b.bin", "a.bin\x01",
         "a.bin\x7f"]


def test_shard_paths_verify_accepts_are_those_a_browser_resolves_alike(node, tmp_path):
    (tmp_path / "paths.json").write_text(json.dumps(PATHS))
    assert run_node(node, "url_paths.js", [tmp_path / "paths.json", tmp_path / "served.json"]) == ""
    served = json.loads((tmp_path / "served.json").read_text())
    for path, url_path in zip(PATHS, served):
        on_disk = posixpath.normpath("/m/" + path)
        try:
            safe_shard_path(tmp_path, path, "model.json")
            accepted = True
        except ShardError:
            accepted = False
        assert accepted == (url_path == on_disk), (path, url_path, on_disk)
