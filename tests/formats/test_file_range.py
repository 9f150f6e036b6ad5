"""quantize_model through the C++ chunk loop (one call per tensor stored as a file range): tfjs
shards, safetensors and .npz give the bytes of the Python chunk loop and of the serial kernels at
every size that matters; a file cut short while converting is a clear error, not a crash."""
import os
import re
import threading

import numpy as np
import pytest

import qshard
from qshard import _core, tfjs
from qshard.errors import ShardError, SourceError
from qshard.formats import writer
from qshard.formats.shards import Scratch
from support.files import same_output, write_safetensors

CHUNK, SPLIT = 1 << 15, 1 << 17  # the C++ loop's chunk and a worker's least share, in elements
TARGETS = [dict(uint8=True), dict(uint16=True), dict(float16=True)]


def arrays():
    """Sizes around the chunk and thread split, and the tensors that need care."""
    rng = np.random.default_rng(11)
    out = {f"n{n}": (rng.standard_normal(n) * 2).astype(np.float32)
           for n in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * SPLIT - 1, 2 * SPLIT + 1)}
    out["constant"] = np.full(CHUNK + 3, 1.25, np.float32)
    out["zeros"] = np.array([0.0, -0.0, 0.0, -0.0], np.float32)
    out["nan"] = rng.standard_normal(2 * SPLIT + 5).astype(np.float32)
    out["nan"][SPLIT + 1] = np.nan
    out["inf"] = rng.standard_normal(1000).astype(np.float32)
    out["inf"][3] = -np.inf
    out["ids"] = np.arange(7, dtype=np.int32)
    return out


def tfjs_model(folder, values=None, **options):
    """A web model (weights manifest and shards of 100003 bytes, so tensors span shards)."""
    folder.mkdir()
    tfjs.write_weights([list((values or arrays()).items())], folder, shard_size=100_003, **options)
    return folder


def mixed_dtypes(values):
    """The same tensors stored as float16 / float64 in turns (what the C++ loop widens itself)."""
    kinds = [np.float32, np.float16, np.float64]
    return {name: a.astype(kinds[i % 3]) if a.dtype == np.float32 else a for i, (name, a) in enumerate(values.items())}


def make_source(kind, tmp_path):
    if kind == "tfjs":
        return tfjs_model(tmp_path / "src")
    if kind == "tfjs-uint8":  # stored codes, dequantized by the loop before they are quantized again
        return tfjs_model(tmp_path / "src", uint8=["n*", "constant"], float16=["zeros", "inf"])
    values = mixed_dtypes(arrays())
    if kind == "safetensors":
        path = tmp_path / "m.safetensors"
        write_safetensors(path, values, bf16={"n1", f"n{CHUNK}", "constant"})
        return path
    values["big-endian"] = values.pop(f"n{CHUNK + 1}").astype(">f4")  # (not a file range: the Python loop)
    values["fortran"] = np.asfortranarray(np.arange(600, dtype=np.float32).reshape(20, 30))
    np.savez(tmp_path / "m.npz", **values)
    return tmp_path / "m.npz"


@pytest.fixture
def spy(monkeypatch):
    """Names of the tensors each loop quantized; `spy.python = True` sends the C++ loop's to Python."""
    class Spy:
        by_file, by_chunks, python = set(), set(), False
    real_file, real_chunked = writer._append_file, writer._append_chunked

    def append_file(w, item, threads):
        Spy.by_file.add(item.name)
        if Spy.python:
            return real_chunked(w, item, Scratch(), threads)
        return real_file(w, item, threads)

    def append_chunked(w, item, scratch, threads):
        Spy.by_chunks.add(item.name)
        return real_chunked(w, item, scratch, threads)
    monkeypatch.setattr(writer, "_append_file", append_file)
    monkeypatch.setattr(writer, "_append_chunked", append_chunked)
    return Spy


@pytest.mark.parametrize("kind", ["tfjs", "tfjs-uint8", "safetensors", "npz"])
@pytest.mark.parametrize("target", TARGETS, ids=[next(iter(t)) for t in TARGETS])
def test_same_bytes_as_the_python_loop_and_the_serial_kernels(tmp_path, spy, kind, target):
    src = make_source(kind, tmp_path)
    spy.by_chunks.clear()  # (write_weights made the tfjs sources from arrays in memory)
    # (the C++ loop also with a read buffer of 3 float32 chunks: bigger tensors are partly read twice)
    default_buffer = _core.get_read_buffer()
    for name, isa, threads, buffer in [("c++", "", 2, default_buffer), ("c++-serial", "serial", 1, default_buffer),
                                       ("c++-small-buffer", "", 2, 3 * CHUNK * 4),
                                       ("python-serial", "serial", 1, default_buffer)]:
        spy.python = name.startswith("python")
        qshard.set_isa(isa)
        _core.set_read_buffer(buffer)
        try:
            report = tfjs.quantize_model(src, tmp_path / name, threads=threads, **target)
        finally:
            qshard.set_isa("")
            _core.set_read_buffer(default_buffer)
        if name == "c++":
            # Only tensors without a file range took the Python loop.
            assert spy.by_chunks == ({"big-endian", "fortran"} if kind == "npz" else set())
            assert "nan" in spy.by_file and "nan" in {k.name for k in report.kept}
    same_output(tmp_path / "c++", tmp_path / "python-serial")
    same_output(tmp_path / "c++-serial", tmp_path / "python-serial")
    same_output(tmp_path / "c++-small-buffer", tmp_path / "python-serial")


