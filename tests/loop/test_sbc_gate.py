"""The loop's SBC gate: a PASS can fail, a FAIL is real (issue #14).

``sbc_twin`` is replaced by the generic engine on a conjugate normal model (exact posterior,
no MCMC), so every verdict has a known answer: the exact posterior PASSes; an overconfident
posterior (likelihood scale halved) FAILs on its ranks; an exact posterior whose replications
report failed sampler diagnostics PASSes on ranks but FAILs the gate with
``max_unconverged=0`` and is reported (not gated) with the default ``None``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import vvuq_twin.verification as verification
from vvuq_twin.loop import SBC, DataSplit, LoopSpecError, Status, VVUQLoop
from vvuq_twin.verification import sbc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _line import line_data, line_twin  # noqa: E402

N_OBS, N_DRAWS = 5, 300


def _simulate(rng):
    mu = rng.normal()
    return {"mu": mu}, rng.normal(mu, 1.0, size=N_OBS)


def _loglik(params, y):
    return float(-0.5 * np.sum((y - float(params["mu"])) ** 2) - y.size * 0.5 * np.log(2 * np.pi))


def _fit(y, rng, *, sd_scale=1.0, report=None):
    prec = 1.0 + y.size
    draws = {"mu": rng.normal(y.sum() / prec, sd_scale * prec**-0.5, size=N_DRAWS)}
    if report is None:
        return draws
    ok = report(y)
    return draws, {"passed": ok, "rhat": 1.0 if ok else 1.04, "ess_bulk": 400.0 if ok else 50.0,
                   "divergences": 0.0 if ok else 3.0}


def _fake_sbc_twin(kind):
    def fake(twin, data, n_sims, *, rng=None, prob=0.95, var_names=None, **kw):
        fit = {"exact": lambda y, g: _fit(y, g, report=lambda y: True),
               "biased": lambda y, g: _fit(y, g, sd_scale=0.5, report=lambda y: True),
               "unconverged": lambda y, g: _fit(y, g, report=lambda y: bool(y.sum() <= 0)),
               "silent": lambda y, g: _fit(y, g)}[kind]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sbc(_simulate, fit, n_sims, log_likelihood=_loglik, max_rank=99, thin=None, prob=prob, rng=rng)
    return fake


@pytest.fixture(scope="module")
def loop_parts():
    return line_twin(), DataSplit(line_data(np.linspace(0.0, 1.0, 20), 5))


def _run(monkeypatch, loop_parts, kind, out=None, **kw):
    monkeypatch.setattr(verification, "sbc_twin", _fake_sbc_twin(kind))
    twin, split = loop_parts
    step = SBC(n_sims=60, prob=1.0 - 0.05 / 2, **kw)
    return VVUQLoop(twin, split, [step], seed=4, progress=False, out=out).run()


def test_exact_posterior_passes_and_overconfident_posterior_fails(monkeypatch, loop_parts):
    good = _run(monkeypatch, loop_parts, "exact", max_unconverged=0.0)["sbc"]
    assert good.status is Status.PASS, good.reason
    assert good.values["n_diagnosed"] == 60 and good.values["n_unconverged"] == 0
    # nothing unconverged: no region of the prior to point at
    assert good.values["unconverged_where"] == {} and "lie at" not in good.reason
    bad = _run(monkeypatch, loop_parts, "biased", max_unconverged=0.0)["sbc"]
    assert bad.status is Status.FAIL
    assert "mu" in bad.values["failed_quantities"]
    assert "Ranks non-uniform" in bad.reason


def test_unconverged_replications_fail_the_gate_and_are_reported_without_it(monkeypatch, loop_parts, tmp_path):
    gated = _run(monkeypatch, loop_parts, "unconverged", out=tmp_path / "g", max_unconverged=0.0)["sbc"]
    n_bad = gated.values["n_unconverged"]
    assert 0 < n_bad < 60
    assert gated.values["passed"] is True  # the ranks of an exact posterior are uniform ...
    assert gated.status is Status.FAIL  # ... but the gate refuses ranks of unconverged fits
    assert f"failed in {n_bad} of 60 replications" in gated.reason and "sampler budget" in gated.reason
    # the advice names both causes: the SBC's budget, or the inference itself (reparametrise)
    assert "settings of the calibration" in gated.reason and "reparametrise" in gated.reason
    assert gated.values["diagnostics_worst"] == {"rhat": 1.04, "ess_bulk": 50.0, "divergences": 3.0 * n_bad}
    saved = xr.open_dataset(tmp_path / "g" / "steps" / "00_sbc" / "sbc.nc")
    assert int((saved["diag_passed"] == 0).sum()) == n_bad
    # where they lie: the fits "fail" when the data sum is positive, so at high prior mu; the AUC
    # against an explicit count over all (unconverged, converged) pairs of the saved prior values
    mu = saved["prior_value"].sel(quantity="mu").values
    failed = saved["diag_passed"].values == 0
    d = mu[failed][:, None] - mu[~failed][None, :]
    u = float(np.mean((d > 0) + 0.5 * (d == 0)))
    assert gated.values["unconverged_where"]["mu"] == pytest.approx(u) and u > 0.8
    assert f"lie at high prior values of mu (AUC {u:.2f}" in gated.reason
    saved.close()
    # a tolerance that admits them passes; the default reports without gating
    loose = _run(monkeypatch, loop_parts, "unconverged", max_unconverged=n_bad / 60)["sbc"]
    assert loose.status is Status.PASS
    report_only = _run(monkeypatch, loop_parts, "unconverged")["sbc"]
    assert report_only.status is Status.PASS and report_only.values["n_unconverged"] == n_bad
    assert f"failed in {n_bad} of 60" in report_only.reason


def test_gate_on_convergence_without_diagnostics_cannot_pass(monkeypatch, loop_parts):
    r = _run(monkeypatch, loop_parts, "silent", max_unconverged=0.0)["sbc"]
    assert r.values["passed"] is True and r.values["n_diagnosed"] == 0
    assert r.status is Status.FAIL
    assert _run(monkeypatch, loop_parts, "silent")["sbc"].status is Status.PASS


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_max_unconverged(bad):
    with pytest.raises(LoopSpecError, match="max_unconverged"):
        SBC(max_unconverged=bad)
