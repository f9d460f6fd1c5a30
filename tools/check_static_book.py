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
4. **Slice browsers** (``tutorialreg.viz.slice_browser``, root class ``tutorialreg-slice-browser``): on every
   page that has one, opening the page with ``#z=N`` must change the frame shown (image and caption) compared
   with opening it plainly; so must moving its slider (below).
5. **Parameter sliders** (root class ``tutorialreg-frame-slider``, elements ``{id}-img``, ``{id}-range``,
   ``{id}-label`` like the slice browser): on every page that has one, moving the slider must change the frame
   shown. "Moving" is what a reader's drag does: a copy of the page, beside it, gets a script that sets each
   ``{id}-range`` to another value (its max, or its min when it is at the max) and dispatches ``input`` and
   ``change`` events on it once the page has loaded; its DOM is compared with the plain page's.

Steps 2-5 need Chromium (Debian: ``apt-get install chromium``); ``--no-browser`` runs step 1 only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

BROWSER_CLASS = "tutorialreg-slice-browser"
SLIDER_CLASS = "tutorialreg-frame-slider"
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
    sliders: list[str] = field(default_factory=list)       # ids of parameter (frame) slider elements


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
        if SLIDER_CLASS in classes:
            self.scan.sliders.append(a.get("id", ""))


def scan_page(text: str) -> PageScan:
    """Scripts, stylesheets, math elements, slice browsers and parameter sliders of one HTML page."""
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


_MOVE_SCRIPT = """<script>/* added by tools/check_static_book.py: move each slider as a reader would */
window.addEventListener("load", function () {
  %s.forEach(function (id) {
    var r = document.getElementById(id + "-range");
    if (!r) { return; }
    var lo = r.min === "" ? 0 : +r.min, hi = r.max === "" ? 100 : +r.max;
    r.value = (+r.value !== hi) ? hi : lo;
    r.dispatchEvent(new Event("input", {bubbles: true}));
    r.dispatchEvent(new Event("change", {bubbles: true}));
  });
});
</script>"""


def with_slider_moves(html: str, element_ids: list[str]) -> str:
    """``html`` with a script that, once the page has loaded, moves the range input ``{id}-range`` of each
    element to another value and fires the events a reader's drag fires."""
    script = _MOVE_SCRIPT % json.dumps(element_ids)
    i = html.lower().rfind("</body>")
    return html[:i] + script + html[i:] if i >= 0 else html + script


def moved_dom(browser: Chromium, page: Path, element_ids: list[str]) -> str:
    """The DOM of ``page`` after its sliders were moved (a temporary copy beside it, then removed)."""
    copy = page.with_name(f".check-static-moved-{page.name}")
    copy.write_text(with_slider_moves(page.read_text(encoding="utf-8"), element_ids), encoding="utf-8")
    try:
        return browser.dump_dom(copy.as_uri())
    finally:
        copy.unlink(missing_ok=True)


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

        # 4. slice browsers respond to #z=N and to their slider
        browser_pages = [p for p, s in scans.items() if s.browsers]
        print(f"== 4. slice browsers on {len(browser_pages)} page(s), fragment #z={args.slice} and slider")
        for page in browser_pages:
            ids = scans[page].browsers
            plain = browser.dump_dom(page.as_uri())
            hashed = browser.dump_dom(f"{page.as_uri()}#z={args.slice}")
            dragged = moved_dom(browser, page, ids)
            for element_id in ids:
                before = browser_state(plain, element_id)
                for how, dom in ((f"#z={args.slice}", hashed), ("slider", dragged)):
                    after = browser_state(dom, element_id)
                    ok = bool(before[1]) and before[0] != after[0] and before[1] != after[1]
                    print(f"  {'ok' if ok else 'FAIL'} {page.relative_to(root)} {element_id} ({how}): "
                          f"'{before[1]}' -> '{after[1]}' (frame {before[0]} -> {after[0]})")
                    if not ok:
                        failures.append(f"{page.relative_to(root)}: slice browser {element_id} ignored {how}")

        # 5. parameter sliders change frame when moved
        slider_pages = [p for p, s in scans.items() if s.sliders]
        print(f"== 5. parameter sliders on {len(slider_pages)} page(s)")
        for page in slider_pages:
            ids = scans[page].sliders
            plain = browser.dump_dom(page.as_uri())
            dragged = moved_dom(browser, page, ids)
            for element_id in ids:
                before, after = browser_state(plain, element_id), browser_state(dragged, element_id)
                shown = bool(before[1]) and re.search(rf'id="{re.escape(element_id)}-img"', plain)
                ok = bool(shown) and before[0] != after[0] and before[1] != after[1]
                print(f"  {'ok' if ok else 'FAIL'} {page.relative_to(root)} {element_id}: "
                      f"'{before[1]}' -> '{after[1]}' (frame {before[0]} -> {after[0]})")
                if not ok:
                    failures.append(f"{page.relative_to(root)}: parameter slider {element_id} did not change "
                                    "frame when moved")
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
