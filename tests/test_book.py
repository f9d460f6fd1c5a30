"""The book's structure, without executing it (the rehearsal, ``make book`` and nbval execute chapters).

- every chapter in ``_toc.yml`` has its MyST ``.md`` (the Sphinx source) and, in sync with it, an output-free
  ``.ipynb`` at the path the Colab launch button opens;
- every chapter follows the conventions: first code cell = Colab-only install, second prints the mode
  banner, a Summary and Exercises section, last code cell asserts; every code cell parses;
- ``_config.yml`` builds from the ``.md``, caches execution, fails on errors and needs no network to read;
- ``tools/check_static_book.py`` recognises what it must reject.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import jupytext
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [  # the tutorial's order; file names are fixed
    "book/01_introduction", "book/02_concepts", "book/03_losses", "book/04_affine_ct",
    "book/05_nonrigid_mr", "book/06_deep_learning_lung_ct", "book/06b_mr_ultrasound", "book/07_conclusion",
]
# The project's address: pyproject.toml [project.urls] Repository (tools/set_repository.py sets it).
REPO_URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
REPO_PATH = REPO_URL.split("github.com/", 1)[1]  # owner/name


def colab_link(chapter: str) -> str:
    """The Colab launch link a chapter page must have: the committed notebook on the configured branch."""
    branch = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"]
    return f"https://colab.research.google.com/github/{REPO_PATH}/blob/{branch}/{chapter}.ipynb"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _rehearse():
    """``tools/rehearse.py``, whose ``toc_chapters`` reads the table of contents for the rehearsal too."""
    spec = importlib.util.spec_from_file_location("tools_rehearse", ROOT / "tools" / "rehearse.py")
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def toc_files() -> list[str]:
    """Every ``file:`` of ``_toc.yml`` in reading order, the root first."""
    return _rehearse().toc_chapters()


def code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def python_of(source: str) -> str:
    """A cell's source as IPython runs it (magics such as ``%pip`` become function calls)."""
    return TransformerManager().transform_cell(source)


