"""Sufficient-statistic reduction of past chunks in the SMC update.

Known answers:

* the reduced log-likelihood of a chunk with replicate rows (same unit and input) equals the
  full chunk's, value and gradient, to 1e-10 (Normal with the population scale and noise sd
  inferred; LogNormal with a known per-row sd; Poisson), and the reduced chunk has one row per
  distinct (unit, input) group;
* a conjugate hierarchical linear twin (k_u = mu + 0.5 z_u, y = k_u x + N(0, 0.2^2), replicate
  rows) whose posterior is Gaussian in closed form: two batches assimilated with the past chunks
  reduced give the exact posterior within Monte Carlo error, and the same particles (same random
  stream) as the update without the reduction, at fewer row evaluations;
* every fallback says why: Student-t, a marginalised GP (MvNormal over rows), no repeated rows,
  a per-row sd that differs within a group, a simulator that couples rows (caught by the
  run-time check), a model without the reduction.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
import pytest

import vvuq_twin as vt
from vvuq_twin.assimilation import ParticlePosterior, TwinLogDensity, smc_update
from vvuq_twin.assimilation.sufficient import (
    NotReducible,
    check_reduction,
    group_rows,
    group_statistics,
    plan_reductions,
)
from vvuq_twin.assimilation.targets import CallableModel, TemperedTarget

SIG, TAU = 0.2, 0.5
UNITS = ("u1", "u2", "u3")
X4 = np.linspace(0.2, 1.0, 4)
K_TRUE = np.array([0.8, 1.3, 0.5])


def _chunk(g, reps=3):
    """3 units x 4 inputs x ``reps`` replicate rows (rows shuffled)."""
    x = np.tile(np.repeat(X4, reps), 3)
    u = np.repeat(np.arange(3), 4 * reps)
    y = K_TRUE[u] * x + g.normal(0, SIG, x.size)
    p = g.permutation(x.size)
    return {"x": x[p].reshape(-1, 1), "y": y[p], "unit": np.array(UNITS)[u[p]]}


def _linear(pop_scale=TAU, sigma=SIG, name="lin_suff"):
    return vt.Twin(name=name, simulator=vt.PytensorSimulator(lambda x, p: p["k"] * x[:, 0]),
                   parameters=[vt.Parameter("k", vt.NormalPrior(0.0, 1.0), per_unit=True, pop_scale=pop_scale)],
                   observation=vt.GaussianObs(sigma=sigma), hierarchy=vt.Hierarchy(dim="unit"))


def _exact(chunks):
    """Closed-form Gaussian posterior of (k_mu, k_z) given the chunks (k_u = mu + TAU z_u)."""
    x = np.concatenate([c["x"][:, 0] for c in chunks])
    y = np.concatenate([c["y"] for c in chunks])
    uidx = np.concatenate([np.searchsorted(UNITS, c["unit"]) for c in chunks])
    X = np.zeros((x.size, 4))
    X[:, 0] = x
    X[np.arange(x.size), 1 + uidx] = TAU * x
    cov = np.linalg.inv(np.eye(4) + X.T @ X / SIG**2)
    return cov @ X.T @ y / SIG**2, cov


@pytest.fixture(scope="module")
def conj():
    g = np.random.default_rng(0)
    chunks = [_chunk(g), _chunk(g), _chunk(g)]
    dens = TwinLogDensity(_linear(), units=UNITS, input_names=["x"])
    dens.prepare(chunks[0])
    return dens, chunks


@pytest.fixture(scope="module")
def inferred():
    """Normal noise and population scale inferred (gradients through log transforms)."""
    g = np.random.default_rng(1)
    c = _chunk(g, reps=4)
    dens = TwinLogDensity(_linear(vt.HalfNormal(1.0), vt.HalfNormal(0.5), "lin_suff2"), units=UNITS,
                          input_names=["x"])
    dens.prepare(c)
    return dens, c


def _z(dens, n, g):
    d = sum(int(np.prod(s, dtype=int)) for s in dens.value_shapes.values())
    return 0.5 * g.normal(size=(n, d))


def _assert_equal(dens, chunk, z):
    red = dens.reduce_chunk(chunk)
    v_full, g_full = dens.log_likelihood_z(z, chunk, True)
    v_red, g_red = dens.log_likelihood_reduced_z(z, red, True)
    np.testing.assert_allclose(v_red, v_full, rtol=1e-10)
    np.testing.assert_allclose(g_red, g_full, rtol=1e-10, atol=1e-10 * np.abs(g_full).max())
    return red


def test_reduced_equals_full_normal(inferred):
    dens, c = inferred
    red = _assert_equal(dens, c, _z(dens, 8, np.random.default_rng(2)))
    assert red.kind == "normal"
    # one row per distinct (unit, x): 3 units x 4 inputs, from 48 rows
    assert red.n_rows == 48 and red.n_groups == 12 == len({(u, x) for u, x in zip(c["unit"], c["x"][:, 0])})
    assert red.count.sum() == 48
    # one representative row per group
    assert red.representative["x"].shape == (12, 1)
    assert check_reduction(dens, red, _z(dens, 3, np.random.default_rng(3))) < 1e-10
    # a second reduction of the same chunk is the cached one (compiled once)
    assert dens.reduce_chunk(c) is red


def test_group_statistics_match_direct_sums():
    """(n, mean, within SS) reproduce sum y and sum y^2; the Poisson/LogNormal constants."""
    from scipy.special import gammaln

    g = np.random.default_rng(4)
    x = np.repeat([0.0, 1.0, 2.0], [3, 1, 5])
    y = g.poisson(3.0, x.size).astype(float)
    y[3] = np.nan  # a missing row leaves its (single-row) group empty and out
    d = {"x": x, "y": y}
    grp = group_rows(d)
    assert grp.n_groups == 2 and grp.rows.size == 8 and grp.n_rows == 9
    n, c, w, k = group_statistics(y, grp, "normal")
    for j, xv in enumerate([0.0, 2.0]):
        yy = y[(x == xv) & np.isfinite(y)]
        assert n[j] == yy.size
        np.testing.assert_allclose(n[j] * c[j], yy.sum(), rtol=1e-14)
        np.testing.assert_allclose(w[j] + n[j] * c[j] ** 2, (yy**2).sum(), rtol=1e-13)
    assert k == 0.0
    _, _, _, kp = group_statistics(y, grp, "poisson")
    np.testing.assert_allclose(kp, -gammaln(y[np.isfinite(y)] + 1).sum(), rtol=1e-14)
    with pytest.raises(NotReducible, match="not non-negative integers"):
        group_statistics(y + 0.5, grp, "poisson")
    with pytest.raises(NotReducible, match="y <= 0"):
        group_statistics(y - 10, grp, "lognormal")


def test_lognormal_with_known_sd_and_poisson_reduce_exactly():
    g = np.random.default_rng(5)
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * pt.exp(0.5 * X[:, 0]), name="expo")
    x = np.repeat(np.linspace(0, 2, 5), 4)
    ysd = np.repeat([0.1, 0.2, 0.1, 0.3, 0.2], 4)
    ln = vt.Twin("ln_suff", sim, [vt.Parameter("a", vt.LogNormalPrior(0.0, 0.5))],
                 observation=vt.LogNormalObs(sigma=vt.HalfNormal(0.3)))
    d = {"x": x.reshape(-1, 1), "y": np.exp(0.5 * x) * np.exp(g.normal(0, 0.2, x.size)), "y_sd": ysd}
    dens = TwinLogDensity(ln, input_names=["x"])
    dens.prepare(d)
    red = _assert_equal(dens, d, _z(dens, 6, g))
    assert red.kind == "lognormal" and red.n_groups == 5
    po = vt.Twin("po_suff", sim, [vt.Parameter("a", vt.LogNormalPrior(1.0, 0.5))], observation=vt.Poisson())
    dp = {"x": x.reshape(-1, 1), "y": g.poisson(3.0 * np.exp(0.5 * x)).astype(float)}
    dens_p = TwinLogDensity(po, input_names=["x"])
    dens_p.prepare(dp)
    red_p = _assert_equal(dens_p, dp, _z(dens_p, 6, g))
    assert red_p.kind == "poisson" and red_p.n_groups == 5


def test_conjugate_posterior_with_reduced_past(conj):
    dens, (c0, b1, b2) = conj
    g = np.random.default_rng(6)
    m0, cov0 = _exact([c0])
    N = 2000
    draws = g.multivariate_normal(m0, cov0, N)
    vals = {"k_mu": draws[:, 0], "k_z": draws[:, 1:]}
    ll0, _ = dens.log_likelihood_z(dens.to_unconstrained(vals), c0, True)
    post = ParticlePosterior(vals, None, ll0)
    post1, rep1 = smc_update(post, b1, dens, past_data=[c0], sufficient_statistics=True,
                             resample_threshold=1.0, rng=7)
    # the default ("auto") reduces these chunks too: 36 rows -> 12 groups each
    post2, rep2 = smc_update(post1, b2, dens, past_data=[c0, b1], resample_threshold=1.0, rng=8)
    for rep, k in ((rep1, 1), (rep2, 2)):
        assert rep.sufficient_statistics, rep.sufficient_reason
        # both chunks measure the same 12 (unit, x) set-points: pooled, the past is 12 rows
        assert rep.rows_past == 36 * k and rep.rows_past_reduced == 12, rep
        assert rep.status == "resample-move" and rep.mixing_ok, rep
        assert "reduced 36 rows to 12 groups" in rep.sufficient_reason
    assert "2 reduced chunks (24 groups) pooled into 12 groups" in rep2.sufficient_reason
    # chunks at the same set-points share one compiled function (the statistics are inputs)
    assert dens.reduce_chunk(b1)._fn is dens.reduce_chunk(c0)._fn is not None
    m, cov = _exact([c0, b1, b2])
    sd = np.sqrt(np.diag(cov))
    got_m = np.r_[post2.mean()["k_mu"], post2.mean()["k_z"]]
    got_s = np.r_[post2.sd()["k_mu"], post2.sd()["k_z"]]
    np.testing.assert_array_less(np.abs(got_m - m), 4 * sd / np.sqrt(N / 4))
    np.testing.assert_allclose(got_s, sd, rtol=0.12)
    # the same update without the reduction: the same particles (same random stream, the
    # target equal to rounding), at more row evaluations
    full1, rep_f = smc_update(post, b1, dens, past_data=[c0], sufficient_statistics=False,
                                resample_threshold=1.0, rng=7)
    assert not rep_f.sufficient_statistics and "sufficient_statistics=False" in rep_f.sufficient_reason
    for k in post1.values:
        np.testing.assert_allclose(post1.values[k], full1.values[k], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(post1.log_likelihood, full1.log_likelihood, rtol=1e-9)
    assert rep1.n_row_evals < rep_f.n_row_evals
    assert rep_f.rows_exact - rep1.rows_exact == 36 - 12


def test_pooled_statistics_equal_those_of_the_concatenated_chunks(conj):
    from vvuq_twin.assimilation import concat_data
    from vvuq_twin.assimilation.sufficient import merge_reduced

    dens, (c0, b1, b2) = conj
    parts = [dens.reduce_chunk(c) for c in (c0, b1, b2)]
    merged = merge_reduced(dens, parts)
    whole = dens.reduce_chunk(concat_data([c0, b1, b2]))
    assert merged.n_groups == whole.n_groups == 12 and merged.n_rows == whole.n_rows == 108
    key = lambda r: [(u, x) for u, x in zip(r.representative["unit"], r.representative["x"][:, 0])]
    order = [key(whole).index(k) for k in key(merged)]
    np.testing.assert_array_equal(merged.count, whole.count[order])
    np.testing.assert_allclose(merged.centre, whole.centre[order], rtol=1e-13)
    np.testing.assert_allclose(merged.within, whole.within[order], rtol=1e-11)
    assert merged.struct_key == whole.struct_key  # the same compiled function serves both


def test_auto_needs_the_rows_to_halve(conj):
    dens, (c0, _, _) = conj
    g = np.random.default_rng(9)
    z = _z(dens, 3, g)
    plan = plan_reductions(dens, [c0], "auto", z)  # 36 -> 12: reduced
    assert plan.used and plan.n_rows == 36 and plan.n_rows_reduced == 12
    # a chunk with 2 of 12 rows repeated: 11 groups > 12 / 2
    few = {k: np.concatenate([v[:11], v[:1]]) for k, v in c0.items()}
    few["y"] = few["y"] + 0.01
    plan = plan_reductions(dens, [few], "auto", z)
    assert not plan.used and "at least halves" in plan.reason
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        plan_reductions(dens, [c0], "yes", z)
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        TemperedTarget(dens, [c0], c0, sufficient_statistics="yes")


def test_a_reweight_only_update_plans_no_reduction(conj):
    """The past is not evaluated when the batch only reweights: nothing is reduced or compiled
    for it, and the report says so."""
    dens, (c0, _, _) = conj
    g = np.random.default_rng(13)
    m0, cov0 = _exact([c0])
    draws = g.multivariate_normal(m0, cov0, 400)
    vals = {"k_mu": draws[:, 0], "k_z": draws[:, 1:]}
    post = ParticlePosterior(vals, None, dens.log_likelihood_z(dens.to_unconstrained(vals), c0, True)[0])
    one = {k: v[:1] for k, v in c0.items()}
    _, rep = smc_update(post, one, dens, past_data=[c0], sufficient_statistics=True, rng=14)
    assert rep.status == "reweighted", rep
    assert not rep.sufficient_statistics and "did not evaluate the past" in rep.sufficient_reason
    assert rep.rows_past == rep.rows_past_reduced == 36 and rep.rows_exact == 37


# ----------------------------------------------------------------------------------- fallbacks
def test_student_t_is_not_reduced():
    tw = vt.Twin("t_suff", vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0]),
                 [vt.Parameter("a", vt.NormalPrior(0, 1))], observation=vt.StudentTObs(sigma=0.2, nu=4.0))
    d = {"x": np.repeat([1.0, 2.0], 3).reshape(-1, 1), "y": np.arange(6.0)}
    dens = TwinLogDensity(tw, input_names=["x"])
    dens.prepare(d)
    with pytest.raises(NotReducible, match="StudentT.*no fixed-size sufficient statistic"):
        dens.reduce_chunk(d)
    plan = plan_reductions(dens, [d], True, None)
    assert not plan.used and "StudentT" in plan.reason and plan.n_rows_reduced == 6


def test_marginal_gp_is_not_row_separable():
    tw = vt.Twin("gp_suff", vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0]),
                 [vt.Parameter("a", vt.NormalPrior(0, 1))], discrepancy=vt.GPDiscrepancy(),
                 observation=vt.GaussianObs(sigma=0.2))
    assert tw.marginal_discrepancy()
    d = {"x": np.repeat([1.0, 2.0, 3.0], 2).reshape(-1, 1), "y": np.arange(6.0)}
    dens = TwinLogDensity(tw, input_names=["x"])
    dens.prepare(d)
    with pytest.raises(NotReducible, match="MvNormal.*not row-separable"):
        dens.reduce_chunk(d)


def test_no_repeats_and_sd_that_differs_within_a_group(conj):
    dens, _ = conj
    d = {"x": X4.reshape(-1, 1), "y": X4.copy(), "unit": np.array(["u1"] * 4)}
    with pytest.raises(NotReducible, match="no repeated rows"):
        dens.reduce_chunk(d)
    # the same inputs twice, but with different known sds: no group can merge
    d2 = {"x": np.tile(X4, 2).reshape(-1, 1), "y": np.tile(X4, 2), "unit": np.array(["u1"] * 8),
          "y_sd": np.r_[np.full(4, 0.1), np.full(4, 0.3)]}
    with pytest.raises(NotReducible, match="y_sd differs within rows that share unit and inputs"):
        dens.reduce_chunk(d2)
    # equal sds within the groups do merge (no model compiled here)
    d3 = dict(d2, y_sd=np.full(8, 0.1))
    assert group_rows(d3).n_groups == 4
    # the same x in different units are different groups
    d4 = dict(d3, unit=np.array(["u1"] * 4 + ["u2"] * 4))
    assert group_rows(d4).n_groups == 8


def test_row_coupled_simulator_fails_the_run_time_check():
    """A simulator that centres x on the chunk's mean: its output at a row depends on the other
    rows, so the representative rows do not reproduce it; the check refuses the reduction."""
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * (X[:, 0] - X[:, 0].mean()), name="centred")
    tw = vt.Twin("coupled_suff", sim, [vt.Parameter("a", vt.NormalPrior(0, 1))],
                 observation=vt.GaussianObs(sigma=0.2))
    x = np.repeat([0.0, 1.0, 3.0], [1, 1, 6])  # representative mean 4/3, full mean 19/8
    d = {"x": x.reshape(-1, 1), "y": x - x.mean()}
    dens = TwinLogDensity(tw, input_names=["x"])
    dens.prepare(d)
    z = np.array([[0.5], [1.0], [2.0]])
    plan = plan_reductions(dens, [d], True, z)
    assert not plan.used and "differs from the full one at the check particles" in plan.reason
    assert plan.n_rows_reduced == 8
    # the failed check is remembered: the chunk is not re-checked
    red = dens.reduce_chunk(d)
    assert red.failure and not red.verified
    # and the target evaluates the chunk in full
    tgt = TemperedTarget(dens, [d], d, sufficient_statistics=True, check_z=z)
    assert tgt.exact_past == [d] and tgt.rows_exact == 16


def test_models_without_the_reduction_are_evaluated_in_full():
    m = CallableModel(lambda th, d: -0.5 * ((d["y"][None] - th["a"][:, :1]) ** 2).sum(1),
                      lambda th: -0.5 * th["a"][:, 0] ** 2, {"a": (1,)})
    d = {"x": np.ones((4, 1)), "y": np.zeros(4)}
    tgt = TemperedTarget(m, [d], d, sufficient_statistics=True, check_z=np.zeros((2, 1)))
    assert not tgt.reduction.used and "offers no sufficient-statistic reduction" in tgt.reduction.reason
    assert tgt.rows_exact == 8
    assert "not requested" in TemperedTarget(m, [d], d).reduction.reason


def test_hsgp_discrepancy_rows_reduce_exactly():
    """An HSGP discrepancy is a per-row function of x (the basis frozen on the calibration
    inputs): replicate rows share it, and the reduced chunk equals the full one."""
    g = np.random.default_rng(10)
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * pt.sqrt(X[:, 0]), name="sqrt_law")
    tw = vt.Twin("hsgp_suff", sim, [vt.Parameter("a", vt.NormalPrior(1.0, 1.0))],
                 discrepancy=vt.HSGPDiscrepancy(m=6, eta=vt.HalfNormal(0.3)),
                 observation=vt.GaussianObs(sigma=vt.HalfNormal(0.3)))
    x = np.repeat(np.linspace(0.5, 5.0, 6), [1, 2, 3, 4, 5, 6])
    d = {"x": x.reshape(-1, 1), "y": 1.2 * np.sqrt(x) + 0.2 * np.sin(x) + g.normal(0, 0.1, x.size)}
    data = vt.TwinData(x=d["x"], y=d["y"], input_names=["x"])
    dens = TwinLogDensity(tw.with_frozen_discrepancy(data), input_names=["x"])
    dens.prepare(d)
    red = _assert_equal(dens, d, _z(dens, 5, g))
    assert red.n_rows == 21 and red.n_groups == 6


def test_assimilate_passes_the_option_and_reports_it(conj):
    """Through ``assimilate``: the calibration chunk is reduced, the report says so and survives
    its JSON round trip."""
    import arviz as az
    import xarray as xr

    from vvuq_twin.assimilation import UpdateReport, assimilate
    from vvuq_twin.inference import TwinResult

    _, (c0, b1, _) = conj
    g = np.random.default_rng(11)
    m0, cov0 = _exact([c0])
    draws = g.multivariate_normal(m0, cov0, 500)
    post = xr.Dataset({"k_mu": (("chain", "draw"), draws[None, :, 0]),
                       "k_z": (("chain", "draw", "unit"), draws[None, :, 1:])}, coords={"unit": list(UNITS)})
    twin = _linear()
    data = vt.TwinData(x=c0["x"], y=c0["y"], unit=c0["unit"], input_names=["x"])
    res = TwinResult(idata=az.InferenceData(posterior=post), twin=twin, data=data,
                     declaration_hash=twin.hash, data_hash=data.hash)
    new = vt.TwinData(x=b1["x"], y=b1["y"], unit=b1["unit"], input_names=["x"])
    out = assimilate(res, new, sufficient_statistics="auto", resample_threshold=1.0, rng=12)
    rep = out.reports[-1]
    assert rep.sufficient_statistics and rep.rows_past == 36 and rep.rows_past_reduced == 12, rep
    assert rep.rows_exact == 12 + 36
    back = UpdateReport.from_dict(rep.to_dict())
    assert back.sufficient_statistics and back.sufficient_reason == rep.sufficient_reason
