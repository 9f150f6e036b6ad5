"""Re-quantize a generated float32 web model to uint8 end to end, beside `cp -r` of the same
files and tensorflowjs 4.22's read_weights + write_weights, in one run; wall time, CPU time (user +
system) and peak RSS of each as a separate process. Each round runs every command once, in an order
that rotates from round to round, after one uncounted warm-up round; a command's ratio to `cp -r` is
taken within each round (so a machine that slows down between rounds does not skew it), and the
median over the rounds is shown with the range [lowest-highest] beside it.

`cp -r` is GNU cp: on Linux it copies with copy_file_range (a reflink where the file system has
them), so it is the kernel copying page cache to page cache, with no user-space pass over the data.
The qshard children run without PYTHONDONTWRITEBYTECODE, as an installed qshard (whose modules pip
compiles) would.

    python benchmarks/bench_requantize.py --gb 1 [--format safetensors] [--threads 1,2] [--repeat 3] [--tmp DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TFJS_SCRIPT = r"""
import json, sys
from qshard import reference
rw, ww = reference.load("read_weights"), reference.load("write_weights")
src, out = sys.argv[1], sys.argv[2]
doc = json.load(open(src + "/model.json"))
groups = rw.read_weights(doc["weightsManifest"], src)
manifest = ww.write_weights(groups, out, quantization_dtype_map={"uint8": True}, write_manifest=False)
doc["weightsManifest"] = manifest
open(out + "/model.json", "w").write(json.dumps(doc))
"""


def make_safetensors(path: Path, gigabytes: float, tensor_mib: int = 16) -> int:
    """A safetensors file of float32 tensors of tensor_mib MiB each."""
    import numpy as np  # (here, not at the top: the children this process starts would report its RSS)
    n = int(gigabytes * 1024 / tensor_mib)
    count = tensor_mib * (1 << 20) // 4
    header = {f"layer{i:04d}/kernel": {"dtype": "F32", "shape": [count],
                                      "data_offsets": [i * count * 4, (i + 1) * count * 4]} for i in range(n)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    block = np.random.default_rng(0).standard_normal(count, dtype=np.float32)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.writelines(np.roll(block, i).tobytes() for i in range(n))
    return path.stat().st_size


def make_model(folder: Path, gigabytes: float, tensor_mib: int = 16) -> int:
    """Float32 tensors of tensor_mib MiB each, written with qshard (4 MiB shards)."""
    import numpy as np
    from qshard import tfjs
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = int(gigabytes * 1024 / tensor_mib)
    block = rng.standard_normal(tensor_mib * 1024 * 1024 // 4, dtype=np.float32)
    groups = [[(f"layer{i:04d}/kernel", np.roll(block, i)) for i in range(n)]]
    m = tfjs.write_weights(groups, folder, write_manifest=False)
    (folder / "model.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": []},
                                                   "weightsManifest": m}))
    return sum(f.stat().st_size for f in folder.iterdir())


def timed(cmd, env=None):
    """(wall seconds, CPU seconds, peak RSS MiB) of one command run as a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def spread(values) -> str:
    """'median [lowest-highest]' of a list of numbers."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def drop_output(path: Path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="model size in GiB (default 1)")
    parser.add_argument("--tmp", help="where to put the files (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each command once per round); medians shown")
    parser.add_argument("--skip-tensorflowjs", action="store_true")
    parser.add_argument("--format", choices=["tfjs", "safetensors"], default="tfjs",
                        help="the input model's format (tensorflowjs only reads tfjs)")
    parser.add_argument("--threads", default="",
                        help="comma-separated thread counts to run qshard with too, beside its default (e.g. 1,2)")
    parser.add_argument("--make", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        (make_safetensors if args.format == "safetensors" else make_model)(Path(args.make), args.gb)
        return 0
    root = Path(tempfile.mkdtemp(dir=args.tmp, prefix="qshard-bench-"))
    try:
        src = root / "src" if args.format == "tfjs" else root / "src" / "model.safetensors"
        # Made in a child process: children started later would otherwise report the memory this
        # process used to make it (a child's peak RSS includes its parent's from before exec).
        subprocess.run([sys.executable, __file__, "--make", str(src), "--gb", str(args.gb), "--format", args.format],
                       check=True)
        size = sum(f.stat().st_size for f in (src.iterdir() if src.is_dir() else [src]))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        qshard = [sys.executable, "-m", "qshard", "quantize", str(src), str(root / "out"), "--uint8", "-q"]
        commands = {
            "cp -r": ["cp", "-r", str(src), str(root / "out")],  # (a file, for safetensors)
            "qshard quantize --uint8": qshard,
        }
        for threads in filter(None, args.threads.split(",")):
            commands[f"qshard quantize --uint8 --threads {int(threads)}"] = qshard + ["--threads", str(int(threads))]
        if not args.skip_tensorflowjs and args.format == "tfjs":
            commands["tensorflowjs read+write_weights"] = [
                "sh", "-c", (f'mkdir -p "{root / "out"}" && exec "{sys.executable}" -c \'{TFJS_SCRIPT}\' '
                             f'"{src}" "{root / "out"}"')]
        walls = {name: [] for name in commands}
        cpus = {name: [] for name in commands}
        rss = dict.fromkeys(commands, 0.0)
        names = list(commands)
        for round_ in range(args.repeat + 1):  # round 0 warms up (caches, compiled modules) and is dropped
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                drop_output(root / "out")
                wall, cpu, peak = timed(commands[name], env)
                if round_:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
                    rss[name] = max(rss[name], peak)
        cp = walls["cp -r"]
        layout = "in 4 MiB shards" if args.format == "tfjs" else "in one safetensors file"
        print(f"model: {size / 2**30:.2f} GiB float32 {layout}; medians [ranges] of {args.repeat} rounds; "
              f"CPU {os.cpu_count()} cores")
        print(f"{'command':<42} {'wall s':>17} {'GB/s':>6} {'x cp (same round)':>18} {'CPU s':>17} {'peak RSS MiB':>13}")
        for name, times in walls.items():
            wall = statistics.median(times)
            ratios = [t / c for t, c in zip(times, cp)]
            print(f"{name:<42} {spread(times):>17} {size / wall / 1e9:>6.2f} {spread(ratios):>18} "
                  f"{spread(cpus[name]):>17} {rss[name]:>13.0f}")
        q = statistics.median(walls["qshard quantize --uint8"])
        if "tensorflowjs read+write_weights" in walls:
            print(f"qshard is {statistics.median(walls['tensorflowjs read+write_weights']) / q:.1f}x faster "
                  f"than tensorflowjs")
        one, two = (walls.get(f"qshard quantize --uint8 --threads {n}") for n in (1, 2))
        if one and two:
            print(f"2 threads are {spread([a / b for a, b in zip(one, two)])}x as fast as 1 (same round)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
