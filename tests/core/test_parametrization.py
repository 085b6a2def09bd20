"""``Parameter(centered="auto")``: the centred/non-centred choice from the twin and the data.

The rule (Papaspiliopoulos, Roberts & Skold 2007) is checked against the normal hierarchical
model, where the information ratio is known in closed form: ``r = tau^2 n / s^2``; then the
choice is shown to reach the model, the calibration record, the ledger and a reloaded result.
"""

from __future__ import annotations

import numpy as np
import pytest

import vvuq_twin as vt
from vvuq_twin.exceptions import TwinSpecificationError
from vvuq_twin.twin._parametrization import INFORMATION_THRESHOLD, choose_parametrization


def _normal_hierarchy(n_per: int, s: float, tau: float, n_units: int = 4, centered="auto"):
    """y_ui = a_u + e, e ~ N(0, s^2), a_u ~ N(mu, tau^2) (identity simulator, fixed s and tau)."""
    units = [f"u{i}" for i in range(n_units)]
    x = np.tile(np.linspace(0.0, 1.0, n_per), n_units)
    y = np.repeat(np.arange(n_units, dtype=float), n_per) + 0.1 * np.cos(7 * x)
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + 0.0 * X[:, 0], name="level")
    twin = vt.Twin(f"nh_{n_per}_{s}_{tau}", sim,
                   [vt.Parameter("a", vt.NormalPrior(0.0, 2.0), per_unit=True, pop_scale=tau, centered=centered)],
                   observation=vt.GaussianObs(sigma=s), hierarchy=vt.Hierarchy())
    return twin, vt.TwinData(x=x, y=y, unit=np.repeat(units, n_per))


@pytest.mark.parametrize("n_per,s,tau", [(10, 0.5, 0.3), (1, 0.5, 0.1), (3, 0.2, 1.0)])
def test_information_ratio_matches_the_normal_hierarchy_in_closed_form(n_per, s, tau):
    twin, data = _normal_hierarchy(n_per, s, tau)
    rec = choose_parametrization(twin, data)["a"]
    exact = tau**2 * n_per / s**2  # Fisher information n/s^2 of a unit's mean, times tau^2
    # Monte Carlo variance of the score over 256 replicates: about sqrt(2/(256 n)) relative
    assert rec["information_ratio"]["median"] == pytest.approx(exact, rel=0.2)
    assert rec["obs_per_unit"] == {"median": float(n_per), "min": n_per, "max": n_per}
    assert rec["source"] == "auto"
    assert rec["centered"] is (exact > INFORMATION_THRESHOLD)


def test_choice_follows_the_data_size_and_is_reproducible():
    weak = choose_parametrization(*_normal_hierarchy(1, 1.0, 0.2))["a"]  # r = 0.04
    strong = choose_parametrization(*_normal_hierarchy(20, 0.2, 0.5))["a"]  # r = 125
    assert weak["centered"] is False and "non-centred" in weak["reason"]
    assert strong["centered"] is True and "centred" in strong["reason"]
    twin, data = _normal_hierarchy(20, 0.2, 0.5)
    from vvuq_twin.twin import _parametrization as mod

    mod._MEMO.clear()
    assert choose_parametrization(twin, data) == choose_parametrization(twin, data)  # fixed seed
    # declared choices are reported, not recomputed
    tw_decl, d = _normal_hierarchy(20, 0.2, 0.5, centered=False)
    assert choose_parametrization(tw_decl, d) == {"a": {"centered": False, "source": "declared"}}


def test_auto_reaches_the_model_and_keeps_the_declaration_hash():
    twin, data = _normal_hierarchy(20, 0.2, 0.5)
    model = twin.build_model(data)
    assert "a_lin" in model.named_vars and "a_z" not in model.named_vars
    weak, wdata = _normal_hierarchy(1, 1.0, 0.2)
    assert "a_z" in weak.build_model(wdata).named_vars
    fixed = twin.with_parametrization(data)
    assert fixed.parameters[0].centered is True and fixed.hash == twin.hash
    assert fixed.with_parametrization({"a": False}) is fixed  # nothing left to choose
    assert twin.with_parametrization({"a": {"centered": False}}).parameters[0].centered is False
    assert twin.free_variable_names(data) == ["a_mu", "a_lin"]
    # the numpy answers read the choice from the draws
    vals = twin.parameter_values({"a_mu": np.zeros(2), "a_lin": np.ones((2, 4))})
    np.testing.assert_array_equal(vals["a"], np.ones((2, 4)))
    with pytest.raises(TwinSpecificationError, match="centered='auto'.*Pass data="):
        twin.free_variable_names()


