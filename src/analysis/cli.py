"""The ``analysis`` command line: thin commands over the library.

Bad input (:class:`analysis.errors.AnalysisError`) ends a command with one line on stderr
(``error: <file>: <problem>``) and exit code 2, never a traceback; any other exception is a bug
and ends it with one ``internal error:`` line and exit code 1 (``--verbose`` prints the
traceback). Outputs are written atomically, so a failed command leaves none behind.

Option defaults are the library's, spelled out as literals: the library (torch, pandas,
scipy) is imported only when a command runs, so that ``analysis --help`` stays fast.
tests/test_cli_defaults.py compares every option's default with the library's.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from analysis.errors import AnalysisError, DataError, InputFileError, ParameterError

app = typer.Typer(
    help="Find and measure synaptic vesicles in cryo-electron tomograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit code for bad input (:class:`analysis.errors.AnalysisError`: a file that cannot be used
#: as given, a refused option value).
EXIT_BAD_INPUT = 2
#: Exit code for anything else: a bug (one line; ``--verbose`` adds the traceback).
EXIT_INTERNAL_ERROR = 1

# Options shared by several commands, declared once.
TomogramArg = Annotated[Path, typer.Argument(help="Tomogram: MRC, TIFF or OME-Zarr.")]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        help="Checkpoint (.pt), a Keras .h5, 'cryovesnet' (published; fetched on first use) "
        "or 'shipped-2d'; default: the shipped network."
    ),
]
VoxelSizeOpt = Annotated[
    float | None, typer.Option(help="Override the voxel size in the header (nm).")
]
TileOpt = Annotated[
    int | None,
    typer.Option(
        help="Tile edge in voxels at the network's voxel size; default: tiles planned to the "
        "volume (up to 96×192×192, 16 voxels shared)."
    ),
]
OverlapOpt = Annotated[
    float | None,
    typer.Option(help="Fraction of a tile shared with a neighbour (with --tile; default 0.25)."),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(help="Network arithmetic: auto (bfloat16 where native), float32, bfloat16."),
]
TtaOpt = Annotated[
    str, typer.Option(help="Test-time augmentation: none, or flips (4 views in xy).")
]
BatchSizeOpt = Annotated[
    int | None, typer.Option(help="Tiles per forward pass (default: 1 planned, 2 given tiles).")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
InvertOpt = Annotated[
    bool, typer.Option(help="Invert the contrast (for tomograms with membranes bright).")
]
MatchSpectrumOpt = Annotated[
    bool | None,
    typer.Option(
        "--match-spectrum/--no-match-spectrum",
        help="Match the tomogram's amplitude spectrum to the network's training data first. "
        "Default: where the network's varied training spectra are known (the shipped 3-D "
        "network), not otherwise (e.g. --model cryovesnet or shipped-2d, adapted networks).",
        show_default=False,
    ),
]
OutFolderOpt = Annotated[Path, typer.Option(help="Output folder (created if missing).")]


def _matching(match_spectrum: bool | None) -> bool | str:
    """--match-spectrum, --no-match-spectrum or neither (the library's default)."""
    if match_spectrum is None:
        from analysis.inference.spectrum import DEFAULT_MATCH

        return DEFAULT_MATCH
    return match_spectrum


def _check_training_spectra(model, match_spectrum: bool | None) -> None:
    """Refuse --match-spectrum at once for a network without recorded training spectra."""
    if match_spectrum is not True:
        return
    from analysis.inference.spectrum import reference_envelope
    from analysis.models import Predictor

    reference_envelope(Predictor.load(model).checkpoint)


def _tiling(tile: int | None, overlap: float | None) -> dict:
    """The tile options of predict/segment: planned tiles unless --tile is given."""
    if tile is None and overlap is not None:
        raise typer.BadParameter(
            "needs --tile (planned tiles choose their own overlap)", param_hint="--overlap"
        )
    return {"tile": tile or "auto", "overlap": overlap}


def _output_folder(out: Path) -> None:
    """Create the ``--out`` folder of a command that writes several files."""
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "is a file; --out takes a folder")
    out.mkdir(parents=True, exist_ok=True)


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Report each step and its time on stderr (and an internal error's traceback).",
        ),
    ] = False,
) -> None:
    """Find and measure synaptic vesicles in cryo-electron tomograms."""
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


@app.command()
def info(
    tomogram: TomogramArg,
    voxel_size_nm: VoxelSizeOpt = None,
) -> None:
    """Print shape (z, y, x), voxel size and intensity range of a tomogram, and how its file
    was read: format, data type and signedness, axis order, extended header, origin, and where
    the voxel size came from."""
    from analysis.io import read_tomogram

    tomo = read_tomogram(tomogram, voxel_size_nm=voxel_size_nm, mmap=True)
    data = tomo.data
    typer.echo(f"file            {tomogram}")
    typer.echo(f"shape (z, y, x) {tomo.shape}")
    typer.echo(f"voxel_size_nm   {tomo.voxel_size_nm:.4g}")
    extent = tuple(round(n * tomo.voxel_size_nm, 1) for n in tomo.shape)
    typer.echo(f"extent_nm       {extent}")
    typer.echo(f"min/mean/max    {data.min():.4g} / {data.mean():.4g} / {data.max():.4g}")
    for key, decision in tomo.decisions.items():
        typer.echo(f"{key:15s} {decision}")


