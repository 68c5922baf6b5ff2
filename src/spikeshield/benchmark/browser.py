"""Check the leaderboard page in a real browser: headless Chromium renders it to a screenshot and dumps its DOM, and
the check reads both (the table and its rows, the plots decoded and painted, the links resolving to files).

Chromium is Debian's ``chromium`` package (``make setup`` installs it where apt is available).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

#: a script the page carries: after loading it records how many of its images decoded (naturalWidth > 0)
LOADED_MARK = "data-images-decoded"


def chromium() -> str | None:
    """The Chromium executable on PATH (``chromium`` or ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(browser: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args],
                              capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def check_page(page: str | Path, screenshot: str | Path, rows: list[str]) -> dict[str, Any]:
    """Render ``page`` in headless Chromium to ``screenshot`` (PNG) and check it; returns what was found.

    Raises ``AssertionError`` naming what is wrong: a model of ``rows`` missing from the table, fewer table rows,
    a plot that did not decode, a link to a missing file, or a screenshot without the plots' colours.
    """
    import matplotlib.image

    browser = chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    page, screenshot = Path(page).resolve(), Path(screenshot)
    dom = _run(browser, "--dump-dom", page.as_uri())
    table = re.search(r'<table id="leaderboard">(.*?)</table>', dom, re.S)
    assert table, "the page has no leaderboard table"
    body_rows = re.findall(r"<tr>(.*?)</tr>", table.group(1).split("<tbody>", 1)[-1], re.S)
    assert len(body_rows) == len(rows), f"the table has {len(body_rows)} rows, expected {len(rows)}"
    for name in rows:
        assert any(f">{name}</a>" in r for r in body_rows), f"model {name} is not in the table"
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', dom)
    decoded = re.search(rf'{LOADED_MARK}="(\d+)"', dom)
    assert decoded and int(decoded.group(1)) == len(images) > 0, \
        f"{decoded.group(1) if decoded else 0} of {len(images)} plots decoded in the browser"
    links = re.findall(r'<a href="([^"#:]+)"', dom)
    missing = [link for link in links if not (page.parent / link).exists()]
    assert not missing, f"links to missing files: {missing}"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    _run(browser, f"--screenshot={screenshot.resolve()}", "--window-size=1280,2600", page.as_uri())
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    blue = float(((pixels[..., 2] > pixels[..., 0] + 0.25) & (pixels[..., 2] > 0.5)).mean())
    ink = float((pixels.mean(-1) < 0.5).mean())
    assert ink > 0.005, f"the screenshot is almost blank ({100 * ink:.2f}% dark pixels)"
    assert blue > 0.0005, f"no plot colours in the screenshot ({100 * blue:.3f}% blue pixels)"
    return {"rows": len(body_rows), "plots": len(images), "links": len(links), "dark_pixels": ink,
            "blue_pixels": blue, "screenshot": str(screenshot)}
