"""Simulation-based calibration of a vvuq_twin :class:`~vvuq_twin.Twin`.

Parameters and data are drawn from the twin's prior predictive (``pm.sample_prior_predictive``
on ``twin.build_model(data_template)``, all replications in one compiled call), each simulated
data set is calibrated with :func:`vvuq_twin.calibrate`, and the ranks of the twin's parameters
and of the joint log-likelihood ``log p(y | all free parameters)`` are tested with
:func:`vvuq_twin.verification.sbc.rank_uniformity`.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.continuous import FlatRV, HalfFlatRV

from .._rng import RNGLike, as_generator, seed_int
from ._errors import SBCError
from .sbc import DerivedFn, SBCResult, _check_common, _sbc_engine

__all__ = ["sbc_twin", "check_proper_priors"]

_IMPROPER = (FlatRV, HalfFlatRV)


def check_proper_priors(model: pm.Model) -> None:
    """Raise :class:`SBCError` if ``model`` cannot be simulated from its prior.

    SBC draws parameters from the prior; an improper prior (``pm.Flat``, ``pm.HalfFlat``) has no
    distribution to draw from, and a ``pm.Potential`` changes the prior without the prior
    predictive sampler seeing it.
    """
    bad = [rv.name for rv in model.free_RVs if isinstance(rv.owner.op, _IMPROPER)]
    if bad:
        raise SBCError(
            f"Parameter(s) {bad} have improper priors (pm.Flat / pm.HalfFlat): SBC must draw "
            "parameters from the prior, which is impossible for an improper prior. Give each a "
            "proper prior, e.g. Normal(0, 10) or HalfNormal(10), and run SBC again."
        )
    if model.potentials:
        raise SBCError(
            f"The model has potentials {[p.name for p in model.potentials]}: the prior predictive "
            "sampler ignores them, so simulated parameters would not follow the prior the fit "
            "uses. Express the constraint through proper priors instead."
        )


class _TwinLogLik:
    """Joint log-likelihood log p(y | free parameters) of the twin, compiled once per process."""

    def __init__(self, twin: Any, data_template: Any) -> None:
        self.twin = twin
        self.data_template = data_template
        self._fn = None
        self._inputs: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"twin": self.twin, "data_template": self.data_template, "_fn": None, "_inputs": []}

    def _compile(self) -> None:
        from pymc.model.transform.conditioning import remove_value_transforms

        model = remove_value_transforms(self.twin.build_model(self.data_template, check=False))
        y_rv = model["y"]
        y_sym = pt.vector("y_simulated")
        lp = pm.logp(y_rv, y_sym).sum()
        [lp] = model.replace_rvs_by_values([lp])
        values = [model.rvs_to_values[rv] for rv in model.free_RVs]
        self._inputs = [rv.name for rv in model.free_RVs]
        self._fn = pytensor.function(values + [y_sym], lp, on_unused_input="ignore")

    def __call__(self, params: Mapping[str, Any], data: Any) -> float:
        if self._fn is None:
            self._compile()
        y = np.asarray(data.y, dtype=float)[np.asarray(data.observed_mask)]
        args = [np.asarray(params[n], dtype=float) for n in self._inputs]
        return float(self._fn(*args, y))


class _TwinFit:
    """Calibrate the twin on one simulated data set.

    Returns ``(posterior, diagnostics)``: the posterior Dataset and the calibration's own
    sampler diagnostics (``passed`` against the thresholds given in ``calibrate_kwargs`` or the
    defaults, worst R-hat, smallest bulk/tail ESS, divergences), so that SBC can count the
    replications whose sampler did not converge.
    """

    def __init__(self, twin: Any, draws: int, tune: int, chains: int, method: str,
                 kwargs: Mapping[str, Any]) -> None:
        self.twin, self.draws, self.tune, self.chains = twin, draws, tune, chains
        self.method, self.kwargs = method, dict(kwargs)

    def __call__(self, data: Any, rng: np.random.Generator) -> Any:
        from ..inference.calibrate import calibrate

        res = calibrate(
            self.twin, data, method=self.method, draws=self.draws, tune=self.tune,
            chains=self.chains, rng=rng, progressbar=False, posterior_predictive=False,
            warn=False, **self.kwargs,
        )
        checks = res.diagnostics.checks
        diag: dict[str, Any] = {"passed": bool(res.diagnostics.passed)}
        for key in ("rhat", "ess_bulk", "ess_tail", "divergences"):
            if key in checks:
                diag[key] = float(checks[key]["value"])
        return res.idata.posterior, diag


def sbc_twin(
    twin: Any,
    data_template: Any,
    n_sims: int,
    *,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    method: Literal["auto", "nuts", "nutpie", "pymc", "smc"] = "auto",
    var_names: Sequence[str] | None = None,
    derived: Mapping[str, DerivedFn] | None = None,
    max_rank: int | None = None,
    thin: Literal["ess"] | int | None = "ess",
    prob: float = 0.95,
    rng: RNGLike = None,
    executor: Executor | None = None,
    calibrate_kwargs: Mapping[str, Any] | None = None,
) -> SBCResult:
    """Simulation-based calibration of a twin's calibration (inference verification).

    Parameters
    ----------
    twin : Twin
        The declaration; every prior must be proper.
    data_template : TwinData
        Inputs (``x``, units, ``y_sd``, missing mask) at which data are simulated; its ``y`` is
        replaced by prior-predictive draws (it must still pass ``twin.check``, e.g. be positive
        for a log-normal observation model; NaN entries stay missing when ``missing="mask"``).
    n_sims : int
        Number of replications (each runs one calibration).
    draws, tune, chains, method :
        Passed to :func:`vvuq_twin.calibrate` for each replication.
    var_names : sequence of str, optional
        Posterior variables to rank. Default: every *scalar* parameter of the model (the twin's
        global parameters, noise scale, population mean/scale of per-unit parameters); per-unit
        vectors are ranked only when named. Each quantity gets a band of level ``prob``: with k
        quantities, pass ``prob = 1 - 0.05 / k`` for a familywise level of 95 %.
    derived : mapping, optional
        Extra test quantities ``{name: f(params, data)}``; ``params`` holds every free parameter.
        The joint log-likelihood ``"log_lik"`` is always ranked.
    max_rank : int, optional
        Posterior draws ranked against (default ``min(99, draws * chains // 4)``).
    thin, prob :
        See :func:`vvuq_twin.verification.sbc`.
    rng : Generator, int or None
        Seed of the prior-predictive draws and of every calibration.
    executor : concurrent.futures.Executor, optional
        Runs calibrations in parallel.
    calibrate_kwargs : mapping, optional
        Further keyword arguments of :func:`vvuq_twin.calibrate`.

    Returns
    -------
    SBCResult

    Raises
    ------
    SBCError
        Improper priors or potentials (the prior cannot be simulated), or failed calibrations.
    """
    if max_rank is None:
        max_rank = int(max(1, min(99, draws * chains // 4)))
    _check_common(n_sims, max_rank, thin)
    gen = as_generator(rng)
    model = twin.build_model(data_template)
    check_proper_priors(model)
    free = [rv.name for rv in model.free_RVs]
    param_names = list(dict.fromkeys(list(getattr(twin, "parameter_names", [])) + free))
    try:
        prior = pm.sample_prior_predictive(
            draws=int(n_sims), model=model, random_seed=seed_int(gen), return_inferencedata=True
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with the fix
        raise SBCError(
            f"Cannot simulate from the prior predictive of twin {getattr(twin, 'name', '?')!r}: "
            f"{type(exc).__name__}: {exc}. Every prior must be proper and every parameter sampleable."
        ) from exc
    pr, pp = prior.prior, prior.prior_predictive
    missing = [n for n in param_names if n not in pr]
    if missing:
        raise SBCError(f"The prior predictive lacks parameters {missing}; cannot rank them.")
    mask = np.asarray(data_template.observed_mask)
    sims = []
    for i in range(int(n_sims)):
        params = {n: np.asarray(pr[n].isel(chain=0, draw=i).values, dtype=float) for n in param_names}
        y_obs = np.asarray(pp["y"].isel(chain=0, draw=i).values, dtype=float)
        y_full = np.full(mask.shape, np.nan)
        y_full[mask] = y_obs
        sims.append((params, dataclasses.replace(data_template, y=y_full)))
    if var_names is None:
        # scalar quantities only: a per-unit vector would add one tested quantity per unit, and
        # with a band of level `prob` for each, the chance that some correct quantity leaves its
        # band grows with the number of units (rank per-unit parameters explicitly if wanted)
        names = list(dict.fromkeys(list(getattr(twin, "parameter_names", [])) + free))
        var_names = [n for n in names if np.ndim(sims[0][0][n]) == 0]
    fit = _TwinFit(twin, int(draws), int(tune), int(chains), method, calibrate_kwargs or {})
    return _sbc_engine(
        sims[0][0], fit, int(n_sims), simulate=None, simulations=sims, var_names=var_names,
        log_likelihood=_TwinLogLik(twin, data_template), derived=derived, max_rank=max_rank,
        thin=thin, prob=prob, band_method="optimized", n_points=100, rng=gen, executor=executor,
    )
