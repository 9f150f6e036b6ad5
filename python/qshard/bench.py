"""`qshard bench`: kernel speed as GB/s of float32 data and as fractions of this machine's memory
ceiling for the same access pattern, measured in the same run, beside numpy and tensorflowjs."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from qshard import _core, reference


@dataclass
class Row:
    kernel: str
    impl: str
    threads: int
    seconds: float
    gbps: float                       # float32 bytes (4 per element) per second
    of_ceiling: Optional[float] = None
    vs_numpy: Optional[float] = None
    vs_tensorflowjs: Optional[float] = None
    exact: Optional[bool] = None      # output bytes equal the serial reference's


def parse_size(text: str) -> int:
    """'4M' -> 4 Mi elements; also K, G and plain integers."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("I")
    try:
        value = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise ValueError(f"--size: expected a number of elements such as 4M or 1048576, got {text!r}") from None
    if value < 1024:
        raise ValueError(f"--size: at least 1024 elements, got {value}")
    return value


def best_times(fns: List[Callable[[], object]], repeat: int) -> List[float]:
    """Fastest of `repeat` timed calls of each function, after a warm-up; the functions take turns,
    so a machine that speeds up or slows down during the run affects them alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of `repeat` timed calls after one warm-up call."""
    return best_times([fn], repeat)[0]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_quantize(x: np.ndarray, qmax: int, dtype) -> np.ndarray:
    lo, hi = np.float64(x.min()), np.float64(x.max())
    mn, scale, mx = _core.affine_params(float(lo), float(hi), qmax)
    return np.round((x.clip(np.float64(mn), np.float64(mx)) - np.float64(mn)) / np.float64(scale)).astype(dtype)


def run(n: int, threads_list: List[int], isas: List[str], repeat: int = 5,
        progress: Optional[Callable[[str], None]] = None, kernels: Optional[List[str]] = None) -> Dict[str, object]:
    """Measure every kernel; returns {'machine': {...}, 'rows': [Row, ...]}."""
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    words = x.view(np.uint32)
    u8, u16 = np.empty(n, np.uint8), np.empty(n, np.uint16)
    f32, i32 = np.empty(n, np.float32), np.empty(n, np.uint32)
    _core.quantize_u8(x, u8, "", 0)
    mn16, scale16, _ = _core.quantize_u16(x, u16, "", 0)
    mn8, scale8, _ = _core.affine_params(float(x.min()), float(x.max()), 255)
    halves = x.astype(np.float16).view(np.uint16)
    try:
        tq = reference.load("quantization")
    except reference.ReferenceUnavailable:
        tq = None
    best_isa = _core.available_isas()[-1]

    # kernel -> (ours(isa, threads), numpy(), tensorflowjs() or None, ceiling(threads) -> seconds, output)
    # A ceiling is one or two memory-bound passes (quantize reads its input twice); each returns
    # the passes as callables for a thread count, timed beside the kernels.
    def ceiling_read(t):
        return [lambda: _core.ceiling_read(words, best_isa, t)]

    def ceiling_narrow(out):
        return lambda t: [lambda: _core.ceiling_narrow(words, out, best_isa, t)]

    def ceiling_widen(codes):
        return lambda t: [lambda: _core.ceiling_widen(codes, i32, best_isa, t)]

    def two_pass(narrow):
        return lambda t: ceiling_read(t) + narrow(t)

    specs = {
        "minmax": (lambda i, t: _core.minmax(x, i, t), lambda: (x.min(), x.max()), None, ceiling_read, None),
        "quantize uint8": (lambda i, t: _core.quantize_u8(x, u8, i, t), lambda: _numpy_quantize(x, 255, np.uint8),
                           (lambda: tq.quantize_weights(x, np.uint8)) if tq else None,
                           two_pass(ceiling_narrow(u8.copy())), u8),
        "quantize uint16": (lambda i, t: _core.quantize_u16(x, u16, i, t),
                            lambda: _numpy_quantize(x, 65535, np.uint16),
                            (lambda: tq.quantize_weights(x, np.uint16)) if tq else None,
                            two_pass(ceiling_narrow(u16.copy())), u16),
        "dequantize uint8": (lambda i, t: _core.dequantize(u8, f32, mn8, scale8, i, t),
                             lambda: (u8 * scale8 + mn8).astype(np.float32),
                             (lambda: tq.dequantize_weights(u8, {"min": mn8, "scale": scale8})) if tq else None,
                             ceiling_widen(u8), f32),
        "dequantize uint16": (lambda i, t: _core.dequantize(u16, f32, mn16, scale16, i, t),
                              lambda: (u16 * scale16 + mn16).astype(np.float32),
                              (lambda: tq.dequantize_weights(u16, {"min": mn16, "scale": scale16})) if tq else None,
                              ceiling_widen(u16), f32),
        "float32->float16": (lambda i, t: _core.f16_from_f32(x, u16, i, t), lambda: x.astype(np.float16),
                             (lambda: tq.quantize_weights(x, np.float16)) if tq else None,
                             ceiling_narrow(u16.copy()), u16),
        "float16->float32": (lambda i, t: _core.f32_from_f16(halves, f32, i, t),
                             lambda: halves.view(np.float16).astype(np.float32),
                             (lambda: tq.dequantize_weights(halves.view(np.float16), {})) if tq else None,
                             ceiling_widen(halves), f32),
    }
    data_bytes = 4 * n
    rows: List[Row] = []
    for kernel, (ours, numpy_fn, tfjs_fn, ceiling_fn, output) in specs.items():
        if kernels and not any(k in kernel for k in kernels):
            continue
        say(f"{kernel}: numpy")
        t_numpy = best_time(numpy_fn, repeat)
        t_tfjs = None
        if tfjs_fn is not None:
            say(f"{kernel}: tensorflowjs")
            t_tfjs = best_time(tfjs_fn, repeat)
        reference_bytes = None
        if output is not None:
            ours("serial", 0)
            reference_bytes = output.tobytes()
        for threads in threads_list:
            say(f"{kernel}: {', '.join(isas)} and the memory ceiling, {threads} thread(s)")
            passes = ceiling_fn(threads)
            kernels_now = [(lambda isa=isa: ours(isa, threads)) for isa in isas]
            times = best_times(passes + kernels_now, repeat)
            t_ceiling = sum(times[:len(passes)])
            rows.append(Row(kernel, "memory ceiling", threads, t_ceiling, data_bytes / t_ceiling / 1e9, 1.0))
            for isa, t in zip(isas, times[len(passes):]):
                exact = None
                if output is not None:
                    ours(isa, threads)
                    exact = output.tobytes() == reference_bytes
                rows.append(Row(kernel, f"qshard {isa}", threads, t, data_bytes / t / 1e9, t_ceiling / t,
                                t_numpy / t, (t_tfjs / t) if t_tfjs else None, exact))
        rows.append(Row(kernel, "numpy", 1, t_numpy, data_bytes / t_numpy / 1e9,
                        vs_tensorflowjs=(t_tfjs / t_numpy) if t_tfjs else None))
        if t_tfjs:
            rows.append(Row(kernel, "tensorflowjs 4.22", 1, t_tfjs, data_bytes / t_tfjs / 1e9))
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "isas": _core.available_isas(),
               "elements": n, "repeat": repeat, "numpy": np.__version__,
               "tensorflowjs": tq is not None, "python": platform.python_version()}
    return {"machine": machine, "rows": rows}


