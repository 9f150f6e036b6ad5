"""The qshard command: help, version, info and bench, and its errors."""
import os
import json
import subprocess
import sys
from importlib import metadata

import pytest


def qshard(*args):
    return subprocess.run([sys.executable, "-m", "qshard", *args], capture_output=True, text=True, timeout=600)


def test_console_script_is_registered():
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts.get("qshard") == "qshard.cli:main"
    import qshard
    assert qshard.__version__ == metadata.version("qshard")  # stamped into the core by the build


def test_help_and_version():
    out = qshard("--help")
    assert out.returncode == 0 and "bench" in out.stdout
    bench_help = qshard("bench", "--help")
    assert bench_help.returncode == 0 and "--size" in bench_help.stdout and "--json" in bench_help.stdout
    assert qshard("--version").stdout.startswith("qshard ")


def test_info_lists_isas():
    out = qshard("info")
    assert out.returncode == 0 and "serial" in out.stdout and "threads:" in out.stdout


def test_bench_json_covers_every_kernel_and_is_exact():
    out = qshard("bench", "--size", "64K", "--repeat", "1", "--threads", "1,2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    rows = result["rows"]
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"minmax", "quantize uint8", "quantize uint16", "dequantize uint8", "dequantize uint16",
                       "float32->float16", "float16->float32"}
    for kernel in kernels:
        impls = {(r["impl"], r["threads"]) for r in rows if r["kernel"] == kernel}
        assert ("memory ceiling", 1) in impls and ("memory ceiling", 2) in impls and ("numpy", 1) in impls
        assert ("qshard serial", 2) in impls
    ours = [r for r in rows if r["impl"].startswith("qshard")]
    assert all(r["gbps"] > 0 and r["of_ceiling"] > 0 and r["vs_numpy"] > 0 for r in ours)
    assert all(r["exact"] for r in ours if r["exact"] is not None)
    assert result["machine"]["elements"] == 65536


def test_bench_table():
    out = qshard("bench", "--size", "16K", "--repeat", "1", "--threads", "1")
    assert out.returncode == 0
    assert "memory ceiling" in out.stdout and "quantize uint8" in out.stdout and "of ceiling" in out.stdout


@pytest.mark.parametrize("args,message", [
    (["bench", "--size", "lots"], "--size: expected a number of elements"),
    (["bench", "--size", "10"], "--size: at least 1024"),
    (["bench", "--threads", "0"], "--threads: every count must be >= 1"),
    (["bench", "--isa", "avx9"], "--isa: 'avx9' is not available"),
])
def test_bench_bad_arguments(args, message):
    out = qshard(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1


def _model(tmp_path):
    import numpy as np
    from qshard import tfjs
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    m = tfjs.write_weights([[("dense/kernel", rng.standard_normal((64, 16)).astype(np.float32)),
                             ("dense/bias", rng.standard_normal(16).astype(np.float32)),
                             ("step", np.array([3], np.int32))]], src, write_manifest=False)
    (src / "model.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {}, "weightsManifest": m}))
    return src


def test_quantize_inspect_verify(tmp_path):
    src = _model(tmp_path)
    out = tmp_path / "out"
    run = qshard("quantize", str(src), str(out), "--uint8", "--float16", "dense/bias", "--keep", "nomatch",
                 "--allow-unmatched")
    assert run.returncode == 0, run.stderr
    assert "pattern 'nomatch' matches no weight (--allow-unmatched)" in run.stderr
    assert "3 weights (1 -> float16, 1 -> uint8)" in run.stdout
    doc = json.loads((out / "model.json").read_text())
    stored = {w["name"]: w.get("quantization", {}).get("dtype") for w in doc["weightsManifest"][0]["weights"]}
    assert stored == {"dense/kernel": "uint8", "dense/bias": "float16", "step": None}
    again = qshard("quantize", str(src), str(out), "--uint16")
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert qshard("quantize", str(src), str(out), "--uint16", "--force").returncode == 0

    info = qshard("inspect", str(out), "--against", str(src))
    assert info.returncode == 0 and "dense/kernel" in info.stdout and "SQNR" in info.stdout and "gzip" in info.stdout
    as_json = json.loads(qshard("inspect", str(out), "--json", "--no-gzip").stdout)
    assert as_json["weights"] == 3 and {r["stored"] for r in as_json["rows"]} == {"uint16", "int32"}

    ok = qshard("verify", str(out))
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
    shard = sorted(out.glob("*.bin"))[0]
    shard.write_bytes(shard.read_bytes()[:-1])
    bad = qshard("verify", str(out))
    assert bad.returncode == 1 and "1 bytes missing" in bad.stdout


def test_quantize_errors_are_one_line(tmp_path):
    src = _model(tmp_path)
    conflict = qshard("quantize", str(src), str(tmp_path / "o"), "--uint8", "dense/*", "--uint16", "*/bias")
    assert conflict.returncode == 2 and "matches both" in conflict.stderr and "Traceback" not in conflict.stderr
    assert not (tmp_path / "o").exists()
    missing = qshard("quantize", str(tmp_path / "nope"), str(tmp_path / "o"), "--uint8")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text("{")
    broken = qshard("inspect", str(tmp_path / "bad"))
    assert broken.returncode == 2 and "model.json: invalid JSON" in broken.stderr
    assert qshard("verify", str(tmp_path / "bad")).returncode == 1


def _python(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**environ, **env}).stdout.strip()


def test_import_qshard_leaves_numpy_for_first_use():
    """`import qshard` loads neither numpy nor the core; the array API loads them when first used."""
    code = ("import sys, qshard; print('numpy' in sys.modules, 'qshard._core' in sys.modules); "
            "from qshard import quantize; import numpy as np; quantize(np.ones(3, np.float32), 'uint8'); "
            "print(qshard.__version__ == qshard._core.__version__, 'qshard.kernels' in sys.modules)")
    assert _python(code).splitlines() == ["False False", "True True"]


def test_the_command_keeps_numpy_to_one_blas_thread_unless_told():
    """OpenBLAS threads spin at numpy's import on the cores quantize's workers need."""
    code = "import os; from qshard import cli; import numpy; print(os.environ['OPENBLAS_NUM_THREADS'])"
    assert _python(code) == "1"
    assert _python(code, OPENBLAS_NUM_THREADS="3") == "3"
