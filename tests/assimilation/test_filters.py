"""Known answers of the state filters: Kalman (exact), EnKF/ETKF -> KF, PF evidence, DAPPER L96."""

import numpy as np
import pytest
import xarray as xr

from vvuq_twin.assimilation import (
    StateSpaceModel,
    analysis_rmse,
    ensemble_kalman_filter,
    kalman_filter,
    particle_filter,
)
from vvuq_twin.exceptions import DataValidationError
from vvuq_twin.testing.problems_assim import (
    SAKOV2008_RMSE,
    linear_gaussian_model,
    lorenz96_model,
    lorenz96_truth,
    simulate_state_space,
)


@pytest.fixture(scope="module")
def lg():
    model = linear_gaussian_model()
    truth, obs = simulate_state_space(model, 100, rng=1)
    return model, truth, obs, kalman_filter(model, obs)


def _ens_cov(res: xr.Dataset) -> xr.DataArray:
    anom = res["ensemble"] - res["ensemble"].mean("member")
    return (anom * anom.rename(state="state_")).sum("member") / (res.sizes["member"] - 1)


def test_kalman_filter_equals_batch_gaussian_conditioning():
    """Independent check: E[x_T | y_1:T] and Cov from the joint Gaussian of all x and y."""
    model = linear_gaussian_model()
    T = 8
    _, obs = simulate_state_space(model, T, rng=4)
    kf = kalman_filter(model, obs)
    F, H, Q, R = model.transition_matrix, model.obs_operator, model.process_cov, model.obs_cov
    nx, ny = 2, 1
    # x_t = F^t x_0 + sum_{s<=t} F^{t-s} w_s: build the linear map from (x0, w_1..w_T) to states
    n_src = nx * (T + 1)
    M = np.zeros((T * nx, n_src))
    for t in range(1, T + 1):
        M[(t - 1) * nx:t * nx, :nx] = np.linalg.matrix_power(F, t)
        for s in range(1, t + 1):
            M[(t - 1) * nx:t * nx, s * nx:(s + 1) * nx] = np.linalg.matrix_power(F, t - s)
    S_src = np.zeros((n_src, n_src))
    S_src[:nx, :nx] = model.x0_cov
    for s in range(1, T + 1):
        S_src[s * nx:(s + 1) * nx, s * nx:(s + 1) * nx] = Q
    Sx = M @ S_src @ M.T
    Hb = np.kron(np.eye(T), H)
    Sy = Hb @ Sx @ Hb.T + np.kron(np.eye(T), R)
    Sxy = Sx @ Hb.T
    y = obs.values.reshape(T * ny)
    post_mean = Sxy @ np.linalg.solve(Sy, y)
    post_cov = Sx - Sxy @ np.linalg.solve(Sy, Sxy.T)
    np.testing.assert_allclose(kf["mean"].isel(time=-1).values, post_mean[-nx:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kf["cov"].isel(time=-1).values, post_cov[-nx:, -nx:], rtol=1e-10, atol=1e-12)
    # log evidence = log N(y; 0, Sy)
    sign, logdet = np.linalg.slogdet(Sy)
    log_ev = -0.5 * (y @ np.linalg.solve(Sy, y) + logdet + y.size * np.log(2 * np.pi))
    assert kf.attrs["log_evidence"] == pytest.approx(log_ev, rel=1e-10)


def test_etkf_analysis_is_the_kalman_update_of_the_ensemble_moments():
    """Deterministic square-root filter: analysis mean and sample covariance equal the Kalman
    update computed from the forecast ensemble's sample mean and covariance."""
    from vvuq_twin.assimilation.filters import _enkf_analysis

    g = np.random.default_rng(0)
    nx, N = 5, 12
    H = g.normal(size=(3, nx))
    model = StateSpaceModel(tuple(f"s{i}" for i in range(nx)), lambda x, t, k: x, H,
                            np.diag([0.5, 1.0, 2.0]) + 0.1, np.zeros(nx), np.eye(nx))
    z = g.normal(size=(N, nx)) @ g.normal(size=(nx, nx))
    y = g.normal(size=3)
    lam, vec = np.linalg.eigh(model.obs_cov)
    za = _enkf_analysis(z, y, model, "etkf", g, None, (vec / np.sqrt(lam)) @ vec.T)
    m, P = z.mean(0), np.cov(z, rowvar=False)
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + model.obs_cov)
    np.testing.assert_allclose(za.mean(0), m + K @ (y - H @ m), atol=1e-10)
    np.testing.assert_allclose(np.cov(za, rowvar=False), P - K @ H @ P, atol=1e-10)
    # the stochastic EnKF matches only in expectation (the check above would fail for it)
    zs = _enkf_analysis(z, y, model, "stochastic", g, np.linalg.cholesky(model.obs_cov), None)
    assert np.abs(np.cov(zs, rowvar=False) - (P - K @ H @ P)).max() > 1e-3


