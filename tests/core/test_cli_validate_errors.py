"""``vvuq-twin validate`` prints ERROR rows with their cause on stdout, not only in the JUnit XML
(issue 19, console polish): the command line as a user types it, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HELPERS = '''
def half():
    return 0.5


def boom():
    raise RuntimeError("simulator exploded at theta=3")
'''

CASES = '''
[[case]]
name = "half_is_half"
callable = "helpers_cli:half"
target = 0.5
tolerance = 1e-12

[[case]]
name = "raises"
callable = "helpers_cli:boom"
threshold = 0.0
comparison = ">"
'''


def test_validate_prints_error_rows_with_their_cause(tmp_path):
    root = tmp_path / "my_suite"
    (root / "quick").mkdir(parents=True)
    (root / "helpers_cli.py").write_text(HELPERS)
    (root / "suite.toml").write_text('[suite]\nmodules = ["helpers_cli"]\n')
    (root / "quick" / "cases.toml").write_text(textwrap.dedent(CASES))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "vvuq_twin", "validate", str(root), "--tier", "quick",
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1, out.stderr
    # the table row, then the cause: exception type and message
    assert any(line.startswith("ERROR") and "raises" in line for line in out.stdout.splitlines())
    assert "ERROR raises" in out.stdout
    assert "RuntimeError: simulator exploded at theta=3" in out.stdout
    assert "1 passed, 0 failed, 1 errors" in out.stdout
