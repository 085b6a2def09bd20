"""SMC results save and load like NUTS results; SMC options, diagnostics and sampler choice.

Known answers: a linear-Gaussian twin with a conjugate Normal prior, whose posterior and log
marginal likelihood are closed form.
"""

import time

import numpy as np
import pytest
import scipy.stats as st
import xarray as xr

import vvuq_twin as vt
from vvuq_twin.exceptions import SamplerChoiceWarning
from vvuq_twin.inference import sampler_choice
from vvuq_twin.inference.smc import SMCOptions, smc_checks, smc_sample_stats

SIG, PRIOR_SD = 0.1, 1.0
X = np.linspace(0.0, 1.0, 15)
Y = 2.0 * X + np.random.default_rng(0).normal(0.0, SIG, X.size)


def _bb(x, p):
    return p["b"] * x[:, 0]


def _bb_jac(x, p):
    return x[:, :1].copy()


def _twin(sim):
    return vt.Twin("lin", sim, [vt.Parameter("b", vt.Normal(0.0, PRIOR_SD))],
                   observation=vt.Gaussian(sigma=SIG))


def _exact():
    prec = np.sum(X**2) / SIG**2 + 1.0 / PRIOR_SD**2
    mean = np.sum(X * Y) / SIG**2 / prec
    cov = SIG**2 * np.eye(X.size) + PRIOR_SD**2 * np.outer(X, X)
    log_ml = st.multivariate_normal(np.zeros(X.size), cov).logpdf(Y)
    return mean, 1.0 / np.sqrt(prec), log_ml


@pytest.fixture(scope="module")
def results():
    data = vt.TwinData(x=X, y=Y)
    pyt = _twin(vt.PytensorSimulator(lambda x, p: p["b"] * x[:, 0], name="lin"))
    out = {
        "nutpie": vt.calibrate(pyt, data, method="nutpie", draws=300, tune=300, chains=2, rng=1, warn=False),
        "pymc": vt.calibrate(pyt, data, method="pymc", draws=300, tune=300, chains=2, rng=1, warn=False),
        "smc": vt.calibrate(_twin(vt.BlackBoxSimulator(_bb, ["b"])), data, method="smc", draws=500,
                            chains=3, rng=1, warn=False),
    }
    return out


@pytest.mark.parametrize("sampler", ["nutpie", "pymc", "smc"])
def test_round_trip_every_sampler(results, sampler, tmp_path):
    res = results[sampler]
    assert res.info["sampler"] == sampler
    path = res.to_netcdf(tmp_path / f"{sampler}.nc")
    back = vt.load_result(path, twin=res.twin, data=res.data)
    np.testing.assert_array_equal(back.posterior["b"].values, res.posterior["b"].values)
    for v in res.idata.sample_stats.data_vars:
        a, b = np.asarray(res.idata.sample_stats[v]), np.asarray(back.idata.sample_stats[v])
        assert a.dtype != object and b.shape == a.shape
        np.testing.assert_array_equal(a, b)
    assert back.info == res.info
    assert back.diagnostics.checks == res.diagnostics.checks
    mean, sd, _ = _exact()
    b = res.posterior["b"].values.ravel()
    assert abs(b.mean() - mean) < 5 * sd / np.sqrt(200)
    assert abs(b.std() / sd - 1) < 0.25


def test_smc_sample_stats_named_numeric(results):
    res = results["smc"]
    ss = res.idata.sample_stats
    assert "beta" not in ss and "beta" not in res.posterior  # schedule cannot pass for a parameter
    assert ss["tempering_beta"].dims == ("chain", "stage")
    assert ss["log_marginal_likelihood"].dims == ("chain",)
    n = ss["n_stages"].values
    for c in range(ss.sizes["chain"]):
        beta = ss["tempering_beta"].values[c, : n[c]]
        assert beta[-1] == 1.0 and np.all(np.diff(beta) > 0) and beta[0] > 0
        assert np.all(np.isnan(ss["tempering_beta"].values[c, n[c]:]))
        # every stage but the last targets ESS = threshold * particles (PyMC rounds it down)
        ess = ss["stage_ess"].values[c, : n[c]]
        assert np.all(np.abs(ess[:-1] - 0.5 * 500) < 3) and ess[-1] >= 0.5 * 500 - 3
    assert set(res.diagnostics.checks) >= {"rhat", "ess_bulk", "smc_accept_rate", "smc_log_ml_spread"}
    # what SMC used, not NUTS settings
    assert "tune" not in res.info
    assert res.info["smc"]["particles_per_run"] == 500 and res.info["smc"]["runs"] == 3
    assert res.info["smc"]["kernel"] == "imh" and res.info["smc"]["n_stages"] == n.tolist()


