"""The twin declaration: the hub every other module works from.

A :class:`Twin` names its parts explicitly - simulator, parameters, hierarchy, discrepancy and
observation model - so that calibration, prediction, V&V, sensitivity, risk, design,
assimilation and twin operations can each reach the part they need. ``Twin.build_model(data)``
builds the PyMC model with these roles:

* free parameters by their declared names (per-unit ones with dim ``unit``; their population
  location ``<name>_mu``, scale ``<name>_sigma`` and non-centred offsets ``<name>_z``, or the
  unit values ``<name>_lin`` on the link scale when centred; ``centered="auto"`` decides from
  the twin and the data, see :mod:`vvuq_twin.twin._parametrization`);
* Deterministics ``eta`` (simulator output), ``delta`` (discrepancy) and ``zeta`` (true process
  eta + delta), dim ``obs``;
* the observed variable ``y`` (dim ``obs``, or ``obs_observed`` when some values are missing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from ..exceptions import DataValidationError, SimulatorError, TwinSpecificationError
from .data import TwinData
from .discrepancy import BuildContext, Discrepancy, DiscrepancyHandle, NoDiscrepancy
from ._spec import PredictSpec
from .observation import Gaussian, LogNormalObs, ObservationModel
from .priors import HalfNormal, Normal, Prior, PriorLike, StudentT, as_prior, prior_spec
from .simulators import Simulator

__all__ = ["Parameter", "Hierarchy", "Twin", "TwinBuild", "PredictSpec", "ROLE_VARS", "ROLE_DETERMINISTICS",
           "OBSERVED_DATA_NAME", "ACCURACY_VAR"]

#: names of the role variables in every twin model
ROLE_VARS = ("eta", "delta", "zeta", "y")
#: the role variables that are Deterministics (all but the observed y)
ROLE_DETERMINISTICS = ROLE_VARS[:3]
#: name of the data container holding the (observed part of the) observations in the model
OBSERVED_DATA_NAME = "y_observed"
#: Deterministic holding the simulator's numerical accuracy indicator (<= 1 is within tolerance)
ACCURACY_VAR = "eta_accuracy"

_LINKS = {
    "identity": (lambda v: v, lambda v: v),
    "log": (pt.exp, np.log),
}
#: the links in numpy: (link, inverse link)
_NP_LINKS = {
    "identity": (lambda v: v, lambda v: v),
    "log": (np.log, np.exp),
}


def _get(draws: Any, name: str) -> np.ndarray:
    if name not in draws:
        raise KeyError(f"The draws have no {name!r}; pass every variable of Twin.free_variable_names().")
    return np.asarray(draws[name], dtype=float)


def _sum_draws(lp: np.ndarray) -> np.ndarray:
    lp = np.asarray(lp, float)
    return lp.reshape(lp.shape[0], -1).sum(axis=1) if lp.ndim else lp


def _norm_logpdf(x: np.ndarray, mu: Any, sigma: Any) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class Parameter:
    """A calibration parameter theta with its prior.

    Parameters
    ----------
    name : str
        Variable name in the model and in results.
    prior : Prior
        For a global parameter: its prior. For a per-unit parameter: the prior of the
        population location on the link scale (Normal or StudentT).
    per_unit : bool
        Partially pooled across units: theta_u = inv_link(mu + sigma * z_u), z_u ~ N(0, 1)
        (non-centred) or theta_u = inv_link(N(mu, sigma)) when ``centered``.
    link : {"identity", "log"}
        Scale on which units are pooled ("log" for positive parameters).
    pop_scale : Prior or float
        Prior (or fixed value) of the between-unit standard deviation sigma on the link scale.
    centered : bool or "auto"
        ``True``: the centred parameterisation (better when each unit's data inform its
        parameter well); ``False`` (default): non-centred (better for weakly informed units);
        ``"auto"``: chosen when a model is built for data, from the expected information of each
        unit's observations against the population scale (Papaspiliopoulos, Roberts & Skold
        2007; see :mod:`vvuq_twin.twin._parametrization`). ``calibrate`` records the choice and
        its reason in ``info["parametrization"]`` and the ledger.
    """

    name: str
    prior: Prior
    per_unit: bool = False
    link: Literal["identity", "log"] = "identity"
    pop_scale: PriorLike = field(default_factory=lambda: HalfNormal(1.0))
    centered: bool | Literal["auto"] = False
    #: set by Twin.with_parametrization: ``centered`` was chosen for ``"auto"`` (spec and hash
    #: stay those of the "auto" declaration)
    _auto: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.centered, (bool, np.bool_)) or self.centered == "auto"):
            raise TwinSpecificationError(
                f"Parameter {getattr(self, 'name', '?')!r}: `centered` must be True, False or "
                f"'auto', got {self.centered!r}."
            )
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise TwinSpecificationError(
                f"Parameter name must be a Python identifier, got {self.name!r}."
            )
        if self.name in ROLE_VARS or self.name.startswith(("delta_", "sigma_obs")):
            raise TwinSpecificationError(
                f"Parameter name {self.name!r} is reserved (role variables: {ROLE_VARS}); rename it."
            )
        if not isinstance(self.prior, Prior):
            raise TwinSpecificationError(
                f"Parameter {self.name!r}: `prior` must be a vvuq_twin Prior such as "
                f"Normal(0, 1), got {type(self.prior).__name__}."
            )
        if self.link not in _LINKS:
            raise TwinSpecificationError(
                f"Parameter {self.name!r}: link must be one of {sorted(_LINKS)}, got {self.link!r}."
            )
        if self.per_unit and not isinstance(self.prior, (Normal, StudentT)):
            raise TwinSpecificationError(
                f"Parameter {self.name!r} is per unit, so `prior` is the population location on "
                f"the {self.link} scale and must be Normal or StudentT; got "
                f"{type(self.prior).__name__}. For a positive parameter use link='log' with a "
                "Normal prior on its logarithm."
            )
        object.__setattr__(
            self, "pop_scale", as_prior(self.pop_scale, f"Parameter {self.name!r}.pop_scale", positive=True)
        )

    def reference_value(self) -> float:
        """A representative value (prior mean on the natural scale) used for pre-checks."""
        m = self.prior.mean()
        return float(np.exp(m)) if (self.per_unit and self.link == "log") else float(m)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prior": self.prior.spec(),
            "per_unit": self.per_unit,
            "link": self.link,
            "pop_scale": prior_spec(self.pop_scale) if self.per_unit else None,
            "centered": ("auto" if self._auto else self.centered) if self.per_unit else None,
        }


@dataclass(frozen=True)
class Hierarchy:
    """Units (patients, airframes, regions) over which per-unit parameters are pooled.

    Parameters
    ----------
    dim : str
        Name of the unit dimension in results.
    units : sequence of str, optional
        The known units. Data naming another unit is an error. Default: the units in the data.
    """

    dim: str = "unit"
    units: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.units is not None:
            object.__setattr__(self, "units", tuple(str(u) for u in self.units))
            if len(set(self.units)) != len(self.units):
                raise TwinSpecificationError("Hierarchy.units must be unique.")

    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim, "units": None if self.units is None else list(self.units)}


@dataclass
class Twin:
    """A digital twin declared as a Bayesian (hierarchical) model.

    Parameters
    ----------
    name : str
        Name of the twin.
    simulator : Simulator
        eta(x, theta).
    parameters : sequence of Parameter
        Calibration parameters theta.
    discrepancy : Discrepancy
        delta(x); default none.
    observation : ObservationModel
        y | zeta; default Gaussian with a HalfNormal(1) noise sd.
    hierarchy : Hierarchy, optional
        Needed when any parameter or the discrepancy is per unit.
    """

    name: str
    simulator: Simulator
    parameters: Sequence[Parameter]
    discrepancy: Discrepancy = field(default_factory=NoDiscrepancy)
    observation: ObservationModel = field(default_factory=Gaussian)
    hierarchy: Hierarchy | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.simulator, Simulator):
            raise TwinSpecificationError(
                "Twin.simulator must be a Simulator (PytensorSimulator, ODESimulator, "
                f"BlackBoxSimulator or SurrogateSimulator), got {type(self.simulator).__name__}. "
                "Wrap a plain function with PytensorSimulator(fn) or BlackBoxSimulator(fn, ...)."
            )
        self.parameters = tuple(self.parameters)
        if not self.parameters:
            raise TwinSpecificationError("Twin needs at least one Parameter.")
        for p in self.parameters:
            if not isinstance(p, Parameter):
                raise TwinSpecificationError(
                    f"Twin.parameters must hold Parameter objects, got {type(p).__name__}."
                )
        names = [p.name for p in self.parameters]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise TwinSpecificationError(f"Duplicate parameter names: {sorted(dup)}.")
        if not isinstance(self.discrepancy, Discrepancy):
            raise TwinSpecificationError(
                f"Twin.discrepancy must be a Discrepancy, got {type(self.discrepancy).__name__}."
            )
        if not isinstance(self.observation, ObservationModel):
            raise TwinSpecificationError(
                f"Twin.observation must be an ObservationModel, got {type(self.observation).__name__}."
            )
        # zeta must stay in the support
        self.observation.check_discrepancy(self.discrepancy, is_null=isinstance(self.discrepancy, NoDiscrepancy))
        needs_units = any(p.per_unit for p in self.parameters) or self.discrepancy.per_unit
        if needs_units and self.hierarchy is None:
            raise TwinSpecificationError(
                "Some parameters or the discrepancy are per unit, but the twin has no hierarchy: "
                "pass hierarchy=Hierarchy(dim='unit')."
            )
        from ._names import check_parameter_names

        check_parameter_names(self)  # names the builder creates are reserved (probe build)

    # ------------------------------------------------------------------ identity
    def with_frozen_discrepancy(self, data: "TwinData") -> "Twin":
        """This twin with a data-derived discrepancy geometry fixed from ``data`` (its inputs).

        An HSGP discrepancy's basis is built from the inputs of the model; models built on other
        inputs (new batches, all data after assimilation) must reuse the calibration basis. The
        declaration hash is unchanged. Twins without such a discrepancy are returned as they are.
        """
        import dataclasses as _dc

        freeze = getattr(self.discrepancy, "frozen", None)
        if freeze is None:
            return self
        new = freeze(np.asarray(data.x, float))
        return self if new is self.discrepancy else _dc.replace(self, discrepancy=new)

    # ------------------------------------------------------------------ parametrisation
    @property
    def has_auto_parametrization(self) -> bool:
        """Whether a per-unit parameter is declared ``centered="auto"`` (and not yet resolved)."""
        return any(p.per_unit and p.centered == "auto" for p in self.parameters)

    def parametrization(self, data: TwinData) -> dict[str, dict[str, Any]]:
        """The centred/non-centred choice of every per-unit parameter on ``data``, with reasons.

        See :func:`vvuq_twin.twin._parametrization.choose_parametrization`; declared choices are
        reported with ``source="declared"``.
        """
        from ._parametrization import choose_parametrization

        return choose_parametrization(self, data)

    def with_parametrization(self, choice: "TwinData | dict[str, Any]") -> "Twin":
        """This twin with every ``centered="auto"`` parameter fixed to a choice.

        ``choice``: the data to decide on (:meth:`parametrization`), or a mapping parameter name ->
        bool or record with ``"centered"`` (as stored in ``info["parametrization"]``). The
        declaration hash is unchanged (the choice is a function of the declaration and the data
        structure); twins without ``"auto"`` parameters are returned as they are.
        """
        import dataclasses as _dc

        if not self.has_auto_parametrization:
            return self
        if isinstance(choice, TwinData):
            choice = self.parametrization(choice)
        params = []
        for p in self.parameters:
            if p.per_unit and p.centered == "auto":
                if p.name not in choice:
                    raise KeyError(f"No parametrisation choice for the per-unit parameter {p.name!r}.")
                c = choice[p.name]
                c = c["centered"] if isinstance(c, dict) else c
                p = _dc.replace(p, centered=bool(c), _auto=True)
            params.append(p)
        return _dc.replace(self, parameters=tuple(params))

    def _centred(self, p: Parameter, data: "TwinData | None" = None, draws: Any = None) -> bool:
        """Whether per-unit ``p`` is written centred (resolving ``"auto"`` from data or draws)."""
        if p.centered != "auto":
            return bool(p.centered)
        if draws is not None and (f"{p.name}_lin" in draws or f"{p.name}_z" in draws):
            return f"{p.name}_lin" in draws
        if data is not None:
            return bool(self.parametrization(data)[p.name]["centered"])
        raise TwinSpecificationError(
            f"Parameter {p.name!r} is declared centered='auto': its model variables depend on the "
            "data. Pass data= (the calibration TwinData), or use the calibrated twin "
            "(TwinResult.twin), whose choice is fixed."
        )

    @property
    def parameter_names(self) -> list[str]:
        """Names of the calibration parameters."""
        return [p.name for p in self.parameters]

    @property
    def per_unit_names(self) -> list[str]:
        """Names of per-unit parameters."""
        return [p.name for p in self.parameters if p.per_unit]

    # ------------------------------------------------------------------ numpy answers
    # What other modules ask of the declaration, answered in numpy and vectorised over
    # posterior draws. ``draws`` maps model variable names (the free variables of
    # ``build_model``) to arrays with a leading draw axis, e.g. ``Twin.draws_from(posterior)``.
    def role_names(self) -> tuple[str, ...]:
        """Names of the role variables of every twin model: eta, delta, zeta, y."""
        return ROLE_VARS

    def hyperparameter_names(self) -> list[str]:
        """Inferred variables that are not calibration parameters, in model order.

        Population location/scale of per-unit parameters (``<name>_mu``, ``<name>_sigma``), the
        discrepancy's hyperparameters (``delta_ls``, ``delta_eta``, ``delta_bias``) and the
        inferred noise of the observation model (``sigma_obs``, ...).
        """
        out: list[str] = []
        for p in self.parameters:
            if p.per_unit:
                out.append(f"{p.name}_mu")
                if isinstance(p.pop_scale, Prior):
                    out.append(f"{p.name}_sigma")
        return out + list(self.discrepancy.hyperparameter_names()) + list(self.observation.noise_names())

    def _prior_terms(self, data: TwinData | None, draws: Any = None) -> dict[str, Any]:
        X = None if data is None else np.asarray(data.x, float)
        needs_x = getattr(self.discrepancy, "ls", 0.0) is None
        if needs_x and X is None:
            raise DataValidationError(
                f"Twin {self.name!r}: the discrepancy's default length-scale prior is derived from "
                "the inputs; pass data= (the calibration TwinData) or fix the geometry with "
                "Twin.with_frozen_discrepancy(data)."
            )
        terms: dict[str, Any] = {}
        for p in self.parameters:
            if not p.per_unit:
                terms[p.name] = lambda d, p=p: _sum_draws(p.prior.logpdf(_get(d, p.name)))
                continue
            terms[f"{p.name}_mu"] = lambda d, p=p: _sum_draws(p.prior.logpdf(_get(d, f"{p.name}_mu")))
            if isinstance(p.pop_scale, Prior):
                terms[f"{p.name}_sigma"] = lambda d, p=p: _sum_draws(p.pop_scale.logpdf(_get(d, f"{p.name}_sigma")))
            if self._centred(p, data, draws):
                terms[f"{p.name}_lin"] = lambda d, p=p: _sum_draws(_norm_logpdf(
                    _get(d, f"{p.name}_lin"), _get(d, f"{p.name}_mu")[:, None], self._pop_sigma(p, d)[:, None]))
            else:
                terms[f"{p.name}_z"] = lambda d, p=p: _sum_draws(_norm_logpdf(_get(d, f"{p.name}_z"), 0.0, 1.0))
        x_for = X if X is not None else np.zeros((1, 1))
        terms.update(self.discrepancy.prior_terms(x_for, "delta", marginal=self.marginal_discrepancy()))
        for name, prior in self.observation.noise_priors().items():
            terms[name] = lambda d, name=name, prior=prior: _sum_draws(prior.logpdf(_get(d, name)))
        return terms

    def free_variable_names(self, data: TwinData | None = None) -> list[str]:
        """Names of the free random variables of ``build_model`` (what ``draws`` must hold)."""
        return list(self._prior_terms(data))

    def log_prior(self, draws: Any, data: TwinData | None = None) -> np.ndarray:
        """Log prior density of every draw, shape (n_draws,) (numpy, natural scale, no Jacobian).

        Equals PyMC's ``model.compile_logp(vars=model.free_RVs, jacobian=False)`` of
        ``build_model(data)``. ``data`` is needed only when the discrepancy's length-scale prior
        is derived from the inputs. Draws outside the support give ``-inf``.
        """
        terms = self._prior_terms(data, draws)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = sum(f(draws) for f in terms.values())
        return np.where(np.isnan(lp), -np.inf, lp)

    def _pop_sigma(self, p: Parameter, draws: Any) -> np.ndarray:
        mu = _get(draws, f"{p.name}_mu")
        if isinstance(p.pop_scale, Prior):
            return _get(draws, f"{p.name}_sigma").reshape(mu.shape[0])
        return np.full(mu.shape[0], float(p.pop_scale))

    def parameter_values(self, draws: Any) -> dict[str, np.ndarray]:
        """Calibration parameters per draw: (n_draws,) for global ones, (n_draws, n_units) per unit.

        Per-unit values are computed from the free variables (population location, scale and
        offsets) exactly as the model does.
        """
        out = {}
        for p in self.parameters:
            if not p.per_unit:
                out[p.name] = _get(draws, p.name).reshape(-1)
                continue
            _, inv = _NP_LINKS[p.link]
            mu = _get(draws, f"{p.name}_mu").reshape(-1)
            if self._centred(p, draws=draws):
                lin = _get(draws, f"{p.name}_lin")
            else:
                lin = mu[:, None] + self._pop_sigma(p, draws)[:, None] * _get(draws, f"{p.name}_z")
            out[p.name] = inv(lin)
        return out

    def simulate(self, draws: Any, data: TwinData) -> tuple[np.ndarray, np.ndarray | None]:
        """The simulator output eta at the inputs of ``data`` for every draw, (n_draws, n_obs).

        Also returns the simulator's predictive variance (surrogates) or None. The simulator is
        compiled once per call and evaluated draw by draw.
        """
        unit_idx, _ = self.unit_index(data)
        vals = self.parameter_values(draws)
        sym = {p.name: (pt.dvector(p.name) if p.per_unit else pt.dscalar(p.name)) for p in self.parameters}
        X = pt.as_tensor_variable(np.asarray(data.x, float))
        eta = pt.as_tensor_variable(self.simulator(X, sym)) * pt.ones((data.n,))
        extra = self.simulator.predictive_variance(X, sym)
        outs = [eta] + ([pt.as_tensor_variable(extra) * pt.ones((data.n,))] if extra is not None else [])
        f = pytensor.function([sym[p.name] for p in self.parameters], outs, on_unused_input="ignore")
        n = next(iter(vals.values())).shape[0]
        res = [f(*[(vals[p.name][i][unit_idx] if p.per_unit else vals[p.name][i]) for p in self.parameters])
               for i in range(n)]
        eta_np = np.array([r[0] for r in res], dtype=float)
        return eta_np, (np.array([r[1] for r in res], dtype=float) if extra is not None else None)

    def log_likelihood(self, draws: Any, data: TwinData) -> np.ndarray:
        """Log-likelihood of the observed ``data.y`` for every draw, shape (n_draws,) (numpy).

        Equals PyMC's ``model.compile_logp(vars=model.observed_RVs)`` of ``build_model(data)``:
        the simulator at the draw's parameters, the discrepancy (integrated out for an exact GP
        with Gaussian noise, as in the model) and the observation model.
        """
        unit_idx, units = self.unit_index(data)
        eta, extra = self.simulate(draws, data)
        n = eta.shape[0]
        noise = self.observation.noise_values(draws, n)
        idx = np.flatnonzero(data.observed_mask)
        y = np.asarray(data.y, float)[idx]
        if self.marginal_discrepancy():
            K = self.discrepancy.marginal_cov_numpy(draws, data.x, unit_idx)
            sd = self.observation.scale_numpy(noise, eta, data.y_sd, extra)[:, idx]
            S = K[:, idx][:, :, idx] + np.einsum("di,ij->dij", sd**2, np.eye(idx.size))
            Lc = np.linalg.cholesky(S)
            r = np.linalg.solve(Lc, (y[None, :] - eta[:, idx])[..., None])[..., 0]
            logdet = 2.0 * np.log(np.diagonal(Lc, axis1=1, axis2=2)).sum(axis=1)
            return -0.5 * ((r**2).sum(axis=1) + logdet + idx.size * np.log(2.0 * np.pi))
        delta = self.discrepancy.delta_numpy(draws, data.x, unit_idx, len(units), "delta")
        zeta = self.observation.combine_numpy(eta, delta)
        sd = self.observation.scale_numpy(noise, zeta, data.y_sd, extra)
        lp = self.observation.logpdf(y[None, :], zeta[:, idx], sd[:, idx], noise)
        return np.asarray(lp, float).sum(axis=1)

    @staticmethod
    def draws_from(posterior: Any, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Flatten ``(chain, draw, ...)`` variables of an xarray posterior to ``(n_draws, ...)``."""
        names = list(posterior.data_vars) if names is None else list(names)
        out = {}
        for k in names:
            da = posterior[k]
            if "chain" in da.dims and "draw" in da.dims:
                da = da.transpose("chain", "draw", ...)
                v = np.asarray(da.values, float)
                out[k] = v.reshape((-1,) + v.shape[2:])
            else:
                out[k] = np.asarray(da.values, float)
        return out

    def spec(self) -> dict[str, Any]:
        """Canonical description of structure, priors and simulator source."""
        return {
            "name": self.name,
            "simulator": self.simulator.spec(),
            "parameters": [p.spec() for p in self.parameters],
            "discrepancy": self.discrepancy.spec(),
            "observation": self.observation.spec(),
            "hierarchy": None if self.hierarchy is None else self.hierarchy.spec(),
        }

    @property
    def hash(self) -> str:
        """Stable SHA-256 content hash of the declaration."""
        blob = json.dumps(self.spec(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def component_hashes(self) -> dict[str, str]:
        """Hash of each component (the V&V ledger uses them to find stale entries)."""
        spec = self.spec()
        return {
            k: hashlib.sha256(json.dumps(spec[k], sort_keys=True, default=str).encode()).hexdigest()
            for k in ("simulator", "parameters", "discrepancy", "observation", "hierarchy")
        }

    @property
    def has_gradient(self) -> bool:
        """Whether NUTS can be used (the simulator is differentiable)."""
        return bool(self.simulator.has_gradient)

    # ------------------------------------------------------------------ checks
    def unit_index(self, data: TwinData) -> tuple[np.ndarray | None, tuple[str, ...]]:
        """Integer unit index of each observation and the ordered unit labels."""
        if self.hierarchy is None:
            return None, ()
        if data.unit is None:
            raise DataValidationError(
                f"Twin {self.name!r} is hierarchical (dim {self.hierarchy.dim!r}) but the data "
                "have no unit labels: pass TwinData(..., unit=labels)."
            )
        units = self.hierarchy.units if self.hierarchy.units is not None else data.units
        lookup = {u: i for i, u in enumerate(units)}
        unknown = sorted(set(data.unit.tolist()) - set(lookup))
        if unknown:
            raise DataValidationError(
                f"The data name unit(s) {unknown[:10]} that the hierarchy does not know "
                f"(known: {list(units)[:10]}{'...' if len(units) > 10 else ''}). Add them to "
                "Hierarchy(units=...) or drop those rows."
            )
        return np.array([lookup[u] for u in data.unit], dtype=int), tuple(units)

    def check(self, data: TwinData) -> None:
        """Validate data against the declaration and run the simulator once at the prior mean.

        Raises before any model is compiled or sampled.
        """
        if not isinstance(data, TwinData):
            raise DataValidationError(
                f"Expected TwinData, got {type(data).__name__}. Build it with TwinData(x=..., y=...)."
            )
        self.unit_index(data)
        self.discrepancy.validate(data.x)
        if hasattr(self.observation, "check_observed"):  # positive / count observations
            self.observation.check_observed(data.y)
        self._check_simulator(data)

    def _check_simulator(self, data: TwinData) -> None:
        n = data.n
        unit_idx, _ = self.unit_index(data)
        ref = {p.name: p.reference_value() for p in self.parameters}
        params = {
            k: (pt.as_tensor_variable(np.full(n, v)) if any(q.name == k and q.per_unit for q in self.parameters)
                else pt.as_tensor_variable(np.float64(v)))
            for k, v in ref.items()
        }
        try:
            X = pt.as_tensor_variable(data.x)
            out = self.simulator(X, params)
            acc = self.simulator.accuracy(X, params)
            f = pytensor.function([], pt.as_tensor_variable(out), mode="FAST_COMPILE")
            val = np.asarray(f(), dtype=float)
            acc_val = None if acc is None else np.asarray(acc.eval(mode="FAST_COMPILE"), dtype=float)
        except SimulatorError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with the parameters that failed
            raise SimulatorError(
                f"The simulator of twin {self.name!r} failed at the prior reference values {ref}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if val.shape != (n,):
            raise SimulatorError(
                f"The simulator of twin {self.name!r} returned shape {val.shape} for {n} input "
                f"rows; it must return one value per row, shape ({n},). Check that it maps x of "
                "shape (n, d) to (n,) (e.g. use x[:, 0] for a single input)."
            )
        bad = np.flatnonzero(~np.isfinite(val))
        if bad.size:
            raise SimulatorError(
                f"The simulator of twin {self.name!r} returned non-finite values at rows "
                f"{bad[:10].tolist()} at the prior reference values {ref}. Fix the simulator or "
                "the priors."
            )
        if acc_val is not None and not np.all(acc_val <= 1.0):
            raise SimulatorError(
                f"The simulator of twin {self.name!r} exceeds its numerical error tolerance at the "
                f"prior reference values {ref} (largest scaled error estimate "
                f"{float(np.nanmax(acc_val)):.3g} > 1, rows "
                f"{np.flatnonzero(~(acc_val <= 1.0))[:10].tolist()}). Lower the ODE's `max_step`."
            )
        multiplicative = getattr(self.observation, "discrepancy_scale", "additive") == "log"
        if self.observation.positive and np.any(val <= 0) and (
                multiplicative or isinstance(self.discrepancy, NoDiscrepancy)):
            raise SimulatorError(
                f"Twin {self.name!r} uses a {type(self.observation).__name__} observation model, "
                f"which needs a positive simulator output (zeta = eta * exp(delta)), but the "
                f"simulator returns values <= 0 at rows "
                f"{np.flatnonzero(val <= 0)[:10].tolist()} at the prior reference values."
            )

    # ------------------------------------------------------------------ model
    def marginal_discrepancy(self) -> bool:
        """Whether the discrepancy is integrated out of the likelihood (exact GP, Gaussian noise)."""
        return self.discrepancy.supports_marginal(self.observation)

    def build_model(self, data: TwinData, *, predict_at: PredictSpec | None = None,
                    check: bool = True, conditional_roles: bool = False) -> pm.Model:
        """Build the PyMC model of this twin for ``data``.

        Parameters
        ----------
        data : TwinData
        predict_at : PredictSpec, optional
            Also add ``eta_new``, ``delta_new``, ``zeta_new``, ``y_new`` (dim ``obs_new``).
        check : bool
            Validate the data and pre-run the simulator first (default True).
        conditional_roles : bool
            When the GP discrepancy is marginalised, also add ``delta`` (its Gaussian
            conditional given theta and y) and ``zeta``; used for posterior prediction.

        See :meth:`build` for the model together with the record of how it was built.
        """
        return self.build(data, predict_at=predict_at, check=check, conditional_roles=conditional_roles).model

    def build(self, data: TwinData, *, predict_at: PredictSpec | None = None,
              check: bool = True, conditional_roles: bool = False) -> "TwinBuild":
        """Build the PyMC model (as :meth:`build_model`) and return it with its build record."""
        if self.has_auto_parametrization:  # the choice for these data, then the same build
            if check:
                self.check(data)
            return self.with_parametrization(data).build(
                data, predict_at=predict_at, check=False, conditional_roles=conditional_roles)
        if check:
            self.check(data)
        unit_idx, units = self.unit_index(data)
        udim = self.hierarchy.dim if self.hierarchy is not None else "unit"
        mask = data.observed_mask
        coords: dict[str, Any] = {"obs": list(data.obs), "input": list(data.input_names)}
        if units:
            coords[udim] = list(units)
        has_missing = not bool(mask.all())
        if has_missing:
            coords["obs_observed"] = [o for o, m in zip(data.obs, mask) if m]
        if predict_at is not None:
            coords["obs_new"] = list(range(predict_at.X.shape[0]))
        with pm.Model(coords=coords, name="") as model:
            values: dict[str, Any] = {}
            populations: dict[str, _Population] = {}
            for p in self.parameters:
                if not p.per_unit:
                    values[p.name] = p.prior.dist(p.name)
                    continue
                inv, _ = _LINKS[p.link]
                mu = p.prior.dist(f"{p.name}_mu")
                sig = p.pop_scale.dist(f"{p.name}_sigma") if isinstance(p.pop_scale, Prior) else pt.as_tensor_variable(p.pop_scale)
                if p.centered:  # "auto" was resolved above
                    lin = pm.Normal(f"{p.name}_lin", mu=mu, sigma=sig, dims=udim)
                else:
                    z = pm.Normal(f"{p.name}_z", 0.0, 1.0, dims=udim)
                    lin = mu + sig * z
                values[p.name] = pm.Deterministic(p.name, inv(lin), dims=udim)
                populations[p.name] = _Population(mu, sig, inv)
            per_obs = {
                p.name: (values[p.name][unit_idx] if p.per_unit else values[p.name])
                for p in self.parameters
            }
            X = pt.as_tensor_variable(data.x)
            eta = pm.Deterministic("eta", self.simulator(X, per_obs), dims="obs")
            acc = self.simulator.accuracy(X, per_obs)
            if acc is not None:  # numerical error indicator (ODE): checked after sampling
                pm.Deterministic(ACCURACY_VAR, acc, dims="obs")
            ctx = BuildContext(X=data.x, unit_idx=unit_idx, n_units=len(units), unit_dim=udim)
            marginal = self.marginal_discrepancy()
            if marginal:
                handle = self.discrepancy.add(ctx, "delta", marginal=True)
                noise = self.observation.register_noise()
                extra = self.simulator.predictive_variance(X, per_obs)
                sd = self.observation.scale(noise, eta, data.y_sd, extra)
                sd_vec = sd if getattr(sd, "ndim", 0) == 1 else pt.ones((data.n,)) * sd
                idx = np.flatnonzero(mask)
                Sigma = handle.marginal_cov[idx][:, idx] + pt.diag(sd_vec[idx] ** 2)
                ydims = "obs_observed" if has_missing else "obs"
                y_obs = pm.Data(OBSERVED_DATA_NAME, data.y[idx], dims=ydims)
                handle.condition_on(y_obs - eta[idx], Sigma, idx)
                if conditional_roles or predict_at is not None:
                    # predictive form: delta | theta, y is Gaussian; y_rep | zeta has the noise
                    d = handle.conditional(name="delta", dims="obs")
                    zeta = pm.Deterministic("zeta", eta + d, dims="obs")
                    self.observation.likelihood("y", zeta[idx], sd_vec[idx], observed=y_obs, dims=ydims)
                else:
                    pm.MvNormal("y", mu=eta[idx], cov=Sigma, observed=y_obs, dims=ydims)
            else:
                handle = self.discrepancy.add(ctx, "delta")
                delta = pm.Deterministic("delta", handle.delta, dims="obs")
                zeta = pm.Deterministic("zeta", self.observation.combine(eta, delta), dims="obs")
                noise = self.observation.register_noise()
                extra = self.simulator.predictive_variance(X, per_obs)
                sd = self.observation.scale(noise, zeta, data.y_sd, extra)
                sd_vec = sd if getattr(sd, "ndim", 0) == 1 else pt.ones((data.n,)) * sd
                # the observations are a data container, so that a compiled model can be reused
                # for new observations at the same inputs (SBC, repeated calibrations)
                if has_missing:
                    idx = np.flatnonzero(mask)
                    y_obs = pm.Data(OBSERVED_DATA_NAME, data.y[idx], dims="obs_observed")
                    self.observation.likelihood("y", zeta[idx], sd_vec[idx], observed=y_obs, dims="obs_observed")
                else:
                    y_obs = pm.Data(OBSERVED_DATA_NAME, data.y, dims="obs")
                    self.observation.likelihood("y", zeta, sd_vec, observed=y_obs, dims="obs")
            if predict_at is not None:
                self._add_prediction(handle, values, populations, noise, predict_at)
        return TwinBuild(self, model, handle, noise, populations, unit_idx, tuple(units), marginal)

    def _add_prediction(self, handle: DiscrepancyHandle, values: dict[str, Any],
                        populations: dict[str, "_Population"], noise: dict[str, Any], spec: PredictSpec) -> None:
        m = spec.X.shape[0]
        if spec.unit_idx is None and not spec.new_unit and self.per_unit_names:
            raise DataValidationError(
                f"Twin {self.name!r} has per-unit parameters {self.per_unit_names}: say which unit "
                "to predict for (unit=label) or ask for a new unit (unit='new')."
            )
        new_vals = {}
        for p in self.parameters:
            if not p.per_unit:
                new_vals[p.name] = values[p.name]
                continue
            if spec.new_unit:
                pop = populations[p.name]
                z_new = pm.Normal(f"{p.name}_z_new", 0.0, 1.0)
                th = pm.Deterministic(f"{p.name}_new", pop.inv(pop.mu + pop.sigma * z_new))
                new_vals[p.name] = pt.ones((m,)) * th
            else:
                new_vals[p.name] = values[p.name][spec.unit_idx]
        Xn = pt.as_tensor_variable(spec.X)
        eta_n = pm.Deterministic("eta_new", self.simulator(Xn, new_vals), dims="obs_new")
        acc_n = self.simulator.accuracy(Xn, new_vals)
        if acc_n is not None:
            pm.Deterministic(f"{ACCURACY_VAR}_new", acc_n, dims="obs_new")
        d = handle.at(spec.X, spec.unit_idx, spec.new_unit, "delta_new_raw")
        delta_n = pm.Deterministic("delta_new", d, dims="obs_new")
        zeta_n = pm.Deterministic("zeta_new", self.observation.combine(eta_n, delta_n), dims="obs_new")
        extra = self.simulator.predictive_variance(Xn, new_vals)
        sd = self.observation.scale(noise, zeta_n, None, extra)
        sd_vec = sd if getattr(sd, "ndim", 0) == 1 else pt.ones((m,)) * sd
        self.observation.likelihood("y_new", zeta_n, sd_vec, dims="obs_new")


@dataclass(frozen=True)
class _Population:
    """Population of a per-unit parameter: theta_u = inv(mu + sigma * z_u)."""

    mu: Any
    sigma: Any
    inv: Any


@dataclass
class TwinBuild:
    """The record of one :meth:`Twin.build`: the model and the handles it was built with.

    Attributes
    ----------
    twin : Twin
    model : pm.Model
    discrepancy : DiscrepancyHandle
        The registered discrepancy (``.at(X_new)``; ``.marginal_cov`` / ``.conditional`` when
        integrated out).
    noise : dict
        The observation noise tensors by attribute (``sigma``, ``relative``, ``nu``).
    populations : dict
        Per-unit parameter name -> its population (location, scale, inverse link).
    unit_idx, units :
        Integer unit index per observation and the unit labels.
    marginal : bool
        Whether the discrepancy is integrated out of the likelihood.
    """

    twin: "Twin"
    model: pm.Model
    discrepancy: DiscrepancyHandle
    noise: dict[str, Any]
    populations: dict[str, _Population]
    unit_idx: np.ndarray | None
    units: tuple[str, ...]
    marginal: bool
