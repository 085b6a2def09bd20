"""Sparse polynomial chaos expansion (chaospy basis, LARS selection from scikit-learn).

The basis is chaospy's orthonormal expansion of the input distribution with hyperbolic
(q-norm) truncation. Terms are ranked by least-angle regression (``sklearn.linear_model.
lars_path``); along the LARS path the coefficients are refitted by least squares on the active
set and the set with the smallest closed-form leave-one-out error is kept ("hybrid LAR",
Blatman & Sudret 2011). The degree is chosen the same way. Sobol indices follow from the
coefficients of the orthonormal basis (Sudret 2008).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import chaospy
import numpy as np
import pytensor.tensor as pt
from sklearn.linear_model import lars_path

from ..exceptions import DependentInputsError
from ..spaces import ParameterSpace

__all__ = ["PCESurrogate"]

_UNI_CACHE: dict[tuple[str, int], np.ndarray] = {}


def _loo(Psi: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and closed-form leave-one-out residuals ``r_i / (1 - h_ii)``."""
    Q, R = np.linalg.qr(Psi)
    coef = np.linalg.lstsq(R, Q.T @ y, rcond=None)[0]
    h = np.sum(Q**2, axis=1)
    res = (y - Psi @ coef) / np.clip(1.0 - h, 1e-10, None)
    return coef, res


