"""Validation domain: where a twin was validated, and how far a new input lies outside it.

A :class:`ValidationDomain` records the validation inputs (rows = validation conditions,
columns = inputs): per-input ranges, the convex hull of the points, and their mean and
covariance for a Mahalanobis distance. :meth:`ValidationDomain.assess` returns, for every new
input row, an extrapolation measure and a boolean flag, and emits
:class:`~vvuq_twin.exceptions.ExtrapolationWarning` when any row leaves the domain.

The domain round-trips through :class:`xarray.Dataset` (NetCDF) and JSON.

It is a plain numpy/xarray component below :mod:`vvuq_twin.inference` (``predict`` flags
extrapolation with it); :mod:`vvuq_twin.validation` re-exports it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from .exceptions import ExtrapolationWarning, ValidationDomainError

__all__ = ["ValidationDomain"]

Criterion = Literal["hull", "range", "mahalanobis"]
_CRITERIA = ("hull", "range", "mahalanobis")


def _as_matrix(x: Any, n_inputs: int | None, where: str) -> np.ndarray:
    if isinstance(x, xr.DataArray):
        x = x.values
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None] if n_inputs in (None, 1) else arr[None, :]
    if arr.ndim != 2:
        raise ValidationDomainError(
            f"{where}: inputs must be a 1-D array (one input) or a 2-D array (rows = points, "
            f"columns = inputs); got shape {arr.shape}."
        )
    if n_inputs is not None and arr.shape[1] != n_inputs:
        raise ValidationDomainError(
            f"{where}: the domain has {n_inputs} input(s) but the new inputs have "
            f"{arr.shape[1]} column(s)."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValidationDomainError(
            f"{where}: inputs contain {int(bad.sum())} NaN/inf value(s) (first at row "
            f"{int(np.argwhere(bad)[0][0])})."
        )
    return arr


class ValidationDomain:
    """The region of input space where a twin was validated.

    Build it with :meth:`from_inputs`; query it with :meth:`assess`.

    Parameters
    ----------
    points : array (n, d)
        Validation inputs.
    names : sequence of str
        Input names (length d).
    criterion : {"hull", "range", "mahalanobis"}
        What :meth:`assess` flags as extrapolation: outside the convex hull (default; falls
        back to the ranges in 1-D or when the hull is degenerate), outside the per-input
        ranges, or a Mahalanobis distance above the largest one among the validation points.
    ridge : float
        Relative ridge added to the covariance diagonal (keeps the Mahalanobis distance finite
        for collinear inputs).
    """

    def __init__(self, points: Any, names: Sequence[str] | None = None, *,
                 criterion: Criterion = "hull", ridge: float = 1e-9) -> None:
        pts = _as_matrix(points, None, "ValidationDomain")
        n, d = pts.shape
        if n < 2:
            raise ValidationDomainError(
                f"ValidationDomain: need at least 2 validation points, got {n}."
            )
        if names is None:
            names = [f"x{i}" for i in range(d)]
        names = [str(s) for s in names]
        if len(names) != d or len(set(names)) != d:
            raise ValidationDomainError(
                f"ValidationDomain: need {d} distinct input names, got {names}."
            )
        if criterion not in _CRITERIA:
            raise ValidationDomainError(
                f"ValidationDomain: criterion must be one of {_CRITERIA}, got {criterion!r}."
            )
        self.points = pts
        self.names = tuple(names)
        self.criterion: Criterion = criterion
        self.ridge = float(ridge)
        self.lower = pts.min(axis=0)
        self.upper = pts.max(axis=0)
        self.mean = pts.mean(axis=0)
        cov = np.atleast_2d(np.cov(pts, rowvar=False))
        scale = np.maximum(np.diag(cov), np.finfo(float).tiny)
        self._cov_inv = np.linalg.pinv(cov + self.ridge * np.diag(scale))
        self.mahalanobis_threshold = float(self._mahalanobis(pts).max())
        self._hull = None
        self.hull_available = False
        if d >= 2 and n >= d + 1:
            from scipy.spatial import ConvexHull, QhullError

            try:
                # facet equations n.x + b <= 0 inside (unit outward normals)
                self._hull = ConvexHull(pts).equations
                self.hull_available = True
            except QhullError:  # degenerate (e.g. collinear) inputs: fall back to the ranges
                self._hull = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_inputs(cls, x: Any, names: Sequence[str] | None = None, *,
                    criterion: Criterion = "hull") -> "ValidationDomain":
        """Record the domain spanned by validation inputs ``x`` (array or DataArray)."""
        if names is None and isinstance(x, xr.DataArray) and x.ndim == 2:
            names = [str(v) for v in x[x.dims[1]].values] if x.dims[1] in x.coords else None
        return cls(x, names, criterion=criterion)

    @classmethod
    def from_data(cls, data: Any, *, criterion: Criterion = "hull") -> "ValidationDomain":
        """Domain of the inputs of a :class:`~vvuq_twin.TwinData` (uses ``x`` and
        ``input_names``)."""
        if not hasattr(data, "x"):
            raise ValidationDomainError(
                f"ValidationDomain.from_data: expected a TwinData (with `x`), got "
                f"{type(data).__name__}; use ValidationDomain.from_inputs(x) for arrays."
            )
        return cls(data.x, getattr(data, "input_names", None), criterion=criterion)

    # -- queries -----------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        """Number of inputs d."""
        return len(self.names)

    def _mahalanobis(self, x: np.ndarray) -> np.ndarray:
        diff = x - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, self._cov_inv, diff), 0.0))

    def assess(self, x: Any, *, warn: bool = True) -> xr.Dataset:
        """Extrapolation measures and flags for new input rows.

        Parameters
        ----------
        x : array (m, d) or (m,) for one input
            New inputs.
        warn : bool
            Emit :class:`~vvuq_twin.exceptions.ExtrapolationWarning` if any row is flagged.

        Returns
        -------
        xarray.Dataset
            dims ``point`` and ``input``: ``range_excess`` (distance beyond the validated range,
            in units of the range width; 0 inside), ``outside_range``, ``mahalanobis``,
            ``extrapolation`` (Mahalanobis distance divided by the largest one among the
            validation points: > 1 is outside the validation ellipsoid), ``in_hull``, and
            ``flag`` (by the domain's criterion).
        """
        arr = _as_matrix(x, self.n_inputs, "ValidationDomain.assess")
        width = np.where(self.upper > self.lower, self.upper - self.lower, 1.0)
        excess = np.maximum(np.maximum(self.lower - arr, arr - self.upper), 0.0) / width
        outside_range = (excess > 0).any(axis=1)
        maha = self._mahalanobis(arr)
        thr = self.mahalanobis_threshold if self.mahalanobis_threshold > 0 else 1.0
        ratio = maha / thr
        if self.hull_available:
            scale = float(np.max(self.upper - self.lower)) or 1.0
            offsets = arr @ self._hull[:, :-1].T + self._hull[:, -1]
            in_hull = offsets.max(axis=1) <= 1e-10 * scale
        else:
            in_hull = ~outside_range
        if self.criterion == "range":
            flag = outside_range
        elif self.criterion == "mahalanobis":
            flag = ratio > 1.0 + 1e-12
        else:
            flag = ~in_hull | outside_range
        ds = xr.Dataset(
            {
                "x": (("point", "input"), arr),
                "range_excess": (("point", "input"), excess),
                "outside_range": ("point", outside_range),
                "mahalanobis": ("point", maha),
                "extrapolation": ("point", ratio),
                "in_hull": ("point", in_hull),
                "flag": ("point", flag),
            },
            coords={"point": np.arange(arr.shape[0]), "input": list(self.names)},
        )
        ds.attrs["criterion"] = self.criterion
        if warn and flag.any():
            idx = np.flatnonzero(flag)
            warnings.warn(
                f"{idx.size} of {arr.shape[0]} prediction input(s) lie outside the validation "
                f"domain (criterion {self.criterion!r}; rows {idx[:10].tolist()}"
                f"{' ...' if idx.size > 10 else ''}; largest extrapolation measure "
                f"{ratio[idx].max():.3g}). Predictions there are extrapolations: validate the "
                "twin there or treat them with caution.",
                ExtrapolationWarning,
                stacklevel=2,
            )
        return ds

    def annotate(self, prediction: xr.Dataset, *, dim: str = "obs",
                 warn: bool = True) -> xr.Dataset:
        """Add ``extrapolation`` and ``out_of_domain`` (along ``dim``) to a prediction Dataset.

        The inputs are read from the coordinates named like the domain's inputs (as written by
        :func:`~vvuq_twin.predict`, e.g. ``x0``), so every prediction carries its
        extrapolation measure and flag.
        """
        missing = [n for n in self.names if n not in prediction.coords]
        if missing:
            raise ValidationDomainError(
                f"ValidationDomain.annotate: the prediction has no input coordinate(s) {missing} "
                f"(coords: {list(prediction.coords)}); the domain's inputs are {list(self.names)}."
            )
        x = np.column_stack([prediction[n].values for n in self.names])
        res = self.assess(x, warn=warn)
        out = prediction.copy()
        out["extrapolation"] = (dim, res["extrapolation"].values)
        out["out_of_domain"] = (dim, res["flag"].values)
        out.attrs["validation_domain_criterion"] = self.criterion
        return out

    def contains(self, x: Any) -> np.ndarray:
        """Boolean array: True where a row lies inside the domain (no warning)."""
        return ~self.assess(x, warn=False)["flag"].values

    # -- persistence -------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """Dataset holding the validation points and the domain summary (NetCDF-saveable)."""
        ds = xr.Dataset(
            {
                "points": (("validation_point", "input"), self.points),
                "lower": ("input", self.lower),
                "upper": ("input", self.upper),
                "mean": ("input", self.mean),
            },
            coords={"input": list(self.names)},
        )
        ds.attrs.update(
            criterion=self.criterion,
            ridge=self.ridge,
            mahalanobis_threshold=self.mahalanobis_threshold,
            kind="vvuq_twin.ValidationDomain",
        )
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> "ValidationDomain":
        """Rebuild a domain from :meth:`to_dataset` output."""
        if "points" not in ds:
            raise ValidationDomainError(
                "ValidationDomain.from_dataset: dataset has no `points` variable; was it "
                "written by ValidationDomain.to_dataset()?"
            )
        return cls(ds["points"].values, [str(v) for v in ds["input"].values],
                   criterion=ds.attrs.get("criterion", "hull"),
                   ridge=float(ds.attrs.get("ridge", 1e-9)))

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text of the domain (written to ``path`` when given)."""
        text = json.dumps({
            "kind": "vvuq_twin.ValidationDomain",
            "names": list(self.names),
            "points": self.points.tolist(),
            "criterion": self.criterion,
            "ridge": self.ridge,
        }, indent=1)
        if path is not None:
            from ._io import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> "ValidationDomain":
        """Load from JSON text or a path written by :meth:`to_json`."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        obj = json.loads(text)
        if obj.get("kind") != "vvuq_twin.ValidationDomain":
            raise ValidationDomainError(
                "ValidationDomain.from_json: not a ValidationDomain JSON document "
                f"(kind={obj.get('kind')!r})."
            )
        return cls(np.asarray(obj["points"], dtype=float), obj["names"],
                   criterion=obj["criterion"], ridge=obj["ridge"])

    def __repr__(self) -> str:
        ranges = ", ".join(f"{n}∈[{lo:.4g}, {hi:.4g}]"
                           for n, lo, hi in zip(self.names, self.lower, self.upper))
        return (f"ValidationDomain({self.points.shape[0]} points; {ranges}; "
                f"criterion={self.criterion!r})")
