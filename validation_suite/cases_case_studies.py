"""Quick runs of the case studies on the real data, as validation-suite cases.

Each case study runs once per process (``--quick``, seed 1; cached), and the TOML cases pick
figures of its summary: hold-out coverage inside its binomial band, SBC of the inference,
the solver's observed order, and a published-value check per case. The data directory is
``$VVUQ_TWIN_DATA`` (CI points it at ``../shared/data``); without it the cases fail with the
loader's message naming the variable.
"""

from __future__ import annotations

import functools
import os
import tempfile

__all__ = ["tumor", "airframe", "climate"]


@functools.lru_cache(maxsize=None)
def _run(case: str) -> dict:
    import importlib

    out = os.environ.get("VVUQ_TWIN_CASE_OUT") or tempfile.mkdtemp(prefix=f"vvuq_case_{case}_")
    mod = importlib.import_module(f"case_studies.{case}.run")
    return mod.run(None, os.path.join(out, case), seed=1, quick=True)


def _common(s: dict) -> dict:
    lo, hi = s["coverage_band"]
    return {
        "coverage_in_band": float(lo <= s["coverage"] <= hi),
        "coverage_after_in_band": float(lo <= s.get("coverage_after", s["coverage"]) <= hi),
        "sbc_passed": float(bool(s["sbc_passed"])),
        # against the formal order of the solver the case verifies (RK4/Simpson: 4; tumor's
        # ODESimulator: Dormand-Prince 5)
        "order_error_rk4": abs(float(s["verification_order"]) - float(s.get("verification_formal_order", 4.0))),
    }


def tumor() -> dict:
    """Tumor case (Benzekry et al. 2014 lung data): common figures."""
    return _common(_run("tumor"))


def airframe() -> dict:
    """Airframe case (Virkler et al. 1979): population coverage on held-out specimens, the chance
    constraint (upper 95% bound of P(failure) at the chosen interval), monotonicity, Paris m."""
    s = _run("airframe")
    return {**_common(s), "pf_at_interval_upper": float(s["pf_at_interval_upper"]),
            "monotonicity_violations": float(s["monotonicity_violations"]),
            "m_in_literature_range": float(2.9 <= s["m_median"] <= 4.0)}


def climate() -> dict:
    """Climate case (HadCRUT5 + RCMIP): common figures, ECS/TCR in the AR6 very likely ranges."""
    s = _run("climate")
    return {**_common(s),
            "ecs_in_ar6_range": float(2.0 <= s["ecs_median"] <= 5.0),
            "tcr_in_ar6_range": float(1.2 <= s["tcr_median"] <= 2.4)}
