"""Known-answer functions called by the validation-suite cases of :mod:`vvuq_twin.validation`.

Each function is deterministic (it takes a ``seed``) and returns either a number, a mapping of
named numbers, or ``(predictive, observed)`` for the built-in predictive metrics of
:mod:`vvuq_twin.suite`. Cases for other modules go in their own ``cases_<module>.py`` next to
this file.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, stats

from vvuq_twin.validation import (
    ValidationDomain,
    area_metric,
    calibrate_cusum,
    crps,
    crps_gaussian,
    energy_score,
    loo_pit,
    pit_uniformity,
    simulate_performance,
    vv20_comparison,
)


def crps_closed_form(mu: float = 0.3, sigma: float = 1.2, y: float = 1.0,
                     n_samples: int = 20000, seed: int = 1) -> dict:
    """Fair sample CRPS of N(mu, sigma) at y against the closed form."""
    x = np.random.default_rng(seed).normal(mu, sigma, size=(n_samples, 1))
    est = float(crps(x, np.array([y]))[0])
    exact = float(crps_gaussian(mu, sigma, y))
    return {"estimate": est, "exact": exact, "abs_error": abs(est - exact)}


def crps_fair_unbiased(ensemble_size: int = 5, n_rep: int = 20000, seed: int = 2) -> dict:
    """Mean of the fair CRPS over many small ensembles against the closed form of N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ensemble_size, n_rep))
    y = rng.normal(size=n_rep)
    exact = float(np.mean(crps_gaussian(0.0, 1.0, y)))
    fair = float(np.mean(crps(x, y)))
    biased = float(np.mean(crps(x, y, estimator="biased")))
    return {"fair_rel_error": abs(fair - exact) / exact,
            "biased_rel_error": abs(biased - exact) / exact}


def gaussian_predictive(n_obs: int = 2000, n_samples: int = 2000, predictive_sd: float = 1.0,
                        seed: int = 3) -> tuple:
    """Predictive samples N(mu_i, predictive_sd) for data y_i ~ N(mu_i, 1)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-2.0, 2.0, size=n_obs)
    y = mu + rng.normal(size=n_obs)
    pred = mu[None, :] + predictive_sd * rng.normal(size=(n_samples, n_obs))
    return pred, y


def area_single_observation(y: float = 0.7) -> dict:
    """Area metric of N(0, 1) vs one observation: vs E|X - y| and direct quadrature."""
    got = area_metric(stats.norm(0.0, 1.0), [y])
    closed = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y)
    direct = integrate.quad(lambda t: stats.norm.cdf(t), -np.inf, y)[0] + integrate.quad(
        lambda t: stats.norm.sf(t), y, np.inf)[0]
    return {"abs_error_closed": abs(got - closed), "abs_error_quad": abs(got - direct)}


def energy_score_bivariate(n_samples: int = 3000, seed: int = 4) -> dict:
    """Energy score of N(0, I_2) at the origin: sqrt(pi/2) - sqrt(pi)/2."""
    x = np.random.default_rng(seed).normal(size=(n_samples, 2))
    est = float(energy_score(x, np.zeros(2)))
    exact = np.sqrt(np.pi / 2) - np.sqrt(np.pi) / 2
    return {"abs_error": abs(est - exact)}


def vv20_budget() -> dict:
    """V&V 20 budget: u_val = sqrt(0.3^2 + 0.4^2 + 1.2^2) = 1.3 and E = 1."""
    ds = vv20_comparison(10.0, 9.0, u_num=0.3, u_input=0.4, u_data=1.2, k=2.0)
    return {"u_val": float(ds["u_val"]), "E": float(ds["E"]), "upper": float(ds["upper"])}


def drift_false_alarm(horizon: int = 200, false_alarm: float = 0.05, n_streams: int = 400,
                      shift: float = 1.0, seed: int = 5) -> dict:
    """CUSUM calibrated for a false-alarm probability, tested on fresh streams."""
    det = calibrate_cusum(horizon=horizon, false_alarm=false_alarm, n_sim=20000, rng=seed)
    perf = simulate_performance(det, shift=shift, n_streams=n_streams, rng=seed + 1000)
    far = float(perf["false_alarm_rate"])
    return {"false_alarm_z": abs(far - false_alarm) / float(perf["false_alarm_se"]),
            "detection_rate": float(perf["detection_rate"]),
            "mean_delay": float(perf["mean_delay"])}


def domain_flags(seed: int = 6) -> dict:
    """Points inside the validation hull are not flagged; points outside are."""
    import warnings

    rng = np.random.default_rng(seed)
    dom = ValidationDomain.from_inputs(rng.uniform(0, 1, size=(200, 2)), ["T", "p"])
    inside = rng.uniform(0.2, 0.8, size=(50, 2))
    outside = rng.uniform(1.2, 2.0, size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_in = dom.assess(inside, warn=False)["flag"].values
        f_out = dom.assess(outside, warn=False)["flag"].values
    return {"accuracy": float((~f_in).mean() + f_out.mean()) / 2}


def loo_pit_conjugate(sigma_model: float = 1.0, n_obs: int = 200, n_draws: int = 1000,
                      seed: int = 7) -> dict:
    """LOO-PIT (ArviZ) of a conjugate normal-mean model; KS p-value of uniformity."""
    import arviz as az

    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, 1.0, size=n_obs)
    # flat prior on mu, known sigma: posterior N(ybar, sigma^2 / n)
    mu = rng.normal(y.mean(), sigma_model / np.sqrt(n_obs), size=(2, n_draws))
    yrep = mu[..., None] + sigma_model * rng.normal(size=(2, n_draws, n_obs))
    loglik = stats.norm.logpdf(y[None, None, :], mu[..., None], sigma_model)
    idata = az.from_dict(posterior={"mu": mu}, posterior_predictive={"y": yrep},
                         log_likelihood={"y": loglik}, observed_data={"y": y},
                         dims={"y": ["obs"]})
    return {"ks_pvalue": pit_uniformity(loo_pit(idata, y="y")).p_value}


def linear_twin_holdout(offset: float = 0.0, n_train: int = 40, n_test: int = 300,
                        seed: int = 3) -> tuple:
    """Calibrate a linear twin (eta = theta x, known noise 0.2) and predict held-out data.

    Data follow ``y = 1.5 x + offset + noise``: with ``offset = 0`` the twin is correct, with
    ``offset != 0`` it misses an intercept (a structural error its intervals should reveal).
    Returns the posterior predictive of ``y`` at the held-out inputs and the held-out data.
    """
    from vvuq_twin import (Gaussian, NoDiscrepancy, Normal, Parameter, PytensorSimulator,
                           Twin, TwinData, calibrate, predict)

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0, n_train)
    y = 1.5 * x + offset + 0.2 * rng.normal(size=n_train)
    twin = Twin(name="line", simulator=PytensorSimulator(lambda X, p: p["theta"] * X[:, 0]),
                parameters=[Parameter("theta", Normal(1.0, 1.0))],
                discrepancy=NoDiscrepancy(), observation=Gaussian(sigma=0.2))
    res = calibrate(twin, TwinData(x=x, y=y), draws=500, tune=500, chains=2, rng=seed)
    x_new = rng.uniform(0.0, 2.0, n_test)
    y_new = 1.5 * x_new + offset + 0.2 * rng.normal(size=n_test)
    return predict(res, x_new, rng=seed + 1)["y"], y_new
