"""The results of a calibration: InferenceData + hashes + diagnostics + ledger, saved as NetCDF."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az


from ..exceptions import DataValidationError
from .diagnostics import Diagnostics
from .ledger import Ledger

__all__ = ["TwinResult", "load_result"]


@dataclass
class TwinResult:
    """A calibrated twin.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (parameters and latent variables), ``posterior_predictive`` (``eta``
        simulator output, ``delta`` discrepancy, ``zeta`` true process, ``y`` observations),
        ``observed_data``, ``sample_stats``.
    twin : Twin or None
        The declaration (None after :func:`load_result` without ``twin=``).
    data : TwinData or None
        The calibration data.
    declaration_hash, data_hash : str
    diagnostics : Diagnostics or None
    ledger : Ledger
    info : dict
        Sampler, seed, timings, package versions.
    """

    idata: az.InferenceData
    twin: Any
    data: Any
    declaration_hash: str
    data_hash: str
    diagnostics: Diagnostics | None = None
    ledger: Ledger = field(default_factory=Ledger)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def posterior(self):
        """The posterior group (xarray Dataset)."""
        return self.idata.posterior

    @property
    def posterior_predictive(self):
        """The posterior predictive group (eta, delta, zeta, y)."""
        return self.idata.posterior_predictive

    def summary(self, var_names: list[str] | None = None):
        """ArviZ summary table of the calibration parameters (a pandas DataFrame)."""
        if var_names is None and self.twin is not None:
            var_names = [v for v in self.twin.parameter_names if v in self.posterior]
            hyper = set(self.twin.hyperparameter_names())  # the declaration names them
            var_names += [v for v in self.posterior.data_vars if v in hyper]
        return az.summary(self.idata, var_names=var_names)

    def to_netcdf(self, path: str | Path) -> Path:
        """Save as one NetCDF file (hashes, diagnostics, ledger and info in the attributes)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        attrs = {
            "vvuq_twin_declaration_hash": self.declaration_hash,
            "vvuq_twin_data_hash": self.data_hash,
            "vvuq_twin_diagnostics": "" if self.diagnostics is None else self.diagnostics.to_json(),
            "vvuq_twin_ledger": self.ledger.to_json(),
            "vvuq_twin_info": json.dumps(self.info, default=str),
            "vvuq_twin_declaration": json.dumps(self.twin.spec(), default=str) if self.twin is not None else "",
        }
        idata = self.idata.copy()
        idata.posterior.attrs.update(attrs)
        idata.to_netcdf(str(path), engine="h5netcdf")
        return path


def load_result(path: str | Path, *, twin: Any = None, data: Any = None) -> TwinResult:
    """Load a :class:`TwinResult` saved with :meth:`TwinResult.to_netcdf`.

    Parameters
    ----------
    twin : Twin, optional
        The declaration; its hash must match the stored one (so that prediction and V&V use
        the model the draws came from).
    data : TwinData, optional
        The calibration data; its hash must match.
    """
    idata = az.from_netcdf(str(path), engine="h5netcdf")
    idata.load() if hasattr(idata, "load") else None
    attrs = dict(idata.posterior.attrs)
    dh = attrs.get("vvuq_twin_declaration_hash", "")
    ah = attrs.get("vvuq_twin_data_hash", "")
    if twin is not None and twin.hash != dh:
        raise DataValidationError(
            f"The twin passed to load_result has hash {twin.hash[:12]} but the results were "
            f"computed with declaration {dh[:12]}. Pass the declaration used for calibration, or "
            "recalibrate."
        )
    if data is not None and data.hash != ah:
        raise DataValidationError(
            f"The data passed to load_result have hash {data.hash[:12]} but the results were "
            f"computed on data {ah[:12]}."
        )
    diag_json = attrs.get("vvuq_twin_diagnostics", "")
    diagnostics = None
    if diag_json:
        import xarray as xr

        from .diagnostics import Thresholds

        d = json.loads(diag_json)
        diagnostics = Diagnostics(table=xr.Dataset(), checks=d["checks"], sampler=d["sampler"],
                                  thresholds=Thresholds(**d["thresholds"]))
    ledger = Ledger.from_json(attrs.get("vvuq_twin_ledger", "[]") or "[]")
    info = json.loads(attrs.get("vvuq_twin_info", "{}") or "{}")
    for k in list(attrs):
        if k.startswith("vvuq_twin_"):
            del idata.posterior.attrs[k]
    return TwinResult(idata=idata, twin=twin, data=data, declaration_hash=dh, data_hash=ah,
                      diagnostics=diagnostics, ledger=ledger, info=info)