@app.command()
def mod2labels(
    model: Annotated[Path, typer.Argument(help="IMOD model (.mod).")],
    like: Annotated[
        Path, typer.Option(help="Tomogram the model was drawn on (shape, voxel size).")
    ],
    out: Annotated[Path, typer.Option(help="Output label volume (.mrc).")],
    grouping: Annotated[
        str, typer.Option(help="How closed contours form vesicles: auto, object, surface, overlap.")
    ] = "auto",
    membrane_out: Annotated[
        Path | None, typer.Option(help="Also write the open contours (membrane) as a mask.")
    ] = None,
    model_voxel_size_nm: Annotated[
        float | None, typer.Option(help="Voxel size the model was drawn at, if it does not say.")
    ] = None,
) -> None:
    """Rasterise an IMOD model into a label volume (one id per vesicle), as imodmop does."""
    from analysis.io import read_annotation, read_tomogram, write_mrc

    tomo = read_tomogram(like, mmap=True, check_finite=False)
    ann = read_annotation(model, tomo, grouping=grouping, model_voxel_size_nm=model_voxel_size_nm)
    write_mrc(out, ann.labels, tomo.voxel_size_nm, origin_angstrom=tomo.origin_angstrom)
    if membrane_out is not None:
        write_mrc(
            membrane_out, ann.membrane, tomo.voxel_size_nm, origin_angstrom=tomo.origin_angstrom
        )
    typer.echo(f"{out}: {ann.n_vesicles} vesicles")


