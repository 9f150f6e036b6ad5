"""`qshard report`: one self-contained HTML page (no network, charts inline as PNG) to decide what to
quantize: size per tensor by stored dtype, download size raw and gzip, per-tensor quantization error
(SQNR, max abs error) as a sorted bar chart with the culprits marked, and for the worst tensors a
histogram of their values with the uint8 grid drawn over it. Charts are drawn by matplotlib
(`pip install "qshard[report]"`).

Errors are measured against --against ORIGINAL when given (what quantization did to this model);
without it, for the weights the model stores as float32, what storing them as uint8 would do.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from qshard import __version__
from qshard.accuracy.weight_error import grid, tensor_error
from qshard.errors import OutputError, QshardError
from qshard.formats.outputs import check_output, write_file_atomically
from qshard.optional import require
from qshard.formats.summary import human, inspect

DTYPE_COLORS = {"float32": "#4c72b0", "float16": "#55a868", "uint16": "#8172b2", "uint8": "#dd8452",
                "int32": "#937860", "bool": "#8c8c8c", "string": "#8c8c8c", "complex64": "#8c8c8c"}
CULPRIT_COLOR = "#c44e52"
OK_COLOR = "#4c72b0"


def _pyplot_free_figure(width: float, height: float):
    Figure = require("matplotlib.figure", "report", "qshard report (it draws its charts with matplotlib)").Figure
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


@dataclass
class ErrorRow:
    name: str
    stored: str
    sqnr_db: float
    max_abs: float
    culprit: bool
    load: Callable[[], np.ndarray]  # the values the error is measured from (original ones), read on demand
    grid: Optional[tuple]           # (min, scale, levels) of the uint8 grid the values get / got


def _measure(info, model_path, against, culprit_db: float) -> tuple:
    """(rows, what): per-tensor errors of the model against the original (the figures inspect
    computed), or of uint8 what-ifs. Values are read again only for the histograms drawn."""
    from qshard.formats.webmodel import WebModel
    model = WebModel(model_path)
    rows: List[ErrorRow] = []
    if against:
        original = WebModel(against)
        for r in info["rows"]:
            if r.dtype != "float32" or r.stored == "float32" or r.sqnr_db is None or not math.isfinite(r.max_abs_error):
                continue  # kept float32, not in the original, or non-finite values
            q = model.spec(r.name).quantization
            g = (q.min, q.scale, 256 if q.dtype == "uint8" else 65536) if q.min is not None else None
            rows.append(ErrorRow(r.name, r.stored, r.sqnr_db, r.max_abs_error, r.sqnr_db < culprit_db,
                                 lambda n=r.name: original.values(n), g))
        what = (f"error of each quantized weight against {against} (weights stored as float32 have none)")
    else:
        for spec in model.specs:
            if spec.dtype != "float32" or spec.stored_dtype != "float32":
                continue
            x = model.values(spec.name)
            e = tensor_error(spec.name, x, ("uint8",))
            if not e.errors:
                continue  # empty, or non-finite values
            max_abs, sqnr = e.errors["uint8"]
            rows.append(ErrorRow(spec.name, "float32", sqnr, max_abs, sqnr < culprit_db,
                                 lambda n=spec.name: model.values(n), grid(x, "uint8")))
        what = "what storing each float32 weight as uint8 would do (no original given)"
    rows.sort(key=lambda r: r.sqnr_db)
    return rows, what


def _size_chart(info, top: int) -> str:
    rows = sorted(info["rows"], key=lambda r: r.nbytes, reverse=True)[:top][::-1]
    fig = _pyplot_free_figure(9, 0.28 * len(rows) + 1.4)
    ax = fig.add_subplot()
    ax.barh([r.name for r in rows], [r.nbytes for r in rows], color=[DTYPE_COLORS.get(r.stored, "#8c8c8c") for r in rows])
    ax.set_xlabel("bytes stored")
    ax.set_title(f"the {len(rows)} largest weights, by stored dtype")
    ax.tick_params(axis="y", labelsize=7)
    present = sorted({r.stored for r in rows})
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=DTYPE_COLORS.get(d, "#8c8c8c"), label=d) for d in present], loc="lower right")
    return _png(fig)


def _error_chart(rows: List[ErrorRow], top: int, culprit_db: float) -> str:
    shown = rows[:top][::-1]  # worst at the top
    finite = [r.sqnr_db for r in shown if math.isfinite(r.sqnr_db)]
    cap = (max(finite) if finite else culprit_db) + 10
    values = [min(r.sqnr_db, cap) if not (math.isinf(r.sqnr_db) and r.sqnr_db < 0) else 0 for r in shown]
    fig = _pyplot_free_figure(9, 0.28 * len(shown) + 1.4)
    ax = fig.add_subplot()
    ax.barh([r.name for r in shown], values, color=[CULPRIT_COLOR if r.culprit else OK_COLOR for r in shown])
    ax.axvline(culprit_db, color=CULPRIT_COLOR, linestyle="--", linewidth=1)
    ax.text(culprit_db, -0.9, f" culprits: below {culprit_db:g} dB", color=CULPRIT_COLOR, fontsize=8, va="bottom")
    ax.set_xlabel("SQNR (dB, higher is better)")
    ax.set_title(f"the {len(shown)} weights with the lowest SQNR (culprits in red)")
    ax.tick_params(axis="y", labelsize=7)
    return _png(fig)


def _histogram(row: ErrorRow) -> tuple:
    """(png, caption): the values' histogram with the uint8 grid over it, the whole range on the left
    and, on the right, the middle 99% of the values, where the grid's coarseness shows."""
    x = np.asarray(row.load(), np.float64).reshape(-1)
    fig = _pyplot_free_figure(10, 3.2)
    whole, zoom = fig.subplots(1, 2, width_ratios=[3, 2])
    lo_z, hi_z = np.percentile(x, [0.5, 99.5])
    if hi_z <= lo_z:
        lo_z, hi_z = lo_z - 0.5, hi_z + 0.5
    inside = x[(x >= lo_z) & (x <= hi_z)]
    whole.hist(x, bins=400, color=OK_COLOR, log=True, histtype="stepfilled")
    zoom.hist(inside, bins=200, color=OK_COLOR, histtype="stepfilled")
    caption = ""
    if row.grid is not None:
        lo, scale, levels = row.grid
        ticks = lo + scale * np.arange(levels)
        if levels <= 256:
            whole.vlines(ticks, 0, 1, transform=whole.get_xaxis_transform(), colors="#999999", linewidth=0.3, alpha=0.6)
            near = ticks[(ticks >= lo_z - scale) & (ticks <= hi_z + scale)]
            zoom.vlines(near, 0, 1, transform=zoom.get_xaxis_transform(), colors=CULPRIT_COLOR,
                        linewidth=1.0 if len(near) <= 48 else 0.4, alpha=0.8, label="uint8 levels")
            zoom.legend(loc="upper right", fontsize=8)
        codes = np.clip(np.rint((x - lo) / scale), 0, levels - 1)
        used, counts = np.unique(codes, return_counts=True)
        busiest = np.sort(counts)[::-1]
        k99 = int(np.searchsorted(np.cumsum(busiest), 0.99 * x.size) + 1)
        caption = (f"uint8 grid: step {scale:.3g} over [{lo:.4g}, {lo + scale * (levels - 1):.4g}]; "
                   f"the values use {len(used)} of {levels} levels, and 99% of them fall in {k99}.")
    zoom.set_xlim(lo_z - (hi_z - lo_z) * 0.05, hi_z + (hi_z - lo_z) * 0.05)
    whole.set_xlabel("value (whole range)")
    whole.set_ylabel("count (log)")
    zoom.set_xlabel("value (middle 99%)")
    zoom.set_ylabel("count")
    fig.suptitle(f"{row.name}: SQNR {row.sqnr_db:.1f} dB, max |error| {row.max_abs:.3g}")
    return _png(fig), caption


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; } td, th { padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; } tr:nth-child(even) { background: #f6f6f6; }
.culprit { color: #c44e52; font-weight: bold; } img { max-width: 100%; } .note { color: #666; }
"""


def build(model: Union[str, os.PathLike], against: Optional[Union[str, os.PathLike]] = None, top: int = 40,
          worst: int = 4, culprit_db: float = 30.0) -> str:
    """The report's HTML text."""
    info = inspect(model, against)
    rows, what = _measure(info, model, against, culprit_db)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>qshard report: {e(str(model))}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>qshard report: {e(info['path'])}</h1>",
             f"<p class='note'>qshard {e(__version__)}; {info['weights']} weights in {info['shards']} shard file(s)."
             + (f" Compared with {e(str(against))}." if against else "") + "</p>"]
    # Download size.
    parts.append("<h2 id='download'>Download size</h2><table><tr><th></th><th>raw</th><th>gzip</th></tr>")
    parts.append(f"<tr><td>this model</td><td>{human(info['bytes'])}</td><td>{human(info['gzip_bytes'])}</td></tr>")
    if against:
        original = inspect(against)
        parts.append(f"<tr><td>original</td><td>{human(original['bytes'])}</td>"
                     f"<td>{human(original['gzip_bytes'])}</td></tr>")
        if info["bytes"]:
            parts.append(f"<tr><td>original / this</td><td>{original['bytes'] / info['bytes']:.2f}x</td>"
                         f"<td>{(original['gzip_bytes'] or 0) / max(info['gzip_bytes'] or 1, 1):.2f}x</td></tr>")
    parts.append("</table>")
    # Size by stored dtype.
    parts.append("<h2 id='sizes'>Size per stored dtype</h2><table><tr><th>stored as</th><th>weights</th>"
                 "<th>bytes</th><th>share</th></tr>")
    for dtype, nbytes in sorted(info["bytes_by_stored_dtype"].items(), key=lambda kv: -kv[1]):
        count = sum(1 for r in info["rows"] if r.stored == dtype)
        share = nbytes / info["bytes"] if info["bytes"] else 0
        parts.append(f"<tr><td>{e(dtype)}</td><td>{count}</td><td>{human(nbytes)}</td><td>{share:.1%}</td></tr>")
    parts.append("</table>")
    if info["rows"]:
        parts.append(f"<img id='size-chart' alt='size per weight' src='data:image/png;base64,{_size_chart(info, top)}'>")
    # Errors.
    parts.append(f"<h2 id='errors'>Quantization error</h2><p>{e(what)}. A culprit is a weight whose SQNR is "
                 f"below {culprit_db:g} dB: keep it wider (--uint16, --float16 or --keep).</p>")
    culprits = [r for r in rows if r.culprit]
    if rows:
        parts.append(f"<img id='error-chart' alt='SQNR per weight' "
                     f"src='data:image/png;base64,{_error_chart(rows, top, culprit_db)}'>")
        parts.append(f"<p id='culprits'>{len(culprits)} culprit(s)"
                     + (": " + ", ".join(f"<span class='culprit'>{e(r.name)}</span>" for r in culprits) if culprits
                        else ".") + "</p>")
        parts.append("<h2 id='worst'>The worst weights, value by value</h2><p>Each histogram shows a weight's "
                     "values (log counts) with the uint8 grid over it: when a few outliers stretch the range, "
                     "most values share a handful of levels.</p>")
        for r in rows[:worst]:
            png, caption = _histogram(r)
            parts.append(f"<figure><img class='histogram' alt='{e(r.name)}' src='data:image/png;base64,{png}'>"
                         f"<figcaption>{e(caption)}</figcaption></figure>")
    else:
        parts.append("<p class='note'>No weight to measure: " + ("no weight is stored quantized." if against else
                                                                   "no weight is stored as float32.") + "</p>")
    # Every weight.
    by_name: Dict[str, ErrorRow] = {r.name: r for r in rows}
    parts.append("<h2 id='weights'>Every weight</h2><table><tr><th>weight</th><th>shape</th><th>stored</th>"
                 "<th>bytes</th><th>SQNR dB</th><th>max |error|</th></tr>")
    for r in info["rows"]:
        er = by_name.get(r.name)
        sq = "" if er is None else ("inf" if math.isinf(er.sqnr_db) else f"{er.sqnr_db:.1f}")
        cls = " class='culprit'" if er is not None and er.culprit else ""
        parts.append(f"<tr{cls}><td>{e(r.name)}</td><td>{e(str(list(r.shape)))}</td><td>{e(r.stored)}</td>"
                     f"<td>{r.nbytes}</td><td>{sq}</td><td>{'' if er is None else f'{er.max_abs:.3g}'}</td></tr>")
    parts.append("</table></body></html>\n")
    return "".join(parts)


def write(model, out: Union[str, os.PathLike], against=None, force: bool = False, **options) -> Path:
    """Build the report and write it to `out` (whole or not at all; an existing file only if force,
    never one of the models' own files)."""
    from qshard.formats.webmodel import WebModel
    inputs = WebModel(model).files() + (WebModel(against).files() if against else [])
    out = Path(out)
    if out.is_dir():
        raise QshardError(f"{out}: is a folder; give the report's file name (e.g. report.html)")
    check_output(out, inputs)
    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (use --force to replace it)")
    text = build(model, against, **options)
    write_file_atomically(out, text.encode("utf-8"), force=force, inputs=inputs)
    return out