@pytest.mark.parametrize("method,sizes", [("stochastic", [25, 100, 400, 1600]), ("etkf", [25, 100, 400, 1600])])
def test_enkf_approaches_kalman_filter_as_ensemble_grows(lg, method, sizes):
    model, _, obs, kf = lg
    mean_err, cov_err = [], []
    for n in sizes:
        e_m, e_c = [], []
        for seed in range(3):
            r = ensemble_kalman_filter(model, obs, n_members=n, method=method, rng=seed)
            e_m.append(float(np.abs(r["mean"] - kf["mean"]).mean()))
            e_c.append(float(np.abs(_ens_cov(r) - kf["cov"]).mean()))
        mean_err.append(np.mean(e_m))
        cov_err.append(np.mean(e_c))
    assert np.all(np.diff(mean_err) < 0), mean_err
    assert np.all(np.diff(cov_err) < 0), cov_err
    # Monte Carlo rate ~ N^-1/2: 16x (or 64x) more members -> at least 3x (6x) smaller error
    ratio = sizes[-1] / sizes[0]
    assert mean_err[-1] < mean_err[0] / (0.75 * np.sqrt(ratio))
    assert cov_err[-1] < cov_err[0] / (0.75 * np.sqrt(ratio))
    assert mean_err[-1] < 0.03


def test_particle_filter_matches_kalman_mean_and_evidence(lg):
    model, _, obs, kf = lg
    pf = particle_filter(model, obs, n_particles=2000, rng=0)
    assert float(np.abs(pf["mean"] - kf["mean"]).mean()) < 0.03
    assert pf.attrs["log_evidence"] == pytest.approx(kf.attrs["log_evidence"], abs=1.0)
    assert pf["particles"].dims == ("time", "particle", "state")
    # failure case: too few particles give a visibly worse approximation
    small = particle_filter(model, obs, n_particles=10, rng=0)
    assert float(np.abs(small["mean"] - kf["mean"]).mean()) > 3 * float(np.abs(pf["mean"] - kf["mean"]).mean())


def test_lorenz96_sakov2008_etkf_rmse():
    """DAPPER mods/Lorenz96/sakov2008.py: EnKF('Sqrt', N=24, infl=1.013, rot=True) -> rmse.a 0.18."""
    truth, obs = lorenz96_truth(2400, rng=3)
    res = ensemble_kalman_filter(lorenz96_model(), obs, n_members=24, method="etkf",
                                 inflation=1.013, rotate=True, store_ensemble=False, rng=1)
    rmse = float(analysis_rmse(res, truth, spinup=400).mean("time"))
    assert rmse == pytest.approx(SAKOV2008_RMSE, abs=0.02)


def test_lorenz96_without_inflation_diverges():
    """Failure case: the same filter without inflation loses the truth (RMSE of order 1+)."""
    truth, obs = lorenz96_truth(1000, rng=3)
    res = ensemble_kalman_filter(lorenz96_model(), obs, n_members=24, method="etkf",
                                 inflation=1.0, store_ensemble=False, rng=1)
    assert float(analysis_rmse(res, truth, spinup=400).mean("time")) > 0.6


def test_joint_state_parameter_estimation_recovers_forcing():
    truth, obs = lorenz96_truth(1200, forcing=8.0, rng=3)
    model = lorenz96_model(estimate_forcing=True, forcing_prior=(7.0, 1.0))
    res = ensemble_kalman_filter(model, obs, n_members=30, inflation=1.02, store_ensemble=False, rng=1)
    f_mean = float(res["mean"].sel(state="F").isel(time=-1))
    f_sd = float(res["std"].sel(state="F").isel(time=-1))
    assert f_mean == pytest.approx(8.0, abs=0.1)
    assert abs(f_mean - 8.0) < 4 * f_sd + 0.02
    assert float(res["mean"].sel(state="F").isel(time=0)) < 7.8  # started from the prior N(7, 1)
    assert float(analysis_rmse(res, truth, spinup=400).mean("time")) < 0.25


