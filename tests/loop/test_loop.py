"""The VVUQ loop: gates that hold, provisional marking, validation that can fail, resume."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import pytensor.tensor as pt

import vvuq_twin as vt
from vvuq_twin.loop import (PROVISIONAL, Assimilate, Calibrate, DataSplit, Decide,
                            DiagnosticsGateError, LoopSpecError, Operate, QoI, Sensitivity, Status,
                            Steer, Validate, Verify, VVUQLoop, threshold_decision)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _line import THETA, line_data as _data, line_twin  # noqa: E402


@pytest.fixture(scope="module")
def twin():
    return line_twin()


@pytest.fixture(scope="module")
def split():
    # the realisations are typical ones: the exact conjugate t-predictive of this model covers
    # 92.5% of the hold-out at 90% and its PIT KS p-value is 0.31 (seed 1 drew a calibration set
    # with residual sd 0.059 against the true 0.1, for which even the exact predictive covers 80%)
    return DataSplit(_data(np.linspace(0.0, 1.0, 20), 5), holdout=_data(np.linspace(0.05, 0.95, 40), 2),
                     stream=[vt.TwinData(x=np.array([0.5, 0.7]), y=THETA * np.array([0.5, 0.7]),
                                         input_names=["x"])])


QOI = QoI("theta2", lambda res, seed: 2.0 * res.posterior["theta"], "twice theta")
CAL = dict(draws=500, tune=500, chains=2)


def _walk_numbers(obj):
    """Every number leaf of a JSON structure, with whether it sits in a PROVISIONAL wrapper."""
    if isinstance(obj, dict):
        if set(obj) == {"value", "status"} and obj["status"] == PROVISIONAL:
            yield obj["value"], True
            return
        for v in obj.values():
            yield from _walk_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj, False


def _comparable(summary):
    s = dict(summary)
    s.pop("volatile")
    return s


def test_full_loop_passes_and_each_step_is_consumed(twin, split, tmp_path):
    cands = vt.TwinData(x=np.array([0.2, 0.6, 1.0]), y=THETA * np.array([0.2, 0.6, 1.0]), input_names=["x"])
    steps = [Verify(), Calibrate(**CAL), Validate(), Sensitivity(qoi=QOI),
             Decide(qoi=QOI, decide=threshold_decision(3.2, 0.1)),
             Steer(candidates=cands, n_draws=300),
             Assimilate(steer="steer"), Validate("revalidate", source="assimilate"),
             Operate(fn=lambda res, seed: {"theta_mean": float(res.posterior["theta"].mean())}, source="assimilate")]
    res = VVUQLoop(twin, split, steps, seed=7, out=tmp_path, progress=False).run()
    assert res["verify"].status is Status.NOT_APPLICABLE and "closed form" in res["verify"].reason
    assert res["calibrate"].status is Status.PASS
    assert res["validate"].status is Status.PASS, res["validate"].reason
    # the posterior of theta: conjugate-ish check against least squares on the calibration data
    x, y = split.calibration.x[:, 0], split.calibration.y
    theta_ls = float(x @ y / (x @ x))
    assert abs(res["decide"].values["qoi_mean"] / 2 - theta_ls) < 0.02
    # sensitivity: the QoI is a function of theta alone
    top = res["sensitivity"].values["ranking"][0]
    assert top["parameter"] == "theta" and top["S1"] > 0.9
    assert res["decide"].values["depends_on"][0] == "theta"
    # EIG about theta of y = theta x + e grows with |x|: the farthest candidate wins
    assert res["steer"].values["best"] == 2
    assert res["assimilate"].values["n_accepted"] == 2  # the steered measurement + the stream batch
    assert res["assimilate"].values["batches"][0]["batch"].startswith("steered:")
    assert res["revalidate"].status is Status.PASS
    assert not res.provisional_steps and res.status is Status.PASS
    # a step whose output nothing consumes is labelled reported only
    assert res["operate"].reported_only and not res["calibrate"].reported_only
    assert "decide" in res["sensitivity"].consumed_by
    # one ledger entry per step, with its status
    names = [e.name for e in res.ledger.entries]
    assert names == [s.name for s in steps]
    summary = json.loads((tmp_path / "loop_summary.json").read_text())
    assert summary["status"] == "PASS" and "durations_s" in summary["volatile"]
    # CPU seconds per run step (comparable on a loaded machine), their sum within the run's total
    cpu = summary["volatile"]["cpu_s"]
    assert set(cpu) == {s.name for s in steps} and all(v >= 0 for v in cpu.values())
    assert cpu["calibrate"] > 0 and sum(cpu.values()) <= summary["volatile"]["total_cpu_s"] + 1e-6


def test_too_small_budget_stops_the_decision(twin, split, tmp_path):
    steps = [Calibrate(draws=15, tune=15, chains=2), Validate(), Decide(qoi=QOI, decide=threshold_decision(3.2, 0.1))]
    with pytest.raises(DiagnosticsGateError) as ei:
        VVUQLoop(twin, split, steps, seed=3, out=tmp_path, progress=False).run()
    msg = str(ei.value)
    assert "calibrate" in msg and "ess" in msg.lower() and "on_fail='flag'" in msg
    assert ei.value.advice  # what to do
    # nothing lost: the calibration is saved
    assert (tmp_path / "steps" / "00_calibrate.json").exists()
    assert (tmp_path / "steps" / "00_calibrate" / "calibration.nc").exists()


def test_flag_marks_every_derived_number_provisional(twin, split, tmp_path):
    steps = [Calibrate(draws=15, tune=15, chains=2), Validate(), Sensitivity(qoi=QOI),
             Decide(qoi=QOI, decide=threshold_decision(3.2, 0.1))]
    res = VVUQLoop(twin, split, steps, seed=3, on_fail="flag", out=tmp_path, progress=False).run()
    assert res["calibrate"].status is Status.FAIL
    assert set(res.provisional_steps) == {"validate", "sensitivity", "decide"}
    s = res.summary()
    for step in s["steps"]:
        nums = list(_walk_numbers(step["values"]))
        if step["step"] in ("validate", "sensitivity", "decide"):
            assert nums and all(flag for _, flag in nums), step["step"]
        else:
            assert not any(flag for _, flag in nums)
    # the ledger says so too
    led = {e.name: e for e in res.ledger.entries}
    assert led["decide"].result["provisional"] is True and led["calibrate"].passed is False
    # and the HTML report: every number in the decision table carries the mark
    paths = res.report().write(tmp_path / "report")
    html = paths["html"].read_text()
    sec = html[html.rindex("decide (decision)"):]
    sec = sec[:sec.index("</table>")]
    cells = re.findall(r"<td>([^<]*)</td>", sec)
    values = cells[1::2]  # columns: figure, value
    numeric = [c for c in values if re.match(r"^-?\d", c)]
    assert numeric and all(PROVISIONAL in c for c in numeric), numeric


def test_biased_twin_fails_validation_and_small_holdout_is_not_informative(twin, split, tmp_path):
    biased = DataSplit(split.calibration, holdout=_data(np.linspace(0.05, 0.95, 40), 5, shift=0.25))
    res = VVUQLoop(twin, biased, [Calibrate(**CAL), Validate()], seed=7, progress=False).run()
    v = res["validate"]
    assert v.status is Status.FAIL
    assert v.values["median_bias"]["status"] == "FAIL" and v.values["median_bias"]["value"] > 0.8
    with pytest.raises(Exception, match="validate"):
        VVUQLoop(twin, biased, [Calibrate(**CAL), Validate(), Decide(qoi=QOI, decide=threshold_decision(3.2, 0.1))],
                 seed=7, progress=False).run()
    small = DataSplit(split.calibration, holdout=_data(np.linspace(0.1, 0.9, 6), 11))
    res = VVUQLoop(twin, small, [Calibrate(**CAL), Validate(), Decide(qoi=QOI, decide=threshold_decision(3.2, 0.1))],
                   seed=7, progress=False).run()
    assert res["validate"].status is Status.NOT_INFORMATIVE
    assert res["decide"].is_provisional and "NOT INFORMATIVE" in res["decide"].provisional[0]


class _Crash(Exception):
    pass


def test_resume_after_a_crash_gives_identical_results(twin, split, tmp_path):
    calls = {"n": 0}

    def op(res, seed):
        calls["n"] += 1
        if calls["n"] == 1:
            raise _Crash("killed mid-way")
        return {"theta_sd": float(res.posterior["theta"].std()), "seed": seed % 1000}

    def steps():
        return [Calibrate(**CAL), Validate(), Operate(fn=op)]

    with pytest.raises(_Crash):
        VVUQLoop(twin, split, steps(), seed=11, out=tmp_path / "a", progress=False).run()
    resumed = VVUQLoop(twin, split, steps(), seed=11, out=tmp_path / "a", progress=False).run()
    assert resumed.volatile["resumed_steps"] == ["calibrate", "validate"]
    fresh = VVUQLoop(twin, split, steps(), seed=11, out=tmp_path / "b", progress=False).run()
    assert fresh.volatile["resumed_steps"] == []
    assert _comparable(resumed.summary()) == _comparable(fresh.summary())
    # same seed twice: identical apart from the volatile block; another seed differs
    again = VVUQLoop(twin, split, steps(), seed=11, progress=False).run()
    assert _comparable(again.summary()) == _comparable(fresh.summary())
    other = VVUQLoop(twin, split, steps(), seed=12, progress=False).run()
    assert _comparable(other.summary()) != _comparable(fresh.summary())


def test_verify_checks_the_order_of_a_solver_and_can_fail(twin, split):
    # explicit Euler for y' = -y to t = 1: first order
    euler = lambda h: np.array([(1.0 - h) ** round(1.0 / h)])  # noqa: E731
    ok = VVUQLoop(twin, split, [Verify(solver=euler, reference=lambda: np.array([np.exp(-1.0)]),
                                       h=(0.02, 0.01, 0.005, 0.0025), formal_order=1.0)],
                  progress=False).run()
    assert ok["verify"].status is Status.PASS
    assert abs(ok["verify"].values["observed_order"] - 1.0) < 0.05
    bad = VVUQLoop(twin, split, [Verify(solver=euler, reference=lambda: np.array([np.exp(-1.0)]),
                                        h=(0.02, 0.01, 0.005, 0.0025), formal_order=4.0)],
                   progress=False).run()
    assert bad["verify"].status is Status.FAIL


def test_misassembled_loops_fail_before_any_work(twin, split):
    with pytest.raises(LoopSpecError, match="not an earlier step"):
        VVUQLoop(twin, split, [Validate(), Calibrate(**CAL)], progress=False)
    with pytest.raises(LoopSpecError, match="unique"):
        VVUQLoop(twin, split, [Calibrate(**CAL), Calibrate(**CAL)], progress=False)
    with pytest.raises(LoopSpecError, match="on_fail"):
        VVUQLoop(twin, split, [Calibrate(**CAL)], on_fail="ignore", progress=False)


def test_readme_loop_example_runs_as_written(tmp_path, monkeypatch):
    """The README's loop example, executed verbatim (in a temporary working directory)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- README-LOOP-EXAMPLE -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 30
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    res = ns["result"]
    assert res["calibrate"].status is Status.PASS and res["validate"].status is Status.PASS
    # the loop's PIT values against the exact conjugate answer (flat-prior t-predictive of
    # y = theta x + e with unknown sd; the N(0, 2) and HalfNormal(1) priors are weak here)
    from scipy import stats

    cal, ho = ns["split"].calibration, ns["split"].holdout
    xc, yc, xh, yh = cal.x[:, 0], cal.y, ho.x[:, 0], ho.y
    th = xc @ yc / (xc @ xc)
    s = np.sqrt(np.sum((yc - th * xc) ** 2) / (xc.size - 1))
    pit_exact = stats.t.cdf((yh - th * xh) / (s * np.sqrt(1 + xh**2 / (xc @ xc))), xc.size - 1)
    pit_loop = np.asarray(res["validate"].values["points"]["pit"])
    assert np.max(np.abs(pit_loop - pit_exact)) < 0.06
    assert res["verify"].status is Status.NOT_APPLICABLE
    # P(2 theta > 3.2) under a posterior centred near 1.5 with sd ~0.04: essentially 0
    assert res["decide"].values["decision"] == "accept" and res["decide"].values["p_exceed"] < 0.01
    assert (tmp_path / "out/loop/loop_summary.json").exists()
    assert (tmp_path / "out/loop/report/report.html").exists()


