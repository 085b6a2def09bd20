"""Observed data of a twin, validated before any model is built."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import xarray as xr

from ..exceptions import DataValidationError

__all__ = ["TwinData"]


def _frozen(arr: np.ndarray) -> np.ndarray:
    """A read-only copy: later changes to the caller's array cannot reach the data object."""
    out = np.array(arr, copy=True)
    out.setflags(write=False)
    return out


def _missing_label(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)) and np.isnan(v):
        return True
    if isinstance(v, (str, np.str_)) and not str(v).strip():
        return True
    try:
        import pandas as pd

        return bool(pd.isna(v)) if np.ndim(v) == 0 else False
    except (ImportError, TypeError, ValueError):  # pragma: no cover
        return False


def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataValidationError(
            f"`{name}` must be 1-D (n,) or 2-D (n, n_inputs), got shape {arr.shape}."
        )
    return arr


@dataclass
class TwinData:
    """Inputs, observations and unit labels of a twin.

    Parameters
    ----------
    x : array_like, shape (n,) or (n, d)
        Inputs (e.g. time, load, location) of each observation.
    y : array_like, shape (n,)
        Observations. NaN marks a missing observation only when ``missing="mask"``.
    unit : array_like of str, shape (n,), optional
        Unit (patient, airframe, region) of each observation, for hierarchical twins.
    y_sd : array_like, shape (n,), optional
        Known measurement standard deviation of each observation (heteroscedastic noise).
    input_names : sequence of str, optional
        Names of the input columns (coordinate ``input``).
    obs : sequence, optional
        Labels of the observations (coordinate ``obs``); default 0..n-1.
    missing : {"raise", "mask"}
        What NaN in ``y`` means: an error (default) or a missing observation that is left out of
        the likelihood and predicted.

    Notes
    -----
    The object owns its arrays: ``x``, ``y``, ``unit`` and ``y_sd`` are read-only copies, so
    changing the arrays it was built from (or trying to change its own) cannot alter the data
    after validation. Build a new TwinData (or use :meth:`subset`) for other data.
    """

    x: Any
    y: Any
    unit: Any = None
    y_sd: Any = None
    input_names: Sequence[str] | None = None
    obs: Sequence[Any] | None = None
    missing: Literal["raise", "mask"] = "raise"
    units: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.x = _as_2d(self.x, "x")
        n = self.x.shape[0]
        y = np.asarray(self.y, dtype=float)
        if y.ndim != 1:
            raise DataValidationError(f"`y` must be 1-D with one value per observation, got shape {y.shape}.")
        if y.shape[0] != n:
            raise DataValidationError(
                f"`x` has {n} rows but `y` has {y.shape[0]} values: each observation needs one "
                "input row. Check that x and y are aligned."
            )
        self.y = y
        bad_x = np.argwhere(~np.isfinite(self.x))
        if bad_x.size:
            r, c = bad_x[0]
            raise DataValidationError(
                f"`x` has {len(bad_x)} non-finite value(s), first at row {r}, column {c} "
                f"(value {self.x[r, c]}). Inputs must be finite: drop or impute those rows."
            )
        inf_y = np.flatnonzero(np.isinf(y))
        if inf_y.size:
            raise DataValidationError(
                f"`y` has infinite values at rows {inf_y[:10].tolist()}. Remove them; use NaN "
                "with missing='mask' for missing observations."
            )
        nan_y = np.flatnonzero(np.isnan(y))
        if self.missing not in ("raise", "mask"):
            raise DataValidationError(f"`missing` must be 'raise' or 'mask', got {self.missing!r}.")
        if nan_y.size and self.missing == "raise":
            raise DataValidationError(
                f"`y` has NaN at rows {nan_y[:10].tolist()} ({nan_y.size} in all). If these are "
                "missing observations, pass TwinData(..., missing='mask') to leave them out of "
                "the likelihood (they are still predicted); otherwise fix the data."
            )
        if nan_y.size == n:
            raise DataValidationError("`y` has no observed values (all NaN).")
        if self.unit is not None:
            raw = np.asarray(self.unit, dtype=object)
            if raw.shape != (n,):
                raise DataValidationError(
                    f"`unit` must give one label per observation (shape ({n},)), got shape {raw.shape}."
                )
            bad_u = [i for i, v in enumerate(raw.tolist()) if _missing_label(v)]
            if bad_u:
                raise DataValidationError(
                    f"`unit` has {len(bad_u)} missing label(s) (None, NaN or empty) at rows "
                    f"{bad_u[:10]}: every observation needs the label of its unit. Fill them in "
                    "or drop those rows (they would otherwise become a unit named 'None'/'nan')."
                )
            u = raw.astype(str)
            self.unit = u
            self.units = tuple(dict.fromkeys(u.tolist()))
        if self.y_sd is not None:
            s = np.asarray(self.y_sd, dtype=float)
            if s.shape != (n,):
                raise DataValidationError(f"`y_sd` must have shape ({n},), got {s.shape}.")
            if not np.all(np.isfinite(s)) or np.any(s < 0):
                raise DataValidationError("`y_sd` must be finite and >= 0 everywhere.")
            self.y_sd = s
        self.x, self.y = _frozen(self.x), _frozen(self.y)
        if self.unit is not None:
            self.unit = _frozen(self.unit)
        if self.y_sd is not None:
            self.y_sd = _frozen(self.y_sd)
        if self.input_names is None:
            self.input_names = [f"x{i}" for i in range(self.x.shape[1])]
        self.input_names = [str(v) for v in self.input_names]
        if len(self.input_names) != self.x.shape[1]:
            raise DataValidationError(
                f"`input_names` has {len(self.input_names)} names but x has {self.x.shape[1]} columns."
            )
        if self.obs is None:
            self.obs = list(range(n))
        self.obs = list(self.obs)
        if len(self.obs) != n:
            raise DataValidationError(f"`obs` must have {n} labels, got {len(self.obs)}.")
        if len(set(map(str, self.obs))) != n:
            raise DataValidationError("`obs` labels must be unique.")

    @property
    def n(self) -> int:
        """Number of observations (rows)."""
        return int(self.x.shape[0])

    @property
    def observed_mask(self) -> np.ndarray:
        """True where y is observed (not missing)."""
        return np.isfinite(self.y)

    def to_dataset(self) -> xr.Dataset:
        """The data as an xarray Dataset (dims ``obs``, ``input``)."""
        ds = xr.Dataset(
            {"x": (("obs", "input"), self.x), "y": (("obs",), self.y)},
            coords={"obs": np.asarray(self.obs), "input": list(self.input_names)},
        )
        if self.unit is not None:
            ds = ds.assign_coords(unit_label=("obs", self.unit))
        if self.y_sd is not None:
            ds["y_sd"] = ("obs", self.y_sd)
        return ds

    @property
    def hash(self) -> str:
        """SHA-256 of the data content (inputs, observations, units, known sds)."""
        return self._digest(with_y=True)

    @property
    def structure_hash(self) -> str:
        """SHA-256 of everything but the observed values: inputs, units, known sds, missing mask.

        Two data sets with the same structure hash differ only in ``y`` at the same observed
        positions, so a compiled model of one serves the other (``calibrate`` reuses it).
        """
        return self._digest(with_y=False)

    def _digest(self, with_y: bool) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x).tobytes())
        # the data hash takes the values (NaN marks missing), the structure hash only the mask
        h.update(np.ascontiguousarray(self.y if with_y else self.observed_mask).tobytes())
        if self.unit is not None:
            h.update("\x1f".join(self.unit.tolist()).encode())
        if self.y_sd is not None:
            h.update(np.ascontiguousarray(self.y_sd).tobytes())
        h.update("\x1f".join(map(str, self.obs)).encode())
        return h.hexdigest()

    def subset(self, rows: Any) -> "TwinData":
        """A new TwinData with the given rows (boolean mask or integer index)."""
        idx = np.arange(self.n)[rows]
        return TwinData(
            x=self.x[idx],
            y=self.y[idx],
            unit=None if self.unit is None else self.unit[idx],
            y_sd=None if self.y_sd is None else self.y_sd[idx],
            input_names=self.input_names,
            obs=[self.obs[i] for i in idx],
            missing=self.missing,
        )
