"""Self-contained HTML reports of a VVUQ run, with machine-readable twins (JSON, NetCDF).

A :class:`Report` collects a standard VVUQ summary (:data:`SUMMARY_FIELDS`), sections of
tables, figures and text, and datasets of draws; :meth:`Report.write` writes

- ``report.html`` — one file, figures embedded as base64 PNG, no external resources, the VVUQ
  summary table at the top, then the sections; a small inline script records in the DOM
  (``#vvuq-status``) whether every figure loaded and whether any script error occurred, so
  that a headless browser can check the page;
- ``summary.json`` — the summary and the section contents (tables as records, figures by
  caption and SHA-256 of their PNG);
- ``<name>.nc`` — one NetCDF file per dataset added with :meth:`Report.add_dataset`.

Content is deterministic: the same inputs give byte-identical files except for the one
metadata line (HTML ``#vvuq-generated``, JSON ``metadata.generated_utc``) that holds the time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import ReportError
from . import _html
from ._env import git_commit, software_versions
from .model import SUMMARY_FIELDS, Metric, _num

__all__ = [
    "SUMMARY_FIELDS",
    "Metric",
    "Report",
    "ReportError",
    "figure_to_png",
]

def _jsonable(obj: Any) -> Any:
    """Convert report content to JSON-ready Python objects, deterministically."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, float, np.integer, np.floating)):
        return _num(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict) and not isinstance(obj, (pd.DataFrame, xr.Dataset, xr.DataArray)):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, (xr.DataArray, xr.Dataset)):
        return _jsonable(_to_frame(obj))
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_jsonable(v) for v in items]
    return str(obj)


def _to_frame(table: Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, pd.Series):
        return table.to_frame()
    if isinstance(table, xr.DataArray):
        name = table.name if table.name is not None else "value"
        return table.to_dataframe(name=name).reset_index()
    if isinstance(table, xr.Dataset):
        if not table.dims:
            return pd.DataFrame({k: [v.item()] for k, v in table.data_vars.items()})
        return table.to_dataframe().reset_index()
    if isinstance(table, Mapping):
        vals = list(table.values())
        if vals and all(np.ndim(v) == 0 for v in vals):
            return pd.DataFrame({"name": list(map(str, table.keys())), "value": vals})
        return pd.DataFrame(dict(table))
    if isinstance(table, Sequence) and not isinstance(table, str) and all(isinstance(r, Mapping) for r in table):
        return pd.DataFrame(list(table))
    if isinstance(table, Sequence) and not isinstance(table, str) and all(isinstance(r, Metric) for r in table):
        return pd.DataFrame([m.to_dict() for m in table])
    raise ReportError(
        "A table must be a pandas DataFrame/Series, an xarray Dataset/DataArray, a dict of "
        f"columns (or of scalars), a list of dicts or a list of Metric; got {type(table).__name__}."
    )


def figure_to_png(fig: Any, *, dpi: int = 100) -> bytes:
    """Render a matplotlib figure to PNG bytes without time/software metadata (deterministic)."""
    if not hasattr(fig, "savefig"):
        raise ReportError(f"Expected a matplotlib Figure, got {type(fig).__name__}.")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class _Item:
    kind: Literal["table", "figure", "text"]
    caption: str
    payload: Any