def test_verify_checks_the_ode_solver_the_twin_runs():
    """An ODE twin: Verify refines the max_step of the very ODESimulator object the twin holds
    (Dormand-Prince 5(4), formal order 5) at the calibration inputs; a claimed order 4 fails."""
    ode = vt.ODESimulator(rhs=lambda t, y, p: -p["k"] * y, y0=lambda p: pt.ones((1,)),
                          output=lambda y, p: y[:, 0], name="decay")
    twin = vt.Twin("decay", ode, [vt.Parameter("k", vt.LogNormalPrior(0.0, 0.3))],
                   observation=vt.GaussianObs(sigma=0.01))
    t = np.linspace(0.25, 3.0, 12)
    data = vt.TwinData(x=t, y=np.exp(-t), input_names=["t"])
    split = DataSplit(data)
    k_ref = twin.parameters[0].reference_value()
    exact = lambda: np.exp(-k_ref * t)  # noqa: E731
    ok = VVUQLoop(twin, split, [Verify(reference=exact)], progress=False).run()["verify"]
    assert ok.status is Status.PASS, ok.reason
    assert ok.values["formal_order"] == 5.0 and abs(ok.values["observed_order"] - 5.0) < 0.3
    bad = VVUQLoop(twin, split, [Verify(reference=exact, formal_order=4.0)], progress=False).run()["verify"]
    assert bad.status is Status.FAIL


