"""Twin operations: replicate, exchange, fuse, compose, lineage - known answers and bad input.

Four calibrations in all (two single-unit conjugate fits, one hierarchical fit done twice with
the same seed, which reuses the compiled model).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

import vvuq_twin as vt
from vvuq_twin.exceptions import DataValidationError
from vvuq_twin.inference.ledger import Ledger
from vvuq_twin.inference.predict import predict
from vvuq_twin.operations import (
    Lineage,
    LineageError,
    OperationError,
    Scenario,
    compose,
    exchange,
    fuse_data,
    fuse_hierarchical,
    fuse_posteriors,
    gaussian_fusion,
    lineage_of,
    replicate,
)

SIGMA = 1.0          # known noise sd
PRIOR_SD = 0.5       # informative prior: double counting it would be visible
DRAWS, TUNE, CHAINS = 500, 500, 2


def _line(X, p):
    return p["theta"] * X[:, 0]


SIM = vt.PytensorSimulator(_line, name="line")


def _twin():
    return vt.Twin("line", SIM, [vt.Parameter("theta", vt.Normal(0.0, PRIOR_SD))],
                   observation=vt.Gaussian(sigma=SIGMA))


def _data(seed):
    r = np.random.default_rng(seed)
    x = np.linspace(0.5, 1.5, 6)
    return vt.TwinData(x=x, y=1.0 * x + r.normal(0, SIGMA, x.size))


def _closed_form(*datasets):
    """Conjugate posterior of theta given all data sets: (mean, sd)."""
    prec = 1 / PRIOR_SD**2 + sum(float(d.x[:, 0] @ d.x[:, 0]) for d in datasets) / SIGMA**2
    mean = sum(float(d.x[:, 0] @ d.y) for d in datasets) / SIGMA**2 / prec
    return mean, prec**-0.5


@pytest.fixture(scope="module")
def fits():
    da, db = _data(1), _data(2)
    ra = vt.calibrate(_twin(), da, rng=10, draws=DRAWS, tune=TUNE, chains=CHAINS)
    rb = vt.calibrate(_twin(), db, rng=11, draws=DRAWS, tune=TUNE, chains=CHAINS)
    return ra, rb


# ----------------------------------------------------------------------------- lineage
def test_lineage_roundtrip_and_dot(fits):
    ra, _ = fits
    lin = Lineage()
    rid = lin.add_result(ra)
    oid = lin.add_output("replicate", "w", [rid])
    assert lin.nodes[rid]["declaration_hash"] == ra.twin.hash
    assert f"data:{ra.data_hash[:12]}" in lin.ancestors(oid)
    assert f"twin:{ra.twin.hash[:12]}" in lin.ancestors(oid)
    back = Lineage.from_json(lin.to_json())
    assert back.to_dict() == json.loads(lin.to_json())
    dot = lin.to_dot()
    assert dot.startswith("digraph lineage {") and f'"{rid}" -> "{oid}" [label="replicate"]' in dot
    with pytest.raises(LineageError, match="not in the graph"):
        lin.add_edge(rid, "twin:nope", "x")
    with pytest.raises(LineageError, match="no lineage"):
        lineage_of(xr.Dataset())


# ----------------------------------------------------------------------------- replicate
def test_replicate_unchanged_world_reproduces_predict(fits, tmp_path):
    ra, _ = fits
    x = np.array([0.5, 1.0, 2.0])
    ds = replicate(
        ra,
        {
            "base": None,
            "double_load": Scenario(x_new=2 * x),
            "stiffer": lambda t: dataclasses.replace(
                t, simulator=vt.PytensorSimulator(lambda X, p: 2.0 * p["theta"] * X[:, 0], name="x2")),
        },
        x_new=x, rng=7,
    )
    ref = predict(ra, x, rng=7)
    assert ds.sizes["scenario"] == 3
    for v in ("eta", "zeta", "y"):
        np.testing.assert_array_equal(ds[v].sel(scenario="base").values, ref[v].values)
    # linear simulator: doubling the load or the constant doubles eta draw by draw
    np.testing.assert_allclose(ds["eta"].sel(scenario="double_load"), 2 * ds["eta"].sel(scenario="base"), rtol=1e-12)
    np.testing.assert_allclose(ds["eta"].sel(scenario="stiffer"), 2 * ds["eta"].sel(scenario="base"), rtol=1e-12)
    np.testing.assert_array_equal(ds["x"].sel(scenario="double_load", input="x0"), 2 * x)
    # same seed -> same worlds; another seed -> other noise draws
    again = replicate(ra, {"base": None}, x_new=x, rng=7)
    np.testing.assert_array_equal(again["y"].sel(scenario="base"), ds["y"].sel(scenario="base"))
    other = replicate(ra, {"base": None}, x_new=x, rng=8)
    assert not np.array_equal(other["y"].values, again["y"].values)
    lin = lineage_of(ds)
    assert len(lin.find("output", operation="replicate")) == 3
    assert lin.find("twin", label="line") and len(lin.find("twin")) == 2  # original + stiffer
    ds.to_netcdf(tmp_path / "rep.nc", engine="h5netcdf")
    assert lineage_of(xr.open_dataset(tmp_path / "rep.nc", engine="h5netcdf")).to_json() == lin.to_json()


def test_replicate_bad_input(fits):
    ra, _ = fits
    newp = lambda t: dataclasses.replace(t, parameters=[vt.Parameter("theta", vt.Normal(0.0, 5.0))])
    with pytest.raises(OperationError, match="changes the parameterisation"):
        replicate(ra, {"w": newp}, x_new=[1.0])
    with pytest.raises(OperationError, match="unknown keys"):
        replicate(ra, {"w": {"load": 2}}, x_new=[1.0])
    with pytest.raises(OperationError, match="has no inputs"):
        replicate(ra, {"w": None})
    with pytest.raises(DataValidationError, match="same number of points"):
        replicate(ra, {"a": None, "b": Scenario(x_new=[1.0, 2.0])}, x_new=[1.0], rng=1)


# ----------------------------------------------------------------------------- exchange
def test_exchange_marks_stale_and_rejects_incompatible(fits):
    ra, rb = fits
    res = dataclasses.replace(ra, ledger=Ledger.from_json(ra.ledger.to_json()))
    res.ledger.record("verification", "mms_order", twin=res.twin, data_hash=res.data_hash,
                      passed=True, depends_on=("simulator",))
    n_before = len(res.ledger.entries)
    hash_before = res.twin.hash
    ex = exchange(res, component="observation", new=vt.Gaussian(sigma=2.0))
    assert ex.rerun == ["calibration/sampler_diagnostics"]  # simulator-only check still valid
    assert ex.needs_recalibration
    states = {r["name"]: r["state"] for r in ex.status}
    assert states == {"sampler_diagnostics": "stale", "mms_order": "pass"}
    ex2 = exchange(res, component="simulator",
                   new=vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0] ** 2, name="quad"))
    assert ex2.rerun == ["calibration/sampler_diagnostics", "verification/mms_order"]
    # exchange between twins: the same simulator from another twin changes nothing
    ex3 = exchange(res, component="simulator", new=rb)
    assert ex3.rerun == [] and ex3.twin.hash == hash_before
    # incompatible swaps: clear error, nothing changed
    bad_shape = vt.PytensorSimulator(lambda X, p: p["theta"] * X, name="2d")
    with pytest.raises(OperationError, match=r"rejected, nothing changed.*returned shape \(6, 1\)"):
        exchange(res, component="simulator", new=bad_shape)
    other_params = vt.PytensorSimulator(lambda X, p: p["k"] * X[:, 0], name="k")
    with pytest.raises(OperationError, match="parameters \\['theta'\\].*KeyError"):
        exchange(res, component="simulator", new=other_params)
    with pytest.raises(OperationError, match="must be a Discrepancy"):
        exchange(res, component="discrepancy", new=vt.Gaussian())
    with pytest.raises(OperationError, match="component must be one of"):
        exchange(res, component="priors", new=None)
    wrong_cols = vt.TwinData(x=np.ones((3, 2)), y=np.ones(3))
    with pytest.raises(OperationError, match="same columns"):
        exchange(res, component="data", new=wrong_cols)
    assert len(res.ledger.entries) == n_before and res.twin.hash == hash_before
    assert ex.ledger.entries[-1].name == "exchange_observation"
    lin = ex.lineage
    assert lin.find("component", component="observation", label="new.observation")


# ----------------------------------------------------------------------------- fuse: posteriors
def test_gaussian_fusion_exact_on_conjugate_closed_forms():
    # K=3 exact conjugate posteriors of a 2-d linear-Gaussian model share the prior N(m0, C0)
    r = np.random.default_rng(0)
    m0, C0 = np.array([0.3, -0.2]), np.array([[1.0, 0.3], [0.3, 0.5]])
    P0 = np.linalg.inv(C0)
    As = [r.normal(size=(5, 2)) for _ in range(3)]
    ys = [A @ np.array([1.0, 2.0]) + r.normal(size=5) for A in As]
    post = []
    for A, y in zip(As, ys):
        C = np.linalg.inv(P0 + A.T @ A)
        post.append((C @ (P0 @ m0 + A.T @ y), C))
    A_all, y_all = np.vstack(As), np.concatenate(ys)
    C_all = np.linalg.inv(P0 + A_all.T @ A_all)
    m_all = C_all @ (P0 @ m0 + A_all.T @ y_all)
    mean, cov = gaussian_fusion(np.array([p[0] for p in post]), np.array([p[1] for p in post]), m0, C0)
    np.testing.assert_allclose(mean, m_all, rtol=1e-10)
    np.testing.assert_allclose(cov, C_all, rtol=1e-10)
    # the naive product (prior counted 3 times) is wrong
    naive_P = sum(np.linalg.inv(p[1]) for p in post)
    assert np.abs(np.linalg.inv(naive_P) - C_all).max() > 0.01
    with pytest.raises(OperationError, match="not positive definite"):
        gaussian_fusion(np.zeros((2, 1)), np.full((2, 1, 1), 10.0), np.zeros(1), np.eye(1))


def test_fuse_posteriors_matches_joint_closed_form(fits):
    ra, rb = fits
    ds = fuse_posteriors([ra, rb])
    m, s = _closed_form(ra.data, rb.data)
    fm, fs = float(ds["mean"].sel(param="theta")), float(ds["sd"].sel(param="theta"))
    assert abs(fm - m) < 0.15 * s, (fm, m, s)
    assert abs(fs / s - 1) < 0.12, (fs, s)
    # failure case: the naive product double counts the prior -> shrunk mean, too small sd
    P = 1 / ds["input_sd"].sel(param="theta").values ** 2
    naive_mean = float((P * ds["input_mean"].sel(param="theta").values).sum() / P.sum())
    assert abs(naive_mean - m) > 0.3 * s and abs(P.sum() ** -0.5 / s - 1) > 0.05
    lin = lineage_of(ds)
    assert {n["data_hash"] for n in lin.nodes.values() if n["kind"] == "result"} == {ra.data_hash, rb.data_hash}
    # bad input: same data twice, different parameterisation, per-unit request
    with pytest.raises(OperationError, match="counted twice|count those data twice"):
        fuse_posteriors([ra, ra])
    other = dataclasses.replace(rb, twin=vt.Twin("line", SIM, [vt.Parameter("theta", vt.Normal(0.0, 3.0))],
                                                observation=vt.Gaussian(sigma=SIGMA)))
    with pytest.raises(OperationError, match="same parameterisation"):
        fuse_posteriors([ra, other])
    with pytest.raises(OperationError, match="unknown parameter 'k'"):
        fuse_posteriors([ra, rb], parameters=["k"])


# ----------------------------------------------------------------------------- fuse: hierarchical
def _htwin():
    return vt.Twin("line_fleet", SIM,
                   [vt.Parameter("theta", vt.Normal(0.0, 1.0), per_unit=True, pop_scale=vt.HalfNormal(0.5))],
                   observation=vt.Gaussian(sigma=SIGMA), hierarchy=vt.Hierarchy(dim="unit"))


def test_fuse_hierarchical_equals_joint_fit(fits):
    ra, rb = fits
    # two units identify the population sd weakly; this test checks identity, not convergence
    kw = dict(draws=300, tune=300, chains=2, warn=False)
    fused = fuse_hierarchical([ra, rb], twin=_htwin(), units=["A", "B"], rng=5, **kw)
    joint_data = vt.TwinData(x=np.concatenate([ra.data.x[:, 0], rb.data.x[:, 0]]),
                             y=np.concatenate([ra.data.y, rb.data.y]), unit=["A"] * 6 + ["B"] * 6,
                             obs=[f"A/{i}" for i in range(6)] + [f"B/{i}" for i in range(6)])
    assert fused.data_hash == joint_data.hash
    joint = vt.calibrate(_htwin(), joint_data, rng=5, **kw)
    for v in ("theta", "theta_mu", "theta_sigma"):
        np.testing.assert_array_equal(fused.posterior[v].values, joint.posterior[v].values)
        xr.testing.assert_allclose(fused.posterior[v].mean(("chain", "draw")),
                                   joint.posterior[v].mean(("chain", "draw")))
    assert list(fused.posterior["theta"].coords["unit"].values) == ["A", "B"]
    lin = lineage_of(fused)
    assert len(lin.find("output", operation="fuse_hierarchical")) == 1
    assert {ra.data_hash, rb.data_hash, joint_data.hash} <= {n["hash"] for n in lin.nodes.values()}
    assert fused.ledger.entries[-1].name == "fuse_hierarchical"

    # replicate a fleet twin: per-unit worlds and a new unit drawn from the population
    rep = replicate(fused, {"A": Scenario(unit="A"), "B": Scenario(unit="B"), "new": Scenario(unit="new")},
                    x_new=[1.0], rng=2)
    np.testing.assert_allclose(rep["eta"].sel(scenario="A", obs=0), fused.posterior["theta"].sel(unit="A"))
    np.testing.assert_allclose(rep["eta"].sel(scenario="new", obs=0), rep["theta_new"].sel(scenario="new"))
    assert bool(rep["theta_new"].sel(scenario="A").isnull().all())

    # exchange one unit's data on the fused twin -> calibration stale, other unit untouched
    new_a = vt.TwinData(x=[0.7, 1.2], y=[0.6, 1.3])
    ex = exchange(fused, component="data", new=new_a, unit="A")
    assert ex.data.n == 8 and sorted(set(ex.data.unit.tolist())) == ["A", "B"]
    np.testing.assert_array_equal(ex.data.y[ex.data.unit == "B"], rb.data.y)
    assert "calibration/sampler_diagnostics" in ex.rerun
    with pytest.raises(OperationError, match="unit 'C' is not in the data"):
        exchange(fused, component="data", new=new_a, unit="C")


def test_fuse_bad_input(fits):
    ra, rb = fits
    with pytest.raises(OperationError, match="has no hierarchy"):
        fuse_hierarchical([ra, rb])
    other_sim = vt.Twin("quad", vt.PytensorSimulator(lambda X, p: p["theta"] * X[:, 0] ** 2, name="quad"),
                        [vt.Parameter("theta", vt.Normal(0.0, PRIOR_SD))], observation=vt.Gaussian(sigma=SIGMA))
    rq = dataclasses.replace(rb, twin=other_sim)
    with pytest.raises(OperationError, match="different parameterisations cannot be fused"):
        fuse_hierarchical([ra, rq], twin=_htwin(), units=["A", "B"])
    with pytest.raises(OperationError, match="no unit labels; pass units"):
        fuse_data([ra.data, rb.data])
    with pytest.raises(OperationError, match="different inputs"):
        fuse_data([ra.data, vt.TwinData(x=np.ones((2, 2)), y=[1.0, 2.0])], units=["A", "B"])
    with pytest.raises(OperationError, match="appear in data sets 0 and 1"):
        fuse_data([vt.TwinData(x=[1.0], y=[1.0], unit=["A"]), vt.TwinData(x=[2.0], y=[1.0], unit=["A"])])


# ----------------------------------------------------------------------------- compose
def test_compose_linear_gaussian_matches_analytic(fits):
    ra, rb = fits
    x0 = 1.5
    c0, c1, s = 1.0, 3.0, 0.2

    def fatigue(u, rng):
        return c0 + c1 * u[..., 0] + rng.normal(0, s, u.shape[:2])

    S = 1000
    ds = compose(ra, fatigue, x_new=[x0], n_draws=S, rng=3)
    mu, sd = _closed_form(ra.data)
    # upstream zeta = theta * x0 ~ N(mu x0, (sd x0)^2)
    m_exp = c0 + c1 * mu * x0
    v_exp = c1**2 * (sd * x0) ** 2 + s**2
    out = ds["output"].sel(obs=0)
    assert abs(float(out.mean("sample")) - m_exp) < 4 * np.sqrt(v_exp / S) + 0.05 * c1 * x0 * sd
    assert abs(float(out.var("sample")) / v_exp - 1) < 0.2
    # failure case: plugging in the posterior mean (no upstream uncertainty) gives only s^2
    assert float(out.var("sample")) > 10 * s**2
    np.testing.assert_allclose(ds["x_down"].sel(obs=0, input_down=0), ds["upstream"].sel(obs=0))
    again = compose(ra, fatigue, x_new=[x0], n_draws=S, rng=3)
    xr.testing.assert_identical(ds, again)
    lin = lineage_of(ds)
    assert lin.find("component", component="downstream_function")

    # downstream twin (independent posterior of B): w = theta_B * u, product of independents
    S2 = 300
    d2 = compose(ra, rb, x_new=[x0], n_draws=S2, rng=4)
    mb, sb = _closed_form(rb.data)
    ma, sa = mu * x0, sd * x0
    m2 = ma * mb
    v2 = ma**2 * sb**2 + mb**2 * sa**2 + sa**2 * sb**2
    z = d2["zeta"].sel(obs=0)
    np.testing.assert_allclose(z, d2["eta"].sel(obs=0))  # no discrepancy
    assert abs(float(z.mean("sample")) - m2) < 4 * np.sqrt(v2 / S2) + 0.05 * np.sqrt(v2)
    assert abs(float(z.var("sample")) / v2 - 1) < 0.3
    assert float(d2["y"].sel(obs=0).var("sample")) > float(z.var("sample"))  # noise added
    assert len(lineage_of(d2).find("result")) == 2

    with pytest.raises(DataValidationError, match="downstream inputs of shape"):
        compose(ra, fatigue, x_new=[x0], n_draws=10, link=lambda u: u[:, :, None, None], rng=0)
    with pytest.raises(DataValidationError, match="takes 1"):
        compose(ra, rb, x_new=[x0], n_draws=10, link=lambda u: np.stack([u, u], -1), rng=0)
    with pytest.raises(OperationError, match="fewer than n_draws"):
        compose(ra, fatigue, x_new=[x0], n_draws=10**6, rng=0)
