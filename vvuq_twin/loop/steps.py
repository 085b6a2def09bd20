"""The typed steps of the VVUQ loop: small role objects, one per capability.

Each step declares the steps whose outputs it *needs* (their gates apply: a failed one stops
this step, or marks it provisional) and those it merely *uses* (e.g. a decision shows which
parameters its quantity depends on, from the sensitivity step). ``run`` returns a
:class:`~vvuq_twin.loop.status.StepResult` and the step's output object; ``save``/``load``
persist that object so that a loop killed mid-way resumes from the last completed step with
identical results.
"""

from __future__ import annotations

import abc
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .status import Status, StepResult

__all__ = ["QoI", "DataSplit", "LoopContext", "Step", "Verify", "SBC", "Calibrate", "Validate",
           "Sensitivity", "Decide", "Steer", "Assimilate", "Operate", "threshold_decision",
           "LoopSpecError"]


from ..exceptions import LoopSpecError


def _code_id(fn: Any) -> str:
    """Identity of a user callable for resume fingerprints: the declaration's own
    :func:`~vvuq_twin.twin.simulators.source_hash` (source and the values it closes over)."""
    from ..twin.simulators import source_hash

    return "none" if fn is None else source_hash(fn)


@dataclass(frozen=True)
class QoI:
    """A quantity of interest computed from a calibrated twin.

    Parameters
    ----------
    name : str
        Name used in tables and the ledger.
    fn : callable
        ``fn(result, rng) -> array`` of shape ``(chain, draw)`` (or ``(n_draws,)``): one value of
        the quantity per posterior draw of ``result`` (a :class:`~vvuq_twin.TwinResult`).
    description : str
        What the quantity is, for the report.
    """

    name: str
    fn: Callable[[Any, int], Any]
    description: str = ""

    def draws(self, result: Any, seed: int) -> np.ndarray:
        """The quantity's draws, flattened to shape ``(n_draws,)`` and checked finite."""
        v = np.asarray(_values(self.fn(result, seed)), dtype=float).ravel()
        if v.size < 2:
            raise LoopSpecError(f"QoI {self.name!r} returned {v.size} value(s); it must return one "
                                "value per posterior draw, shape (chain, draw).")
        if not np.all(np.isfinite(v)):
            raise LoopSpecError(f"QoI {self.name!r} returned {int((~np.isfinite(v)).sum())} non-finite "
                                "values: fix the quantity (or the twin's predictive) first.")
        return v


def _values(x: Any) -> Any:
    return x.values if hasattr(x, "values") and not isinstance(x, np.ndarray) else x


@dataclass
class DataSplit:
    """The data of one loop: calibration, hold-out for validation, and a stream to assimilate.

    Parameters
    ----------
    calibration : TwinData
    holdout : TwinData, optional
        Judged by :class:`Validate` (and re-judged after assimilation).
    stream : sequence of TwinData
        Batches assimilated in order by :class:`Assimilate`.
    """

    calibration: Any
    holdout: Any = None
    stream: Sequence[Any] = ()

    def hashes(self) -> dict[str, Any]:
        """Data hashes of each part (for fingerprints and the summary)."""
        return {"calibration": self.calibration.hash,
                "holdout": None if self.holdout is None else self.holdout.hash,
                "stream": [b.hash for b in self.stream]}


@dataclass
class LoopContext:
    """What steps see: the declaration, the data, earlier results and outputs, the seed."""

    twin: Any
    split: DataSplit
    seed: int
    on_fail: str = "stop"
    results: dict[str, StepResult] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None

    def step_seed(self, name: str) -> int:
        """A seed for step ``name``, independent of which steps ran before (so resume is exact)."""
        ss = np.random.SeedSequence([int(self.seed), zlib.crc32(name.encode())])
        return int(ss.generate_state(1)[0])

    def output(self, name: str) -> Any:
        """The output object of an earlier step."""
        if name not in self.objects:
            raise LoopSpecError(f"No output of step {name!r} is available (did it run?).")
        return self.objects[name]

    def qoi_draws(self, qoi: QoI, source: str) -> np.ndarray:
        """Draws of ``qoi`` under the output of step ``source`` (computed once, seeded)."""
        key = f"qoi:{qoi.name}:{source}"
        if key not in self.objects:
            self.objects[key] = qoi.draws(self.output(source), self.step_seed(key))
        return self.objects[key]

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)


class Step(abc.ABC):
    """Base of the loop's steps.

    Subclasses set ``kind`` and implement :meth:`run`; ``needs`` are gated inputs, ``uses``
    ungated ones.
    """

    kind: str = "record"

    def __init__(self, name: str, *, needs: Sequence[str] = (), uses: Sequence[str] = ()) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise LoopSpecError(f"A step name must be an identifier, got {name!r}.")
        self.name = name
        self.needs = tuple(needs)
        self.uses = tuple(uses)

    def config(self) -> dict[str, Any]:
        """JSON-ready configuration (part of the resume fingerprint)."""
        return {}

    @abc.abstractmethod
    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        """Run the step: its typed result and its output object."""

    def compile_jobs(self, ctx: LoopContext) -> list[tuple[Any, Any, dict[str, Any]]]:
        """The calibrations this step will run, as ``(twin, data, calibrate_kwargs)`` jobs.

        The loop compiles the jobs of every step still to run at once, in parallel (see
        :func:`vvuq_twin.inference.precompile`) before the first of them runs; a step whose
        calibrations are not listed is compiled when it runs, as usual. Default: none.
        """
        return []

    def save(self, obj: Any, directory: Path, ctx: LoopContext) -> None:
        """Persist the output object (default: nothing to persist)."""

    def load(self, directory: Path, ctx: LoopContext, result: StepResult) -> Any:
        """Restore the output object saved by :meth:`save`."""
        return None

    def _result(self, status: Status, reason: str, values: Mapping[str, Any]) -> StepResult:
        return StepResult(self.name, self.kind, status, reason, dict(values))


