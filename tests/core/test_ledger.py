"""Continual-VVUQ ledger: stale detection and selective re-runs keyed by component hashes."""

import vvuq_twin as vt
from vvuq_twin.inference import Ledger


def _twin(prior_sd=1.0, disc=None):
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0], name="lin")
    return vt.Twin("t", sim, [vt.Parameter("a", vt.Normal(0, prior_sd))],
                   discrepancy=disc or vt.NoDiscrepancy(), observation=vt.Gaussian(sigma=1.0))


def test_changing_a_prior_marks_only_dependent_checks_stale_and_reruns_them():
    led = Ledger()
    calls = []

    def check(name, ok=True):
        def fn():
            calls.append(name)
            return ok, {"value": 1.0}
        return fn

    t1 = _twin()
    checks = {"mms_order": check("mms_order"), "sbc": check("sbc")}
    deps = {"mms_order": ["simulator"], "sbc": ["simulator", "parameters", "observation"]}
    assert led.refresh(t1, "D1", checks, depends_on=deps) == ["mms_order", "sbc"]
    # unchanged twin and data: nothing recomputed
    assert led.refresh(t1, "D1", checks, depends_on=deps) == []
    # a new prior: SBC depends on the priors, code verification does not
    t2 = _twin(prior_sd=2.0)
    assert [e.name for e in led.stale(t2)] == ["sbc"]
    status = {r["name"]: r["state"] for r in led.status(t2)}
    assert status == {"mms_order": "pass", "sbc": "stale"}
    assert led.refresh(t2, "D1", checks, depends_on=deps) == ["sbc"]
    assert calls == ["mms_order", "sbc", "sbc"]
    # new data make everything stale
    assert {e.name for e in led.stale(t2, data_hash="D2")} == {"mms_order", "sbc"}
    # a changed discrepancy leaves both untouched (neither depends on it)
    t3 = _twin(prior_sd=2.0, disc=vt.BiasDiscrepancy())
    assert led.stale(t3) == []
    text = led.summary(t2, "D1")
    assert "sbc" in text and "PASS" in text


def test_ledger_json_round_trip_and_failures_reported():
    led = Ledger()
    t = _twin()
    led.record("validation", "coverage_90", twin=t, data_hash="D", passed=False,
               result={"coverage": 0.61, "threshold": 0.8})
    back = Ledger.from_json(led.to_json())
    assert back.entries == led.entries
    assert back.status(t, "D") == [{"kind": "validation", "name": "coverage_90", "state": "fail"}]
    assert "FAIL" in back.summary(t, "D")
