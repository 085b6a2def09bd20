"""Known-answer tests of Sobol/Morris/FAST/DGSM/PCE/GP indices (Ishigami, G-function, linear)."""

import matplotlib
import numpy as np
import pytest
import xarray as xr

matplotlib.use("Agg")

from vvuq_twin.sensitivity import (
    DependentInputsError,
    InputSpecificationError,
    ParameterSpace,
    QoIEvaluationError,
    UncertainInput,
    UnsupportedDistributionError,
    plot_indices,
    sensitivity,
)
from vvuq_twin.testing.problems_sa import (
    ishigami,
    ishigami_indices,
    ishigami_nan,
    ishigami_space,
    linear_gaussian_space,
    linear_indices,
    linear_model,
    sobol_g,
    sobol_g_indices,
    sobol_g_space,
)
from vvuq_twin.twin.priors import HalfCauchy, Normal

ISH = ishigami_indices()


def _truth(ref):
    return np.column_stack([ref["S1"], ref["ST"]])


def test_closed_forms_match_published_values():
    np.testing.assert_allclose(ISH["S1"], [0.3139, 0.4424, 0.0], atol=5e-5)
    np.testing.assert_allclose(ISH["ST"], [0.5576, 0.4424, 0.2437], atol=5e-5)
    g = sobol_g_indices()
    # independent check by 1-D quadrature: E[Y | X_i] = g_i(X_i), so V_i = int (g_i - 1)^2
    from scipy.integrate import quad

    a = np.array([0, 1, 4.5, 9, 99, 99, 99, 99.0])
    vi = np.array([quad(lambda x, ai=ai: ((abs(4 * x - 2) + ai) / (1 + ai) - 1) ** 2, 0, 1,
                        points=[0.5])[0] for ai in a])
    var = np.prod(1 + vi) - 1
    np.testing.assert_allclose(g["S1"], vi / var, rtol=1e-8)
    np.testing.assert_allclose(g["S1"][:2], [0.7162, 0.1790], atol=1e-4)
    assert np.all(g["ST"] >= g["S1"])


def test_salib_sobol_ishigami_within_bootstrap_ci():
    ds = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=1024, rng=1)
    truth = _truth(ISH)
    assert ds.attrs["n_runs"] == 1024 * 5
    assert ds["estimate"].dims == ("input", "index")
    assert np.all((ds["ci_lower"].values <= truth) & (truth <= ds["ci_upper"].values))
    # 1024 base samples: bootstrap half-widths are <= 0.09, so 0.06 is a budget-justified bound
    assert np.abs(ds["estimate"].values - truth).max() < 0.06
    assert ds.attrs["converged"] == 1


def test_salib_sobol_too_small_budget_is_flagged():
    ds = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=16, rng=1)
    assert ds.attrs["n_runs"] == 80
    assert ds.attrs["converged"] == 0
    assert ds.attrs["max_change"] > ds.attrs["convergence_tol"]


def test_salib_sobol_g_function():
    ds = sensitivity(sobol_g, inputs=sobol_g_space(), method="sobol", n=2048, rng=2)
    err = np.abs(ds["estimate"].values - _truth(sobol_g_indices()))
    assert err.max() < 0.05
    # the four negligible inputs (a = 99) are ranked last by total index
    st = ds["estimate"].sel(index="ST").values
    assert set(np.argsort(st)[:4]) == {4, 5, 6, 7}


def test_pce_ishigami_first_total_second_order():
    ds = sensitivity(ishigami, inputs=ishigami_space(), method="pce", n=150, rng=0,
                     second_order=True)
    assert ds.attrs["n_runs"] == 150
    assert np.abs(ds["estimate"].values - _truth(ISH)).max() <= 0.01
    assert abs(float(ds["S2"].sel(input="x1", input_2="x3")) - ISH["S2"][0, 2]) <= 0.01
    assert ds.attrs["converged"] == 1


@pytest.mark.slow
def test_pce_g_function_at_500_runs():
    ds = sensitivity(sobol_g, inputs=sobol_g_space(), method="pce", n=500, rng=1)
    assert np.abs(ds["estimate"].values - _truth(sobol_g_indices())).max() < 0.02


def test_pce_too_small_budget_fails():
    ds = sensitivity(ishigami, inputs=ishigami_space(), method="pce", n=24, rng=0)
    assert np.abs(ds["estimate"].values - _truth(ISH)).max() > 0.05
    assert ds.attrs["converged"] == 0


def test_gp_sobol_ishigami_interval_includes_truth():
    ds = sensitivity(ishigami, inputs=ishigami_space(), method="gp", n=200, rng=1, n_mc=2**12)
    truth = _truth(ISH)
    assert ds.attrs["n_runs"] == 200
    assert np.abs(ds["estimate"].values - truth).max() < 0.03
    assert np.all((ds["ci_lower"].values <= truth) & (truth <= ds["ci_upper"].values))
    assert np.all(ds["emulator_sd"].values > 0)


def test_linear_model_analytic_indices():
    beta = (1.0, 2.0, 3.0)
    space = ParameterSpace([UncertainInput(f"x{i}", Normal(0.0, s)) for i, s in enumerate([1.0, 0.5, 0.2])])
    ref = linear_indices(beta, [1.0, 0.25, 0.04])
    ds = sensitivity(linear_model, inputs=space, method="pce", n=40, rng=0)
    np.testing.assert_allclose(ds["estimate"].values, _truth(ref), atol=1e-8)
    ds2 = sensitivity(linear_model, inputs=space, method="sobol", n=1024, rng=0)
    assert np.abs(ds2["estimate"].values - _truth(ref)).max() < 0.05


