"""Point the project at another GitHub repository (a fork) or branch, everywhere at once.

Usage::

    python tools/set_repository.py https://github.com/ME/tutorialreg [--branch main] [--dry-run]

The source of the project's address is ``[project.urls]`` in ``pyproject.toml`` (``Repository``; ``Homepage``
and ``Documentation`` are the GitHub Pages site, ``Issues`` the issue tracker). This rewrites, from the
current address and branch (``Repository`` and ``_config.yml`` ``repository.branch``) to the new ones:

- ``pyproject.toml`` ``[project.urls]``;
- ``_config.yml`` ``repository.url`` and ``repository.branch`` (the Colab, repository and issue buttons);
- every chapter's Colab install cell, ``%pip install -q "tutorialreg @ git+URL"`` (``git+URL@BRANCH`` for a
  branch other than ``main``, so that Colab installs the package of the branch whose notebook it opened),
  in ``book/*.md`` and, with the very same edits of each cell's text, in the paired ``book/*.ipynb``, so that
  jupytext pairs stay in sync (the notebook is rewritten in nbformat's own layout: only those cells change);
- every other mention of the old address in the project's text files (README's clone command and the ``cd``
  after it, links to the repository, its Pages site, Colab links ``.../github/ORG/REPO/blob/BRANCH/...``);
  not in ``tests/`` and ``tools/``, which read the address from ``pyproject.toml``.

``tests/test_project.py`` checks that all of them agree. Files are the ones a clone would have (tracked and
untracked, not ignored); ``data_manifest.yaml`` (upstream data URLs) is never touched.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)(?:\.git)?/?$")
TEXT_SUFFIXES = {".md", ".ipynb", ".toml", ".yml", ".yaml", ".py", ".cff", ".txt", ".cfg", ".rst", ".html",
                 ".json", ""}
NEVER = {"data_manifest.yaml", "src/tutorialreg/data_manifest.yaml"}
# tests and tools derive the address from pyproject.toml; their literal addresses are test data
NEVER_UNDER = ("tests/", "tools/", "_vendor/", ".ci/")
DEFAULT_BRANCH = "main"
# characters that may continue an address: a match must not be followed by one of them
TAIL = r"(?![A-Za-z0-9_.-])"


def parse_github(url: str) -> tuple[str, str]:
    """(owner, repository) of a GitHub repository URL, normalised (no ``.git``, no trailing slash)."""
    m = GITHUB.match(url.strip())
    if not m:
        raise ValueError(f"not a GitHub repository URL of the form https://github.com/OWNER/REPO: {url!r}")
    return m.group(1), m.group(2)


def pages_url(owner: str, repo: str) -> str:
    """The GitHub Pages address of ``owner/repo`` (a project site, or a user site for OWNER.github.io)."""
    host = f"{owner.lower()}.github.io"
    return f"https://{host}/" if repo.lower() == host else f"https://{host}/{repo}/"


def install_spec(repository: str, branch: str) -> str:
    """What follows ``tutorialreg @ `` in a chapter's Colab install cell."""
    return f"git+{repository}" + (f"@{branch}" if branch != DEFAULT_BRANCH else "")


def project_urls(repository: str) -> dict[str, str]:
    owner, repo = parse_github(repository)
    site = pages_url(owner, repo)
    return {"Homepage": site, "Documentation": site, "Repository": repository,
            "Issues": f"{repository}/issues"}


