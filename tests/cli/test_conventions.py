"""The conventions users bring from tensorflowjs_converter and from other tools, at the command line
(exit code and message): comma lists of patterns, patterns that match nothing, model JSONs of any
name, full weight names in tables, honest wording and early checks in `bench --browser`, extras that
bring what their command needs, and re-quantizing to a wider dtype."""
import json
import re
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: the test extra brings tomli
    import tomli as tomllib

from conftest import require
from qshard import cli, example, tfjs
from qshard.web import bench as web_bench
from support.hide import run_without

ROOT = Path(__file__).resolve().parents[2]
LONG = "StatefulPartitionedCall/mobilenetv2_0.35_224/block_16_project_BN/FusedBatchNormV3/ReadVariableOp"


def stored(model_json: Path):
    doc = json.loads(model_json.read_text())
    return {w["name"]: w.get("quantization", {}).get("dtype") for g in doc["weightsManifest"] for w in g["weights"]}


@pytest.fixture
def model(tmp_path):
    """A graph-model folder whose JSON is not named model.json, with a long name and a comma in a name."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "faceres"
    folder.mkdir()
    manifest = tfjs.write_weights([[("conv/kernel", rng.standard_normal((3, 3, 2, 4)).astype(np.float32)),
                                    ("dense/kernel", rng.standard_normal((8, 4)).astype(np.float32)),
                                    ("odd,name", rng.standard_normal(5).astype(np.float32)),
                                    (LONG, rng.standard_normal((6, 3)).astype(np.float32))]],
                                  folder, write_manifest=False)
    (folder / "faceres-deep.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {},
                                                          "weightsManifest": manifest}))
    return folder / "faceres-deep.json"


def test_comma_lists_are_patterns_as_in_tensorflowjs_converter(model, tmp_path, capsys):
    assert cli.main(["quantize", str(model), str(tmp_path / "a"), "--uint8", "conv/*,dense/*",
                     "--float16", "odd[,]name"]) == 0
    assert stored(tmp_path / "a" / "faceres-deep.json") == {"conv/kernel": "uint8", "dense/kernel": "uint8",
                                                           "odd,name": "float16", LONG: None}
    # --keep too, and a value given with '=' as the converter's flags are written.
    assert cli.main(["quantize", str(model), str(tmp_path / "b"), "--uint16", "--keep=conv/*,odd?name"]) == 0
    assert stored(tmp_path / "b" / "faceres-deep.json") == {"conv/kernel": None, "dense/kernel": "uint16",
                                                           "odd,name": None, LONG: "uint16"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(["quantize", str(model), str(tmp_path / "c"), "--uint8", "conv/*,"])
    assert stop.value.code == 2
    assert "an empty pattern in a comma list" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_pattern_that_matches_nothing_is_an_error_unless_allowed(model, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["quantize", str(model), str(out), "--uint8", "conv/*,dens/*"]) == 2
    err = capsys.readouterr().err
    assert "pattern 'dens/*' (--uint8) matches no weight; nothing written" in err and "--allow-unmatched" in err
    assert "'conv/*'" not in err and err.count("\n") == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["faceres"]  # no temporary left
    assert cli.main(["quantize", str(model), str(out), "--uint8", "--keep", "clasifier/*"]) == 2
    assert "'clasifier/*' (--keep)" in capsys.readouterr().err and not out.exists()

    assert cli.main(["quantize", str(model), str(out), "--uint8", "conv/*,dens/*", "--allow-unmatched"]) == 0
    assert "pattern 'dens/*' matches no weight" in capsys.readouterr().err
    assert stored(out / "faceres-deep.json")["conv/kernel"] == "uint8"


def test_a_model_json_of_any_name_is_found_in_its_folder(model, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["quantize", str(model.parent), str(out), "--uint8"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["faceres-deep.json", "group1-shard1of1.bin"]
    for argv in (["inspect", str(out), "--no-gzip"], ["inspect", str(out), "--against", str(model.parent)],
                 ["verify", str(out)], ["report", str(out), "-o", str(tmp_path / "r.html")],
                 ["quantize", str(out), str(tmp_path / "again"), "--float16", "--allow-unmatched"]):
        assert cli.main(argv) == 0, argv
    text = capsys.readouterr().out
    assert "ok: " + str(out / "faceres-deep.json") in text and (tmp_path / "r.html").stat().st_size > 1000


def test_a_folder_with_several_model_jsons_names_them(model, tmp_path, capsys):
    folder = model.parent
    (folder / "faceres-lite.json").write_bytes(model.read_bytes())
    (folder / "metadata.json").write_text('{"labels": ["a", "b"]}')  # not a model: not counted
    listing = f"{folder}: this folder holds 2 model JSONs (faceres-deep.json, faceres-lite.json); name the one"
    for argv in (["inspect", str(folder)], ["quantize", str(folder), str(tmp_path / "o"), "--uint8"]):
        assert cli.main(argv) == 2
        assert listing in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert cli.main(["verify", str(folder)]) == 1  # verify's own contract: problems exit 1
    assert listing in capsys.readouterr().out
    assert cli.main(["inspect", str(folder / "faceres-lite.json"), "--no-gzip"]) == 0
    (folder / "faceres-deep.json").unlink()
    (folder / "faceres-lite.json").unlink()
    assert cli.main(["inspect", str(folder)]) == 2
    assert "no model JSON in this folder" in capsys.readouterr().err


def test_inspect_error_prints_full_weight_names(model, capsys):
    assert cli.main(["inspect", str(model), "--error", "--no-gzip"]) == 0
    tables = capsys.readouterr().out
    error_table = tables.split("error each weight would get")[1]
    assert LONG in error_table and LONG in tables.split("error each weight would get")[0]
    row = next(line for line in error_table.splitlines() if line.startswith(LONG))
    assert re.match(re.escape(LONG) + r" +18 ", row)  # the size column follows the whole name


def test_requantizing_uint8_to_a_wider_dtype_says_so(model, tmp_path, capsys):
    assert cli.main(["quantize", str(model), str(tmp_path / "u8"), "--uint8"]) == 0
    capsys.readouterr()
    assert cli.main(["quantize", str(tmp_path / "u8"), str(tmp_path / "f16"), "--float16", "conv/*",
                     "--uint16", "dense/*"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "re-quantized" in line]
    assert len(warning) == 1 and "2 weight(s) already stored as uint8 re-quantized to float16/uint16" in warning[0]
    assert "doubles their bytes and cannot restore the accuracy" in warning[0]
    assert "'conv/kernel', 'dense/kernel'" in warning[0] and "odd,name" not in warning[0]
    # The same dtype again, or a float32 original: nothing to say.
    assert cli.main(["quantize", str(tmp_path / "u8"), str(tmp_path / "u8b"), "--uint8"]) == 0
    assert cli.main(["quantize", str(model), str(tmp_path / "f"), "--float16"]) == 0
    assert "re-quantized" not in capsys.readouterr().err


def test_bench_browser_speedup_is_worded_honestly(monkeypatch, tmp_path, capsys):
    rows = [dict(variant="float32", model_bytes=4_000_000, cold_bytes=4_000_000, warm_bytes=0, cold_ms=1000.0,
                 warm_ms=90.0, speedup=1.0, relative_diff=0.0),
            dict(variant="uint8", model_bytes=1_000_000, cold_bytes=1_000_000, warm_bytes=0, cold_ms=1923.0,
                 warm_ms=95.0, speedup=1000 / 1923, relative_diff=0.004)]
    result = {"model": "m", "format": "graph-model", "link": None, "repeat": 1, "tfjs": "4.22.0",
              "backend": "cpu", "chromium": "Chromium 1", "rows": rows}
    monkeypatch.setattr(web_bench, "bench_browser", lambda *args, **kwargs: result)
    assert cli.main(["bench", "--browser", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "uint8 reaches its first prediction 1.92x slower than float32" in text
    assert "faster" not in text and "0.52" not in text
    assert web_bench.relative_speed(2.5) == "2.50x faster" and web_bench.relative_speed(1.001) == "as fast"


def test_bench_browser_checks_its_tools_before_writing_anything(tmp_path, capsys):
    model = example.write_example(tmp_path / "m")
    work = tmp_path / "work"
    work.mkdir()
    tf_min = tmp_path / "tfjs" / "dist" / "tf.min.js"
    tf_min.parent.mkdir(parents=True)
    tf_min.write_text("// tf")
    some_executable = str(Path(sys.executable).resolve())
    cases = [(["--chromium", str(tmp_path / "no-chromium"), "--tfjs", str(tf_min)], "not an executable Chromium"),
             (["--chromium", some_executable, "--tfjs", str(tmp_path / "nowhere")], "no tf.min.js there")]
    for extra, message in cases:
        assert cli.main(["bench", "--browser", str(model), "--work-dir", str(work), *extra]) == 2
        assert message in capsys.readouterr().err
        assert list(work.iterdir()) == []
    # Without playwright (hidden from the import system in a fresh interpreter):
    done = run_without({"playwright"}, "bench", "--browser", str(model), "--work-dir", str(work),
                       "--chromium", some_executable, "--tfjs", str(tf_min))
    assert done.returncode == 2 and list(work.iterdir()) == []
    assert "module 'playwright'" in done.stderr and 'pip install "qshard[browser]"' in done.stderr


def placeholder_keras(path):
    """A .keras archive that passes the checks made before Keras is imported (a regular file, a zip
    whose members fit in memory), so that the missing module is what the command reports."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")