# --------------------------------------------------------------------------- verification
class Verify(Step):
    """Verify the discretisation the calibration actually uses.

    Parameters
    ----------
    solver : callable, optional
        ``solver(h) -> array``: the twin's simulator output at the calibration inputs computed
        with discretisation parameter ``h`` (step size). Default: the simulator's own
        ``verification_solver()`` when it has one (a discretised simulator); a simulator
        evaluated in closed form is NOT APPLICABLE.
    reference : callable or None
        ``reference() -> array``: the exact solution (manufactured or closed form). Without it
        the finest level is the reference (order from three or more levels).
    h : sequence of float, optional
        Refinement levels, coarse to fine. Default: ``(0.1, 0.05, 0.025, 0.0125)`` for a given
        ``solver``; for the simulator's own solver, the time span of the calibration inputs
        divided by 40, 80, 160 and 320 (an ODE's ``max_step``).
    formal_order : float
        Formal order of the scheme; the step passes when the observed order is within ``tol``.
    """

    kind = "verification"

    def __init__(self, name: str = "verify", *, solver: Callable[[float], Any] | None = None,
                 reference: Callable[[], Any] | None = None,
                 h: Sequence[float] | None = None, formal_order: float | None = None,
                 tol: float = 0.3, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.solver, self.reference = solver, reference
        self.h = None if h is None else tuple(float(v) for v in h)
        self.formal_order, self.tol = formal_order, float(tol)

    def config(self) -> dict[str, Any]:
        return {"solver": _code_id(self.solver), "reference": _code_id(self.reference),
                "h": None if self.h is None else list(self.h), "formal_order": self.formal_order,
                "tol": self.tol}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from ..verification import observed_order

        sim = ctx.twin.simulator
        solver, formal = self.solver, self.formal_order
        levels = self.h if self.h is not None else (0.1, 0.05, 0.025, 0.0125)
        if solver is None and hasattr(sim, "verification_solver"):
            # the discretisation the calibration runs: this simulator object, refined
            solver, formal_sim = sim.verification_solver(ctx.twin, ctx.split.calibration)
            formal = formal if formal is not None else formal_sim
            if self.h is None:
                x = np.asarray(ctx.split.calibration.x, float)[:, getattr(sim, "time_column", 0)]
                span = float(x.max() - min(float(getattr(sim, "t0", 0.0)), float(x.min())))
                levels = tuple(span / n for n in (40, 80, 160, 320))
        if solver is None:
            return self._result(
                Status.NOT_APPLICABLE,
                f"The simulator ({type(sim).__name__}) is evaluated in closed form: there is no "
                "discretisation to verify. Pass Verify(solver=...) for a solver the twin runs.",
                {"simulator": type(sim).__name__}), None
        outs = [np.asarray(solver(h), float).ravel() for h in levels]
        eff = getattr(solver, "effective_h", None)
        if eff is not None:  # the step sizes the solver really took
            levels = tuple(eff(h) for h in levels)
        if self.reference is not None:
            ref = np.asarray(self.reference(), float).ravel()
            errs = [float(np.max(np.abs(o - ref))) for o in outs]
            hs = list(levels)
        else:
            if len(outs) < 3:
                raise LoopSpecError("Verify without a reference needs at least 3 refinement levels.")
            errs = [float(np.max(np.abs(o - outs[-1]))) for o in outs[:-1]]
            hs = list(levels[:-1])
        res = observed_order(hs, errs, theoretical_order=formal, tol=self.tol)
        p = float(res.order)
        vals = {"h": hs, "errors": errs, "observed_order": p, "formal_order": formal,
                "tol": self.tol}
        if formal is None:
            return self._result(Status.RECORD, f"Observed order {p:.3g} (no formal order given).", vals), res
        ok = abs(p - formal) <= self.tol
        return self._result(
            Status.PASS if ok else Status.FAIL,
            f"Observed order {p:.3g} vs formal {formal:g} (tolerance {self.tol:g}).", vals), res


class SBC(Step):
    """Simulation-based calibration of the inference on the calibration design.

    Runs :func:`vvuq_twin.verification.sbc_twin` with the calibration data as the template (the
    real inputs, units and missing pattern), so the check is of the inference the loop runs.

    Every replication's own sampler diagnostics (R-hat, ESS, divergences, E-BFMI against the
    thresholds in ``calibrate_kwargs`` or the defaults) are counted and reported
    (``n_unconverged``, ``unconverged``). Ranks from unconverged replications test the SBC's
    sampler budget rather than the inference: with ``max_unconverged`` set (a fraction of
    ``n_sims``), the step FAILs when more replications than that failed their diagnostics,
    whatever the ranks say. ``None`` (default) reports the count without gating on it.

    Where in the prior the unconverged replications lie is reported too (``unconverged_where``:
    per ranked quantity, the AUC of its prior values, unconverged against converged; the reason
    names the parameter furthest from 0.5), so that a FAIL points at the region of the prior
    (e.g. small observation noise) where the inference does not converge.
    """

    kind = "verification"

    def __init__(self, name: str = "sbc", *, n_sims: int = 20, draws: int = 300, tune: int = 300,
                 chains: int = 2, prob: float | None = None, var_names: Sequence[str] | None = None,
                 calibrate_kwargs: Mapping[str, Any] | None = None, max_unconverged: float | None = None,
                 **kw: Any) -> None:
        super().__init__(name, **kw)
        if max_unconverged is not None and not 0.0 <= float(max_unconverged) <= 1.0:
            raise LoopSpecError(f"max_unconverged must be a fraction in [0, 1] or None, got {max_unconverged!r}.")
        self.n_sims, self.draws, self.tune, self.chains = int(n_sims), int(draws), int(tune), int(chains)
        self.prob, self.var_names = prob, None if var_names is None else list(var_names)
        self.calibrate_kwargs = dict(calibrate_kwargs or {})
        self.max_unconverged = None if max_unconverged is None else float(max_unconverged)

    def config(self) -> dict[str, Any]:
        return {"n_sims": self.n_sims, "draws": self.draws, "tune": self.tune, "chains": self.chains,
                "prob": self.prob, "var_names": self.var_names, "calibrate_kwargs": repr(self.calibrate_kwargs),
                "max_unconverged": self.max_unconverged}

    def compile_jobs(self, ctx: LoopContext) -> list[tuple[Any, Any, dict[str, Any]]]:
        return [(ctx.twin, ctx.split.calibration, dict(self.calibrate_kwargs))]

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from ..verification import sbc_twin

        kw: dict[str, Any] = {}
        if self.var_names is not None:
            kw["var_names"] = self.var_names
        prob = self.prob
        res = sbc_twin(ctx.twin, ctx.split.calibration, self.n_sims, draws=self.draws, tune=self.tune,
                       chains=self.chains, rng=ctx.step_seed(self.name),
                       calibrate_kwargs={k: v for k, v in self.calibrate_kwargs.items() if k != "warn"},
                       **({"prob": prob} if prob is not None else {}), **kw)
        fq = getattr(res, "failed_quantities", [])
        failed = list(fq() if callable(fq) else fq)  # a property of SBCResult
        bad = list(getattr(res, "unconverged", []))
        n_diag = int(getattr(res, "n_diagnosed", 0))
        rk = getattr(res, "ranks", None)
        worst: dict[str, Any] = {}
        if rk is not None and n_diag:
            for key, fn in (("rhat", np.nanmax), ("ess_bulk", np.nanmin), ("divergences", np.nansum)):
                col = f"diag_{key}"
                if col in rk and np.any(np.isfinite(rk[col].values)):
                    worst[key] = float(fn(rk[col].values))
        where = _unconverged_where(rk) if rk is not None and bad else {}
        vals = {"n_sims": self.n_sims, "passed": bool(res.passed), "failed_quantities": list(failed),
                "quantities": [str(q) for q in res.report["quantity"].values] if "quantity" in res.report.coords else [],
                "n_diagnosed": n_diag, "n_unconverged": len(bad), "unconverged": bad,
                "max_unconverged": self.max_unconverged, "diagnostics_worst": worst,
                "unconverged_where": where}
        too_many = (self.max_unconverged is not None and n_diag > 0
                    and len(bad) > self.max_unconverged * self.n_sims)
        if self.max_unconverged is not None and n_diag == 0:
            too_many = True  # a gate on convergence that saw no diagnostics cannot pass
        st = Status.PASS if res.passed and not too_many else Status.FAIL
        why = ("Ranks of every quantity are uniform within their bands on the calibration design."
               if res.passed else f"Ranks non-uniform for {failed}: the inference is biased on this design.")
        if n_diag:
            conv = (f" Sampler diagnostics failed in {len(bad)} of {n_diag} replications"
                    + (f" (worst R-hat {worst.get('rhat', float('nan')):.3g}, smallest bulk ESS "
                       f"{worst.get('ess_bulk', float('nan')):.0f}, {worst.get('divergences', 0):.0f} divergences)"
                       if bad else "") + ".")
            why += conv
        params = [k for k in where if k != "log_lik"]  # a parameter of the prior, not the likelihood
        if params:
            q = max(params, key=lambda k: abs(where[k] - 0.5))
            why += (f" The unconverged replications lie at {'low' if where[q] < 0.5 else 'high'} prior values of "
                    f"{q} (AUC {where[q]:.2f}: the chance that an unconverged replication's value exceeds a "
                    "converged one's; 0.5 = no association).")
        if too_many:
            why += (" More replications than allowed (max_unconverged="
                    f"{self.max_unconverged:g} of {self.n_sims}) did not converge: their ranks test the SBC's "
                    "sampler budget, not the inference. Give each replication the draws, tuning and sampler "
                    "settings of the calibration; where it already has them, the inference itself does not "
                    "converge in that part of the prior (see the prior values of the replications listed in "
                    "'unconverged', sbc.nc): reparametrise (centred / non-centred per-unit parameters) or "
                    "revise the prior there.")
        return self._result(st, why, vals), res

    def save(self, obj: Any, directory: Path, ctx: LoopContext) -> None:
        """Ranks, prior values, per-replication diagnostics and the band report (``sbc.nc``)."""
        if obj is not None and hasattr(obj, "to_dataset"):
            obj.to_dataset().to_netcdf(directory / "sbc.nc")

    def load(self, directory: Path, ctx: LoopContext, result: StepResult) -> Any:
        """The saved ``sbc.nc`` as an ``xarray.Dataset`` (None when absent)."""
        import xarray as xr

        path = directory / "sbc.nc"
        if not path.exists():
            return None
        with xr.open_dataset(path) as ds:
            return ds.load()


def _unconverged_where(ranks: Any) -> dict[str, float]:
    """Where in the prior the unconverged SBC replications lie: per ranked quantity, the AUC of
    its prior values, unconverged against converged replications (Mann-Whitney U / (n_u n_c) =
    P(X_u > X_c) + P(X_u = X_c) / 2); 0.5 means no association, near 0 or 1 a region of the prior
    where the inference does not converge. Empty when either group is empty or nothing was
    diagnosed."""
    from scipy.stats import mannwhitneyu

    if "prior_value" not in ranks or "diag_passed" not in ranks:
        return {}
    ok = np.asarray(ranks["diag_passed"].values, float)
    known = np.isfinite(ok)
    bad_m, good_m = known & (ok == 0), known & (ok == 1)
    if not bad_m.any() or not good_m.any():
        return {}
    pv = ranks["prior_value"]
    out: dict[str, float] = {}
    for q in pv["quantity"].values:
        x = np.asarray(pv.sel(quantity=q).values, float)
        xu, xc = x[bad_m & np.isfinite(x)], x[good_m & np.isfinite(x)]
        if xu.size and xc.size:
            out[str(q)] = float(mannwhitneyu(xu, xc).statistic) / (xu.size * xc.size)
    return out


# --------------------------------------------------------------------------- calibration
_ADVICE = {
    "rhat": "run more tuning and draws (or more chains); if R-hat stays high, reparametrise (non-centred per-unit parameters) or tighten weakly identified priors",
    "ess": "draw more (ESS grows with draws) or reparametrise to reduce autocorrelation",
    "divergence": "raise target_accept (e.g. 0.95-0.99) and reparametrise (non-centred hierarchy, bounded scales)",
    "bfmi": "reparametrise: low E-BFMI means the momentum resampling cannot explore the energy levels (heavy tails, funnels)",
}


def diagnostics_advice(failures: Sequence[str]) -> list[str]:
    """What to do about each failed sampler diagnostic."""
    out = []
    for f in failures:
        low = f.lower()
        for key, adv in _ADVICE.items():
            if key in low and adv not in out:
                out.append(adv)
    return out


class Calibrate(Step):
    """Calibrate the twin on the calibration data; the gate is the sampler diagnostics.

    Keyword arguments are passed to :func:`vvuq_twin.calibrate` (``draws``, ``tune``,
    ``chains``, ``target_accept``, ``method``, ``thresholds``...). The step FAILs when any
    diagnostic (R-hat, bulk/tail ESS, divergences, E-BFMI) fails its threshold.
    """

    kind = "calibration"

    def __init__(self, name: str = "calibrate", **calibrate_kwargs: Any) -> None:
        needs = calibrate_kwargs.pop("needs", ())
        uses = calibrate_kwargs.pop("uses", ())
        super().__init__(name, needs=needs, uses=uses)
        self.kwargs = calibrate_kwargs

    def config(self) -> dict[str, Any]:
        return {k: repr(v) for k, v in sorted(self.kwargs.items())}

    def compile_jobs(self, ctx: LoopContext) -> list[tuple[Any, Any, dict[str, Any]]]:
        return [(ctx.twin, ctx.split.calibration, dict(self.kwargs))]

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from ..inference import calibrate

        kw = {"warn": False, **self.kwargs}
        res = calibrate(ctx.twin, ctx.split.calibration, rng=ctx.step_seed(self.name), **kw)
        d = res.diagnostics
        failures = list(d.failures) if d is not None else ["no diagnostics computed"]
        passed = d is not None and d.passed
        vals = {"sampler": res.info.get("sampler"), "draws": res.info.get("draws"),
                "chains": res.info.get("chains"),
                "checks": {k: {"value": v["value"], "threshold": v["threshold"], "passed": v["passed"]}
                           for k, v in (d.checks.items() if d is not None else [])},
                "failures": failures if not passed else [],
                "advice": diagnostics_advice(failures) if not passed else []}
        if passed:
            return self._result(Status.PASS, "All sampler diagnostics pass their thresholds.", vals), res
        return self._result(Status.FAIL, "Sampler diagnostics failed: " + "; ".join(failures) + ".", vals), res

    def save(self, obj: Any, directory: Path, ctx: LoopContext) -> None:
        obj.to_netcdf(directory / "calibration.nc")

    def load(self, directory: Path, ctx: LoopContext, result: StepResult) -> Any:
        from ..inference import load_result

        return load_result(directory / "calibration.nc", twin=ctx.twin, data=ctx.split.calibration)


# --------------------------------------------------------------------------- validation
class Validate(Step):
    """Judge the hold-out under the twin's predictive (coverage, median bias, PIT uniformity).

    The figures also carry the mean CRPS of the hold-out (``values["crps"]``, fair estimator
    of :func:`vvuq_twin.validation.crps`), to compare predictives on the same points.

    PASS requires coverage and bias inside bands that a miscalibrated twin would leave (see
    :mod:`vvuq_twin.validation.judge`); a hold-out too small for informative bands is NOT
    INFORMATIVE, never PASS.

    Parameters
    ----------
    source : str
        The step whose twin is judged (``"calibrate"``, or an assimilation step).
    data : "holdout" or TwinData
        What to judge against.
    level, alpha, deficit, shift, band :
        See :func:`vvuq_twin.validation.judge_predictive`.
    """

    kind = "validation"

    def __init__(self, name: str = "validate", *, source: str = "calibrate", data: Any = "holdout",
                 level: float = 0.9, alpha: float = 0.05, deficit: float = 0.2, shift: float = 0.25,
                 band: str = "auto", **kw: Any) -> None:
        kw.setdefault("needs", (source,))
        super().__init__(name, **kw)
        self.source, self.data = source, data
        self.level, self.alpha, self.deficit, self.shift, self.band = level, alpha, deficit, shift, band

    def config(self) -> dict[str, Any]:
        d = self.data if isinstance(self.data, str) else self.data.hash
        return {"source": self.source, "data": d, "level": self.level, "alpha": self.alpha,
                "deficit": self.deficit, "shift": self.shift, "band": self.band}

    def _data(self, ctx: LoopContext) -> Any:
        if isinstance(self.data, str):
            if self.data != "holdout":
                raise LoopSpecError(f"Validate(data=...) must be 'holdout' or a TwinData, got {self.data!r}.")
            if ctx.split.holdout is None:
                raise LoopSpecError(f"Step {self.name!r} validates on the hold-out, but the DataSplit has none.")
            return ctx.split.holdout
        return self.data

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from ..inference import predict
        from ..validation.judge import judge_predictive

        data = self._data(ctx)
        res = ctx.output(self.source)
        mask = np.asarray(data.observed_mask) if hasattr(data, "observed_mask") else np.isfinite(data.y)
        unit = None if data.unit is None else [str(u) for u in np.asarray(data.unit)]
        seed = ctx.step_seed(self.name)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = predict(res, data.x, unit=unit, rng=seed)
        # what predict warned about is kept with the step (and shown again), never swallowed
        notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        y_draws = pred["y"].stack(s=("chain", "draw")).transpose("s", ...).values
        y_draws = y_draws.reshape(y_draws.shape[0], -1)[:, mask]
        y_obs = np.asarray(data.y, float)[mask]
        j = judge_predictive(y_obs, y_draws, level=self.level, alpha=self.alpha, deficit=self.deficit,
                             shift=self.shift, band=self.band, rng=seed)
        lo, hi = np.quantile(y_draws, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
        n_out = int(np.asarray(pred["out_of_domain"]).sum()) if "out_of_domain" in pred else 0
        from ..validation import crps

        vals = {**j.to_dict(), "n_points": int(y_obs.size), "level": self.level,
                "n_out_of_domain": n_out, "crps": float(np.mean(crps(y_draws, y_obs))),
                "points": {"y": y_obs.tolist(), "lower": lo.tolist(), "upper": hi.tolist(),
                           "median": np.median(y_draws, axis=0).tolist(), "pit": j.pit.tolist()}}
        st = {"PASS": Status.PASS, "FAIL": Status.FAIL}.get(j.status, Status.NOT_INFORMATIVE)
        parts = [j.coverage.note, j.bias.note, f"PIT uniformity (KS) {j.uniformity['status']}"]
        if n_out:
            parts.append(f"{n_out} of {y_obs.size} hold-out points lie outside the calibration domain (extrapolation)")
        if notes:
            vals["predict_warnings"] = notes
            parts.append(f"The predictive warned {len(notes)} time(s): see predict_warnings")
        reason = " ".join(p if p.endswith(".") else p + "." for p in parts)
        if st is Status.FAIL:
            vals["failures"] = [c.note for c in (j.coverage, j.bias) if c.status == "FAIL"] + (
                ["PIT values are not uniform (KS)"] if j.uniformity["status"] == "FAIL" else [])
            vals["advice"] = ["revise the discrepancy or observation model (bias, missing variance) "
                              "and recalibrate; do not decide from this twin"]
        return self._result(st, reason, vals), j


# --------------------------------------------------------------------------- sensitivity
class Sensitivity(Step):
    """Given-data sensitivity of a QoI to the posterior parameters.

    Uses SALib's moment-independent delta measure and first-order index estimated from the
    posterior draws themselves (Plischke, Borgonovo & Smith 2013), which needs no independence
    of the inputs: posterior parameters are correlated. The ranking is consumed by
    :class:`Decide` and :class:`Steer` (shown with their figures).

    Parameters
    ----------
    qoi : QoI
    source : str
        The step whose posterior is used.
    var_names : sequence of str, optional
        Scalar posterior variables to rank (default: the twin's global parameters and, for
        per-unit parameters, their population mean and scale, plus noise/discrepancy
        hyperparameters present in the posterior).
    max_draws : int, optional
        Estimate the indices from this many posterior draws, a random subset fixed by the step's
        seed (default: all draws). SALib's estimator costs about linearly in the draws; fewer
        draws widen ``delta_conf`` (reported) but leave the estimator unbiased.
    """

    kind = "sensitivity"

    def __init__(self, name: str = "sensitivity", *, qoi: QoI, source: str = "calibrate",
                 var_names: Sequence[str] | None = None, num_resamples: int = 50,
                 max_draws: int | None = None, **kw: Any) -> None:
        kw.setdefault("needs", (source,))
        super().__init__(name, **kw)
        self.qoi, self.source = qoi, source
        self.var_names = None if var_names is None else list(var_names)
        self.num_resamples = int(num_resamples)
        if max_draws is not None and int(max_draws) < 100:
            raise LoopSpecError(f"Step {name!r}: max_draws must be at least 100 (or None for all draws), "
                                f"got {max_draws!r}.")
        self.max_draws = None if max_draws is None else int(max_draws)

    def config(self) -> dict[str, Any]:
        cfg = {"qoi": self.qoi.name, "fn": _code_id(self.qoi.fn), "source": self.source,
               "var_names": self.var_names, "num_resamples": self.num_resamples}
        if self.max_draws is not None:  # absent by default: the fingerprints of existing loops stay
            cfg["max_draws"] = self.max_draws
        return cfg

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from SALib.analyze import delta

        res = ctx.output(self.source)
        post = res.posterior
        names = self.var_names or [v for v in post.data_vars
                                   if post[v].ndim == 2 and not v.endswith("_")]
        if not names:
            raise LoopSpecError(f"Step {self.name!r}: no scalar posterior variables to rank.")
        X = np.column_stack([post[v].values.ravel() for v in names])
        q = ctx.qoi_draws(self.qoi, self.source)
        if q.size != X.shape[0]:
            raise LoopSpecError(f"QoI {self.qoi.name!r} has {q.size} draws but the posterior has {X.shape[0]}.")
        if self.max_draws is not None and X.shape[0] > self.max_draws:
            sub = np.sort(np.random.default_rng(ctx.step_seed(self.name)).choice(X.shape[0], self.max_draws,
                                                                                  replace=False))
            X, q = X[sub], q[sub]
        keep = np.ptp(X, axis=0) > 0
        problem = {"num_vars": int(keep.sum()), "names": [n for n, k in zip(names, keep) if k],
                   "bounds": [[float(a), float(b)] for a, b in zip(X[:, keep].min(0), X[:, keep].max(0))]}
        import warnings

        from ..inference._threads import small_matrix_threads

        # one BLAS thread: SALib's 1-D kernel density estimates are small dense operations
        # whose second OpenBLAS thread only spins (airframe, under load: 6x wall, 9x CPU)
        with warnings.catch_warnings(record=True) as notes, small_matrix_threads(0):
            warnings.simplefilter("always")
            # "raw": Plischke et al.'s estimator on the draws as they are (the posterior)
            out = delta.analyze(problem, X[:, keep], q, num_resamples=self.num_resamples, method="all",
                                seed=ctx.step_seed(self.name) % (2**31), print_to_console=False)
        rows = []
        for i, n in enumerate(problem["names"]):
            rows.append({"parameter": n, "delta": float(out["delta_raw"][i]),
                         "delta_conf": float(out["delta_raw_conf"][i]), "S1": float(out["S1"][i]),
                         "S1_conf": float(out["S1_conf"][i])})
        rows.sort(key=lambda r: -r["delta"])
        vals = {"qoi": self.qoi.name, "method": "SALib delta (raw, given data: posterior draws)",
                **({} if self.max_draws is None else {"n_draws": int(X.shape[0])}),
                "ranking": rows, "top": [r["parameter"] for r in rows[:3]],
                "notes": sorted({str(w.message) for w in notes})}
        return self._result(Status.RECORD, f"{self.qoi.name} depends most on {', '.join(vals['top'])}.", vals), rows


# --------------------------------------------------------------------------- decision
def threshold_decision(threshold: float, epsilon: float, *, alpha_cvar: float = 0.9,
                       upper: bool = True) -> Callable[[np.ndarray, int], dict[str, Any]]:
    """A chance-constrained decision: accept when ``P(QoI > threshold) <= epsilon``.

    Returns a function for :class:`Decide` that reports the exceedance probability with its
    Monte Carlo standard error, the superquantile (CVaR) at ``alpha_cvar``
    (:func:`vvuq_twin.risk.superquantile`) and the decision (``"accept"`` / ``"refuse"``).
    With ``upper=False`` the event is ``QoI < threshold``.
    """
    if not 0.0 < float(epsilon) < 1.0:
        raise LoopSpecError(f"threshold_decision: epsilon must lie in (0, 1), got {epsilon}.")

    def decide(q: np.ndarray, seed: int) -> dict[str, Any]:
        from ..risk import superquantile

        ev = q > threshold if upper else q < threshold
        p = float(ev.mean())
        se = float(np.sqrt(max(p * (1 - p), 1.0 / q.size) / q.size))
        sq = superquantile(q if upper else -q, alpha=alpha_cvar)
        cvar = float(sq.estimate)
        return {"threshold": float(threshold), "epsilon": float(epsilon), "p_exceed": p, "p_exceed_se": se,
                "superquantile": cvar if upper else -cvar, "superquantile_se": float(sq.se),
                "alpha_cvar": float(alpha_cvar),
                "decision": "accept" if p <= epsilon else "refuse"}

    decide.__qualname__ = f"threshold_decision({threshold!r}, {epsilon!r}, alpha_cvar={alpha_cvar!r}, upper={upper!r})"
    return decide


class Decide(Step):
    """Decide under risk from the QoI's draws.

    Parameters
    ----------
    qoi : QoI
    decide : callable
        ``decide(qoi_draws, seed) -> dict`` of figures and the decision (e.g.
        :func:`threshold_decision`).
    source : str
        The step whose posterior the decision uses.
    needs : sequence of str
        Gated inputs (default: the source and ``"validate"``: a decision is never taken from a
        twin that failed validation without saying so).
    uses : sequence of str
        Ungated inputs; a sensitivity step named here puts the QoI's main drivers in the table.
    """

    kind = "decision"

    def __init__(self, name: str = "decide", *, qoi: QoI, decide: Callable[[np.ndarray, int], Mapping[str, Any]],
                 source: str = "calibrate", needs: Sequence[str] | None = None,
                 uses: Sequence[str] = ("sensitivity",)) -> None:
        super().__init__(name, needs=(source, "validate") if needs is None else needs, uses=uses)
        self.qoi, self.decide, self.source = qoi, decide, source

    def config(self) -> dict[str, Any]:
        return {"qoi": self.qoi.name, "fn": _code_id(self.qoi.fn), "decide": _code_id(self.decide),
                "source": self.source}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        q = ctx.qoi_draws(self.qoi, self.source)
        out = dict(self.decide(q, ctx.step_seed(self.name)))
        vals: dict[str, Any] = {"qoi": self.qoi.name, "qoi_mean": float(q.mean()), "qoi_sd": float(q.std(ddof=1)),
                                "qoi_q05": float(np.quantile(q, 0.05)), "qoi_q95": float(np.quantile(q, 0.95)),
                                **out}
        for u in self.uses:
            if u in ctx.results and ctx.results[u].kind == "sensitivity":
                vals["depends_on"] = list(ctx.results[u].values.get("top", []))
        dec = out.get("decision", "")
        return self._result(Status.RECORD, f"Decision: {dec}." if dec else "Decision figures computed.", vals), out


# --------------------------------------------------------------------------- design
class Steer(Step):
    """Choose the next measurement among candidates (EIG about the parameters or about a QoI).

    Parameters
    ----------
    candidates : TwinData
        Candidate measurements (inputs and units; ``y`` may hold the value that would be
        measured, e.g. held-back data, which :class:`Assimilate` then reads for the chosen one).
    qoi : QoI, optional
        Goal-oriented design about this quantity; default: information about all parameters.
    source : str
    n_draws : int
        Posterior draws used (cost grows as their square).
    """

    kind = "design"

    def __init__(self, name: str = "steer", *, candidates: Any, qoi: QoI | None = None,
                 source: str = "calibrate", n_draws: int = 400, needs: Sequence[str] | None = None,
                 uses: Sequence[str] = ("sensitivity",)) -> None:
        super().__init__(name, needs=(source, "validate") if needs is None else needs, uses=uses)
        self.candidates, self.qoi, self.source, self.n_draws = candidates, qoi, source, int(n_draws)

    def config(self) -> dict[str, Any]:
        return {"candidates": self.candidates.hash, "qoi": None if self.qoi is None else self.qoi.name,
                "fn": _code_id(None if self.qoi is None else self.qoi.fn), "source": self.source,
                "n_draws": self.n_draws}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from ..design import twin_design_utilities

        res = ctx.output(self.source)
        c = self.candidates
        unit = None if c.unit is None else [str(u) for u in np.asarray(c.unit)]
        target: Any = "parameters"
        if self.qoi is not None:
            q = ctx.qoi_draws(self.qoi, self.source)
            n_chain, n_draw = res.posterior.sizes["chain"], res.posterior.sizes["draw"]
            target = q.reshape(n_chain, n_draw)
        u = twin_design_utilities(res, c.x, unit=unit, target=target, n_draws=self.n_draws,
                                  rng=ctx.step_seed(self.name))
        best = int(u.attrs["best"])
        labels = [str(v) for v in (u["label"].values if "label" in u.coords else u["candidate"].values)]
        vals = {"target": "parameters" if self.qoi is None else self.qoi.name,
                "utility": u["utility"].values.tolist(), "utility_se": u["utility_se"].values.tolist(),
                "labels": labels, "best": best, "best_label": labels[best],
                "best_observed": bool(np.isfinite(np.asarray(c.y, float)[best]))}
        for nm in self.uses:
            if nm in ctx.results and ctx.results[nm].kind == "sensitivity":
                vals["depends_on"] = list(ctx.results[nm].values.get("top", []))
        return self._result(Status.RECORD, f"Measure next: {labels[best]}.", vals), best


# --------------------------------------------------------------------------- assimilation
def _concat(parts: Sequence[Any]) -> Any:
    """All assimilated data, concatenated exactly as :func:`~vvuq_twin.assimilation.assimilate`
    does (so that the data hash of the updated twin matches on reload)."""
    import functools

    from ..assimilation.twin_adapter import _concat_twin_data

    return functools.reduce(_concat_twin_data, parts)


class Assimilate(Step):
    """Assimilate the stream (and the measurement chosen by a steer step) into the twin.

    Each batch goes through :func:`vvuq_twin.assimilation.assimilate` (quality gate, drift,
    coverage, SMC update); the output is the updated twin as a
    :class:`~vvuq_twin.TwinResult`, which re-validation and later steps consume.

    Parameters
    ----------
    source : str
    steer : str, optional
        A :class:`Steer` step whose chosen candidate (when its ``y`` is known) is assimilated
        first.
    time_input : str, optional
        Input column holding time (checked for order).
    n_draws : int, optional
        Equally weighted draws of the updated twin (default: as many as particles).
    assimilate_kwargs : mapping
        Further arguments of :func:`~vvuq_twin.assimilation.assimilate`.
    """

    kind = "assimilation"

    def __init__(self, name: str = "assimilate", *, source: str = "calibrate", steer: str | None = None,
                 time_input: str | None = None, n_draws: int | None = None,
                 assimilate_kwargs: Mapping[str, Any] | None = None, needs: Sequence[str] | None = None) -> None:
        super().__init__(name, needs=(source,) if needs is None else needs,
                         uses=() if steer is None else (steer,))
        self.source, self.steer, self.time_input, self.n_draws = source, steer, time_input, n_draws
        self.kw = dict(assimilate_kwargs or {})

    def config(self) -> dict[str, Any]:
        return {"source": self.source, "steer": self.steer, "time_input": self.time_input,
                "n_draws": self.n_draws, "kw": repr(sorted(self.kw.items()))}

    def _batches(self, ctx: LoopContext) -> list[tuple[str, Any]]:
        out = []
        if self.steer is not None:
            step = ctx.results[self.steer]
            best = int(step.values["best"])
            cands = None
            # the Steer object holds the candidates; find it through the loop's steps
            for s in getattr(ctx, "_steps", []):
                if s.name == self.steer:
                    cands = s.candidates
            if cands is not None and np.isfinite(np.asarray(cands.y, float)[best]):
                out.append((f"steered:{step.values['best_label']}", cands.subset([best])))
        out += [(f"stream[{i}]", b) for i, b in enumerate(ctx.split.stream)]
        return out

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        from ..assimilation import assimilate

        state: Any = ctx.output(self.source)
        seed = ctx.step_seed(self.name)
        g = np.random.default_rng(seed)
        reports, accepted = [], []
        for label, batch in self._batches(ctx):
            ctx.say(f"assimilating {label} ({len(np.asarray(batch.y))} rows)")
            state = assimilate(state, batch, time_input=self.time_input, rng=int(g.integers(2**31)), **self.kw)
            rep = state.reports[-1] if state.reports else None
            rejected = bool(state.rejected and state.rejected[-1].get("data") is batch)
            reports.append({"batch": label, "rejected": rejected,
                            **({} if rep is None else _report_dict(rep))})
            if not rejected:
                accepted.append(batch)
        if not accepted:
            return self._result(Status.NOT_APPLICABLE, "No batch to assimilate.", {"batches": reports}), ctx.output(self.source)
        result = state.to_result(self.n_draws, rng=int(g.integers(2**31)))
        vals = {"batches": reports, "n_accepted": len(accepted), "n_rejected": len(reports) - len(accepted),
                "accepted_hashes": [b.hash for b in accepted]}
        ledger_fail = [e.name for e in state.ledger.entries[len(ctx.output(self.source).ledger.entries):]
                       if e.passed is False]
        # particles that did not decorrelate (the update's mixing criterion) are not a PASS
        unmixed = [r["batch"] for r in reports if r.get("mixing_ok") is False]
        vals["unmixed_batches"] = unmixed
        st = Status.WARN if (ledger_fail or unmixed) else Status.PASS
        why = (f"Assimilated {len(accepted)} batch(es)" +
               (f"; checks that failed on the way: {sorted(set(ledger_fail))}" if ledger_fail else "") +
               (f"; the rejuvenation moves did not meet the mixing criterion in {unmixed} (particles still "
                "correlated with their start): raise max_mcmc_steps, or refit with calibrate"
                if unmixed else "") +
               ("." if (ledger_fail or unmixed) else "; every gate passed."))
        return self._result(st, why, vals), result

    def save(self, obj: Any, directory: Path, ctx: LoopContext) -> None:
        obj.to_netcdf(directory / "assimilated.nc")

    def load(self, directory: Path, ctx: LoopContext, result: StepResult) -> Any:
        from ..inference import load_result

        batches = dict(self._batches(ctx))
        acc = [b for b in batches.values() if b.hash in set(result.values.get("accepted_hashes", []))]
        src = ctx.output(self.source)
        data = _concat([src.data, *acc])
        path = directory / "assimilated.nc"
        return load_result(path, twin=_assimilated_twin(ctx.twin, path), data=data)


def _assimilated_twin(twin: Any, path: Path) -> Any:
    """The twin an assimilated result was computed with: for a hierarchical twin, the declaration
    with its units listed (as :func:`~vvuq_twin.assimilation.assimilate` fixes them, new units
    included), read from the saved posterior's unit coordinate; ``load_result`` then checks
    its hash against the stored one."""
    if twin.hierarchy is None:
        return twin
    import xarray as xr

    from ..assimilation.twin_adapter import twin_with_units

    with xr.open_dataset(path, group="posterior", engine="h5netcdf") as post:
        if twin.hierarchy.dim not in post.coords:
            return twin
        # an update that only reweighted the particles keeps the loop's twin (no units fixed)
        if post.attrs.get("vvuq_twin_declaration_hash") == twin.hash:
            return twin
        units = [str(u) for u in post[twin.hierarchy.dim].values]
    return twin_with_units(twin, units)


def _report_dict(rep: Any) -> dict[str, Any]:
    from .status import jsonable

    d = rep.to_dict() if hasattr(rep, "to_dict") else (
        {k: getattr(rep, k) for k in getattr(rep, "__dataclass_fields__", {})})
    keep = {}
    for k, v in jsonable(d).items():
        # wall-clock seconds differ between two runs with the same seed: not a comparable figure;
        # lists and mappings (acceptance and kernel per stage, mixing per parameter...) are kept
        if k not in _VOLATILE_REPORT_KEYS and (isinstance(v, (int, float, str, bool, list, dict)) or v is None):
            keep[k] = v
    return keep


#: UpdateReport fields that are timings (kept out of the step's comparable values).
_VOLATILE_REPORT_KEYS = frozenset({"seconds"})


# --------------------------------------------------------------------------- operation
class Operate(Step):
    """A twin operation (replicate into scenarios, exchange a component, fuse, compose).

    ``fn(result, seed) -> dict`` of figures (e.g. a QoI per scenario world from
    :func:`vvuq_twin.operations.replicate`).
    """

    kind = "operation"

    def __init__(self, name: str = "operate", *, fn: Callable[[Any, int], Mapping[str, Any]],
                 source: str = "calibrate", needs: Sequence[str] | None = None) -> None:
        super().__init__(name, needs=(source,) if needs is None else needs)
        self.fn, self.source = fn, source

    def config(self) -> dict[str, Any]:
        return {"fn": _code_id(self.fn), "source": self.source}

    def run(self, ctx: LoopContext) -> tuple[StepResult, Any]:
        out = dict(self.fn(ctx.output(self.source), ctx.step_seed(self.name)))
        return self._result(Status.RECORD, "Operation figures computed.", out), out