@pytest.mark.slow
def test_sbc_step_runs_sbc_on_the_calibration_design(twin, split):
    """The SBC step calls sbc_twin on the calibration data (no duplicate ``warn`` keyword) and
    reads its failed quantities (a property): the correct line twin's ranks are uniform."""
    from vvuq_twin.loop import SBC

    r = VVUQLoop(twin, split, [SBC(n_sims=8, draws=100, tune=200, var_names=["theta"],
                                  calibrate_kwargs={"target_accept": 0.9})], seed=3,
                 progress=False).run()["sbc"]
    assert r.values["n_sims"] == 8
    assert r.values["passed"] == (r.status is Status.PASS) == (r.values["failed_quantities"] == [])
    assert r.status is Status.PASS, r.reason


def test_assimilation_report_values_leave_wall_clock_seconds_out():
    """Two runs with the same seed give the same step values: the UpdateReport's wall-clock
    ``seconds`` is kept out of the assimilation step's figures."""
    from vvuq_twin.assimilation.smc import UpdateReport
    from vvuq_twin.loop.steps import _report_dict

    a = _report_dict(UpdateReport(batch_index=0, status="reweighted", n_obs=1, ess_one_step=900.0, seconds=3.1))
    b = _report_dict(UpdateReport(batch_index=0, status="reweighted", n_obs=1, ess_one_step=900.0, seconds=7.4))
    assert a == b and "seconds" not in a
    assert a["status"] == "reweighted" and a["ess_one_step"] == 900.0 and a["n_obs"] == 1


