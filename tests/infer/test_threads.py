"""salseg.infer.threads: the CPU thread count is chosen from timed calls, fixed by the user's variables, restored."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from salseg.errors import ConfigError
from salseg.infer import threads
from salseg.infer.sliding_window import predict_mirrored, sliding_window_predict_batch
from salseg.infer.threads import ENV, Plan, ThreadTuner, fixed_threads, run_plan, torch_threads


TWO_THREADS, TWO_STREAMS = Plan(1, 2), Plan(2, 1)


@pytest.fixture
def tile_chunks(monkeypatch):
    """Every tile its own chunk (the toy tiles are far below CHUNK_VOXELS)."""
    monkeypatch.setattr(threads, "CHUNK_VOXELS", 1)


def _slow_with(slow: int, seen: list):
    def fn(x):
        n = torch.get_num_threads()
        seen.append(n)
        time.sleep((0.03 if n == slow else 0.001) * x.shape[0])
        return x

    return fn


@pytest.mark.parametrize("slow, best", [(2, TWO_STREAMS), (1, TWO_THREADS)])
def test_tuner_keeps_the_faster_plan_after_one_trial_each(tile_chunks, slow, best):
    seen = []
    tuner = ThreadTuner([TWO_THREADS, TWO_STREAMS])
    fn = tuner.wrap(_slow_with(slow, seen))
    before = torch.get_num_threads()
    for _ in range(5):
        fn(torch.zeros(2, 1, 1))
        assert torch.get_num_threads() == before  # restored after every call
    # per chunk: the warm-up (not timed) on 2 threads, then each plan once: two streams of 1 thread, 2 threads
    assert seen[:6] == [2, 2, 1, 1, 2, 2]
    assert tuner.chosen == best and seen[6:] == [best.threads] * 4
    assert set(tuner.timings) == {TWO_THREADS, TWO_STREAMS}
    assert tuner.export_threads == 2


@pytest.mark.parametrize("slow, best", [(2, TWO_STREAMS), (1, TWO_THREADS)])
def test_a_batch_is_split_for_the_trial_with_the_same_outputs(tile_chunks, slow, best):
    """A batch of tiles: the first tile warms up, the rest is split between the candidates (no extra call), the
    faster plan is kept, and the concatenated output is the batch's output."""
    seen = []
    tuner = ThreadTuner([TWO_THREADS, TWO_STREAMS])

    def fn(x):
        n = torch.get_num_threads()
        seen.append(n)
        time.sleep(0.02 if n == slow else 0.001)
        return x * 2

    wrapped = tuner.wrap(fn)
    x = torch.arange(9.0).reshape(9, 1)
    assert torch.equal(wrapped(x), x * 2)
    # per one-tile chunk: the warm-up alone (all of the first plan's threads), 4 on two 1-thread streams, 4 on 2 threads
    assert seen == [2, 1, 1, 1, 1, 2, 2, 2, 2] and tuner.chosen == best
    assert torch.equal(wrapped(x[:3]), x[:3] * 2) and seen[-3:] == [best.threads] * 3


def test_streams_run_chunks_concurrently_in_order(tile_chunks):
    idents, seen_threads = set(), []

    def fn(x):
        idents.add(threading.get_ident())
        seen_threads.append(torch.get_num_threads())
        grad = torch.is_inference_mode_enabled()
        time.sleep(0.1)
        return x * 2 + (0 if grad else float("nan"))

    x = torch.arange(4.0).reshape(4, 1, 1)
    t0 = time.perf_counter()
    y = run_plan(fn, x, Plan(2, 1))
    elapsed = time.perf_counter() - t0
    assert torch.equal(y, x * 2)             # in order, each worker in inference mode
    assert len(idents) == 2 and seen_threads == [1] * 4
    assert elapsed < 0.35                     # 4 chunks of 0.1 s on 2 streams, not 0.4 s
    single = []
    run_plan(lambda t: single.append(torch.get_num_threads()) or t, x[:1], Plan(2, 1))
    assert single == [2]                      # a lone chunk runs with all of the plan's threads