@app.command()
def synth(
    outdir: Annotated[Path, typer.Argument(help="Folder for the tomograms and their truth.")],
    n: Annotated[int, typer.Option(help="How many tomograms.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first tomogram (then seed+1, …).")] = 1,
    name: Annotated[
        str, typer.Option(help="File stem; tomograms are NAME_01, NAME_02, …")
    ] = "synthetic",
    shape: Annotated[tuple[int, int, int], typer.Option(help="Volume shape z y x (voxels).")] = (
        128,
        256,
        256,
    ),
    voxel_size_nm: Annotated[float, typer.Option(help="Voxel size (nm).")] = 2.2,
    n_vesicles: Annotated[
        int, typer.Option(help="Synaptic vesicles to place (per 128x256x256).")
    ] = 160,
    snr: Annotated[float, typer.Option(help="Signal-to-noise ratio of each tilt image.")] = 0.5,
    defocus_um: Annotated[float, typer.Option(help="Defocus (µm, negative = underfocus).")] = -8.0,
    varied: Annotated[
        bool,
        typer.Option(
            help="Draw specimen and imaging per tomogram (analysis.synthetic.variety); "
            "only --shape and --voxel-size-nm of the output apply."
        ),
    ] = False,
) -> None:
    """Write synthetic synapse tomograms with exact truth and simulated IMOD annotations.

    Per tomogram: NAME.mrc, NAME_labels.mrc, NAME_manual.mod, NAME_vesicles.csv,
    NAME_az_mask.mrc, NAME_region_mask.mrc, NAME_filaments.csv. With --varied: NAME.mrc,
    NAME_labels.mrc, NAME_vesicles.csv and NAME_conditions.json (what was drawn).
    """
    from tqdm import tqdm

    from analysis.synthetic import Microscope, make_synapse, scaled_geometry, write_synapse

    if not outdir.parent.exists():
        raise InputFileError(outdir, f"parent folder {outdir.parent} does not exist")
    if varied:
        from analysis.synthetic import variety

        for i in tqdm(range(n), desc="varied synthetic tomograms", disable=n == 1):
            stem = f"{name}_{i + 1:02d}"
            cond = variety.draw_conditions(seed + i, tuple(shape), voxel_size_nm)
            synapse = variety.make_varied_synapse(seed + i, cond)
            variety.write_varied_synapse(synapse, outdir, stem)
            typer.echo(f"{outdir / stem}.mrc")
        return
    geometry = scaled_geometry(shape, voxel_size_nm, n_vesicles)
    microscope = Microscope(snr=snr, defocus_um=defocus_um)
    for i in tqdm(range(n), desc="synthetic tomograms", disable=n == 1):
        stem = f"{name}_{i + 1:02d}"
        write_synapse(make_synapse(geometry, microscope, seed=seed + i), outdir, stem)
        typer.echo(f"{outdir / stem}.mrc")


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Argument(help="Checkpoint to write (.pt); updated every epoch.")],
    tomogram: Annotated[
        list[Path] | None, typer.Option(help="Training tomogram (repeat; pairs with --labels).")
    ] = None,
    labels: Annotated[
        list[Path] | None, typer.Option(help="Its labels: label MRC or IMOD .mod (repeat).")
    ] = None,
    region: Annotated[
        list[Path] | None,
        typer.Option(
            help="Annotated region per training tomogram (mask MRC or .mod outline); "
            "voxels outside are ignored in the loss. Give none or one per --tomogram."
        ),
    ] = None,
    val_tomogram: Annotated[list[Path] | None, typer.Option(help="Validation tomogram.")] = None,
    val_labels: Annotated[list[Path] | None, typer.Option(help="Validation labels.")] = None,
    synthetic: Annotated[
        bool, typer.Option(help="Train on the cached synthetic sample data set.")
    ] = False,
    quick: Annotated[
        bool, typer.Option(help="With --synthetic: the small quick data set.")
    ] = False,
    varied: Annotated[
        int,
        typer.Option(
            help="With --synthetic: add this many tomograms of varied specimen and imaging "
            "(and a twentieth as many, at least 1, to validation)."
        ),
    ] = 0,
    faint: Annotated[
        int,
        typer.Option(
            help="With --synthetic: add this many tomograms of the faint tier (varied draws "
            "with large alignment errors whose vesicles are faint but there; see "
            "analysis.synthetic.variety.draw_faint_conditions)."
        ),
    ] = 0,
    augment_level: Annotated[
        str, typer.Option(help="Augmentation: physics or robust (see analysis.augment).")
    ] = "robust",
    epochs: Annotated[int, typer.Option()] = 30,
    steps_per_epoch: Annotated[int, typer.Option()] = 60,
    val_every: Annotated[
        int, typer.Option(help="Validate every this many epochs (and after the last).")
    ] = 1,
    batch_size: Annotated[int, typer.Option()] = 4,
    patch_size: Annotated[int, typer.Option(help="Cubic patch edge (voxels).")] = 48,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    depth: Annotated[int, typer.Option(help="U-Net depth (new models).")] = 3,
    base_channels: Annotated[int, typer.Option(help="U-Net width (new models).")] = 16,
    dims: Annotated[
        int, typer.Option(help="3, or 2 for a slice-by-slice network (new models).")
    ] = 3,
    seed: Annotated[int, typer.Option()] = 0,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from OUT if it exists.")] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune from this checkpoint, a Keras .h5, or 'cryovesnet' (published)."
        ),
    ] = None,
    distill_weight: Annotated[
        float,
        typer.Option(
            help="With --init-from: keep the probabilities near the starting network's "
            "(weight of that cross-entropy; 0 = off). Against forgetting what it could do."
        ),
    ] = 0.0,
    anchor_weight: Annotated[
        float,
        typer.Option(
            help="With --init-from: after each step move the weights this × the learning rate "
            "of the way back to the starting network's (L2-SP; 0 = off)."
        ),
    ] = 0.0,
) -> None:
    """Train a U-Net on annotated tomograms (or the synthetic set); resumable."""
    from analysis import train as tr
    from analysis.models import UNetConfig

    _check_train_options(augment_level, distill_weight, anchor_weight, init_from)
    if resume and out.exists():
        _check_resumable(out)
    if synthetic:
        from analysis.synthetic import sample_dataset
        from analysis.synthetic.variety import varied_dataset

        data = sample_dataset(quick=quick)
        if varied:
            n_val = max(1, varied // 20)
            data["train"] += varied_dataset("train", varied, quick=quick)
            data["validation"] += varied_dataset("validation", n_val, quick=quick)
        if faint:
            data["train"] += varied_dataset("faint", faint, quick=quick)
        pairs = [(f["tomogram"], f["labels"]) for f in data["train"]]
        val_pairs = [(f["tomogram"], f["labels"]) for f in data["validation"]]
    else:
        tomogram, labels = tomogram or [], labels or []
        if not tomogram or len(tomogram) != len(labels):
            raise ParameterError(
                "give --tomogram and --labels the same number of times (or --synthetic)"
            )
        pairs = list(zip(tomogram, labels, strict=True))
        val_pairs = list(zip(val_tomogram or [], val_labels or [], strict=True))
    regions = list(region or [])
    if regions and len(regions) != len(pairs):
        raise ParameterError("give --region once per --tomogram, or not at all")
    regions = regions or [None] * len(pairs)
    normalisation = None
    init_name = None
    if init_from is not None:  # the volumes are normalised as the network was trained
        from analysis.models import load

        init_name = str(init_from)
        init_from = load(init_from)
        normalisation = init_from[1]["normalisation"]
    loaded = [
        tr.volume_from_files(t, lab, region=reg, normalisation=normalisation)
        for (t, lab), reg in zip(pairs, regions, strict=True)
    ]
    val = [tr.volume_from_files(t, lab, normalisation=normalisation)[0] for t, lab in val_pairs]
    sizes = {round(v, 4) for _, v in loaded}
    if len(sizes) != 1:
        raise ParameterError(
            f"training tomograms have different voxel sizes {sorted(sizes)} nm; rescale them"
        )
    config = tr.TrainConfig(
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        seed=seed,
        device=device,
        augment_level=augment_level,
        val_every=val_every,
        distill_weight=distill_weight,
        anchor_weight=anchor_weight,
    )
    description = {
        "train": [Path(t).name for t, _ in pairs],
        "validation": [Path(t).name for t, _ in val_pairs],
        "labels": [Path(lab).name for _, lab in pairs],
        # how the network was made, for whoever reads the checkpoint (average-weights keeps
        # each part's): a synthetic file name does not say which generator version drew it
        "command": _invocation(),
    }
    description.update(_start_record(init_name, init_from, out if resume else None))
    if synthetic:
        from analysis.synthetic import GENERATOR_VERSION
        from analysis.synthetic.variety import VARIED_VERSION

        description["generator"] = f"analysis.synthetic v{GENERATOR_VERSION}" + (
            f" and analysis.synthetic.variety v{VARIED_VERSION}" if varied or faint else ""
        )
        if faint:
            description["generator"] += f" (faint tier: {faint})"
    _, history = tr.train(
        [v for v, _ in loaded],
        val,
        out,
        voxel_size_nm=loaded[0][1],
        model_config=UNetConfig(depth=depth, base_channels=base_channels, dims=dims),
        config=config,
        data=description,
        resume=resume,
        init_from=init_from,
        normalisation=normalisation,
    )
    if history:
        typer.echo(
            f"{out}: epoch {history[-1]['epoch']}, validation Dice {history[-1]['val_dice']:.4f}"
        )


def _check_train_options(augment_level: str, distill: float, anchor: float, init_from) -> None:
    """Refuse options that do not go together, before any data is read."""
    from analysis.augment import LEVELS

    if augment_level not in LEVELS:
        raise typer.BadParameter(
            f"one of {LEVELS}, not {augment_level!r}", param_hint="--augment-level"
        )
    if distill < 0 or anchor < 0:
        raise ParameterError("--distill-weight and --anchor-weight must be 0 or positive")
    if (distill or anchor) and init_from is None:
        raise ParameterError("--distill-weight and --anchor-weight need --init-from")


def _start_record(init_name: str | None, init_from, resumed: Path | None) -> dict:
    """What a checkpoint records of the network it was fine-tuned from: ``init_from`` (name,
    and SHA-256 of a file) and ``start`` (how that network was made, so that a chain of
    fine-tunings keeps its history). Resumed without ``--init-from``, what the run recorded."""
    if init_name is None:
        if resumed is None or not resumed.exists():
            return {}
        from analysis.models import read_checkpoint

        before = read_checkpoint(resumed).get("data") or {}
        return {key: before[key] for key in ("init_from", "start") if key in before}
    record = {"init_from": init_name}
    if Path(init_name).is_file():  # which bytes, as a shipped file changes between releases
        from analysis.models.keras import sha256

        record["init_from"] += f" (SHA-256 {sha256(init_name)[:12]})"
    if init_from[1].get("data"):
        record["start"] = init_from[1]["data"]
    return record


#: What a checkpoint needs for ``train --resume`` (analysis.train writes it every epoch); exported
#: weights (analysis.models.export_weights, the shipped networks) have the network only.
TRAINING_STATE_KEYS = ("epoch", "optimiser_state", "scheduler_state", "numpy_rng_state")


def _check_resumable(checkpoint: Path) -> None:
    """Refuse to resume from a checkpoint without training state, before any data is read."""
    from analysis.models import read_checkpoint

    state = read_checkpoint(checkpoint)
    if not all(key in state for key in TRAINING_STATE_KEYS):
        raise InputFileError(
            checkpoint,
            "holds a network without its training state (exported weights?), so --resume "
            "cannot continue it; fine-tune from it with --init-from and another output file",
        )


@app.command("average-weights")
def average_weights(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Two or more checkpoints fine-tuned from one network.")
    ],
    out: Annotated[Path, typer.Option(help="The averaged network (.pt).")],
) -> None:
    """Average the weights of networks fine-tuned from one parent (a model soup)."""
    from analysis.models import average_weights as average

    names = " ".join(str(c) for c in checkpoints)
    path = average(list(checkpoints), out, command=f"analysis average-weights {names} --out {out}")
    typer.echo(f"{path}: the mean of {len(checkpoints)} networks' weights")


