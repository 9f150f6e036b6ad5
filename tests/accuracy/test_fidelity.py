"""qshard.accuracy.fidelity on constructed outputs: known cosines and relative errors, top-1 counts,
decoded detections matched in any order, integer outputs compared exactly."""
import math

import numpy as np
import pytest

from qshard.accuracy import fidelity as F


def test_cosine_of_identical_is_one_and_known_values():
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    assert F.sample_cosines(a, a).tolist() == [1.0, 1.0, 1.0]
    b = np.array([[2.0, 4.0, 6.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32)
    # scaled: 1; a zero output against a non-zero one: 0; 45 degrees: 1/sqrt(2)
    np.testing.assert_allclose(F.sample_cosines(a, b), [1.0, 0.0, 1 / math.sqrt(2)], rtol=1e-15)
    assert F.sample_cosines(a, -a)[0] == -1.0
    assert F.sample_cosines([np.zeros((2, 3))], [np.zeros((3, 2))]).tolist() == [0.0]  # shapes differ
    assert math.isnan(F.sample_cosines([np.ones(3)], [np.array([1.0, np.nan, 1.0])])[0])


def test_max_relative_error():
    ref = np.array([[1.0, -4.0], [2.0, 0.5]])
    var = ref + np.array([[0.0, 0.1], [-0.3, 0.0]])
    assert F.max_relative_error(ref, var) == pytest.approx(0.3 / 4.0, rel=1e-12)  # over all samples
    assert F.max_relative_error(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    assert F.max_relative_error(np.zeros((2, 2)), np.ones((2, 2))) == math.inf


def test_top1_agreement_counts_samples():
    ref = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    var = np.array([[0.1, 0.6, 0.3], [0.3, 0.5, 0.2], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert F.top1_agreement(ref, var) == 0.5
    out = F.compare({"probs": ref}, {"probs": var})
    assert out.top1_agreement == 0.5 and out.outputs[0].kind == F.FLOAT
    assert F.is_classifier(ref) and F.is_classifier(ref[:, None, :])  # (N, 1, C): still one vector a sample
    assert not F.is_classifier(np.zeros((2, 5, 4))) and not F.is_classifier(np.zeros((2, 1)))
    # blazeface's per-anchor scores, [1, 512, 1] a sample: not a vector of classes
    assert not F.is_classifier(np.zeros((2, 1, 512, 1)))


def test_integer_outputs_compare_exactly():
    ref = np.array([[1, 2], [3, 4], [5, 6]], np.int32)
    var = np.array([[1, 2], [3, 5], [5, 6]], np.int32)
    out = F.compare({"ids": ref, "mask": ref > 2}, {"ids": var, "mask": var > 2})
    ids, mask = out.outputs
    assert ids.kind == F.INTEGER and ids.exact_agreement == pytest.approx(2 / 3) and ids.worst_cosine is None
    assert mask.kind == F.INTEGER and mask.exact_agreement == 1.0
    assert out.exact_agreement == pytest.approx(2 / 3)
    assert out.worst_cosine is None  # no float output at all


def detections(rows):
    return np.array(rows, np.float64)


def test_decoded_rows_match_in_any_order_within_tolerance():
    # [y, x, score, class] rows; column scales 100, 100, 1, 5
    ref = [detections([[10, 20, 0.9, 1], [50, 60, 0.8, 5], [100, 30, 0.1, 2]])]
    swapped = [detections([[50.5, 60, 0.8, 5], [10, 20.2, 0.895, 1], [100, 30, 0.1, 2]])]
    assert F.rows_matched(ref, swapped) == 1.0
    assert F.sample_cosines(ref, swapped)[0] < 0.9  # the cosine drops although nothing changed
    moved = [detections([[10, 22.5, 0.9, 1], [50, 60, 0.8, 4], [100, 30, 0.1, 2]])]  # 2.5 > 1% of 100; class 4
    assert F.rows_matched(ref, moved) == pytest.approx(1 / 3)
    fewer = [detections([[10, 20, 0.9, 1]])]  # one detection where there were three
    assert F.rows_matched(ref, fewer) == pytest.approx(1 / 3)
    twice = [detections([[10, 20, 0.9, 1], [10, 20, 0.9, 1], [10, 20, 0.9, 1]])]  # one to one
    assert F.rows_matched(ref, twice) == pytest.approx(1 / 3)


def test_decoded_outputs_stay_out_of_the_headline_cosine():
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((4, 50))
    boxes = rng.random((4, 10, 4)) * 100
    swapped = boxes[:, ::-1, :]  # every detection kept, order reversed
    out = F.compare({"raw": raw, "boxes": boxes}, {"raw": raw * 1.01, "boxes": swapped}, decoded=["boxes"])
    assert out.cosine_over == F.FLOAT and out.worst_cosine == pytest.approx(1.0, abs=1e-12)
    assert out.rows_matched == 1.0
    by_name = {o.name: o for o in out.outputs}
    assert by_name["boxes"].kind == F.DECODED and by_name["boxes"].worst_cosine < 0.99
    only_decoded = F.compare({"boxes": boxes}, {"boxes": swapped}, decoded=["boxes"])
    assert only_decoded.cosine_over == F.DECODED and only_decoded.worst_cosine == by_name["boxes"].worst_cosine


def test_worst_over_samples_and_outputs():
    ref = {"a": np.array([[1.0, 0.0], [1.0, 1.0]]), "b": np.array([[3.0, 4.0], [1.0, 2.0]])}
    var = {"a": np.array([[1.0, 0.0], [1.0, 0.0]]), "b": np.array([[3.0, 4.0], [1.0, 2.5]])}
    out = F.compare(ref, var)
    assert out.worst_cosine == pytest.approx(1 / math.sqrt(2))  # output a, sample 1
    assert out.max_rel_error == pytest.approx(1.0)  # output a: |0 - 1| / max|a| = 1
    assert {o.name: o.max_rel_error for o in out.outputs}["b"] == pytest.approx(0.5 / 4.0)
    assert F.summary_dict(out)["worst_cosine"] == out.worst_cosine


def test_variable_length_outputs_as_lists():
    ref = [np.array([1, 2, 3], np.int32), np.array([4], np.int32)]
    assert F.compare({"keep": ref}, {"keep": [np.array([1, 2, 3], np.int32), np.array([], np.int32)]}
                     ).exact_agreement == 0.5
    nan = F.compare({"y": np.ones((2, 3))}, {"y": np.array([[1.0, 1, 1], [np.nan, 1, 1]])})
    assert math.isnan(nan.worst_cosine) and F.summary_dict(nan)["worst_cosine"] is None
