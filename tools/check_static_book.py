"""Check that the built book works for a reader with no network.

Usage (after ``jupyter-book build .``)::

    python tools/check_static_book.py [_build/html] [--out _build/static-check] [--pages book/02_concepts ...]

Four checks, then a short report; the exit status is 1 if any check fails:

1. **External resources**: no page may load a script (``<script src>``) or a stylesheet from ``http(s)://`` or
   ``//``, and every local script a page loads must exist in the build (e.g. the vendored MathJax).
2. **Screenshots** of the chosen pages (default: every chapter page) with headless Chromium from ``file://``
   URLs, with DNS and proxy set up so that no connection can succeed; a screenshot must not be blank.
3. **Math**: on every page with math, the DOM after MathJax ran (``--dump-dom --virtual-time-budget``) must
   hold at least one ``mjx-container`` per math element and no raw TeX (``\\(``, ``\\[``, ``$$``) in the text.
4. **Slice browsers** (``tutorialreg.viz.slice_browser``): on every page that has one, opening the page
   with ``#z=N`` must change the frame shown (image and caption) compared with opening it plainly.

Steps 2-4 need Chromium (Debian: ``apt-get install chromium``); ``--no-browser`` runs step 1 only.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

BROWSER_CLASS = "tutorialreg-slice-browser"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
    "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
    # make any network access impossible: every host name fails to resolve and any proxy use fails
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
]
EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------- parsing
@dataclass
class PageScan:
    """What one built page loads and contains (from its static HTML, before any script ran)."""

    scripts: list[str] = field(default_factory=list)       # <script src> values
    stylesheets: list[str] = field(default_factory=list)   # <link rel=stylesheet href> values
    math: int = 0                                          # elements with class "math"
    browsers: list[str] = field(default_factory=list)      # ids of slice-browser elements


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scan = PageScan()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "script" and a.get("src"):
            self.scan.scripts.append(a["src"])
        elif tag == "link" and "stylesheet" in a.get("rel", "").split() and a.get("href"):
            self.scan.stylesheets.append(a["href"])
        if "math" in classes and tag in ("span", "div"):
            self.scan.math += 1
        if BROWSER_CLASS in classes:
            self.scan.browsers.append(a.get("id", ""))


def scan_page(text: str) -> PageScan:
    """Scripts, stylesheets, math elements and slice browsers of one HTML page."""
    scanner = _Scanner()
    scanner.feed(text)
    return scanner.scan


def external_resources(scan: PageScan) -> list[str]:
    """``script: URL`` / ``stylesheet: URL`` for everything the page would fetch from the network."""
    return [f"script: {s}" for s in scan.scripts if EXTERNAL.match(s)] + [
        f"stylesheet: {s}" for s in scan.stylesheets if EXTERNAL.match(s)
    ]


def missing_local_scripts(page: Path, scan: PageScan) -> list[str]:
    """Local script srcs of ``page`` that do not exist in the build."""
    missing = []
    for src in scan.scripts:
        if EXTERNAL.match(src) or src.startswith("data:"):
            continue
        target = (page.parent / src.split("?")[0].split("#")[0]).resolve()
        if not target.is_file():
            missing.append(src)
    return missing


_CODE = re.compile(r"<(script|style|pre|code|textarea|template)\b.*?</\1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def raw_tex(dom: str) -> list[str]:
    """Raw TeX delimiters left in the visible text of a rendered DOM (code and scripts excluded)."""
    text = _TAG.sub(" ", _CODE.sub(" ", dom))
    found = []
    for delim in (r"\(", r"\[", "$$"):
        i = text.find(delim)
        if i >= 0:
            found.append(f"{delim!s} near {' '.join(text[max(0, i - 30):i + 40].split())!r}")
    return found


def browser_state(dom: str, element_id: str) -> tuple[str, str]:
    """(sha1 of the shown frame's image src, caption text) of slice browser ``element_id`` in a DOM."""
    img = re.search(rf'<img[^>]*id="{re.escape(element_id)}-img"[^>]*>', dom)
    src = re.search(r'src="([^"]*)"', img.group(0)).group(1) if img else ""
    cap = re.search(rf'id="{re.escape(element_id)}-label"[^>]*>([^<]*)<', dom)
    return hashlib.sha1(src.encode()).hexdigest()[:12], (cap.group(1).strip() if cap else "")


# --------------------------------------------------------------------------------------------------- browser
class Chromium:
    """Headless Chromium with a throw-away profile and no possible network access."""

    def __init__(self, binary: str, budget_ms: int, timeout_s: float) -> None:
        self.binary, self.budget_ms, self.timeout_s = binary, budget_ms, timeout_s
        self.profile = tempfile.mkdtemp(prefix="check-static-book-")

    def _run(self, extra: list[str], url: str) -> subprocess.CompletedProcess:
        cmd = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s, check=False)

    def dump_dom(self, url: str) -> str:
        return self._run([f"--virtual-time-budget={self.budget_ms}", "--dump-dom"], url).stdout

    def screenshot(self, url: str, png: Path, size: str) -> bool:
        self._run([f"--virtual-time-budget={self.budget_ms}", f"--screenshot={png}", f"--window-size={size}"],
                  url)
        return png.is_file() and png.stat().st_size > 0

    def close(self) -> None:
        shutil.rmtree(self.profile, ignore_errors=True)


