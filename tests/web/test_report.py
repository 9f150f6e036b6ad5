"""Per-tensor quantization error (qshard.accuracy.weight_error, `qshard inspect --error`) and the HTML
report (`qshard report`). The report's rendering in a real browser is checked in test_browser.py."""
import base64
import io
import json
import math
import re

import numpy as np
import pytest

from qshard import cli

from qshard import tfjs

from qshard.web import report
from qshard.accuracy.weight_error import error_of, model_errors, roundtrip, tensor_error
from qshard.formats.summary import inspect
from support.models import OUTLIER, outlier_model

def test_error_of_matches_the_definition():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    y = x + rng.standard_normal(1000) * 0.01
    max_abs, sqnr = error_of(y, x)
    assert max_abs == np.max(np.abs(y - x))
    assert sqnr == pytest.approx(10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2)), rel=1e-12)
    assert error_of(x, x) == (0.0, math.inf)
    assert error_of(np.ones(3), np.zeros(3))[1] == -math.inf
    with pytest.raises(ValueError):
        error_of(np.ones(3), np.ones(4))


def test_roundtrip_is_what_the_writer_stores_and_tfjs_reads(tmp_path):
    x = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    for dtype in ("uint8", "uint16", "float16"):
        (tmp_path / dtype).mkdir()
        tfjs.write_weights([[("w", x)]], tmp_path / dtype, **{dtype: True})
        assert roundtrip(x, dtype).tobytes() == tfjs.read_weights(tmp_path / dtype)["w"].tobytes()


def test_tensor_error_figures_and_notes():
    rng = np.random.default_rng(2)
    normal = rng.standard_normal(20000).astype(np.float32)
    row = tensor_error("n", normal)
    # A normal tensor at uint8: ~40 dB; each wider dtype is better.
    assert 35 < row.sqnr("uint8") < 46
    assert row.sqnr("uint16") > row.sqnr("uint8") + 40 and row.sqnr("float16") > 60
    spiked = normal.copy()
    spiked[0] = 200.0
    assert tensor_error("s", spiked).sqnr("uint8") < row.sqnr("uint8") - 20
    # One output channel 1000x wider than the others: the per-tensor SQNR still looks fine (the wide
    # channel dominates the signal), the worst channel's does not.
    kernel = rng.standard_normal((64, 32)).astype(np.float32)
    kernel[:, 3] *= 1000
    wide = tensor_error("k", kernel)
    assert wide.sqnr("uint8") > 35 and wide.channel_sqnr("uint8") < 5
    assert row.channel_sqnr("uint8") is None  # 1-D: no channels
    k = tensor_error("k2", rng.standard_normal((64, 32)).astype(np.float32))
    assert k.sqnr("uint8") - 10 < k.channel_sqnr("uint8") <= k.sqnr("uint8") + 3
    channels = [error_of(roundtrip(kernel, "uint8")[:, j], kernel[:, j])[1] for j in range(32)]
    assert wide.channel_sqnr("uint8") == pytest.approx(min(channels), rel=1e-9)
    assert "int32" in tensor_error("i", np.arange(4, dtype=np.int32)).note
    assert tensor_error("e", np.zeros(0, np.float32)).note == "empty"
    assert "NaN" in tensor_error("f", np.array([1, np.inf], np.float32)).note


def test_model_errors_rank_the_outlier_tensor_worst(tmp_path):
    outlier_model(tmp_path / "m")
    rows = {r.name: r for r in model_errors(tmp_path / "m")}
    assert "not quantized" in rows["step"].note and not rows["step"].errors
    worst = min((r for r in rows.values() if r.errors), key=lambda r: r.sqnr("uint8"))
    assert worst.name == OUTLIER and worst.sqnr("uint8") < 20
    assert all(r.sqnr("uint8") > 35 for r in rows.values() if r.errors and r.name != OUTLIER)


