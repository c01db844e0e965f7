"""The trained-model contract: the run config (``config.json``), the checkpoint format, a run's identity, and
rebuilding a model from a fold folder or a model package (``salseg.run.package``). Below ``salseg.infer`` and
``salseg.train``, which both use it; it imports neither."""

from salseg.run.checkpoint import load_checkpoint, save_checkpoint
from salseg.run.config import CONFIG_DIMS, RunConfig
from salseg.run.model import TrainedModel, build_model, load_fold_model, load_trained

__all__ = ["CONFIG_DIMS", "RunConfig", "TrainedModel", "build_model", "load_checkpoint", "load_fold_model",
           "load_trained", "save_checkpoint"]