@app.command()
def predict(
    tomogram: TomogramArg,
    out: Annotated[Path, typer.Option(help="Output probability map (float32 MRC).")],
    model: ModelOpt = None,
    voxel_size_nm: VoxelSizeOpt = None,
    tile: TileOpt = None,
    overlap: OverlapOpt = None,
    precision: PrecisionOpt = "auto",
    blend: Annotated[str, typer.Option(help="Blending window: gaussian, cosine, constant.")] = (
        "gaussian"
    ),
    tta: TtaOpt = "none",
    uncertainty: Annotated[
        Path | None, typer.Option(help="Also write the TTA variance map here (needs --tta).")
    ] = None,
    batch_size: BatchSizeOpt = None,
    max_rescale: Annotated[
        float, typer.Option(help="Refuse voxel sizes more than this factor from the network's.")
    ] = 3.0,
    invert: InvertOpt = False,
    match_spectrum: MatchSpectrumOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Vesicle probability map of a whole tomogram (memory-mapped, any size)."""
    from analysis.inference import predict_file
    from analysis.models import Predictor

    predict_file(
        tomogram,
        out,
        Predictor.load(model, device=device, precision=precision, tta=tta),
        voxel_size_nm=voxel_size_nm,
        uncertainty_path=uncertainty,
        **_tiling(tile, overlap),
        blend=blend,
        batch_size=batch_size,
        max_rescale=max_rescale,
        invert=invert,
        match_spectrum=_matching(match_spectrum),
        progress=not quiet,
    )
    typer.echo(f"{out}: probability map of {tomogram}")


@app.command()
def segment(
    tomogram: TomogramArg,
    out: OutFolderOpt,
    model: ModelOpt = None,
    voxel_size_nm: VoxelSizeOpt = None,
    probability: Annotated[
        bool, typer.Option(help="Also keep the probability map (STEM_probability.mrc).")
    ] = True,
    az_mask: Annotated[
        Path | None,
        typer.Option(help="Active-zone membrane (mask MRC or IMOD .mod) for Pyto labels."),
    ] = None,
    region_mask: Annotated[
        Path | None, typer.Option(help="Region (cytoplasm; mask MRC or IMOD .mod) for Pyto labels.")
    ] = None,
    threshold: Annotated[
        str, typer.Option(help="Probability threshold, or 'shell' (CryoVesNet's criterion).")
    ] = "0.5",
    min_radius_nm: Annotated[float, typer.Option(help="Smallest vesicle radius (nm).")] = 12.0,
    max_radius_nm: Annotated[
        float | None, typer.Option(help="Largest vesicle radius (nm); from the data by default.")
    ] = None,
    split: Annotated[
        str, typer.Option(help="Splitting of touching vesicles: watershed, threshold, none.")
    ] = "watershed",
    radius_from: Annotated[
        str, typer.Option(help="Sphere radius from the mask volume or the radial 'profile'.")
    ] = "mask",
    tile: TileOpt = None,
    overlap: OverlapOpt = None,
    precision: PrecisionOpt = "auto",
    tta: TtaOpt = "none",
    batch_size: BatchSizeOpt = None,
    invert: InvertOpt = False,
    auto_invert: Annotated[
        bool, typer.Option(help="Invert the contrast where the domain check finds it inverted.")
    ] = False,
    match_spectrum: MatchSpectrumOpt = None,
    check: Annotated[
        bool, typer.Option(help="Run the domain check and write STEM_check.json.")
    ] = True,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Find the vesicles of a tomogram: probability map, labels, table, IMOD model, Pyto labels,
    and the domain check (is the tomogram like the network's training data?)."""
    import pandas as pd

    from analysis.pipeline import segment_file

    if threshold != "shell":
        try:
            threshold = float(threshold)
        except ValueError:
            raise ParameterError(
                f"--threshold must be a number or 'shell', not {threshold!r}"
            ) from None
    _output_folder(out)
    paths = segment_file(
        tomogram,
        out,
        voxel_size_nm=voxel_size_nm,
        model=model,
        predictor_options=dict(device=device, precision=precision, tta=tta),
        write_probability=probability,
        az_mask=az_mask,
        region_mask=region_mask,
        predict_options=dict(
            **_tiling(tile, overlap),
            batch_size=batch_size,
            match_spectrum=_matching(match_spectrum),
            progress=not quiet,
        ),
        postprocess_options=dict(
            threshold=threshold,
            min_radius_nm=min_radius_nm,
            max_radius_nm=max_radius_nm,
            split=split,
            radius_from=radius_from,
        ),
        invert="auto" if auto_invert else invert,
        check=check,
    )
    if check:
        from analysis.inference.domain import DomainReport

        report = DomainReport.from_dict(json.loads(paths["check"].read_text()))
        if report.warnings or not quiet:  # --quiet keeps only what needs attention
            typer.echo(f"{report.summary()}: see {paths['check']}", err=True)
    table = pd.read_csv(paths["vesicles"])
    typer.echo(
        f"{tomogram}: {int(table['kept'].sum())} vesicles kept, "
        f"{int((~table['kept']).sum())} dropped; outputs in {out}"
    )


@app.command()
def adapt(
    tomograms: Annotated[
        list[Path], typer.Argument(help="Unlabelled tomograms of the new domain (MRC, TIFF).")
    ],
    out: Annotated[Path, typer.Option(help="Adapted checkpoint to write (.pt).")],
    model: ModelOpt = None,
    voxel_size_nm: VoxelSizeOpt = None,
    epochs: Annotated[int, typer.Option()] = 6,
    steps_per_epoch: Annotated[int, typer.Option()] = 50,
    lr: Annotated[float, typer.Option(help="Learning rate of the student.")] = 1e-4,
    confidence: Annotated[
        float, typer.Option(help="Teacher probability (or 1 − it) that makes a pseudo-label.")
    ] = 0.9,
    ema_decay: Annotated[
        float, typer.Option(help="Teacher = decay · teacher + (1 − decay) · student.")
    ] = 0.99,
    consistency_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the soft loss that holds the student to the teacher's probability "
            "where the teacher is unsure (0: ignore those voxels)."
        ),
    ] = 0.3,
    anchor_weight: Annotated[
        float,
        typer.Option(
            help="After each step move the weights this × the learning rate of the way back to "
            "the starting network's (L2-SP; 0 = off)."
        ),
    ] = 0.0,
    method: Annotated[
        str,
        typer.Option(
            help="statistics: only the batch-norm statistics are measured again on the "
            "tomograms (AdaBN; minutes, nothing learnt); or mean-teacher (weights and "
            "statistics learn from the network's confident answers)."
        ),
    ] = "statistics",
    statistics_layers: Annotated[
        str,
        typer.Option(
            help="Method statistics only: measure the statistics of the encoder's layers "
            "(the rest keep the network's), or of all layers."
        ),
    ] = "encoder",
    prior_weight: Annotated[
        float,
        typer.Option(
            help="Method statistics only: weight of the starting network's statistics beside "
            "the tomograms' (0: the tomograms' alone)."
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    invert: InvertOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue from OUT if it exists.")] = False,
    compare: Annotated[
        bool,
        typer.Option(
            help="Then segment the tomograms with the starting and the adapted network and "
            "count the vesicles each finds alone (OUT_changes.csv); warn when adaptation adds "
            "no more than it loses."
        ),
    ] = True,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Adapt a network to unlabelled tomograms (its batch-norm statistics, or a mean teacher);
    then segment with --model OUT."""
    from analysis.adapt import AdaptConfig, adapt_files
    from analysis.adaptation_report import adaptation_warning, compare_files

    config = AdaptConfig(
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=lr,
        confidence=confidence,
        ema_decay=ema_decay,
        consistency_weight=consistency_weight,
        anchor_weight=anchor_weight,
        method=method,
        statistics_layers=statistics_layers,
        prior_weight=prior_weight,
        seed=seed,
        device=device,
    )
    _, history = adapt_files(
        tomograms,
        out,
        voxel_size_nm=voxel_size_nm,
        model=model,
        config=config,
        invert=invert,
        resume=resume,
        command=_invocation(),
        progress=not quiet,
    )
    last = history[-1]
    if method == "statistics":
        layers = "the encoder's layers" if statistics_layers == "encoder" else "all layers"
        typer.echo(
            f"{out}: batch-norm statistics of {layers} measured again "
            f"on {last['step']} batches"
            + (f", the starting network's kept at {prior_weight:.0%}" if prior_weight else "")
            + f"; foreground agrees with the starting network's by Dice {last['agreement']:.3f}"
        )
    else:
        typer.echo(
            f"{out}: epoch {last['epoch']}, {last['confident']:.0%} of voxels pseudo-labelled, "
            f"teacher–student agreement {last['agreement']:.3f}"
        )
    if not compare:
        return
    changes_path = out.with_name(f"{out.stem}_changes.csv")
    try:
        changes = compare_files(
            tomograms,
            model,
            out,
            voxel_size_nm=voxel_size_nm,
            invert=invert,
            device=device,
            out=changes_path,
        )
    except InputFileError as err:  # the network is written: say so, and why not to use it
        raise InputFileError(
            out,
            f"written, but comparing it with the starting network on {err.path} failed: "
            f"{err.problem}",
        ) from err
    for row in changes.itertuples():
        typer.echo(
            f"{row.tomogram}: {row.found_before} vesicles before, {row.found_after} after "
            f"({row.new} new, {row.lost} lost)"
        )
    typer.echo(f"written: {changes_path}")
    warning = adaptation_warning(changes)
    if warning:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def check(
    tomogram: TomogramArg,
    model: ModelOpt = None,
    voxel_size_nm: VoxelSizeOpt = None,
    vesicles: Annotated[
        Path | None,
        typer.Option(help="Vesicle table of a segmentation (STEM_vesicles.csv): adds its checks."),
    ] = None,
    invert: InvertOpt = False,
    match_spectrum: MatchSpectrumOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the report here (JSON).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Is this tomogram like the network's training data? One line per check (pass / warn,
    why, what to do); a warning is not an error (exit code 0)."""
    from analysis.inference.domain import check_tomogram
    from analysis.io import read_tomogram, read_vesicle_table

    tomo = read_tomogram(tomogram, voxel_size_nm=voxel_size_nm, mmap=True)
    table = None if vesicles is None else read_vesicle_table(vesicles, ("kept", "radius_nm"))
    try:
        report = check_tomogram(
            tomo.data,
            tomo.voxel_size_nm,
            model,
            vesicles=table,
            invert=invert,
            name=tomogram,
            device=device,
            match_spectrum=_matching(match_spectrum),
        )
    except DataError as err:
        raise err.in_file(tomogram) from err
    if out is not None:
        report.write_json(out)
    if as_json:
        typer.echo(report.to_json(), nl=False)
        return
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"{tomogram}: {report.summary()}")


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option(help="Predicted labels (STEM_labels.mrc).")],
    truth: Annotated[
        Path, typer.Option(help="Manual annotation: IMOD .mod, or a label MRC of the same shape.")
    ],
    mask: Annotated[
        Path | None, typer.Option(help="Score only inside this region mask (MRC).")
    ] = None,
    probability: Annotated[
        Path | None, typer.Option(help="Probability map (STEM_probability.mrc) for mask_dice.")
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(help="Vesicle table (STEM_vesicles.csv): fitted centres and radii."),
    ] = None,
    model_voxel_size_nm: Annotated[
        float | None,
        typer.Option(help="Voxel size the .mod was drawn at, if the model does not say."),
    ] = None,
    misses: Annotated[
        Path | None,
        typer.Option(
            help="Write why each missed true vesicle was missed (CSV; needs --table, and "
            "--probability to tell 'not segmented' from 'no candidate')."
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="The probability threshold the segmentation used (--misses).")
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score a segmentation against a manual one: Dice, F1, diameter and centre errors."""
    import json

    from analysis.evaluate import (
        evaluate_inputs,
        explain_inputs,
        read_evaluation,
        summarise_misses,
    )
    from analysis.io import atomic_output

    if misses is not None and table is None:
        raise ParameterError("--misses needs the vesicle table: give --table STEM_vesicles.csv")
    inputs = read_evaluation(
        pred,
        truth,
        probability=probability,
        region_mask=mask,
        pred_table=table,
        model_voxel_size_nm=model_voxel_size_nm,
    )
    scores = evaluate_inputs(inputs)
    if misses is not None:
        explained = explain_inputs(inputs, threshold)
        with atomic_output(misses) as tmp:
            explained.to_csv(tmp, index=False)
        typer.echo(f"{misses}: {summarise_misses(explained)}", err=True)
    if as_json:
        # NaN is not JSON: scores that do not exist (no probability map, no match) are null.
        clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in scores.items()}
        typer.echo(json.dumps(clean))
        return
    for key, value in scores.items():
        typer.echo(f"{key:12s} {value:.4f}" if isinstance(value, float) else f"{key:12s} {value}")


@app.command()
def batch(
    input_dir: Annotated[Path, typer.Argument(help="Folder of tomograms (MRC, TIFF, OME-Zarr).")],
    out: OutFolderOpt,
    scheduler: Annotated[
        str, typer.Option(help="local, slurm, or the address of a running Dask scheduler.")
    ] = "local",
    workers: Annotated[int, typer.Option(help="Local worker processes, or SLURM jobs.")] = 2,
    threads_per_worker: Annotated[int, typer.Option(help="Threads per worker.")] = 1,
    queue: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account.")] = None,
    cores: Annotated[int, typer.Option(help="SLURM: cores per job.")] = 4,
    memory: Annotated[str, typer.Option(help="SLURM: memory per job, e.g. 16GB.")] = "16GB",
    walltime: Annotated[str, typer.Option(help="SLURM: walltime per job.")] = "01:00:00",
    gpus: Annotated[int, typer.Option(help="SLURM: GPUs per job (--gres=gpu:N).")] = 0,
    job_extra: Annotated[
        list[str] | None, typer.Option(help="SLURM: extra #SBATCH directive (repeat).")
    ] = None,
    model: ModelOpt = None,
    voxel_size_nm: Annotated[
        float | None, typer.Option(help="Override the voxel size of every tomogram (nm).")
    ] = None,
    probability: Annotated[bool, typer.Option(help="Also keep the probability maps.")] = True,
    tta: Annotated[
        str, typer.Option(help="Test-time augmentation: none, or flips (4 views in xy).")
    ] = "none",
    match_spectrum: MatchSpectrumOpt = None,
    force: Annotated[bool, typer.Option(help="Redo tomograms whose outputs exist.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Segment every tomogram of a folder on a Dask cluster; resumable; summary table."""
    from analysis.batch import ClusterSpec, find_tomograms, run_batch, silence_dask_logs

    if not logging.getLogger("analysis").isEnabledFor(logging.INFO):  # --verbose shows them
        silence_dask_logs()

    tomograms = find_tomograms(input_dir)
    if not tomograms:
        raise InputFileError(input_dir, "holds no tomogram (.mrc, .rec, .tif, .zarr, …)")
    spec = ClusterSpec(
        scheduler=scheduler,
        workers=workers,
        threads_per_worker=threads_per_worker,
        queue=queue,
        account=account,
        cores=cores,
        memory=memory,
        walltime=walltime,
        gpus=gpus,
        job_extra=list(job_extra or []),
    )
    options = dict(
        model=str(model) if model else None,
        voxel_size_nm=voxel_size_nm,
        write_probability=probability,
        predictor_options=dict(tta=tta),
        predict_options=dict(progress=False, match_spectrum=_matching(match_spectrum)),
    )
    _check_training_spectra(model, match_spectrum)  # once, before any tomogram is sent out
    summary = run_batch(tomograms, out, spec=spec, options=options, force=force, progress=not quiet)
    counts = summary["status"].value_counts()
    typer.echo(
        f"{out}: {counts.get('done', 0)} done, {counts.get('skipped', 0)} skipped (done before), "
        f"{counts.get('failed', 0)} failed; summary in {out / 'batch_summary.csv'}"
    )
    for row in summary[summary["status"] == "failed"].itertuples():
        typer.echo(f"failed: {row.error}", err=True)
    if counts.get("failed", 0):
        raise typer.Exit(1)


@app.command("active-zone")
def active_zone(
    tomogram: TomogramArg,
    labels: Annotated[Path, typer.Option(help="Vesicle labels (STEM_labels.mrc).")],
    az_mask: Annotated[
        Path, typer.Option(help="Active-zone membrane: mask MRC, or IMOD .mod (open contour).")
    ],
    region_mask: Annotated[
        Path, typer.Option(help="Cytoplasm to analyse: mask MRC, or IMOD .mod (outlines).")
    ],
    out: OutFolderOpt,
    table: Annotated[
        Path | None, typer.Option(help="Vesicle table (STEM_vesicles.csv) for fitted centres.")
    ] = None,
    voxel_size_nm: VoxelSizeOpt = None,
    max_volume_nm3: Annotated[
        float, typer.Option(help="Largest filament volume (Pyto: 2100–3200 nm³).")
    ] = 2600.0,
    max_path_grey: Annotated[
        float | None,
        typer.Option(
            help="Keep a connector when the darkest straight path across its gap is at most "
            "this dark (SD of the remainder). Default: set from the tomogram's membrane "
            "contrast."
        ),
    ] = None,
    max_tether_path_grey: Annotated[
        float | None, typer.Option(help="The same for tethers (vesicle to membrane).")
    ] = None,
    path_test: Annotated[
        bool,
        typer.Option(help="Test pairs along straight paths; --no-path-test keeps every piece."),
    ] = True,
    merge_nm: Annotated[
        float,
        typer.Option(
            help="Pieces of one pair of boundaries whose voxels come within this gap (nm) are "
            "one filament, counted once; 0 joins only touching pieces. Default: every piece "
            "of a pair."
        ),
    ] = float("inf"),
) -> None:
    """Distances to the active zone, layers, connectors and tethers (as Pyto measures them)."""
    import pandas as pd

    from analysis.active_zone import analyse_files

    if not merge_nm >= 0:
        raise typer.BadParameter(f"a gap of at least 0 nm, not {merge_nm}", param_hint="--merge-nm")
    _output_folder(out)
    paths = analyse_files(
        tomogram,
        labels,
        az_mask,
        region_mask,
        out,
        vesicles=table,
        voxel_size_nm=voxel_size_nm,
        max_volume_nm3=max_volume_nm3,
        max_path_grey=(
            {
                "connector": "auto" if max_path_grey is None else max_path_grey,
                "tether": "auto" if max_tether_path_grey is None else max_tether_path_grey,
            }
            if path_test
            else None
        ),
        merge_nm=merge_nm,
    )
    filaments = pd.read_csv(paths["filaments"])
    kinds = filaments["kind"].value_counts()
    cuts = filaments.groupby("kind")["path_cut"].first().dropna()
    tested = ", ".join(f"{kind} {cut:.2f}" for kind, cut in cuts.items())
    typer.echo(
        f"{tomogram}: {kinds.get('connector', 0)} connectors, {kinds.get('tether', 0)} tethers"
        + (f" (straight-path cuts, SD: {tested})" if tested else "")
        + f"; tables in {out}"
    )


@app.command()
def compare(
    study: Annotated[
        Path,
        typer.Argument(
            help="Study table (CSV): tomogram, group, az_mask, region_mask; optional labels "
            "(vesicle labels instead of segmenting), voxel_size_nm. Two groups."
        ),
    ],
    out: OutFolderOpt,
    scheduler: Annotated[
        str, typer.Option(help="local, slurm, or the address of a running Dask scheduler.")
    ] = "local",
    workers: Annotated[int, typer.Option(help="Local worker processes, or SLURM jobs.")] = 2,
    threads_per_worker: Annotated[int, typer.Option(help="Threads per worker.")] = 1,
    model: ModelOpt = None,
    method: Annotated[
        str, typer.Option(help="Control over the distance bins: holm or fdr_bh.")
    ] = "holm",
    n_boot: Annotated[int, typer.Option(help="Hierarchical bootstrap replicates.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutations.")] = 0,
    figures: Annotated[bool, typer.Option(help="Also draw the figures (PNG).")] = True,
    match_spectrum: MatchSpectrumOpt = None,
    force: Annotated[bool, typer.Option(help="Redo tomograms whose outputs exist.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare two groups of tomograms: segment and analyse each (Dask, resumable), pool the
    tables, test with the synapse as the unit, draw the figures."""
    from analysis import stats
    from analysis.batch import ClusterSpec, check_study_outputs, run_study, silence_dask_logs

    if method not in ("holm", "fdr_bh"):
        raise typer.BadParameter(f"holm or fdr_bh, not {method!r}", param_hint="--method")
    table = stats.read_study(study)  # every check before any work
    items = stats.study_items(table)
    check_study_outputs(items, out)
    _check_training_spectra(model, match_spectrum)
    _output_folder(out)
    if not logging.getLogger("analysis").isEnabledFor(logging.INFO):
        silence_dask_logs()
    options = {"segment": {"model": str(model) if model else None, "predict_options": {}}}
    options["segment"]["predict_options"]["progress"] = False
    options["segment"]["predict_options"]["match_spectrum"] = _matching(match_spectrum)
    spec = ClusterSpec(scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker)
    summary = run_study(items, out, spec=spec, options=options, force=force, progress=not quiet)
    failed = summary[summary["status"] == "failed"]
    for row in failed.itertuples():
        typer.echo(f"failed: {row.error}", err=True)
    if len(failed):
        raise typer.Exit(1)
    pooled = stats.read_pooled(table, out)
    report = stats.compare_study(
        pooled["vesicles"],
        pooled["filaments"],
        pooled["layers"],
        method=method,
        n_boot=n_boot,
        seed=seed,
    )
    report |= {f"pooled_{role}": t for role, t in pooled.items()}
    stats.write_report(report, out)
    if figures:
        _compare_figures(report, out)
    tests = report["statistics"].set_index(["measure", "test"])
    for measure in ("n_proximal", "tethered", "connected"):
        r = tests.loc[(measure, "welch")]
        typer.echo(
            f"{measure}: {r.group_a} {r.value_a:.3g}, {r.group_b} {r.value_b:.3g}, difference "
            f"{r.effect:.3g} (95% CI {r.ci_low:.3g} to {r.ci_high:.3g}), p = {r.p:.3g} "
            f"(Welch, {r.n_a:.0f} + {r.n_b:.0f} synapses)"
        )
    typer.echo(
        f"{out}: pooled tables, statistics.csv, statistics_by_bin.csv"
        + (", figures" if figures else "")
    )


def _compare_figures(report: dict, out: Path) -> None:
    """The figures of ``analysis compare``, each written atomically."""
    import matplotlib.pyplot as plt

    from analysis import plotting
    from analysis.io import atomic_output
    from analysis.stats import MEASURES

    shown = {m: MEASURES[m] for m in ("n_proximal", "tethered", "connected")}
    figures = {
        "per_synapse.png": plotting.synapse_points(report["per_synapse"], shown),
        "by_distance.png": plotting.fractions_by_distance(
            report["per_synapse_bins"],
            {"tethered": "fraction tethered", "connected": "fraction connected"},
        ),
        "density.png": plotting.density_profiles(report["per_synapse_density"]),
    }
    for name, fig in figures.items():
        with atomic_output(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)


fetch_app = typer.Typer(
    help="Fetch public data: tomograms and their annotations.", no_args_is_help=True
)
app.add_typer(fetch_app, name="fetch")


@fetch_app.command("portal")
def fetch_portal(
    run_id: Annotated[int, typer.Argument(help="Run id on the CZ CryoET Data Portal (/runs/ID).")],
    out: OutFolderOpt,
    voxel_size_nm: Annotated[
        float | None,
        typer.Option(help="Voxel spacing of the tomogram (nm); default: the portal's default."),
    ] = None,
    annotations: Annotated[
        bool, typer.Option(help="Also the run's vesicle and membrane annotations.")
    ] = True,
    tomogram_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="The tomogram as one MRC file (mrc) or its multiscale OME-Zarr folder (zarr).",
        ),
    ] = "mrc",
    quiet: QuietOpt = False,
) -> None:
    """Fetch a run's tomogram (MRC or OME-Zarr) and its vesicle and membrane annotations;
    resumable.

    Needs internet and the portal's client (the package's portal extra, or pip install
    cryoet-data-portal). Running the same command again skips complete files and continues
    partial ones.
    """
    from analysis.io.portal import fetch_run

    files = fetch_run(
        run_id,
        out,
        voxel_size_nm=voxel_size_nm,
        annotations=annotations,
        tomogram_format=tomogram_format,
        progress=not quiet,
    )
    typer.echo(f"{files['tomogram']}: tomogram of portal run {run_id}")
    for path in files["annotations"]:
        typer.echo(f"{path}: annotation")
    typer.echo(f"{files['metadata']}: the run's metadata and what was chosen")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``analysis`` command; returns the exit code."""
    with warnings.catch_warnings():
        # Warnings are for the user here, not a developer: one line, without source.
        warnings.showwarning = _show_warning
        return _run_app(argv)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


#: The arguments of the running command (main's argv, or the process's), for checkpoints
#: that record how they were made.
_ARGV: list[str] = []


def _invocation() -> str:
    """The running command as a shell line (``analysis train …``)."""
    return shlex.join(["analysis", *_ARGV])


def _run_app(argv: list[str] | None) -> int:
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run_command(argv)
    finally:  # a command run later without main() must not record this one
        _ARGV = []


def _run_command(argv: list[str] | None) -> int:
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of raising.
        code = app(args=argv, standalone_mode=False)
    except AnalysisError as err:  # bad input or a refused option value: the user can fix it
        typer.echo(f"error: {err}", err=True)
        return EXIT_BAD_INPUT
    except typer.Exit as err:
        return err.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as err:
        if isinstance(err, _usage_errors()):  # click's usage errors carry their own exit code
            err.show()
            return err.exit_code
        return _internal_error(err)
    return code if isinstance(code, int) else 0


def _internal_error(err: Exception) -> int:
    """Report an exception that is not bad input: a bug, with the traceback under --verbose."""
    import traceback

    if logging.getLogger("analysis").isEnabledFor(logging.INFO):  # --verbose
        traceback.print_exception(err, file=sys.stderr)
    first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else ""
    typer.echo(
        f"internal error: {type(err).__name__}{': ' + first if first else ''}. This is a bug, "
        "not a problem with your input; run the command again with --verbose for the traceback "
        "and report it",
        err=True,
    )
    return EXIT_INTERNAL_ERROR


def _usage_errors() -> tuple[type, ...]:
    """Click's usage-error class, and typer's own copy of it (typer ≥ 0.20 vendors click)."""
    import click

    types: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        pass
    else:
        types.append(ClickException)
    return tuple(types)


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
