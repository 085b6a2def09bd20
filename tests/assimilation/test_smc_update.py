"""Known answers of the SMC update of a static-parameter posterior."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from vvuq_twin.assimilation import (
    ParticleCollapseError,
    ParticlePosterior,
    concat_data,
    effective_sample_size,
    smc_update,
    systematic_resample,
)
from vvuq_twin.testing.problems_assim import ConjugateNormalMean, ExponentialDecay


def _as_dict(ds):
    return {"time": ds["time"].values, "y": ds["y"].values}


def _assimilate(model, batches, n=2000, seed=0, **kw):
    g = np.random.default_rng(seed)
    post = ParticlePosterior(model.sample_prior(n, rng=g))
    past, reports = {}, []
    for i, b in enumerate(batches):
        d = _as_dict(b) if isinstance(b, xr.Dataset) else b
        post, rep = smc_update(post, d, model.log_likelihood, model.log_prior, past_data=past,
                               batch_index=i, rng=g, **kw)
        past = concat_data([past, d])
        reports.append(rep)
    return post, reports, past


def test_conjugate_batch_by_batch_equals_batch_posterior():
    model = ConjugateNormalMean(sigma=1.3, m0=0.5, s0=4.0)
    y = np.random.default_rng(3).normal(2.0, 1.3, 200)
    state = (model.m0, model.s0)
    for chunk in np.array_split(y, 17):
        state = model.update(state, chunk)
    full = model.posterior(y)
    assert state[0] == pytest.approx(full[0], abs=1e-12)
    assert state[1] == pytest.approx(full[1], abs=1e-12)
    # and it is not the prior (the test can fail)
    assert abs(full[0] - model.m0) > 1.0


def test_smc_on_conjugate_model_matches_exact_posterior():
    model = ConjugateNormalMean(sigma=1.0, m0=0.0, s0=5.0)
    y = np.random.default_rng(5).normal(1.5, 1.0, 60)
    batches = [{"time": np.arange(i * 6, i * 6 + 6, dtype=float), "y": c} for i, c in enumerate(np.split(y, 10))]
    post, reports, _ = _assimilate(model, batches, n=4000, seed=1)
    m, s = model.posterior(y)
    ess = post.ess
    assert float(post.mean()["mu"]) == pytest.approx(m, abs=4 * s / np.sqrt(ess) + 0.02 * s)
    assert float(post.sd()["mu"]) == pytest.approx(s, rel=0.08)
    # cumulative log-likelihood carried per particle equals a fresh evaluation on all data
    np.testing.assert_allclose(post.log_likelihood,
                               model.log_likelihood(post.values, {"y": y}), rtol=1e-10)
    assert reports[0].status == "resample-move" and len(reports[0].phis) > 1  # informative first batch


@pytest.fixture(scope="module")
def decay_case():
    model = ExponentialDecay()
    batches = model.simulate(10, 5, rng=1)
    ref = model.grid_posterior(batches)
    return model, batches, ref


def test_smc_after_k_batches_matches_quadrature_posterior(decay_case):
    model, batches, ref = decay_case
    post, reports, _ = _assimilate(model, batches, n=3000, seed=2)
    mean = np.array([post.mean()["a"], post.mean()["b"]])
    sd = np.array([post.sd()["a"], post.sd()["b"]])
    # MC error of a weighted mean ~ sd / sqrt(ESS); allow for correlation from resampling
    np.testing.assert_array_less(np.abs(mean - ref["mean"]), 5 * ref["sd"] / np.sqrt(post.ess) + 0.02 * ref["sd"])
    np.testing.assert_allclose(sd, ref["sd"], rtol=0.1)
    draws = post.resample(2000, rng=3)
    refd = model.sample_grid_posterior(ref, 2000, rng=4)
    for j, name in enumerate(["a", "b"]):
        assert stats.ks_2samp(draws[name], refd[:, j]).pvalue > 0.01
    assert any(r.status == "resample-move" for r in reports)
    assert all(r.ess_final > 0.25 * 3000 for r in reports)


def test_misspecified_likelihood_is_rejected_by_the_same_check(decay_case):
    """Failure case: a wrong noise sd (0.3 instead of 0.1) gives a posterior the KS test rejects."""
    model, batches, ref = decay_case
    wrong = ExponentialDecay(sigma=0.3)
    post, _, _ = _assimilate(wrong, batches, n=3000, seed=2)
    draws = post.resample(2000, rng=3)
    refd = model.sample_grid_posterior(ref, 2000, rng=4)
    assert min(stats.ks_2samp(draws[n], refd[:, j]).pvalue for j, n in enumerate("ab")) < 1e-4


def test_without_rejuvenation_the_particles_degenerate(decay_case):
    """Failure case (too small a budget): reweighting a 200-particle prior sample by all data at
    once leaves a handful of distinct particles, while the SMC update keeps a diverse cloud."""
    model, batches, _ = decay_case
    prior = model.sample_prior(200, rng=0)
    all_data = concat_data([_as_dict(b) for b in batches])
    ess_is = effective_sample_size(model.log_likelihood(prior, all_data))
    post, _, _ = _assimilate(model, batches, n=200, seed=0)
    assert ess_is < 10
    assert len(np.unique(post.values["a"])) > 100


def test_tempering_keeps_ess_at_target_on_informative_batch():
    model = ExponentialDecay()
    batch = _as_dict(model.simulate(1, 40, rng=9)[0])  # 40 points from the prior: very informative
    post0 = ParticlePosterior(model.sample_prior(1000, rng=1))
    post, rep = smc_update(post0, batch, model.log_likelihood, model.log_prior, ess_target=0.5, rng=1)
    assert rep.ess_one_step < 50
    assert len(rep.phis) >= 3 and rep.phis[-1] == 1.0 and np.all(np.diff(rep.phis) > 0)
    assert rep.ess_final >= 0.5 * 1000 - 1e-6
    # every stage's moves were accepted often enough and decorrelated the particles
    assert all(0.2 < a <= 1.0 for a in rep.acceptance) and rep.mixing_ok
    assert len(rep.kernel) == len(rep.acceptance) and set(rep.kernel) <= {"independent", "mixture", "rwm"}
    assert max(rep.mixing.values()) <= rep.mixing_threshold
    assert "tempered" in rep.reason


def test_refit_fallback_on_collapse_records_reason(decay_case):
    model, batches, ref = decay_case
    batch = _as_dict(batches[0])
    post0 = ParticlePosterior(model.sample_prior(500, rng=1))
    calls = []

    def refit(data, rng):
        calls.append(data["y"].size)
        r = model.grid_posterior([xr.Dataset({"y": ("time", data["y"])}, coords={"time": data["time"]})])
        d = model.sample_grid_posterior(r, 500, rng=rng)
        return {"a": d[:, 0], "b": d[:, 1]}

    post, rep = smc_update(post0, batch, model.log_likelihood, model.log_prior, collapse_ess=0.5,
                           refit=refit, rng=2)
    assert rep.status == "refit" and calls == [5]
    assert "ESS of the one-step reweight" in rep.reason and "full refit" in rep.reason
    np.testing.assert_allclose(post.log_likelihood, model.log_likelihood(post.values, batch))
    # without a refit callback the collapse is an error and the input posterior is untouched
    before = post0.values["a"].copy()
    with pytest.raises(ParticleCollapseError, match="pass a `refit` callback"):
        smc_update(post0, batch, model.log_likelihood, model.log_prior, collapse_ess=0.5, rng=2)
    np.testing.assert_array_equal(post0.values["a"], before)


def test_smc_update_reproducible(decay_case):
    model, batches, _ = decay_case
    a, _, _ = _assimilate(model, batches[:3], n=300, seed=4)
    b, _, _ = _assimilate(model, batches[:3], n=300, seed=4)
    c, _, _ = _assimilate(model, batches[:3], n=300, seed=5)
    np.testing.assert_array_equal(a.values["a"], b.values["a"])
    np.testing.assert_array_equal(a.log_weights, b.log_weights)
    assert not np.array_equal(a.values["a"], c.values["a"])


def test_particles_from_chain_draw_posterior_and_netcdf_roundtrip(tmp_path):
    g = np.random.default_rng(0)
    posterior = xr.Dataset({"a": (("chain", "draw"), g.normal(size=(2, 50))),
                            "w": (("chain", "draw", "w_dim_0"), g.normal(size=(2, 50, 3)))})
    p = ParticlePosterior.from_dataset(posterior)
    assert p.n_particles == 100 and p.values["w"].shape == (100, 3)
    np.testing.assert_array_equal(p.values["a"], posterior["a"].values.reshape(-1))
    p.to_dataset().to_netcdf(tmp_path / "p.nc", engine="h5netcdf")
    q = ParticlePosterior.from_dataset(xr.load_dataset(tmp_path / "p.nc", engine="h5netcdf"))
    np.testing.assert_array_equal(q.values["w"], p.values["w"])
    np.testing.assert_array_equal(q.log_weights, p.log_weights)


def test_systematic_resample_is_unbiased():
    g = np.random.default_rng(0)
    w = np.array([0.1, 0.2, 0.3, 0.4])
    counts = np.bincount(systematic_resample(np.log(w), g, 1000), minlength=4)
    np.testing.assert_array_equal(np.abs(counts - 1000 * w) <= 1, True)


def test_smc_bad_input_messages(decay_case):
    model, batches, _ = decay_case
    post0 = ParticlePosterior(model.sample_prior(50, rng=1))
    batch = _as_dict(batches[0])
    with pytest.raises(ValueError, match=r"returned shape \(\); expected \(50,\)"):
        smc_update(post0, batch, lambda th, d: 0.0, model.log_prior, rng=0)
    with pytest.raises(ParticleCollapseError, match="zero likelihood under every particle"):
        smc_update(post0, batch, lambda th, d: np.full(50, -np.inf), model.log_prior, rng=0)
    with pytest.raises(ValueError, match="ess_target"):
        smc_update(post0, batch, model.log_likelihood, model.log_prior, ess_target=1.5, rng=0)
    with pytest.raises(ValueError, match="same leading"):
        ParticlePosterior({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="non-finite"):
        ParticlePosterior({"a": np.array([0.0, np.nan])})


# ---------------------------------------------------------------------------------------------
# assimilate(result, new_data): the twin's own PyMC model as the SMC likelihood
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated_decay_twin(decay_case):
    from vvuq_twin import calibrate

    model, batches, _ = decay_case
    res = calibrate(model.twin(), model.twin_data(batches[:1]), draws=600, chains=2, rng=1,
                    posterior_predictive=False, warn=False)
    return model, batches, res


def test_assimilate_twin_matches_quadrature_posterior(calibrated_decay_twin):
    from vvuq_twin.assimilation import assimilate

    model, batches, res = calibrated_decay_twin
    n_post = res.idata.posterior.sizes["draw"] * res.idata.posterior.sizes["chain"]
    cur = res
    for k in range(1, 5):
        cur = assimilate(cur, model.twin_data(batches[k:k + 1]), time_input="time", rng=k)
    assert cur.data.n == 25 and [r.batch_index for r in cur.reports] == [0, 1, 2, 3]
    assert res.idata.posterior.sizes["draw"] * res.idata.posterior.sizes["chain"] == n_post
    # the compiled twin likelihood equals the hand-written one
    theta = {k: cur.particles.values[k][:50] for k in "ab"}
    data = {"time": cur.data.x[:, 0], "y": cur.data.y}
    np.testing.assert_allclose(cur.density.log_likelihood(theta, {"x": cur.data.x, "y": cur.data.y}),
                               model.log_likelihood(theta, data), rtol=1e-9)
    np.testing.assert_allclose(cur.density.log_prior(theta), model.log_prior(theta), atol=1e-7)  # pymc rounds log(2 pi)
    ref = model.grid_posterior(batches[:5])
    mean = np.array([cur.particles.mean()[k] for k in "ab"])
    sd = np.array([cur.particles.sd()[k] for k in "ab"])
    ess = cur.particles.ess
    np.testing.assert_array_less(np.abs(mean - ref["mean"]), 5 * ref["sd"] / np.sqrt(ess) + 0.03 * ref["sd"])
    np.testing.assert_allclose(sd, ref["sd"], rtol=0.15)
    draws = cur.draws(1000, rng=0)
    assert draws["a"].dims == ("chain", "draw")
    refd = model.sample_grid_posterior(ref, 1000, rng=1)
    for j, k in enumerate("ab"):
        assert stats.ks_2samp(draws[k].values.ravel(), refd[:, j]).pvalue > 0.001
    # failure case: the calibration posterior alone (one batch) is rejected against it
    post1 = res.idata.posterior["b"].values.ravel()
    assert stats.ks_2samp(post1, refd[:, 1]).pvalue < 1e-4


def test_assimilate_twin_bad_data(calibrated_decay_twin):
    from vvuq_twin import TwinData
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.exceptions import DataValidationError

    model, batches, res = calibrated_decay_twin
    good = model.twin_data(batches[1:2])
    before = res.idata.posterior["a"].values.copy()
    with pytest.raises(DataValidationError, match="out of order"):
        assimilate(res, TwinData(x=good.x[::-1], y=good.y[::-1], input_names=["time"]), time_input="time")
    with pytest.raises(DataValidationError, match="not after the last assimilated time"):
        assimilate(res, model.twin_data(batches[:1]), time_input="time")
    with pytest.raises(DataValidationError, match=r"has inputs \['t'\].*calibrated on \['time'\]"):
        assimilate(res, TwinData(x=good.x, y=good.y, input_names=["t"]))
    with pytest.raises(DataValidationError, match="NaN"):
        assimilate(res, TwinData(x=good.x, y=np.r_[good.y[:-1], np.nan], input_names=["time"], missing="mask"))
    with pytest.raises(DataValidationError, match="must be TwinData"):
        assimilate(res, {"x": good.x, "y": good.y})
    np.testing.assert_array_equal(res.idata.posterior["a"].values, before)


@pytest.mark.slow
def test_assimilate_twin_falls_back_to_calibrate_on_collapse(calibrated_decay_twin):
    from vvuq_twin.assimilation import assimilate

    model, batches, res = calibrated_decay_twin
    out = assimilate(res, model.twin_data(batches[1:3]), collapse_ess=0.999, rng=3)
    rep = out.reports[-1]
    assert rep.status == "refit" and "collapse threshold" in rep.reason and "full refit" in rep.reason
    ref = model.grid_posterior(batches[:3])
    mean = np.array([out.particles.mean()[k] for k in "ab"])
    np.testing.assert_array_less(np.abs(mean - ref["mean"]), 0.15 * ref["sd"])
    with pytest.raises(Exception, match="pass a `refit` callback"):
        assimilate(res, model.twin_data(batches[1:3]), collapse_ess=0.999, refit=None, rng=3)


def test_assimilate_hierarchical_twin_units():
    """Per-unit parameters keep the calibration's unit order; unknown units are refused."""
    import arviz as az

    from vvuq_twin import Gaussian, Hierarchy, Normal, Parameter, PytensorSimulator, Twin, TwinData
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.exceptions import DataValidationError
    from vvuq_twin.inference import TwinResult

    twin = Twin(name="h", simulator=PytensorSimulator(lambda x, p: p["k"] * x[:, 0]),
                parameters=[Parameter("k", Normal(0.0, 1.0), per_unit=True)],
                observation=Gaussian(sigma=0.2), hierarchy=Hierarchy(dim="unit"))
    g = np.random.default_rng(0)
    units = np.repeat(["u1", "u2", "u3"], 4)
    data = TwinData(x=np.tile(np.linspace(0, 1, 4), 3), y=g.normal(size=12), unit=units)
    n = 400  # prior draws standing in for calibration draws (only the mechanics are tested)
    post = xr.Dataset(
        {"k_mu": (("chain", "draw"), g.normal(size=(1, n))),
         "k_sigma": (("chain", "draw"), np.abs(g.normal(size=(1, n)))),
         "k_z": (("chain", "draw", "unit"), g.normal(size=(1, n, 3)))},
        coords={"unit": ["u1", "u2", "u3"]})
    res = TwinResult(idata=az.InferenceData(posterior=post), twin=twin, data=data,
                     declaration_hash=twin.hash, data_hash=data.hash)
    new = TwinData(x=np.linspace(0, 1, 5), y=0.9 * np.linspace(0, 1, 5), unit=["u2"] * 5)
    out = assimilate(res, new, rng=1)
    assert out.particles.values["k_z"].shape == (n, 3)
    # unit u2's slope k = k_mu + k_sigma z_2 is pinned by its 4 + 5 rows (noise sd 0.2, little
    # pooling at these data): its posterior mean is near the least-squares slope of those rows
    v = out.particles.values
    k2 = v["k_mu"] + v["k_sigma"] * v["k_z"][:, 1]
    w = np.exp(out.particles.log_weights)
    x2 = np.r_[data.x[units == "u2", 0], new.x[:, 0]]
    y2 = np.r_[data.y[units == "u2"], new.y]
    slope = float(x2 @ y2 / (x2 @ x2))
    assert abs(float(w @ k2) - slope) < 0.15, (float(w @ k2), slope)
    assert np.sqrt(float(w @ (k2 - w @ k2) ** 2)) < 0.2
    with pytest.raises(DataValidationError, match=r"unit\(s\) \['u9'\] the twin does not know"):
        assimilate(res, TwinData(x=[0.5], y=[0.4], unit=["u9"]), new_units=False, rng=1)
    with pytest.raises(DataValidationError, match="unit labels exactly when"):
        assimilate(res, TwinData(x=[0.5], y=[0.4]), rng=1)
