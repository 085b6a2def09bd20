"""Expected-information-gain (EIG) estimators in torch (CPU or GPU, the problem's dtype/device).

======================  ==========================================  =============================
method                  estimator                                   bias
======================  ==========================================  =============================
``"closed_form"``       ½ log det(I + X Σ Xᵀ/σ²), linear-Gaussian   exact
``"nmc"``               nested Monte Carlo, inner samples reused     upward, ~ C/M (estimated)
``"pce"``               prior contrastive estimation                 lower bound, ≤ log(M+1)
``"laplace"``           Laplace approximation of each posterior      non-Gaussian posteriors
``"posterior"``         Barber–Agakov variational posterior bound    lower bound
``"marginal"``          variational marginal bound                   upper bound
======================  ==========================================  =============================

Nested MC and PCE follow Rainforth et al. (2018) and Foster et al. (2019, 2020); inner samples are
shared by all outer samples of a batch (Huan & Marzouk 2013), and the standard error is computed
from ``n_batches`` independent batches, so it includes the extra variance the reuse causes.
The variational families (Foster et al. 2019) are Gaussians -- ``q(y)`` for the marginal bound,
``q(theta | y)`` with mean affine (or quadratic) in ``y`` for the posterior bound -- whose optimum
of the bound is found in closed form (moment matching / least squares) on a training sample, and
the bound is then evaluated on an independent sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from scipy import stats
from torch.distributions import Independent, MultivariateNormal, Normal

from .._rng import RNGLike
from .problem import (
    AllParameters,
    BudgetError,
    DecisionLoss,
    DesignProblem,
    EstimatorNotApplicableError,
    ObservationModelError,
    ParameterSubset,
    QoI,
    torch_seed,
)

__all__ = [
    "UtilityEstimate",
    "EIG_METHODS",
    "eig",
    "eig_closed_form",
    "eig_nmc",
    "eig_pce",
    "eig_laplace",
    "eig_posterior_bound",
    "eig_marginal_bound",
    "eig_candidates",
]

EIG_METHODS = ("closed_form", "nmc", "pce", "laplace", "posterior", "marginal")

_BIAS_NOTES = {
    "closed_form": "exact (linear-Gaussian closed form); no Monte Carlo error",
    "nmc": ("consistent but biased upward: E[estimate] - EIG ~ C / n_inner; `bias_estimate` is the "
            "first-order (delta-method) estimate of that bias"),
    "nmc_subset": ("nested MC of log p(y|target) - log p(y); both terms are biased ~ 1/n_inner in "
                   "opposite directions; consistent as n_inner grows"),
    "nmc_qoi": ("kernel-weighted nested MC: p(y | qoi) from a Gaussian kernel in qoi space (Scott "
                "bandwidth); biased by the bandwidth and ~ 1/n_inner; consistent as n_inner grows"),
    "pce": "lower bound of the EIG (Foster et al. 2020), capped at log(n_inner + 1); gap ~ C / n_inner",
    "laplace": ("approximation: exact for linear-Gaussian models, biased where the posterior is "
                "non-Gaussian or multimodal; the bias does not shrink with more samples"),
    "posterior": ("lower bound (Barber-Agakov); gap = E_y KL(p(theta|y) || q(theta|y)) for the fitted "
                  "Gaussian q with mean {features} in y"),
    "marginal": "upper bound; gap = KL(p(y) || q(y)) for the fitted Gaussian q(y)",
}


@dataclass(frozen=True)
class UtilityEstimate:
    """A design utility estimate (EIG in nats, or EVSI in loss units) with its error.

    Attributes
    ----------
    estimate, se : float
        The estimate and its Monte Carlo standard error.
    method : str
        Estimator name.
    quantity : str
        ``"eig"`` (about ``target``) or ``"evsi"``.
    bound : str
        ``"exact"`` (no bias: the closed form, or Laplace on a problem declared
        linear-Gaussian, whose ``se`` is then Monte Carlo error only), ``"lower"``, ``"upper"``,
        ``"consistent"`` or ``"approximate"``.
    bias_note : str
        What the estimator's bias is and how it scales.
    bias_estimate : float
        Estimated leading-order bias (NaN where not available).
    n_outer, n_inner : int
        Outer (data) and inner (contrastive / prior) sample sizes.
    model_evaluations : int
        Likelihood / simulator evaluations spent (one per parameter-design-data combination).
    wall_time : float
        Seconds.
    target : str
        The learning target.
    design : ndarray, shape (n_obs, design_dim)
    """

    estimate: float
    se: float
    method: str
    quantity: str
    bound: str
    bias_note: str
    n_outer: int
    n_inner: int
    model_evaluations: int
    wall_time: float
    target: str
    design: np.ndarray
    bias_estimate: float = float("nan")
    details: dict[str, Any] = field(default_factory=dict)

    def ci(self, confidence: float = 0.95) -> tuple[float, float]:
        """Normal interval ``estimate ± z se``."""
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        return self.estimate - z * self.se, self.estimate + z * self.se

    def to_dataset(self) -> xr.Dataset:
        """NetCDF-saveable Dataset (design with dims ``obs``, ``design_dim``)."""
        d = np.asarray(self.design, dtype=float)
        return xr.Dataset(
            {
                "estimate": self.estimate,
                "se": self.se,
                "bias_estimate": self.bias_estimate,
                "design": (("obs", "design_dim"), d),
            },
            coords={"obs": np.arange(d.shape[0]), "design_dim": np.arange(d.shape[1])},
            attrs={"method": self.method, "quantity": self.quantity, "bound": self.bound,
                   "bias_note": self.bias_note, "n_outer": self.n_outer, "n_inner": self.n_inner,
                   "model_evaluations": self.model_evaluations, "wall_time": self.wall_time,
                   "target": self.target, "units": "nats" if self.quantity == "eig" else "loss"},
        )


def _target_label(problem: DesignProblem) -> str:
    t = problem.target
    if isinstance(t, ParameterSubset):
        return "subset:" + ",".join(t.names)
    if isinstance(t, QoI):
        return "qoi:" + t.name
    if isinstance(t, DecisionLoss):
        return "decision"
    return "all"


def _check_budget(name: str, value: int, minimum: int, why: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or int(value) < minimum:
        raise BudgetError(f"The {name!r} budget must be an integer >= {minimum} ({why}); got {value!r}.")
    return int(value)


def _check_finite(ll: torch.Tensor, problem: DesignProblem, what: str) -> None:
    if torch.isnan(ll).any():
        raise ObservationModelError(
            f"The log-likelihood of {problem.name!r} is NaN for {int(torch.isnan(ll).sum())} "
            f"{what} evaluation(s): the observation model is undefined at this design. Check the "
            "design (e.g. a zero or negative noise scale, a singular forward model)."
        )


# ---------------------------------------------------------------------------------- kernels
def _gaussian_ll_matrix(problem: DesignProblem, y: torch.Tensor, theta: torch.Tensor,
                        designs: torch.Tensor) -> torch.Tensor | None:
    """The (K, B, N, M) log-likelihood matrix as one matrix product, for Gaussian observations.

    When ``p(y | theta, design)`` is a (possibly ``Independent``) ``Normal`` whose scale does not
    depend on ``theta``, ``log p(y_n | theta_m) = -0.5 |y_n / s|^2 + (y_n / s^2) . mu_m
    - 0.5 |mu_m / s|^2 + const``: the cross term for all (n, m) pairs is a batched GEMM
    instead of an (N, M, n_obs) broadcast (float64 keeps the expansion accurate). Returns None
    when the shortcut does not apply (the caller then uses the generic path).
    """
    from torch.distributions import Independent, Normal

    K, B, N, n_obs = y.shape
    M = theta.shape[-2]
    try:
        dist = problem._dist(theta[:, None], designs[None, :, None])  # batch (K, B, M, n_obs)
    except Exception:  # noqa: BLE001 - the generic path reports errors
        return None
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if type(base) is not Normal or problem.dtype != torch.float64:
        return None
    if isinstance(dist, Independent) and dist.reinterpreted_batch_ndims != 1:
        return None
    try:
        mu = base.loc.expand(K, B, M, n_obs)
        sc = base.scale.expand(K, B, M, n_obs)
    except RuntimeError:
        return None
    s0 = sc[:, :, :1, :]
    if not torch.equal(sc, s0.expand_as(sc)):  # the noise scale depends on theta
        return None
    inv2 = 1.0 / s0 ** 2  # (K, B, 1, n_obs)
    a = (y * y * inv2).sum(-1)  # (K, B, N)
    c = (mu * mu * inv2).sum(-1)  # (K, B, M)
    cross = torch.matmul(y * inv2, mu.transpose(-1, -2))  # (K, B, N, M)
    const = -torch.log(s0[:, :, 0, :]).sum(-1) - 0.5 * n_obs * math.log(2 * math.pi)  # (K, B)
    return cross - 0.5 * a[..., None] - 0.5 * c[:, :, None, :] + const[..., None, None]


def _ll_matrix(problem: DesignProblem, y: torch.Tensor, theta: torch.Tensor, designs: torch.Tensor,
               max_elems: int = 4_000_000) -> torch.Tensor:
    """log p(y[k, b, n] | theta[k, (n,) m], designs[b]) -> (K, B, N, M).

    ``y`` is (K, B, N, n_obs); ``theta`` is (K, M, p) (inner draws shared within a batch) or
    (K, N, M, p) (per outer draw). Chunked over N to bound memory."""
    K, B, N, n_obs = y.shape
    M = theta.shape[-2]
    if theta.ndim == 3:
        fast = _gaussian_ll_matrix(problem, y, theta, designs)
        if fast is not None:
            return fast
    step = max(1, int(max_elems // max(1, K * B * M * n_obs)))
    out = []
    xd = designs[None, :, None, None]  # (1, B, 1, 1, n_obs, d)
    for s in range(0, N, step):
        ys = y[:, :, s:s + step, None, :]  # (K, B, n, 1, n_obs)
        th = theta[:, None, None] if theta.ndim == 3 else theta[:, None, s:s + step]
        out.append(problem.log_likelihood(ys, th, xd))
    return torch.cat(out, dim=2)


def _batch_results(vals: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """vals: (K, B) batch means -> estimate (B,), se (B,)."""
    v = vals.detach().cpu().numpy().astype(float)
    K = v.shape[0]
    return v.mean(axis=0), v.std(axis=0, ddof=1) / math.sqrt(K)


def _nested_batched(problem: DesignProblem, designs: torch.Tensor, n_outer: int, n_inner: int,
                    n_batches: int, contrastive: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, int]:
    """Batch-means nested estimator for every design in ``designs`` (B, n_obs, d).

    All ``n_batches`` independent batches are computed at once (leading dim K)."""
    B = designs.shape[0]
    K = n_batches
    No = n_outer // n_batches
    p = problem.n_params
    target = problem.target
    kind = "nmc"
    if isinstance(target, ParameterSubset):
        if contrastive:
            raise EstimatorNotApplicableError("PCE is defined for the full parameter vector; use method='nmc' "
                                              "for a ParameterSubset target.")
        if not problem.factorised_prior:
            raise EstimatorNotApplicableError(
                "A ParameterSubset target needs a prior that factorises between the subset and the "
                "nuisance parameters; declare DesignProblem(factorised_prior=True) if it does, or "
                "use a QoI target (kernel-weighted estimator) otherwise.")
        kind = "nmc_subset"
        S = torch.tensor([problem.parameter_names.index(n) for n in target.names], device=problem.device)
    elif isinstance(target, QoI):
        if contrastive:
            raise EstimatorNotApplicableError("PCE is defined for the full parameter vector; use method='nmc' "
                                              "for a QoI target.")
        kind = "nmc_qoi"
    th_out = problem.sample_prior(K * No).reshape(K, No, p)
    th_in = problem.sample_prior(K * n_inner).reshape(K, n_inner, p)
    y = problem.simulate(th_out[:, None], designs[None, :, None])  # (K, B, No, n_obs)
    y = y.to(problem.dtype) if y.is_floating_point() else y
    ll_self = problem.log_likelihood(y, th_out[:, None], designs[None, :, None])  # (K, B, No)
    _check_finite(ll_self, problem, "outer")
    ll_in = _ll_matrix(problem, y, th_in, designs)  # (K, B, No, M)
    _check_finite(ll_in, problem, "inner")
    if contrastive:
        log_marg = torch.logsumexp(torch.cat([ll_self[..., None], ll_in], -1), -1) - math.log(n_inner + 1)
    else:
        log_marg = torch.logsumexp(ll_in, -1) - math.log(n_inner)
    bias = np.full(B, np.nan)
    if kind == "nmc":
        terms = ll_self - log_marg
        # Var_m(w) / mean_m(w)^2 = M sum w^2 / (sum w)^2 - 1, from log-sum-exps (no extra exp pass)
        ratio = (n_inner * torch.exp(torch.logsumexp(2 * ll_in, -1) - 2 * (log_marg + math.log(n_inner))) - 1
                 ).clamp_min(0) * (n_inner / max(n_inner - 1, 1))
        bias = (ratio / (2 * n_inner)).mean(-1).mean(0).detach().cpu().numpy()
    elif kind == "nmc_subset":
        th_mix = th_in[:, None, :, :].expand(K, No, n_inner, p).clone()
        th_mix[..., S] = th_out[:, :, None, S]
        ll_cond = _ll_matrix(problem, y, th_mix, designs)
        _check_finite(ll_cond, problem, "conditional")
        terms = torch.logsumexp(ll_cond, -1) - math.log(n_inner) - log_marg
    else:
        q_out = problem.qoi_values(th_out).to(problem.dtype)  # (K, No, k)
        q_in = problem.qoi_values(th_in).to(problem.dtype)  # (K, M, k)
        sd = q_in.std(1, keepdim=True).clamp_min(1e-12)
        k = q_in.shape[-1]
        h = n_inner ** (-1.0 / (k + 4))
        d2 = (((q_out[:, :, None, :] - q_in[:, None, :, :]) / (sd[:, None] * h)) ** 2).sum(-1)  # (K, No, M)
        logk = (-0.5 * d2)[:, None]  # (K, 1, No, M)
        log_cond = torch.logsumexp(ll_in + logk, -1) - torch.logsumexp(logk, -1)
        terms = log_cond - log_marg
    est, se = _batch_results(terms.mean(-1))
    evals = K * No * (1 + n_inner * (2 if kind == "nmc_subset" else 1))
    return est, se, bias, kind, evals


def _as_designs(problem: DesignProblem, design: Any) -> torch.Tensor:
    return problem.check_design(design)[None]


def _no_decision(problem: DesignProblem, method: str) -> None:
    if isinstance(problem.target, DecisionLoss):
        raise EstimatorNotApplicableError(
            f"EIG method {method!r} estimates information, but the problem's target is a DecisionLoss; "
            "use vvuq_twin.design.evsi (or utility()) for decision-oriented designs.")


def _finish(problem, design, est, se, method, bound, note, n_outer, n_inner, evals, t0, bias=float("nan"),
            details=None, quantity="eig") -> UtilityEstimate:
    return UtilityEstimate(float(est), float(se), method, quantity, bound, note, int(n_outer), int(n_inner),
                           int(evals), time.perf_counter() - t0, _target_label(problem),
                           problem.check_design(design).detach().cpu().numpy(), float(bias), details or {})


# ---------------------------------------------------------------------------------- public
def eig_nmc(problem: DesignProblem, design: Any, *, n_outer: int = 2000, n_inner: int = 2000,
            n_batches: int = 10, rng: RNGLike = None) -> UtilityEstimate:
    """Nested Monte Carlo EIG with inner-sample reuse.

    ``EIG ≈ mean_n [log p(y_n | theta_n) - log (1/M) Σ_m p(y_n | theta_m)]`` with one set of ``M``
    inner prior draws per batch shared by all outer draws. For a :class:`ParameterSubset` target
    the conditional ``p(y | theta_S)`` is nested over nuisance draws; for a :class:`QoI` target it
    is kernel-weighted in QoI space.

    Parameters
    ----------
    problem : DesignProblem
    design : array_like, shape (n_obs, design_dim)
    n_outer : int
        Total outer samples (split over ``n_batches``); >= 2 per batch.
    n_inner : int
        Inner samples ``M`` per batch; the bias falls like ``1/M``.
    n_batches : int
        Independent batches (>= 2) from which the standard error is computed.
    rng : Generator, int or None

    Returns
    -------
    UtilityEstimate
    """
    t0 = time.perf_counter()
    _no_decision(problem, "nmc")
    n_batches = _check_budget("n_batches", n_batches, 2, "the standard error needs two independent batches")
    n_outer = _check_budget("n_outer", n_outer, 2 * n_batches, "at least two outer samples per batch")
    n_inner = _check_budget("n_inner", n_inner, 1, "at least one inner sample")
    designs = _as_designs(problem, design)
    with torch_seed(rng, problem.device), torch.no_grad():
        est, se, bias, kind, evals = _nested_batched(problem, designs, n_outer, n_inner, n_batches, False)
    bound = "consistent"
    return _finish(problem, design, est[0], se[0], "nmc", bound, _BIAS_NOTES[kind], n_outer, n_inner, evals, t0,
                   bias=bias[0], details={"n_batches": n_batches, "estimator": kind})


def eig_pce(problem: DesignProblem, design: Any, *, n_outer: int = 2000, n_inner: int = 2000,
            n_batches: int = 10, rng: RNGLike = None) -> UtilityEstimate:
    """Prior contrastive estimation: a lower bound on the EIG (Foster et al. 2020).

    ``mean_n [log p(y_n|theta_n) - log (1/(M+1)) (p(y_n|theta_n) + Σ_m p(y_n|theta_m))]``; the
    bound tightens as ``M`` grows and never exceeds ``log(M + 1)``. Parameters as in
    :func:`eig_nmc`.
    """
    t0 = time.perf_counter()
    _no_decision(problem, "pce")
    n_batches = _check_budget("n_batches", n_batches, 2, "the standard error needs two independent batches")
    n_outer = _check_budget("n_outer", n_outer, 2 * n_batches, "at least two outer samples per batch")
    n_inner = _check_budget("n_inner", n_inner, 1, "at least one contrastive sample")
    designs = _as_designs(problem, design)
    with torch_seed(rng, problem.device), torch.no_grad():
        est, se, _, _, evals = _nested_batched(problem, designs, n_outer, n_inner, n_batches, True)
    return _finish(problem, design, est[0], se[0], "pce", "lower", _BIAS_NOTES["pce"], n_outer, n_inner, evals, t0,
                   details={"n_batches": n_batches, "upper_limit": math.log(n_inner + 1)})


def _gaussian_prior_moments(problem: DesignProblem) -> tuple[torch.Tensor, torch.Tensor]:
    p = problem.prior
    if isinstance(p, MultivariateNormal):
        return p.loc.to(problem.dtype), p.covariance_matrix.to(problem.dtype)
    if isinstance(p, Independent) and isinstance(p.base_dist, Normal):
        return p.base_dist.loc.to(problem.dtype), torch.diag(p.base_dist.scale.to(problem.dtype) ** 2)
    raise EstimatorNotApplicableError(
        f"The closed form needs a Gaussian prior (MultivariateNormal or Independent(Normal)); the prior of "
        f"{problem.name!r} is {type(p).__name__}. Use method='nmc' or 'pce'.")


def _closed_form_batch(problem: DesignProblem, designs: torch.Tensor) -> torch.Tensor:
    if problem.linear_gaussian is None:
        raise EstimatorNotApplicableError(
            f"The closed-form EIG needs a linear-Gaussian observation model; {problem.name!r} declares no "
            "`linear_gaussian(design) -> (X, sigma)`. Use method='nmc' or 'pce'.")
    _, S0 = _gaussian_prior_moments(problem)
    X, sigma = problem.linear_gaussian(designs)
    X = X.to(problem.dtype)
    sigma = float(sigma)
    if not sigma > 0:
        raise ObservationModelError(f"linear_gaussian returned sigma={sigma}; the noise scale must be > 0.")
    prec = torch.linalg.inv(S0) + X.transpose(-1, -2) @ X / sigma**2
    Spost = torch.linalg.inv(prec)
    t = problem.target
    if isinstance(t, AllParameters):
        n = X.shape[-2]
        I = torch.eye(n, dtype=problem.dtype, device=problem.device)
        return 0.5 * torch.linalg.slogdet(I + X @ S0 @ X.transpose(-1, -2) / sigma**2)[1]
    if isinstance(t, ParameterSubset):
        idx = [problem.parameter_names.index(n) for n in t.names]
        C = torch.zeros(len(idx), problem.n_params, dtype=problem.dtype, device=problem.device)
        C[range(len(idx)), idx] = 1.0
    elif isinstance(t, QoI) and t.linear is not None:
        C = torch.as_tensor(np.atleast_2d(np.asarray(t.linear, dtype=float)), dtype=problem.dtype,
                            device=problem.device)
    else:
        raise EstimatorNotApplicableError(
            "The closed form covers all parameters, a ParameterSubset, or a QoI declared with `linear=c`; "
            f"got target {t!r}. Use method='nmc'.")
    a = torch.linalg.slogdet(C @ S0 @ C.T)[1]
    b = torch.linalg.slogdet(C @ Spost @ C.T)[1]
    return 0.5 * (a - b)


def eig_closed_form(problem: DesignProblem, design: Any) -> UtilityEstimate:
    """Exact EIG of a linear-Gaussian problem: ``½ log det(I + X Σ Xᵀ / σ²)``.

    For a :class:`ParameterSubset` or linear :class:`QoI` ``c θ`` target:
    ``½ [log det(C Σ Cᵀ) - log det(C Σ_post Cᵀ)]``.
    """
    t0 = time.perf_counter()
    _no_decision(problem, "closed_form")
    designs = _as_designs(problem, design)
    with torch.no_grad():
        v = float(_closed_form_batch(problem, designs)[0])
    return _finish(problem, design, v, 0.0, "closed_form", "exact", _BIAS_NOTES["closed_form"], 0, 0, 1, t0)


def _log_joint(problem: DesignProblem, theta: torch.Tensor, y: torch.Tensor, design: torch.Tensor) -> torch.Tensor:
    return problem.prior.log_prob(theta) + problem.log_likelihood(y, theta, design[None])


def _grad_hess(f, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row value, gradient and Hessian of a row-separable function (N, p) -> (N,)."""
    th = theta.detach().requires_grad_(True)
    val = f(th)
    (g,) = torch.autograd.grad(val.sum(), th, create_graph=True)
    rows = []
    for j in range(th.shape[1]):
        (h,) = torch.autograd.grad(g[:, j].sum(), th, retain_graph=True)
        rows.append(h)
    H = torch.stack(rows, dim=1)
    return val.detach(), g.detach(), H.detach()


