"""Faults and races: a full disk, two processes writing one destination, many at once."""
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from qshard import tfjs


def _model(path, n=8, size=1 << 18):
    path.mkdir()
    groups = [[(f"w{i}", np.random.default_rng(i).standard_normal(size).astype(np.float32)) for i in range(n)]]
    tfjs.write_weights(groups, path)
    return path


def qshard(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "qshard", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_two_processes_racing_for_one_destination(tmp_path):
    src = _model(tmp_path / "src")
    slow_env = dict(os.environ, QSHARD_TEST_PAUSE_AT_BYTES=str(1 << 18), QSHARD_TEST_PAUSE_SECONDS="120")
    slow = qshard("quantize", src, tmp_path / "out", "--uint16", "-q", "--shard-size", "100000", env=slow_env)
    assert "paused" in slow.stderr.readline()  # past its 'does OUT exist' check, mid-write
    fast = qshard("quantize", src, tmp_path / "out", "--uint8", "-q")
    fast.communicate(timeout=60)  # (communicate, not wait: it also closes the pipes)
    assert fast.returncode == 0
    slow.send_signal(signal.SIGUSR1)  # resume only now: the order is fixed, not left to timing
    _, err = slow.communicate(timeout=60)
    assert slow.returncode == 2 and "created by another process" in err and "Traceback" not in err
    # One complete output (the one that finished first), no temporary folders left.
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]
    manifest = (tmp_path / "out" / "weights_manifest.json").read_text()
    assert '"dtype": "uint8"' in manifest and "uint16" not in manifest
    assert subprocess.run([sys.executable, "-m", "qshard", "verify", str(tmp_path / "out")]).returncode == 0


def _limit_file_size():
    # A full disk, simulated: writes past 300 KB fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def test_disk_full_mid_write_leaves_nothing(tmp_path):
    src = _model(tmp_path / "src")
    proc = qshard("quantize", src, tmp_path / "out", "--uint16", "-q", "--shard-size", "400000",
                  preexec_fn=_limit_file_size)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "File too large" in err and "group1-shard" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_many_conversions_at_once(tmp_path):
    src = _model(tmp_path / "src", n=4, size=1 << 16)
    procs = [qshard("quantize", src, tmp_path / f"out{i}", "--uint8" if i % 2 else "--float16", "-q")
             for i in range(8)]
    for p in procs:
        p.communicate(timeout=120)  # (not wait: communicate also closes the pipes)
    assert [p.returncode for p in procs] == [0] * 8
    expected = {i % 2: (tmp_path / f"out{i % 2}") for i in range(2)}
    for i in range(8):
        for name in os.listdir(expected[i % 2]):
            assert (tmp_path / f"out{i}" / name).read_bytes() == (expected[i % 2] / name).read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted(["src"] + [f"out{i}" for i in range(8)])


def test_real_enospc_on_a_tiny_tmpfs(tmp_path):
    # A 1 MiB tmpfs mounted in a private mount namespace (unshare -rm: no root needed); the
    # uint16 output (~4 MiB) cannot fit, so a shard write fails with ENOSPC part-way.
    import shutil
    if shutil.which("unshare") is None:
        message = "util-linux 'unshare' is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-ENOSPC test, but {message}")
        pytest.skip(f"SKIPPING THE REAL-ENOSPC TEST: {message}")
    src = _model(tmp_path / "src")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f'mount -t tmpfs -o size=1m tmpfs "{mnt}" || exit 99; '
              f'"{sys.executable}" -m qshard quantize "{src}" "{mnt}/out" --uint16 -q --shard-size 100000; '
              f'echo "rc=$?"; echo "left:$(ls -A "{mnt}")"')
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode != 99, f"could not mount a tmpfs: {run.stderr}"
    assert "rc=2" in run.stdout, (run.stdout, run.stderr)
    assert "No space left on device" in run.stderr and "group1-shard" in run.stderr
    assert "Traceback" not in run.stderr
    assert "left:\n" in run.stdout or run.stdout.rstrip().endswith("left:")  # nothing left behind
