"""Case studies of vvuq_twin: real data, mechanistic simulators, reports.

Each case study (``tumor``, ``airframe``, ``climate``) has a ``data`` module (loaders of the real
measurements, with provenance and a hold-out split) and a ``model`` module (mechanistic
simulators written in pytensor, with their closed-form known answers). The registry
:data:`CASES` lists them; :func:`get_case` looks one up by name and :func:`load_case_data` loads
its primary dataset from a data directory the user names (``data_dir`` or ``$VVUQ_TWIN_DATA``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import xarray as xr

from vvuq_twin.exceptions import VVUQError

from ._data import DATA_ENV_VAR, Provenance

__all__ = ["CASES", "CaseInfo", "UnknownCaseError", "get_case", "load_case_data", "DATA_ENV_VAR"]


class UnknownCaseError(VVUQError, KeyError):
    """A case-study name that is not in :data:`CASES`."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class CaseInfo:
    """One registered case study.

    Parameters
    ----------
    name : str
        Registry key (``vvuq-twin run <name>``).
    title : str
        One-line description.
    package : str
        Importable package of the case (``case_studies.<name>``).
    loader : str
        Name of the primary loader function in ``<package>.data``.
    files : tuple of str
        Data files the case reads from the data directory.
    """

    name: str
    title: str
    package: str
    loader: str
    files: tuple[str, ...]

    def data_module(self) -> ModuleType:
        """The case's ``data`` module."""
        return importlib.import_module(f"{self.package}.data")

    def model_module(self) -> ModuleType:
        """The case's ``model`` module (simulators)."""
        return importlib.import_module(f"{self.package}.model")


#: Registered case studies, by name.
CASES: dict[str, CaseInfo] = {
    "tumor": CaseInfo(
        name="tumor",
        title=("Mouse tumor growth (Benzekry et al. 2014; Vaghi et al. 2020), the twin the evidence chooses "
               "among reduced-Gompertz and power-law candidates"),
        package="case_studies.tumor",
        loader="load_tumor",
        files=("tumor_lung_llc_volumes.tsv", "tumor_breast_volumes.tsv"),
    ),
    "airframe": CaseInfo(
        name="airframe",
        title="Fatigue crack growth in 2024-T3 panels (Virkler et al. 1979), Paris-law twin",
        package="case_studies.airframe",
        loader="load_virkler",
        files=("virkler_crack_growth.csv",),
    ),
    "climate": CaseInfo(
        name="climate",
        title="Global-mean temperature (HadCRUT5) with a two-layer energy-balance twin",
        package="case_studies.climate",
        loader="load_hadcrut5",
        files=("hadcrut5_global_annual.csv",),
    ),
}


def get_case(name: str) -> CaseInfo:
    """Look up a case study by name; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in CASES:
        raise UnknownCaseError(
            f"Unknown case study {name!r}. Known case studies: {sorted(CASES)}."
        )
    return CASES[name]


def load_case_data(
    name: str, data_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> tuple[xr.Dataset, Provenance]:
    """Load the primary dataset of case ``name`` (see the case's ``data`` module for options)."""
    info = get_case(name)
    loader = getattr(info.data_module(), info.loader)
    return loader(data_dir, **kwargs)