def test_filters_reproducible_and_labelled(lg, tmp_path):
    model, _, obs, _ = lg
    a = ensemble_kalman_filter(model, obs, n_members=20, method="stochastic", rng=7)
    b = ensemble_kalman_filter(model, obs, n_members=20, method="stochastic", rng=7)
    c = ensemble_kalman_filter(model, obs, n_members=20, method="stochastic", rng=8)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a["mean"].values, c["mean"].values)
    assert a["ensemble"].dims == ("time", "member", "state")
    assert list(a["state"].values) == ["x1", "x2"]
    a.to_netcdf(tmp_path / "enkf.nc", engine="h5netcdf")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "enkf.nc", engine="h5netcdf"), a)
    pf = particle_filter(model, obs, n_particles=50, rng=1)
    pf.to_netcdf(tmp_path / "pf.nc", engine="h5netcdf")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "pf.nc", engine="h5netcdf"), pf)


def test_missing_observation_rows_are_forecast_only(lg):
    model, _, obs, _ = lg
    y = obs.copy()
    y[10:20] = np.nan
    kf = kalman_filter(model, y)
    # no analysis: the mean is the forecast and the variance grows
    np.testing.assert_allclose(kf["mean"].isel(time=15), kf["forecast_mean"].isel(time=15))
    assert float(kf["cov"].isel(time=19).sel(state="x1", state_="x1")) > float(
        kf["cov"].isel(time=9).sel(state="x1", state_="x1"))


def test_filter_bad_input_messages(lg):
    model, _, obs, _ = lg
    with pytest.raises(DataValidationError, match=r"shape \(n_time, 1\)"):
        kalman_filter(model, np.zeros((5, 3)))
    bad = lorenz96_truth(5, rng=0)[1].copy()
    bad[2, 3] = np.nan
    with pytest.raises(DataValidationError, match="partly NaN"):
        ensemble_kalman_filter(lorenz96_model(), bad, n_members=5, rng=0)
    shuffled = obs.isel(time=[0, 2, 1, 3])
    with pytest.raises(DataValidationError, match="strictly increasing"):
        ensemble_kalman_filter(model, shuffled, n_members=5, rng=0)
    with pytest.raises(ValueError, match="inflation"):
        ensemble_kalman_filter(model, obs, n_members=5, inflation=0.9, rng=0)
    with pytest.raises(ValueError, match="'etkf', 'stochastic'"):
        ensemble_kalman_filter(model, obs, n_members=5, method="sqrt", rng=0)
    with pytest.raises(ValueError, match="integer >= 2"):
        ensemble_kalman_filter(model, obs, n_members=1, rng=0)
    with pytest.raises(ValueError, match="linear model"):
        kalman_filter(lorenz96_model(estimate_forcing=True), obs)
    with pytest.raises(ValueError, match="stochastic dynamics"):
        particle_filter(lorenz96_model(), obs, n_particles=10)
    with pytest.raises(ValueError, match=r"obs_operator.*\(n_obs, 2\)"):
        StateSpaceModel(("a", "b"), lambda x, t, k: x, np.eye(3), np.eye(3), np.zeros(2), np.eye(2))


@pytest.mark.slow
def test_lorenz96_sakov2008_long_runs():
    """Longer runs, also DAPPER's perturbed-observation line EnKF('PertObs', N=40, infl=1.06) -> 0.22."""
    truth, obs = lorenz96_truth(10400, rng=11)
    sq = ensemble_kalman_filter(lorenz96_model(), obs, n_members=24, method="etkf",
                                inflation=1.013, rotate=True, store_ensemble=False, rng=2)
    assert float(analysis_rmse(sq, truth, spinup=400).mean("time")) == pytest.approx(0.18, abs=0.02)
    po = ensemble_kalman_filter(lorenz96_model(), obs, n_members=40, method="stochastic",
                                inflation=1.06, store_ensemble=False, rng=2)
    assert float(analysis_rmse(po, truth, spinup=400).mean("time")) == pytest.approx(0.22, abs=0.02)
