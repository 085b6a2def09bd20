"""A compiled model is reused for new observations at the same inputs, and gives their posterior.

Known answer: the conjugate linear-Gaussian posterior mean for each data set (within 4 MCSE).
"""

import numpy as np

import vvuq_twin as vt
import importlib

calmod = importlib.import_module("vvuq_twin.inference.calibrate")


def _closed_mean(x, y, sigma, prior_sd):
    A = np.column_stack([np.ones_like(x), x])
    cov = np.linalg.inv(A.T @ A / sigma**2 + np.eye(2) / prior_sd**2)
    return cov @ (A.T @ y / sigma**2), np.sqrt(np.diag(cov))


def test_new_observations_reuse_the_compiled_model_and_get_their_own_posterior():
    rng = np.random.default_rng(21)
    x = np.linspace(-1, 1, 12)
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + p["b"] * X[:, 0], name="line_reuse")
    twin = vt.Twin("reuse", sim, [vt.Parameter("a", vt.Normal(0, 3)), vt.Parameter("b", vt.Normal(0, 3))],
                   observation=vt.Gaussian(sigma=0.3))
    y1 = 1.0 + 2.0 * x + rng.normal(0, 0.3, x.size)
    y2 = -2.0 + 0.5 * x + rng.normal(0, 0.3, x.size)
    d1, d2 = vt.TwinData(x=x, y=y1), vt.TwinData(x=x, y=y2)
    assert d1.structure_hash == d2.structure_hash and d1.hash != d2.hash
    r1 = vt.calibrate(twin, d1, draws=800, tune=400, chains=2, rng=1, warn=False)
    r2 = vt.calibrate(twin, d2, draws=800, tune=400, chains=2, rng=1, warn=False)
    assert r2.info["compile_time_s"] == 0.0  # the compiled model was reused
    assert r1.data_hash != r2.data_hash  # results still carry their own data hash
    for res, y in ((r1, y1), (r2, y2)):
        m, s = _closed_mean(x, y, 0.3, 3.0)
        for i, name in enumerate("ab"):
            d = res.posterior[name]
            import arviz as az

            mcse = float(az.mcse(d.to_dataset(name="v"), method="mean")["v"])
            assert abs(float(d.mean()) - m[i]) < 4 * mcse + 1e-9, (name, float(d.mean()), m[i])
    # the posterior predictive's observed_data is the data set's own
    np.testing.assert_array_equal(r2.idata.observed_data["y"].values, y2)
    # a data set with other inputs compiles anew
    r3 = vt.calibrate(twin, vt.TwinData(x=x * 2, y=y2), draws=200, tune=200, chains=2, rng=1, warn=False)
    assert r3.info["compile_time_s"] > 0.0
    assert any(k[1] == d1.structure_hash for k in calmod._CACHE)
