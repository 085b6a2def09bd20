"""Known-answer validation cases for the verification, risk, sensitivity and core modules.

Each function returns a dict of figures; the TOML case files pick one and compare it with a
threshold.
"""

from __future__ import annotations

import numpy as np


def gci_celik_example() -> dict:
    """Celik et al. 2008 Table 1, first column: phi = 6.063, 5.972, 5.863 on 18000/8000/4500 cells."""
    from vvuq_twin.verification import gci

    r = gci([6.063, 5.972, 5.863], n_cells=[18000, 8000, 4500], dim=2)
    return {"p_error": abs(float(r.p) - 1.53), "phi_ext_error": abs(float(r.phi_ext21) - 6.1685)}


def rk_order_reaction_diffusion() -> dict:
    """Observed order of the Crank-Nicolson reaction-diffusion solver (theory: 2)."""
    from vvuq_twin.testing.reaction_diffusion import ReactionDiffusion1D
    from vvuq_twin.verification import manufacture, observed_order

    rd = ReactionDiffusion1D(diffusivity=0.1, reaction=0.5, length=1.0)
    import sympy as sp

    x, t = sp.symbols("x t")
    ms = manufacture(sp.cos(sp.pi * x / 2) * sp.exp(t) + x**2 * sp.sin(t), rd.operator, ("x", "t"))
    n = [10, 20, 40, 80]
    h, errs = rd.mms_errors(ms.exact, ms.source, n, scheme="crank-nicolson")
    res = observed_order(h, errs, theoretical_order=2)
    return {"order_error": abs(float(res.order) - 2.0)}


def cvar_normal(n: int = 200_000, seed: int = 1) -> dict:
    """CVaR_0.95 of N(0, 1) = 2.06271 (closed form phi(z)/0.05)."""
    from vvuq_twin.risk import superquantile

    est = superquantile(np.random.default_rng(seed).normal(size=n), 0.95)
    return {"abs_error": abs(est.estimate - 2.06271), "z": abs(est.estimate - 2.06271) / est.se}


def ishigami_pce(n_runs: int = 150, seed: int = 1) -> dict:
    """PCE Sobol indices of Ishigami (a=7, b=0.1) vs closed form."""
    from vvuq_twin.sensitivity import sensitivity
    from vvuq_twin.testing.problems_sa import ishigami, ishigami_indices, ishigami_space

    ds = sensitivity(ishigami, inputs=ishigami_space(), method="pce", n=n_runs, rng=seed)
    truth = ishigami_indices()
    err = 0.0
    for idx in ("S1", "ST"):
        est = ds["estimate"].sel(index=idx).values
        err = max(err, float(np.max(np.abs(est - np.asarray(truth[idx])))))
    return {"worst_abs_error": err}


def bo2014_constrained(seed: int = 1) -> dict:
    """Brynjarsdottir & O'Hagan 2014: constrained-GP twin's 95 % interval covers theta = 0.65."""
    import vvuq_twin as vt
    from vvuq_twin.testing.problems_core import bo2014_data, bo2014_twin

    # the CLI's default twin, taken from the known-answer problems themselves
    twin, data = bo2014_twin(), bo2014_data(seed=1)
    res = vt.calibrate(twin, data, rng=seed, draws=1000, tune=1000, chains=2, warn=False)
    lo, hi = np.percentile(res.posterior["theta"].values.ravel(), [2.5, 97.5])
    return {"covers": float(lo <= 0.65 <= hi), "width": float(hi - lo)}
