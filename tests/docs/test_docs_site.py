"""The built documentation renders in headless Chromium: pages load, figures show, no errors.

Runs only when the site has been built (``sphinx-build -W --keep-going -n docs docs/_build/html``;
``.ci/run`` builds it after the tests and then runs this file) and Debian's ``chromium`` is
installed; otherwise it skips with the reason.

The built site is copied to a temporary folder and a small script is injected at the top of
each checked page: it records resource-load errors (``error`` events in the capture phase),
uncaught exceptions and ``console.error`` calls, and after the ``load`` event writes the
number of images and the broken ones (``naturalWidth == 0``) into ``#vvuq-docs-status``, which
``--dump-dom`` reads back (as in ``tests/report/test_report_browser.py``). Requests to the
network (``http(s)://``, e.g. MathJax from its CDN) cannot succeed in CI and are not counted:
the check is about the site's own files.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("VVUQ_DOCS_SITE", REPO / "docs" / "_build" / "html"))  # the built site
FIRST_TUTORIAL = "tutorials/01-first-twin.html"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.skipif(not (SITE / "index.html").exists(),
                       reason="docs site not built: sphinx-build -W --keep-going -n docs docs/_build/html"),
    pytest.mark.skipif(CHROMIUM is None,
                       reason="headless Chromium is not installed (Debian: apt-get install chromium)"),
]

PROBE = """<script>
(function () {
  var errs = [];
  function keep(s) { errs.push(String(s)); }
  window.addEventListener('error', function (e) {
    var t = e.target;
    var url = t && t !== window ? (t.src || t.href) : null;
    if (url) { if (!/^https?:/.test(url)) { errs.push('load failed: ' + url); } }
    else { keep('uncaught: ' + (e.message || 'error')); }
  }, true);
  var ce = console.error;
  console.error = function () { errs.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); };
  window.addEventListener('load', function () {
    setTimeout(function () {
      var imgs = Array.prototype.slice.call(document.images);
      var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0) && !/^https?:/.test(i.src); })
                       .map(function (i) { return i.getAttribute('src'); });
      var el = document.createElement('div');
      el.id = 'vvuq-docs-status';
      el.setAttribute('data-images', String(imgs.length));
      el.setAttribute('data-broken', broken.join(' '));
      el.setAttribute('data-errors', errs.join(' | '));
      el.setAttribute('data-theme', document.querySelector('.bd-header, .bd-main') ? '1' : '0');
      document.body.appendChild(el);
    }, 200);
  });
})();
</script>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    dst = root / "html"
    shutil.copytree(SITE, dst, ignore=shutil.ignore_patterns(".doctrees", "_sources"))
    return dst


def _render(site: Path, page: str, user_dir: Path) -> tuple[dict[str, str], str]:
    path = site / page
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"<head>", "<head>" + PROBE, text, count=1), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={user_dir}", "--enable-logging=stderr", "--v=0",
           "--allow-file-access-from-files", "--virtual-time-budget=8000", "--dump-dom", path.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<div[^>]*id="vvuq-docs-status"[^>]*>', res.stdout)
    assert m, f"status element missing: the page did not finish loading\n{res.stderr[-2000:]}"
    status = {k: html.unescape(v) for k, v in re.findall(r'data-([a-z]+)="([^"]*)"', m.group(0))}
    console = [ln for ln in res.stderr.splitlines()
               if ":CONSOLE" in ln and not re.search(r"https?://", ln)]
    return status, "\n".join(console)


def _local_images(site: Path, page: str) -> list[Path]:
    text = (site / page).read_text(encoding="utf-8")
    srcs = [s for s in re.findall(r'<img[^>]*\ssrc="([^"]+)"', text) if not re.match(r"(https?:|data:)", s)]
    return [(site / page).parent / s for s in srcs]


def test_index_renders_without_errors(site, tmp_path):
    status, console = _render(site, "index.html", tmp_path / "ud-index")
    assert status["theme"] == "1", "pydata-sphinx-theme layout missing"
    assert status["broken"] == "", status
    assert status["errors"] == "", status["errors"]
    assert not [ln for ln in console.splitlines() if "rror" in ln], console
    text = (site / "index.html").read_text(encoding="utf-8")
    for link in ("tutorials/01-first-twin.html", "api/index.html", "how-to/wrap-simulator.html"):
        assert link in text, link


def test_first_tutorial_renders_with_its_figures(site, tmp_path):
    page = FIRST_TUTORIAL
    imgs = _local_images(site, page)
    # the executed notebook has its figures (matplotlib PNGs written by MyST-NB), all on disk
    assert len(imgs) >= 1, "no figures in the executed tutorial"
    assert all(p.exists() and p.stat().st_size > 1000 for p in imgs), imgs
    text = (site / page).read_text(encoding="utf-8")
    assert "cell_output" in text and "Sampler diagnostics" in text  # executed outputs are there
    status, console = _render(site, page, tmp_path / "ud-tut")
    assert int(status["images"]) >= len(imgs)
    assert status["broken"] == "", status
    assert status["errors"] == "", status["errors"]
    assert not [ln for ln in console.splitlines() if "rror" in ln], console


def test_probe_detects_a_broken_image(site, tmp_path):
    """The check can fail: a page with a missing image file is reported broken."""
    page = site / "broken-probe.html"
    page.write_text("<html><head></head><body><img src='_images/does-not-exist.png'></body></html>")
    status, _ = _render(site, "broken-probe.html", tmp_path / "ud-broken")
    assert status["broken"] == "_images/does-not-exist.png"
    assert "load failed" in status["errors"]
