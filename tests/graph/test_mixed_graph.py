"""search_graph_model (qshard.graph.mixed): the smallest per-weight mix that keeps a cosine budget on
sample inputs, every candidate run by stock tfjs 4.22 in Node."""
import numpy as np
import pytest

from qshard import tfjs
from qshard.errors import OutputError
from qshard.graph.mixed import search_graph_model, worst_cosine
from support import graph_runner
from support.pc_graphs import MODELS, inputs_for


@pytest.fixture(scope="module")
def model(tmp_path_factory, node):
    root = tmp_path_factory.mktemp("mixed")
    src = MODELS["folded_batch_norm"](root / "src", np.random.default_rng(7))
    rng = np.random.default_rng(11)
    return src, [inputs_for(src, rng) for _ in range(3)]


def test_the_search_meets_a_budget_the_smallest_choice_misses(model, tmp_path):
    src, samples = model
    run = graph_runner.runner()
    result = search_graph_model(src, tmp_path / "out", samples, run, min_cosine=0.99999)
    assert result.met and result.cosine >= 0.99999
    assert result.damage and result.ranking and result.evaluations >= 1 + len(result.damage)
    # Widened only what it needed: smaller than every filter at per-channel uint16.
    widened = [n for n, c in result.choice.items() if c in ("per-channel uint16", "uint16", "float32")]
    assert 0 < len(widened) < len(result.choice)
    assert result.bytes < sum(2 * tfjs.WebModel(src).spec(n).size for n in result.choice)
    # The written model, run again in tfjs, keeps the budget; the smallest choice does not.
    (ref,), (got,) = run([src], samples), run([tmp_path / "out"], samples)
    assert worst_cosine(got, ref) >= 0.99999
    smallest = search_graph_model(src, tmp_path / "small", samples, run, min_cosine=0.5)
    assert smallest.evaluations == 1 and smallest.cosine < 0.99999
    assert set(smallest.choice.values()) == {"per-channel uint8", "uint8"}


def test_an_existing_output_is_refused_before_searching(model, tmp_path):
    src, samples = model
    (tmp_path / "out").mkdir()
    calls = []
    with pytest.raises(OutputError):
        search_graph_model(src, tmp_path / "out", samples, lambda f, s: calls.append(f), min_cosine=0.9)
    assert not calls
