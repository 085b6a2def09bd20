"""Virkler fatigue crack-growth data (Virkler, Hillberry & Goel 1979).

68 replicate constant-amplitude tests of 2024-T3 aluminium centre-cracked panels. For each
specimen the number of load cycles (``cycles``, the *measured* variable) at which the crack
half-length reached each of 164 fixed values (``crack_half_length_mm``, 9.0 to 49.8 mm) was
recorded. Long format ``specimen, crack_half_length_mm, cycles``.

Test conditions as commonly restated in the literature (to be checked against the paper before
relying on them): panel width 152.4 mm, thickness 2.54 mm, stress ratio R = 0.2, stress range
about 48.3 MPa. They are exported as :data:`VIRKLER_CONDITIONS`.

Unit checks (heuristics):

- crack half-lengths must lie in (0, W/2] = (0, 76.2] mm for a 152.4 mm wide panel. A largest
  half-length below 1 means the column is in metres (9 mm = 0.009 m): rejected with a message
  to multiply by 1000. A largest value above 76.2 cannot be a half-length in mm (it would cut
  the panel): rejected (µm? full length 2a?).
- cycles must be >= 0 and whole numbers (a fractional count suggests thousands or millions of
  cycles): rejected with the line.
- within each specimen the crack length must increase strictly (in file order) and the cycles
  must not decrease; a repeated (specimen, crack length) pair is a duplicate.
"""

from __future__ import annotations

import os

from typing import Literal, Sequence

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

__all__ = ["VIRKLER_FILE", "VIRKLER_CONDITIONS", "load_virkler", "virkler_twin_data"]

VIRKLER_FILE = "virkler_crack_growth.csv"

#: Test conditions of the Virkler experiment as restated in the literature (SI units).
VIRKLER_CONDITIONS: dict[str, float] = {
    "width_mm": 152.4,
    "thickness_mm": 2.54,
    "stress_ratio": 0.2,
    "stress_range_mpa": 48.3,
    "initial_half_length_mm": 9.0,
}

_CITATION = (
    "Virkler DA, Hillberry BM, Goel PK (1979). The statistical nature of fatigue crack "
    "propagation. J Eng Mater Technol 101(2):148-153. doi:10.1115/1.3443666 (data collected by "
    "B. M. Hillberry)"
)
_SOURCE = (
    "data/Virkler.RData of the CRAN package BaPreStoPro 0.1 (S. Hermann), converted to CSV in "
    "the shared data directory"
)
_LICENCE = "GPL (>= 2) (licence of the BaPreStoPro package that distributes the data)"


def load_virkler(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    holdout_fraction: float = 0.25,
    verify: bool = True,
) -> tuple[xr.Dataset, Provenance]:
    """Load the Virkler crack-growth data.

    Parameters
    ----------
    data_dir : path, optional
        Directory holding the file and ``SHA256SUMS``; default ``$VVUQ_TWIN_DATA``.
    holdout_fraction : float
        Fraction of each specimen's record, its *latest* (largest-cycle, longest-crack) part,
        held out for validation.
    verify : bool
        Check the file's SHA-256 against ``SHA256SUMS``.

    Returns
    -------
    data : xarray.Dataset
        Variable ``cycles`` on dim ``obs`` with coords ``specimen`` (str),
        ``crack_half_length`` (mm) and ``holdout`` (bool). Test conditions in ``attrs``.
    provenance : Provenance
    """
    ddir = resolve_data_dir(data_dir)
    path, digest, verified = verify_checksum(ddir, VIRKLER_FILE, verify=verify)
    cols = ["specimen", "crack_half_length_mm", "cycles"]
    df = read_table(path, sep=",", required=cols, numeric=["crack_half_length_mm", "cycles"])
    df["specimen"] = df["specimen"].astype(str).str.strip()
    _check_units(df)
    check_duplicates(df, ["specimen", "crack_half_length_mm"], VIRKLER_FILE)
    check_monotone(df, "specimen", "crack_half_length_mm", VIRKLER_FILE, what="crack half-length (mm)")
    for spec, grp in df.groupby("specimen", sort=False):
        n = grp["cycles"].to_numpy(dtype=float)
        bad = np.flatnonzero(np.diff(n) < 0)
        if bad.size:
            i = int(grp.index[bad[0] + 1])
            raise CaseDataError(
                f"{VIRKLER_FILE}, line {file_line(i)}, column 'cycles': cycles decrease within "
                f"specimen={spec!r} ({n[bad[0]]:g} then {n[bad[0] + 1]:g}) while the crack grows; "
                "a crack cannot grow backwards in time. Fix or sort the rows."
            )
    hold = holdout_latest(df, "specimen", "cycles", fraction=holdout_fraction)
    ds = xr.Dataset(
        {"cycles": ("obs", df["cycles"].to_numpy(dtype=float), {"units": "load cycles"})},
        coords={
            "obs": np.arange(len(df)),
            "specimen": ("obs", df["specimen"].to_numpy(dtype=str)),
            "crack_half_length": (
                "obs",
                df["crack_half_length_mm"].to_numpy(dtype=float),
                {"units": "mm", "long_name": "crack half-length a"},
            ),
            "holdout": ("obs", hold),
        },
        attrs={f"condition_{k}": v for k, v in VIRKLER_CONDITIONS.items()},
    )
    prov = Provenance(
        case="airframe",
        dataset="virkler",
        file=VIRKLER_FILE,
        sha256=digest,
        checksum_verified=verified,
        source=_SOURCE,
        citation=_CITATION,
        licence=_LICENCE,
        description=(
            "Cycles at which each of 68 replicate 2024-T3 aluminium centre-cracked panels reached "
            "fixed crack half-lengths (constant-amplitude loading)"
        ),
        units={"cycles": "load cycles", "crack_half_length": "mm", "specimen": "specimen number"},
        holdout={
            "rule": f"latest {holdout_fraction:g} of each specimen's record (largest cycles)",
            "fraction": float(holdout_fraction),
            "n_train": int((~hold).sum()),
            "n_holdout": int(hold.sum()),
            "n_specimens": int(df["specimen"].nunique()),
        },
        notes=(
            "Test conditions (W = 152.4 mm, t = 2.54 mm, R = 0.2, stress range 48.3 MPa) as "
            "restated in the literature; check against the original paper before relying on them.",
        ),
    )
    ds.attrs.update(prov.to_attrs())
    return ds, prov


