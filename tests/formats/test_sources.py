"""Streaming conversion from safetensors, .npz, folders of .npy and .h5: the same bytes as
converting the tensors in memory, bounded memory, and nothing left behind when interrupted."""
import json
import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from qshard.formats import sources as stream

from qshard import tfjs
from qshard.errors import SourceError
from support.files import same_output, write_safetensors


def tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embed/weights": rng.standard_normal((1000, 33)).astype(np.float32),  # spans many 128 KiB chunks
        "dense/kernel": rng.standard_normal((64, 32)).astype(np.float32),
        "dense/bias": rng.standard_normal(32).astype(np.float32),
        "norm/scale": (rng.standard_normal(7) * 3).astype(np.float64),
        "half": rng.standard_normal(50).astype(np.float16),
        "step": np.array(12, np.int64),
        "ids": np.arange(-3, 9, dtype=np.int32),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 5), np.float32),
    }


def in_memory(arrays, tmp_path, **kwargs):
    out = tmp_path / "in-memory"
    out.mkdir()
    tfjs.write_weights([list(arrays.items())], out, **kwargs)
    return out


OPTIONS = [dict(uint8=True), dict(uint16=True, keep=["half"]), dict(float16=True),
           dict(uint8=["embed/*"], float16=["dense/*"], shard_size=999), {}]


@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
def test_safetensors_matches_in_memory(tmp_path, options):
    arrays = tensors()
    write_safetensors(tmp_path / "m.safetensors", arrays)
    report = tfjs.quantize_model(tmp_path / "m.safetensors", tmp_path / "out", **options)
    same_output(tmp_path / "out", in_memory(arrays, tmp_path, **options))
    assert report.weights == len(arrays)


def test_safetensors_written_by_the_official_package(tmp_path):
    from safetensors.numpy import save_file
    arrays = {k: v for k, v in tensors(1).items() if k != "empty"}
    save_file(arrays, str(tmp_path / "m.safetensors"))
    tfjs.quantize_model(tmp_path / "m.safetensors", tmp_path / "out", uint8=True)
    # the official package writes tensors sorted by name; compare in that order
    ordered = {name: arrays[name] for name in [t.name for t in stream.open_source(tmp_path / "m.safetensors").tensors]}
    same_output(tmp_path / "out", in_memory(ordered, tmp_path, uint8=True))


def test_bfloat16_is_widened(tmp_path):
    x = np.random.default_rng(2).standard_normal(5000).astype(np.float32)
    as_bf16 = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    write_safetensors(tmp_path / "m.safetensors", {"w": x}, bf16={"w"})
    values = stream.open_source(tmp_path / "m.safetensors").tensors[0]
    assert np.dtype(values.dtype) == np.float32  # (sources may give a dtype as its string, "<f4")
    tfjs.quantize_model(tmp_path / "m.safetensors", tmp_path / "out")
    assert tfjs.read_weights(tmp_path / "out")["w"].tobytes() == as_bf16.tobytes()


@pytest.mark.parametrize("options", OPTIONS[:3], ids=[str(o) for o in OPTIONS[:3]])
def test_npz_and_npy_folder_match_in_memory(tmp_path, options):
    arrays = tensors(3)
    np.savez(tmp_path / "m.npz", **arrays)
    folder = tmp_path / "npy"
    for name, a in arrays.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{name}.npy", np.asfortranarray(a) if name == "embed/weights" else a)
    expected = in_memory(arrays, tmp_path, **options)
    tfjs.quantize_model(tmp_path / "m.npz", tmp_path / "from-npz", **options)
    same_output(tmp_path / "from-npz", expected)
    ordered = {n: arrays[n] for n in sorted(arrays)}  # a folder is read in sorted path order
    expected_sorted = tmp_path / "sorted"
    expected_sorted.mkdir()
    tfjs.write_weights([list(ordered.items())], expected_sorted, **options)
    tfjs.quantize_model(folder, tmp_path / "from-folder", **options)
    same_output(tmp_path / "from-folder", expected_sorted)


