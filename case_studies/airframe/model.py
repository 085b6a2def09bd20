"""Paris-law fatigue crack growth of a centre-cracked panel, in pytensor.

Paris law (Paris & Erdogan 1963)::

    da/dN = C ΔK^m,    ΔK = Δσ sqrt(π a) F(a),    F(a) = sqrt(sec(π a / W))

with ``a`` the crack half-length, ``W`` the panel width and ``F`` Feddersen's finite-width
correction (Feddersen 1966; Tada, Paris & Irwin, *The Stress Analysis of Cracks Handbook*).
Units: ``a`` and ``W`` in mm at the interface, converted to metres inside; Δσ in MPa; ΔK in
MPa·m^½; ``C`` in (m/cycle)/(MPa·m^½)^m, passed as ``log10_C``. An optional reference
``delta_k_ref`` reparametrises the rate as ``C (ΔK/ΔK_ref)^m`` so that ``log10_C`` becomes the
rate at ΔK_ref (m/cycle), which decorrelates ``C`` and ``m`` in calibration.

Two directions:

- :func:`cycles_to_length` — ``N(a) = ∫_{a0}^{a} da' / (C ΔK(a')^m)``, the natural simulator of
  the Virkler data (cycles measured at fixed crack lengths). The integral is evaluated by a
  composite rule on ``n_steps`` panels (:func:`quadrature_rule`): Simpson, which is exactly
  classical RK4 applied to ``dN/da = f(a)`` (an integrand independent of ``N``), order 4, or
  4-point Gauss-Legendre on panels equal in ``log a``, order 8 (the twin's); vectorised, no
  scan, in the log domain (one exp per node).
- :func:`crack_length` — ``a(N)`` by classical RK4 in ``pytensor.scan`` with ``n_steps`` steps
  from 0 to each ``N``.

For the infinite plate (``F = 1``) both have closed forms (m ≠ 2),
:func:`cycles_to_length_infinite` and :func:`crack_length_infinite`, the known answers of the
code verification.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from vvuq_twin import PytensorSimulator
from vvuq_twin.exceptions import TwinSpecificationError

__all__ = [
    "feddersen_correction",
    "delta_k",
    "paris_rate",
    "cycles_to_length",
    "crack_length",
    "cycles_to_length_infinite",
    "crack_length_infinite",
    "paris_cycles_simulator",
    "legendre_shape",
    "quadrature_rule",
    "quadrature_nodes",
    "QUADRATURE_ORDERS",
    "SHAPE_ORDERS",
]

#: Legendre orders of the embedded discrepancy on the log10 growth rate (orders 0 and 1 are the
#: Paris law's own ``log10_C`` and ``m``: the discrepancy is orthogonal to them).
SHAPE_ORDERS = (2, 3, 4)

_MM = 1.0e-3
_LN10 = np.float64(np.log(10.0))  # a float64 constant (pytensor would make 10.0 a float32)


def feddersen_correction(a_mm: Any, width_mm: Any) -> pt.TensorVariable:
    """Feddersen finite-width correction ``sqrt(sec(π a / W))`` (a: half-length, W: width)."""
    return pt.sqrt(1.0 / pt.cos(np.pi * pt.as_tensor_variable(a_mm) / width_mm))


def delta_k(a_mm: Any, stress_range: Any, width_mm: Any | None = None) -> pt.TensorVariable:
    """Stress-intensity range ΔK (MPa·m^½) of a centre crack of half-length ``a_mm``.

    ``width_mm=None`` gives the infinite plate (no correction).
    """
    a_mm = pt.as_tensor_variable(a_mm)
    dk = stress_range * pt.sqrt(np.pi * a_mm * _MM)
    if width_mm is not None:
        dk = dk * feddersen_correction(a_mm, width_mm)
    return dk


def paris_rate(dk: Any, log10_C: Any, m: Any, delta_k_ref: float = 1.0) -> pt.TensorVariable:
    """Crack growth rate ``da/dN = 10^log10_C (ΔK/ΔK_ref)^m`` in m/cycle."""
    return pt.exp(_LN10 * log10_C) * pt.power(pt.as_tensor_variable(dk) / delta_k_ref, m)


def cycles_to_length(
    a_mm: Any,
    a0_mm: Any,
    log10_C: Any,
    m: Any,
    stress_range: Any,
    width_mm: Any | None = None,
    *,
    n_steps: int = 32,
    delta_k_ref: float = 1.0,
    shape: Any = None,
    rule: str = "simpson",
) -> pt.TensorVariable:
    """Cycles for a crack to grow from ``a0_mm`` to ``a_mm`` by a composite quadrature rule
    (:func:`quadrature_rule`) on ``n_steps`` equal panels of ``[a0, a]``: ``"simpson"`` (= RK4,
    order 4) or ``"gauss4_log"`` (4-point Gauss-Legendre on panels equal in ``log a``, order 8).

    Parameters broadcast elementwise (per-specimen parameters of shape ``(n,)`` are fine).
    ``shape``: optional ``(coeffs, log10_dk_range)`` of the embedded discrepancy on the log10
    growth rate (:func:`legendre_shape`); the rate is multiplied by ``10^shape(ΔK)``, which keeps
    ``dN/da > 0``, so ``N(a)`` increases with ``a`` for every parameter value.
    """
    span, nodes, log_w = quadrature_nodes(pt.as_tensor_variable(a_mm), a0_mm, n_steps, rule)
    ex = lambda v: pt.shape_padright(pt.as_tensor_variable(v))  # noqa: E731
    # log-domain integrand: log(dN/da) = log(1e-3) - ln10 log10_C - m log(dK/dK_ref) - ln10 s(dK).
    # Everything but the parameters depends on the data only (PyTensor folds it to constants when
    # the crack lengths are), so each node costs one exp of a linear combination of parameters,
    # and the gradient reuses it: 1.3x cheaper than the rate-then-divide form at the same nodes
    # (value and gradient, airframe quick calibration rows, 300 particles; benchmarks/RESULTS.md).
    log_dk = pt.log(delta_k(nodes, ex(stress_range), width_mm))
    log_dn_da = np.log(_MM) - _LN10 * ex(log10_C) - ex(m) * (log_dk - np.log(delta_k_ref))
    if shape is not None:
        coeffs, rng_dk = shape
        log_dn_da = log_dn_da - _LN10 * legendre_shape(log_dk / _LN10, coeffs, rng_dk, expand=ex)
    return span * pt.sum(pt.exp(log_dn_da + log_w), axis=-1)


#: Composite quadrature rules of :func:`cycles_to_length`: name -> formal order of accuracy.
QUADRATURE_ORDERS = {"simpson": 4, "gauss4_log": 8}


def quadrature_rule(n_panels: int, rule: str = "simpson") -> tuple[np.ndarray, np.ndarray, bool]:
    """Nodes ``s`` in [0, 1], weights ``w`` (summing to 1) of a composite rule on ``n_panels``
    equal panels, and whether the panels are equal in ``log a`` (True) or in ``a`` (False).

    ``"simpson"``: panels equal in ``a``, their ends and midpoints with weights 1/6, 4/6, 1/6
    (classical RK4 on ``dN/da = f(a)``), ``2 n + 1`` nodes, order 4. ``"gauss4_log"``: panels
    equal in ``t = log a``, 4-point Gauss-Legendre on each (``int f(a) da = int f(e^t) e^t dt``),
    ``4 n`` nodes, order 8. In ``log a`` the Paris integrand ``a^(1 - m/2)`` is an exponential
    (smooth, no steep start at ``a0``): at the airframe posterior two panels (8 nodes) give
    N(49.8 mm) to 2e-6 relative where Simpson on 8 panels (17 nodes) gives 1.7e-3, and each node
    is one exp per particle and row of a likelihood evaluation.
    """
    n = int(n_panels)
    if n < 1:
        raise TwinSpecificationError(f"n_steps must be >= 1, got {n_panels}.")
    if rule == "simpson":
        s = np.linspace(0.0, 1.0, 2 * n + 1)  # panel ends and midpoints
        w = np.ones_like(s)
        w[1:-1:2] = 4.0
        w[2:-1:2] = 2.0
        return s, w / (6.0 * n), False  # RK4 weights 1/6, 4/6, 1/6 per panel of width 1/n
    if rule == "gauss4_log":
        x, wq = np.polynomial.legendre.leggauss(4)
        s = ((np.arange(n)[:, None] + (x[None, :] + 1.0) / 2.0) / n).ravel()
        return s, np.tile(wq / (2.0 * n), n), True
    raise TwinSpecificationError(f"Unknown quadrature rule {rule!r}: use one of {sorted(QUADRATURE_ORDERS)}.")


def quadrature_nodes(a_mm: Any, a0_mm: float, n_panels: int, rule: str = "simpson") -> tuple[Any, Any, Any]:
    """``(span, nodes, log_w)`` with ``int_{a0}^{a} f(x) dx ~= span * sum_j exp(log_w_j) f(nodes_j)``
    for the composite rule :func:`quadrature_rule`; ``a_mm`` a numpy array or a PyTensor tensor
    (the result is of the same kind; nodes along a new last axis). For panels equal in ``log a``
    the Jacobian ``da = a dt`` is part of the log weight. The one place the nodes of
    :func:`cycles_to_length` (PyTensor) and of ``LifeModel.curves`` (numpy) are made.
    """
    s, w, in_log = quadrature_rule(n_panels, rule)
    xp = pt if isinstance(a_mm, pt.Variable) else np
    if in_log:  # panels equal in t = log a: da = a dt
        span = xp.log(a_mm / a0_mm)
        nodes = a0_mm * xp.exp(span[..., None] * s)  # (..., 4n)
        return span, nodes, xp.log(nodes) + np.log(w)
    span = a_mm - a0_mm
    nodes = (a0_mm + 0.0 * a_mm)[..., None] + span[..., None] * s  # (..., 2n+1)
    return span, nodes, np.log(w)


def legendre_shape(log10_dk: Any, coeffs: Any, log10_dk_range: tuple[float, float], *,
                   expand: Any = None) -> Any:
    """Embedded discrepancy on the log10 growth rate: ``sum_k b_k P_k(xi)``, k in :data:`SHAPE_ORDERS`.

    ``xi`` maps ``log10 ΔK`` linearly from ``log10_dk_range`` onto [-1, 1] and ``P_k`` are the
    Legendre polynomials of orders 2, 3, 4: orthogonal on [-1, 1] to the constant and the linear
    term, i.e. to the Paris law's own ``log10 C + m log10 ΔK``, so the discrepancy cannot absorb
    ``C`` or ``m`` (the identifiability constraint of Brynjarsdóttir & O'Hagan 2014, here by
    construction). Works on numpy arrays and pytensor tensors; ``coeffs`` is a sequence of
    three (scalars or arrays broadcasting against ``log10_dk`` through ``expand``).
    """
    lo, hi = float(log10_dk_range[0]), float(log10_dk_range[1])
    if not hi > lo:
        raise TwinSpecificationError(f"log10_dk_range must be increasing, got {log10_dk_range}.")
    if len(coeffs) != len(SHAPE_ORDERS):
        raise TwinSpecificationError(f"legendre_shape needs {len(SHAPE_ORDERS)} coefficients "
                                     f"(orders {SHAPE_ORDERS}), got {len(coeffs)}.")
    xi = 2.0 * (log10_dk - lo) / (hi - lo) - 1.0
    ex = expand if expand is not None else (lambda v: v)
    polys = {2: (3 * xi**2 - 1) / 2, 3: (5 * xi**3 - 3 * xi) / 2, 4: (35 * xi**4 - 30 * xi**2 + 3) / 8}
    out = 0.0
    for k, b in zip(SHAPE_ORDERS, coeffs):
        out = out + ex(b) * polys[k]
    return out


def crack_length(
    cycles: Any,
    a0_mm: Any,
    log10_C: Any,
    m: Any,
    stress_range: Any,
    width_mm: Any | None = None,
    *,
    n_steps: int = 64,
    delta_k_ref: float = 1.0,
) -> pt.TensorVariable:
    """Crack half-length (mm) after ``cycles`` load cycles: classical RK4 in ``pytensor.scan``.

    Each entry of ``cycles`` is integrated from 0 with ``n_steps`` equal steps.
    """
    if int(n_steps) < 1:
        raise TwinSpecificationError(f"n_steps must be >= 1, got {n_steps}.")
    n_end = pt.as_tensor_variable(cycles)
    h = n_end / n_steps
    a_init = pt.cast(a0_mm + 0.0 * n_end, "float64")

    def f(a):
        return paris_rate(delta_k(a, stress_range, width_mm), log10_C, m, delta_k_ref) / _MM

    def step(a, h):
        k1 = f(a)
        k2 = f(a + h / 2 * k1)
        k3 = f(a + h / 2 * k2)
        k4 = f(a + h * k3)
        return a + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    out = pytensor.scan(step, outputs_info=[a_init], non_sequences=[h], n_steps=int(n_steps),
                        strict=False, return_updates=False)
    return out[-1]


def _check_m(m: Any) -> None:
    if np.ndim(m) == 0 and not hasattr(m, "owner") and abs(float(m) - 2.0) < 1e-12:
        raise TwinSpecificationError(
            "The closed-form Paris-law solution divides by (1 - m/2); m = 2 needs the logarithmic "
            "form. Use cycles_to_length / crack_length (numerical) instead."
        )


def cycles_to_length_infinite(
    a_mm: Any, a0_mm: Any, log10_C: Any, m: Any, stress_range: Any, *, delta_k_ref: float = 1.0
) -> pt.TensorVariable:
    """Closed-form ``N(a)`` for the infinite plate (F = 1), m ≠ 2::

        N = (a^{1-m/2} - a0^{1-m/2}) / ((1 - m/2) C (Δσ sqrt(π)/ΔK_ref)^m)   (a in metres)
    """
    _check_m(m)
    a = pt.as_tensor_variable(a_mm) * _MM
    a0 = a0_mm * _MM
    e = 1.0 - m / 2.0
    c = pt.exp(_LN10 * log10_C) * pt.power(stress_range * np.sqrt(np.pi) / delta_k_ref, m)
    return (pt.power(a, e) - pt.power(a0, e)) / (e * c)


def crack_length_infinite(
    cycles: Any, a0_mm: Any, log10_C: Any, m: Any, stress_range: Any, *, delta_k_ref: float = 1.0
) -> pt.TensorVariable:
    """Closed-form ``a(N)`` (mm) for the infinite plate (F = 1), m ≠ 2::

        a = (a0^{1-m/2} + (1 - m/2) C (Δσ sqrt(π)/ΔK_ref)^m N)^{1/(1-m/2)}   (a in metres)

    For m > 2 the crack grows without bound at the finite life
    ``N_c = a0^{1-m/2} / ((m/2 - 1) c)``; beyond it the result is NaN.
    """
    _check_m(m)
    n = pt.as_tensor_variable(cycles)
    a0 = a0_mm * _MM
    e = 1.0 - m / 2.0
    c = pt.exp(_LN10 * log10_C) * pt.power(stress_range * np.sqrt(np.pi) / delta_k_ref, m)
    return pt.power(pt.power(a0, e) + e * c * n, 1.0 / e) / _MM


def paris_cycles_simulator(
    *,
    a0_mm: float = 9.0,
    stress_range: float = 48.3,
    width_mm: float | None = 152.4,
    n_steps: int = 32,
    delta_k_ref: float = 1.0,
    cycles_scale: float = 1.0,
    shape_names: tuple[str, ...] | None = None,
    log10_dk_range: tuple[float, float] | None = None,
    rule: str = "simpson",
) -> PytensorSimulator:
    """A vvuq_twin simulator of cycles-to-reach-length ``N(a)`` for the Virkler panels.

    Input column 0 is the crack half-length (mm); the calibration parameters are ``log10_C``
    and ``m`` (scalars or per specimen). The output is ``N(a) / cycles_scale`` (e.g.
    ``cycles_scale=1e5`` to calibrate in units of 10⁵ cycles). Defaults: the Virkler test
    conditions (a0 = 9 mm, Δσ = 48.3 MPa, W = 152.4 mm). With ``shape_names`` (three
    parameter names) and ``log10_dk_range``, the embedded log-rate discrepancy
    :func:`legendre_shape` multiplies the rate (cycles stay increasing in crack length).
    ``rule`` and ``n_steps``: the quadrature of :func:`cycles_to_length`.
    """
    if (shape_names is None) != (log10_dk_range is None):
        raise TwinSpecificationError("Pass both shape_names and log10_dk_range, or neither.")
    if width_mm is not None and not 2 * a0_mm < width_mm:
        raise TwinSpecificationError(f"a0_mm={a0_mm} must be below half the width {width_mm}/2.")

    def fn(x, p):
        return cycles_to_length(
            x[:, 0], a0_mm, p["log10_C"], p["m"], stress_range, width_mm,
            n_steps=n_steps, delta_k_ref=delta_k_ref,
            shape=None if shape_names is None else ([p[k] for k in shape_names], log10_dk_range),
            rule=rule,
        ) / cycles_scale

    return PytensorSimulator(fn, name="paris_cycles_to_length")