def test_assimilation_report_values_keep_the_move_diagnostics():
    """The per-stage lists (tempering exponents, acceptance, kernel, moves, step sizes) and the
    per-parameter mixing of an update are kept in the step's values, JSON-ready (NaN -> None)."""
    import json

    from vvuq_twin.assimilation.smc import UpdateReport
    from vvuq_twin.loop.steps import _report_dict

    rep = UpdateReport(batch_index=1, status="resample-move", n_obs=14, phis=[0.4, 1.0], acceptance=[0.31, 0.27],
                       kernel=["independent", "hmc"], n_moves=[5, 12], step_sizes=[float("nan"), 0.21],
                       mixing={"m_mu": 0.08, "noise_sd": 0.05}, mixing_threshold=0.1, mixing_ok=True, seconds=2.0)
    d = _report_dict(rep)
    assert d["phis"] == [0.4, 1.0] and d["acceptance"] == [0.31, 0.27]
    assert d["kernel"] == ["independent", "hmc"] and d["n_moves"] == [5, 12]
    assert d["step_sizes"] == [None, 0.21]
    assert d["mixing"] == {"m_mu": 0.08, "noise_sd": 0.05} and d["mixing_ok"] is True
    assert "seconds" not in d
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # strict JSON, nothing lost


class _Scaled:
    """A callable object a QoI may close over (its repr holds a memory address)."""

    def __init__(self, k):
        self.k = k

    def __call__(self, res, seed):
        return self.k * res.posterior["theta"]


