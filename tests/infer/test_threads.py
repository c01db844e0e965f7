"""salseg.infer.threads: the CPU thread count is chosen from timed calls, fixed by the user's variables, restored."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from salseg.errors import ConfigError
from salseg.infer.threads import ENV, ThreadTuner, fixed_threads, torch_threads


def _slow_with(slow: int, seen: list):
    def fn(x):
        n = torch.get_num_threads()
        seen.append(n)
        time.sleep(0.03 if n == slow else 0.001)
        return x

    return fn


@pytest.mark.parametrize("slow, best", [(2, 1), (1, 2)])
def test_tuner_keeps_the_faster_count_after_one_trial_each(slow, best):
    seen = []
    tuner = ThreadTuner([2, 1])
    fn = tuner.wrap(_slow_with(slow, seen))
    before = torch.get_num_threads()
    for _ in range(5):
        fn(torch.zeros(2, 1))
        assert torch.get_num_threads() == before  # restored after every call
    assert seen[:3] == [2, 1, 2]  # warm-up (not timed), then each candidate once
    assert tuner.chosen == best and seen[3:] == [best, best]
    assert set(tuner.timings) == {1, 2}


@pytest.mark.parametrize("slow, best", [(2, 1), (1, 2)])
def test_a_batch_is_split_for_the_trial_with_the_same_outputs(slow, best):
    """A batch of tiles: the first tile warms up, the rest is split between the candidates; no extra call, and the
    concatenated output is the batch's output."""
    seen = []
    tuner = ThreadTuner([2, 1])

    def fn(x):
        n = torch.get_num_threads()
        seen.append((n, x.shape[0]))
        time.sleep((0.02 if n == slow else 0.001) * x.shape[0])
        return x * 2

    wrapped = tuner.wrap(fn)
    x = torch.arange(9.0).reshape(9, 1)
    assert torch.equal(wrapped(x), x * 2)
    assert seen == [(2, 1), (1, 4), (2, 4)] and tuner.chosen == best
    assert torch.equal(wrapped(x[:3]), x[:3] * 2) and seen[-1] == (best, 3)


def test_tuner_times_per_tile():
    """A call with a bigger batch is not held against its thread count: timings are per tile."""
    tuner = ThreadTuner([2, 1])
    fn = tuner.wrap(lambda x: time.sleep(0.005 * x.shape[0]) or x)
    fn(torch.zeros(1))
    fn(torch.zeros(1))  # 1 thread: 1 tile, 5 ms
    tuner._timed(lambda x: time.sleep(0.005 * x.shape[0]) or x, torch.zeros(2), 2)  # 2 threads: 2 tiles, 10 ms
    assert tuner.timings[1] == pytest.approx(tuner.timings[2], rel=0.5)


def test_user_variables_fix_the_count(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv(ENV, "3")
    tuner = ThreadTuner()
    assert tuner.candidates == [3] and tuner.chosen == 3
    seen = []
    tuner.wrap(_slow_with(3, seen))(torch.zeros(1))
    assert seen == [3]
    monkeypatch.setenv(ENV, "two")
    with pytest.raises(ConfigError, match=ENV):
        fixed_threads()
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert fixed_threads() == torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    with torch_threads(2):
        assert ThreadTuner().candidates == [2, 1]  # torch's count is the ceiling


def test_predictor_chooses_threads_and_labels_do_not_change(toy_root, monkeypatch):
    from salseg.infer.predictor import Predictor, predict_preprocessed

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    data = np.random.default_rng(0).normal(size=(1, 9, 20, 20)).astype(np.float32)
    with torch_threads(2):
        p = Predictor.from_results(toy_root, "InferToy", "unet", config="3d_fullres", folds=[0])
        probs, _ = p.predict_preprocessed_case(data)
        assert p.thread_tuner.chosen in (1, 2) and torch.get_num_threads() == 2
    conf = p.plans.configuration("3d_fullres").to_dict()
    ref = predict_preprocessed(p.model, data, conf, num_classes=3)
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    assert np.array_equal(probs.argmax(0), ref.argmax(0))



def test_split_trial_in_a_2d_prediction_gives_the_same_probabilities():
    from salseg.infer.predictor import predict_preprocessed
    from salseg.nets.unet import unet

    torch.manual_seed(0)
    plans = {"pool_op_kernel_sizes": [[1, 1], [2, 2]], "conv_kernel_sizes": [[3, 3]] * 2, "features_per_stage": [4, 8]}
    model = unet(1, 3, 2, plans, deep_supervision=False).eval()
    conf = {"dim": 2, "patch_size": [16, 16], "batch_size": 5}
    data = np.random.default_rng(1).normal(size=(1, 7, 20, 24)).astype(np.float32)
    tuner = ThreadTuner([2, 1])
    with torch_threads(2):
        tuned = predict_preprocessed(model, data, conf, num_classes=3, threads=tuner)
        ref = predict_preprocessed(model, data, conf, num_classes=3)
    assert tuner.chosen in (1, 2) and set(tuner.timings) == {1, 2}
    np.testing.assert_allclose(tuned, ref, atol=1e-6)
    assert np.array_equal(tuned.argmax(0), ref.argmax(0))
