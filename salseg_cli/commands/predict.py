"""``salseg predict DATASET NETWORK -i IN -o OUT`` (or ``--model MODEL.zip|FOLDER``): segment new images with
trained folds; ``--continue``, ``--num-parts/--part-id`` and ``--executor ray`` for large cohorts."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg.plans import DEFAULT_NETWORK_HELP
from salseg_cli.app import (ARGUMENT, CONFIG_HELP, app, console, err_console, fail, network_params, one_network,
                            root_dir, run_configuration)
from salseg_cli.progress import rich_progress

NETWORK, NETWORK_OPTION = network_params(f"Network of the result folder (`salseg list networks`); "
                                         f"{DEFAULT_NETWORK_HELP}, as train.")


def _network(dataset: str, network: str | None, network_option: str | None) -> str:
    """The NETWORK argument or -n; none given: as train, the network the plans were sized for (unet without
    plans)."""
    from salseg.errors import ConfigError
    from salseg.plans import default_network

    network = one_network(network, network_option, required=False)
    if network is not None:
        return network
    try:
        return default_network(root_dir(), dataset)
    except ConfigError:
        return "unet"


def fold_specs(values: list[str]) -> list[str] | None:
    from salseg.run.folds import parse_fold_spec

    if not values:
        return None  # every trained fold (and seed)
    out = []
    for v in values:
        for part in v.replace(",", " ").split():
            if parse_fold_spec(part) is None:
                fail(f"-f expects fold numbers, 'all' or seed folders such as 0_seed1, got {part!r}")
            out.append(part)
    return out


@app.command("predict", aliases={"--fold": "--folds"},
             deprecated_aliases={"-d": ARGUMENT, "--dataset": ARGUMENT})
def predict_command(
    dataset: Optional[str] = typer.Argument(None, help="Dataset the model was trained on: name, full name or id "
                                            "(not with --model)."),
    network: Optional[str] = NETWORK,
    input: Path = typer.Option(..., "--input", "-i", help="Folder of <case>_0000<ending> images (or one image); "
                               "a one-channel model also reads <case><ending>."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the label maps (<case><ending>)."),
    network_option: Optional[str] = NETWORK_OPTION,
    module: str = typer.Option("none", "--module", "-m", help="Context module of the result folder."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP, show_default=False),
    folds: List[str] = typer.Option([], "--folds", "-f", help="Folds to ensemble: -f 0 1 2 3 4, or all "
                                    "(the fold trained on all cases); a seed S > 0 run as 0_seed<S>. "
                                    "Default: every trained fold folder (every seed)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final or best."),
    step: float = typer.Option(0.5, "--step", min=0.05, max=1.0, help="Sliding-window step as a patch fraction."),
    no_mirroring: bool = typer.Option(False, "--no-mirroring", help="Disable mirroring test-time augmentation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="Also write <case>.npz with the class probabilities."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion networks: ddim, ddpm or dpm-solver "
                                          "(default: the network's; ddim, ddpm for medsegdiff's official presets)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion networks: sampling steps."),
    ensemble: Optional[int] = typer.Option(None, "--ensemble", min=1,
                                           help="Diffusion networks: samples averaged per case (default 1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Diffusion networks: sampling seed (default 0)."),
    fusion: Optional[str] = typer.Option(None, "--fusion", help="Diffusion networks: how the ensemble's samples "
                                         "are combined: mean (default), staple or official."),
    save_uncertainty: bool = typer.Option(False, "--save-uncertainty",
                                          help="Diffusion networks: write <case>_uncertainty (std over samples)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace label maps already in -o OUTPUT (without it "
                                   "such a folder is refused; a raw dataset folder always is)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    position: str = typer.Option("head", "--module-position",
                                 help="Module position of the result folder: head, bottleneck, skip or parallel."),
    model: Optional[Path] = typer.Option(None, "--model", help="Predict with a model package (export-model's zip "
                                         "or its folder), an experiment folder or a fold folder instead of "
                                         "DATASET NETWORK; no data root needed."),
    backend: str = typer.Option("torch", "--backend", help="torch, or onnxruntime (a package exported with "
                                "--onnx; CPU)."),
    resume: bool = typer.Option(False, "--continue", help="Skip cases whose outputs are all in -o OUTPUT (a "
                                "case with only some of its files is predicted again)."),
    num_parts: int = typer.Option(1, "--num-parts", min=1, help="Split the cases into N deterministic parts ..."),
    part_id: int = typer.Option(0, "--part-id", min=0, help="... and predict part I (0..N-1)."),
    executor: str = typer.Option("local", "--executor", help="local, or ray: one Ray task per case; failed "
                                 "cases are reported and the others finish (exit 1 at the end)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray)."),
    ensemble_models: List[str] = typer.Option([], "--ensemble-models", help="More models of DATASET to average with "
                                              "this one: NETWORK[:MODULE[:CONFIG]], e.g. unet:stack:2.5d (same "
                                              "-f folds and --checkpoint; probabilities averaged on the image grid)."),
    rules: Optional[Path] = typer.Option(None, "--rules", help="postprocessing.json (find-best) to apply to the "
                                         "label maps; with --model it replaces the package's rules."),
    no_postprocessing: bool = typer.Option(False, "--no-postprocessing", help="With --model: do not apply the "
                                           "package's postprocessing rules (write the raw prediction)."),
) -> None:
    """Segment the images in -i INPUT with the trained folds of DATASET's NETWORK; label maps go to -o OUTPUT:
    salseg predict ACDC mtunet --module lstmsa -i scans/ -o out/."""
    from salseg.infer.inputs import collect_cases, naming
    from salseg.infer.options import diffusion_options
    from salseg.infer.postprocess import predict_postprocessed
    from salseg.infer.predictor import Predictor

    if rules is not None and no_postprocessing:
        fail("--rules and --no-postprocessing contradict each other; give one")
    if checkpoint not in ("final", "best"):
        fail(f"--checkpoint must be final or best, got {checkpoint!r}")
    if backend not in ("torch", "onnxruntime"):
        fail(f"--backend must be torch or onnxruntime, got {backend!r}")
    if model is not None:
        if dataset is not None or network is not None or network_option is not None:
            fail("--model replaces DATASET NETWORK; give one or the other")
        pp, pp_source = _package_rules(model, rules, no_postprocessing)
        predictor = Predictor.from_model(model, fold_specs(folds), checkpoint=checkpoint, device=device,
                                         backend=backend)
    else:
        if dataset is None:
            fail("missing DATASET (or --model MODEL.zip|FOLDER)")
        if backend != "torch":
            fail("--backend onnxruntime runs a package's ONNX graphs: give --model MODEL.zip (export-model --onnx)")
        if no_postprocessing:
            fail("--no-postprocessing turns off a package's rules (--model); a prediction from DATASET applies "
                 "rules only with --rules FILE, so it writes the raw prediction already")
        pp, pp_source = _package_rules(None, rules, no_postprocessing)
        predictor = Predictor.from_results(root_dir(), dataset, _network(dataset, network, network_option), module,
                                           run_configuration(config, module), fold_specs(folds), checkpoint=checkpoint, device=device,
                                           position=position)
    diffusion = diffusion_options(predictor.cfg.network, predictor.is_diffusion, sampler=sampler, steps=steps,
                                  ensemble=ensemble, seed=seed, fusion=fusion, uncertainty=save_uncertainty)
    inputs = [[input]] if input.is_file() else input
    if ensemble_models:
        if model is not None or resume or num_parts > 1 or executor != "local" or backend != "torch":
            fail("--ensemble-models works with DATASET NETWORK on this machine (not with --model, --continue, "
                 "--num-parts, --executor or --backend)")
        _predict_models(predictor, ensemble_models, rules, inputs, output, folds, checkpoint, device, step,
                        not no_mirroring, save_probabilities, overwrite, quiet, diffusion)
        return
    options = dict(step=step, mirroring=not no_mirroring, save_probabilities=save_probabilities, diffusion=diffusion,
                   overwrite=overwrite, resume=resume, num_parts=num_parts, part_id=part_id, executor=executor,
                   address=address)
    with rich_progress(enabled=not quiet) as progress:
        if pp is not None:
            written = predict_postprocessed(predictor, pp, inputs, output, rules_source=pp_source,
                                            progress=progress, **options)
        else:
            written = predictor.predict_files(inputs, output, progress=progress, **options)
    skipped = f"; skipped {written.skipped} case(s) already complete" if resume else ""
    part = f" (part {part_id} of {num_parts})" if num_parts > 1 else ""
    console.print(f"wrote {len(written)} label map(s) to {output}{part} (folds {', '.join(predictor.fold_names)}, "
                  f"checkpoint {checkpoint}, device {predictor.device}, backend {backend}){skipped}",
                  highlight=False, soft_wrap=True, markup=False)
    if pp is not None or model is not None:
        console.print(_postprocessing_line(pp, pp_source, model, rules is not None, no_postprocessing),
                      highlight=False, soft_wrap=True, markup=False)
    if input.is_dir():
        cases = collect_cases(input, predictor.cfg.file_ending, predictor.cfg.in_channels)
        console.print(f"inputs named {naming(cases)}", highlight=False, markup=False)
    if written.failed:
        for case, error in written.failed:
            err_console.print(f"failed: {case}: {error}", highlight=False, soft_wrap=True, markup=False)
        fail(f"{len(written.failed)} case(s) failed (the others finished); rerun with --continue to retry them",
             code=1)


def _package_rules(model, rules, no_postprocessing):
    """(rules, the file they come from): --rules FILE, else a package's own rules (unless --no-postprocessing)."""
    from salseg.infer.postprocess import read_rules
    from salseg.run.package import RULES_FILE, package_rules

    if rules is not None:
        return read_rules(rules), str(rules)
    if model is None or no_postprocessing:
        return None, None
    found = package_rules(model)
    return found, (f"{model}:{RULES_FILE}" if found is not None else None)


