"""Modules ask the declaration; they do not re-derive its answers by name or by class name.

Outside ``vvuq_twin/twin/`` (and in the case-study code that used to do it) there are no
literals of the model variable names the declaration defines (noise, discrepancy), and no
dispatch on ``type(x).__name__``. The checker is shown to fail on planted code.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# names the declaration defines: observation noise and discrepancy variables
RESERVED = ("sigma_obs", "sigma_rel", "nu_obs", "delta_ls", "delta_eta", "delta_bias",
            "delta_hsgp_coeffs", "delta_gp_rotated_")
_LITERAL = re.compile(r"""["'](%s)["']""" % "|".join(RESERVED))
# dispatch on a class name: compared, looked up or stored for later comparison
_DISPATCH = re.compile(r"type\([^()]*\)\.__name__\s*(==|!=|\bin\b|\bnot in\b)|=\s*type\([^()]*\)\.__name__\s*$",
                       re.M)
# files that must ask the declaration (the library outside twin/, and the climate loop)
CHECKED = sorted([p for p in (ROOT / "vvuq_twin").rglob("*.py") if "twin" not in p.relative_to(ROOT / "vvuq_twin").parts[:1]]
                 + [ROOT / "case_studies" / "climate" / "loop.py"])


def offences(text: str) -> list[str]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if _LITERAL.search(code) or _DISPATCH.search(code):
            out.append(f"{i}: {line.strip()}")
    return out


def test_no_name_literals_or_class_name_dispatch_outside_the_declaration():
    assert len(CHECKED) > 50
    bad = {str(p.relative_to(ROOT)): o for p in CHECKED if (o := offences(p.read_text(encoding="utf-8")))}
    assert bad == {}


def test_checker_catches_planted_code():
    assert offences('sd = post["sigma_obs"]\n') == ['1: sd = post["sigma_obs"]']
    assert offences("if type(obs).__name__ == 'Gaussian':\n    pass\n")
    assert offences("kind = type(prior).__name__\n")
    assert offences("if type(rv.owner.op).__name__ in _IMPROPER]\n")
    # naming a class in a message is not dispatch; a name in a comment is not a literal
    assert offences('raise X(f"got {type(obs).__name__}")  # "sigma_obs"\n') == []


def _climate_skeleton_twin():
    import numpy as np

    from case_studies.climate.declaration import build_twin

    return build_twin(np.array([1850, 1851]), np.zeros(2))


def test_climate_twin_names_come_from_the_declaration():
    """The climate case reads its variables from the declaration (AR(1) noise adds phi_obs)."""
    twin = _climate_skeleton_twin()
    assert list(twin.parameter_names) == ["lam", "gamma", "C", "C_d", "kappa"]
    assert set(twin.free_variable_names()) == {"lam", "gamma", "C", "C_d", "kappa", "delta_hsgp_coeffs",
                                               "delta_ls", "delta_eta", "sigma_obs", "phi_obs"}


def test_climate_prior_is_the_declarations_and_matches_the_compiled_prior():
    """Twin.log_prior of the climate twin equals its compiled prior
    (vvuq_twin.assimilation.twin_log_density) on random particles, -inf outside the support."""
    import numpy as np

    from vvuq_twin.assimilation import twin_log_density

    twin = _climate_skeleton_twin()
    rng = np.random.default_rng(3)
    n = 6
    ref_values = dict(lam=1.2, gamma=0.7, C=8.0, C_d=100.0, kappa=1.0, delta_ls=20.0, delta_eta=0.1,
                      sigma_obs=0.15, phi_obs=0.4)
    theta = {k: v * np.exp(rng.normal(0, 0.3, n)) for k, v in ref_values.items()}
    theta["delta_hsgp_coeffs"] = rng.normal(size=(n, 32))
    dens = twin_log_density(twin, input_names=["year"])
    dens.prepare({"x": np.array([[1850.0], [1851.0]]), "y": np.zeros(2)})
    np.testing.assert_allclose(twin.log_prior(theta), dens.log_prior(theta), rtol=1e-9, atol=1e-7)
    theta["sigma_obs"][0] = -1.0  # outside the support
    theta["phi_obs"][1] = 1.5
    lp = twin.log_prior(theta)
    assert lp[0] == -np.inf and lp[1] == -np.inf