def test_tfjs_output_matches_quantizing_in_memory(tmp_path, spy):
    # The chunk loop's bytes equal write_weights' on the whole arrays (the in-memory path).
    values = arrays()
    src = tfjs_model(tmp_path / "src", values)
    for target in TARGETS:
        name = next(iter(target))
        tfjs.quantize_model(src, tmp_path / f"file-{name}", shard_size=100_003, **target)
        tfjs_model(tmp_path / f"memory-{name}", values, **target)
        same_output(tmp_path / f"file-{name}", tmp_path / f"memory-{name}")
    assert f"n{2 * SPLIT + 1}" in spy.by_file


def truncate_once(path, size):
    """A progress callback that cuts `path` to `size` bytes after the first weight is written."""
    def progress(done, total):
        if os.path.getsize(path) > size:
            os.truncate(path, size)
    return progress


def test_a_safetensors_file_cut_short_while_converting(tmp_path):
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"a": np.ones(10, np.float32), "b": np.ones(4 * SPLIT, np.float32)})
    with pytest.raises(SourceError, match=re.escape(str(path)) + r": file ends early.*weight .b."):
        tfjs.quantize_model(path, tmp_path / "out", uint8=True, threads=2,
                            progress=truncate_once(path, path.stat().st_size - SPLIT))
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no output, no temporary folder


def test_a_tfjs_shard_cut_short_while_converting(tmp_path):
    src = tfjs_model(tmp_path / "src")
    last = sorted(src.glob("group1-shard*.bin"))[-1]
    with pytest.raises(ShardError, match=re.escape(str(last)) + ": file ends early"):
        tfjs.quantize_model(src, tmp_path / "out", uint16=True, progress=truncate_once(last, 10))
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_an_npz_replaced_by_a_folder_while_converting(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, a=np.ones(10, np.float32), b=np.ones(100, np.float32))

    def swap(done, total):
        if path.is_file():
            path.unlink()
            path.mkdir()  # open() succeeds on a folder; reading it fails (EISDIR)
    with pytest.raises(SourceError, match=re.escape(str(path)) + ": cannot read weight .b.: Is a directory"):
        tfjs.quantize_model(path, tmp_path / "out", float16=True, progress=swap)


@pytest.mark.parametrize("kind", ["tfjs", "tfjs-uint8", "safetensors", "npz"])
def test_weights_written_unchanged_are_copied_from_their_files(tmp_path, monkeypatch, kind):
    # Weights no pattern selects, int32 ones and a NaN tensor refused for uint8 keep their stored
    # bytes: copied by one C++ call when those are what the output stores, else through Python.
    src = make_source(kind, tmp_path)
    copied = []
    real_from_files, real_item = writer._from_files, writer.source_item

    def from_files(item, where, call):
        if where is item.raw_range:
            copied.append(item.name)
        return real_from_files(item, where, call)
    monkeypatch.setattr(writer, "_from_files", from_files)
    report = tfjs.quantize_model(src, tmp_path / "c++", uint8=["n*"])
    assert "nan" in {k.name for k in report.kept}
    unchanged = {"constant", "zeros", "inf", "ids", "nan"}  # (the group is written again without "nan")
    if kind == "tfjs":
        assert set(copied) == unchanged
    elif kind == "tfjs-uint8":  # codes too: the n* weights are stored as uint8 already, as asked
        assert set(copied) == unchanged | {name for name in arrays() if name.startswith("n")}
    else:  # float16 / float64 / big-endian values are converted to float32 first
        assert "ids" in copied and set(copied) < unchanged
        if kind == "npz":
            with np.load(src) as stored:
                assert all(stored[name].dtype == np.float32 for name in copied if name != "ids")

    def without_range(tensor, target):
        item = real_item(tensor, target)
        item.raw_range = None
        return item
    monkeypatch.setattr(writer, "source_item", without_range)
    tfjs.quantize_model(src, tmp_path / "python", uint8=["n*"])
    same_output(tmp_path / "c++", tmp_path / "python")


def test_a_tfjs_shard_cut_short_while_copying_a_weight(tmp_path):
    src = tfjs_model(tmp_path / "src", {"a": np.ones(10, np.float32), "ids": np.arange(100_000, dtype=np.int32)})
    last = sorted(src.glob("group1-shard*.bin"))[-1]
    with pytest.raises(ShardError, match=re.escape(str(last)) + ": file ends early.*weight .ids."):
        tfjs.quantize_model(src, tmp_path / "out", uint8=True, progress=truncate_once(last, 10))
    assert sorted(os.listdir(tmp_path)) == ["src"]


@pytest.mark.parametrize("swapped", ["quantized", "copied"])
def test_a_shard_replaced_by_a_fifo_while_converting_is_an_error_not_a_hang(tmp_path, swapped):
    # The C++ loop opens the files by path again: a FIFO put there since they were checked must not
    # block that open (nobody writes to it), whether the weight is quantized or copied as it is.
    dtype = np.float32 if swapped == "quantized" else np.int32
    src = tfjs_model(tmp_path / "src", {"a": np.ones(10, np.float32), "b": np.ones(100_000, dtype)})
    last = sorted(src.glob("group1-shard*.bin"))[-1]

    def swap(done, total):
        if last.is_file():
            last.unlink()
            os.mkfifo(last)

    def unblock():  # (should the open block after all: a writer ends it, and the test fails instead of hanging)
        try:
            os.close(os.open(last, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    watchdog = threading.Timer(60, unblock)
    watchdog.start()
    try:
        with pytest.raises(ShardError, match=re.escape(str(last)) + ": is no longer a regular file.*weight .b."):
            tfjs.quantize_model(src, tmp_path / "out", uint8=True, progress=swap)
    finally:
        watchdog.cancel()
    assert sorted(os.listdir(tmp_path)) == ["src"]