def test_chunk_size_is_about_four_2d_knee_tiles():
    assert threads.chunk_size(torch.zeros(32, 1, 112, 256)) == 4
    assert threads.chunk_size(torch.zeros(8, 1, 128, 96, 192)) == 1
    assert threads.chunk_size(torch.zeros(3, 1, 16, 16)) == threads.CHUNK_VOXELS // 256


def test_tuner_times_per_tile():
    """A call with a bigger batch is not held against its plan: timings are per tile."""
    tuner = ThreadTuner([TWO_THREADS, Plan(1, 1)])
    fn = tuner.wrap(lambda x: time.sleep(0.005 * x.shape[0]) or x)
    fn(torch.zeros(1))
    fn(torch.zeros(1))  # 1 thread: 1 tile, 5 ms
    tuner._timed(lambda x: time.sleep(0.005 * x.shape[0]) or x, torch.zeros(2), TWO_THREADS)  # 2 tiles, 10 ms
    assert tuner.timings[Plan(1, 1)] == pytest.approx(tuner.timings[TWO_THREADS], rel=0.5)


def test_flips_in_one_batch_sum_the_same(tile_chunks):
    """predict_mirrored with the flipped copies in one call: the same mean, in the same order, bit for bit."""
    x = torch.randn(3, 1, 5, 7)
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        return torch.cat([t.cumsum(-1), t.cumsum(-2) * 0.5], dim=1)  # not flip-invariant

    separate = predict_mirrored(fn, x, (0, 1))
    batched = predict_mirrored(fn, x, (0, 1), batch_flips=True)
    assert calls == [3, 3, 3, 3, 12] and torch.equal(separate, batched)


def test_user_variables_fix_the_count(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv(ENV, "3")
    tuner = ThreadTuner()
    assert tuner.candidates == [Plan(1, 3)] and tuner.chosen == Plan(1, 3)
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
        assert ThreadTuner().candidates == [TWO_THREADS, TWO_STREAMS]  # torch's count is the ceiling


def test_predictor_chooses_threads_and_labels_do_not_change(toy_root, monkeypatch):
    from salseg.infer.predictor import Predictor, predict_preprocessed

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    data = np.random.default_rng(0).normal(size=(1, 9, 20, 20)).astype(np.float32)
    with torch_threads(2):
        p = Predictor.from_results(toy_root, "InferToy", "unet", config="3d_fullres", folds=[0])
        probs, _ = p.predict_preprocessed_case(data)
        assert p.thread_tuner.chosen in (TWO_THREADS, TWO_STREAMS) and torch.get_num_threads() == 2
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
    tuner = ThreadTuner([TWO_THREADS, TWO_STREAMS])
    with torch_threads(2):
        tuned = predict_preprocessed(model, data, conf, num_classes=3, threads=tuner)
        # the reference: one call per flip, the whole batch at once, no chunks or streams
        windows = sliding_window_predict_batch(lambda t: model(t), torch.from_numpy(data).transpose(0, 1), [16, 16],
                                               num_classes=3, mirror_axes=(0, 1), batch_size=5)
        ref = torch.softmax(windows.transpose(0, 1), dim=0).numpy()
    assert tuner.chosen in (TWO_THREADS, TWO_STREAMS) and set(tuner.timings) == {TWO_THREADS, TWO_STREAMS}
    np.testing.assert_allclose(tuned, ref, atol=1e-6)
    assert np.array_equal(tuned.argmax(0), ref.argmax(0))


def test_an_error_in_one_stream_stops_the_rest(tile_chunks):
    """A failing chunk (or Ctrl-C) ends the call at once: chunks not yet started are dropped, not run to the end."""
    started = []

    def fn(x):
        started.append(int(x[0, 0, 0]))
        if int(x[0, 0, 0]) == 0:
            raise RuntimeError("out of memory")
        time.sleep(0.05)
        return x

    x = torch.arange(20.0).reshape(20, 1, 1)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="out of memory"):
        run_plan(fn, x, Plan(2, 1))
    assert time.perf_counter() - t0 < 0.5 and len(started) < 20
