"""Case-study data loaders: real files, provenance, hold-out split, and bad-input errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import case_studies
from case_studies import CASES, UnknownCaseError, get_case, load_case_data
from case_studies._data import (
    DATA_ENV_VAR,
    CaseDataError,
    ChecksumError,
    DataDirectoryError,
    Provenance,
    resolve_data_dir,
)
from case_studies.airframe.data import load_virkler, virkler_twin_data
from case_studies.climate.data import hadcrut5_twin_data, load_forcing, load_hadcrut5
from case_studies.tumor.data import load_tumor, tumor_twin_data

SHARED_SUMS = {
    "tumor_lung_llc_volumes.tsv": "7bba01a08c1c134f7823699d8a0b329062553942fac8b93368d28aac23b04048",
    "virkler_crack_growth.csv": "5f61a61716c3d443ed2a4e7bd8cbac73c584e0ab41d89c18092af0194fa0c523",
}


def _write(tmp: Path, name: str, text: str) -> Path:
    """Write a data file and a matching SHA256SUMS into ``tmp``."""
    (tmp / name).write_text(text)
    digest = hashlib.sha256((tmp / name).read_bytes()).hexdigest()
    (tmp / "SHA256SUMS").write_text(f"{digest}  {name}\n")
    return tmp


# ---------------------------------------------------------------- real data, known values
def test_lung_tumor_data_known_values(data_dir):
    ds, prov = load_tumor(data_dir, dataset="lung")
    assert ds.sizes["obs"] == 188
    assert len(np.unique(ds["subject"].values)) == 20
    first = ds.isel(obs=0)
    assert first["subject"].item() == "0" and first["time"].item() == 7.0
    assert first["volume"].item() == pytest.approx(50.02179539848303, rel=1e-12)
    assert ds["volume"].attrs["units"] == "mm^3"
    assert prov.sha256 == SHARED_SUMS["tumor_lung_llc_volumes.tsv"] and prov.checksum_verified
    assert "Benzekry" in prov.citation and "GPL-3.0" in prov.licence
    # hold-out: per mouse, the held-out times are the latest ones
    for subj in np.unique(ds["subject"].values):
        s = ds.where(ds["subject"] == subj, drop=True)
        held = s["time"].values[s["holdout"].values.astype(bool)]
        kept = s["time"].values[~s["holdout"].values.astype(bool)]
        assert held.size >= 1 and kept.size >= 2
        assert held.min() > kept.max()
    assert prov.holdout["n_train"] + prov.holdout["n_holdout"] == 188
    assert prov.holdout["n_holdout"] == int(ds["holdout"].sum())


def test_breast_tumor_flags_zero_volumes(data_dir):
    ds, prov = load_tumor(data_dir, dataset="breast", holdout_fraction=0.2)
    assert ds.sizes["obs"] == 583 and len(np.unique(ds["subject"].values)) == 66
    assert int(ds["below_detection"].sum()) == 2
    assert np.all(ds["volume"].values[ds["below_detection"].values] == 0)
    assert any("not palpable" in n for n in prov.notes)


def test_virkler_data_known_values(data_dir):
    ds, prov = load_virkler(data_dir)
    assert ds.sizes["obs"] == 11152
    spec = ds["specimen"].values
    assert len(np.unique(spec)) == 68
    a = ds["crack_half_length"].values
    assert a.min() == 9.0 and a.max() == 49.8
    assert np.all(ds["cycles"].values[a == 9.0] == 0)  # every test starts at a0 = 9 mm, N = 0
    s1 = ds.where(ds["specimen"] == "1", drop=True)
    assert s1.sizes["obs"] == 164
    assert s1["cycles"].values[1] == 5529.0
    assert prov.sha256 == SHARED_SUMS["virkler_crack_growth.csv"]
    assert "Virkler" in prov.citation and ds.attrs["condition_width_mm"] == 152.4
    assert prov.holdout["n_specimens"] == 68
    # 25 % of 164 points per specimen, the largest-cycle ones
    assert int(ds["holdout"].sum()) == 68 * 41
    held_min = ds["crack_half_length"].where(ds["holdout"]).min().item()
    kept_max = ds["crack_half_length"].where(~ds["holdout"]).max().item()
    assert held_min > kept_max


def test_hadcrut5_baselines_and_holdout(data_dir):
    ds, prov = load_hadcrut5(data_dir)
    assert int(ds["year"][0]) == 1850 and int(ds["year"][-1]) == 2022  # 2023 (NA) dropped
    assert any("2023" in n for n in prov.notes)
    assert ds["gmst"].sel(year=2022).item() == pytest.approx(1.157)
    # the 1850-1900 column is an anomaly against its own 1850-1900 mean: independent check
    assert abs(ds["gmst"].sel(year=slice(1850, 1900)).mean().item()) < 0.01
    ds61, _ = load_hadcrut5(data_dir, baseline="1961-1990")
    assert abs(ds61["gmst"].sel(year=slice(1961, 1990)).mean().item()) < 0.01
    assert ds61["gmst"].sel(year=2022).item() == pytest.approx(0.801)
    held = ds["year"].values[ds["holdout"].values]
    assert held.tolist() == list(range(2013, 2023))
    assert prov.holdout["first_holdout_year"] == 2013
    with pytest.raises(ValueError, match="LOESS fit, not data"):
        load_hadcrut5(data_dir, baseline="smoothed")


def test_forcing_from_fair_package():
    pytest.importorskip("fair")
    ds, prov = load_forcing(("ssp126", "ssp245", "ssp585"), start=1750, end=2100)
    erf = ds["erf"]
    assert erf.dims == ("scenario", "year") and erf.sizes["year"] == 351
    hist = erf.sel(year=slice(1750, 2014))
    # scenarios share the historical forcing and diverge afterwards
    assert float(abs(hist.sel(scenario="ssp126") - hist.sel(scenario="ssp585")).max()) < 1e-9
    e2100 = erf.sel(year=2100)
    assert e2100.sel(scenario="ssp126") < e2100.sel(scenario="ssp245") < e2100.sel(scenario="ssp585")
    assert 1.5 < erf.sel(scenario="ssp245", year=2014).item() < 3.0  # AR6-like present-day ERF
    assert len(prov.sha256) == 64 and not prov.checksum_verified
    with pytest.raises(ValueError, match="Unknown scenario.*ssp999.*ssp245"):
        load_forcing(("ssp999",))


def test_loading_is_reproducible_and_netcdf_roundtrip(data_dir, tmp_path):
    ds1, p1 = load_tumor(data_dir)
    ds2, p2 = load_tumor(data_dir)
    xr.testing.assert_identical(ds1, ds2)
    assert p1 == p2
    path = tmp_path / "lung.nc"
    ds1.to_netcdf(path, engine="h5netcdf")
    back = xr.load_dataset(path, engine="h5netcdf")
    assert back.attrs["provenance_sha256"] == p1.sha256
    np.testing.assert_array_equal(back["volume"].values, ds1["volume"].values)
    assert isinstance(p1.to_dict()["holdout"]["n_train"], int)


# ---------------------------------------------------------------- registry and data dir
def test_registry_lists_known_cases_on_unknown_name(data_dir):
    assert set(CASES) == {"tumor", "airframe", "climate"}
    with pytest.raises(UnknownCaseError, match=r"Unknown case study 'tumour'.*\['airframe', 'climate', 'tumor'\]"):
        get_case("tumour")
    ds, prov = load_case_data("airframe", data_dir)
    assert prov.case == "airframe" and "cycles" in ds
    assert get_case("climate").model_module().__name__ == "case_studies.climate.model"


def test_data_dir_resolution(monkeypatch, tmp_path, data_dir):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    with pytest.raises(DataDirectoryError, match=f"set the environment variable {DATA_ENV_VAR}"):
        resolve_data_dir(None)
    with pytest.raises(DataDirectoryError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dir))
    ds, prov = load_tumor()  # from the environment variable
    assert prov.checksum_verified
    with pytest.raises(DataDirectoryError, match="not in the data directory"):
        load_virkler(tmp_path)


def test_checksum_mismatch_is_detected(tmp_path, data_dir):
    src = (data_dir / "tumor_lung_llc_volumes.tsv").read_text()
    _write(tmp_path, "tumor_lung_llc_volumes.tsv", src)
    load_tumor(tmp_path)  # matches
    (tmp_path / "tumor_lung_llc_volumes.tsv").write_text(src.replace("50.02179539848303", "50.1"))
    with pytest.raises(ChecksumError, match="does not match SHA256SUMS"):
        load_tumor(tmp_path)
    _, prov = load_tumor(tmp_path, verify=False)
    assert not prov.checksum_verified
    (tmp_path / "SHA256SUMS").unlink()
    with pytest.raises(ChecksumError, match="SHA256SUMS is missing"):
        load_tumor(tmp_path)


# ---------------------------------------------------------------- bad input
TUMOR_OK = "ID\tTime\tObservation\n0\t5\t20.0\n0\t7\t80.5\n0\t9\t200.0\n1\t5\t30.0\n1\t8\t150.0\n"


def test_tumor_bad_inputs_name_line_and_column(tmp_path):
    f = "tumor_lung_llc_volumes.tsv"
    load_tumor(_write(tmp_path, f, TUMOR_OK))
    cases = [
        ("ID\tTime\tVolume\n0\t5\t20\n", r"missing required column\(s\) \['Observation'\].*found columns \['ID', 'Time', 'Volume'\]"),
        (TUMOR_OK.replace("\t", ","), r"missing required column.*must be tab-separated; is it comma-separated\?"),
        (TUMOR_OK.replace("0\t9\t200.0", "0\t6\t200.0"), r"line 4, column 'Time': time \(days\) is not increasing within ID='0' \(7 then 6\)"),
        (TUMOR_OK.replace("0\t9\t200.0", "0\t7\t200.0"), r"duplicate rows for \(ID='0', Time=7\) at lines \[3, 4\]"),
        (TUMOR_OK.replace("80.5", "8O.5"), r"line 3, column 'Observation': '8O.5' is not a number"),
        (TUMOR_OK.replace("80.5", ""), r"line 3, column 'Observation': missing value"),
        ("ID\tTime\tObservation\n0\t5\t0.02\n0\t7\t0.08\n0\t9\t0.2\n", r"look like cm³ \(mL\), not mm³. Multiply 'Observation' by 1000"),
        (TUMOR_OK.replace("0\t9\t200.0", "0\t900\t200.0"), r"line 4, column 'Time': 900 is more than 365 days"),
        (TUMOR_OK.replace("30.0", "-3.0"), r"line 5, column 'Observation': negative tumor volume"),
    ]
    for text, pattern in cases:
        with pytest.raises(CaseDataError, match=pattern):
            load_tumor(_write(tmp_path, f, text))
    with pytest.raises(ValueError, match=r"Unknown tumor dataset 'liver'.*\['breast', 'lung'\]"):
        load_tumor(tmp_path, dataset="liver")


VIRKLER_OK = (
    "specimen,crack_half_length_mm,cycles\n1,9.0,0\n1,9.2,5529\n1,9.4,10408\n2,9.0,0\n2,9.2,6000\n"
)


def test_virkler_bad_inputs(tmp_path):
    f = "virkler_crack_growth.csv"
    ds, _ = load_virkler(_write(tmp_path, f, VIRKLER_OK))
    assert ds.sizes["obs"] == 5
    metres = "specimen,crack_half_length_mm,cycles\n1,0.009,0\n1,0.0092,5529\n"
    cases = [
        (metres, r"largest half-length is 0.0092 \(line 3\).*looks like metres. Multiply it by 1000"),
        (VIRKLER_OK.replace("9.4,10408", "94.0,10408"), r"line 4, column 'crack_half_length_mm': 94 mm exceeds the panel half-width 76.2"),
        (VIRKLER_OK.replace("1,9.4,10408", "1,9.1,10408"), r"line 4, column 'crack_half_length_mm'.*not increasing within specimen='1'"),
        (VIRKLER_OK.replace("1,9.4,10408", "1,9.4,5000"), r"line 4, column 'cycles': cycles decrease within specimen='1'"),
        (VIRKLER_OK.replace("1,9.4,10408", "1,9.2,10408"), r"duplicate rows for \(specimen='1', crack_half_length_mm=9.2\) at lines \[3, 4\]"),
        (VIRKLER_OK.replace("5529", "5.529"), r"line 3, column 'cycles': 5.529 is not a whole number"),
        ("specimen,a,cycles\n1,9.0,0\n", r"missing required column\(s\) \['crack_half_length_mm'\]"),
    ]
    for text, pattern in cases:
        with pytest.raises(CaseDataError, match=pattern):
            load_virkler(_write(tmp_path, f, text))


HAD_OK = "year,annual,annual_1850to1900,annual_smoothed\n1850,-0.4,-0.1,0\n1851,-0.2,0.1,0\n1852,-0.3,0.0,0\n1853,NA,NA,NA\n"


def test_hadcrut_bad_inputs(tmp_path):
    f = "hadcrut5_global_annual.csv"
    ds, prov = load_hadcrut5(_write(tmp_path, f, HAD_OK), holdout_years=1)
    assert ds.sizes["year"] == 3 and ds["holdout"].values.tolist() == [False, False, True]
    cases = [
        (HAD_OK.replace("1851,-0.2,0.1", "1851,-0.2,273.1"), r"line 3, column 'annual_1850to1900': 273.1 looks like an absolute temperature in kelvin"),
        (HAD_OK.replace("1851,-0.2,0.1", "1851,-0.2,9.0"), r"outside ±5 °C"),
        (HAD_OK.replace("1852,", "1854,").replace("1853,", "1855,"), r"line 4, column 'year': gap in the annual record \(1851 then 1854\)"),
        (HAD_OK.replace("1852,", "1851,"), r"duplicate rows for \(year=1851\) at lines \[3, 4\]"),
        (HAD_OK.replace("1851,-0.2,0.1", "1851,-0.2,NA"), r"line 3, column 'annual_1850to1900': missing value inside the record"),
        (HAD_OK.replace("annual_1850to1900", "anomaly"), r"missing required column\(s\) \['annual_1850to1900'\]"),
    ]
    for text, pattern in cases:
        with pytest.raises(CaseDataError, match=pattern):
            load_hadcrut5(_write(tmp_path, f, text))


def test_provenance_is_frozen_record():
    p = Provenance("c", "d", "f", "0" * 64, True, "s", "cit", "lic", "desc", {"y": "m"}, {"rule": "r"})
    with pytest.raises(Exception):
        p.sha256 = "x"  # type: ignore[misc]
    attrs = p.to_attrs()
    assert attrs["provenance_units"] == '{"y": "m"}' and attrs["provenance_checksum_verified"] == "true"
    assert case_studies.DATA_ENV_VAR == "VVUQ_TWIN_DATA"


def test_twin_data_helpers(data_dir):
    ds, prov = load_tumor(data_dir, dataset="breast")
    tr, ho = tumor_twin_data(ds, "train"), tumor_twin_data(ds, "holdout")
    assert tr.n + ho.n == 583 - 2  # the two 0 mm³ rows are left out
    assert np.all(np.isfinite(tr.y)) and tr.input_names == ["time"] and len(tr.units) == 66
    i = int(np.flatnonzero(~ds["holdout"].values)[0])
    assert tr.y[0] == pytest.approx(np.log(ds["volume"].values[i]))
    v, _ = load_virkler(data_dir)
    td = virkler_twin_data(v, "train", specimens=["1", "2"])
    assert td.units == ("1", "2") and td.n == 2 * (164 - 41 - 1)  # minus hold-out and a0 rows
    assert td.y.max() < 3.3  # cycles in units of 1e5
    with pytest.raises(ValueError, match=r"Unknown specimen\(s\) \['99'\]"):
        virkler_twin_data(v, specimens=["99"])
    h, _ = load_hadcrut5(data_dir)
    assert hadcrut5_twin_data(h, "holdout").x[:, 0].tolist() == list(range(2013, 2023))
    assert hadcrut5_twin_data(h, "all").n == 173
    with pytest.raises(ValueError, match="part must be"):
        hadcrut5_twin_data(h, "test")  # type: ignore[arg-type]
