"""The ``analysis`` command line: thin commands over the library.

Bad input ends a command with one line on stderr (``error: <file>: <problem>``) and a non-zero
exit code, never a traceback; outputs are written atomically, so a failed command leaves none
behind.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from analysis.errors import InputFileError

app = typer.Typer(
    help="Find and measure synaptic vesicles in cryo-electron tomograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit code for bad input (a file that cannot be used as given).
EXIT_BAD_INPUT = 2


@app.command()
def info(
    tomogram: Annotated[Path, typer.Argument(help="Tomogram: MRC, TIFF or OME-Zarr.")],
    voxel_size_nm: Annotated[
        float | None, typer.Option(help="Override the voxel size in the header (nm).")
    ] = None,
) -> None:
    """Print shape (z, y, x), voxel size and intensity range of a tomogram."""
    from analysis.io import read_tomogram

    tomo = read_tomogram(tomogram, voxel_size_nm=voxel_size_nm, mmap=True)
    data = tomo.data
    typer.echo(f"file            {tomogram}")
    typer.echo(f"shape (z, y, x) {tomo.shape}")
    typer.echo(f"voxel_size_nm   {tomo.voxel_size_nm:.4g}")
    extent = tuple(round(n * tomo.voxel_size_nm, 1) for n in tomo.shape)
    typer.echo(f"extent_nm       {extent}")
    typer.echo(f"min/mean/max    {data.min():.4g} / {data.mean():.4g} / {data.max():.4g}")


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``analysis`` command; returns the exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except InputFileError as err:
        typer.echo(f"error: {err}", err=True)
        return EXIT_BAD_INPUT
    except ValueError as err:  # a bad option value that the library refused
        typer.echo(f"error: {err}", err=True)
        return EXIT_BAD_INPUT
    except typer.Exit as err:
        return err.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as err:  # click's usage errors carry their own exit code
        import click

        if isinstance(err, click.ClickException):
            err.show()
            return err.exit_code
        raise
    return 0


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