def test_smc_log_marginal_likelihood_known_answer(results):
    _, _, log_ml = _exact()
    est = results["smc"].idata.sample_stats["log_marginal_likelihood"].values
    # SMC's estimate of log p(y) has O(1/sqrt(particles)) error; each run within 0.3 nats
    assert np.all(np.abs(est - log_ml) < 0.3), (est, log_ml)


def _raw(values_by_run, layout):
    """PyMC's SMC sample_stats in each of its three layouts."""
    if layout == "single":
        (run,) = values_by_run
        return xr.Dataset({k: (("chain", "draw"), np.array([v])) for k, v in run.items()})
    keys = values_by_run[0].keys()
    if layout == "equal":
        return xr.Dataset({k: (("chain", "draw"), np.array([r[k] for r in values_by_run], dtype=object))
                           for k in keys})
    arr = {}
    for k in keys:
        a = np.empty((1, len(values_by_run)), dtype=object)
        for i, r in enumerate(values_by_run):
            a[0, i] = list(r[k])
        arr[k] = (("chain", "draw"), a)
    return xr.Dataset(arr)


def _run(betas, acc, lml):
    n = len(betas)
    return {"log_marginal_likelihood": [np.nan] * (n - 1) + [lml], "beta": betas, "accept_rate": acc}


def test_conversion_of_each_pymc_layout():
    r1 = _run([0.1, 0.5, 1], [0.9, 0.8, 0.7], -3.0)
    r2 = _run([0.2, 1], [0.6, 0.5], -3.5)
    out = smc_sample_stats(_raw([r1, r2], "ragged"), nchain=2)
    np.testing.assert_array_equal(out["tempering_beta"].values, [[0.1, 0.5, 1.0], [0.2, 1.0, np.nan]])
    np.testing.assert_array_equal(out["stage_accept_rate"].values, [[0.9, 0.8, 0.7], [0.6, 0.5, np.nan]])
    np.testing.assert_array_equal(out["log_marginal_likelihood"].values, [-3.0, -3.5])
    np.testing.assert_array_equal(out["n_stages"].values, [3, 2])
    r3 = _run([0.3, 0.6, 1], [0.5, 0.5, 0.4], -2.0)
    eq = smc_sample_stats(_raw([r1, r3], "equal"), nchain=2)
    np.testing.assert_array_equal(eq["tempering_beta"].values, [[0.1, 0.5, 1.0], [0.3, 0.6, 1.0]])
    one = smc_sample_stats(_raw([r2], "single"), nchain=1)
    np.testing.assert_array_equal(one["tempering_beta"].values, [[0.2, 1.0]])
    assert all(one[v].dtype != object for v in one.data_vars)
    assert smc_sample_stats(out) is out  # already converted
    with pytest.raises(ValueError, match="hold 2 runs but the posterior has 3 chains"):
        smc_sample_stats(_raw([r1, r2], "ragged"), nchain=3)


