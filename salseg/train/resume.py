"""``train --continue`` with settings that differ from the checkpoint's run: applied as documented, or refused.

- ``--epochs N``: N must exceed the completed epochs. The poly learning-rate schedule is recomputed over the new
  total (epoch e, 0-based, trains at ``lr * (1 - e / N) ** 0.9``, as a fresh N-epoch run would from epoch e on);
  the change is stated in one log line and recorded in config.json's ``resumed`` list. No epoch trains at lr 0.
- ``--iters-per-epoch`` different from the run's: refused (a resumed run keeps its epoch length).
- other recipe settings (lr, batch size, patch size, optimizer, weight decay, seed): the run keeps its own values;
  a warning names each one that was given and ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path

from salseg.errors import ConfigError
from salseg.train.resolve import revise

log = logging.getLogger(__name__)

KEPT = ("batch_size", "patch_size", "lr", "optimizer", "weight_decay", "seed")


def apply_resume_settings(saved, given: dict, done: int, source: Path) -> tuple:
    """(the checkpoint's RunConfig ``saved`` with what ``given`` (TrainSettings.given(): what the user set) may
    change, the record of an epochs change (also appended to its ``resumed``) or None when nothing changed)."""
    iters = given.get("iters_per_epoch")
    if iters is not None and int(iters) != saved.iters_per_epoch:
        raise ConfigError(f"{source}: --iters-per-epoch {iters} differs from the run's {saved.iters_per_epoch}; a "
                          f"resumed run keeps its iterations per epoch (drop the option, or start a new run without "
                          f"--continue)")
    ignored = [f"--{k.replace('_', '-')} (the run keeps {getattr(saved, k)!r})" for k in KEPT
               if k in given and given[k] != getattr(saved, k)]
    if ignored:
        log.warning("--continue: ignored %s", ", ".join(ignored))
    epochs = given.get("epochs")
    if epochs is None or int(epochs) == saved.epochs:
        return saved, None
    epochs = int(epochs)
    if epochs <= done:
        raise ConfigError(f"{source}: the checkpoint has completed {done} of {saved.epochs} epochs; --epochs {epochs} "
                          f"leaves nothing to train (continue with --epochs above {done}, or use the checkpoint as is)")
    record = {"after_epoch": done, "epochs_before": saved.epochs, "epochs_after": epochs,
              "schedule": f"poly recomputed over {epochs} epochs"}
    return revise(saved, "resume", epochs=epochs, resumed=list(saved.resumed or []) + [record]), record


def describe(record: dict, lr: float) -> str:
    return (f"resuming after epoch {record['after_epoch']}: epochs {record['epochs_before']} -> "
            f"{record['epochs_after']}, {record['schedule']} (learning rate {lr:.4g} for epoch "
            f"{record['after_epoch'] + 1})")
