"""Predicting preprocessed volumes with one model: 3D, 2D slice by slice, 2.5d slice models, diffusion samplers.

``predict_preprocessed`` returns class PROBABILITIES on the preprocessed grid. Segmenters: per tile the logits of
all mirror combinations are averaged, tiles are merged with Gaussian weights (logit averaging, as nnU-Net), and the
softmax is taken once at the end. Diffusion networks return probabilities per tile (the mean of ``ensemble``
samples); those are merged the same way and not softmaxed again. Fold ensembles (``salseg.infer.ensemble``)
average these per-fold probabilities.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from salseg.errors import ConfigError
from salseg.plans import Plans
from salseg.infer.sliding_window import sliding_window_predict, sliding_window_predict_batch
from salseg.nets.capabilities import capabilities_of

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
@dataclass
class DiffusionOptions:
    """Sampling options passed through to a diffusion network's ``sample()`` (``sampler`` None: the network's
    ``default_sampler``; ``fusion``: how the ensemble's samples are combined, salseg.nets.diffusion.fusion)."""

    steps: int | None = None
    sampler: str | None = None
    ensemble: int = 1
    seed: int = 0
    uncertainty: bool = False
    fusion: str = "mean"

    def validate(self) -> None:
        from salseg.nets.diffusion.fusion import FUSIONS
        from salseg.nets.diffusion.samplers import SAMPLERS

        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown --fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if self.ensemble < 1:
            raise ConfigError(f"--ensemble must be >= 1, got {self.ensemble}")


def neighbour_indices(num_slices: int, k: int) -> np.ndarray:
    """(Z, K) slice indices of the K neighbours centred on each slice, clamped at the volume edges."""
    offsets = np.arange(k) - k // 2
    return np.clip(np.arange(num_slices)[:, None] + offsets[None], 0, num_slices - 1)


def _is_diffusion(model) -> bool:
    return capabilities_of(model).diffusion


def _is_slice_model(model) -> bool:
    return capabilities_of(model).is_slice_model


def _logits(out):
    """The full-resolution output of a network that may return a deep-supervision list."""
    return out[0] if isinstance(out, (list, tuple)) else out


def _segmenter_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: _logits(model(x))


def _diffusion_fn(model, opts: DiffusionOptions, device: torch.device):
    """Tiles -> mean probabilities of ``opts.ensemble`` samples (+ one uncertainty channel: the mean over classes
    of the per-voxel standard deviation across samples)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(opts.seed))
    # only what was chosen, so a plug-in model without these keywords still works with the defaults
    extra = {k: v for k, v in (("sampler", opts.sampler), ("fusion", opts.fusion)) if v not in (None, "mean")}

    def fn(x: torch.Tensor) -> torch.Tensor:
        if opts.uncertainty:
            mean, samples = model.sample(x, steps=opts.steps, generator=gen, ensemble=opts.ensemble,
                                         return_samples=True, **extra)
            unc = samples.float().std(dim=0, unbiased=False).mean(dim=1, keepdim=True)
            return torch.cat([mean.float(), unc], dim=1)
        return model.sample(x, steps=opts.steps, generator=gen, ensemble=opts.ensemble, **extra)

    return fn


def _one_stream(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` in chunks of tiles at torch's thread count (a CPU prediction without a ThreadTuner)."""
    from salseg.infer.threads import Plan, run_plan

    return lambda x: run_plan(fn, x, Plan(1, torch.get_num_threads()))


def _slice_view_fn(model, k: int, c: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, K*C, h, w) tiles of the stacked-neighbour view -> the slice model's (B, K, C, h, w) input."""
    return lambda x: _logits(model(x.reshape(x.shape[0], k, c, *x.shape[2:])))


