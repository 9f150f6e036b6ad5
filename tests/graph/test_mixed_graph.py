"""search_graph_model (qshard.graph.mixed): the smallest per-weight mix that keeps a cosine budget on
sample inputs, every candidate run by stock tfjs 4.22 in Node (qshard.accuracy.tfjs_runner)."""
import numpy as np
import pytest

from qshard import tfjs
from qshard.accuracy import fidelity
from qshard.accuracy.tfjs_runner import TfjsRunner
from qshard.accuracy.web_data import Samples
from qshard.errors import OutputError
from qshard.graph.mixed import search_graph_model
from support.pc_graphs import MODELS, inputs_for


@pytest.fixture(scope="module")
def runner(node):
    with TfjsRunner("cpu") as r:
        yield r


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    src = MODELS["folded_batch_norm"](tmp_path_factory.mktemp("mixed") / "src", np.random.default_rng(7))
    rng = np.random.default_rng(11)
    batch = [inputs_for(src, rng) for _ in range(3)]  # full-shape samples: fed one by one
    return src, Samples({k: np.stack([b[k] for b in batch]) for k in batch[0]}, None, "3 random images")


def test_the_search_meets_a_budget_the_smallest_choice_misses(model, runner, tmp_path):
    src, samples = model
    result = search_graph_model(src, tmp_path / "out", samples, min_cosine=0.99999, runner=runner)
    assert result.met and result.cosine >= 0.99999
    assert result.damage and result.ranking and result.evaluations >= 1 + len(result.damage)
    # The smallest other weights (biases) start at uint16 and are not measured one by one.
    assert "head/bias" not in result.damage and "conv1/weights" in result.damage
    # Widened only what it needed: smaller than every weight at 16 bits.
    widened = [n for n, c in result.choice.items() if c in ("per-channel uint16", "uint16", "float32")]
    assert 0 < len(widened) < len(result.choice)
    assert result.bytes < sum(2 * tfjs.WebModel(src).spec(n).size for n in result.choice)
    # The written model, run again in tfjs, keeps the budget; the smallest choice does not.
    ref = runner.run(src, samples.inputs).outputs
    got = runner.run(tmp_path / "out", samples.inputs).outputs
    assert fidelity.compare(ref, got).worst_cosine >= 0.99999
    smallest = search_graph_model(src, tmp_path / "small", samples, min_cosine=0.5, runner=runner)
    # the float model's mean inputs, the smallest choice with and without bias correction, the biases to uint8
    assert smallest.evaluations == 4 and smallest.cosine < 0.99999
    assert set(smallest.choice.values()) == {"per-channel uint8", "uint8"}


def test_an_existing_output_is_refused_before_searching(model, tmp_path):
    src, samples = model
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="already exists"):
        search_graph_model(src, tmp_path / "out", samples, min_cosine=0.9, backend="no-such-backend")


@pytest.mark.slow
def test_a_budget_only_the_float_weights_meet_widens_the_small_group_too(model, runner, tmp_path):
    src, samples = model
    result = search_graph_model(src, tmp_path / "out", samples, min_cosine=1 - 1e-12, runner=runner)
    assert result.met and set(result.choice.values()) == {"float32"}  # the biases too, not stuck at uint16
