"""Checks an HTML report in a real headless browser (chromium): a screenshot, and whether its video plays.

Used by ``benchmarks/report_browser_check.py`` and a slow test. Nothing here touches the network: chromium runs
with a fresh profile, background networking, component updates and sync off, on local files only.

The video probe copies the report into a scratch folder next to a link to its video, adds a small script that
waits for the ``<video>`` to load, plays it for a moment and writes what it saw (readyState, duration, size,
currentTime, error) into the page, then reads the page back with ``--dump-dom``. The report itself stays
script-free.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
          "--mute-audio", "--autoplay-policy=no-user-gesture-required"]

_PROBE = """
<script>
(function () {
  var out = {found: false};
  function done() { document.body.setAttribute('data-probe', JSON.stringify(out)); }
  var v = document.querySelector('video');
  if (!v) { done(); return; }
  out.found = true;
  out.src = v.currentSrc || v.getAttribute('src');
  out.canPlayH264 = v.canPlayType('video/mp4; codecs="avc1.42E01E"');
  v.muted = true;
  v.preload = 'auto';
  v.addEventListener('error', function () { out.error = v.error ? v.error.code : -1; done(); });
  v.addEventListener('loadeddata', function () {
    out.readyState = v.readyState; out.duration = v.duration;
    out.videoWidth = v.videoWidth; out.videoHeight = v.videoHeight;
    var p = v.play();
    var finish = function () {
      setTimeout(function () { out.currentTime = v.currentTime; out.paused = v.paused; done(); }, 1500);
    };
    if (p && p.then) { p.then(finish, function (e) { out.playError = String(e); done(); }); } else { finish(); }
  });
  v.load();
})();
</script>
"""


def find_chromium() -> Optional[str]:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="tao_chromium_profile_") as profile:
        cmd = [chromium, *_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(report: os.PathLike, out_png: os.PathLike, chromium: Optional[str] = None,
               window: tuple[int, int] = (1200, 2400), timeout: float = 120) -> Path:
    """A PNG of the report as chromium renders it (``window`` = width, height in CSS pixels)."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium")
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(chromium, [f"--window-size={window[0]},{window[1]}", f"--screenshot={out_png}",
                           "--virtual-time-budget=5000", Path(report).resolve().as_uri()], timeout)
    if not out_png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {report}: {proc.stderr[-2000:]}")
    return out_png


def probe_video(report: os.PathLike, chromium: Optional[str] = None, timeout: float = 120) -> dict:
    """What chromium reports for the first ``<video>`` of ``report``: ``found``, ``readyState`` (>= 2: a frame is
    decoded), ``duration`` (s), ``videoWidth``/``videoHeight``, ``currentTime`` after about 1.5 s of playing,
    ``error`` (a MediaError code: 4 = format not supported) and ``canPlayH264``."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium")
    report = Path(report).resolve()
    page = report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="tao_report_probe_") as tmp:
        # the probe page sits next to links to the report's local files, so relative src= paths resolve
        for src in set(re.findall(r"<video[^>]*\ssrc='([^']+)'", page)):
            target = (report.parent / src).resolve()
            link = Path(tmp) / src
            link.parent.mkdir(parents=True, exist_ok=True)
            if target.is_file():
                os.symlink(target, link)
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
        proc = _run(chromium, ["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], timeout)
    m = re.search(r'data-probe="([^"]*)"', proc.stdout)
    if not m:
        raise RuntimeError(f"the video probe did not report (chromium exit {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    import html

    return json.loads(html.unescape(m.group(1)))