def test_resume_fingerprint_of_a_qoi_over_a_callable_object_is_stable():
    """Two QoIs built the same way fingerprint alike (the object's repr, with its address, is not
    hashed: that made resumed loops re-run such steps), and a different constant differs."""
    from vvuq_twin.loop.steps import _code_id

    def make(k):
        obj = _Scaled(k)
        return lambda res, seed: obj(res, seed)

    assert _code_id(make(2.0)) == _code_id(make(2.0))
    assert _code_id(make(2.0)) != _code_id(make(3.0))


def test_assimilation_whose_moves_do_not_mix_is_a_warning(twin, split, tmp_path):
    """Failure case: one-step random-walk moves with a tiny step cannot decorrelate the particles;
    the update's report says so and the loop's Assimilate step is WARN (not PASS), naming the
    batch and what to do."""
    from vvuq_twin.exceptions import MixingWarning

    batch = _data(np.linspace(0.0, 1.0, 30), 8)
    sp = DataSplit(split.calibration, holdout=split.holdout, stream=[batch])
    steps = [Calibrate(**CAL), Assimilate(assimilate_kwargs=dict(kernel="rwm", max_mcmc_steps=2, resample_threshold=1.0,
                                                                  target_acceptance=0.99)),
             Decide("decide_after", qoi=QOI, decide=threshold_decision(3.2, 0.1), source="assimilate",
                    needs=("assimilate",), uses=())]
    with pytest.warns(MixingWarning):
        res = VVUQLoop(twin, sp, steps, seed=2, out=tmp_path, progress=False).run()
    a = res["assimilate"]
    assert a.values["unmixed_batches"] == ["stream[0]"], a.values
    assert a.status is Status.WARN and "mixing criterion" in a.reason and "max_mcmc_steps" in a.reason
    # every number derived from the unmixed posterior is PROVISIONAL
    assert res["decide_after"].is_provisional and "decide_after" in res.provisional_steps


def test_validate_keeps_what_predict_warned(twin, split, tmp_path, monkeypatch):
    """A warning raised while the hold-out predictive is drawn is kept in the step's values and
    reason, and shown to the user again (it used to be recorded and dropped)."""
    import warnings

    import vvuq_twin.inference as inf

    real = inf.predict

    def noisy(*a, **k):
        warnings.warn("3 draws beyond the simulator's stable range", RuntimeWarning)
        return real(*a, **k)

    monkeypatch.setattr(inf, "predict", noisy)
    with pytest.warns(RuntimeWarning, match="stable range"):
        res = VVUQLoop(twin, split, [Calibrate(**CAL), Validate()], seed=7, out=tmp_path, progress=False).run()
    v = res["validate"]
    assert v.values["predict_warnings"] == ["RuntimeWarning: 3 draws beyond the simulator's stable range"]
    assert "predict_warnings" in v.reason


