"""progress.png: whole-number epoch ticks, and legends that never cover the data (issue 18)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from salseg.train.report import IN_TRAINING, progress_figure, write_progress_png


def _records(n):
    out = []
    for e in range(1, n + 1):
        r = {"epoch": e, "train_loss": 1.0 / e, "lr": 0.01 * (1 - e / (n + 1))}
        if e == n:  # a short run: one validation point, at the last epoch, high in the plot (where legends sat)
            r.update(val_dice={"1": 0.05, "2": 0.97}, mean_fg_dice=0.51)
        out.append(r)
    return out


def test_integer_epoch_ticks_and_legends_outside_the_plots(tmp_path):
    fig = progress_figure(_records(3))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = [t for t in fig.axes[2].get_xticks() if fig.axes[2].get_xlim()[0] <= t <= fig.axes[2].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # right of the axes
    assert IN_TRAINING in fig.axes[1].get_ylabel()
    plt.close(fig)
    write_progress_png(tmp_path / "progress.png", _records(3))
    assert (tmp_path / "progress.png").stat().st_size > 1000


def test_the_two_validations_are_named_and_described():
    from types import SimpleNamespace

    from salseg.train.report import FINAL, validation_protocols

    cfg = SimpleNamespace(fold=2, val_every=5, time_budget=None)
    v = validation_protocols(cfg, 4, diffusion=False)
    assert list(v) == [IN_TRAINING, FINAL] and IN_TRAINING != FINAL
    assert "4 validation case(s) of fold 2" in v[IN_TRAINING] and "every 5 epoch(s)" in v[IN_TRAINING]
    assert "without mirroring" in v[IN_TRAINING] and "preprocessed geometry" in v[IN_TRAINING]
    assert "with mirroring" in v[FINAL] and "original" in v[FINAL] and "same 4 case(s)" in v[FINAL]
    assert "diffusion" in validation_protocols(cfg, 4, diffusion=True)[FINAL]
    assert "and after the last" in v[IN_TRAINING]
    budgeted = validation_protocols(SimpleNamespace(fold=2, val_every=5, time_budget=300.0), 4)[IN_TRAINING]
    assert "not after the last" in budgeted  # a budget's closing validation scores the last epoch
