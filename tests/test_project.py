"""The project as a whole, without executing any chapter.

- **One address**: ``pyproject.toml`` ``[project.urls]`` is the source; ``_config.yml``, every chapter's Colab
  install cell (``.md`` and ``.ipynb``) and README agree with it (``tools/set_repository.py`` rewrites them).
- **Self-contained chapters**: no chapter's code reads a path outside its own folder (Colab opens a chapter
  alone: ``../configs/x.yaml`` or ``/home/me/repo/...`` exist only in a clone).
- **Honest dependencies**: ``requirements.txt`` = ``pyproject.toml`` dependencies; every dependency is
  imported by the package and every third-party import of the package is declared; the wheel's package data
  covers every non-module file of ``src/tutorialreg``; README states the tested ranges.
- **Tools**: ``tools/set_repository.py`` rewrites a copy of the project consistently; ``tools/rehearse.py``
  and ``tools/stage_book.py`` decide what is publishable as documented; the GitHub workflows have the jobs
  and permissions that deploying to Pages needs.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import jupytext
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE = PYPROJECT["project"]["name"]


def _load_tool(name: str):
    path = ROOT / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


set_repository = _load_tool("set_repository")
rehearse = _load_tool("rehearse")
CHAPTERS = rehearse.toc_chapters()


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _repository() -> str:
    return PYPROJECT["project"]["urls"]["Repository"]


def _branch() -> str:
    return str(_config()["repository"]["branch"])


def _code_cells(path: Path) -> list[str]:
    return [c.source for c in jupytext.read(path).cells if c.cell_type == "code"]


def _install_specs(source: str) -> list[str]:
    return re.findall(rf"""{PACKAGE}\s*@\s*(git\+[^"'\s]+)""", source)


# ------------------------------------------------------------------------------------------ one address
def test_project_urls_are_complete_and_consistent():
    urls = PYPROJECT["project"]["urls"]
    owner, repo = set_repository.parse_github(urls["Repository"])
    assert urls["Repository"] == f"https://github.com/{owner}/{repo}", "no trailing slash or .git"
    assert urls == set_repository.project_urls(urls["Repository"]), \
        "Homepage/Documentation = the GitHub Pages site, Issues = Repository/issues"


def test_config_names_the_repository():
    repo = _config()["repository"]
    assert repo["url"] == _repository()
    assert repo["path_to_book"] == ""


@pytest.mark.parametrize("chapter", CHAPTERS)
@pytest.mark.parametrize("suffix", [".md", ".ipynb"])
def test_colab_install_cell_installs_from_the_repository(chapter, suffix):
    first = _code_cells(ROOT / f"{chapter}{suffix}")[0]
    expected = set_repository.install_spec(_repository(), _branch())
    assert _install_specs(first) == [expected], f"{chapter}{suffix}: run tools/set_repository.py"


GITHUB_LINK = re.compile(r"(?:https?://)?(?:www\.)?github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+)")
PAGES_LINK = re.compile(r"https?://([A-Za-z0-9-]+)\.github\.io/([A-Za-z0-9._-]*)")
_PART = r"([^/\s\"')]+)"
COLAB_LINK = re.compile(rf"colab\.research\.google\.com/github/{_PART}/{_PART}/blob/{_PART}/")


def _addresses_of_ours(text: str) -> list[str]:
    """Links in ``text`` that name this project (its package name as owner or repository), to check."""
    found = []
    for owner, repo in GITHUB_LINK.findall(text):
        repo = repo.removesuffix(".git").rstrip(".")
        if PACKAGE in (owner.lower(), repo.lower()):
            found.append(f"https://github.com/{owner}/{repo}")
    for owner, path in PAGES_LINK.findall(text):
        if PACKAGE in (owner.lower(), path.lower()):
            found.append(f"https://{owner}.github.io/{path}")
    return found


@pytest.mark.parametrize("rel", ["README.md", "_config.yml", *[f"{c}.md" for c in CHAPTERS],
                                 *[f"{c}.ipynb" for c in CHAPTERS]])
def test_every_mention_of_the_project_uses_its_address(rel):
    text = (ROOT / rel).read_text()
    owner, repo = set_repository.parse_github(_repository())
    allowed = {_repository(), set_repository.pages_url(owner, repo).rstrip("/")}
    stale = sorted({a for a in _addresses_of_ours(text) if a.rstrip("/") not in allowed})
    assert not stale, f"{rel} names {stale}, not {_repository()}: run tools/set_repository.py"
    for c_owner, c_repo, c_branch in COLAB_LINK.findall(text):
        assert (c_owner, c_repo, c_branch) == (owner, repo, _branch()), \
            f"{rel}: Colab link to {c_owner}/{c_repo}/blob/{c_branch}"


def test_readme_names_the_repository_and_the_site():
    text = (ROOT / "README.md").read_text()
    owner, repo = set_repository.parse_github(_repository())
    assert _repository() in text
    assert set_repository.pages_url(owner, repo) in text
    assert "tools/set_repository.py" in text, "README must say how to point a fork at itself"


def test_set_repository_rewrites_a_copy_consistently(tmp_path):
    """On a copy of the project (the files a clone would have): a fork on another branch, and back."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    copy = tmp_path / "repo"
    wanted = {"pyproject.toml", "_config.yml", "_toc.yml", "README.md", "tools/set_repository.py"}
    for rel in files:
        if rel in wanted or (rel.startswith("book/") and rel.endswith((".md", ".ipynb"))):
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    tool = copy / "tools" / "set_repository.py"
    run = [sys.executable, str(tool), "https://github.com/someone/registration-fork.git", "--branch", "dev"]
    subprocess.run(run, cwd=copy, check=True, capture_output=True)

    urls = tomllib.loads((copy / "pyproject.toml").read_text())["project"]["urls"]
    assert urls == set_repository.project_urls("https://github.com/someone/registration-fork")
    config = yaml.safe_load((copy / "_config.yml").read_text())
    assert config["repository"] == {"url": "https://github.com/someone/registration-fork", "branch": "dev",
                                    "path_to_book": ""}
    assert config == {**_config(), "repository": config["repository"]}, "nothing else in _config.yml changed"
    def in_sync(root, chapter):
        md, nb = jupytext.read(root / f"{chapter}.md"), jupytext.read(root / f"{chapter}.ipynb")
        return [c.source for c in md.cells] == [c.source for c in nb.cells]

    for chapter in CHAPTERS:
        assert _install_specs(_code_cells(copy / f"{chapter}.md")[0]) == \
            ["git+https://github.com/someone/registration-fork@dev"]
        # a pair in sync stays in sync (test_book.py reports pairs that are out of sync already)
        assert in_sync(copy, chapter) or not in_sync(ROOT, chapter), f"{chapter}: pair out of sync"
        json.loads((copy / f"{chapter}.ipynb").read_text())  # still valid JSON
        assert "github.com/tutorialreg/" not in (copy / f"{chapter}.md").read_text()
    assert "https://github.com/someone/registration-fork" in (copy / "README.md").read_text()

    back = [sys.executable, str(tool), _repository(), "--branch", _branch()]
    subprocess.run(back, cwd=copy, check=True, capture_output=True)
    chapters = {f"{c}{s}" for c in CHAPTERS for s in (".md", ".ipynb")}
    for rel in (wanted - {"tools/set_repository.py"}) | chapters:
        assert (copy / rel).read_text() == (ROOT / rel).read_text(), f"{rel} did not round-trip"


def test_set_repository_rewrite_rules():
    old, new = "https://github.com/tutorialreg/tutorialreg", "https://github.com/me/fork"
    text = ('%pip install -q "tutorialreg @ git+https://github.com/tutorialreg/tutorialreg"\n'
            "git clone https://github.com/tutorialreg/tutorialreg.git\ncd tutorialreg\n"
            "https://github.com/tutorialreg/tutorialreg-extras stays; "
            "https://github.com/DeepRegNet/DeepReg too\n"
            "https://colab.research.google.com/github/tutorialreg/tutorialreg/blob/main/book/x.ipynb\n"
            "https://tutorialreg.github.io/tutorialreg/ and https://github.com/tutorialreg/tutorialreg/issues\n")
    assert set_repository.rewrite(text, old, "main", new, "dev") == (
        '%pip install -q "tutorialreg @ git+https://github.com/me/fork@dev"\n'
        "git clone https://github.com/me/fork\ncd fork\n"
        "https://github.com/tutorialreg/tutorialreg-extras stays; "
        "https://github.com/DeepRegNet/DeepReg too\n"
        "https://colab.research.google.com/github/me/fork/blob/dev/book/x.ipynb\n"
        "https://me.github.io/fork/ and https://github.com/me/fork/issues\n")


# ------------------------------------------------------------------------------------------ self-contained
def _python_of(source: str) -> str:
    return TransformerManager().transform_cell(source)


ABSOLUTE = re.compile(r"^(/[^/\s]|~[/\\]|[A-Za-z]:[\\/])")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def paths_leaving_the_folder(source: str) -> list[str]:
    """Path-like strings (and ``os.pardir``) in a code cell that reach outside the cell's working folder:
    a ``..`` component, or an absolute or home-relative path. Magics (``%cd ..``, ``!cat ../x``) count:
    IPython turns them into calls with string arguments first."""
    tree = ast.parse(_python_of(source))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for token in re.split(r"""[\s"'=,;()\[\]{}]+""", node.value):
                if not token or URL.match(token) or token == "/dev/null":
                    continue
                if ".." in PurePosixPath(token.replace("\\", "/")).parts or ABSOLUTE.match(token):
                    found.append(token)
        elif isinstance(node, ast.Attribute) and node.attr == "pardir":
            found.append("os.pardir")
        elif isinstance(node, ast.Attribute) and node.attr in ("parent", "parents"):
            base = node.value
            if isinstance(base, ast.Call) and isinstance(base.func, (ast.Attribute, ast.Name)) and \
                    getattr(base.func, "attr", getattr(base.func, "id", "")) in ("cwd", "getcwd", "resolve",
                                                                                 "absolute"):
                found.append(f"<working folder>.{node.attr}")
    return found


def test_path_check_recognises_what_leaves_the_folder():
    assert paths_leaving_the_folder('cfg = load("../configs/x.yaml")') == ["../configs/x.yaml"]
    assert paths_leaving_the_folder('open("/work/main/configs/x.yaml")') == ["/work/main/configs/x.yaml"]
    assert paths_leaving_the_folder("%cd ..") == [".."]
    assert paths_leaving_the_folder("!cat ../README.md") == ["../README.md"]
    assert paths_leaving_the_folder("p = Path.cwd().parent / 'configs'") == ["<working folder>.parent"]
    assert paths_leaving_the_folder("import os\nos.path.join(os.pardir, 'x')") == ["os.pardir"]
    assert paths_leaving_the_folder('print(f"{t:.1f} ms/step", " rough / smooth: ")') == []
    assert paths_leaving_the_folder('x = load("_outputs/run1/model.keras"); u = "https://a.org/../b"') == []
    assert paths_leaving_the_folder('load_config("paired_ct_lung")') == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_chapter_reads_a_path_outside_its_folder(chapter):
    """Colab opens the notebook alone: anything it needs comes from the package or the data manifest."""
    problems = [f"code cell {i}: {path}" for i, source in enumerate(_code_cells(ROOT / f"{chapter}.md"), 1)
                for path in paths_leaving_the_folder(source)]
    assert not problems, (f"{chapter} reaches outside its folder (load package data by name instead, e.g. "
                          f"configs from {PACKAGE}/configs): {problems}")


# ------------------------------------------------------------------------------------------ dependencies
def _name(requirement: str) -> str:
    return re.split(r"[ <>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


IMPORT_NAMES = {"pyyaml": "yaml", "pillow": "PIL", "scikit-image": "skimage"}
# imported by the package, provided by a declared dependency's own requirements (not a separate install)
PROVIDED_BY = {"mpl_toolkits": "matplotlib", "IPython": "ipywidgets"}


def _requirements_txt() -> list[str]:
    return [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.split("#")[0].strip()]


def test_requirements_txt_matches_pyproject():
    declared = sorted(PYPROJECT["project"]["dependencies"], key=_name)
    assert sorted(_requirements_txt(), key=_name) == declared, \
        "requirements.txt must list exactly the dependencies of pyproject.toml, with the same ranges"


def test_scikit_image_is_not_a_dependency():
    assert "scikit-image" not in {_name(r) for r in PYPROJECT["project"]["dependencies"]}


def _package_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src" / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != PACKAGE and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_dependency_is_imported_by_the_package():
    imported = set(_package_imports())
    unused = [r for r in PYPROJECT["project"]["dependencies"]
              if IMPORT_NAMES.get(_name(r), _name(r)) not in imported]
    assert not unused, f"declared but never imported by src/{PACKAGE}: {unused}"


def test_every_third_party_import_of_the_package_is_declared():
    declared = {IMPORT_NAMES.get(_name(r), _name(r)) for r in PYPROJECT["project"]["dependencies"]}
    missing = {m: sorted(files) for m, files in _package_imports().items()
               if m not in declared and PROVIDED_BY.get(m) not in declared}
    assert not missing, f"imported by the package but not declared in pyproject.toml: {missing}"


def test_package_data_covers_every_non_module_file():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"][PACKAGE]
    base = ROOT / "src" / PACKAGE
    files = [p.relative_to(base).as_posix() for p in base.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")]
    uncovered = [f for f in files if not any(fnmatch.fnmatch(f, pat) and
                                             f.count("/") == pat.count("/") for pat in patterns)]
    assert not uncovered, f"not in [tool.setuptools.package-data] (the wheel would lack them): {uncovered}"


def test_readme_states_every_dependency_range():
    text = (ROOT / "README.md").read_text()
    missing = [r for r in PYPROJECT["project"]["dependencies"] if f"`{r}`" not in text]
    assert not missing, f"README's table of tested versions lacks {missing}"


# ------------------------------------------------------------------------------------------ tools
stage_book = _load_tool("stage_book")


def _nb(*cells):
    return {"cells": [{"cell_type": t, "source": s, "metadata": {}, **({"outputs": o, "execution_count": n}
                                                                      if t == "code" else {})}
                      for t, s, o, n in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_stage_book_publishes_only_complete_current_notebooks():
    committed = _nb(("markdown", "# A", None, None), ("code", "x = 1", [], None))
    ok = _nb(("markdown", "# A", None, None), ("code", "x = 1", [{"output_type": "stream"}], 1))
    assert stage_book.notebook_problems(ok, committed) == []
    stale = _nb(("markdown", "# A", None, None), ("code", "x = 2", [], 1))
    assert "stale" in stage_book.notebook_problems(stale, committed)[0]
    unrun = _nb(("markdown", "# A", None, None), ("code", "x = 1", [], None))
    assert "not executed" in stage_book.notebook_problems(unrun, committed)[0]
    failed = _nb(("markdown", "# A", None, None), ("code", "x = 1", [{"output_type": "error"}], 1))
    assert "error" in stage_book.notebook_problems(failed, committed)[0]


def test_stage_book_points_chapter_links_at_the_staged_notebooks():
    staged = {"book/02_concepts", "book/07_conclusion"}
    text = ("[2](02_concepts.md) [refs](07_conclusion.md#references) [x](notes.md) [u](https://a.org/x.md) "
            "[same](../book/02_concepts.md)")
    assert stage_book.relink(text, "book/01_introduction", staged) == (
        "[2](02_concepts.ipynb) [refs](07_conclusion.ipynb#references) [x](notes.md) [u](https://a.org/x.md) "
        "[same](../book/02_concepts.ipynb)")


def test_staged_config_builds_from_notebooks_without_executing():
    staged = stage_book.staged_config(_config())
    assert staged["execute"]["execute_notebooks"] == "off"
    assert not {"**.ipynb", "*.ipynb", "**/*.ipynb"} & set(staged["exclude_patterns"])
    assert staged["repository"] == _config()["repository"]
    assert staged["launch_buttons"] == _config()["launch_buttons"]
    assert yaml.safe_load(yaml.safe_dump(staged))["execute"]["execute_notebooks"] == "off"  # not False


def test_wheel_check_names_missing_package_data(tmp_path, monkeypatch):
    import zipfile

    wheel = tmp_path / f"{PACKAGE}-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{PACKAGE}/__init__.py", "")
        z.writestr(f"{PACKAGE}-0.dist-info/METADATA", "Name: x\n")
    monkeypatch.setattr(rehearse, "clone_files",
                        lambda: [f"src/{PACKAGE}/__init__.py", f"src/{PACKAGE}/configs/a.yaml", "README.md"])
    assert rehearse.check_wheel(wheel) == [
        f"missing from the wheel: {PACKAGE}/configs/a.yaml (add it to [tool.setuptools.package-data] in "
        "pyproject.toml)"]


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_test_build_and_deploy_the_book():
    assert WORKFLOWS, "no GitHub workflow"
    flows = {p.name: yaml.safe_load(p.read_text()) for p in WORKFLOWS}
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    triggers = {k for f in flows.values() for k in (f.get(True) or f.get("on") or {})}
    assert {"push", "pull_request", "schedule"} <= triggers
    assert "actions/upload-pages-artifact" in text and "actions/deploy-pages" in text
    deploy = [job for f in flows.values() for job in f["jobs"].values()
              if any("deploy-pages" in str(s.get("uses", "")) for s in job.get("steps", []))]
    assert deploy, "no job deploys to Pages"
    for job in deploy:
        perms = job.get("permissions") or {}
        assert perms.get("pages") == "write" and perms.get("id-token") == "write", perms
        assert job.get("environment", {}).get("name") == "github-pages"
        assert "refs/heads/main" in str(job.get("if", "")), "deploy from main only"
    assert "make test" in text, "the workflow runs README's test command"