def test_smc_checks_fail_when_they_should():
    r1 = _run([0.1, 0.5, 1], [0.9, 0.01, 0.7], -3.0)
    r2 = _run([0.2, 1], [0.6, 0.5], -5.5)
    checks = smc_checks(smc_sample_stats(_raw([r1, r2], "ragged"), nchain=2), SMCOptions())
    assert not checks["smc_accept_rate"]["passed"] and checks["smc_accept_rate"]["value"] == 0.01
    assert checks["smc_accept_rate"]["worst"] == "run 0, stage 1"
    assert not checks["smc_log_ml_spread"]["passed"] and checks["smc_log_ml_spread"]["value"] == 2.5
    ok = smc_checks(smc_sample_stats(_raw([r1, r2], "ragged"), nchain=2),
                    SMCOptions(min_accept_rate=0.005, max_log_ml_spread=3.0))
    assert all(c["passed"] for c in ok.values())


def test_smc_options_validated_before_sampling():
    with pytest.raises(ValueError, match="kernel must be one of"):
        SMCOptions(kernel="nuts")
    with pytest.raises(ValueError, match="threshold must lie in"):
        SMCOptions(threshold=1.5)
    with pytest.raises(ValueError, match=r"Unknown SMC option\(s\) \['particles'\]"):
        SMCOptions.coerce({"particles": 10})
    pyt = _twin(vt.PytensorSimulator(lambda x, p: p["b"] * x[:, 0]))
    with pytest.raises(ValueError, match="`smc` options were given but the twin is calibrated with nutpie"):
        vt.calibrate(pyt, vt.TwinData(x=X, y=Y), method="nuts", smc={"kernel": "mh"})


def test_smc_mh_kernel_sequential_runs_recorded():
    twin = _twin(vt.BlackBoxSimulator(_bb, ["b"]))
    with pytest.warns(SamplerChoiceWarning, match="no `jacobian`"):
        res = vt.calibrate(twin, vt.TwinData(x=X, y=Y), draws=300, chains=2, rng=4, warn=False,
                           smc=SMCOptions(kernel="mh", parallel=False))
    assert res.info["smc"]["kernel"] == "mh" and res.info["smc"]["processes"] == 1
    assert "sequentially" in res.info["smc"]["mode"] and "parallel=False" in res.info["smc"]["mode"]
    assert "stage_proposal_scale" in res.idata.sample_stats
    mean, sd, _ = _exact()
    assert abs(float(res.posterior["b"].mean()) - mean) < 5 * sd / np.sqrt(150)


# ----------------------------------------------------------------------------- sampler choice
def test_cost_rule_picks_the_cheaper_sampler(monkeypatch):
    twin = _twin(vt.BlackBoxSimulator(_bb, ["b"], jacobian=_bb_jac))
    model = twin.build_model(vt.TwinData(x=X, y=Y))
    for logp_s, grad_s, want in ((1e-3, 1.2e-3, "pymc"), (1e-3, 5e-3, "smc")):
        monkeypatch.setattr(sampler_choice, "measure_model_cost",
                            lambda m, n_evals=5, rng=None, a=logp_s, g=grad_s: {
                                "logp_s": a, "grad_s": g, "compile_s": 0.0, "n_evals": 5})
        chosen, rec = sampler_choice.choose_sampler_by_cost(model, draws=1000, tune=1000, chains=4, cores=2)
        nuts = 4 * 2000 * sampler_choice.NUTS_GRADS_PER_ITERATION * grad_s / 2
        smc = 4 * 1000 * sampler_choice.SMC_LOGPS_PER_PARTICLE * logp_s / 2
        assert rec["estimate_nuts_s"] == pytest.approx(nuts) and rec["estimate_smc_s"] == pytest.approx(smc)
        assert chosen == want and ("NUTS" if want == "pymc" else "SMC") in rec["reason"]


def _slow_jac(x, p):
    time.sleep(0.01)  # a dear Jacobian (e.g. finite differences of an expensive solver)
    return x[:, :1].copy()