def eig_laplace(problem: DesignProblem, design: Any, *, n_outer: int = 500, max_iter: int = 50,
                rng: RNGLike = None) -> UtilityEstimate:
    """Laplace-approximation EIG (Long et al. 2013; Ryan et al. 2016).

    For each prior-predictive draw ``(theta_n, y_n)`` the posterior is approximated by
    ``N(theta_hat, Σ_hat)`` at its mode (Levenberg-damped Newton started at ``theta_n``), and
    ``KL(N(theta_hat, Σ_hat) || prior) ≈ -½ log det(2πe Σ_hat) - log p(theta_hat)
    - ½ tr(∇² log p(theta_hat) Σ_hat)`` is averaged. Exact for linear-Gaussian problems.

    Raises
    ------
    EstimatorNotApplicableError
        For a discrete parameter space, a prior without a log density, or a non-``AllParameters``
        target.
    """
    t0 = time.perf_counter()
    _no_decision(problem, "laplace")
    if problem.is_discrete:
        raise EstimatorNotApplicableError(
            f"The Laplace approximation needs continuous parameters, but the prior of {problem.name!r} "
            f"({type(problem.prior).__name__}) has discrete support {problem.prior.support}. Use "
            "method='nmc' or 'pce', which handle discrete parameters.")
    if not isinstance(problem.target, AllParameters):
        raise EstimatorNotApplicableError("eig_laplace supports the AllParameters target only; use method='nmc'.")
    n_outer = _check_budget("n_outer", n_outer, 2, "the standard error needs two outer samples")
    x = problem.check_design(design)
    with torch_seed(rng, problem.device):
        with torch.no_grad():
            th = problem.sample_prior(n_outer)
            y = problem.simulate(th, x[None]).to(problem.dtype)
        f = lambda t: _log_joint(problem, t, y, x)  # noqa: E731
        try:
            val, g, H = _grad_hess(f, th)
        except NotImplementedError as exc:
            raise EstimatorNotApplicableError(f"eig_laplace needs prior.log_prob; {exc}") from exc
        _check_finite(val, problem, "Laplace")
        lam = torch.full((n_outer,), 1e-3, dtype=problem.dtype, device=problem.device)
        I = torch.eye(problem.n_params, dtype=problem.dtype, device=problem.device)
        for _ in range(max_iter):
            A = -H + lam[:, None, None] * I
            step = torch.linalg.solve(A, g[..., None])[..., 0]
            cand = th + step
            with torch.no_grad():
                vnew = f(cand)
            ok = torch.isfinite(vnew) & (vnew >= val - 1e-12)
            th = torch.where(ok[:, None], cand, th)
            lam = torch.where(ok, lam / 10, lam * 10).clamp(1e-10, 1e10)
            val, g, H = _grad_hess(f, th)
            if float(g.abs().max()) < 1e-8:
                break
        negH = -H
        L, info = torch.linalg.cholesky_ex(negH)
        good = info == 0
        n_bad = int((~good).sum())
        if n_bad > n_outer // 10:
            raise EstimatorNotApplicableError(
                f"The Laplace approximation failed for {n_bad} of {n_outer} outer samples (the negative "
                "Hessian of the log posterior is not positive definite at the mode); the posterior is "
                "far from Gaussian here. Use method='nmc' or 'pce'.")
        Sig = torch.cholesky_inverse(L[good])
        thg = th[good].detach().requires_grad_(True)
        lp = problem.prior.log_prob(thg)
        (gp,) = torch.autograd.grad(lp.sum(), thg, create_graph=True)
        Hp = torch.stack([torch.autograd.grad(gp[:, j].sum(), thg, retain_graph=True)[0]
                          for j in range(problem.n_params)], dim=1)
        p = problem.n_params
        logdet = torch.linalg.slogdet(Sig)[1]
        kl = (-0.5 * (logdet + p * math.log(2 * math.pi * math.e)) - lp.detach()
              - 0.5 * torch.einsum("nij,nji->n", Hp.detach(), Sig))
        kl = kl.detach().cpu().numpy()
    est = float(kl.mean())
    se = float(kl.std(ddof=1) / math.sqrt(len(kl)))
    # on a problem declared linear-Gaussian the Laplace posterior is the exact posterior, so
    # each outer term is the exact KL: unbiased (Monte Carlo error only), not an approximation
    bound = "exact" if problem.linear_gaussian is not None else "approximate"
    return _finish(problem, design, est, se, "laplace", bound, _BIAS_NOTES["laplace"], n_outer, 0,
                   n_outer * (max_iter + 1), t0, details={"n_failed": n_bad})


