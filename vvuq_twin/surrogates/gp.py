"""Gaussian-process emulators through gpytorch: exact GP and sparse variational GP.

Inputs are scaled to the unit cube of the training design and outputs standardised; the kernel
is a scaled ARD squared-exponential. Exact GPs are fitted by maximising the marginal likelihood
with L-BFGS (``torch.optim.LBFGS``); sparse variational GPs
(Hensman et al. 2015, whitened inducing points) by Adam on the ELBO.

:meth:`GPSurrogate.posterior` uses gpytorch; :meth:`GPSurrogate.to_pytensor` rebuilds the same
predictive mean and variance from the fitted hyperparameters and training data as pytensor
expressions, so a surrogate can stand in for a simulator inside a PyMC model with its predictive
variance carried into the likelihood. :meth:`GPSurrogate.sample_posterior` draws joint posterior
sample paths on a fixed design, so indices can be computed path by path (emulator uncertainty).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Any

import gpytorch
import numpy as np
import pytensor.tensor as pt
import torch
from scipy.linalg import cho_solve, solve_triangular

from .._rng import RNGLike, as_generator, seed_int

__all__ = ["GPSurrogate"]


@contextlib.contextmanager
def _torch_seed(seed: int):
    """Seed torch inside a block and restore the global RNG state afterwards."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, X, y, likelihood):
        super().__init__(X, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(ard_num_dims=X.shape[1])
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class _SVGP(gpytorch.models.ApproximateGP):
    def __init__(self, Z):
        q = gpytorch.variational.CholeskyVariationalDistribution(Z.shape[0])
        strat = gpytorch.variational.VariationalStrategy(self, Z, q, learn_inducing_locations=True)
        super().__init__(strat)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(ard_num_dims=Z.shape[1])
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class GPSurrogate:
    """GP emulator of a scalar model.

    Parameters
    ----------
    sparse : bool or "auto"
        Use a sparse variational GP; ``"auto"`` switches to it above ``sparse_threshold`` runs.
    n_inducing : int
        Inducing points of the sparse GP.
    sparse_threshold : int
        Training-set size above which ``"auto"`` goes sparse.
    n_iter : int
        Adam iterations of the sparse GP.
    rng : Generator, int or None
        Seed (inducing-point initialisation, Adam minibatches of the sparse GP).

    Attributes
    ----------
    training_ : dict
        ``n_runs`` and ``wall_time`` (fit only; :func:`train_surrogate` adds simulator time).
    q2_loo_ : float
        Closed-form leave-one-out Q^2 (exact GP; NaN for the sparse GP).
    loo_coverage_ : float
        Fraction of LOO 95% predictive intervals that cover the left-out run (exact GP).
    """

    kind = "gp"

    def __init__(self, *, sparse: bool | str = "auto", n_inducing: int = 128,
                 sparse_threshold: int = 2000, n_iter: int = 400, rng: RNGLike = None):
        if sparse not in (True, False, "auto"):
            raise ValueError(f"`sparse` must be True, False or 'auto', got {sparse!r}.")
        self.sparse = sparse
        self.n_inducing = int(n_inducing)
        self.sparse_threshold = int(sparse_threshold)
        self.n_iter = int(n_iter)
        self.rng = rng

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> "GPSurrogate":
        """Fit on a design ``X`` (n, d) and outputs ``y`` (n,)."""
        t0 = time.perf_counter()
        X = np.asarray(X, float)
        y = np.asarray(y, float).reshape(-1)
        if X.ndim != 2 or X.shape[0] != y.size:
            raise ValueError(f"Expected X (n, d) and y (n,), got {X.shape} and {y.shape}.")
        if X.shape[0] < 3:
            raise ValueError(f"A GP needs at least 3 training runs, got {X.shape[0]}.")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError("Training data contain NaN or inf.")
        self.x_shift_ = X.min(axis=0)
        self.x_scale_ = np.where(np.ptp(X, axis=0) > 0, np.ptp(X, axis=0), 1.0)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) if y.std() > 0 else 1.0
        Xn = (X - self.x_shift_) / self.x_scale_
        yn = (y - self.y_mean_) / self.y_std_
        self.X_train_, self.y_train_ = X, y
        self.Xn_, self.yn_ = Xn, yn
        self.sparse_ = (X.shape[0] > self.sparse_threshold) if self.sparse == "auto" else bool(self.sparse)
        seed = seed_int(self.rng)
        with _torch_seed(seed):
            if self.sparse_:
                self._fit_sparse(Xn, yn, seed)
            else:
                self._fit_exact(Xn, yn)
        self._precompute()
        self.training_ = {"n_runs": int(X.shape[0]), "wall_time": time.perf_counter() - t0}
        return self

    def _fit_exact(self, Xn, yn) -> None:
        tX = torch.as_tensor(Xn, dtype=torch.float64)
        ty = torch.as_tensor(yn, dtype=torch.float64)
        state = None
        for attempt in ("lbfgs", "adam"):
            lik = gpytorch.likelihoods.GaussianLikelihood(
                noise_constraint=gpytorch.constraints.GreaterThan(1e-8)
            ).double()
            model = _ExactGP(tX, ty, lik).double()
            lik.noise = 1e-4
            model.covar_module.base_kernel.lengthscale = 0.3
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
            model.train()
            lik.train()
            try:
                if attempt == "lbfgs":
                    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=200,
                                            line_search_fn="strong_wolfe", tolerance_grad=1e-7)

                    def closure():
                        opt.zero_grad()
                        with gpytorch.settings.max_cholesky_size(100000):
                            loss = -mll(model(tX), ty)
                        loss.backward()
                        return loss

                    opt.step(closure)
                else:  # robust fallback when L-BFGS's line search diverges
                    opt = torch.optim.Adam(model.parameters(), lr=0.05)
                    for _ in range(300):
                        opt.zero_grad()
                        with gpytorch.settings.max_cholesky_size(100000):
                            loss = -mll(model(tX), ty)
                        loss.backward()
                        opt.step()
                ok = all(torch.isfinite(p).all() for p in model.parameters())
            except (RuntimeError, ValueError):  # NanError / NotPSDError subclass RuntimeError
                ok = False
            if ok:
                state = attempt
                break
        if state is None:
            raise RuntimeError(
                "GP hyperparameter fit failed (non-finite marginal likelihood) with L-BFGS and "
                "Adam; check the training outputs for extreme values or duplicated inputs."
            )
        self.fit_method_ = state
        model.eval()
        lik.eval()
        self.model_, self.likelihood_ = model, lik

    def _fit_sparse(self, Xn, yn, seed) -> None:
        gen = np.random.default_rng(seed)
        m = min(self.n_inducing, Xn.shape[0])
        Z = torch.as_tensor(Xn[gen.choice(Xn.shape[0], m, replace=False)], dtype=torch.float64)
        model = _SVGP(Z).double()
        lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-6)
        ).double()
        model.covar_module.base_kernel.lengthscale = 0.3
        tX = torch.as_tensor(Xn, dtype=torch.float64)
        ty = torch.as_tensor(yn, dtype=torch.float64)
        model.train()
        lik.train()
        opt = torch.optim.Adam(list(model.parameters()) + list(lik.parameters()), lr=0.03)
        elbo = gpytorch.mlls.VariationalELBO(lik, model, num_data=Xn.shape[0])
        batch = min(512, Xn.shape[0])
        for _ in range(self.n_iter):
            idx = torch.as_tensor(gen.choice(Xn.shape[0], batch, replace=False))
            opt.zero_grad()
            loss = -elbo(model(tX[idx]), ty[idx])
            loss.backward()
            opt.step()
        model.eval()
        lik.eval()
        self.model_, self.likelihood_ = model, lik

    def _hyper(self) -> tuple[np.ndarray, float, float, float]:
        k = self.model_.covar_module
        ls = k.base_kernel.lengthscale.detach().numpy().reshape(-1)
        return (ls, float(k.outputscale.detach()), float(self.model_.mean_module.constant.detach()),
                float(self.likelihood_.noise.detach()))

    def _k(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        ls, os_, _, _ = self._hyper_
        A, B = A / ls, B / ls
        d2 = np.sum(A**2, 1)[:, None] + np.sum(B**2, 1)[None, :] - 2 * A @ B.T
        return os_ * np.exp(-0.5 * np.clip(d2, 0, None))

    def _precompute(self) -> None:
        """Constants of the predictive equations (shared by numpy and pytensor paths)."""
        self._hyper_ = self._hyper()
        ls, os_, c, noise = self._hyper_
        if not self.sparse_:
            K = self._k(self.Xn_, self.Xn_) + noise * np.eye(self.Xn_.shape[0])
            L = np.linalg.cholesky(K)
            self.centres_ = self.Xn_
            self.alpha_ = cho_solve((L, True), self.yn_ - c)
            self.Linv_ = solve_triangular(L, np.eye(L.shape[0]), lower=True)
            self.Sq_ = None
            Kinv = self.Linv_.T @ self.Linv_
            dinv = np.diag(Kinv)
            res = self.alpha_ / dinv  # LOO residuals (Rasmussen & Williams eq. 5.12)
            var = 1.0 / dinv
            self.q2_loo_ = float(1 - np.sum(res**2) / np.sum((self.yn_ - self.yn_.mean()) ** 2))
            self.loo_coverage_ = float(np.mean(np.abs(res) <= 1.959964 * np.sqrt(var)))
        else:
            strat = self.model_.variational_strategy
            Z = strat.inducing_points.detach().numpy()
            jitter = gpytorch.settings.variational_cholesky_jitter.value(torch.float64)
            Kzz = self._k(Z, Z) + jitter * np.eye(Z.shape[0])
            L = np.linalg.cholesky(Kzz)
            self.centres_ = Z
            self.Linv_ = solve_triangular(L, np.eye(L.shape[0]), lower=True)
            m = strat._variational_distribution.variational_mean.detach().numpy()
            Sl = strat._variational_distribution.chol_variational_covar.detach().numpy()
            Sl = np.tril(Sl)
            self.alpha_ = self.Linv_.T @ m  # mean = K_xz L^-T m
            self.Sq_ = Sl.T @ self.Linv_  # var += ||Sl^T L^-1 k_zx||^2
            self.q2_loo_ = np.nan
            self.loo_coverage_ = np.nan

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("This GPSurrogate is not fitted yet; call fit(X, y) first.")

    # ------------------------------------------------------------------ prediction
    def posterior(self, X: np.ndarray, *, observation_noise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance of the latent function at ``X`` (m, d), from gpytorch.

        ``observation_noise=True`` adds the fitted nugget (for coverage of new runs).
        """
        self._check_fitted()
        X = np.atleast_2d(np.asarray(X, float))
        if X.shape[1] != self.Xn_.shape[1]:
            raise ValueError(f"Expected X with {self.Xn_.shape[1]} columns, got shape {X.shape}.")
        Xn = torch.as_tensor((X - self.x_shift_) / self.x_scale_, dtype=torch.float64)
        means, vars_ = [], []
        with torch.no_grad(), gpytorch.settings.fast_pred_var(False), \
                gpytorch.settings.max_cholesky_size(100000), gpytorch.settings.skip_posterior_variances(False):
            for s in range(0, Xn.shape[0], 4096):
                f = self.model_(Xn[s : s + 4096])
                if observation_noise:
                    f = self.likelihood_(f)
                means.append(f.mean.numpy())
                vars_.append(f.variance.numpy())
        mean = np.concatenate(means) * self.y_std_ + self.y_mean_
        var = np.concatenate(vars_) * self.y_std_**2
        return mean, var

    def predict_mean(self, X: np.ndarray) -> np.ndarray:
        """Fast predictive mean in numpy (same equations as :meth:`to_pytensor`)."""
        self._check_fitted()
        X = np.atleast_2d(np.asarray(X, float))
        out = np.empty(X.shape[0])
        c = self._hyper_[2]
        for s in range(0, X.shape[0], 8192):
            Xn = (X[s : s + 8192] - self.x_shift_) / self.x_scale_
            out[s : s + 8192] = c + self._k(Xn, self.centres_) @ self.alpha_
        return out * self.y_std_ + self.y_mean_

    def to_pytensor(self, X: Any) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """Predictive mean and latent variance at ``X`` (m, d) as pytensor expressions."""
        self._check_fitted()
        ls, os_, c, _ = self._hyper_
        X = pt.as_tensor_variable(X)
        Xs = (X - self.x_shift_) / (self.x_scale_ * ls)
        C = pt.constant(self.centres_ / ls)
        d2 = pt.sum(Xs**2, axis=1)[:, None] + pt.sum(C**2, axis=1)[None, :] - 2 * pt.dot(Xs, C.T)
        Kx = os_ * pt.exp(-0.5 * pt.maximum(d2, 0.0))
        mean = (c + pt.dot(Kx, pt.constant(self.alpha_))) * self.y_std_ + self.y_mean_
        A = pt.dot(pt.constant(self.Linv_), Kx.T)
        var = os_ - pt.sum(A**2, axis=0)
        if self.Sq_ is not None:
            var = var + pt.sum(pt.dot(pt.constant(self.Sq_), Kx.T) ** 2, axis=0)
        return mean, pt.maximum(var, 1e-12) * self.y_std_**2

    # ------------------------------------------------------------------ sample paths
    def sample_posterior(self, X: np.ndarray, n_paths: int, *, rng: RNGLike = None) -> np.ndarray:
        """Joint posterior draws of the latent function at the points ``X`` (m, d).

        Exact GP only; exact joint Gaussian sampling (Cholesky of the m x m posterior
        covariance), so keep ``m`` to a few thousand. Returns ``(n_paths, m)``.
        """
        self._check_fitted()
        gen = as_generator(rng)
        X = np.atleast_2d(np.asarray(X, float))
        ls, os_, c, _ = self._hyper_
        Xn = (X - self.x_shift_) / self.x_scale_
        Kx = self._k(Xn, self.centres_)
        mean = c + Kx @ self.alpha_
        A = self.Linv_ @ Kx.T
        cov = self._k(Xn, Xn) - A.T @ A
        if self.Sq_ is not None:
            B = self.Sq_ @ Kx.T
            cov = cov + B.T @ B
        jitter = 1e-10 * os_
        for _ in range(8):
            try:
                L = np.linalg.cholesky(cov + jitter * np.eye(cov.shape[0]))
                break
            except np.linalg.LinAlgError:
                jitter *= 10
        else:
            raise np.linalg.LinAlgError("Posterior covariance is not positive definite.")
        f = mean[None, :] + gen.standard_normal((n_paths, X.shape[0])) @ L.T
        return f * self.y_std_ + self.y_mean_

    def content_hash(self) -> str:
        """Hash of the fitted hyperparameters and training data (for twin provenance)."""
        self._check_fitted()
        h = hashlib.sha256()
        for a in (self.X_train_, self.y_train_, self.alpha_, np.asarray(self._hyper_[0])):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