@dataclass
class Report:
    """A VVUQ report: summary table, sections, figures, datasets.

    Parameters
    ----------
    title : str
        Title of the report.
    seed : int
        The seed of the run (recorded in the summary).
    subtitle : str
        One line under the title (e.g. the command that produced the report).
    repo_dir : path, optional
        Repository whose git commit is recorded (default: the current directory).
    created : datetime, optional
        Time shown in the metadata line; default: the time of :meth:`write`.
    figure_dpi : int
        Resolution of embedded figures.

    Examples
    --------
    >>> rep = Report("Tumor twin", seed=1)
    >>> rep = rep.add_summary(decision="image again on day 14", assumptions=["log-normal noise"])
    >>> paths = rep.write("out/tumor")  # doctest: +SKIP
    """

    title: str
    seed: int | None
    subtitle: str = ""
    repo_dir: str | Path | None = None
    created: datetime | None = None
    figure_dpi: int = 100
    summary: dict[str, Any] = field(default_factory=dict, init=False)
    sections: dict[str, list[_Item]] = field(default_factory=dict, init=False)
    datasets: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ReportError("Report title must be a non-empty string.")
        if self.seed is not None and not isinstance(self.seed, (int, np.integer)):
            raise ReportError(
                f"Report seed must be an int (the seed the run was started with) or None, got "
                f"{type(self.seed).__name__}."
            )

    # ----------------------------------------------------------------- content
    def add_summary(self, **fields: Any) -> "Report":
        """Set fields of the VVUQ summary table (see :data:`SUMMARY_FIELDS`).

        Values may be strings, lists of strings, dicts, :class:`Metric` lists, provenance
        records (anything with ``to_dict()``) or lists of them. ``software`` is filled
        automatically (versions, seed, git commit); extra entries given here are merged in.
        Calling again replaces the given fields.
        """
        unknown = sorted(set(fields) - set(SUMMARY_FIELDS))
        if unknown:
            raise ReportError(
                f"Unknown summary field(s) {unknown}. Known fields: {list(SUMMARY_FIELDS)}."
            )
        self.summary.update(fields)
        return self

    def _section(self, section: str) -> list[_Item]:
        if not isinstance(section, str) or not section.strip():
            raise ReportError("A section name must be a non-empty string.")
        return self.sections.setdefault(section, [])

    def add_table(self, section: str, table: Any, caption: str = "", *, float_format: str = "{:.4g}") -> "Report":
        """Add a table (DataFrame, Dataset/DataArray, dict, list of dicts or of Metric) to a section."""
        df = _to_frame(table)
        try:
            float_format.format(1.0)
        except (ValueError, IndexError, KeyError) as exc:
            raise ReportError(f"float_format {float_format!r} cannot format a float: {exc}") from exc
        self._section(section).append(_Item("table", caption, (df.copy(), float_format)))
        return self

    def add_figure(self, section: str, fig: Any, caption: str, *, close: bool = True) -> "Report":
        """Add a matplotlib figure (embedded as PNG) with its caption; closes it by default."""
        if not caption:
            raise ReportError("Every figure needs a caption saying what it shows.")
        png = figure_to_png(fig, dpi=self.figure_dpi)
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
        self._section(section).append(_Item("figure", caption, png))
        return self

    def add_text(self, section: str, text: str) -> "Report":
        """Add a paragraph of text (blank lines separate paragraphs) to a section."""
        self._section(section).append(_Item("text", "", str(text)))
        return self

    def add_dataset(self, name: str, data: Any) -> "Report":
        """Add draws or results written as ``<name>.nc`` (xarray Dataset/DataArray, or any
        object with ``to_netcdf(path)`` such as arviz InferenceData or a TwinResult)."""
        if not isinstance(name, str) or not _NAME.match(name) or name in ("report", "summary"):
            raise ReportError(
                f"Dataset name {name!r} must be a plain file stem (letters, digits, '_', '-', "
                "'.'; not 'report' or 'summary')."
            )
        if isinstance(data, xr.DataArray):
            data = data.to_dataset(name=data.name or name)
        if not hasattr(data, "to_netcdf"):
            raise ReportError(
                f"Dataset {name!r}: expected an xarray object or something with to_netcdf(), got "
                f"{type(data).__name__}."
            )
        self.datasets[name] = data
        return self

    # ----------------------------------------------------------------- output
    def _software(self) -> dict[str, Any]:
        sw: dict[str, Any] = {
            "seed": None if self.seed is None else int(self.seed),
            "git_commit": git_commit(self.repo_dir),
            "versions": software_versions(),
        }
        extra = self.summary.get("software")
        if isinstance(extra, Mapping):
            sw.update(extra)
        elif extra is not None:
            sw["note"] = extra
        return sw

    def summary_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data, fields in :data:`SUMMARY_FIELDS` order."""
        out: dict[str, Any] = {}
        for key in SUMMARY_FIELDS:
            if key == "software":
                out[key] = _jsonable(self._software())
            else:
                out[key] = _jsonable(self.summary.get(key))
        return out

    def to_json_dict(self, generated_utc: str) -> dict[str, Any]:
        """Everything of the report as JSON-ready data (figures by caption and PNG hash)."""
        sections = []
        for name, items in self.sections.items():
            rows = []
            for it in items:
                if it.kind == "table":
                    df, _ = it.payload
                    rows.append({"kind": "table", "caption": it.caption, "records": _jsonable(df)})
                elif it.kind == "figure":
                    rows.append({"kind": "figure", "caption": it.caption,
                                 "png_sha256": hashlib.sha256(it.payload).hexdigest()})
                else:
                    rows.append({"kind": "text", "text": it.payload})
            sections.append({"title": name, "items": rows})
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "seed": None if self.seed is None else int(self.seed),
            "summary": self.summary_dict(),
            "sections": sections,
            "datasets": sorted(self.datasets),
            "metadata": {"generated_utc": generated_utc},
        }

    def to_html(self, generated_utc: str) -> str:
        """The report as one self-contained HTML document."""
        return _html.render(self, generated_utc)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.html``, ``summary.json`` and one ``<name>.nc`` per dataset.

        Returns
        -------
        dict
            Paths by kind: ``"html"``, ``"json"`` and each dataset name.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        created = self.created or datetime.now(timezone.utc)
        stamp = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        from .._io import atomic_path, atomic_write_text, write_netcdf

        paths: dict[str, Path] = {"html": out / "report.html", "json": out / "summary.json"}
        # each file is written atomically: a killed run leaves the old or the new file, whole
        atomic_write_text(paths["html"], self.to_html(stamp))
        atomic_write_text(
            paths["json"],
            json.dumps(self.to_json_dict(stamp), indent=2, sort_keys=False, ensure_ascii=False) + "\n",
        )
        for name, data in self.datasets.items():
            p = out / f"{name}.nc"
            if isinstance(data, xr.Dataset):
                write_netcdf(data, p, engine="h5netcdf")
            elif hasattr(data, "idata") and hasattr(data, "ledger"):
                data.to_netcdf(p)  # a TwinResult writes itself atomically, with checksums
            else:
                with atomic_path(p) as tmp:
                    data.to_netcdf(str(tmp))
            paths[name] = p
        return paths

    def embedded_png(self) -> list[bytes]:
        """PNG bytes of all figures, in document order."""
        return [it.payload for items in self.sections.values() for it in items if it.kind == "figure"]
