"""Every command-line default is the default of the library function it is passed to.

The commands spell their defaults out as literals, so that ``analysis --help`` does not import
torch, pandas or scipy; this test keeps those literals equal to the library's. An option is
either mapped to the library parameter it becomes, or listed as the command's own.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from analysis import cli
from analysis.active_zone import analyse_files, find_filaments
from analysis.adapt import AdaptConfig, adapt, adapt_files
from analysis.batch import ClusterSpec, run_batch, run_study
from analysis.evaluate import explain_inputs, read_evaluation
from analysis.inference import predict_file
from analysis.inference.domain import check_tomogram, domain_features
from analysis.inference.predict import predict
from analysis.io import read_annotation, read_tomogram
from analysis.io.portal import fetch_run
from analysis.models import Predictor, UNetConfig
from analysis.pipeline import segment_file
from analysis.postprocess import segment_vesicles
from analysis.stats import compare_study
from analysis.synthetic import Microscope, SynapseGeometry, sample_dataset, scaled_geometry
from analysis.train import TrainConfig, train, volume_from_files


def _same(value):
    return value


def _tile(value):  # --tile absent: tiles planned to the volume
    return cli._tiling(value, None)["tile"]


def _overlap(value):
    return cli._tiling(None, value)["overlap"]


def _path_cut(value):  # no --max-path-grey: the cut set from the tomogram ("auto")
    return "auto" if value is None else value


# command -> {option: (library function or dataclass, its parameter, CLI value -> library's)}
LIBRARY = {
    "info": {"voxel_size_nm": (read_tomogram, "voxel_size_nm", _same)},
    "average-weights": {},
    "mod2labels": {
        "grouping": (read_annotation, "grouping", _same),
        "model_voxel_size_nm": (read_annotation, "model_voxel_size_nm", _same),
    },
    "synth": {
        "shape": (SynapseGeometry, "shape", _same),
        "voxel_size_nm": (scaled_geometry, "voxel_size_nm", _same),
        "n_vesicles": (scaled_geometry, "n_vesicles", _same),
        "snr": (Microscope, "snr", _same),
        "defocus_um": (Microscope, "defocus_um", _same),
    },
    "train": {
        **{
            name: (TrainConfig, name, _same)
            for name in (
                "epochs",
                "steps_per_epoch",
                "val_every",
                "batch_size",
                "patch_size",
                "lr",
                "seed",
                "device",
                "augment_level",
                "distill_weight",
                "anchor_weight",
            )
        },
        **{name: (UNetConfig, name, _same) for name in ("depth", "base_channels", "dims")},
        "region": (volume_from_files, "region", _same),
        "resume": (train, "resume", _same),
        "init_from": (train, "init_from", _same),
        "quick": (sample_dataset, "quick", _same),
    },
    "predict": {
        "model": (Predictor.load, "spec", _same),
        "precision": (Predictor.load, "precision", _same),
        "tta": (Predictor.load, "tta", _same),
        "device": (Predictor.load, "device", _same),
        "voxel_size_nm": (predict_file, "voxel_size_nm", _same),
        "uncertainty": (predict_file, "uncertainty_path", _same),
        "tile": (predict, "tile", _tile),
        "overlap": (predict, "overlap", _overlap),
        "blend": (predict, "blend", _same),
        "batch_size": (predict, "batch_size", _same),
        "max_rescale": (predict, "max_rescale", _same),
        "invert": (predict, "invert", _same),
        "match_spectrum": (predict, "match_spectrum", cli._matching),
    },
    "segment": {
        "model": (segment_file, "model", _same),
        "voxel_size_nm": (segment_file, "voxel_size_nm", _same),
        "probability": (segment_file, "write_probability", _same),
        "az_mask": (segment_file, "az_mask", _same),
        "region_mask": (segment_file, "region_mask", _same),
        "invert": (segment_file, "invert", _same),
        "check": (segment_file, "check", _same),
        "threshold": (segment_vesicles, "threshold", float),
        "min_radius_nm": (segment_vesicles, "min_radius_nm", _same),
        "max_radius_nm": (segment_vesicles, "max_radius_nm", _same),
        "split": (segment_vesicles, "split", _same),
        "radius_from": (segment_vesicles, "radius_from", _same),
        "tile": (predict, "tile", _tile),
        "overlap": (predict, "overlap", _overlap),
        "batch_size": (predict, "batch_size", _same),
        "match_spectrum": (predict, "match_spectrum", cli._matching),
        "precision": (Predictor.load, "precision", _same),
        "tta": (Predictor.load, "tta", _same),
        "device": (Predictor.load, "device", _same),
    },
    "adapt": {
        **{
            name: (AdaptConfig, name, _same)
            for name in (
                "epochs",
                "steps_per_epoch",
                "lr",
                "confidence",
                "ema_decay",
                "consistency_weight",
                "anchor_weight",
                "method",
                "statistics_layers",
                "prior_weight",
                "seed",
            )
        },
        "device": (AdaptConfig, "device", _same),
        "model": (adapt, "model", _same),
        "invert": (adapt, "invert", _same),
        "resume": (adapt, "resume", _same),
        "voxel_size_nm": (adapt_files, "voxel_size_nm", _same),
    },
    "check": {
        "model": (check_tomogram, "model", _same),
        "voxel_size_nm": (read_tomogram, "voxel_size_nm", _same),
        "vesicles": (domain_features, "vesicles", _same),
        "invert": (domain_features, "invert", _same),
        "device": (domain_features, "device", _same),
        "match_spectrum": (domain_features, "match_spectrum", cli._matching),
    },
    "evaluate": {
        "mask": (read_evaluation, "region_mask", _same),
        "probability": (read_evaluation, "probability", _same),
        "table": (read_evaluation, "pred_table", _same),
        "model_voxel_size_nm": (read_evaluation, "model_voxel_size_nm", _same),
        "threshold": (explain_inputs, "threshold", _same),
    },
    "batch": {
        **{
            name: (ClusterSpec, name, _same)
            for name in (
                "scheduler",
                "workers",
                "threads_per_worker",
                "queue",
                "account",
                "cores",
                "memory",
                "walltime",
                "gpus",
            )
        },
        "job_extra": (ClusterSpec, "job_extra", lambda v: list(v or [])),
        "model": (segment_file, "model", _same),
        "voxel_size_nm": (segment_file, "voxel_size_nm", _same),
        "probability": (segment_file, "write_probability", _same),
        "tta": (Predictor.load, "tta", _same),
        "match_spectrum": (predict, "match_spectrum", cli._matching),
        "force": (run_batch, "force", _same),
    },
    "active-zone": {
        "table": (analyse_files, "vesicles", _same),
        "voxel_size_nm": (analyse_files, "voxel_size_nm", _same),
        "max_volume_nm3": (find_filaments, "max_volume_nm3", _same),
        "merge_nm": (find_filaments, "merge_nm", _same),
        "max_path_grey": (find_filaments, "max_path_grey", _path_cut),
        "max_tether_path_grey": (find_filaments, "max_path_grey", _path_cut),
        # --no-path-test is max_path_grey=None
        "path_test": (find_filaments, "max_path_grey", lambda v: "auto" if v else None),
    },
    "compare": {
        "scheduler": (ClusterSpec, "scheduler", _same),
        "workers": (ClusterSpec, "workers", _same),
        "threads_per_worker": (ClusterSpec, "threads_per_worker", _same),
        "model": (segment_file, "model", _same),
        "method": (compare_study, "method", _same),
        "n_boot": (compare_study, "n_boot", _same),
        "seed": (compare_study, "seed", _same),
        "match_spectrum": (predict, "match_spectrum", cli._matching),
        "force": (run_study, "force", _same),
    },
    "portal": {
        "voxel_size_nm": (fetch_run, "voxel_size_nm", _same),
        "annotations": (fetch_run, "annotations", _same),
        "tomogram_format": (fetch_run, "tomogram_format", _same),
    },
}

# Options no library function takes as they are, with why.
OWN = {
    "info": set(),
    "average-weights": set(),
    "mod2labels": {"membrane_out"},  # a second output file
    # a numbered series NAME_01, NAME_02, … from seed, seed+1, …; --varied picks the generator
    "synth": {"n", "seed", "name", "varied"},
    # the data: files, or the cached synthetic set and how many varied tomograms join it
    "train": {"tomogram", "labels", "val_tomogram", "val_labels", "synthetic", "varied", "faint"},
    "predict": {"quiet"},  # progress bar
    "segment": {"auto_invert", "quiet"},  # invert="auto"; progress bar
    "adapt": {"quiet", "compare"},  # progress bar; adaptation_report.compare_files afterwards
    "check": {"out", "as_json"},  # where the report goes
    "evaluate": {"as_json", "misses"},  # where the misses go
    "batch": {"quiet"},
    "active-zone": set(),
    "compare": {"figures", "quiet"},
    "portal": {"quiet"},
}


def _commands() -> dict:
    apps = [cli.app] + [group.typer_instance for group in cli.app.registered_groups]
    return {
        (c.name or c.callback.__name__): c.callback for app in apps for c in app.registered_commands
    }


def _options(callback) -> dict:
    """The command's options with a default (arguments without one are required input)."""
    return {
        name: p.default
        for name, p in inspect.signature(callback).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _library_default(obj, name: str):
    if dataclasses.is_dataclass(obj):
        field = {f.name: f for f in dataclasses.fields(obj)}[name]
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return field.default
    default = inspect.signature(obj).parameters[name].default
    assert default is not inspect.Parameter.empty, f"{obj.__qualname__}({name}) has no default"
    return default


def test_every_command_and_option_is_accounted_for():
    commands = _commands()
    assert set(commands) == set(LIBRARY) == set(OWN)
    for command, callback in commands.items():
        options = set(_options(callback))
        mapped, own = set(LIBRARY[command]), OWN[command]
        assert not mapped & own, command
        assert options == mapped | own, (
            f"{command}: unmapped {sorted(options - mapped - own)}, "
            f"gone {sorted((mapped | own) - options)}"
        )


@pytest.mark.parametrize("command", sorted(LIBRARY))
def test_command_defaults_are_the_library_defaults(command):
    options = _options(_commands()[command])
    for option, (obj, name, to_library) in LIBRARY[command].items():
        ours, theirs = to_library(options[option]), _library_default(obj, name)
        assert ours == theirs, (
            f"analysis {command} --{option.replace('_', '-')}: {ours!r} vs {theirs!r}"
        )


def test_synth_places_the_generators_packing_in_any_shape():
    default = SynapseGeometry()
    same = scaled_geometry(default.shape)
    assert same.shape == default.shape and same.n_vesicles == default.n_vesicles
    # an eighth of the voxels, an eighth of the vesicles; never none
    assert scaled_geometry((64, 128, 128), n_vesicles=160).n_vesicles == 20
    assert scaled_geometry((8, 8, 8), n_vesicles=160).n_vesicles == 1
    assert scaled_geometry((64, 128, 128), voxel_size_nm=1.1).voxel_size_nm == 1.1


def test_the_command_line_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, analysis.cli; "
        "print(' '.join(m for m in ('torch', 'pandas', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
