"""ArviZ just works on a calibration result (issue 20): log_likelihood group, inputs in
constant_data, az.loo / plot_ppc / plot_loo_pit / summary directly and after a NetCDF round
trip; compact repr; progress feedback; marginalisation fallback is a warning; no internal
variable reaches the posterior."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from scipy import stats  # noqa: E402

import vvuq_twin as vt  # noqa: E402
from vvuq_twin.exceptions import MarginalizationWarning  # noqa: E402

S, PRIOR_SD = 0.5, 2.0


def _line_data():
    rng = np.random.default_rng(7)
    x = np.linspace(0.2, 3.0, 14)
    return x, 1.3 * x + rng.normal(0, S, x.size)


@pytest.fixture(scope="module")
def line_result():
    x, y = _line_data()
    twin = vt.Twin("line", vt.PytensorSimulator(lambda X, p: p["b"] * X[:, 0]),
                   [vt.Parameter("b", vt.NormalPrior(0.0, PRIOR_SD))], observation=vt.GaussianObs(sigma=S))
    return vt.calibrate(twin, vt.TwinData(x=x, y=y), draws=1000, tune=500, chains=2, rng=3,
                        progressbar=False)


def _exact_elpd_loo(x, y):
    """Exact leave-one-out predictive log density of the conjugate linear-Gaussian model."""
    out = 0.0
    for i in range(x.size):
        keep = np.arange(x.size) != i
        prec = 1 / PRIOR_SD**2 + np.sum(x[keep] ** 2) / S**2
        mean = np.sum(x[keep] * y[keep]) / S**2 / prec
        out += stats.norm.logpdf(y[i], mean * x[i], np.sqrt(S**2 + x[i] ** 2 / prec))
    return out


def _check_arviz(idata, x, y):
    assert set(idata.observed_data.data_vars) == {"y"}
    np.testing.assert_allclose(idata.constant_data["x"].values[:, 0], x)
    b = idata.posterior["b"].values
    ll = idata.log_likelihood["y"].transpose("chain", "draw", "obs").values
    np.testing.assert_allclose(ll, stats.norm.logpdf(y[None, None, :], b[..., None] * x, S), rtol=1e-10)
    loo = az.loo(idata)
    assert loo["elpd_loo"] == pytest.approx(_exact_elpd_loo(x, y), abs=0.3)
    assert float(np.max(loo["pareto_k"])) < 0.7
    assert az.summary(idata, var_names=["b"], round_to="none").loc["b", "mean"] == pytest.approx(float(b.mean()))
    ax = az.plot_ppc(idata, num_pp_samples=20)
    assert len(np.atleast_1d(ax)[0].get_lines()) >= 20
    ax = az.plot_loo_pit(idata, y="y")
    assert len(ax.get_lines()) >= 1
    matplotlib.pyplot.close("all")


def test_arviz_works_on_the_result_directly(line_result):
    x, y = _line_data()
    _check_arviz(line_result.idata, x, y)


def test_arviz_works_after_netcdf_round_trip(line_result, tmp_path):
    x, y = _line_data()
    path = line_result.to_netcdf(tmp_path / "line.nc")
    back = vt.load_result(path)
    _check_arviz(back.idata, x, y)
    assert "vvuq_twin_diagnostics" not in back.idata.groups()
    xr.testing.assert_allclose(back.diagnostics.table, line_result.diagnostics.table)
    assert back.diagnostics.passed == line_result.diagnostics.passed
    # recomputing the log-likelihood on a loaded result (twin + data attached) gives the same
    back2 = vt.load_result(path, twin=line_result.twin, data=line_result.data).compute_log_likelihood()
    xr.testing.assert_allclose(back2.idata.log_likelihood["y"], line_result.idata.log_likelihood["y"])


def test_repr_is_compact(line_result):
    r = repr(line_result)
    assert r.startswith("TwinResult(twin='line', sampler=nutpie, 2 chains x 1000 draws, 14 obs")
    assert "diagnostics PASS" in r and "parameters: b" in r
    assert len(r.splitlines()) == 4 and len(r) < 600


def test_progress_on_by_default_plain_text_without_terminal(line_result, capfd, monkeypatch):
    from vvuq_twin.progress import Progress

    monkeypatch.setenv("VVUQ_TWIN_PROGRESS_INTERVAL", "0.05")
    with Progress("unit test step", True) as prog:
        import time

        assert not prog.bar  # pytest's captured stderr is no terminal
        time.sleep(0.4)
    err = capfd.readouterr().err
    beats = [ln for ln in err.splitlines() if "unit test step:" in ln and "elapsed" in ln]
    assert err.startswith("[vvuq_twin] unit test step: started") and len(beats) >= 3
    assert "unit test step: done after" in err
    vt.predict(line_result, np.array([1.0, 2.0]), rng=1)
    err = capfd.readouterr().err
    assert "[vvuq_twin] predict twin 'line' at 2 point(s): started" in err and "done after" in err
    vt.predict(line_result, np.array([1.0, 2.0]), rng=1, progressbar=False)
    assert "[vvuq_twin]" not in capfd.readouterr().err
    monkeypatch.setenv("VVUQ_TWIN_PROGRESS", "0")
    vt.predict(line_result, np.array([1.0, 2.0]), rng=1)
    assert "[vvuq_twin]" not in capfd.readouterr().err


def test_relative_noise_falls_back_to_latent_gp_with_a_warning_and_no_leak():
    rng = np.random.default_rng(0)
    x = np.linspace(0.5, 4.0, 8)
    y = 2.0 * x + 0.3 * np.sin(2 * x) + rng.normal(0, 0.05, x.size)
    twin = vt.Twin("rel", vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0]),
                   [vt.Parameter("a", vt.NormalPrior(2.0, 0.5))],
                   discrepancy=vt.GPDiscrepancy(ls=1.0, eta=vt.HalfNormal(0.5)),
                   observation=vt.GaussianObs(sigma=0.05, relative=0.02))
    with pytest.warns(MarginalizationWarning, match="`relative` noise term.*latent GP"):
        res = vt.calibrate(twin, vt.TwinData(x=x, y=y), draws=300, tune=400, chains=2, rng=2,
                           warn=False, progressbar=False)
    internal = [v for v in res.posterior.data_vars if v.endswith("_")]
    assert internal == [] and "delta_gp_rotated_" in res.idata["latent_posterior"]
    # prediction at the data uses the posterior latent GP (not a prior redraw): delta agrees
    pred = vt.predict(res, x, rng=4, progressbar=False)
    d_cal = res.posterior_predictive["delta"].mean(("chain", "draw")).values
    d_pred = pred["delta"].mean(("chain", "draw")).values
    sd_prior = 0.5 * np.sqrt(2 / np.pi)
    assert np.max(np.abs(d_pred - d_cal)) < 0.1 * sd_prior + 0.02
    # explicit choice: no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", MarginalizationWarning)
        twin_explicit = vt.Twin("rel", twin.simulator, twin.parameters,
                                discrepancy=vt.GPDiscrepancy(ls=1.0, eta=vt.HalfNormal(0.5), marginalize=False),
                                observation=twin.observation)
        assert not twin_explicit.marginal_discrepancy()


def test_old_family_names_are_deprecated_aliases():
    with pytest.deprecated_call(match="NormalPrior"):
        old = vt.Normal
    with pytest.deprecated_call(match="GaussianObs"):
        g = vt.Gaussian
    with pytest.deprecated_call(match="StudentTObs"):
        t = vt.StudentT
    assert old is vt.NormalPrior and g is vt.GaussianObs and t is vt.StudentTObs
    assert vt.StudentTPrior is not vt.StudentTObs
    # the declaration hash does not depend on which name was used
    assert old(0.0, 1.0).spec() == vt.NormalPrior(0.0, 1.0).spec()