class PCESurrogate:
    """Sparse PCE surrogate of a scalar model.

    Parameters
    ----------
    space : ParameterSpace
        Independent input distribution (defines the orthonormal basis).
    max_order : int
        Largest total degree tried.
    q_norm : float
        Hyperbolic truncation (1 = total degree; smaller drops high interactions).

    Attributes
    ----------
    order_ : int
        Selected degree.
    coef_ : ndarray
        Coefficients of the selected orthonormal terms.
    multi_index_ : ndarray, shape (n_terms, d)
        Degrees of each selected term.
    loo_mse_ : float
        Leave-one-out mean squared error (the predictive variance of the surrogate).
    q2_loo_ : float
        Leave-one-out ``Q^2 = 1 - LOO-MSE / Var(y)``.
    training_ : dict
        ``n_runs`` and ``wall_time`` of fitting (set by :func:`train_surrogate` to include the
        simulator's runs).
    """

    kind = "pce"

    def __init__(self, space: ParameterSpace, *, max_order: int = 14, q_norm: float = 0.75):
        if not isinstance(space, ParameterSpace):
            raise TypeError(f"PCESurrogate needs a ParameterSpace, got {type(space).__name__}.")
        if space.dependent:
            raise DependentInputsError(
                "PCE needs independent inputs (an orthonormal product basis); this space is "
                "dependent. Use a GP surrogate or Shapley effects."
            )
        if max_order < 1:
            raise ValueError(f"`max_order` must be >= 1, got {max_order}.")
        if not 0 < q_norm <= 1:
            raise ValueError(f"`q_norm` must be in (0, 1], got {q_norm}.")
        self.space = space
        self.max_order = int(max_order)
        self.q_norm = float(q_norm)

    # ------------------------------------------------------------------ fitting
    def _univariate(self, order: int) -> list[np.ndarray]:
        """Monomial coefficients ``A[k, m]`` of the orthonormal polynomials of each marginal."""
        mats = []
        for marg in self.space._marg:
            key = (repr(marg), self.max_order)
            if key not in _UNI_CACHE:
                polys = chaospy.generate_expansion(self.max_order, marg, normed=True)
                A = np.zeros((self.max_order + 1, self.max_order + 1))
                for k, p in enumerate(polys):
                    e = np.asarray(p.exponents).reshape(-1)
                    A[k, e] = np.asarray(p.coefficients, float)
                _UNI_CACHE[key] = A
            mats.append(_UNI_CACHE[key][: order + 1, : order + 1])
        return mats

    def _basis(self, order: int):
        idx = np.asarray(
            chaospy.glexindex(0, order + 1, self.space.dim, cross_truncation=self.q_norm), int
        )
        return self._univariate(order), idx

    @staticmethod
    def _design_matrix(X: np.ndarray, mats: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
        Psi = np.ones((X.shape[0], idx.shape[0]))
        for j, A in enumerate(mats):
            V = np.vander(X[:, j], A.shape[1], increasing=True) @ A.T  # (n, order+1)
            Psi *= V[:, idx[:, j]]
        return Psi

    def _fit_order(self, X: np.ndarray, y: np.ndarray, order: int):
        mats, idx = self._basis(order)
        Psi = self._design_matrix(X, mats, idx)
        n = X.shape[0]
        const = np.where(idx.sum(axis=1) == 0)[0][0]
        yc = y - y.mean()
        _, active, _ = lars_path(np.delete(Psi, const, axis=1), yc, method="lar",
                                 max_iter=min(n // 2, Psi.shape[1] - 1))
        others = np.delete(np.arange(Psi.shape[1]), const)
        order_terms = [const] + [int(others[a]) for a in active]
        kmax = min(len(order_terms), max(1, n // 2))
        grid = np.unique(np.round(np.geomspace(1, kmax, min(kmax, 25))).astype(int))
        best = None
        for k in grid:
            sel = order_terms[:k]
            coef, res = _loo(Psi[:, sel], y)
            mse = float(np.mean(res**2))
            if best is None or mse < best[0]:
                best = (mse, sel, coef)
        mse, sel, coef = best
        return mse, mats, idx, sel, coef

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PCESurrogate":
        """Fit on a design ``X`` (n, d) and outputs ``y`` (n,)."""
        t0 = time.perf_counter()
        X = np.asarray(X, float)
        y = np.asarray(y, float).reshape(-1)
        if X.ndim != 2 or X.shape[1] != self.space.dim or X.shape[0] != y.size:
            raise ValueError(
                f"Expected X of shape (n, {self.space.dim}) and y of shape (n,), got {X.shape} "
                f"and {y.shape}."
            )
        if X.shape[0] < 4:
            raise ValueError(f"PCE needs at least 4 training runs, got {X.shape[0]}.")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError("Training data contain NaN or inf.")
        best = None
        worse = 0
        for order in range(1, self.max_order + 1):
            cand = self._fit_order(X, y, order)
            if best is None or cand[0] < best[0][0]:
                best, worse = (cand, order), 0
            else:
                worse += 1
                if worse >= 2:
                    break
        (mse, mats, idx, sel, coef), order = best
        self.order_ = order
        self.multi_index_ = idx[sel]
        self.coef_ = np.asarray(coef, float)
        self.univariate_ = mats
        self.loo_mse_ = mse
        var_y = float(np.var(y))
        self.q2_loo_ = 1.0 - mse / var_y if var_y > 0 else np.nan
        self.n_train_ = X.shape[0]
        self.training_ = {"n_runs": int(X.shape[0]), "wall_time": time.perf_counter() - t0}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("This PCESurrogate is not fitted yet; call fit(X, y) first.")

    # ------------------------------------------------------------------ prediction
    def posterior(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance at ``X`` (m, d); the variance is the LOO MSE."""
        self._check_fitted()
        X = np.atleast_2d(np.asarray(X, float))
        if X.shape[1] != self.space.dim:
            raise ValueError(f"Expected X with {self.space.dim} columns, got shape {X.shape}.")
        mean = self._design_matrix(X, self.univariate_, self.multi_index_) @ self.coef_
        return mean, np.full(mean.shape, self.loo_mse_)

    def to_pytensor(self, X: Any) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """Mean (polynomial expression) and variance (LOO MSE) as pytensor expressions."""
        self._check_fitted()
        X = pt.as_tensor_variable(X)
        powers = pt.constant(np.arange(self.order_ + 1, dtype="float64"))
        Psi = None
        for j, A in enumerate(self.univariate_):
            V = pt.dot(X[:, j][:, None] ** powers[None, :], pt.constant(A.T))
            term = V[:, self.multi_index_[:, j]]
            Psi = term if Psi is None else Psi * term
        mean = pt.dot(Psi, pt.constant(self.coef_))
        return mean, pt.ones_like(mean) * self.loo_mse_

    # ------------------------------------------------------------------ indices
    def sobol_indices(self) -> dict[str, np.ndarray]:
        """First-order ``S1``, total ``ST`` and second-order ``S2`` indices from coefficients."""
        self._check_fitted()
        idx, c2 = self.multi_index_, self.coef_**2
        nz = idx > 0
        keep = nz.any(axis=1)
        var = c2[keep].sum()
        d = idx.shape[1]
        if var <= 0:
            return {"S1": np.zeros(d), "ST": np.zeros(d), "S2": np.zeros((d, d)), "variance": 0.0}
        only = nz.sum(axis=1)
        S1 = np.array([c2[(only == 1) & nz[:, i]].sum() for i in range(d)]) / var
        ST = np.array([c2[nz[:, i]].sum() for i in range(d)]) / var
        S2 = np.zeros((d, d))
        for i in range(d):
            for j in range(i + 1, d):
                S2[i, j] = c2[(only == 2) & nz[:, i] & nz[:, j]].sum() / var
        return {"S1": S1, "ST": ST, "S2": S2, "variance": float(var)}

    def content_hash(self) -> str:
        """Hash of the fitted polynomial (for twin provenance)."""
        self._check_fitted()
        h = hashlib.sha256()
        h.update(self.multi_index_.tobytes())
        h.update(self.coef_.tobytes())
        for A in self.univariate_:
            h.update(A.tobytes())
        h.update(np.float64(self.loo_mse_).tobytes())
        return h.hexdigest()
