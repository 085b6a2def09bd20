"""Shared helpers of the case-study data loaders.

Every loader of :mod:`case_studies` reads a real, published data file from a directory the user
names, checks it against the ``SHA256SUMS`` list kept next to the files, validates its content
(missing columns, non-numeric cells, unit mismatches, duplicates, non-monotone time within a
unit) with errors that name the file, row and column, splits off the latest part of each unit's
record as a hold-out set, and returns an :class:`xarray.Dataset` together with a
:class:`Provenance` record.

Row numbers in error messages are 1-based *file lines* (the header is line 1), so that the
offending line can be opened directly in an editor.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from vvuq_twin.exceptions import DataValidationError, VVUQError

__all__ = [
    "DATA_ENV_VAR",
    "CaseDataError",
    "ChecksumError",
    "DataDirectoryError",
    "Provenance",
    "resolve_data_dir",
    "sha256_file",
    "verify_checksum",
    "read_table",
    "check_duplicates",
    "check_monotone",
    "holdout_latest",
    "file_line",
]

#: Environment variable naming the data directory when ``data_dir`` is not given.
DATA_ENV_VAR = "VVUQ_TWIN_DATA"


class CaseDataError(DataValidationError):
    """A case-study data file is malformed (the message names file, line and column)."""


class ChecksumError(CaseDataError):
    """A data file does not match its entry in ``SHA256SUMS`` (or has none)."""


class DataDirectoryError(VVUQError, FileNotFoundError):
    """No data directory was given, or it does not hold the expected file."""


@dataclass(frozen=True)
class Provenance:
    """Where a case-study dataset comes from and how it was split.

    Parameters
    ----------
    case : str
        Case study (``"tumor"``, ``"airframe"``, ``"climate"``).
    dataset : str
        Dataset name within the case (e.g. ``"lung_llc"``).
    file : str
        File name inside the data directory (or package resource path).
    sha256 : str
        SHA-256 of the file as read.
    checksum_verified : bool
        True when ``sha256`` was checked against ``SHA256SUMS`` and matched.
    source : str
        Where the file was obtained.
    citation : str
        Reference to cite for the measurements.
    licence : str
        Licence of the source as far as it is known.
    description : str
        What was measured.
    units : dict
        Units of the variables, by variable name.
    holdout : dict
        The hold-out rule and its counts (``rule``, ``n_train``, ``n_holdout``, ...).
    notes : tuple of str
        Anything a reader of the report should know (dropped rows, flagged values).
    """

    case: str
    dataset: str
    file: str
    sha256: str
    checksum_verified: bool
    source: str
    citation: str
    licence: str
    description: str
    units: Mapping[str, str] = field(default_factory=dict)
    holdout: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary of the record."""
        d = asdict(self)
        d["units"] = dict(self.units)
        d["holdout"] = {k: _jsonable(v) for k, v in dict(self.holdout).items()}
        d["notes"] = list(self.notes)
        return d

    def to_attrs(self) -> dict[str, str]:
        """Flat string attributes for an xarray Dataset (survive a NetCDF round trip)."""
        d = self.to_dict()
        return {
            f"provenance_{k}": (v if isinstance(v, str) else json.dumps(v, sort_keys=True))
            for k, v in d.items()
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data directory: ``data_dir`` if given, else ``$VVUQ_TWIN_DATA``.

    Raises
    ------
    DataDirectoryError
        When neither is set, or the directory does not exist.
    """
    how = (
        f"Pass data_dir=... (CLI: --data DIR) or set the environment variable {DATA_ENV_VAR} to "
        "the directory holding the case-study files and their SHA256SUMS (in this project: "
        "../shared/data relative to the repository root)."
    )
    if data_dir is None:
        env = os.environ.get(DATA_ENV_VAR)
        if env is None or not env.strip():
            raise DataDirectoryError(f"No data directory given. {how}")
        data_dir, origin = env, f"${DATA_ENV_VAR}"
    else:
        origin = "data_dir"
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataDirectoryError(f"The data directory {str(path)!r} (from {origin}) does not exist. {how}")
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_sums(data_dir: Path) -> dict[str, str]:
    sums_path = data_dir / "SHA256SUMS"
    if not sums_path.is_file():
        raise ChecksumError(
            f"{sums_path} is missing: the data files cannot be checked. Restore it (one line "
            "'<sha256>  <file name>' per file, as written by `sha256sum`), or pass verify=False "
            "to load without the check (the report then says the hash was not verified)."
        )
    sums: dict[str, str] = {}
    for i, line in enumerate(sums_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ChecksumError(
                f"{sums_path}, line {i}: expected '<64 hex digits>  <file name>', got {line!r}."
            )
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verify_checksum(data_dir: Path, filename: str, *, verify: bool = True) -> tuple[Path, str, bool]:
    """Locate ``filename`` in ``data_dir``, hash it and (optionally) check it against SHA256SUMS.

    Returns
    -------
    path, sha256, verified
    """
    path = data_dir / filename
    if not path.is_file():
        present = sorted(p.name for p in data_dir.iterdir() if p.is_file())
        raise DataDirectoryError(
            f"{filename!r} is not in the data directory {str(data_dir)!r} (files there: "
            f"{present}). Point data_dir / ${DATA_ENV_VAR} at the directory that holds it."
        )
    digest = sha256_file(path)
    if not verify:
        return path, digest, False
    sums = _read_sums(data_dir)
    if filename not in sums:
        raise ChecksumError(
            f"{filename!r} has no entry in {data_dir / 'SHA256SUMS'}; add one or pass verify=False."
        )
    if sums[filename] != digest:
        raise ChecksumError(
            f"{path} does not match SHA256SUMS: expected {sums[filename]}, got {digest}. The file "
            "was changed or corrupted; restore the original or pass verify=False to load it anyway."
        )
    return path, digest, True


def file_line(index: int) -> int:
    """File line (1-based, header = line 1) of the DataFrame row with position ``index``."""
    return int(index) + 2


def read_table(
    path: Path,
    *,
    required: Sequence[str],
    numeric: Sequence[str],
    sep: str = ",",
    allow_missing: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited text table and check its columns and numeric cells.

    Parameters
    ----------
    path : Path
        File to read (header in the first line).
    required : sequence of str
        Columns that must be present.
    numeric : sequence of str
        Columns that must hold numbers; a non-numeric cell is an error naming line and column.
    sep : str
        Field separator.
    allow_missing : sequence of str
        Numeric columns in which empty/NA cells are allowed (they become NaN).
    """
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:  # ragged rows
        raise CaseDataError(f"{path.name}: cannot be parsed as a {sep!r}-separated table: {exc}") from exc
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1 and sep not in df.columns[0]:
            names = {",": "comma", "\t": "tab", ";": "semicolon"}
            other = "tab" if sep == "," else "comma"
            hint = (
                f" (only one column was found: this file must be {names.get(sep, repr(sep))}-"
                f"separated; is it {other}-separated?)"
            )
        raise CaseDataError(
            f"{path.name}: missing required column(s) {missing}; found columns {list(df.columns)}"
            f"{hint}. Expected columns: {list(required)}."
        )
    if len(df) == 0:
        raise CaseDataError(f"{path.name}: the file has a header but no data rows.")
    na_tokens = {"", "NA", "NaN", "nan", "N/A"}
    out = df.copy()
    for col in numeric:
        raw = df[col].astype(str).str.strip()
        is_na = raw.isin(na_tokens)
        vals = pd.to_numeric(raw.where(~is_na), errors="coerce")
        bad = (~is_na) & vals.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CaseDataError(
                f"{path.name}, line {file_line(i)}, column {col!r}: {raw.iloc[i]!r} is not a number "
                f"({int(bad.sum())} such cell(s) in the column)."
            )
        if is_na.any() and col not in allow_missing:
            i = int(np.flatnonzero(is_na.to_numpy())[0])
            raise CaseDataError(
                f"{path.name}, line {file_line(i)}, column {col!r}: missing value "
                f"({int(is_na.sum())} missing cell(s) in the column); every row needs a {col!r}."
            )
        inf = np.isinf(vals.to_numpy(dtype=float))
        if inf.any():
            i = int(np.flatnonzero(inf)[0])
            raise CaseDataError(f"{path.name}, line {file_line(i)}, column {col!r}: infinite value.")
        out[col] = vals.astype(float)
    return out


def _show(v: Any) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return f"{float(v):g}"
    return repr(str(v))


def check_duplicates(df: pd.DataFrame, keys: Sequence[str], name: str) -> None:
    """Raise if two rows share the same values of ``keys`` (naming both file lines)."""
    dup = df.duplicated(list(keys), keep=False).to_numpy()
    if dup.any():
        idx = np.flatnonzero(dup)
        first = df.iloc[idx[0]][list(keys)]
        same = np.flatnonzero((df[list(keys)] == first.values).all(axis=1).to_numpy())
        where = ", ".join(f"{k}={_show(first[k])}" for k in keys)
        raise CaseDataError(
            f"{name}: duplicate rows for ({where}) at lines "
            f"{[file_line(i) for i in same]} (columns {list(keys)} must identify a row uniquely; "
            f"{int(dup.sum())} rows are involved). Remove or average the repeats."
        )


def check_monotone(df: pd.DataFrame, unit: str, time: str, name: str, *, what: str = "time") -> None:
    """Raise unless ``time`` strictly increases, in file order, within each ``unit``."""
    for u, grp in df.groupby(unit, sort=False):
        t = grp[time].to_numpy(dtype=float)
        d = np.diff(t)
        bad = np.flatnonzero(d <= 0)
        if bad.size:
            j = bad[0] + 1
            i = int(grp.index[j])
            raise CaseDataError(
                f"{name}, line {file_line(i)}, column {time!r}: {what} is not increasing within "
                f"{unit}={u!r} ({t[j - 1]:g} then {t[j]:g}). Rows of each {unit} must be in "
                f"increasing {what}; sort the file or fix the value."
            )


def holdout_latest(
    df: pd.DataFrame, unit: str | None, time: str, *, fraction: float, min_train: int = 2
) -> np.ndarray:
    """Boolean mask of the hold-out rows: the latest ``fraction`` of each unit's record.

    Each unit keeps at least ``min_train`` rows for calibration and gives up at least one row to
    the hold-out set when it has more than ``min_train`` rows (``round(fraction * n)`` rows,
    at least one).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {fraction}.")
    mask = np.zeros(len(df), dtype=bool)
    if fraction == 0.0:
        return mask
    groups: Iterable[tuple[Any, pd.DataFrame]]
    groups = [(None, df)] if unit is None else df.groupby(unit, sort=False)
    pos = {ix: k for k, ix in enumerate(df.index)}
    for _, grp in groups:
        n = len(grp)
        n_hold = min(max(1, int(round(fraction * n))), max(0, n - min_train))
        if n_hold <= 0:
            continue
        order = np.argsort(grp[time].to_numpy(dtype=float), kind="stable")
        for ix in grp.index[order[n - n_hold:]]:
            mask[pos[ix]] = True
    return mask
