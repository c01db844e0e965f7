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


def test_tuner_times_per_tile():
    """A call with a bigger batch is not held against its thread count: timings are per tile."""
    tuner = ThreadTuner([2, 1])
    fn = tuner.wrap(lambda x: time.sleep(0.005 * x.shape[0]) or x)
    fn(torch.zeros(1))
    fn(torch.zeros(4))  # 1 thread: 4 tiles, 20 ms = 5 ms per tile
    fn(torch.zeros(1))  # 2 threads: 1 tile, 5 ms
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