def test_auto_declaration_errors_and_name_clash():
    with pytest.raises(TwinSpecificationError, match="`centered` must be True, False or 'auto'"):
        vt.Parameter("a", vt.NormalPrior(0, 1), per_unit=True, centered="yes")
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + p["a_lin"] * X[:, 0], name="clash")
    # a_lin is the centred form's variable: with "auto" both forms are possible, so it clashes
    with pytest.raises(TwinSpecificationError, match="a_lin"):
        vt.Twin("clash", sim, [vt.Parameter("a", vt.NormalPrior(0, 1), per_unit=True, centered="auto"),
                               vt.Parameter("a_lin", vt.NormalPrior(0, 1))], hierarchy=vt.Hierarchy())
    vt.Twin("noclash", sim, [vt.Parameter("a", vt.NormalPrior(0, 1), per_unit=True, centered=False),
                             vt.Parameter("a_lin", vt.NormalPrior(0, 1))], hierarchy=vt.Hierarchy())


def test_calibrate_records_the_choice_and_a_reload_applies_it(tmp_path):
    twin, data = _normal_hierarchy(20, 0.2, 0.5)
    res = vt.calibrate(twin, data, draws=200, tune=300, chains=2, rng=3, warn=False,
                       posterior_predictive=False, progressbar=False)
    rec = res.info["parametrization"]["a"]
    assert rec["centered"] is True and rec["source"] == "auto"
    assert "a_lin" in res.posterior and res.twin.parameters[0].centered is True
    assert res.declaration_hash == twin.hash
    entry = res.ledger.latest("parametrization", kind="calibration")[0]
    assert entry.result["a"]["centered"] is True and "information ratio" in entry.result["a"]["reason"]
    # unit means: posterior of a_u close to the unit's data mean (weak N(mu, 0.5) pooling)
    ybar = np.array([data.y[data.unit == u].mean() for u in data.units])
    np.testing.assert_allclose(res.posterior["a"].mean(("chain", "draw")).values, ybar, atol=0.1)
    path = res.to_netcdf(tmp_path / "r.nc")
    back = vt.load_result(path, twin=twin, data=data)
    assert back.twin.parameters[0].centered is True
    # a file that does not record the choice cannot be re-read with the "auto" declaration
    from vvuq_twin.exceptions import ResultFileError

    res.info.pop("parametrization")
    bare = res.to_netcdf(tmp_path / "bare.nc")
    with pytest.raises(ResultFileError, match="records no parametrisation choice"):
        vt.load_result(bare, twin=twin, data=data)


def test_fixed_twins_keep_their_choice_in_the_compile_key():
    from vvuq_twin.inference.calibrate import _auto_tag

    twin, data = _normal_hierarchy(20, 0.2, 0.5)
    c, nc = twin.with_parametrization({"a": True}), twin.with_parametrization({"a": False})
    assert c.hash == nc.hash == twin.hash  # one declaration ...
    rc, rnc = c.parametrization(data), nc.parametrization(data)
    assert rc["a"]["source"] == rnc["a"]["source"] == "chosen"
    assert (rc["a"]["centered"], rnc["a"]["centered"]) == (True, False)
    # ... two models: their compiled log densities are kept apart
    assert _auto_tag(rc) != _auto_tag(rnc) and _auto_tag(rc) == _auto_tag(twin.parametrization(data))
    tw_decl, _ = _normal_hierarchy(20, 0.2, 0.5, centered=True)
    assert _auto_tag(tw_decl.parametrization(data)) == ""