def test_h5_matches_in_memory(tmp_path):
    import h5py
    arrays = {k: v for k, v in tensors(4).items() if k != "mask"}
    with h5py.File(tmp_path / "m.weights.h5", "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a)
        f.attrs["keras_version"] = "3.0"
        f.create_dataset("meta/notes", data=np.array([b"not a weight"]))
    source = stream.open_source(tmp_path / "m.weights.h5")
    order = [t.name for t in source.tensors]
    source.close()
    tfjs.quantize_model(tmp_path / "m.weights.h5", tmp_path / "out", uint8=["*kernel*", "embed*"])
    ordered = {n: arrays[n] for n in order}
    same_output(tmp_path / "out", in_memory(ordered, tmp_path, uint8=["*kernel*", "embed*"]))


def test_a_whole_keras_model_h5_says_how_to_get_a_layers_model(tmp_path):
    # Read as h5 (weights under their dataset names), as asked; the report and the command say that
    # --from keras makes the layers model a whole-model file was probably meant for.
    import h5py
    for name, config in [("weights.h5", None), ("model.h5", '{"class_name": "Sequential"}')]:
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("dense/kernel", data=np.ones((2, 3), np.float32))
            if config:
                f.attrs["model_config"] = config
        report = tfjs.quantize_model(tmp_path / name, tmp_path / f"out-{name}", uint8=True)
        assert [bool(report.notes), name] == [bool(config), name]
        done = subprocess.run([sys.executable, "-m", "qshard", "quantize", str(tmp_path / name),
                               str(tmp_path / f"cli-{name}"), "--uint8", "-q"], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout == ""
        if config:
            assert done.stderr == (f"qshard: note: {tmp_path / name} holds a whole Keras model: its weights were "
                                   f"written as a weights manifest under their HDF5 dataset names; --from keras "
                                   f"writes a tfjs layers model (model.json) instead\n")
        else:
            assert done.stderr == ""


def test_bad_inputs_are_clear(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\0" * 10)
    with pytest.raises(SourceError, match="supported: a tfjs web model.*safetensors.*npz.*h5"):
        tfjs.quantize_model(tmp_path / "model.bin", tmp_path / "out", uint8=True)
    np.savez_compressed(tmp_path / "c.npz", w=np.ones(10, np.float32))
    with pytest.raises(SourceError, match="compressed members"):
        tfjs.quantize_model(tmp_path / "c.npz", tmp_path / "out", uint8=True)
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(SourceError, match="header length"):
        tfjs.quantize_model(tmp_path / "bad.safetensors", tmp_path / "out")
    write_safetensors(tmp_path / "short.safetensors", {"w": np.ones(100, np.float32)})
    data = (tmp_path / "short.safetensors").read_bytes()
    (tmp_path / "short.safetensors").write_bytes(data[:-8])
    with pytest.raises(SourceError, match="fall outside the file"):
        tfjs.quantize_model(tmp_path / "short.safetensors", tmp_path / "out")
    assert not (tmp_path / "out").exists()


PEAK_RSS = ("import sys\nfrom qshard.cli import main\nrc = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(int(hwm.split()[1]) // 1024)\nsys.exit(rc)\n")


def _rss_of_conversion(path, out):
    """Peak RSS (MiB) of a conversion in its own process. VmHWM, not the child's ru_maxrss: the
    latter folds in the high-water mark of the (large) pytest process it was forked from."""
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, "quantize", str(path), str(out), "--uint8", "-q"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_model(tmp_path):
    big = 64 << 20  # elements per tensor: 256 MiB of float32 each
    rng = np.random.default_rng(5)
    block = rng.standard_normal(1 << 20, dtype=np.float32)
    for name, tensors_mib in (("small", 16), ("large", 512)):
        path = tmp_path / f"{name}.safetensors"
        n = tensors_mib * (1 << 20) // 4
        header = {f"t{i}": {"dtype": "F32", "shape": [n // 2], "data_offsets": [i * n * 2, (i + 1) * n * 2]}
                  for i in range(2)}
        text = json.dumps(header).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for _ in range(n // block.size):
                f.write(block.tobytes())
    small = _rss_of_conversion(tmp_path / "small.safetensors", tmp_path / "out-small")
    large = _rss_of_conversion(tmp_path / "large.safetensors", tmp_path / "out-large")
    assert (tmp_path / "out-large" / "weights_manifest.json").is_file()
    # A 512 MiB model (two 256 MiB tensors) converts within a few MiB of a 16 MiB one.
    assert large < small + 24, (small, large)
    assert large < 160, large
    del big


def test_sigterm_leaves_nothing_behind(tmp_path):
    arrays = {f"w{i}": np.random.default_rng(i).standard_normal(1 << 18).astype(np.float32) for i in range(8)}
    write_safetensors(tmp_path / "m.safetensors", arrays)
    env = dict(os.environ, QSHARD_TEST_PAUSE_AT_BYTES=str(1 << 19))
    proc = subprocess.Popen([sys.executable, "-m", "qshard", "quantize", str(tmp_path / "m.safetensors"),
                             str(tmp_path / "out"), "--uint16", "-q", "--shard-size", "100000"],
                            env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "paused" in line
    partial = [p for p in os.listdir(tmp_path) if p.startswith(".out.qshard-")]
    assert partial and os.listdir(tmp_path / partial[0])  # it had written shards
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in rest
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_float64_beyond_float32_becomes_inf_quietly_and_is_named(tmp_path):
    """1e300 overflows float32 to inf as tensorflowjs's cast does: no numpy warning on the terminal,
    the writer's non-finite policy names the weight and keeps it unquantized."""
    np.savez(tmp_path / "w.npz", w=np.array([1.0, 1e300, -2.0]), v=np.array([1.0, 2.0, 3.0]))
    run = subprocess.run([sys.executable, "-m", "qshard", "quantize", str(tmp_path / "w.npz"), str(tmp_path / "out"),
                          "--uint8"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "'w'" in run.stderr and "Inf" in run.stderr
    got = tfjs.read_weights(tmp_path / "out")
    assert got["w"].dtype == np.float32 and np.isposinf(got["w"][1]) and got["w"][0] == 1.0
