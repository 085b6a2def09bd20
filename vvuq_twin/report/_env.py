"""Software versions and git commit recorded in every report."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["DEFAULT_PACKAGES", "software_versions", "git_commit"]

#: Distributions whose versions are recorded by default.
DEFAULT_PACKAGES = (
    "vvuq-twin", "numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "arviz", "nutpie",
    "SALib", "chaospy", "torch", "gpytorch", "botorch", "matplotlib", "h5netcdf",
)


def software_versions(packages: tuple[str, ...] | list[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"not installed"`` when absent), plus Python."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(repo_dir: str | Path | None = None) -> str:
    """Commit hash of the repository at ``repo_dir`` (``+dirty`` when there are local changes).

    Returns a sentence starting with ``"unavailable"`` when git or a commit is not available;
    only read-only git commands are run.
    """
    cwd = str(repo_dir) if repo_dir is not None else None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable (git could not run: {exc.__class__.__name__})"
    if head.returncode != 0:
        lines = head.stderr.strip().splitlines()
        reason = next((ln for ln in lines if ln.startswith("fatal")), lines[0] if lines else "no commit")
        return f"unavailable ({reason})"
    commit = head.stdout.strip()
    try:
        st = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
            capture_output=True, text=True, timeout=10,
        )
        if st.returncode == 0 and st.stdout.strip():
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return commit
