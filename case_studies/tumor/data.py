"""Mouse tumor-volume series (Benzekry et al. 2014; Vaghi et al. 2020).

Two tab-separated files with columns ``ID`` (mouse), ``Time`` (days after injection of the
tumor cells) and ``Observation`` (tumor volume in mm³, caliper measurements):

- ``tumor_lung_llc_volumes.tsv``: Lewis lung carcinoma, 20 mice (Benzekry et al. 2014);
- ``tumor_breast_volumes.tsv``: orthotopic breast tumors, 66 mice (Vaghi et al. 2020).

Unit checks (heuristics, documented so that a user can judge them):

- volumes must be >= 0; a *largest* volume below 20 means the file is almost certainly in cm³
  (mL) rather than mm³ (the largest tumors in these experiments reach 1000-2500 mm³, and
  caliper measurements start around 10-50 mm³), so it is rejected with a message to multiply
  by 1000; a largest volume above 1e5 mm³ (100 mL, more than a mouse) suggests µL/µm³-type
  mistakes and is rejected too;
- time must lie in [0, 365] days: a larger value suggests hours.

Volumes equal to 0 (tumor not palpable; two rows of the breast data) are kept and flagged by
the boolean coordinate ``below_detection``; a log-normal observation model must leave them out
or treat them as censored.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import xarray as xr

from vvuq_twin import TwinData

from .._data import (
    CaseDataError,
    Provenance,
    check_duplicates,
    check_monotone,
    file_line,
    holdout_latest,
    read_table,
    resolve_data_dir,
    verify_checksum,
)

__all__ = ["TUMOR_DATASETS", "load_tumor", "tumor_twin_data", "decision_day", "split_at_decision_day"]

_CITATION_BENZEKRY = (
    "Benzekry S, Lamont C, Beheshti A, Tracz A, Ebos JML, Hlatky L, Hahnfeldt P (2014). "
    "Classical mathematical models for description and prediction of experimental tumor "
    "growth. PLOS Comput Biol 10(8):e1003800. doi:10.1371/journal.pcbi.1003800"
)
_CITATION_VAGHI = (
    "Vaghi C, Rodallec A, Fanciullino R, Ciccolini J, Mochel JP, Mastri M, Poignard C, Ebos JML, "
    "Benzekry S (2020). Population modeling of tumor growth curves and the reduced Gompertz "
    "model improve prediction of the age of experimental tumors. PLOS Comput Biol "
    "16(2):e1007178. doi:10.1371/journal.pcbi.1007178"
)

#: Available tumor datasets: name -> (file, description, citation).
TUMOR_DATASETS: dict[str, tuple[str, str, str]] = {
    "lung": (
        "tumor_lung_llc_volumes.tsv",
        "Lewis lung carcinoma (LLC) tumor volumes in mice after subcutaneous injection of the "
        "cells, caliper measurements (experimental details: Benzekry et al. 2014)",
        _CITATION_BENZEKRY + "; reused in " + _CITATION_VAGHI,
    ),
    "breast": (
        "tumor_breast_volumes.tsv",
        "Orthotopic breast tumor volumes in mice, caliper measurements (experimental details: "
        "Vaghi et al. 2020)",
        _CITATION_VAGHI,
    ),
}

_SOURCE = (
    "public repository cristinavaghi/plumky (data/{name}_vol_data.txt), copied to the shared "
    "data directory"
)
_LICENCE = "GPL-3.0 (licence of the plumky repository that distributes the data)"

MAX_DAYS = 365.0
MIN_MAX_VOLUME_MM3 = 20.0
MAX_VOLUME_MM3 = 1.0e5


def load_tumor(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    dataset: Literal["lung", "breast"] = "lung",
    holdout_fraction: float = 0.25,
    verify: bool = True,
) -> tuple[xr.Dataset, Provenance]:
    """Load a mouse tumor-volume dataset.

    Parameters
    ----------
    data_dir : path, optional
        Directory holding the files and ``SHA256SUMS``; default ``$VVUQ_TWIN_DATA``.
    dataset : {"lung", "breast"}
        Which experiment.
    holdout_fraction : float
        Fraction of each mouse's series, the *latest* measurements, held out for validation
        (at least one per mouse with more than two measurements; two are always kept).
    verify : bool
        Check the file's SHA-256 against ``SHA256SUMS``.

    Returns
    -------
    data : xarray.Dataset
        Variable ``volume`` (mm³) on dim ``obs`` with coords ``subject`` (str), ``time``
        (days), ``holdout`` (bool) and ``below_detection`` (bool, volume == 0).
    provenance : Provenance
    """
    if dataset not in TUMOR_DATASETS:
        raise ValueError(
            f"Unknown tumor dataset {dataset!r}. Known datasets: {sorted(TUMOR_DATASETS)}."
        )
    filename, description, citation = TUMOR_DATASETS[dataset]
    ddir = resolve_data_dir(data_dir)
    path, digest, verified = verify_checksum(ddir, filename, verify=verify)
    df = read_table(path, sep="\t", required=["ID", "Time", "Observation"], numeric=["Time", "Observation"])
    df["ID"] = df["ID"].astype(str).str.strip()
    empty = np.flatnonzero((df["ID"] == "").to_numpy())
    if empty.size:
        raise CaseDataError(f"{filename}, line {file_line(empty[0])}, column 'ID': empty mouse ID.")
    _check_units(df, filename)
    check_duplicates(df, ["ID", "Time"], filename)
    check_monotone(df, "ID", "Time", filename, what="time (days)")
    hold = holdout_latest(df, "ID", "Time", fraction=holdout_fraction)
    vol = df["Observation"].to_numpy(dtype=float)
    zero = vol == 0.0
    notes = []
    if zero.any():
        notes.append(
            f"{int(zero.sum())} volume(s) equal to 0 mm³ (not palpable) at lines "
            f"{[file_line(i) for i in np.flatnonzero(zero)]}: flagged `below_detection`; leave "
            "them out of a log-normal likelihood or treat them as censored."
        )
    ds = xr.Dataset(
        {"volume": ("obs", vol, {"units": "mm^3", "long_name": "tumor volume"})},
        coords={
            "obs": np.arange(len(df)),
            "subject": ("obs", df["ID"].to_numpy(dtype=str)),
            "time": ("obs", df["Time"].to_numpy(dtype=float), {"units": "days after injection"}),
            "holdout": ("obs", hold),
            "below_detection": ("obs", zero),
        },
    )
    prov = Provenance(
        case="tumor",
        dataset=dataset,
        file=filename,
        sha256=digest,
        checksum_verified=verified,
        source=_SOURCE.format(name="lung" if dataset == "lung" else "breast"),
        citation=citation,
        licence=_LICENCE,
        description=description,
        units={"volume": "mm^3", "time": "days after injection", "subject": "mouse ID"},
        holdout={
            "rule": f"latest {holdout_fraction:g} of each mouse's measurements (>= 1, keeping >= 2)",
            "fraction": float(holdout_fraction),
            "n_train": int((~hold).sum()),
            "n_holdout": int(hold.sum()),
            "n_subjects": int(df["ID"].nunique()),
        },
        notes=tuple(notes),
    )
    ds.attrs.update(prov.to_attrs())
    return ds, prov


def _check_units(df, filename: str) -> None:
    t = df["Time"].to_numpy(dtype=float)
    v = df["Observation"].to_numpy(dtype=float)
    neg = np.flatnonzero(t < 0)
    if neg.size:
        raise CaseDataError(
            f"{filename}, line {file_line(neg[0])}, column 'Time': negative time {t[neg[0]]:g}; "
            "times are days after tumor-cell injection (>= 0)."
        )
    late = np.flatnonzero(t > MAX_DAYS)
    if late.size:
        raise CaseDataError(
            f"{filename}, line {file_line(late[0])}, column 'Time': {t[late[0]]:g} is more than "
            f"{MAX_DAYS:g} days after injection; the time unit looks wrong (hours?). Convert "
            "'Time' to days."
        )
    negv = np.flatnonzero(v < 0)
    if negv.size:
        raise CaseDataError(
            f"{filename}, line {file_line(negv[0])}, column 'Observation': negative tumor volume "
            f"{v[negv[0]]:g}."
        )
    vmax = float(v.max())
    imax = int(np.argmax(v))
    if vmax < MIN_MAX_VOLUME_MM3:
        raise CaseDataError(
            f"{filename}, column 'Observation': the largest volume is {vmax:g} (line "
            f"{file_line(imax)}), far below the 10^2-10^3 mm³ these experiments reach: the "
            "volumes look like cm³ (mL), not mm³. Multiply 'Observation' by 1000."
        )
    if vmax > MAX_VOLUME_MM3:
        raise CaseDataError(
            f"{filename}, line {file_line(imax)}, column 'Observation': volume {vmax:g} mm³ "
            f"exceeds {MAX_VOLUME_MM3:g} mm³ (more than a mouse); the volumes are not in mm³."
        )


def tumor_twin_data(ds: xr.Dataset, part: Literal["train", "holdout", "all"] = "train") -> TwinData:
    """TwinData of a loaded tumor dataset: ``x`` = time (days), ``y`` = log volume, unit = mouse.

    Volumes of 0 mm³ (``below_detection``) are left out, since the log-normal error model
    (Gaussian on log V) cannot hold them.
    """
    if part not in ("train", "holdout", "all"):
        raise ValueError(f"part must be 'train', 'holdout' or 'all', got {part!r}.")
    keep = ~ds["below_detection"].values
    if part != "all":
        keep &= ds["holdout"].values == (part == "holdout")
    sub = ds.isel(obs=np.flatnonzero(keep))
    return TwinData(x=sub["time"].values, y=np.log(sub["volume"].values),
                    unit=sub["subject"].values, input_names=["time"], obs=sub["obs"].values)


def decision_day(ds: xr.Dataset, threshold: float, open_fraction: float = 0.85) -> float:
    """The latest measurement day at which at least ``open_fraction`` of the mice are still open.

    A mouse's decision (when to image next) is open while none of its readings so far has
    reached ``threshold``. Volumes of 0 mm³ are left out; every mouse must have at least one
    reading up to that day.

    Raises
    ------
    ValueError
        When ``open_fraction`` is outside (0, 1], when no day keeps that many decisions open, or
        when some mouse has no reading up to the decision day.
    """
    if not 0.0 < float(open_fraction) <= 1.0:
        raise ValueError(f"open_fraction must lie in (0, 1], got {open_fraction!r}.")
    keep = ~ds["below_detection"].values
    t = ds["time"].values[keep]
    v = ds["volume"].values[keep]
    u = ds["subject"].values[keep].astype(str)
    mice = sorted(set(u.tolist()))
    first_hit = {m: (t[(u == m) & (v >= threshold)].min() if np.any((u == m) & (v >= threshold)) else np.inf)
                 for m in mice}
    days = np.unique(t)
    n_open = np.array([sum(first_hit[m] > d for m in mice) for d in days])
    ok = days[n_open >= open_fraction * len(mice) - 1e-9]
    if ok.size == 0:
        raise ValueError(f"Already the first reading day has fewer than {open_fraction:.0%} of the mice below "
                         f"{threshold:g} mm³: no decision day keeps the decisions open; raise the threshold.")
    d = float(ok.max())
    late = sorted(set(mice) - set(u[t <= d].tolist()))
    if late:
        raise ValueError(f"Mice {late} have no reading up to the decision day {d:g}: they cannot be "
                         "calibrated before the decision; raise the threshold or leave them out.")
    return d


def split_at_decision_day(ds: xr.Dataset, threshold: float, open_fraction: float = 0.85) -> dict:
    """Calibration (readings up to :func:`decision_day`) and hold-out (after it) of a tumor dataset.

    Returns
    -------
    dict
        ``t_now`` (the decision day), ``calibration`` and ``holdout`` (TwinData: x = time,
        y = log volume, unit = mouse), ``candidates`` (TwinData: the first held-back reading of
        each mouse, the measurements a design step may choose) and ``readings`` (mouse ->
        (times, volumes) of all its readings, from which the crossing of the threshold is read
        to judge the decisions: a reading at the decision day may already be above it).
    """
    t_now = decision_day(ds, threshold, open_fraction)
    keep = ~ds["below_detection"].values
    sub = ds.isel(obs=np.flatnonzero(keep))
    t = sub["time"].values
    u = sub["subject"].values.astype(str)
    y = np.log(sub["volume"].values)

    def td(sel: np.ndarray) -> TwinData:
        return TwinData(x=t[sel], y=y[sel], unit=u[sel], input_names=["time"], obs=sub["obs"].values[sel])

    cal, hold = t <= t_now, t > t_now
    first = np.zeros(t.size, bool)
    readings = {}
    for m in dict.fromkeys(u.tolist()):
        idx = np.flatnonzero(hold & (u == m))
        if idx.size:
            first[idx[np.argmin(t[idx])]] = True
        every = np.flatnonzero(u == m)
        readings[m] = (t[every].tolist(), np.exp(y[every]).tolist())
    return {"t_now": t_now, "calibration": td(cal), "holdout": td(hold), "candidates": td(first),
            "readings": readings}