@pytest.mark.parametrize("hidden,argv,names", [
    ({"keras"}, ["convert", "{tmp}/m.keras", "{tmp}/out"], ("module 'keras'", "qshard[keras]")),
    ({"sklearn"}, ["eval", "--demo", "--tflite", "none"], ("module 'sklearn'", "qshard[eval]")),
    ({"tensorflow"}, ["tflite", "{tmp}/m.keras", "{tmp}/out"], ("'tensorflow'", "qshard[tflite]")),
    ({"tensorflow"}, ["convert", "{tmp}/m.keras", "{tmp}/out", "--to", "graph"], ("'tensorflow'", "qshard[convert]")),
    ({"h5py"}, ["quantize", "{tmp}/w.h5", "{tmp}/out", "--uint8"], ("module 'h5py'", "qshard[h5]")),
    ({"matplotlib"}, ["report", "{tmp}/m", "-o", "{tmp}/r.html"], ("module 'matplotlib'", "qshard[report]")),
])
def test_a_missing_module_is_named_with_the_extra_that_brings_it(tmp_path, hidden, argv, names):
    placeholder_keras(tmp_path / "m.keras")
    (tmp_path / "w.h5").write_bytes(b"\x89HDF")
    example.write_example(tmp_path / "m")
    done = run_without(hidden, *[a.format(tmp=tmp_path) for a in argv])
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    for name in names:
        assert name in done.stderr
    assert not (tmp_path / "out").exists()


