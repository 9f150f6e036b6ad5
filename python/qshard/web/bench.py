"""bench --browser: each stored dtype of a model, timed from load to first prediction in Chromium."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from qshard.errors import BrowserError
from qshard.formats.outputs import check_new_folder
from qshard.web.browser import Browser, Link, model_format
from qshard.web.deps import chromium_version, find_chromium, find_tfjs, playwright_api

# --------------------------------------------------------------------------------------------------
# `qshard bench --browser`: time to first prediction over an emulated link, per stored dtype.

VARIANTS = ("float32", "float16", "uint16", "uint8")


@dataclass
class BenchRow:
    variant: str
    model_bytes: int                 # bytes of model.json + shards
    cold_bytes: int                  # bytes served on a first visit (empty cache)
    warm_bytes: int                  # bytes served on a return visit (HTTP cache)
    cold_ms: float                   # median time from load start to the first prediction's data
    warm_ms: float
    cold_ms_all: List[float] = field(default_factory=list)
    warm_ms_all: List[float] = field(default_factory=list)
    speedup: Optional[float] = None  # float32's cold time / this one's
    max_abs_diff: Optional[float] = None  # of the outputs against float32's, same inputs
    relative_diff: Optional[float] = None  # worst output's max |difference| / its max |float32 value|


def _folder_bytes(model: Union[str, os.PathLike]) -> int:
    from qshard.formats import manifest as mf
    file = mf.load(model)
    return file.path.stat().st_size + sum((file.folder / p).stat().st_size for g in file.groups for p in g.paths)


def bench_browser(model: Union[str, os.PathLike], work_dir: Union[str, os.PathLike], link: Optional[Link],
                  repeat: int = 1, backend: str = "cpu", variants: Sequence[str] = VARIANTS,
                  chromium: Optional[str] = None, tfjs: Optional[str] = None, progress=None,
                  force: bool = False) -> Dict[str, object]:
    """Write each quantized variant of `model` into work_dir (all float32 weights as that dtype),
    then, `repeat` times (in a rotated order each time), load each in a fresh browser context (cold
    cache) and again after a page reload in the same context (warm cache), over `link`; time from the
    start of the load to the first prediction's output, and count the bytes the server sent. A
    variant folder already in work_dir is replaced only if force."""
    from qshard.formats import manifest as mf
    from qshard.formats.writer import quantize_model
    if repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {repeat}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"variants must be among {', '.join(VARIANTS)}, got {', '.join(variants) or 'none'}")
    fmt = model_format(model)
    work = Path(work_dir)
    for v in variants:  # every variant's folder checked before the first is written
        check_new_folder(work / v, force, [model])
    # Everything the browser run needs, before the first variant is written.
    find_chromium(chromium)
    find_tfjs(tfjs)
    playwright_api()
    folders = {}
    for v in variants:
        # float32 is written too (weights as they are, in 4 MiB shards), so that every variant has the
        # same shard layout and only the stored dtype differs.
        if progress:
            progress(f"writing the {v} variant")
        quantize_model(model, work / v, **({} if v == "float32" else {v: True}), force=force)
        folders[v] = work / v / mf.find_model_file(model).name
    cold: Dict[str, List[float]] = {v: [] for v in variants}
    warm: Dict[str, List[float]] = {v: [] for v in variants}
    served: Dict[str, tuple] = {}
    outputs: Dict[str, List[np.ndarray]] = {}
    with Browser(chromium, tfjs) as b:
        for i in range(repeat):
            # Each repeat starts one variant later, so that no variant always runs right after the
            # same one (a run just after the float32 one measured up to 2 s slower).
            for v in variants[i % len(variants):] + variants[:i % len(variants)]:
                if progress:
                    progress(f"run {i + 1}/{repeat}: {v}")
                with b.session(link) as s:
                    first = s.run(folders[v], backend=backend)
                    s.open()
                    again = s.run(folders[v], backend=backend)
                for r in (first, again):
                    if r.error:
                        raise BrowserError(f"{folders[v]}: the {v} model failed in Chromium: {r.error}")
                cold[v].append(first.first_prediction_ms)
                warm[v].append(again.first_prediction_ms)
                served[v] = (first.bytes_transferred, again.bytes_transferred)
                outputs[v] = first.outputs
                ran = (first.tfjs, first.backend)
    rows = []
    for v in variants:
        row = BenchRow(v, _folder_bytes(folders[v]), served[v][0], served[v][1],
                       float(np.median(cold[v])), float(np.median(warm[v])), cold[v], warm[v])
        if "float32" in variants:
            row.speedup = float(np.median(cold["float32"])) / row.cold_ms if row.cold_ms > 0 else None
            diffs, relative = [], []
            for a, b in zip(outputs[v], outputs["float32"]):
                if not b.size:
                    continue
                d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                diffs.append(d)
                scale = float(np.max(np.abs(b)))
                relative.append(d / scale if scale > 0 else (0.0 if d == 0 else math.inf))
            row.max_abs_diff = max(diffs) if diffs else None
            row.relative_diff = max(relative) if relative else None
        rows.append(row)
    return {"model": str(model), "format": fmt, "link": None if link is None else
            {"bits_per_second": link.bits_per_second, "latency_ms": link.latency_ms, "text": str(link)},
            "repeat": repeat, "tfjs": ran[0], "backend": ran[1], "chromium": chromium_version(find_chromium(chromium)),
            "rows": [row.__dict__ for row in rows]}


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def relative_speed(speedup: float) -> str:
    """'2.50x faster', '1.92x slower' (never '0.52x faster') or 'as fast', from float32's time / this one's."""
    if not speedup > 0:
        return "-"
    if round(speedup, 2) == 1:
        return "as fast"
    return f"{speedup:.2f}x faster" if speedup > 1 else f"{1 / speedup:.2f}x slower"


def format_bench(result: Dict[str, object]) -> str:
    """The bench --browser table and its one-line summary."""
    link = result["link"]["text"] if result["link"] else "no throttling"
    lines = [f"{result['model']} ({result['format']}) in {result['chromium']}, tfjs {result['tfjs']} "
             f"({result['backend']} backend)",
             f"link: {link}; time from the start of the model load to the first prediction's output, "
             f"median of {result['repeat']} run(s); cold = empty HTTP cache, warm = return visit; "
             f"output change = max |y - y_float32| / max |y_float32| on a fixed input, worst output",
             "",
             f"{'variant':<8} {'model':>10} {'sent cold':>10} {'sent warm':>10} {'cold':>9} {'warm':>9} "
             f"{'vs float32':>13} {'output change':>14}"]
    for r in result["rows"]:
        speed = relative_speed(r["speedup"]) if r["speedup"] is not None and r["variant"] != "float32" else "-"
        diff = f"{r['relative_diff']:.2e}" if r["relative_diff"] is not None else "-"
        lines.append(f"{r['variant']:<8} {_mb(r['model_bytes']):>10} {_mb(r['cold_bytes']):>10} "
                     f"{_mb(r['warm_bytes']):>10} {r['cold_ms'] / 1000:>8.2f}s {r['warm_ms'] / 1000:>8.2f}s "
                     f"{speed:>13} {diff:>14}")
    by = {r["variant"]: r for r in result["rows"]}
    if "uint8" in by and "float32" in by and by["uint8"]["speedup"]:
        speed = relative_speed(by["uint8"]["speedup"])
        lines += ["", f"uint8 reaches its first prediction {speed} {'as' if speed == 'as fast' else 'than'} float32 "
                      f"on this link (cold cache)."]
    return "\n".join(lines)