def current() -> tuple[str, str]:
    """(repository URL, branch) the project names now."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    if "Repository" not in urls:
        raise SystemExit("set_repository: pyproject.toml has no [project.urls] Repository")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return urls["Repository"].rstrip("/"), str(config.get("repository", {}).get("branch") or DEFAULT_BRANCH)


def rewrite(text: str, old: str, old_branch: str, new: str, new_branch: str) -> str:
    """``text`` with every mention of the old address (and branch, where a URL names it) made the new one."""
    o_owner, o_repo = parse_github(old)
    n_owner, n_repo = parse_github(new)
    gh = rf"github\.com/{re.escape(o_owner)}/{re.escape(o_repo)}"
    # 1. Colab install cells: git+URL[@ref]
    text = re.sub(rf"git\+https://{gh}(?:\.git)?(?:@[A-Za-z0-9_./-]+)?{TAIL}",
                  lambda m: install_spec(new, new_branch), text)
    # 2. Colab links: colab.research.google.com/github/OWNER/REPO/blob/BRANCH/
    text = re.sub(rf"(colab\.research\.google\.com/github/){re.escape(o_owner)}/{re.escape(o_repo)}"
                  rf"/blob/{re.escape(old_branch)}/",
                  lambda m: f"{m.group(1)}{n_owner}/{n_repo}/blob/{new_branch}/", text)
    # 3. links into the tree at the old branch
    text = re.sub(rf"https://{gh}/(blob|tree|edit|raw)/{re.escape(old_branch)}/",
                  lambda m: f"{new}/{m.group(1)}/{new_branch}/", text)
    # 4. a clone command followed by `cd REPO`: the folder takes the new repository's name
    text = re.sub(rf"(git clone https://{gh}(?:\.git)?[ \t]*\n[ \t]*cd[ \t]+){re.escape(o_repo)}{TAIL}",
                  lambda m: f"{m.group(1)}{n_repo}", text)
    # 5. the repository itself (clone commands, links, issues)
    text = re.sub(rf"https://{gh}(?:\.git)?{TAIL}", lambda m: new, text)
    # 6. the Pages site
    text = re.sub(rf"https://{re.escape(o_owner.lower())}\.github\.io/{re.escape(o_repo)}/?{TAIL}",
                  lambda m: pages_url(n_owner, n_repo), text, flags=re.IGNORECASE)
    return text


def _dump_notebook(nb: dict) -> str:
    """A notebook as nbformat and jupytext write it."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def rewrite_notebook(text: str, edit) -> str:
    """``edit`` applied to each cell's source of an ``.ipynb`` (as the paired ``.md`` cell gets it), the file
    otherwise unchanged; a notebook in a layout that cannot be reproduced is edited as plain text."""
    nb = json.loads(text)
    if _dump_notebook(nb) != text:
        return edit(text)
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        joined = "".join(source) if isinstance(source, list) else source
        new = edit(joined)
        if new != joined:
            cell["source"] = new.splitlines(keepends=True) if isinstance(source, list) else new
    return _dump_notebook(nb)


def rewrite_config_branch(text: str, branch: str) -> str:
    """``_config.yml`` with ``repository: branch:`` set, comments and layout kept."""
    pattern = re.compile(r"^(repository:[ \t]*\n(?:[ \t]+.*\n|[ \t]*\n)*?[ \t]+branch:[ \t]*)([^\s#]+)", re.M)
    if not pattern.search(text):
        raise SystemExit("set_repository: _config.yml has no repository: branch: entry")
    return pattern.sub(lambda m: m.group(1) + branch, text, count=1)


def rewrite_urls_table(text: str, new: str) -> str:
    """``pyproject.toml`` with ``[project.urls]`` entries set from ``new``."""
    for key, value in project_urls(new).items():
        text, n = re.subn(rf'^({key}[ \t]*=[ \t]*)"[^"]*"', lambda m, v=value: f'{m.group(1)}"{v}"', text,
                          count=1, flags=re.M)
        if not n:
            raise SystemExit(f"set_repository: pyproject.toml [project.urls] has no {key}")
    return text


def clone_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = []
    for rel in sorted(set(filter(None, out.split("\0")))):
        path = ROOT / rel
        if rel in NEVER or rel.startswith(NEVER_UNDER) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix not in TEXT_SUFFIXES:
            continue
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="https://github.com/OWNER/REPO")
    parser.add_argument("--branch", default=None, help="branch readers' Colab links and installs use "
                        "(default: keep the current one)")
    parser.add_argument("--dry-run", action="store_true", help="list what would change, write nothing")
    args = parser.parse_args(argv)

    old, old_branch = current()
    owner, repo = parse_github(args.url)
    new = f"https://github.com/{owner}/{repo}"
    new_branch = args.branch or old_branch
    print(f"set_repository: {old} ({old_branch}) -> {new} ({new_branch})")
    changed = []
    for path in clone_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix == ".ipynb":
            new_text = rewrite_notebook(text, lambda t: rewrite(t, old, old_branch, new, new_branch))
        else:
            new_text = rewrite(text, old, old_branch, new, new_branch)
        if rel == "pyproject.toml":
            new_text = rewrite_urls_table(new_text, new)
        elif rel == "_config.yml":
            new_text = rewrite_config_branch(new_text, new_branch)
        if new_text != text:
            changed.append(rel)
            if not args.dry_run:
                path.write_text(new_text, encoding="utf-8")
    for rel in changed:
        print(f"  {'would rewrite' if args.dry_run else 'rewrote'} {rel}")
    print(f"set_repository: {len(changed)} file(s){' (dry run)' if args.dry_run else ''}; check with "
          "`python -m pytest tests/test_project.py tests/test_book.py`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