def test_keras_without_its_backend_names_the_backend(tmp_path):
    """pip install "qshard[keras]" used to bring keras alone: keras then failed on tensorflow, and the
    message blamed keras. Here keras is installed and tensorflow hidden."""
    try:
        metadata.version("keras")  # (not find_spec: tests/keras, on the path, is a namespace package)
    except metadata.PackageNotFoundError:
        require("keras is not installed", "QSHARD_REQUIRE_KERAS", "THE KERAS BACKEND MESSAGE TEST")
    placeholder_keras(tmp_path / "m.keras")
    done = run_without({"tensorflow"}, "convert", str(tmp_path / "m.keras"), str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "needs 'keras', and importing it failed because the module 'tensorflow' is not installed" in done.stderr
    assert 'pip install "qshard[keras]"' in done.stderr and not (tmp_path / "out").exists()


def test_every_extra_named_in_a_message_exists_and_brings_its_modules():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = set()
    for source in (ROOT / "python" / "qshard").rglob("*.py"):
        text = source.read_text()
        named |= set(re.findall(r'qshard\[(\w+)\]', text))
        named |= set(re.findall(r'require\("[\w.]+", "(\w+)"', text))
    assert named and named <= set(extras), named - set(extras)

    def brings(extra):
        return {re.split(r"[<>=!\[; ]", r)[0].lower() for r in extras[extra]}
    assert {"keras", "tensorflow"} <= brings("keras")           # Keras 3 needs a backend
    assert {"tensorflow", "scikit-learn"} <= brings("eval")      # eval --demo's data sets
    assert "tensorflow" in brings("tflite") and "matplotlib" in brings("report")
    assert {"tensorflow", "tf_keras"} <= brings("convert")
    assert "playwright" in brings("browser") and "h5py" in brings("h5")