def test_resumed_assimilation_is_loaded_with_the_units_it_fixed(tmp_path):
    """An assimilation fixes a hierarchical twin's units (new units appended), which changes the
    declaration hash; a resumed Assimilate step loads its saved result with that twin (read from
    the saved unit coordinate), not with the loop's twin, whose hash load_result would refuse."""
    import xarray as xr

    from vvuq_twin.loop.steps import _assimilated_twin

    twin = vt.Twin("h", vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0], name="a*x"),
                   [vt.Parameter("a", vt.NormalPrior(0.0, 1.0), per_unit=True)],
                   observation=vt.GaussianObs(sigma=1.0), hierarchy=vt.Hierarchy())
    path = tmp_path / "assimilated.nc"
    xr.Dataset({"a": (("chain", "draw", "unit"), np.zeros((1, 2, 3)))},
               coords={"unit": ["A", "B", "new"]}).to_netcdf(path, group="posterior", engine="h5netcdf")
    t2 = _assimilated_twin(twin, path)
    assert t2.hierarchy.units == ("A", "B", "new") and t2.hash != twin.hash
    # the same twin the assimilation builds for these units
    import dataclasses

    assert t2.hash == dataclasses.replace(twin, hierarchy=vt.Hierarchy(dim="unit", units=("A", "B", "new"))).hash
    line = line_twin()
    assert _assimilated_twin(line, path) is line  # no hierarchy: the loop's twin
    # an update that kept the loop's twin (reweighting only: no units fixed) says so in its saved
    # declaration hash, and is loaded with the loop's twin (tumor case: resume failed before)
    kept = tmp_path / "reweighted.nc"
    xr.Dataset({"a": (("chain", "draw", "unit"), np.zeros((1, 2, 2)))}, coords={"unit": ["A", "B"]},
               attrs={"vvuq_twin_declaration_hash": twin.hash}).to_netcdf(kept, group="posterior", engine="h5netcdf")
    assert _assimilated_twin(twin, kept) is twin


def test_resume_reruns_a_step_whose_class_code_changed(twin, tmp_path, monkeypatch):
    """A step subclass whose ``run`` changed must not resume the result its old code saved: the
    class's source is part of the fingerprint (same module and class name, same config, other
    code), and unchanged code fingerprints alike."""
    import importlib.util

    from vvuq_twin.loop.runner import _step_code

    def load(tag, body):
        d = tmp_path / tag
        d.mkdir()
        (d / "mine.py").write_text("from vvuq_twin.loop import Operate\n\n\nclass Mine(Operate):\n"
                                   f"    def run(self, ctx):\n        {body}\n")
        spec = importlib.util.spec_from_file_location("mine", d / "mine.py")
        mod = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "mine", mod)  # as an imported module is
        spec.loader.exec_module(mod)
        return mod.Mine, _step_code(mod.Mine)

    (old, c_old), (same, c_same), (new, c_new) = (load("old", "return super().run(ctx)"),
                                                  load("same", "return super().run(ctx)"),
                                                  load("new", "return super().run(ctx)  # a fix"))
    assert c_old == c_same != c_new
    sp = DataSplit(_data(np.linspace(0.0, 1.0, 10), 1))
    fp = [VVUQLoop(twin, sp, [Calibrate(**CAL), cls(fn=len)], progress=False)._fingerprints()["operate"]
          for cls in (old, same, new)]
    assert fp[0] == fp[1] != fp[2]


def test_sensitivity_on_a_subset_of_draws(twin, split, tmp_path):
    """``max_draws`` estimates the indices from a seeded subset of the draws: the QoI 2 theta
    depends on theta alone (delta of theta far above the noise sd's), from 300 of the 1000
    draws; a subset too small for the estimator is refused before anything runs."""
    steps = [Calibrate(**CAL), Sensitivity(qoi=QOI, max_draws=300, num_resamples=5)]
    res = VVUQLoop(twin, split, steps, seed=7, out=tmp_path, progress=False).run()
    v = res["sensitivity"].values
    assert v["n_draws"] == 300 and v["top"][0] == "theta"
    delta = {r["parameter"]: r["delta"] for r in v["ranking"]}
    assert delta["theta"] > 0.5 > delta[next(p for p in delta if p != "theta")]
    with pytest.raises(LoopSpecError, match="max_draws must be at least 100"):
        Sensitivity(qoi=QOI, max_draws=10)