def _features(y: torch.Tensor, kind: str) -> torch.Tensor:
    cols = [torch.ones_like(y[:, :1]), y]
    if kind == "quadratic":
        iu = torch.triu_indices(y.shape[1], y.shape[1])
        cols.append((y[:, :, None] * y[:, None, :])[:, iu[0], iu[1]])
    return torch.cat(cols, dim=1)


def eig_posterior_bound(problem: DesignProblem, design: Any, *, n_outer: int = 4000, n_train: int = 4000,
                        features: Literal["linear", "quadratic"] = "linear",
                        rng: RNGLike = None) -> UtilityEstimate:
    """Barber–Agakov (variational posterior) lower bound on the EIG (Foster et al. 2019).

    ``EIG >= E[log q(theta | y) - log p(theta)]`` for ``q(theta|y) = N(W φ(y), Σ)`` with ``φ``
    affine (or quadratic) features of ``y``; ``W, Σ`` maximise the bound on ``n_train`` draws
    (least squares -- the exact optimum of the bound within the family), and the bound is
    evaluated on ``n_outer`` independent draws.
    """
    t0 = time.perf_counter()
    _no_decision(problem, "posterior")
    if not isinstance(problem.target, AllParameters):
        raise EstimatorNotApplicableError("eig_posterior_bound supports the AllParameters target only; use 'nmc'.")
    if problem.is_discrete:
        raise EstimatorNotApplicableError("eig_posterior_bound uses a Gaussian q(theta|y) and needs continuous "
                                          "parameters; use method='nmc' or 'pce'.")
    x = problem.check_design(design)
    n_obs = x.shape[0]
    nfeat = 1 + n_obs + (n_obs * (n_obs + 1) // 2 if features == "quadratic" else 0)
    n_train = _check_budget("n_train", n_train, nfeat + problem.n_params + 2,
                            "the variational fit needs more draws than features")
    n_outer = _check_budget("n_outer", n_outer, 2, "the standard error needs two outer samples")
    with torch_seed(rng, problem.device), torch.no_grad():
        th = problem.sample_prior(n_train + n_outer).to(problem.dtype)
        y = problem.simulate(th, x[None]).to(problem.dtype)
        F = _features(y, features)
        Ftr, Fte, ttr, tte = F[:n_train], F[n_train:], th[:n_train], th[n_train:]
        W = torch.linalg.lstsq(Ftr, ttr).solution
        R = ttr - Ftr @ W
        S = R.T @ R / n_train + 1e-10 * torch.eye(problem.n_params, dtype=problem.dtype, device=problem.device)
        q = MultivariateNormal(Fte @ W, covariance_matrix=S)
        terms = q.log_prob(tte) - problem.prior.log_prob(tte)
        _check_finite(terms, problem, "posterior-bound")
        t = terms.cpu().numpy()
    return _finish(problem, design, t.mean(), t.std(ddof=1) / math.sqrt(len(t)), "posterior", "lower",
                   _BIAS_NOTES["posterior"].format(features="affine" if features == "linear" else "quadratic"),
                   n_outer, n_train, n_train + n_outer, t0, details={"features": features})


def eig_marginal_bound(problem: DesignProblem, design: Any, *, n_outer: int = 4000, n_train: int = 4000,
                       rng: RNGLike = None) -> UtilityEstimate:
    """Variational marginal upper bound on the EIG (Foster et al. 2019).

    ``EIG <= E[log p(y | theta) - log q(y)]`` for a Gaussian ``q(y)`` fitted by maximum
    likelihood (moment matching, the exact optimum within the family) on ``n_train`` draws and
    evaluated on ``n_outer`` independent draws.
    """
    t0 = time.perf_counter()
    _no_decision(problem, "marginal")
    if not isinstance(problem.target, AllParameters):
        raise EstimatorNotApplicableError("eig_marginal_bound supports the AllParameters target only; use 'nmc'.")
    x = problem.check_design(design)
    n_obs = x.shape[0]
    n_train = _check_budget("n_train", n_train, n_obs + 2, "the Gaussian q(y) needs more draws than observations")
    n_outer = _check_budget("n_outer", n_outer, 2, "the standard error needs two outer samples")
    with torch_seed(rng, problem.device), torch.no_grad():
        th = problem.sample_prior(n_train + n_outer)
        y = problem.simulate(th, x[None]).to(problem.dtype)
        ytr, yte = y[:n_train], y[n_train:]
        mu = ytr.mean(0)
        C = torch.cov(ytr.T).reshape(n_obs, n_obs) + 1e-10 * torch.eye(n_obs, dtype=problem.dtype,
                                                                        device=problem.device)
        q = MultivariateNormal(mu, covariance_matrix=C)
        ll = problem.log_likelihood(yte, th[n_train:], x[None])
        terms = ll - q.log_prob(yte)
        _check_finite(terms, problem, "marginal-bound")
        t = terms.cpu().numpy()
    return _finish(problem, design, t.mean(), t.std(ddof=1) / math.sqrt(len(t)), "marginal", "upper",
                   _BIAS_NOTES["marginal"], n_outer, n_train, n_train + 2 * n_outer, t0)


def eig(problem: DesignProblem, design: Any, *, method: str = "auto", rng: RNGLike = None,
        **budget: Any) -> UtilityEstimate:
    """Estimate the EIG of ``design`` about ``problem.target`` with ``method``.

    ``method="auto"`` uses the closed form when the problem is linear-Gaussian, else nested MC.
    ``budget`` keywords go to the estimator (``n_outer``, ``n_inner``, ``n_batches``, ...).
    """
    if method == "auto":
        method = "closed_form" if problem.linear_gaussian is not None else "nmc"
    funcs = {"closed_form": eig_closed_form, "nmc": eig_nmc, "pce": eig_pce, "laplace": eig_laplace,
             "posterior": eig_posterior_bound, "marginal": eig_marginal_bound}
    if method not in funcs:
        raise ValueError(f"The 'method' parameter of eig must be one of {('auto',) + EIG_METHODS}; got {method!r}.")
    if method == "closed_form":
        if budget:
            raise TypeError(f"The closed form takes no budget; got {sorted(budget)}.")
        return eig_closed_form(problem, design)
    return funcs[method](problem, design, rng=rng, **budget)


def eig_candidates(problem: DesignProblem, designs: Any, *, method: str = "auto", n_outer: int = 1000,
                   n_inner: int = 1000, n_batches: int = 5, rng: RNGLike = None) -> xr.Dataset:
    """EIG of many candidate designs at once (vectorised, common random numbers).

    Parameters
    ----------
    designs : array_like, shape (n_candidates, n_obs, design_dim)
    method : {"auto", "closed_form", "nmc", "pce"}

    Returns
    -------
    xarray.Dataset
        ``utility`` and ``se`` with dim ``candidate``; ``design`` with dims
        ``(candidate, obs, design_dim)``.
    """
    _no_decision(problem, method)
    X = problem.check_design(designs, batch=True)
    if method == "auto":
        method = "closed_form" if problem.linear_gaussian is not None else "nmc"
    if method == "closed_form":
        with torch.no_grad():
            est = _closed_form_batch(problem, X).cpu().numpy()
        se = np.zeros_like(est)
    elif method in ("nmc", "pce"):
        n_batches = _check_budget("n_batches", n_batches, 2, "the standard error needs two independent batches")
        n_outer = _check_budget("n_outer", n_outer, 2 * n_batches, "at least two outer samples per batch")
        n_inner = _check_budget("n_inner", n_inner, 1, "at least one inner sample")
        with torch_seed(rng, problem.device), torch.no_grad():
            est, se, _, _, _ = _nested_batched(problem, X, n_outer, n_inner, n_batches, method == "pce")
    else:
        raise ValueError(f"eig_candidates supports methods 'auto', 'closed_form', 'nmc', 'pce'; got {method!r}.")
    Xn = X.cpu().numpy()
    return xr.Dataset(
        {"utility": ("candidate", np.asarray(est, float)), "se": ("candidate", np.asarray(se, float)),
         "design": (("candidate", "obs", "design_dim"), Xn)},
        coords={"candidate": np.arange(Xn.shape[0]), "obs": np.arange(Xn.shape[1]),
                "design_dim": list(problem.design_names)},
        attrs={"method": method, "target": _target_label(problem), "units": "nats"},
    )
