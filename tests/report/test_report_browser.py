"""Render reports in headless Chromium: figures load, no console errors, screenshot kept.

Uses the system Chromium (Debian package ``chromium``) on the command line: ``--dump-dom`` reads
back the status that the report's inline script writes into ``#vvuq-status`` after the load
event (figures with ``naturalWidth > 0``, script/console errors), ``--enable-logging=stderr``
exposes console messages, and ``--screenshot`` keeps an image under ``test-artifacts/``.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vvuq_twin.report import STATUS_ID, Metric, Report  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)",
)


def _run(url: str, user_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={user_dir}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000", *extra, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _status(dom: str) -> dict[str, str]:
    m = re.search(rf'<[^>]*id="{STATUS_ID}"[^>]*>', dom)
    assert m, "status element missing from the rendered DOM"
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(0)))


def _console(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


def _report(tmp_path: Path) -> Path:
    rep = Report("Browser check", seed=11, created=datetime(2026, 1, 1, tzinfo=timezone.utc))
    rep.add_summary(validation=[Metric("coverage", 0.9, (0.8, 0.97), "within")], decision="inspect")
    x = np.linspace(0, 10, 50)
    for k in range(3):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.fill_between(x, np.sin(x + k) - 0.3, np.sin(x + k) + 0.3, alpha=0.3)
        ax.plot(x, np.sin(x + k))
        rep.add_figure(f"Section {k % 2}", fig, f"Band {k}")
    return rep.write(tmp_path / "rep")["html"]


def test_report_renders_in_chromium_with_all_figures(tmp_path):
    html = _report(tmp_path)
    res = _run(html.as_uri(), tmp_path / "ud1", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    st = _status(res.stdout)
    assert st == {"status": "ok", "images": "3", "broken": "0", "errors": "0"}, st
    assert _console(res.stderr) == []
    # screenshot kept as a test artifact
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_browser_screenshot.png"
    if shot.exists():
        shot.unlink()
    res2 = _run(html.as_uri(), tmp_path / "ud2", f"--screenshot={shot}", "--window-size=1200,1600",
                "--hide-scrollbars")
    assert res2.returncode == 0, res2.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (1200, 1600)
    assert len(data) > 20_000  # a rendered page, not a blank image


def test_browser_check_detects_broken_figure_and_script_error(tmp_path):
    """Failure case: the same check reports a broken image and a console error."""
    html = _report(tmp_path).read_text()
    first = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = html[:first] + "AAAA" + html[first + 4:]  # corrupt the PNG signature
    broken = broken.replace("</footer>", "</footer><script>console.error('boom'); notAFunction();</script>")
    page = tmp_path / "broken.html"
    page.write_text(broken)
    res = _run(page.as_uri(), tmp_path / "ud3", "--dump-dom")
    st = _status(res.stdout)
    assert st["status"] == "error" and st["broken"] == "1" and st["images"] == "3"
    assert int(st["errors"]) >= 2  # the console.error call and the uncaught ReferenceError
    msgs = " ".join(_console(res.stderr))
    assert "boom" in msgs and "notAFunction" in msgs