def test_morris_and_dgsm_linear_exact():
    beta = np.array([1.0, 2.0, 3.0])
    space = ParameterSpace([UncertainInput(f"x{i}", (0.0, w)) for i, w in enumerate([2.0, 1.0, 0.5])])
    ds = sensitivity(linear_model, inputs=space, method="morris", n=20, rng=0)
    # elementary effects of a linear model are beta_i * range_i on the scaled grid
    np.testing.assert_allclose(ds["estimate"].sel(index="mu_star").values, beta * [2.0, 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(ds["estimate"].sel(index="sigma").values, 0.0, atol=1e-6)
    dg = sensitivity(linear_model, inputs=space, method="dgsm", n=50, rng=0)
    np.testing.assert_allclose(dg["estimate"].sel(index="vi").values, beta**2, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:FAST confidence")
def test_fast_and_rbd_fast_ishigami():
    f = sensitivity(ishigami, inputs=ishigami_space(), method="fast", n=1000, rng=0)
    assert np.abs(f["estimate"].sel(index="S1").values - ISH["S1"]).max() < 0.03
    r = sensitivity(ishigami, inputs=ishigami_space(), method="rbd_fast", n=2000, rng=0)
    assert np.abs(r["estimate"].sel(index="S1").values - ISH["S1"]).max() < 0.05


def test_same_seed_same_result_and_netcdf_roundtrip(tmp_path):
    a = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=64, rng=7)
    b = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=64, rng=7)
    c = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=64, rng=8)
    xr.testing.assert_equal(a, b)
    assert not np.allclose(a["estimate"], c["estimate"])
    a.to_netcdf(tmp_path / "s.nc")
    back = xr.load_dataset(tmp_path / "s.nc")
    xr.testing.assert_allclose(back, a)
    assert back.attrs["n_runs"] == a.attrs["n_runs"]


def test_plot_returns_figure():
    import matplotlib.figure

    ds = sensitivity(ishigami, inputs=ishigami_space(), method="pce", n=100, rng=0)
    fig = plot_indices(ds)
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "x2"  # ranked: largest S1 (0.4424) on top
    with pytest.raises(ValueError, match="Unknown index"):
        plot_indices(ds, index="S7")


def test_bad_bounds_and_unsupported_distributions():
    with pytest.raises(InputSpecificationError, match="need lower < upper, got lower=2.0, upper=1.0"):
        UncertainInput("k", (2.0, 1.0))
    with pytest.raises(UnsupportedDistributionError, match="cannot represent HalfCauchy"):
        UncertainInput("k", HalfCauchy(1.0))
    with pytest.raises(UnsupportedDistributionError, match="cannot represent str"):
        UncertainInput("k", "gaussian")
    with pytest.raises(InputSpecificationError, match="Duplicate input names"):
        ParameterSpace([UncertainInput("a", (0, 1)), UncertainInput("a", (0, 1))])


def test_space_exports_salib_problem_and_chaospy_joint():
    import chaospy

    space = ParameterSpace([UncertainInput("k", (1.0, 3.0)), UncertainInput("m", Normal(2.0, 0.5))])
    assert space.to_salib() == {"num_vars": 2, "names": ["k", "m"], "bounds": [[1.0, 3.0], [2.0, 0.5]],
                                "dists": ["unif", "norm"]}
    J = space.joint
    assert isinstance(J, chaospy.Distribution) and len(J) == 2
    np.testing.assert_allclose(chaospy.E(chaospy.variable(2), J), [2.0, 2.0])
    X = space.sample(4096, rng=0, method="sobol")
    np.testing.assert_allclose(X.mean(axis=0), [2.0, 2.0], atol=0.02)
    assert X[:, 0].min() >= 1.0 and X[:, 0].max() <= 3.0


def test_sobol_with_dependent_inputs_points_to_shapley():
    space = linear_gaussian_space([0, 0], [[1.0, 0.5], [0.5, 1.0]])
    for method in ("sobol", "pce", "morris"):
        with pytest.raises(DependentInputsError, match="method='shapley'"):
            sensitivity(lambda x: x.sum(), inputs=space, method=method, n=32, rng=0)
    with pytest.raises(DependentInputsError, match="Shapley"):
        space.to_salib()


def test_qoi_nan_lists_failing_inputs():
    with pytest.raises(QoIEvaluationError, match=r"NaN/inf for \d+ of 320 design rows.*x3=2\.") as ei:
        sensitivity(ishigami_nan, inputs=ishigami_space(), method="sobol", n=64, rng=0)
    assert "x3 in [2.5" in str(ei.value)


def test_morris_refuses_unbounded_inputs():
    space = ParameterSpace([UncertainInput("a", Normal(0.0, 1.0)), UncertainInput("b", (0.0, 1.0))])
    with pytest.raises(InputSpecificationError, match=r"unbounded inputs \['a'\]"):
        sensitivity(linear_model, inputs=space, method="morris", n=10, rng=0)
    ds = sensitivity(lambda x: 2.0 * x[0] + x[1], inputs=space, method="dgsm", n=20, rng=0)
    np.testing.assert_allclose(ds["estimate"].sel(index="vi").values, [4.0, 1.0], rtol=1e-6)


def test_unknown_method_message():
    with pytest.raises(ValueError, match="`method` must be one of"):
        sensitivity(ishigami, inputs=ishigami_space(), method="sobolev", n=8)
