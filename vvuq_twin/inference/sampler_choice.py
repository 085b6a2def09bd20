"""Choosing NUTS or SMC for a black-box simulator with a Jacobian, by a measured cost estimate.

Cost model of a black box (a Python callable wrapped as a pytensor ``Op``)
---------------------------------------------------------------------------
Every log-density evaluation calls the Python simulator once; every gradient evaluation calls
it and its Jacobian once more (``d eta / d theta``, shape ``(n, n_params)``; a finite-difference
Jacobian costs ``n_params`` extra simulator runs). So, per chain or run,

* NUTS (PyMC's ``pm.sample``, pytensor C backend, which calls the Op's Python ``perform``
  directly) costs about ``(tune + draws) * L`` gradient evaluations, ``L`` the leapfrog steps
  per iteration (``2**depth - 1``; planning value :data:`NUTS_GRADS_PER_ITERATION` = 7, tree
  depth 3, typical of a well-scaled posterior of a few parameters);
* SMC (``pm.sample_smc``) costs ``draws * sum(stage MCMC steps)`` log-density evaluations
  without gradients (planning value :data:`SMC_LOGPS_PER_PARTICLE` = 30, e.g. 6 stages of 5
  steps; the measured value is in ``info["smc"]["mcmc_steps_per_run"]`` after sampling).

nutpie is not used for a Python black box: it compiles the model with numba, which cannot
compile a Python ``Op`` and runs it in numba's object mode (slower than the C backend, and it
warns ``Numba will use object mode``). :func:`choose_sampler_by_cost` times a few evaluations of
the compiled log density and of its gradient at the initial point, multiplies by the counts
above and picks the cheaper sampler; the measured times, both estimates and the reason go to
``TwinResult.info["sampler_choice"]`` and to the ``vvuq_twin.calibrate`` logger. The estimates
are planning figures (the real number of leapfrog steps and SMC stages is known only after
sampling). With ``tune == draws`` the rule picks NUTS when a gradient costs less than about
twice a log density (an analytic or adjoint Jacobian), and SMC when the Jacobian is dear
(finite differences cost ``n_params`` extra runs); the measured ratio is what decides.

The absolute estimates are lower bounds: a short timed burst runs at full speed, a long run
shares the cores and SMC adds per-particle Python overhead (prior and likelihood evaluated
separately, proposal densities). On the boarding-school example on 2 cores shared with other
jobs (load average about 12), SMC was estimated at 35 s and sampled in 193 s with 25.5
likelihood evaluations per particle (planning value 30). Contention scales both samplers'
costs alike, so the choice between them stands; per-stage log lines (logger
``vvuq_twin.smc``) give the real progress.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pymc as pm

__all__ = [
    "NUTS_GRADS_PER_ITERATION", "SMC_LOGPS_PER_PARTICLE", "measure_model_cost",
    "choose_sampler_by_cost", "is_python_op_simulator",
]

#: planning value: gradient evaluations per NUTS iteration (tree depth 3: 2**3 - 1)
NUTS_GRADS_PER_ITERATION = 7
#: planning value: log-density evaluations per SMC particle over all stages
SMC_LOGPS_PER_PARTICLE = 30


def is_python_op_simulator(simulator: Any) -> bool:
    """Whether ``simulator`` runs Python code inside a pytensor Op (a BlackBoxSimulator)."""
    from ..twin.simulators import BlackBoxSimulator

    return isinstance(simulator, BlackBoxSimulator)


def measure_model_cost(model: pm.Model, *, n_evals: int = 5, rng: Any = None,
                       gradient: bool = True) -> dict[str, float]:
    """Time ``n_evals`` evaluations of the model's log density and (``gradient``) its gradient.

    Both are compiled with pytensor's default (C) backend, which calls a Python ``Op`` directly.
    The first call of each is a warm-up and is not timed.

    Returns
    -------
    dict
        ``logp_s`` and ``grad_s`` (median seconds per evaluation; no ``grad_s`` without
        ``gradient``), ``compile_s`` (seconds to compile), ``n_evals``.
    """
    if int(n_evals) < 1:
        raise ValueError(f"`n_evals` must be >= 1, got {n_evals}.")
    tc = time.perf_counter()
    funcs = [("logp_s", model.compile_logp())]
    if gradient:
        funcs.append(("grad_s", model.compile_dlogp()))
    compile_s = time.perf_counter() - tc
    point = model.initial_point(random_seed=None if rng is None else int(rng) % (2**31))
    out: dict[str, float] = {"compile_s": float(compile_s), "n_evals": int(n_evals)}
    for key, f in funcs:
        f(point)
        ts = []
        for _ in range(int(n_evals)):
            t0 = time.perf_counter()
            f(point)
            ts.append(time.perf_counter() - t0)
        out[key] = float(np.median(ts))
    return out


def choose_sampler_by_cost(
    model: pm.Model, *, draws: int, tune: int, chains: int, cores: int, rng: Any = None,
    n_evals: int = 5,
) -> tuple[str, dict[str, Any]]:
    """Pick ``"pymc"`` (NUTS, C backend) or ``"smc"`` by the cost model of this module.

    Returns
    -------
    (str, dict)
        The sampler and a record: measured times, the two estimates (seconds of sampling),
        the planning constants and a one-line reason.
    """
    m = measure_model_cost(model, n_evals=n_evals, rng=rng)
    par = max(1, min(int(cores), int(chains)))
    nuts_s = chains * (tune + draws) * NUTS_GRADS_PER_ITERATION * m["grad_s"] / par
    smc_s = chains * draws * SMC_LOGPS_PER_PARTICLE * m["logp_s"] / par
    chosen = "pymc" if nuts_s < smc_s else "smc"
    name = {"pymc": "NUTS (PyMC, pytensor C backend)", "smc": "SMC"}[chosen]
    reason = (
        f"black-box simulator with a Jacobian: measured {m['logp_s'] * 1e3:.3g} ms per log "
        f"density and {m['grad_s'] * 1e3:.3g} ms per gradient ({m['n_evals']} timed "
        f"evaluations); estimated NUTS {nuts_s:.3g} s ({chains} x ({tune} + {draws}) iterations "
        f"x {NUTS_GRADS_PER_ITERATION} gradients) vs SMC {smc_s:.3g} s ({chains} x {draws} "
        f"particles x {SMC_LOGPS_PER_PARTICLE} log densities), {par} in parallel: using {name}"
    )
    return chosen, {
        **m, "estimate_nuts_s": float(nuts_s), "estimate_smc_s": float(smc_s),
        "nuts_grads_per_iteration": NUTS_GRADS_PER_ITERATION,
        "smc_logps_per_particle": SMC_LOGPS_PER_PARTICLE, "chosen": chosen, "reason": reason,
    }
