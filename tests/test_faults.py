"""Injected faults: processes killed while writing or training, workers dying, and repeat runs.

Nothing may be lost or corrupted: a file being written when its process is killed is either
the old one or the new one; a batch whose worker dies finishes on re-run without redoing
finished tomograms; training killed in the middle of an epoch resumes to the very weights of
an uninterrupted run; and the same segmentation run twice gives byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.io import read_tomogram, write_mrc


def _run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("writer", ["open_mrc_output", "write_mrc"])
def test_a_writer_killed_mid_file_leaves_the_old_file(tmp_path, writer):
    target = tmp_path / "map.mrc"
    old = np.full((8, 16, 16), 7.0, np.float32)
    write_mrc(target, old, 2.2)
    child = f"""
        import os, signal, sys
        import numpy as np
        from analysis.io import open_mrc_output, write_mrc

        path, shape = sys.argv[1], (64, 128, 128)
        if {writer!r} == "open_mrc_output":
            with open_mrc_output(path, shape, 2.2) as out:
                for z in range(shape[0]):
                    out[z] = z
                    if z == shape[0] // 2:
                        os.kill(os.getpid(), signal.SIGKILL)
        else:
            import analysis.io.tomogram as tomogram_io
            def die(mrc):
                os.kill(os.getpid(), signal.SIGKILL)  # all data copied, header not yet final
            tomogram_io._set_header_stats = die
            write_mrc(path, np.ones(shape, np.float32), 2.2)
    """
    result = _run_child(child, str(target))
    assert result.returncode == -signal.SIGKILL, result.stderr
    np.testing.assert_array_equal(read_tomogram(target).data, old)


def test_training_killed_mid_epoch_resumes_to_identical_weights(tmp_path):
    child = """
        import os, signal, sys
        import numpy as np, torch
        from analysis.io import paint_ball
        from analysis.models import UNetConfig
        from analysis.train import TrainConfig, TrainingVolume, train

        out, kill_at = sys.argv[1], int(sys.argv[2])
        labels = np.zeros((24, 32, 32), np.int32)
        paint_ball(labels, np.array([12.0, 10.0, 10.0]), 5.0, 1)
        image = np.where(labels > 0, -1.0, 0.0) + np.random.default_rng(0).normal(0, 0.3, labels.shape)
        vol = TrainingVolume(image.astype(np.float32), (labels > 0).astype(np.uint8), name="toy")
        steps = [0]
        real_step = torch.optim.AdamW.step
        def counted(self, *a, **k):
            steps[0] += 1
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(self, *a, **k)
        torch.optim.AdamW.step = counted
        cfg = TrainConfig(epochs=3, steps_per_epoch=4, batch_size=2, patch_size=16,
                          val_patch_size=16, lr=5e-3, warmup_steps=2, seed=3)
        train([vol], [vol], out, voxel_size_nm=2.0,
              model_config=UNetConfig(depth=1, base_channels=4, dropout=0.0),
              config=cfg, resume=True, progress=False)
    """
    full = _run_child(child, str(tmp_path / "full.pt"), "0")
    assert full.returncode == 0, full.stderr
    killed = _run_child(child, str(tmp_path / "cut.pt"), "7")  # step 7: inside epoch 2
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["metrics"]["epoch"] == 1
    resumed = _run_child(child, str(tmp_path / "cut.pt"), "0")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "full.pt", weights_only=True)["model_state"]
    b = torch.load(tmp_path / "cut.pt", weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_segmenting_twice_gives_byte_identical_files(segmented_example, tmp_path):
    from analysis.cli import main
    from analysis.postprocess import OUTPUT_SUFFIXES

    tomogram, first = segmented_example.files["tomogram"], segmented_example.out
    # the first run's command, run again later in the same process
    assert main([*segmented_example.args, "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(tomogram.stem + suffix for suffix in OUTPUT_SUFFIXES.values())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_a_batch_whose_worker_dies_finishes_on_rerun_without_redoing_work(quick_crop, tmp_path):
    from distributed import Client, LocalCluster

    from analysis.batch import run_batch

    source = quick_crop  # 19 vesicle centres
    inputs = []
    for name in ("a", "b", "c"):
        shutil.copy(source, tmp_path / f"{name}.mrc")
        inputs.append(tmp_path / f"{name}.mrc")
    out = tmp_path / "out"
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    try:
        victim = sorted(client.scheduler_info()["workers"])[0]

        killed = []

        def kill_one_worker():
            time.sleep(1.0)  # the tasks are running by then
            try:
                client.run(lambda: os.kill(os.getpid(), signal.SIGKILL), workers=[victim])
            except Exception:  # the worker dies before it can answer: that is the point
                pass
            deadline = time.monotonic() + 20
            while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.2)  # the scheduler notices the closed connection
            killed.append(victim not in client.scheduler_info()["workers"])

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        first = run_batch(inputs, out, client=client, retries=0, progress=False)
        killer.join()
        assert killed == [True]  # the worker really died
    finally:
        client.close()
        cluster.close()
    # Whatever the first run achieved, the second finishes the rest and redoes nothing.
    done_first = set(first.loc[first["status"] == "done", "tomogram"])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.mrc")}
    second = run_batch(inputs, out, progress=False)
    status = dict(zip(second["tomogram"], second["status"], strict=True))
    assert set(status.values()) <= {"done", "skipped"}
    assert {t for t, s in status.items() if s == "skipped"} == done_first
    for name, stamp in stamps.items():
        assert (out / name).stat().st_mtime_ns == stamp
    assert len(list(out.glob("*_vesicles.csv"))) == 3
    assert all(pd.read_csv(p)["kept"].sum() >= 15 for p in out.glob("*_vesicles.csv"))