def _fmt(value: Optional[float], spec: str) -> str:
    return "" if value is None else format(value, spec)


def format_table(result: Dict[str, object]) -> str:
    """The benchmark as a plain-text table."""
    m = result["machine"]
    lines = [f"qshard bench: {m['elements']:,} float32 elements ({m['elements'] * 4 / 2**20:.0f} MiB), "
             f"best of {m['repeat']}; CPU {m['cpu']}, {m['cores']} cores, ISAs {', '.join(m['isas'])}",
             "GB/s counts float32 bytes (4 per element); 'of ceiling' is the fraction of a memory-bound pass "
             "with the same access pattern, measured just before.",
             ""]
    header = f"{'kernel':<18} {'implementation':<18} {'thr':>3} {'ms':>9} {'GB/s':>7} {'of ceiling':>10} " \
             f"{'x numpy':>8} {'x tfjs':>8} {'exact':>5}"
    lines += [header, "-" * len(header)]
    previous = None
    for r in result["rows"]:
        if previous and r.kernel != previous:
            lines.append("")
        previous = r.kernel
        lines.append(f"{r.kernel:<18} {r.impl:<18} {r.threads:>3} {r.seconds * 1e3:>9.2f} {r.gbps:>7.2f} "
                     f"{_fmt(r.of_ceiling, '.2f'):>10} {_fmt(r.vs_numpy, '.1f'):>8} "
                     f"{_fmt(r.vs_tensorflowjs, '.1f'):>8} {'' if r.exact is None else ('yes' if r.exact else 'NO'):>5}")
    if not m["tensorflowjs"]:
        lines += ["", "tensorflowjs not installed: pip install --no-deps tensorflowjs==4.22.0 to compare with it"]
    return "\n".join(lines)


def to_json(result: Dict[str, object]) -> str:
    return json.dumps({"machine": result["machine"], "rows": [asdict(r) for r in result["rows"]]}, indent=1)


def main(size: str, threads: Optional[str], isas: Optional[str], repeat: int, as_json: bool, quiet: bool,
         kernels: Optional[str] = None) -> int:
    n = parse_size(size)
    cores = _core.get_num_threads()
    if threads:
        try:
            threads_list = [int(t) for t in threads.split(",")]
        except ValueError:
            raise ValueError(f"--threads: expected numbers such as 1,2, got {threads!r}") from None
        if any(t < 1 for t in threads_list):
            raise ValueError("--threads: every count must be >= 1")
    else:
        threads_list = sorted({1, cores})
    available = _core.available_isas()
    isa_list = isas.split(",") if isas else available
    for isa in isa_list:
        if isa not in available:
            raise ValueError(f"--isa: {isa!r} is not available here (available: {', '.join(available)})")
    if repeat < 1:
        raise ValueError("--repeat must be >= 1")
    interactive = sys.stderr.isatty() and not quiet

    def progress(message: str) -> None:
        if interactive:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    selected = [k.strip() for k in kernels.split(",")] if kernels else None
    result = run(n, threads_list, isa_list, repeat, progress, selected)
    if not result["rows"]:
        raise ValueError(f"--kernel: {kernels!r} matches no kernel (minmax, quantize, dequantize, float16)")
    if interactive:
        sys.stderr.write("\r\033[K")
    print(to_json(result) if as_json else format_table(result))
    return 0
