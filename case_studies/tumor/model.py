"""Tumor growth models in pytensor (differentiable; usable inside PyMC models).

All models describe the tumor volume ``V(t)`` (mm³) from ``V(0) = v0`` at ``t = 0`` (days after
injection). Benzekry et al. (2014) take ``v0 = 1 mm³`` (10⁶ injected cells) for the lung data.

============================  ============================================  =====================
model                         ODE                                           closed form
============================  ============================================  =====================
``exponential``               dV/dt = a V                                   V0 e^{a t}
``logistic``                  dV/dt = a V (1 - V/K)                         K / (1 + (K/V0 - 1) e^{-a t})
``gompertz``                  dV/dt = (α - β ln(V/Vc)) V                    Vc (V0/Vc)^{e^{-βt}} e^{α/β (1 - e^{-βt})}
``reduced_gompertz``          Gompertz with α = k β + q                     as Gompertz
``von_bertalanffy``           dV/dt = a V^{2/3} - b V                       (a/b + (V0^{1/3} - a/b) e^{-bt/3})³
``power_law``                 dV/dt = a V^γ  (0 < γ < 1)                    (V0^{1-γ} + (1-γ) a t)^{1/(1-γ)}
============================  ============================================  =====================

The Gompertz form and the reduced Gompertz model follow Vaghi et al. (2020): across animals the
individual Gompertz parameters are strongly correlated, ``α ≈ k β + q`` (k = ln(K/Vc) with K a
population carrying capacity when q = 0), so that one individual parameter (β) remains; ``k``
and ``q`` are population-level. ``Vc`` is the volume unit of the logarithm (default 1 mm³).

Every model has a closed form (used by default). The right-hand sides are exported as well, so
that the same models can be integrated numerically (RK4 in ``pytensor.scan`` through
:class:`vvuq_twin.ODESimulator`) — the closed forms are then the known answers of the code
verification (observed order 4), and models without a closed form (e.g. with a time-varying
treatment term) can reuse the integrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import pytensor.tensor as pt

from vvuq_twin import ODESimulator, PytensorSimulator
from vvuq_twin.exceptions import TwinSpecificationError

__all__ = [
    "GrowthModel",
    "GROWTH_MODELS",
    "exponential",
    "logistic",
    "gompertz",
    "reduced_gompertz",
    "von_bertalanffy",
    "power_law",
    "growth_simulator",
    "gompertz_sensitivity",
    "power_law_twin",
]


def exponential(t: Any, v0: Any, a: Any) -> pt.TensorVariable:
    """Exponential growth ``V0 exp(a t)``."""
    t = pt.as_tensor_variable(t)
    return v0 * pt.exp(a * t)


def logistic(t: Any, v0: Any, a: Any, K: Any) -> pt.TensorVariable:
    """Logistic growth ``K / (1 + (K/V0 - 1) exp(-a t))``."""
    t = pt.as_tensor_variable(t)
    return K / (1.0 + (K / v0 - 1.0) * pt.exp(-a * t))


def gompertz(t: Any, v0: Any, alpha: Any, beta: Any, vc: Any = 1.0) -> pt.TensorVariable:
    """Gompertz growth ``Vc (V0/Vc)^{exp(-βt)} exp(α/β (1 - exp(-βt)))`` (log-space evaluation)."""
    t = pt.as_tensor_variable(t)
    e = pt.exp(-beta * t)
    log_v = pt.log(vc) + pt.log(v0 / vc) * e + alpha / beta * (1.0 - e)
    return pt.exp(log_v)


def reduced_gompertz(
    t: Any, v0: Any, beta: Any, k: Any, q: Any = 0.0, vc: Any = 1.0
) -> pt.TensorVariable:
    """Reduced Gompertz of Vaghi et al. (2020): Gompertz with ``α = k β + q``."""
    return gompertz(t, v0, k * beta + q, beta, vc)


def von_bertalanffy(t: Any, v0: Any, a: Any, b: Any) -> pt.TensorVariable:
    """Von Bertalanffy growth ``dV/dt = a V^{2/3} - b V`` in closed form (u = V^{1/3})."""
    t = pt.as_tensor_variable(t)
    u_inf = a / b
    u = u_inf + (v0 ** (1.0 / 3.0) - u_inf) * pt.exp(-b * t / 3.0)
    return u**3


def power_law(t: Any, v0: Any, a: Any, gamma: Any) -> pt.TensorVariable:
    """Power-law growth ``dV/dt = a V^gamma`` in closed form (log-space evaluation)."""
    t = pt.as_tensor_variable(t)
    g1 = 1.0 - gamma
    return pt.exp(pt.log(v0**g1 + g1 * a * t) / g1)


def _rhs_power_law(t, v, p):
    return p["a"] * v ** p["gamma"]


def _rhs_exponential(t, v, p):
    return p["a"] * v


def _rhs_logistic(t, v, p):
    return p["a"] * v * (1.0 - v / p["K"])


def _rhs_gompertz(t, v, p):
    return (p["alpha"] - p["beta"] * pt.log(v / p.get("vc", 1.0))) * v


def _rhs_reduced_gompertz(t, v, p):
    alpha = p["k"] * p["beta"] + p.get("q", 0.0)
    return (alpha - p["beta"] * pt.log(v / p.get("vc", 1.0))) * v


def _rhs_von_bertalanffy(t, v, p):
    return p["a"] * v ** (2.0 / 3.0) - p["b"] * v


@dataclass(frozen=True)
class GrowthModel:
    """A tumor growth law: its parameters, closed form and right-hand side.

    Parameters
    ----------
    name : str
        Registry key.
    parameters : tuple of str
        Growth parameters (besides ``v0``), in the order of ``closed_form``'s arguments.
    optional : dict
        Parameters with defaults (e.g. ``vc``, ``q``).
    closed_form : callable
        ``closed_form(t, v0, *params)``.
    rhs : callable
        ``rhs(t, V, params_dict) -> dV/dt`` (pytensor).
    reference : str
        Where the model is described.
    """

    name: str
    parameters: tuple[str, ...]
    optional: Mapping[str, float]
    closed_form: Callable[..., Any]
    rhs: Callable[..., Any]
    reference: str

    def volume(self, t: Any, v0: Any, params: Mapping[str, Any]) -> pt.TensorVariable:
        """Closed-form ``V(t)`` with parameters taken by name from ``params``."""
        missing = [k for k in self.parameters if k not in params]
        if missing:
            raise TwinSpecificationError(
                f"Growth model {self.name!r} needs parameter(s) {missing}; got {sorted(params)}. "
                f"Its parameters are {list(self.parameters)} (optional: {dict(self.optional)})."
            )
        args = [params[k] for k in self.parameters]
        args += [params.get(k, d) for k, d in self.optional.items()]
        return self.closed_form(t, v0, *args)


_BENZEKRY = "Benzekry et al. 2014, PLOS Comput Biol 10:e1003800, Table 1"
#: Registered growth models, by name.
GROWTH_MODELS: dict[str, GrowthModel] = {
    "exponential": GrowthModel("exponential", ("a",), {}, exponential, _rhs_exponential, _BENZEKRY),
    "logistic": GrowthModel("logistic", ("a", "K"), {}, logistic, _rhs_logistic, _BENZEKRY),
    "gompertz": GrowthModel(
        "gompertz", ("alpha", "beta"), {"vc": 1.0}, gompertz, _rhs_gompertz,
        "Vaghi et al. 2020, PLOS Comput Biol 16:e1007178, Eq. (1); " + _BENZEKRY,
    ),
    "reduced_gompertz": GrowthModel(
        "reduced_gompertz", ("beta", "k"), {"q": 0.0, "vc": 1.0}, reduced_gompertz,
        _rhs_reduced_gompertz, "Vaghi et al. 2020, PLOS Comput Biol 16:e1007178 (reduced Gompertz)",
    ),
    "von_bertalanffy": GrowthModel(
        "von_bertalanffy", ("a", "b"), {}, von_bertalanffy, _rhs_von_bertalanffy, _BENZEKRY,
    ),
    "power_law": GrowthModel("power_law", ("a", "gamma"), {}, power_law, _rhs_power_law, _BENZEKRY),
}


def _get_model(model: str) -> GrowthModel:
    if model not in GROWTH_MODELS:
        raise TwinSpecificationError(
            f"Unknown growth model {model!r}. Known models: {sorted(GROWTH_MODELS)}."
        )
    return GROWTH_MODELS[model]


def growth_simulator(
    model: str,
    *,
    v0: float | str = 1.0,
    method: Literal["closed", "rk4"] = "closed",
    n_steps: int = 40,
    log_output: bool = False,
) -> PytensorSimulator | ODESimulator:
    """A vvuq_twin simulator of tumor volume vs time (input column 0 = days after injection).

    Parameters
    ----------
    model : str
        One of :data:`GROWTH_MODELS`.
    v0 : float or str
        Initial volume (mm³) at t = 0, or the name of a calibration parameter holding it.
    method : {"closed", "rk4"}
        Closed form (default) or RK4 integration in ``pytensor.scan`` with ``n_steps`` steps
        from 0 to each observation time (for verification, or for extended right-hand sides).
    n_steps : int
        RK4 steps (``method="rk4"`` only).
    log_output : bool
        Return ``log V`` instead of ``V`` (e.g. for an additive discrepancy on the log scale).

    Returns
    -------
    PytensorSimulator or ODESimulator
        Callable ``sim(x, params)`` with ``x`` of shape ``(n, 1)``.
    """
    gm = _get_model(model)
    if method not in ("closed", "rk4"):
        raise TwinSpecificationError(f"`method` must be 'closed' or 'rk4', got {method!r}.")

    def _v0(p: Mapping[str, Any]) -> Any:
        return p[v0] if isinstance(v0, str) else v0

    if method == "closed":
        def fn(x, p):
            v = gm.volume(x[:, 0], _v0(p), p)
            return pt.log(v) if log_output else v

        return PytensorSimulator(fn, name=f"tumor_{model}_closed")

    def rhs(t, y, p):
        return gm.rhs(t, y[:, 0:1], {k: (val[:, None] if getattr(val, "ndim", 0) == 1 else val)
                                     for k, val in p.items()})

    def y0(p):
        val = pt.as_tensor_variable(_v0(p))
        return val[:, None] if val.ndim == 1 else pt.reshape(val, (1,))

    def out(y_end, p):
        return pt.log(y_end[:, 0]) if log_output else y_end[:, 0]

    return ODESimulator(rhs=rhs, y0=y0, t0=0.0, n_steps=int(n_steps), output=out,
                        name=f"tumor_{model}_rk4")


def gompertz_sensitivity(X: Any, *, k: float, beta: float, log_v0: float = 0.0) -> Any:
    """Sensitivity directions of the reduced Gompertz log volume at ``(k, beta)``: shape (n, 2).

    ``log V(t) = log_v0 e^{-beta t} + k (1 - e^{-beta t})``, so ``d log V / d k = 1 - e^{-beta t}``
    and ``d log V / d log beta = beta t (k - log_v0) e^{-beta t}`` (input column 0 = days). These
    are the directions an HSGP discrepancy is made orthogonal to
    (:class:`vvuq_twin.HSGPDiscrepancy`, ``orthogonal_to``).
    """
    import numpy as np

    t = np.asarray(X, float)
    t = t[:, 0] if t.ndim == 2 else t
    if not (np.isfinite(k) and np.isfinite(beta) and beta > 0):
        raise ValueError(f"gompertz_sensitivity needs finite k and beta > 0, got k={k!r}, beta={beta!r}.")
    e = np.exp(-beta * t)
    return np.column_stack([1.0 - e, beta * t * (k - log_v0) * e])


def power_law_twin(v0: float = 1.0) -> Any:
    """The power-law candidate twin: ``dV/dt = a_u V^gamma`` from ``V(0) = v0`` on the log-volume scale.

    Per-mouse ``a`` pooled on the log scale, shared ``gamma ~ Beta(4, 2)`` (sub-exponential growth,
    0 < gamma < 1; Benzekry et al. 2014 fit the power law to the same lung data), no discrepancy,
    the same log-normal caliper error as the reduced-Gompertz twins. It has no carrying capacity:
    its forecasts grow without bound (the case flags decisions after the validated days).
    """
    import numpy as np

    from vvuq_twin import Beta, GaussianObs, HalfNormal, Hierarchy, NoDiscrepancy, NormalPrior, Parameter, Twin

    return Twin(
        name="tumor_power_law_log",
        simulator=growth_simulator("power_law", v0=float(v0), log_output=True),
        parameters=[Parameter("a", NormalPrior(0.0, 1.5), per_unit=True, link="log", pop_scale=HalfNormal(0.5)),
                    Parameter("gamma", Beta(4.0, 2.0))],
        discrepancy=NoDiscrepancy(),
        observation=GaussianObs(sigma=HalfNormal(0.5)),
        hierarchy=Hierarchy(dim="mouse"),
    )