def _check_units(df) -> None:
    a = df["crack_half_length_mm"].to_numpy(dtype=float)
    n = df["cycles"].to_numpy(dtype=float)
    half_width = VIRKLER_CONDITIONS["width_mm"] / 2
    amax, imax = float(a.max()), int(np.argmax(a))
    if amax < 1.0:
        raise CaseDataError(
            f"{VIRKLER_FILE}, column 'crack_half_length_mm': the largest half-length is {amax:g} "
            f"(line {file_line(imax)}) but the crack half-lengths of these panels are 9-50 mm: the "
            "column looks like metres. Multiply it by 1000 to give millimetres."
        )
    if amax > half_width:
        raise CaseDataError(
            f"{VIRKLER_FILE}, line {file_line(imax)}, column 'crack_half_length_mm': {amax:g} mm "
            f"exceeds the panel half-width {half_width:g} mm; the values are not half-lengths in "
            "mm (micrometres? full crack length 2a?)."
        )
    nonpos = np.flatnonzero(a <= 0)
    if nonpos.size:
        raise CaseDataError(
            f"{VIRKLER_FILE}, line {file_line(nonpos[0])}, column 'crack_half_length_mm': "
            f"non-positive crack half-length {a[nonpos[0]]:g}."
        )
    neg = np.flatnonzero(n < 0)
    if neg.size:
        raise CaseDataError(
            f"{VIRKLER_FILE}, line {file_line(neg[0])}, column 'cycles': negative cycle count {n[neg[0]]:g}."
        )
    frac = np.flatnonzero(n != np.round(n))
    if frac.size:
        raise CaseDataError(
            f"{VIRKLER_FILE}, line {file_line(frac[0])}, column 'cycles': {n[frac[0]]:g} is not a "
            "whole number of cycles; the column looks scaled (thousands or millions of cycles?). "
            "Give plain cycle counts."
        )


def virkler_twin_data(
    ds: xr.Dataset,
    part: Literal["train", "holdout", "all"] = "train",
    *,
    specimens: Sequence[str] | None = None,
    cycles_scale: float = 1.0e5,
    drop_initial: bool = True,
) -> TwinData:
    """TwinData of the Virkler data: ``x`` = crack half-length (mm), ``y`` = cycles / ``cycles_scale``.

    Parameters
    ----------
    ds : Dataset
        From :func:`load_virkler`.
    part : {"train", "holdout", "all"}
        Which rows.
    specimens : sequence of str, optional
        Keep only these specimens (e.g. a few for a quick run).
    cycles_scale : float
        Divide cycles by this (10⁵ by default) so that the observations are of order one.
    drop_initial : bool
        Leave out the rows at a = a0 (N = 0 by definition of the test, not a measurement).
    """
    if part not in ("train", "holdout", "all"):
        raise ValueError(f"part must be 'train', 'holdout' or 'all', got {part!r}.")
    keep = np.ones(ds.sizes["obs"], dtype=bool)
    if part != "all":
        keep &= ds["holdout"].values == (part == "holdout")
    if specimens is not None:
        wanted = [str(s) for s in specimens]
        unknown = sorted(set(wanted) - set(ds["specimen"].values.tolist()))
        if unknown:
            raise ValueError(f"Unknown specimen(s) {unknown}; the data have specimens 1-68.")
        keep &= np.isin(ds["specimen"].values, wanted)
    if drop_initial:
        keep &= ds["cycles"].values > 0
    sub = ds.isel(obs=np.flatnonzero(keep))
    return TwinData(x=sub["crack_half_length"].values, y=sub["cycles"].values / cycles_scale,
                    unit=sub["specimen"].values, input_names=["crack_half_length_mm"],
                    obs=sub["obs"].values)