def _postprocessing_line(pp, source, model, explicit, no_postprocessing) -> str:
    if pp is not None:
        hint = "" if explicit else "; --no-postprocessing writes the raw prediction"
        return f"postprocessing: {pp.describe()} (from {source}{hint})"
    if no_postprocessing:
        return "postprocessing: off (--no-postprocessing)"
    return f"postprocessing: none ({model} carries no postprocessing rules; --rules FILE applies some)"


def _predict_models(predictor, specs, rules, inputs, output, folds, checkpoint, device, step, mirroring,
                    save_probabilities, overwrite, quiet, diffusion) -> None:
    """``--ensemble-models`` / ``--rules``: several models averaged on the image grid, then postprocessed."""
    from salseg.infer.ensemble_predict import parse_model_spec, predict_models
    from salseg.infer.postprocess import read_rules
    from salseg.infer.predictor import Predictor

    if diffusion is not None:
        fail("diffusion sampling options do not combine with --ensemble-models or --rules")
    pp = read_rules(rules) if rules is not None else None
    members = [predictor] + [Predictor.from_results(root_dir(), predictor.cfg.dataset, *parse_model_spec(
        spec, predictor.config_name), fold_specs(folds), checkpoint=checkpoint, device=device) for spec in specs]
    with rich_progress(enabled=not quiet) as progress:
        written = predict_models(members, inputs, output, step=step, mirroring=mirroring,
                                 save_probabilities=save_probabilities, rules=pp, overwrite=overwrite,
                                 progress=progress)
    names = ", ".join(f"{m.cfg.network}__{m.cfg.module}__{m.config_name}" for m in members)
    console.print(f"wrote {len(written)} label map(s) to {output} (mean of {names}; checkpoint {checkpoint}; "
                  f"postprocessing: {pp.describe() if pp else 'none'})", highlight=False, soft_wrap=True)