def test_inspect_error_command(tmp_path, capsys):
    outlier_model(tmp_path / "m")
    assert cli.main(["inspect", str(tmp_path / "m"), "--error"]) == 0
    text = capsys.readouterr().out
    table = text.split("worst uint8 first):")[1].strip().splitlines()
    assert table[2].startswith(OUTLIER)  # worst first, under the header and its rule
    assert cli.main(["inspect", str(tmp_path / "m"), "--error", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by = {e["name"]: e for e in doc["error_if_stored_as"]}
    assert by[OUTLIER]["uint8"]["sqnr_db"] < 20 and set(by[OUTLIER]) >= {"uint8", "uint16", "float16"}


# --------------------------------------------------------------------------------------------------
# The report.

def _images(text):
    return re.findall(r"<img ([^>]*)src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)


def _decoded(b64):
    from matplotlib import image
    return image.imread(io.BytesIO(base64.b64decode(b64)), format="png")


def _assert_self_contained(text):
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//)", text), "the report references the network"
    assert "<script" not in text and "<link" not in text


def test_report_without_original_shows_what_uint8_would_do(tmp_path):
    outlier_model(tmp_path / "m")
    text = report.build(tmp_path / "m", worst=3)
    _assert_self_contained(text)
    images = _images(text)
    ids = [re.search(r"(id|class)='([^']+)'", attrs).group(2) for attrs, _ in images]
    assert ids == ["size-chart", "error-chart", "histogram", "histogram", "histogram"]
    for _, b64 in images:
        pixels = _decoded(b64)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 600 and pixels.std() > 0.05
    assert re.search(r"1 culprit\(s\): <span class='culprit'>dense_1/kernel</span>", text)
    assert "what storing each float32 weight as uint8 would do" in text
    info = inspect(tmp_path / "m")
    assert "float32" in text and f"{info['weights']} weights" in text
    # The culprit's histogram caption: the outlier squeezes 99% of the values into a few levels.
    caption = re.search(r"99% of them fall in (\d+)\.", text)
    assert caption and int(caption.group(1)) <= 4


def test_report_against_the_original_measures_the_quantized_model(tmp_path):
    outlier_model(tmp_path / "src")
    tfjs.quantize_model(tmp_path / "src", tmp_path / "mixed", uint8=True, keep=["dense_2/*"])
    text = report.build(tmp_path / "mixed", against=tmp_path / "src")
    _assert_self_contained(text)
    rows = {r.name: r for r in inspect(tmp_path / "mixed", against=tmp_path / "src")["rows"]}
    table = dict(re.findall(r"<tr(?: class='culprit')?><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td>\d+</td>"
                            r"<td>([^<]*)</td>", text))
    for name, row in rows.items():
        if row.stored == "uint8":
            assert table[name] == f"{row.sqnr_db:.1f}"  # the same figure inspect --against gives
        else:
            assert table[name] == ""  # kept float32 (dense_2/*) or int32: no error to show
    assert "<tr class='culprit'><td>dense_1/kernel</td>" in text
    assert text.count("<tr class='culprit'>") == 1
    assert "original / this" in text


def test_report_of_a_model_with_nothing_to_measure(tmp_path):
    outlier_model(tmp_path / "src")
    tfjs.quantize_model(tmp_path / "src", tmp_path / "f16", float16=True)
    text = report.build(tmp_path / "f16")  # nothing stored as float32, no original
    assert "no weight is stored as float32" in text and "size-chart" in text and "error-chart" not in text
    text = report.build(tmp_path / "src", against=tmp_path / "src")  # nothing quantized
    assert "no weight is stored quantized" in text


def test_report_command_writes_one_file_or_nothing(tmp_path, capsys):
    outlier_model(tmp_path / "m")
    out = tmp_path / "r" / "report.html"
    out.parent.mkdir()
    assert cli.main(["report", str(tmp_path / "m"), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>") and str(out) in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
    # A folder as the output, a missing model, a missing output folder: one-line errors, nothing written.
    assert cli.main(["report", str(tmp_path / "m"), "-o", str(tmp_path / "r")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r" / "x.html")]) == 2
    assert "nope" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "m"), "-o", str(tmp_path / "absent" / "x.html")]) == 2
    assert "absent" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