@pytest.fixture(scope="module", params=CHAPTERS)
def chapter(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def md_notebook(chapter):
    path = ROOT / f"{chapter}.md"
    if not path.is_file():
        pytest.fail(f"{chapter}.md is listed in _toc.yml but does not exist")
    return jupytext.read(path)


# ------------------------------------------------------------------------------ table of contents
def test_toc_lists_every_chapter_in_order():
    assert toc_files() == CHAPTERS


def test_toc_root_is_the_introduction():
    assert yaml.safe_load((ROOT / "_toc.yml").read_text())["root"] == "book/01_introduction"


# ------------------------------------------------------------------------------ paired files
def test_colab_notebook_exists_where_the_launch_button_points(chapter):
    config = _config()
    repo = config["repository"]
    base = (repo.get("path_to_book") or "").strip("/")
    rel = f"{base}/{chapter}.ipynb" if base else f"{chapter}.ipynb"
    url = f"{config['launch_buttons']['colab_url']}/github/{repo['url'].split('github.com/')[1]}/blob/" \
          f"{repo['branch']}/{rel}"
    assert url == colab_link(chapter)
    assert (ROOT / rel).is_file(), f"the Colab button of {chapter} opens {url}, but {rel} does not exist"


def test_md_and_ipynb_are_paired_by_jupytext(chapter, md_notebook):
    assert md_notebook.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert md_notebook.metadata["kernelspec"]["name"] == "python3"


def test_md_and_ipynb_are_in_sync(chapter, md_notebook):
    ipynb = ROOT / f"{chapter}.ipynb"
    if not ipynb.is_file():
        pytest.fail(f"{chapter}.ipynb missing: run `jupytext --sync {chapter}.md`")

    def cells(nb):
        return [(c.cell_type, c.source.rstrip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]

    md_cells, nb_cells = cells(md_notebook), cells(jupytext.read(ipynb))
    fix = f"run `jupytext --sync {chapter}.md`"
    assert len(md_cells) == len(nb_cells), f"{chapter}: cell counts differ; {fix}"
    for i, (a, b) in enumerate(zip(md_cells, nb_cells, strict=True)):
        assert a == b, f"{chapter}: cell {i} differs between .md and .ipynb; {fix}"


def test_ipynb_is_committed_without_outputs(chapter):
    ipynb = ROOT / f"{chapter}.ipynb"
    if not ipynb.is_file():
        pytest.fail(f"{chapter}.ipynb missing")
    nb = json.loads(ipynb.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{chapter}.ipynb cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"{chapter}.ipynb cell {i} has an execution count"


# ------------------------------------------------------------------------------ chapter conventions
def test_first_code_cell_installs_the_package_in_colab_only(chapter, md_notebook):
    first = code_cells(md_notebook)[0]
    assert re.search(r"""if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:""", first), first
    assert re.search(rf"%pip install .*git\+{re.escape(REPO_URL)}", first), first
    namespace: dict = {}
    exec(compile(python_of(first), f"{chapter}: cell 1", "exec"), namespace)  # outside Colab: a no-op
    assert "get_ipython" not in namespace


def test_second_code_cell_prints_the_mode_banner(chapter, md_notebook):
    second = code_cells(md_notebook)[1]
    assert "import tutorialreg" in second or "from tutorialreg" in second
    assert re.search(r"print\((tutorialreg\.)?mode_banner\(\)\)", second), second


def test_chapter_ends_with_summary_exercises_and_an_assert_cell(chapter, md_notebook):
    headings = [line.strip() for cell in md_notebook.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("#")]
    assert "## Summary" in headings and "## Exercises" in headings, f"{chapter}: {headings}"
    assert re.search(r"^\s*assert\b", code_cells(md_notebook)[-1], re.MULTILINE), \
        f"{chapter}: the last code cell must check the chapter's numbers with assert"


def test_every_code_cell_parses(chapter, md_notebook):
    for i, source in enumerate(code_cells(md_notebook)):
        compile(python_of(source), f"{chapter}: code cell {i + 1}", "exec")


# ------------------------------------------------------------------------------ configuration
def test_config_builds_from_md_with_cached_execution_that_fails_on_errors():
    config = _config()
    assert "**.ipynb" in config["exclude_patterns"]
    for folder in ("_build", ".venv", "README.md", "tests", "src", "benchmarks", "tools"):
        assert folder in config["exclude_patterns"], folder
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["execute"]["timeout"] >= 1800
    assert config["execute"]["allow_errors"] is False
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["url"] == REPO_URL and config["repository"]["path_to_book"] == ""


def test_config_needs_no_network_to_read():
    sphinx = _config()["sphinx"]["config"]
    static = sphinx["html_static_path"]
    assert "_static" not in static, "Jupyter Book would inject every .js of a _static folder into every page"
    mathjax = sphinx["mathjax_path"]
    assert not re.match(r"^(https?:)?//", mathjax), "MathJax must be vendored, not loaded from a CDN"
    vendored = [ROOT / folder / mathjax for folder in static if (ROOT / folder / mathjax).is_file()]
    assert vendored, f"{mathjax} not found in {static}"
    text = vendored[0].read_text(encoding="utf-8", errors="replace")
    assert len(text) > 1_000_000 and "MathJax" in text, "expected the full single-file MathJax build"
    assert sphinx["nb_ipywidgets_js"] == {}, "no require.js / widget manager from a CDN"
    vendor_files = [p for folder in static for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in vendor_files) < 5 * 2**20, "vendor single files, not node_modules"


# ------------------------------------------------------------------------------ static check script
@pytest.fixture(scope="module")
def checker():
    path = ROOT / "tools" / "check_static_book.py"
    spec = importlib.util.spec_from_file_location("check_static_book", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_static_check_flags_external_scripts_and_stylesheets(checker):
    page = """<html><head>
    <script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
    <script src="//unpkg.com/require.js"></script>
    <script defer src="../_static/mathjax/tex-svg-full.js?v=1"></script>
    <link rel="stylesheet" href="https://fonts.example.org/font.css">
    <link rel="stylesheet" href="../_static/styles/theme.css">
    </head><body><span class="math notranslate nohighlight">\\(x\\)</span>
    <div id="tr-sb-1" class="tutorialreg-slice-browser"></div></body></html>"""
    scan = checker.scan_page(page)
    assert checker.external_resources(scan) == [
        "script: https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        "script: //unpkg.com/require.js",
        "stylesheet: https://fonts.example.org/font.css",
    ]
    assert scan.math == 1 and scan.browsers == ["tr-sb-1"]


def test_static_check_reads_math_and_slice_browser_state(checker):
    assert checker.raw_tex("<p>$$x$$</p><pre>\\(code\\)</pre>") and not checker.raw_tex("<pre>$$x$$</pre>")
    dom = '<img id="b-img" src="data:image/png;base64,AAA"><span id="b-label">slice 5 / 37 (axis 2)</span>'
    frame, caption = checker.browser_state(dom, "b")
    assert caption == "slice 5 / 37 (axis 2)" and frame == checker.browser_state(dom, "b")[0]
    assert frame != checker.browser_state(dom.replace("AAA", "BBB"), "b")[0]


def test_static_check_finds_parameter_sliders_and_moves_them(checker):
    page = """<html><body><div id="tr-fs-3" class="tutorialreg-frame-slider">
    <img id="tr-fs-3-img" src="data:image/png;base64,AAA">
    <input type="range" id="tr-fs-3-range" min="0" max="4">
    <span id="tr-fs-3-label">alpha = 0.0</span></div></body></html>"""
    scan = checker.scan_page(page)
    assert scan.sliders == ["tr-fs-3"] and scan.browsers == []
    moved = checker.with_slider_moves(page, scan.sliders)
    assert moved.index('["tr-fs-3"]') < moved.index("</body>")
    assert 'dispatchEvent(new Event("input"' in moved and moved.startswith(page[:200])
    assert checker.browser_state(page, "tr-fs-3")[1] == "alpha = 0.0"


def test_built_pages_launch_colab_on_the_committed_notebook():
    """Only when the book has been built: each chapter page's Colab link opens the .ipynb of that chapter."""
    html = ROOT / "_build" / "html"
    pages = [(c, html / f"{c}.html") for c in CHAPTERS if (html / f"{c}.html").is_file()]
    if not pages:
        pytest.skip("book not built (jupyter-book build .)")
    for chapter_name, page in pages:
        links = set(re.findall(r'https://colab\.research\.google\.com/github/[^"]+', page.read_text()))
        assert links == {colab_link(chapter_name)}, (chapter_name, links)
