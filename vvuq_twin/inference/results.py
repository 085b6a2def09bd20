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

__all__ = ["TwinResult", "load_result", "data_groups", "full_posterior", "LATENT_GROUP"]

#: InferenceData group holding PyMC's auxiliary variables (e.g. ``delta_gp_rotated_``)
LATENT_GROUP = "latent_posterior"


def data_groups(data: Any) -> dict[str, Any]:
    """``observed_data`` (only ``y``, on the dims of the likelihood) and ``constant_data``
    (the inputs ``x``, known sds ``y_sd``, the observed mask and unit labels) of a TwinData.

    The split is ArviZ's: ``az.plot_ppc`` / ``az.loo_pit`` pair every observed variable with
    the posterior predictive, so inputs must not sit in ``observed_data``.
    """
    import numpy as np
    import xarray as xr

    full = data.to_dataset()
    mask = np.asarray(data.observed_mask)
    if mask.all():
        obs = xr.Dataset({"y": full["y"].drop_vars([c for c in full["y"].coords if c != "obs"])})
    else:
        labels = [o for o, m in zip(data.obs, mask) if m]
        obs = xr.Dataset({"y": ("obs_observed", np.asarray(data.y, float)[mask])},
                         coords={"obs_observed": labels})
    const = full.drop_vars("y")
    if not mask.all():
        const["observed_mask"] = ("obs", mask)
    return {"observed_data": obs, "constant_data": const}


def add_latent_group(idata: az.InferenceData, latent: Any) -> None:
    """Store PyMC's auxiliary variables in :data:`LATENT_GROUP` (out of the posterior)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a non-standard group, on purpose
        idata.add_groups({LATENT_GROUP: latent})


def full_posterior(idata: az.InferenceData):
    """The posterior with the auxiliary variables of :data:`LATENT_GROUP` merged back in
    (what ``pm.sample_posterior_predictive`` needs to reproduce a latent GP)."""
    post = idata.posterior
    if LATENT_GROUP in idata.groups():
        post = post.merge(idata[LATENT_GROUP], compat="override")
    return post


@dataclass
class TwinResult:
    """A calibrated twin.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (parameters and latent variables), ``posterior_predictive`` (``eta``
        simulator output, ``delta`` discrepancy, ``zeta`` true process, ``y`` observations),
        ``log_likelihood`` (pointwise ``y``, so ``az.loo(res.idata)`` works),
        ``observed_data`` (``y`` only), ``constant_data`` (inputs ``x``, ``y_sd``, unit
        labels), ``sample_stats``; PyMC's auxiliary variables (``*_rotated_`` of a latent GP)
        live in ``latent_posterior``, not in the posterior.
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

    def __repr__(self) -> str:
        name = getattr(self.twin, "name", "?") if self.twin is not None else "(no twin attached)"
        post = self.idata.posterior
        nc, nd = int(post.sizes.get("chain", 0)), int(post.sizes.get("draw", 0))
        params = ", ".join(f"{k}{list(post[k].shape[2:]) if post[k].ndim > 2 else ''}"
                           for k in list(post.data_vars)[:8])
        more = f", ... ({len(post.data_vars)} in all)" if len(post.data_vars) > 8 else ""
        diag = "no diagnostics" if self.diagnostics is None else (
            "diagnostics PASS" if self.diagnostics.passed else
            "diagnostics FAIL: " + "; ".join(self.diagnostics.failures))
        n_obs = getattr(self.data, "n", None)
        t = self.info.get("total_time_s")
        return (f"TwinResult(twin={name!r}, sampler={self.info.get('sampler', '?')}, {nc} chains x "
                f"{nd} draws, {'' if n_obs is None else f'{n_obs} obs, '}"
                f"declaration {self.declaration_hash[:12]}, data {self.data_hash[:12]}"
                f"{'' if t is None else f', {t:.1f} s'})\n"
                f"  parameters: {params}{more}\n  groups: {', '.join(self.idata.groups())}\n  {diag}")

    def compute_log_likelihood(self) -> "TwinResult":
        """Add (or recompute) the pointwise ``log_likelihood`` group; returns ``self``.

        Closed form for Gaussian / Student-t / log-normal observations (no compilation), see
        :mod:`vvuq_twin.inference.loglik`. Needs the twin and data attached.
        """
        if self.twin is None or self.data is None:
            raise DataValidationError(
                "compute_log_likelihood needs the twin and data: load the result with "
                "load_result(path, twin=..., data=...)."
            )
        from .loglik import pointwise_log_likelihood

        ll = pointwise_log_likelihood(self.twin, self.data, self.idata)
        if "log_likelihood" in self.idata.groups():
            self.idata.log_likelihood = ll
        else:
            self.idata.add_groups({"log_likelihood": ll})
        return self

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
            var_names += [v for v in self.posterior.data_vars
                          if v.endswith(("_mu", "_sigma")) or v in ("sigma_obs", "sigma_rel", "nu_obs")
                          or (v.startswith("delta_") and v.endswith(("_ls", "_eta", "_bias")))]
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
        if self.diagnostics is not None and len(self.diagnostics.table.data_vars):
            idata = _with_group(idata, DIAGNOSTICS_GROUP, self.diagnostics.table)
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
        table = idata[DIAGNOSTICS_GROUP].load() if DIAGNOSTICS_GROUP in idata.groups() else xr.Dataset()
        diagnostics = Diagnostics(table=table, checks=d["checks"], sampler=d["sampler"],
                                  thresholds=Thresholds(**d["thresholds"]))
    if DIAGNOSTICS_GROUP in idata.groups():
        idata = _with_group(idata, DIAGNOSTICS_GROUP, None)
    ledger = Ledger.from_json(attrs.get("vvuq_twin_ledger", "[]") or "[]")
    info = json.loads(attrs.get("vvuq_twin_info", "{}") or "{}")
    for k in list(attrs):
        if k.startswith("vvuq_twin_"):
            del idata.posterior.attrs[k]
    return TwinResult(idata=idata, twin=twin, data=data, declaration_hash=dh, data_hash=ah,
                      diagnostics=diagnostics, ledger=ledger, info=info)




#: group of the saved NetCDF file holding the diagnostics table (restored by load_result)
DIAGNOSTICS_GROUP = "vvuq_twin_diagnostics"


def _with_group(idata: az.InferenceData, name: str, ds: Any) -> az.InferenceData:
    """A copy of ``idata`` with group ``name`` set to ``ds`` (or removed when ``ds`` is None)."""
    import warnings

    groups = {g: idata[g] for g in idata.groups() if g != name}
    if ds is not None:
        groups[name] = ds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return az.InferenceData(**groups)
