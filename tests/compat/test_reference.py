"""The loader of tensorflowjs's numpy-only modules (used by the tests and the benchmark)."""
import subprocess
import sys


def test_loading_twice_and_several_modules(tfjs_quantization):
    code = ("from qshard import reference\n"
            "q1 = reference.load('quantization'); q2 = reference.load('quantization')\n"
            "r = reference.load('read_weights'); w = reference.load('write_weights')\n"
            "assert q1 is q2 and w.quantization is q1 and r.quantization is q1\n"
            "print(reference.tensorflowjs_dir())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("tensorflowjs")