def _slice_volume_fn(model, chunk: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, C, Z, h, w) tiles spanning the whole z extent -> (B, classes, Z, h, w), doing each slice's per-slice work
    (``encode_slices``: features, encoder) once and each window's rest (``decode_from_cache``) once per slice, with
    neighbours clamped at the edges (salseg.nets.modules.positions.predict_volume_amortized), ``chunk`` slices at
    a time."""
    from salseg.nets.modules.positions import predict_volume_amortized

    bs = chunk + 2 * (capabilities_of(model).slice_k // 2)
    return lambda x: torch.stack([predict_volume_amortized(model, vol, batch_size=bs, chunk=chunk) for vol in x])


def prediction_mode(model, configuration: dict) -> str:
    """"3d", "2d", "2.5d" (a slice model) for a plans configuration and a network."""
    dim = int(configuration.get("dim", len(configuration.get("patch_size", [0, 0]))))
    if dim == 3:
        if _is_slice_model(model):
            raise ConfigError("a slice model cannot run in a 3D configuration")
        return "3d"
    return "2.5d" if _is_slice_model(model) else "2d"


def _run_mode(mode, model, fn, x, patch, mirror, common, bs, diffusion_model, configuration) -> torch.Tensor:
    """The sliding window of one prediction mode over x (C, Z, Y, X) -> (channels, Z, Y, X)."""
    c, z = x.shape[:2]
    if mode == "3d":
        return sliding_window_predict(fn, x, patch, mirror_axes=mirror, **common)
    if mode == "2d":
        return sliding_window_predict_batch(fn, x.transpose(0, 1), patch, mirror_axes=mirror,
                                            **common).transpose(0, 1)
    caps = capabilities_of(model)
    k = caps.slice_k
    if not diffusion_model and caps.slice_cache:
        # each slice's per-slice work once per tile position: a "3D" window spanning all z (a z-weight cancels out)
        return sliding_window_predict(_slice_volume_fn(model, bs), x, [z] + patch,
                                      mirror_axes=tuple(a + 1 for a in mirror),
                                      **{**common, "batch_size": 1, "batch_flips": False})
    idx = torch.from_numpy(neighbour_indices(z, k))
    view = x.transpose(0, 1)[idx].reshape(z, k * c, *x.shape[2:])  # (Z, K*C, Y, X)
    return sliding_window_predict_batch(_slice_view_fn(model, k, c), view, patch, mirror_axes=mirror,
                                        **{**common, "batch_flips": False}).transpose(0, 1)


@torch.inference_mode()
def predict_preprocessed(model: nn.Module, data: np.ndarray, configuration: dict, *, num_classes: int,
                         step: float = 0.5, mirroring: bool = True, device: str | torch.device = "cpu",
                         progress: Progress | None = None, diffusion: DiffusionOptions | None = None,
                         batch_size: int | None = None, return_uncertainty: bool = False, regions: bool = False,
                         threads=None):
    """Class probabilities (num_classes, Z, Y, X) float32 of a preprocessed case ``data`` (C, Z, Y, X); with
    ``regions`` one sigmoid probability per output channel (region) instead of the softmax.

    ``configuration`` is a plans configuration in its JSON form, as a run config holds it (``dim``,
    ``patch_size``; ``batch_size`` batches 2D slices). 3D configs use a 3D sliding window; 2D configs predict
    slices in batches with a 2D sliding window; slice models (2.5d) get for every z the K neighbouring slices
    (clamped at the edges). ``mirroring`` averages over flips of every
    spatial axis of the configuration. Diffusion networks sample per tile with ``diffusion`` options; with
    ``return_uncertainty`` the function returns ``(probabilities, uncertainty (Z, Y, X) or None)``. On a CPU a
    segmenter's calls take the mirrored copies of their tiles at once, in chunks (salseg.infer.threads), under the
    plan (streams x threads) that ``threads``, a :class:`salseg.infer.threads.ThreadTuner`, times on them (None:
    one stream at torch's count).
    """
    device = torch.device(device)
    model.eval()
    if data.ndim != 4:
        raise ValueError(f"data must be (C, Z, Y, X), got shape {data.shape}")
    mode = prediction_mode(model, configuration)
    patch = [int(p) for p in configuration["patch_size"]]
    if len(patch) != (3 if mode == "3d" else 2):
        raise ConfigError(f"patch_size {patch} does not fit a {mode} configuration")
    diffusion_model = _is_diffusion(model)
    opts = diffusion or DiffusionOptions()
    if diffusion_model and regions:
        raise ConfigError("diffusion networks denoise a one-hot class mask; they do not predict regions")
    if diffusion_model:
        opts.validate()
        fn = _diffusion_fn(model, opts, device)
        out_channels = num_classes + (1 if opts.uncertainty else 0)
    else:
        fn = _segmenter_fn(model)
        if device.type == "cpu":  # chunks of tiles, on the plan a ThreadTuner timed (salseg.infer.threads)
            fn = threads.wrap(fn) if threads is not None else _one_stream(fn)
        out_channels = num_classes
    bs = int(batch_size or (1 if mode == "3d" else max(1, int(configuration.get("batch_size", 2)))))
    mirror = (0, 1, 2) if mode == "3d" else (0, 1)
    common = dict(num_classes=out_channels, step=step, gaussian=True, batch_size=bs, device=device,
                  progress=progress, batch_flips=device.type == "cpu" and not diffusion_model)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    # mixed precision on CUDA for segmenters (as nnU-Net); tile outputs are accumulated in float32
    amp = torch.autocast("cuda") if device.type == "cuda" and not diffusion_model else contextlib.nullcontext()
    with amp:
        axes = mirror if mirroring is True else tuple(mirroring or ())  # a sequence: those axes only
        out = _run_mode(mode, model, fn, x, patch, axes, common, bs, diffusion_model,
                        configuration)
    uncertainty = None
    if diffusion_model:
        if opts.uncertainty:
            uncertainty = out[num_classes].cpu().numpy().astype(np.float32)
            out = out[:num_classes]
        probs = out.clamp_(0, 1)
        probs = probs / probs.sum(0, keepdim=True).clamp_min(1e-8)
    else:
        probs = torch.sigmoid(out) if regions else torch.softmax(out, dim=0)
    probs = probs.cpu().numpy().astype(np.float32, copy=False)
    return (probs, uncertainty) if return_uncertainty else probs


# ---------------------------------------------------------------------------------------------------------------
# Predictor: a result folder (one or more folds) applied to raw image files

def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None


class Predictor:
    """One network + plans configuration with the weights of one or more folds (ensembled by averaging softmax).

    Build it with :meth:`from_results`; run it with :meth:`predict_case` (arrays) or :meth:`predict_files`.
    """

    def __init__(self, model: nn.Module, state_dicts: list[dict], plans: Plans, config_name: str, run_config,
                 *, device: str | torch.device = "cpu", fold_names: list[str] | None = None):
        self.model = model
        self.state_dicts = state_dicts
        self.plans = plans
        self.config_name = config_name
        self.cfg = run_config
        self.device = resolve_device(device)
        self.fold_names = fold_names or [str(i) for i in range(len(state_dicts))]
        self.model.to(self.device).eval()
        self.source: dict | None = None     # how to rebuild this predictor elsewhere (from_source)
        self.sessions: list | None = None   # ONNX Runtime networks per fold (backend onnxruntime)
        self._tuner = None                  # the CPU plan (streams x threads), timed on the first calls (infer.threads)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_results(cls, root, dataset: str, network: str, module: str = "none", config: str = "2d",
                     folds=None, checkpoint: str = "final", device: str | torch.device = "cpu",
                     position: str | None = None) -> "Predictor":
        """Load ``config.json`` and ``checkpoint_<checkpoint>.pt`` of each fold; ``folds`` None = every trained fold.

        Everything is checked before anything is predicted; errors name the missing folder or file.
        """
        from salseg.run import load_trained

        t = load_trained(root, dataset, network, module, config, folds, checkpoint, position)
        p = cls(t.model, t.state_dicts, t.plans, t.cfg.config, t.cfg, device=device, fold_names=t.fold_names)
        p.source = {"root": str(root), "dataset": dataset, "network": network, "module": module, "config": config,
                    "folds": folds, "checkpoint": checkpoint, "device": str(device), "position": position}
        return p

    @classmethod
    def from_model(cls, path, folds=None, checkpoint: str = "final", device: str | torch.device = "cpu",
                   backend: str = "torch") -> "Predictor":
        """A model from anywhere (salseg.run.package.load_model): a package zip or folder, an experiment folder or
        a fold folder; no data root. ``backend="onnxruntime"`` runs the package's ONNX graphs instead of torch."""
        from salseg.infer.onnx_backend import check_backend, onnx_networks
        from salseg.run.package import is_package, read_package, load_package, load_model

        if backend != "torch" and str(device) == "auto":
            device = "cpu"  # ONNX Runtime runs here on the CPU (the onnxruntime wheel salseg[onnx] installs)
        check_backend(backend, resolve_device(device))
        if backend == "torch" or not is_package(path):
            t = load_model(path, folds, checkpoint, "torch")  # a result folder: onnx_networks refuses it below
            pkg = None
        else:  # the graphs and configs only: the weights are neither read nor hashed
            pkg = read_package(path, backend)
            t = load_package(pkg, folds)
        p = cls(t.model, t.state_dicts, t.plans, t.cfg.config, t.cfg, device=device, fold_names=t.fold_names)
        p.source = {"model": str(path), "folds": folds, "checkpoint": checkpoint, "device": str(device),
                    "backend": backend}
        if backend != "torch":
            p.sessions = onnx_networks(pkg, path, p.fold_names, p.model)
        return p

    @classmethod
    def from_source(cls, source: dict) -> "Predictor":
        """Rebuild a predictor from its ``source`` (how a Ray worker gets the driver's model)."""
        if "model" in source:  # from_model's first parameter is the path
            return cls.from_model(source["model"], **{k: v for k, v in source.items() if k != "model"})
        return cls.from_results(**source)

    @property
    def thread_tuner(self):
        """The plan choice (streams x threads) of a CPU prediction with the torch backend (salseg.infer.threads),
        else None."""
        if self.device.type != "cpu" or self.sessions is not None or self.is_diffusion:
            return None
        if self._tuner is None:
            from salseg.infer.threads import ThreadTuner

            self._tuner = ThreadTuner()
        return self._tuner

    @property
    def is_diffusion(self) -> bool:
        return _is_diffusion(self.model)

    @property
    def label_values(self) -> list[int]:
        return list(self.cfg.label_values)

    @property
    def num_classes(self) -> int:
        return int(self.cfg.num_classes)

    # -- prediction ---------------------------------------------------------------------------------------------
    def predict_preprocessed_case(self, data: np.ndarray, *, step: float = 0.5, mirroring: bool = True,
                                  diffusion: DiffusionOptions | None = None, progress: Progress | None = None):
        """(probabilities (K, Z', Y', X') averaged over folds, uncertainty or None) of a preprocessed case."""
        conf = self.plans.configuration(self.config_name).to_dict()  # predict_preprocessed's JSON form
        total, unc_total = None, None
        for i, state in enumerate(self.state_dicts):
            model = self.model if self.sessions is None else self.sessions[i]
            if self.sessions is None:
                self.model.load_state_dict(state)
            probs, unc = predict_preprocessed(model, data, conf, num_classes=self.num_classes, step=step,
                                              mirroring=mirroring, device=self.device, progress=progress,
                                              diffusion=diffusion, return_uncertainty=True,
                                              regions=self.cfg.labels.has_regions, threads=self.thread_tuner)
            total = probs if total is None else total + probs
            if unc is not None:
                unc_total = unc if unc_total is None else unc_total + unc
        n = len(self.state_dicts)
        return total / n, (unc_total / n if unc_total is not None else None)

    def predict_case(self, image_files, *, step: float = 0.5, mirroring: bool = True,
                     diffusion: DiffusionOptions | None = None, progress: Progress | None = None):
        """Read and preprocess one case -> (probabilities on the preprocessed grid, properties, uncertainty);
        ``progress`` follows the sliding-window tiles of the case."""
        from salseg.dataset.io import read_images
        from salseg.preprocess import preprocess_case

        from salseg.infer.inputs import case_id_of

        data, props = read_images(image_files)
        pdata, _, properties = preprocess_case(data, props, self.plans, self.config_name,
                                               case_id=case_id_of(Path(image_files[0])))
        probs, unc = self.predict_preprocessed_case(pdata, step=step, mirroring=mirroring, diffusion=diffusion,
                                                    progress=progress)
        return probs, properties, unc

    def predict_files(self, inputs, out_dir, *, step: float = 0.5, mirroring: bool = True,
                      save_probabilities: bool = False, diffusion: DiffusionOptions | None = None,
                      progress: Progress | None = None, overwrite: bool = False, resume: bool = False,
                      num_parts: int = 1, part_id: int = 0, executor: str = "local", address: str | None = None,
                      ray_num_cpus: int | None = None) -> "Written":
        """Predict every case of ``inputs`` (a folder of ``<case>_0000<ending>`` files, for a one-channel model also
        ``<case><ending>``, or a list of per-case lists of channel files) into ``out_dir/<case><ending>``. All
        inputs are validated before anything is written; files already in ``out_dir`` are replaced only with
        ``overwrite``, a raw dataset folder never
        (:func:`salseg.infer.inputs.check_outputs`). The folder is locked while predicting; temporary files a killed
        run left there are removed.

        Large cohorts (salseg.infer.distributed): ``num_parts``/``part_id`` predict a deterministic share of the
        cases; ``resume`` skips cases whose outputs are all there (and replaces a case's partial outputs);
        ``executor="ray"`` spreads the cases over Ray (``address``: a cluster), recording failed cases while the
        others finish. Returns the written files, with ``skipped`` and ``failed`` ((case, error) pairs)."""
        from salseg.fileio import clean_temp_files
        from salseg.infer.distributed import EXECUTORS, part_of, predict_on_ray, split_finished
        from salseg.infer.inputs import check_outputs, collect_cases, output_files, validate_cases
        from salseg.lock import folder_lock

        if not 0 < step <= 1:
            raise ConfigError(f"--step must be in (0, 1], got {step}")
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
        if address and executor != "ray":
            raise ConfigError("--address is for the Ray executor; add --executor ray")
        if diffusion is not None:
            diffusion.validate()
        cases = part_of(collect_cases(inputs, self.cfg.file_ending, self.cfg.in_channels), num_parts, part_id)
        out_dir = Path(out_dir)
        unc = diffusion is not None and diffusion.uncertainty

        def outputs(cs):
            return output_files(out_dir, cs, self.cfg.file_ending, save_probabilities, unc)

        done = []
        if resume:
            cases, done = split_finished(cases, lambda c: outputs([c]))
        validate_cases(cases, self.cfg.in_channels, expected_ndim(self.plans, self.config_name))
        check_outputs(out_dir, cases, outputs(cases), overwrite or resume)
        with folder_lock(out_dir, f"prediction folder {out_dir}"):
            clean_temp_files(out_dir)
            if executor == "ray":
                kwargs = dict(step=step, mirroring=mirroring, save_probabilities=save_probabilities,
                              diffusion=diffusion, progress=None)
                written, failed = predict_on_ray(type(self).from_source, self.source, cases, out_dir, kwargs,
                                                 address=address, num_cpus=ray_num_cpus, progress=progress)
            else:
                written, failed = self._predict_into(cases, out_dir, step, mirroring, save_probabilities, diffusion,
                                                     progress), []
        return Written(written, skipped=len(done), failed=failed)

    def _predict_into(self, cases, out_dir: Path, step, mirroring, save_probabilities, diffusion, progress) -> list:
        from salseg.infer.export import export_prediction
        from salseg.infer.threads import torch_threads
        from salseg.safepath import inside

        written = []
        for i, (case_id, files) in enumerate(cases):
            if progress is not None:
                progress("predicting cases", i, len(cases))
            probs, properties, unc = self.predict_case(files, step=step, mirroring=mirroring, diffusion=diffusion,
                                                       progress=progress)
            out = inside(out_dir, out_dir / f"{case_id}{self.cfg.file_ending}", "output file")
            with torch_threads(self.thread_tuner.export_threads if self.thread_tuner else None):  # the windows' plan
                export_prediction(probs, properties, self.label_values, out, save_probabilities=save_probabilities,
                                  uncertainty=unc if diffusion is not None and diffusion.uncertainty else None,
                                  device=self.device, spec=self.cfg.labels)
            written.append(out)
        if progress is not None:
            progress("predicting cases", len(cases), len(cases))
        return written


class Written(list):
    """The files a prediction wrote, with ``skipped`` (cases already complete, ``resume``) and ``failed``
    ((case, error line) pairs of cases that failed on Ray while the others finished)."""

    def __init__(self, files=(), skipped: int = 0, failed=()):
        super().__init__(files)
        self.skipped = skipped
        self.failed = list(failed)


def expected_ndim(plans: Plans, config_name: str) -> int | None:
    """2 or 3: the dimensionality of the dataset's raw images, as far as the plans tell (None = unknown)."""
    from salseg.dataset.io import SPACING_2D_Z

    if "is_2d" in plans.extra:
        return 2 if plans.extra["is_2d"] else 3
    med = plans.original_median_spacing
    if med and len(med) == 3:
        return 2 if float(med[0]) == SPACING_2D_Z else 3
    if config_name == "3d_fullres":
        return 3
    return None
