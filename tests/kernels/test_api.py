"""The Python API: shapes, out= arrays, errors, threads, the GIL, forcing the reference."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import qshard


def test_shapes_and_dtypes_are_kept():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    for dtype, code in (("uint8", np.uint8), ("uint16", np.uint16), ("float16", np.float16)):
        codes, params = qshard.quantize(x, dtype)
        assert codes.shape == x.shape and codes.dtype == code and params.dtype == dtype
        back = qshard.dequantize(codes, params)
        assert back.shape == x.shape and back.dtype == np.float32
        step = params.scale if params.affine else 2e-3 * np.abs(x).max()
        assert np.abs(back - x).max() <= step


def test_float64_and_noncontiguous_inputs_are_converted():
    x = np.random.default_rng(1).standard_normal((64, 64))
    as32 = x.astype(np.float32)
    for view, same_as in ((x, as32), (as32.T, np.ascontiguousarray(as32.T)), (as32[::2], as32[::2].copy())):
        a, pa = qshard.quantize(view, "uint8")
        b, pb = qshard.quantize(same_as, "uint8")
        assert a.tobytes() == b.tobytes() and pa == pb


def test_out_arrays_are_filled_in_place():
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    out = np.empty(1000, np.uint8)
    codes, _ = qshard.quantize(x, "uint8", out=out)
    assert np.shares_memory(codes, out) and out[0] == 0 and out[-1] == 255
    with pytest.raises(ValueError, match="out must be a uint8 array of 1000"):
        qshard.quantize(x, "uint8", out=np.empty(999, np.uint8))
    with pytest.raises(ValueError, match="out must be a uint16"):
        qshard.quantize(x, "uint16", out=np.empty(1000, np.uint8))


def test_nan_and_inf_are_refused_with_the_tensor_named():
    x = np.ones(10, np.float32)
    x[3] = np.nan
    for isa in qshard.available_isas():
        with pytest.raises(ValueError, match=r"cannot quantize to uint8: tensor 'dense/kernel': .*NaN"):
            qshard.quantize(x, "uint8", isa=isa, name="dense/kernel")
        x2 = np.ones(10, np.float32)
        x2[9] = -np.inf
        with pytest.raises(ValueError, match=r"-Inf"):
            qshard.quantize(x2, "uint16", isa=isa)
    # float16 represents NaN and Inf, so it carries them.
    assert np.isnan(qshard.quantize(x, "float16")[0][3])


def test_bad_arguments_are_clear():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="expected a float32 array.*got int32"):
        qshard.quantize(np.ones(4, np.int32), "uint8")
    with pytest.raises(ValueError, match="dtype must be one of uint8, uint16, float16"):
        qshard.quantize(x, "int4")
    with pytest.raises(ValueError, match="unknown isa 'avx9'"):
        qshard.quantize(x, "uint8", isa="avx9")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        qshard.quantize(x, "uint8", threads=0)
    with pytest.raises(TypeError, match="uint8 codes must be a uint8 array"):
        qshard.dequantize(np.ones(4, np.uint16), qshard.QuantParams("uint8", 0.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        qshard.minmax(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="finite lo <= hi"):
        qshard.affine_params(1.0, float("inf"))


def test_core_rejects_wrong_dtypes_directly():
    from qshard import _core
    with pytest.raises(TypeError, match="x must be a float32 array, got float64"):
        _core.quantize_u8(np.ones(4), np.empty(4, np.uint8))
    with pytest.raises(ValueError, match="out has 3 elements, expected 4"):
        _core.quantize_u8(np.ones(4, np.float32), np.empty(3, np.uint8))
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.minmax(np.ones((4, 4), np.float32).T)
    with pytest.raises(ValueError, match="read-only"):
        out = np.empty(4, np.uint8)
        out.flags.writeable = False
        _core.quantize_u8(np.ones(4, np.float32), out)


def test_threads_setting():
    before = qshard.get_num_threads()
    try:
        qshard.set_num_threads(3)
        assert qshard.get_num_threads() == 3
    finally:
        qshard.set_num_threads(0)
    assert qshard.get_num_threads() == before >= 1


def test_environment_forces_the_reference():
    env = dict(os.environ, QSHARD_ISA="serial")
    out = subprocess.run([sys.executable, "-c", "import qshard; print(qshard.isa())"], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "serial"
    env["QSHARD_ISA"] = "neon9"
    bad = subprocess.run([sys.executable, "-c", "import qshard"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "QSHARD_ISA='neon9'" in bad.stderr and "available here: serial" in bad.stderr


def test_set_isa_switches_the_default():
    try:
        qshard.set_isa("serial")
        assert qshard.isa() == "serial"
    finally:
        qshard.set_isa("")
    assert qshard.isa() == qshard.available_isas()[-1]


def spins_while_calling(call, enough: int = 2000, limit: int = 500) -> int:
    """Python-level iterations the main thread makes while another thread calls `call` again and
    again (until the main thread has made `enough`, at most `limit` calls). The switch interval
    is long, so the main thread only runs while the worker is inside a call that released the
    GIL: if every call held it, the count stays 0. No timing is assumed: the worker keeps calling
    until the main thread has had its turn."""
    started, stop, done = threading.Event(), threading.Event(), threading.Event()

    def work():
        started.set()
        for _ in range(limit):
            call()
            if stop.is_set():
                break
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        spins = 0
        while not done.is_set() and spins < enough:
            spins += 1
        stop.set()
        worker.join()
    finally:
        sys.setswitchinterval(old)
    return spins


def test_gil_is_released_during_kernels():
    x = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)
    out = np.empty(x.size, np.uint16)
    assert spins_while_calling(lambda: qshard.quantize(x, "uint16", isa="serial", threads=1, out=out)) == 2000


def test_gil_is_released_while_quantizing_a_file(tmp_path):
    x = np.random.default_rng(0).standard_normal(1 << 19).astype(np.float32)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    pieces = [(str(tmp_path / "x.bin"), 0, x.nbytes)]
    assert spins_while_calling(lambda: qshard._core.minmax_file(pieces, "float32", x.size, isa="serial")) == 2000
    # One writer for every call: the calls themselves must be all the worker does (making a
    # folder or finishing a writer would release the GIL on their own).
    limit = 100
    writer = qshard._core.ShardWriter(str(tmp_path), 1, limit * x.size, 1 << 22)
    try:
        call = lambda: writer.append_file(pieces, "float32", x.size, "uint8", isa="serial", threads=1)  # noqa: E731
        assert spins_while_calling(call, limit=limit) == 2000
    finally:
        writer.abort()


def test_misaligned_views_are_copied_not_misread():
    # A uint16 / float32 view at an odd byte offset (as np.frombuffer gives for a tensor that
    # follows an odd-sized one in a shard) must still quantize and dequantize correctly.
    raw = bytearray(1 + 4 * 1000)
    x = np.frombuffer(raw, np.float32, count=1000, offset=1)
    assert not x.flags.aligned
    x_fill = np.linspace(-2, 3, 1000, dtype=np.float32)
    raw[1:] = x_fill.tobytes()
    codes, params = qshard.quantize(x, "uint16")
    assert codes.tobytes() == qshard.quantize(x_fill, "uint16")[0].tobytes()
    packed = bytearray(1) + codes.tobytes()
    odd_codes = np.frombuffer(bytes(packed), np.uint16, offset=1)
    assert not odd_codes.flags.aligned
    assert qshard.dequantize(odd_codes, params).tobytes() == qshard.dequantize(codes, params).tobytes()
    from qshard import _core
    with pytest.raises(TypeError, match="not aligned"):
        _core.dequantize(odd_codes, np.empty(1000, np.float32), params.min, params.scale)
