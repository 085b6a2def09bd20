"""SBC counts the replications whose own sampler diagnostics failed (issue #14).

Known answers: the conjugate normal model's exact posterior (as in ``test_sbc.py``) with the
fit reporting diagnostics that the test chooses, so the count of unconverged replications is
known exactly; and an MCMC fit with a fixed budget whose chains start far in the tail and
are stopped before they forget their start (the posterior is exact, the sampler is not): its
ranks are non-uniform and its replications report failed R-hat, the pattern of the climate
case's full-mode SBC before its fix.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from vvuq_twin.verification import SBCError, SBCWarning, sbc

N_OBS, SIGMA, N_DRAWS = 5, 1.0, 300


def simulate(rng: np.random.Generator):
    mu = rng.normal(0.0, 1.0)
    return {"mu": mu}, rng.normal(mu, SIGMA, size=N_OBS)


def _post(y: np.ndarray) -> tuple[float, float]:
    """Exact posterior of mu ~ N(0, 1), y_i ~ N(mu, SIGMA^2): mean and sd."""
    prec = 1.0 + y.size / SIGMA**2
    return float(y.sum() / SIGMA**2 / prec), float(prec**-0.5)


def loglik(params, y) -> float:
    r = (y - float(params["mu"])) / SIGMA
    return float(-0.5 * np.sum(r**2) - y.size * np.log(SIGMA * np.sqrt(2 * np.pi)))


class ExactFitReporting:
    """Exact posterior draws; reports ``passed=False`` when asked to and the data sum is positive."""

    def __init__(self, fail_if_positive_sum: bool) -> None:
        self.fail_if_positive_sum = fail_if_positive_sum

    def __call__(self, y, rng):
        m, s = _post(y)
        draws = {"mu": rng.normal(m, s, size=N_DRAWS)}
        ok = not (self.fail_if_positive_sum and y.sum() > 0)
        return draws, {"passed": ok, "rhat": 1.0 if ok else 1.05, "ess_bulk": 300.0 if ok else 40.0,
                       "divergences": 0.0}


def _expected_failures(n_sims: int, rng_seed: int) -> list[int]:
    """Which replications have a positive data sum: recomputed from the engine's seeding."""
    from vvuq_twin._rng import as_generator, spawn_seeds

    seeds = spawn_seeds(as_generator(rng_seed), n_sims)
    out = []
    for i, sd in enumerate(seeds):
        sim_ss = np.random.SeedSequence(int(sd)).spawn(3)[0]
        _, y = simulate(np.random.default_rng(sim_ss))
        if y.sum() > 0:
            out.append(i)
    return out


def test_unconverged_replications_are_counted_and_warned():
    with pytest.warns(SBCWarning, match=r"sampler diagnostics failed"):
        res = sbc(simulate, ExactFitReporting(True), 40, log_likelihood=loglik, max_rank=99, thin=None, rng=11)
    want = _expected_failures(40, 11)
    assert 0 < len(want) < 40
    assert res.unconverged == want
    assert res.n_diagnosed == 40
    assert res.ranks["diag_rhat"].values[want].tolist() == [1.05] * len(want)
    assert "sampler diagnostics failed in" in res.summary()
    # the posterior is exact: the rank verdict itself passes
    assert res.passed, res.summary()


def test_converged_replications_report_none_and_draws_only_fits_report_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SBCWarning)
        res = sbc(simulate, ExactFitReporting(False), 20, log_likelihood=loglik, max_rank=99, thin=None, rng=3)
    assert res.unconverged == [] and res.n_diagnosed == 20
    plain = sbc(simulate, lambda y, rng: ExactFitReporting(False)(y, rng)[0], 20, log_likelihood=loglik,
                max_rank=99, thin=None, rng=3)
    assert plain.unconverged == [] and plain.n_diagnosed == 0
    assert np.all(np.isnan(plain.ranks["diag_passed"].values))
    # the same draws either way: reporting diagnostics does not change the ranks
    assert np.array_equal(plain.ranks["rank"].values, res.ranks["rank"].values)


def test_diagnostics_without_passed_key_are_refused():
    with pytest.raises(SBCError, match=r"diagnostics\['passed'\]"):
        sbc(simulate, lambda y, rng: ({"mu": np.zeros(N_DRAWS)}, {"rhat": 1.0}), 4,
            log_likelihood=loglik, max_rank=9, thin=None, rng=0)


def _stuck_mcmc(y, rng, n_steps: int, start: float = 4.0):
    """Two random-walk Metropolis chains on the exact posterior, started ``start`` prior sds
    away (alternately above and below), ``n_steps`` steps, no warm-up discarded."""
    m, s = _post(y)
    chains = np.empty((2, n_steps))
    for c, sign in enumerate((1.0, -1.0)):
        x = sign * start
        for t in range(n_steps):
            prop = x + 0.05 * s * rng.standard_normal()
            if np.log(rng.uniform()) < -0.5 * ((prop - m) ** 2 - (x - m) ** 2) / s**2:
                x = prop
            chains[c, t] = x
    rhat = float(az.rhat(chains))
    return {"mu": chains.reshape(-1)}, {"passed": rhat <= 1.01, "rhat": rhat}


def test_an_unconverged_sampler_fails_ranks_and_reports_its_replications():
    """A sampler stopped before it converged (exact target, chains still near their starts at
    +-4): ranks non-uniform and every replication flagged by its own R-hat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = sbc(simulate, lambda y, rng: _stuck_mcmc(y, rng, 150), 30, log_likelihood=loglik,
                  max_rank=19, thin=None, rng=5)
    assert not bad.passed
    assert len(bad.unconverged) == 30
    assert float(np.min(bad.ranks["diag_rhat"].values)) > 1.01
