"""The qshard command: help, version, info and bench, and its errors."""
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
