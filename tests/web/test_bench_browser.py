"""`qshard bench --browser`: time to first prediction in headless Chromium over an emulated link.

Separate from test_browser.py because the command starts its own Chromium through playwright's sync
API, which cannot run while another sync playwright (that module's fixture) is open.
"""
import json

import numpy as np
import pytest

from qshard.web import bench as web_bench
from qshard.web import browser, deps

from qshard import cli

from qshard import example, tfjs
from support.browser import require_harness


@pytest.fixture(scope="module")
def chromium():
    require_harness()


def test_link_parsing():
    link = browser.Link.parse("10mbit,50ms")
    assert link.bits_per_second == 10e6 and link.latency_ms == 50
    assert browser.Link.parse("512kbit").bits_per_second == 512e3
    assert browser.Link.parse("1.5Mbit/s, 150ms").latency_ms == 150
    for bad in ("10mb", "fast", "-1mbit", "0kbit"):
        with pytest.raises(ValueError, match="link"):
            browser.Link.parse(bad)


def test_bench_browser_uint8_reaches_the_first_prediction_sooner(chromium, tmp_path, capsys):
    """A graph model with 10.7 MB of float32 weights over an emulated 10 Mbit/s, 50 ms link. The
    speed claim rests on the emulated link, not on this machine: float32 must move 10.7 MB at
    1.25 MB/s (>= 8.6 s), uint8 2.7 MB (>= 2.1 s); the browser's compute is well under a second."""
    model = example.write_example(tmp_path / "big", format="graph-model", hidden=1600)
    float_bytes = sum(a.nbytes for _, a in example.weights(hidden=1600))
    assert float_bytes >= 10_000_000
    code = cli.main(["bench", "--browser", str(model), "--link", "10mbit,50ms", "--variants", "float32,uint8",
                     "--json", "--work-dir", str(tmp_path / "work")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "cpu" and result["tfjs"] == deps.TFJS_VERSION
    rows = {r["variant"]: r for r in result["rows"]}
    f32, u8 = rows["float32"], rows["uint8"]
    # What crossed the wire: everything on the first visit, nothing on the return visit.
    assert f32["cold_bytes"] == f32["model_bytes"] > float_bytes
    assert u8["cold_bytes"] == u8["model_bytes"] < f32["model_bytes"] / 3.9
    assert f32["warm_bytes"] == 0 and u8["warm_bytes"] == 0
    # The emulated link really throttled (a lower bound set by the link, not by this machine).
    assert f32["cold_ms"] >= 1000 * f32["model_bytes"] / 1.25e6 * 0.95
    assert f32["warm_ms"] < f32["cold_ms"] / 3
    assert u8["cold_ms"] < f32["cold_ms"] and u8["speedup"] == pytest.approx(f32["cold_ms"] / u8["cold_ms"])
    assert 0 < u8["relative_diff"] < 0.05
    text = web_bench.format_bench(result)
    assert f"uint8 reaches its first prediction {u8['speedup']:.2f}x faster than float32" in text


def test_bench_browser_refuses_a_bare_manifest(chromium, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    tfjs.write_weights([[("w", np.ones(4, np.float32))]], tmp_path / "m")
    assert cli.main(["bench", "--browser", str(tmp_path / "m")]) == 2
    assert "no topology" in capsys.readouterr().err


def test_bench_browser_takes_a_folder_whose_model_json_has_another_name(chromium, tmp_path, capsys):
    """`qshard quantize faceres-deep.json out` keeps the name; `bench --browser out` finds it."""
    src = example.write_example(tmp_path / "src")
    (src / "model.json").rename(src / "faceres-deep.json")
    assert cli.main(["quantize", str(src / "faceres-deep.json"), str(tmp_path / "out"), "--uint8", "-q"]) == 0
    assert [p.name for p in (tmp_path / "out").glob("*.json")] == ["faceres-deep.json"]
    code = cli.main(["bench", "--browser", str(tmp_path / "out"), "--link", "none", "--variants", "float32,float16",
                     "--json", "--work-dir", str(tmp_path / "work")])
    assert code == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert (tmp_path / "work" / "float16" / "faceres-deep.json").is_file()
    assert rows["float16"]["cold_bytes"] > rows["float32"]["cold_bytes"] > 0  # uint8 codes widened to float16
    assert rows["float16"]["relative_diff"] < 0.01