def test_auto_with_dear_jacobian_measures_and_picks_smc(caplog):
    twin = _twin(vt.BlackBoxSimulator(_bb, ["b"], jacobian=_slow_jac))
    with caplog.at_level("INFO", logger="vvuq_twin.calibrate"):
        res = vt.calibrate(twin, vt.TwinData(x=X, y=Y), draws=300, tune=300, chains=2, rng=2, warn=False)
    ch = res.info["sampler_choice"]
    assert res.info["sampler"] == "smc" == ch["chosen"]
    assert ch["grad_s"] > 0.009 and ch["estimate_nuts_s"] > ch["estimate_smc_s"]
    assert any("using SMC" in r.getMessage() for r in caplog.records)
    # measured, not assumed: the estimate is the formula applied to the timed evaluations
    assert ch["estimate_nuts_s"] == pytest.approx(2 * 600 * 7 * ch["grad_s"] / 2)


def test_smc_reports_its_likelihood_evaluations_and_cost_estimate(caplog):
    calls = []

    def counted(x, p):
        calls.append(1)
        return p["b"] * x[:, 0]

    twin = _twin(vt.BlackBoxSimulator(counted, ["b"]))
    with caplog.at_level("INFO", logger="vvuq_twin"):
        res = vt.calibrate(twin, vt.TwinData(x=X, y=Y), method="smc", draws=200, chains=2, rng=5,
                           warn=False, posterior_predictive=False, smc={"parallel": False})
    smc = res.info["smc"]
    steps = res.idata.sample_stats["stage_mcmc_steps"].values
    n_eval = smc["likelihood_evaluations"]
    assert n_eval == 200 * (np.nansum(steps) + 2)  # initial particles + every MCMC step
    # the simulator really ran that often (plus: one pre-check, 4 timed, the final particles'
    # deterministics and posterior-predictive eta, at most 2 per particle)
    assert n_eval <= len(calls) <= n_eval + 5 + 2 * 200 * 2
    est = smc["cost_estimate"]
    assert est["logp_s"] > 0 and est["estimated_sample_time_s"] == pytest.approx(
        2 * 200 * sampler_choice.SMC_LOGPS_PER_PARTICLE * est["logp_s"])
    assert any("expect at least" in r.getMessage() for r in caplog.records)
    # feedback during the run: one line per stage of each (sequential) run, with its beta
    stage_lines = [r.getMessage() for r in caplog.records if r.name == "vvuq_twin.smc"]
    assert len(stage_lines) == int(res.idata.sample_stats["n_stages"].sum())
    assert "tempering beta 1," in stage_lines[-1]


def test_nuts_on_black_box_with_jacobian_uses_pymc_c_backend():
    twin = _twin(vt.BlackBoxSimulator(_bb, ["b"], jacobian=_bb_jac))
    res = vt.calibrate(twin, vt.TwinData(x=X, y=Y), method="nuts", draws=300, tune=300, chains=2,
                       rng=6, warn=False)
    assert res.info["sampler"] == "pymc"  # not nutpie: numba would run the Op in object mode
    mean, sd, _ = _exact()
    b = res.posterior["b"].values.ravel()
    assert abs(b.mean() - mean) < 5 * sd / np.sqrt(150) and abs(b.std() / sd - 1) < 0.25
    assert res.diagnostics.checks["divergences"]["value"] == 0


def test_failed_smc_diagnostics_say_what_to_do_for_smc():
    from vvuq_twin.exceptions import DiagnosticsWarning
    from vvuq_twin.inference.diagnostics import Diagnostics

    d = Diagnostics(table=xr.Dataset(), checks={"smc_accept_rate": {"value": 0.01, "threshold": 0.05,
                                                                    "passed": False}}, sampler="smc")
    with pytest.warns(DiagnosticsWarning, match=r"smc_accept_rate = 0.01 .*more particles.*kernel='mh'"):
        d.warn()


def test_explicit_nutpie_on_black_box_warns_of_object_mode():
    from vvuq_twin.inference.calibrate import _resolve_method

    twin = _twin(vt.BlackBoxSimulator(_bb, ["b"], jacobian=_bb_jac))
    with pytest.warns(SamplerChoiceWarning, match="numba, which runs the simulator's Op in object mode"):
        assert _resolve_method(twin, "nutpie") == "nutpie"
    assert _resolve_method(twin, "nuts") == "pymc" and _resolve_method(twin, "auto") == "auto-cost"
