"""Fetching from the CryoET Data Portal, offline: queries, file choice, resumable downloads.

The portal's answers are replayed from ``tests/data/portal_run.json`` (hand-written from the
client's data model; not a real run), and downloads from byte strings, so nothing here needs
the network.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from analysis.errors import InputFileError, ParameterError
from analysis.io import portal

# the client (the [portal] extra, also in [test]) for the queries; downloads need none
needs_client = pytest.mark.skipif(
    importlib.util.find_spec("cryoet_data_portal") is None, reason="cryoet-data-portal missing"
)

RECORDED = json.loads((Path(__file__).parent / "data" / "portal_run.json").read_text())
RUN_ID = 99001


class RecordedPortal:
    """A stand-in for ``cryoet_data_portal.Client``: answers each query from the recording."""

    def __init__(self, recording=RECORDED, fail=None):
        self.recording = recording
        self.fail = fail
        self.asked = []

    def find(self, cls, filters):
        if self.fail is not None:
            raise self.fail
        self.asked.append((cls.__name__, filters))
        return [cls(self, **item) for item in self.recording[cls._get_gql_root_field()]]


def _metadata():
    return portal.run_metadata(RUN_ID, client=RecordedPortal())


@needs_client
def test_queries_ask_for_one_run_and_the_schema_knows_every_filter():
    import cryoet_data_portal as cdp
    from graphql import print_ast

    queries = portal.run_queries(RUN_ID)
    client = cdp.Client()  # the schema ships with the client: building a query is offline
    expected = {
        "Run": "where: { id: { _eq: 99001 } }",
        "Tomogram": "where: { runId: { _eq: 99001 } }",
        "Annotation": "where: { runId: { _eq: 99001 } }",
        "AnnotationShape": "where: { annotation: { runId: { _eq: 99001 } } }",
        "AnnotationFile": "where: { annotationShape: { annotation: { runId: { _eq: 99001 } } } }",
    }
    assert set(queries) == set(expected)
    for name, filters in queries.items():
        model = getattr(cdp, name)
        where = {}
        for f in filters:
            where.update(f.to_gql())
        text = print_ast(
            client.build_query(model, model._gql_root_field, model._gql_type, where).document
        )
        # a field the schema does not know would be dropped from the query text
        assert expected[name] in " ".join(text.split()), text


@needs_client
def test_metadata_is_plain_json_with_the_client_field_names():
    client = RecordedPortal()
    metadata = portal.run_metadata(RUN_ID, client=client)
    assert [name for name, _ in client.asked] == [
        "Run",
        "Tomogram",
        "Annotation",
        "AnnotationShape",
        "AnnotationFile",
    ]
    assert json.loads(json.dumps(metadata)) == metadata
    assert metadata["runs"][0]["name"] == "syn_01"
    assert metadata["tomograms"][0]["https_mrc_file"].endswith("Tomograms/100/syn_01.mrc")
    assert len(metadata["annotation_files"]) == 6
    assert portal.voxel_spacings_nm(metadata) == [0.784, 1.568]


@needs_client
def test_default_choice_is_the_portal_default_tomogram_and_its_vesicles_and_membranes():
    files = portal.select_files(_metadata())
    assert [f.role for f in files] == ["tomogram", "annotation", "annotation"]
    tomogram, vesicles, membrane = files
    assert "Tomograms/100/" in tomogram.url and "VoxelSpacing15.680" in tomogram.url
    assert tomogram.name == "syn_01_1.568nm.mrc" and tomogram.size_bytes == 134218752
    assert "128×512×512 voxels of 1.568 nm" in tomogram.description
    # the mask (MRC) before the points of the same annotation; no zarr, no ribosomes
    assert vesicles.url.endswith("synaptic_vesicle-1.0_segmask.mrc")
    assert vesicles.name == "syn_01_synaptic_vesicle-1.0_segmask.mrc"
    assert "synaptic vesicle (SegmentationMask, mrc, manual, ground truth)" in vesicles.description
    assert membrane.url.endswith("membrane-1.0_segmask.mrc")


@needs_client
def test_a_chosen_spacing_takes_the_annotations_drawn_at_it():
    files = portal.select_files(_metadata(), voxel_size_nm=0.784)
    assert "VoxelSpacing7.840" in files[0].url
    assert [f.url.rsplit("/", 2)[-2] for f in files[1:]] == ["104"]
    assert portal.select_files(_metadata(), voxel_size_nm=0.784, annotations=False) == files[:1]


@needs_client
def test_the_raw_tomogram_is_preferred_to_the_denoised_one_at_one_spacing():
    metadata = _metadata()
    for t in metadata["tomograms"]:
        t["is_visualization_default"] = False
    assert "Tomograms/100/" in portal.select_files(metadata, voxel_size_nm=1.568)[0].url
    # without a default, the coarsest spacing (the smallest file)
    assert "VoxelSpacing15.680" in portal.select_files(metadata)[0].url


@needs_client
def test_a_missing_spacing_or_run_is_one_clear_error():
    with pytest.raises(InputFileError, match=r"no tomogram at 2 nm; it has 0.784, 1.568 nm"):
        portal.select_files(_metadata(), voxel_size_nm=2.0)
    empty = {**RECORDED, "runs": []}
    with pytest.raises(InputFileError, match="portal run 99001: no such run"):
        portal.run_metadata(RUN_ID, client=RecordedPortal(empty))


@needs_client
def test_offline_the_error_says_where_to_download_by_hand():
    offline = RecordedPortal(fail=ConnectionError("Failed to resolve the portal's address"))
    with pytest.raises(InputFileError) as info:
        portal.run_metadata(RUN_ID, client=offline)
    message = str(info.value)
    assert "\n" not in message and message.startswith("portal run 99001: ")
    assert "could not be reached" in message
    assert f"{portal.PORTAL_URL}/runs/{RUN_ID}" in message


# --- downloads --------------------------------------------------------------------------------

CONTENT = bytes(range(256)) * 40  # 10 240 bytes


def _remote():
    return portal.RemoteFile("https://files.example.org/t.mrc", "t.mrc", len(CONTENT), "t", "")


class Server:
    """Serves CONTENT in blocks, honouring range requests (or not), maybe breaking off."""

    def __init__(self, ranges=True, break_after=None, block=1000):
        self.ranges, self.break_after, self.block = ranges, break_after, block
        self.starts = []

    def __call__(self, url, start):
        self.starts.append(start)
        start = start if self.ranges else 0

        def chunks():
            sent = 0
            for i in range(start, len(CONTENT), self.block):
                if self.break_after is not None and sent >= self.break_after:
                    raise urllib.error.URLError("connection reset by peer")
                block = CONTENT[i : i + self.block]
                sent += len(block)
                yield block

        return chunks(), len(CONTENT), self.ranges and start > 0


def test_download_resumes_a_broken_transfer_and_renames_only_when_complete(tmp_path):
    broken = Server(break_after=3000)
    with pytest.raises(InputFileError, match="could not be downloaded.*a new run continues it"):
        portal.download(_remote(), tmp_path, run_id=RUN_ID, progress=False, open_url=broken)
    assert not (tmp_path / "t.mrc").exists()
    assert (tmp_path / ".t.mrc.part").read_bytes() == CONTENT[:3000]

    server = Server()
    path = portal.download(_remote(), tmp_path, run_id=RUN_ID, progress=False, open_url=server)
    assert server.starts == [3000]  # continued, not started again
    assert path.read_bytes() == CONTENT and sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]

    # complete: nothing is fetched again
    untouched = Server()
    portal.download(_remote(), tmp_path, run_id=RUN_ID, progress=False, open_url=untouched)
    assert untouched.starts == []


def test_a_server_without_ranges_starts_again_and_a_wrong_size_is_refused(tmp_path):
    (tmp_path / ".t.mrc.part").write_bytes(CONTENT[:5000])
    server = Server(ranges=False)
    path = portal.download(_remote(), tmp_path, run_id=RUN_ID, progress=False, open_url=server)
    assert path.read_bytes() == CONTENT  # not 5000 bytes twice

    with pytest.raises(InputFileError, match="arrived with 10240 bytes, 20000 expected"):
        short = portal.RemoteFile("https://files.example.org/u.mrc", "u.mrc", 20000, "t", "")
        portal.download(short, tmp_path, run_id=RUN_ID, progress=False, open_url=Server())
    assert not (tmp_path / "u.mrc").exists()


@needs_client
def test_fetch_run_writes_the_tomogram_annotations_and_metadata(tmp_path):
    served = []

    def server(url, start):
        served.append(url)
        size = next(f.size_bytes for f in portal.select_files(_metadata()) if f.url == url)
        return iter([b"\0" * size]), size, False

    out = tmp_path / "run"
    files = portal.fetch_run(RUN_ID, out, client=RecordedPortal(), progress=False, open_url=server)
    assert files["tomogram"] == out / "syn_01_1.568nm.mrc"
    assert [p.name for p in files["annotations"]] == [
        "syn_01_synaptic_vesicle-1.0_segmask.mrc",
        "syn_01_membrane-1.0_segmask.mrc",
    ]
    record = json.loads(files["metadata"].read_text())
    assert (
        record["chosen"][0]["role"] == "tomogram" and record["metadata"]["runs"][0]["id"] == 99001
    )
    assert len(served) == 3
    portal.fetch_run(RUN_ID, out, client=RecordedPortal(), progress=False, open_url=server)
    assert len(served) == 3  # a second run skips complete files


def test_annotation_masks_become_one_label_per_object(tmp_path):
    from analysis.io import read_tomogram, write_mrc

    like = read_tomogram(write_mrc(tmp_path / "t.mrc", np.zeros((8, 9, 10), np.float32), 1.568))
    mask = np.zeros(like.shape, np.int8)
    mask[1:3, 1:3, 1:3] = 1
    mask[5:7, 5:7, 5:8] = 1
    labels = portal.annotation_labels(write_mrc(tmp_path / "m.mrc", mask, 1.568), like)
    assert sorted(np.unique(labels)) == [0, 1, 2] and (labels > 0).sum() == 8 + 12
    instances = mask.astype(np.int16) * 7
    instances[5:7, 5:7, 5:8] = 9
    instances[1, 1, 1] = 3
    labels = portal.annotation_labels(write_mrc(tmp_path / "i.mrc", instances, 1.568), like)
    assert sorted(np.unique(labels)) == [0, 3, 7, 9]
    other = write_mrc(tmp_path / "o.mrc", np.zeros((4, 4, 4), np.int8), 1.568)
    with pytest.raises(InputFileError, match="annotation of shape"):
        portal.annotation_labels(other, like)


@needs_client
def test_the_fetch_command_and_its_offline_error(tmp_path, capsys, monkeypatch):
    import cryoet_data_portal

    from analysis.cli import EXIT_BAD_INPUT, main

    def server(url, start):
        return iter([b"\1" * 100]), 100, False

    recording = json.loads(json.dumps(RECORDED))
    for record in recording["tomograms"] + recording["annotationFiles"]:
        record["fileSizeMrc" if "fileSizeMrc" in record else "fileSize"] = 100
    monkeypatch.setattr(cryoet_data_portal, "Client", lambda: RecordedPortal(recording))
    monkeypatch.setattr(portal, "open_https", server)
    out = tmp_path / "portal"
    assert main(["fetch", "portal", str(RUN_ID), "--out", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out / 'syn_01_1.568nm.mrc'}: tomogram of portal run {RUN_ID}"
    assert len(lines) == 4 and (out / "run_99001.json").exists()

    offline = RecordedPortal(fail=OSError("Network is unreachable"))
    monkeypatch.setattr(cryoet_data_portal, "Client", lambda: offline)
    assert main(["fetch", "portal", "5", "--out", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: portal run 5: ")
    assert "download the run by hand from https://cryoetdataportal.czscience.com/runs/5" in err
    assert not (tmp_path / "x").exists()


def test_the_vesicle_mask_among_the_fetched_annotations():
    fetched = [Path("a/syn_01_membrane-1.0_segmask.mrc"), Path("a/syn_01_vesicle_point.ndjson")]
    assert portal.vesicle_annotation(fetched) is None
    fetched.append(Path("a/syn_01_synaptic_vesicle-1.0_segmask.mrc"))
    assert portal.vesicle_annotation(fetched) == fetched[-1]


@needs_client
def test_runs_of_a_deposition_by_their_tomograms_or_annotations():
    client = RecordedPortal()
    assert portal.deposition_runs(10330, client=client) == [RUN_ID]
    assert [where for _, where in client.asked] == [
        {"tomograms": {"depositionId": {"_eq": 10330}}},
        {"annotations": {"depositionId": {"_eq": 10330}}},
    ]


# --- the tomogram as OME-Zarr ------------------------------------------------------------------


@needs_client
def test_the_zarr_choice_is_the_store_at_the_spacing_and_a_run_without_one_is_refused():
    tomogram = portal.select_files(_metadata(), tomogram_format="zarr", annotations=False)[0]
    assert tomogram.name == "syn_01_1.568nm.zarr" and tomogram.size_bytes == 114567890
    assert tomogram.url.endswith("VoxelSpacing15.680/Tomograms/100/syn_01.zarr")
    assert tomogram.listing_url.startswith("s3://portal-bucket/") and "OME-Zarr" in (
        tomogram.description
    )
    # the annotations are those of the MRC choice: the store is the same tomogram
    assert (
        portal.select_files(_metadata(), tomogram_format="zarr")[1:]
        == (portal.select_files(_metadata())[1:])
    )
    metadata = _metadata()
    for t in metadata["tomograms"]:
        t["https_omezarr_dir"] = None
    with pytest.raises(InputFileError, match="has no tomogram in OME-Zarr format"):
        portal.select_files(metadata, tomogram_format="zarr")
    with pytest.raises(ParameterError, match="choose one of mrc, zarr"):
        portal.fetch_run(RUN_ID, "unused", tomogram_format="tif", client=RecordedPortal())


def _ome_zarr_files(folder, data, scale_angstrom):
    """The files of an OME-NGFF 0.4 store as the portal serves it (zarr v2, axes in Å, two
    levels), as (relative path, bytes)."""
    import zarr

    root = zarr.open_group(str(folder), mode="w", zarr_format=2)
    root.create_array("0", data=data, chunks=(4, 8, 8))
    root.create_array("1", data=data[::2, ::2, ::2], chunks=(4, 8, 8))
    levels = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [s] * 3}]}
        for i, s in enumerate((scale_angstrom, 2 * scale_angstrom))
    ]
    axes = [{"name": n, "type": "space", "unit": "angstrom"} for n in "zyx"]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": levels}]
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@needs_client
def test_a_zarr_store_is_fetched_resumably_and_read_with_its_voxel_size(tmp_path):
    from analysis.io import read_tomogram

    data = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    files = _ome_zarr_files(tmp_path / "source", data, 15.68)
    assert len(files) > 10  # metadata and several chunks per level
    tomogram = portal.select_files(_metadata(), tomogram_format="zarr")[0]
    base = tomogram.url + "/"
    listed = []

    def listing(s3_url):
        listed.append(s3_url)
        return [(name, len(content)) for name, content in files.items()]

    served = []

    def server(url, start, broken=False):
        if broken and len(served) == 5:
            raise urllib.error.URLError("connection reset by peer")
        served.append(url)
        content = files[url.removeprefix(base)]
        return iter([content[start:]]), len(content), start > 0

    out = tmp_path / "run"
    fetch = dict(annotations=False, tomogram_format="zarr", client=RecordedPortal(), progress=False)
    with pytest.raises(InputFileError, match="could not be downloaded"):
        portal.fetch_run(
            RUN_ID, out, open_url=lambda u, s: server(u, s, True), list_store=listing, **fetch
        )
    assert listed == [tomogram.listing_url]
    # half a store never looks like one (zarr would read its missing chunks as zeros)
    assert not (out / "syn_01_1.568nm.zarr").exists()
    assert (out / ".syn_01_1.568nm.zarr.part").is_dir()

    result = portal.fetch_run(RUN_ID, out, open_url=server, list_store=listing, **fetch)
    assert result["tomogram"] == out / "syn_01_1.568nm.zarr"
    assert len(served) == len(files)  # the five complete files were not fetched again
    assert not (out / ".syn_01_1.568nm.zarr.part").exists()
    tomo = read_tomogram(result["tomogram"])
    np.testing.assert_array_equal(tomo.data, data)
    assert tomo.voxel_size_nm == pytest.approx(1.568)
    assert read_tomogram(result["tomogram"], zarr_level=1).voxel_size_nm == pytest.approx(3.136)

    portal.fetch_run(RUN_ID, out, open_url=server, list_store=listing, **fetch)
    assert len(served) == len(files)  # complete: nothing fetched again

    # a file of another size than listed is refused, and the store stays unfinished
    last = sorted(files)[-1]

    def wrong_listing(s3_url):
        return [(n, len(c) + (n == last)) for n, c in files.items()]

    with pytest.raises(InputFileError, match=r"arrived with \d+ bytes, \d+ expected"):
        portal.fetch_run(
            RUN_ID, tmp_path / "other", open_url=server, list_store=wrong_listing, **fetch
        )
    assert not (tmp_path / "other" / "syn_01_1.568nm.zarr").exists()


def test_a_store_listing_cannot_write_outside_its_folder(tmp_path):
    remote = portal.RemoteFile(
        "https://files.example.org/s.zarr", "s.zarr", None, "tomogram", "", "s3://b/s.zarr"
    )
    with pytest.raises(InputFileError, match=r"names \.\./escape"):
        portal.download_store(
            remote, tmp_path, run_id=RUN_ID, progress=False, list_store=lambda u: [("../escape", 1)]
        )

    def unreachable(url):
        raise OSError("Network is unreachable")

    with pytest.raises(InputFileError, match="aws s3 cp --no-sign-request --recursive s3://b/s"):
        portal.download_store(
            remote, tmp_path, run_id=RUN_ID, progress=False, list_store=unreachable
        )