def blank_png(png: Path) -> bool | None:
    """True if the screenshot is a single colour (None when Pillow is missing)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(png) as im:
        lo, hi = im.convert("L").getextrema()
    return lo == hi


def find_chromium(explicit: str | None) -> str | None:
    for name in [explicit] if explicit else ["chromium", "chromium-browser", "google-chrome", "chrome"]:
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


# --------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", nargs="?", default="_build/html", help="built HTML folder")
    parser.add_argument("--out", default=None, help="screenshot folder (default <html>/../static-check)")
    parser.add_argument("--pages", nargs="*", default=None,
                        help="pages to screenshot, relative to the HTML folder, no .html (default: book/*)")
    parser.add_argument("--slice", type=int, default=5, help="N of the #z=N fragment for slice browsers")
    parser.add_argument("--chromium", default=None, help="browser binary (default: chromium on PATH)")
    parser.add_argument("--budget-ms", type=int, default=5000, help="virtual time for scripts to run")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per browser call")
    parser.add_argument("--window-size", default="1200,900")
    parser.add_argument("--no-browser", action="store_true", help="only check for external resources")
    args = parser.parse_args(argv)

    root = Path(args.html).resolve()
    if not (root / "index.html").is_file():
        print(f"FAIL: {root} has no index.html; build the book first (jupyter-book build .)")
        return 1
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)
    scans = {p: scan_page(p.read_text(encoding="utf-8", errors="replace")) for p in pages}
    failures: list[str] = []

    # 1. external resources and missing local scripts
    print(f"== 1. external resources in {len(pages)} pages under {root}")
    for page, scan in scans.items():
        rel = page.relative_to(root)
        for item in external_resources(scan):
            failures.append(f"{rel}: loads {item}")
            print(f"  FAIL {rel}: {item}")
        for src in missing_local_scripts(page, scan):
            failures.append(f"{rel}: local script {src} is missing from the build")
            print(f"  FAIL {rel}: missing local script {src}")
    external = sum(len(external_resources(s)) for s in scans.values())
    print(f"  {external} external script/stylesheet reference(s)")
    local = sorted({re.sub(r"\?.*", "", s).lstrip("./") for scan in scans.values() for s in scan.scripts
                    if not EXTERNAL.match(s)})
    mathjax = [s for s in local if "mathjax" in s.lower()]
    print(f"  local scripts: {len(local)}; MathJax served from: {mathjax or 'nowhere'}")
    if any(s.math for s in scans.values()) and not mathjax:
        failures.append("pages have math but no local MathJax script")

    if args.no_browser:
        return _report(failures)
    binary = find_chromium(args.chromium)
    if binary is None:
        print("FAIL: no Chromium found (apt-get install chromium, or pass --chromium PATH)")
        return 1
    browser = Chromium(binary, args.budget_ms, args.timeout)
    out = Path(args.out) if args.out else root.parent / "static-check"
    out.mkdir(parents=True, exist_ok=True)
    try:
        # 2. screenshots
        default = [p.relative_to(root).with_suffix("").as_posix() for p in pages if p.parent.name == "book"]
        chosen = [p.partition("#") for p in (args.pages or default)]
        print(f"== 2. screenshots of {len(chosen)} page(s), {args.window_size}, no network -> {out}")
        for name, _, anchor in chosen:  # "book/02_concepts#some-section" scrolls to that section
            page = root / f"{name}.html"
            if not page.is_file():
                failures.append(f"{page}: no such page")
                print(f"  FAIL {page}: no such page")
                continue
            stem = name.replace("/", "__") + (f"__{anchor}" if anchor else "")
            png = out / f"{stem}.png"
            ok = browser.screenshot(page.as_uri() + (f"#{anchor}" if anchor else ""), png, args.window_size)
            blank = blank_png(png) if ok else None
            status = "ok" if ok and not blank else "FAIL"
            where = name + (f"#{anchor}" if anchor else "")
            print(f"  {status} {where} -> {png.name}" + (" (blank)" if blank else ""))
            if status == "FAIL":
                failures.append(f"{page.relative_to(root)}: screenshot failed or blank")

        # 3. math rendered by the vendored MathJax
        math_pages = [p for p, s in scans.items() if s.math]
        print(f"== 3. math on {len(math_pages)} page(s)")
        for page in math_pages:
            dom = browser.dump_dom(page.as_uri())
            rendered = dom.count("<mjx-container")
            leftover = raw_tex(dom)
            ok = rendered >= scans[page].math and not leftover
            print(f"  {'ok' if ok else 'FAIL'} {page.relative_to(root)}: {scans[page].math} math elements, "
                  f"{rendered} mjx-container" + (f"; raw TeX left: {leftover}" if leftover else ""))
            if not ok:
                failures.append(f"{page.relative_to(root)}: math not rendered "
                                f"({rendered} of {scans[page].math})")

        # 4. slice browsers respond to #z=N
        browser_pages = [p for p, s in scans.items() if s.browsers]
        print(f"== 4. slice browsers on {len(browser_pages)} page(s), fragment #z={args.slice}")
        for page in browser_pages:
            plain = browser.dump_dom(page.as_uri())
            moved = browser.dump_dom(f"{page.as_uri()}#z={args.slice}")
            for element_id in scans[page].browsers:
                before, after = browser_state(plain, element_id), browser_state(moved, element_id)
                ok = bool(before[1]) and before[0] != after[0] and before[1] != after[1]
                print(f"  {'ok' if ok else 'FAIL'} {page.relative_to(root)} {element_id}: "
                      f"'{before[1]}' -> '{after[1]}' (frame {before[0]} -> {after[0]})")
                if not ok:
                    failures.append(f"{page.relative_to(root)}: slice browser {element_id} "
                                    f"ignored #z={args.slice}")
    finally:
        browser.close()
    return _report(failures)


def _report(failures: list[str]) -> int:
    if failures:
        print(f"== FAILED: {len(failures)} problem(s)")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("== OK: the static book needs no network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
