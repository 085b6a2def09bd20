"""Code verification: manufactured solutions and the observed order of accuracy.

Known answers: on the 1-D reaction-diffusion solver of ``vvuq_twin.testing``, Crank-Nicolson
(second order in space and time, dt ~ h) must show observed order 2 within 0.1; the deliberately
first-order backward-Euler variant must show order 1 within 0.1 and fail the order-2 check.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import xarray as xr

from vvuq_twin.testing.reaction_diffusion import THEORETICAL_ORDER, ReactionDiffusion1D
from vvuq_twin.verification import (
    ManufacturedSolutionError,
    RefinementError,
    manufacture,
    observed_order,
)

SOLUTION = "cos(pi*x/2)*exp(t) + x**2*sin(t)"
LEVELS = [10, 20, 40, 80, 160]


@pytest.fixture(scope="module")
def problem() -> ReactionDiffusion1D:
    return ReactionDiffusion1D(diffusivity=0.5, reaction=1.0)


@pytest.fixture(scope="module")
def ms(problem):
    return manufacture(SOLUTION, problem.operator, ["x", "t"])


def test_source_matches_hand_derivation(ms, problem):
    x, t = sp.symbols("x t", real=True)
    u = sp.cos(sp.pi * x / 2) * sp.exp(t) + x**2 * sp.sin(t)
    by_hand = (
        sp.cos(sp.pi * x / 2) * sp.exp(t) + x**2 * sp.cos(t)  # u_t
        - problem.diffusivity * (-(sp.pi**2) / 4 * sp.cos(sp.pi * x / 2) * sp.exp(t) + 2 * sp.sin(t))
        + problem.reaction * u
    )
    assert sp.simplify(ms.source_expr - by_hand) == 0


def test_source_matches_finite_differences_of_exact(ms, problem):
    """Independent numerical check: L(u) by central differences of the numpy exact solution."""
    xs = np.linspace(0.1, 0.9, 7)
    t0 = 0.3
    d = 1e-4
    ut = (ms.exact(xs, t0 + d) - ms.exact(xs, t0 - d)) / (2 * d)
    uxx = (ms.exact(xs + d, t0) - 2 * ms.exact(xs, t0) + ms.exact(xs - d, t0)) / d**2
    lu = ut - problem.diffusivity * uxx + problem.reaction * ms.exact(xs, t0)
    np.testing.assert_allclose(ms.source(xs, t0), lu, rtol=1e-5, atol=1e-5)


def test_callables_broadcast_constant_terms():
    m = manufacture("x**2", lambda u, x: -sp.diff(u, x, 2), ["x"])
    out = m.source(np.zeros(4))
    assert out.shape == (4,)
    np.testing.assert_allclose(out, -2.0)
    assert m.derivative("x")(np.array([3.0])) == pytest.approx(6.0)


def test_parameters_are_substituted():
    m = manufacture(
        "sin(k*x)", lambda u, x: -sp.diff(u, x, 2), ["x"], parameters={"k": 2.0}
    )
    np.testing.assert_allclose(m.source(np.array([0.3])), 4.0 * np.sin(0.6))


def test_crank_nicolson_is_second_order(ms, problem):
    h, e = problem.mms_errors(ms.exact, ms.source, LEVELS, scheme="crank-nicolson")
    res = observed_order(h, e, theoretical_order=THEORETICAL_ORDER["crank-nicolson"], tol=0.1)
    assert abs(res.order - 2.0) < 0.1
    assert res.passed is True
    assert res.residual < 0.01
    np.testing.assert_allclose(res.local_orders, 2.0, atol=0.05)


def test_backward_euler_is_detected_as_first_order(ms, problem):
    h, e = problem.mms_errors(ms.exact, ms.source, LEVELS, scheme="backward-euler")
    as_second = observed_order(h, e, theoretical_order=2, tol=0.1)
    assert as_second.passed is False
    assert abs(as_second.order - 1.0) < 0.1
    as_first = observed_order(h, e, theoretical_order=THEORETICAL_ORDER["backward-euler"], tol=0.1)
    assert as_first.passed is True


def test_l2_norm_gives_the_same_order(ms, problem):
    h, e = problem.mms_errors(ms.exact, ms.source, LEVELS[:4], scheme="crank-nicolson", norm="l2")
    assert observed_order(h, e, theoretical_order=2).passed


def test_exact_power_law_recovered():
    h = np.array([0.2, 0.1, 0.05, 0.025])
    res = observed_order(h, 3.0 * h**1.5, theoretical_order=1.5)
    assert res.order == pytest.approx(1.5, abs=1e-12)
    assert res.constant == pytest.approx(3.0, rel=1e-10)
    assert res.residual < 1e-12
    assert res.passed


def test_preasymptotic_data_fail_and_show_a_large_residual():
    """An error floor (e.g. iteration error) bends the log-log line: flagged, not passed."""
    h = np.array([0.2, 0.1, 0.05, 0.025, 0.0125])
    res = observed_order(h, h**2 + 2e-3, theoretical_order=2)
    assert res.passed is False
    assert res.residual > 0.05
    assert res.local_orders[-1] < 0.5


def test_order_dataset_roundtrips_netcdf(tmp_path):
    h = np.array([0.1, 0.05, 0.025])
    res = observed_order(h, h**2, theoretical_order=2)
    ds = res.to_dataset()
    assert ds["error"].dims == ("level",)
    path = tmp_path / "order.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.load_dataset(path, engine="h5netcdf")
    assert float(back["order"]) == pytest.approx(res.order)
    assert back.attrs["passed"] == 1


# ---------------------------------------------------------------------------- bad input


def test_non_monotone_refinement_is_rejected():
    with pytest.raises(RefinementError, match="not strictly monotone.*reorder"):
        observed_order([0.1, 0.025, 0.05], [1e-2, 6e-4, 2.5e-3])


def test_repeated_spacing_is_rejected():
    with pytest.raises(RefinementError, match="not strictly monotone"):
        observed_order([0.1, 0.1, 0.05], [1e-2, 1e-2, 2.5e-3])


def test_single_grid_is_rejected():
    with pytest.raises(RefinementError, match="at least 2 are needed"):
        observed_order([0.1], [1e-2])


def test_zero_or_nan_errors_are_rejected():
    with pytest.raises(RefinementError, match="finite and positive"):
        observed_order([0.1, 0.05, 0.025], [1e-2, 0.0, 1e-4])
    with pytest.raises(RefinementError, match="finite and positive"):
        observed_order([0.1, 0.05, 0.025], [1e-2, np.nan, 1e-4])


def test_length_mismatch_is_rejected():
    with pytest.raises(RefinementError, match="one value per grid"):
        observed_order([0.1, 0.05, 0.025], [1e-2, 1e-3])


def test_unsubstituted_symbols_are_named():
    with pytest.raises(ManufacturedSolutionError, match=r"\['k'\].*parameters="):
        manufacture("sin(k*x)", lambda u, x: -sp.diff(u, x, 2), ["x"])


def test_operator_returning_numpy_is_rejected():
    with pytest.raises(ManufacturedSolutionError, match="sympy expression"):
        manufacture("sin(x)", lambda u, x: np.float64(1.0), ["x"])


def test_constant_solution_is_rejected():
    with pytest.raises(ManufacturedSolutionError, match="does not depend"):
        manufacture("3", lambda u, x: -sp.diff(u, x, 2), ["x"])


def test_solver_rejects_unknown_scheme(ms, problem):
    with pytest.raises(ValueError, match="crank-nicolson"):
        problem.mms_errors(ms.exact, ms.source, [10, 20], scheme="leapfrog")
