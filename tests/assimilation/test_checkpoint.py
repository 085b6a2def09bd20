"""Streams: data checks before any state change, rejected batches kept, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from vvuq_twin.assimilation import (
    AssimilationRun,
    ParticlePosterior,
    StreamDataError,
)
from vvuq_twin.testing.problems_assim import ExponentialDecay

N_PARTICLES = 800
SEED = 11


def make_stream():
    """12 valid batches with one batch containing a NaN inserted at position 5 (13 in all)."""
    model = ExponentialDecay()
    batches = model.simulate(12, 5, rng=1)
    bad = batches[5].copy(deep=True)
    bad["y"][2] = np.nan
    return model, batches[:5] + [bad] + batches[5:]


def new_run(model, ckpt=None):
    return AssimilationRun(
        ParticlePosterior(model.sample_prior(N_PARTICLES, rng=0)), model.log_likelihood,
        model.log_prior, variables={"y": "mm"}, time_units="s", seed=SEED, checkpoint_dir=ckpt,
        on_invalid="record", n_mcmc_steps=5,
    )


SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {testdir!r})
    from test_checkpoint import make_stream, new_run
    model, stream = make_stream()
    run = new_run(model, sys.argv[1])
    for i in range(run.n_seen, len(stream)):
        run.process(stream[i])
        print(f"done {{i}}", flush=True)
        time.sleep(0.4)
    """
)


def _assert_same_posterior(p, q):
    for k in p.values:
        np.testing.assert_array_equal(p.values[k], q.values[k])
    np.testing.assert_array_equal(p.log_weights, q.log_weights)
    np.testing.assert_array_equal(p.log_likelihood, q.log_likelihood)


def test_sigkill_midway_and_resume_is_bitwise_identical(tmp_path):
    model, stream = make_stream()
    ckpt = tmp_path / "ckpt"
    script = tmp_path / "stream_worker.py"
    script.write_text(SCRIPT.format(testdir=os.path.dirname(__file__)))
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "done 6":
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    step = (ckpt / "LATEST").read_text().strip()
    done = int(step.split("_")[1])
    assert 7 <= done < len(stream)  # killed mid-way, after the rejected batch

    resumed = AssimilationRun.resume(ckpt, model.log_likelihood, model.log_prior)
    assert resumed.n_seen == done
    assert [r["batch_index"] for r in resumed.rejected] == [5]
    assert resumed.rejected[0]["batch"]["y"].isnull().sum() == 1  # the rejected batch is kept
    for i in range(resumed.n_seen, len(stream)):
        resumed.process(stream[i])

    reference = new_run(model)
    reference.run(stream)
    _assert_same_posterior(resumed.posterior, reference.posterior)
    assert [r.status for r in resumed.reports] == [r.status for r in reference.reports]
    meta = json.loads((ckpt / f"step_{len(stream):06d}" / "meta.json").read_text())
    assert meta["rng_state"]["bit_generator"] == "PCG64"
    # stored RNG state is that of the last batch's generator after its update
    assert meta["rng_state"] == reference.rng_state == resumed.rng_state
    # a different seed gives a different posterior (the comparison can fail)
    other = AssimilationRun(ParticlePosterior(model.sample_prior(N_PARTICLES, rng=0)),
                            model.log_likelihood, model.log_prior, variables={"y": "mm"},
                            time_units="s", seed=SEED + 1, on_invalid="record", n_mcmc_steps=5)
    other.run(stream)
    assert not np.array_equal(other.posterior.values["a"], reference.posterior.values["a"])


@pytest.fixture()
def run_after_two(tmp_path):
    model, stream = make_stream()
    run = AssimilationRun(
        ParticlePosterior(model.sample_prior(300, rng=0)), model.log_likelihood, model.log_prior,
        variables={"y": "mm"}, time_units="s", seed=3, checkpoint_dir=tmp_path / "c",
    )
    run.process(stream[0])
    run.process(stream[1])
    return model, stream, run


def _mutations(stream):
    good = stream[2]
    shuffled = good.isel(time=[0, 2, 1, 3, 4])
    old = stream[0].copy(deep=True)
    wrong_units = good.copy(deep=True)
    wrong_units["y"].attrs["units"] = "m"
    no_units = good.copy(deep=True)
    del no_units["y"].attrs["units"]
    extra = good.assign(z=("time", np.ones(5)))
    time_units = good.copy(deep=True)
    time_units["time"].attrs["units"] = "h"
    return [
        (shuffled, "timestamps are out of order"),
        (old, "not after the last assimilated time"),
        (stream[5], "NaN/inf value"),
        (wrong_units, "has units 'm' but the twin expects 'mm'"),
        (no_units, "has units None but the twin expects 'mm'"),
        (extra, r"variables \['z'\] the twin does not know"),
        (time_units, "coordinate has units 'h' but the twin expects 's'"),
        (good.rename(time="t"), "needs a 'time' dim"),
    ]


def test_bad_batches_rejected_before_any_state_change(run_after_two, tmp_path):
    model, stream, run = run_after_two
    before = run.posterior.to_dataset().copy(deep=True)
    n_data = run.data["y"].size
    for k, (batch, msg) in enumerate(_mutations(stream)):
        with pytest.raises(StreamDataError, match=msg):
            run.process(batch)
        xr.testing.assert_identical(run.posterior.to_dataset(), before)
        assert run.data["y"].size == n_data
        assert run.reports[-1].status == "rejected"
        assert run.reports[-1].reason.startswith("StreamDataError: Batch")
        assert len(run.rejected) == k + 1
    # every rejected batch is kept on disk and in the record, with its reason
    assert len(list((tmp_path / "c" / "rejected").glob("batch_*.nc"))) == len(_mutations(stream))
    resumed = AssimilationRun.resume(tmp_path / "c", model.log_likelihood, model.log_prior)
    assert [r["reason"].split(":")[0] for r in resumed.rejected] == ["StreamDataError"] * len(_mutations(stream))
    xr.testing.assert_identical(resumed.posterior.to_dataset(), before)
    # the stream goes on with the next good batch
    rep = resumed.process(stream[2])
    assert rep.status in ("reweighted", "resample-move")


def test_collapse_without_refit_rejects_batch_and_keeps_posterior(tmp_path):
    model, stream = make_stream()
    run = AssimilationRun(
        ParticlePosterior(model.sample_prior(300, rng=0)), model.log_likelihood, model.log_prior,
        variables={"y": "mm"}, seed=3, on_invalid="record", collapse_ess=0.9,
    )
    before = run.posterior.to_dataset()
    rep = run.process(stream[0])
    assert rep.status == "rejected" and "ParticleCollapseError" in rep.reason
    assert "collapse threshold" in rep.reason
    xr.testing.assert_identical(run.posterior.to_dataset(), before)
    assert run.rejected[0]["batch"] is stream[0]


def test_checkpoint_directory_errors(tmp_path, run_after_two):
    model, stream, run = run_after_two
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        AssimilationRun.resume(tmp_path / "empty", model.log_likelihood, model.log_prior)
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        AssimilationRun(run.posterior, model.log_likelihood, model.log_prior, variables={"y": "mm"},
                        seed=3, checkpoint_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="non-negative int"):
        AssimilationRun(run.posterior, model.log_likelihood, model.log_prior, variables={"y": "mm"}, seed=None)
    # only the last complete step is kept
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.name.startswith("step_")) == ["step_000002"]
    ds = run.reports_dataset()
    assert ds.sizes["batch"] == 2 and set(ds["status"].values) <= {"reweighted", "resample-move"}
