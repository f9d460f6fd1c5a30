"""Stage the book for a build from already executed notebooks (no chapter is executed twice).

Usage (after ``python tools/rehearse.py``)::

    python tools/stage_book.py [--executed _build/executed] [--staging _build/staging] [--allow-failed]
    jupyter-book build -W --keep-going _build/staging --path-output .      # -> _build/html

The staging tree mirrors the repository's layout, so every page keeps its address and its Colab launch button
(``.../blob/<branch>/book/<chapter>.ipynb``):

- ``_toc.yml`` as it is;
- ``_config.yml`` from the repository's, with ``execute_notebooks: "off"`` and ``**.ipynb`` no longer
  excluded (the notebooks are now the sources);
- ``book/<chapter>.ipynb``: the executed notebook of every chapter in the table of contents, which must be
  complete (every code cell ran, no error output) and have the same cells as the committed ``.ipynb``; its
  Markdown links to other chapters' ``.md`` (``[2](02_concepts.md)``) point at their ``.ipynb`` instead (the
  same page; the ``.md`` files are not staged, or Sphinx would find two sources per chapter);
- everything else under ``book/`` (figures, bibliography, non-chapter pages) except the chapters' ``.md``
  and ``.ipynb`` and their ``_outputs``; the static folders and files the configuration names
  (``html_static_path``, ``logo``, ``bibtex_bibfiles``, ``html.favicon``).

MyST-NB's ``glue`` works as in the build from ``.md`` (``execute_notebooks: off`` reads stored outputs), also
across pages: ``{glue:text}`02_concepts.md::key``` finds the staged ``02_concepts.ipynb`` (the reference needs
the file suffix; ``.md`` and ``.ipynb`` both work in both builds).

``--allow-failed`` stages a chapter whose executed notebook is incomplete or failed anyway (a failed one
with its traceback, a missing one unexecuted), for a look at the pages after a failed rehearsal.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import shutil
import sys
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from rehearse import toc_chapters  # noqa: E402


def staged_config(config: dict) -> dict:
    """The repository's configuration for a build from executed notebooks."""
    config = json.loads(json.dumps(config))  # deep copy
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config["exclude_patterns"] = [p for p in config.get("exclude_patterns", [])
                                  if p not in ("**.ipynb", "*.ipynb", "**/*.ipynb")]
    return config


def notebook_problems(executed: dict, committed: dict) -> list[str]:
    """Why an executed notebook cannot be published: stale, incomplete or failed."""
    def cells(nb):
        return [(c["cell_type"], "".join(c["source"]).rstrip()) for c in nb["cells"]]

    problems = []
    if cells(executed) != cells(committed):
        problems.append("its cells differ from the committed .ipynb (stale: run the rehearsal again)")
    for i, cell in enumerate(executed["cells"]):
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {i} was not executed")
            break
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            problems.append(f"cell {i} raised an error")
            break
    return problems


MD_LINK = re.compile(r"(\]\(\s*<?)([^()<>\s#]+?)\.md((?:#[^()<>\s]*)?>?\s*\))")


def relink(markdown: str, chapter: str, staged: set[str]) -> str:
    """Markdown links to another chapter's ``.md`` (``[2](02_concepts.md#x)``) made links to its staged
    ``.ipynb``: the ``.md`` is not in the staging tree, the page is the same."""
    base = PurePosixPath(chapter).parent

    def swap(m: re.Match) -> str:
        target = posixpath.normpath((base / m.group(2)).as_posix())
        return f"{m.group(1)}{m.group(2)}.ipynb{m.group(3)}" if target in staged else m.group(0)

    return MD_LINK.sub(swap, markdown)


def relink_notebook(nb: dict, chapter: str, staged: set[str]) -> dict:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = relink(source, chapter, staged)
    return nb


def referenced_paths(config: dict) -> list[str]:
    """Files and folders, relative to the book root, that the configuration names."""
    sphinx = config.get("sphinx", {}).get("config", {}) or {}
    found = list(sphinx.get("html_static_path", []) or [])
    found += list(config.get("bibtex_bibfiles", []) or [])
    found += [config.get("logo") or "", (config.get("html", {}) or {}).get("favicon") or ""]
    return [p for p in found if p and not p.startswith(("http:", "https:"))]


def stage(executed_dir: Path, staging: Path, allow_failed: bool = False) -> list[str]:
    """Make the staging tree; returns the problems (empty when every chapter is ready to publish)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copy2(ROOT / "_toc.yml", staging / "_toc.yml")
    header = ("# Generated by tools/stage_book.py from the repository's _config.yml: the book is built from\n"
              "# the executed notebooks of tools/rehearse.py, so nothing is executed here. Do not edit.\n")
    (staging / "_config.yml").write_text(header + yaml.safe_dump(staged_config(config), sort_keys=False,
                                                                  allow_unicode=True, width=110))
    for rel in referenced_paths(config):
        source = ROOT / rel
        if source.is_dir():
            shutil.copytree(source, staging / rel)
        elif source.is_file():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / rel)

    chapters = toc_chapters()
    chapter_files = {f"{c}{suffix}" for c in chapters for suffix in (".md", ".ipynb")}
    for folder in sorted({Path(c).parts[0] for c in chapters if len(Path(c).parts) > 1}):
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT)
            if (path.is_dir() or rel.as_posix() in chapter_files or "_outputs" in rel.parts
                    or ".ipynb_checkpoints" in rel.parts or "__pycache__" in rel.parts):
                continue
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / rel)

    problems = []
    for chapter in chapters:
        committed = ROOT / f"{chapter}.ipynb"
        executed = executed_dir / f"{chapter}.ipynb"
        target = staging / f"{chapter}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not executed.is_file():
            problems.append(f"{chapter}: no executed notebook at {executed} (run tools/rehearse.py)")
            if allow_failed and committed.is_file():
                shutil.copy2(committed, target)
            continue
        nb = json.loads(executed.read_text())
        issues = notebook_problems(nb, json.loads(committed.read_text()))
        problems += [f"{chapter}: {issue}" for issue in issues]
        if not issues or allow_failed:
            nb = relink_notebook(nb, chapter, set(chapters))
            target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executed", default="_build/executed",
                        help="executed notebooks (tools/rehearse.py)")
    parser.add_argument("--staging", default="_build/staging", help="the staging tree (made anew)")
    parser.add_argument("--allow-failed", action="store_true",
                        help="stage failed or missing chapters anyway (exit status 0)")
    args = parser.parse_args(argv)
    executed, staging = (ROOT / args.executed).resolve(), (ROOT / args.staging).resolve()
    problems = stage(executed, staging, args.allow_failed)
    for p in problems:
        print(f"stage_book: {'WARNING' if args.allow_failed else 'FAIL'} {p}")
    print(f"stage_book: staged {staging} from {executed}"
          + (f" ({len(problems)} problem(s))" if problems else ""))
    return 1 if problems and not args.allow_failed else 0


if __name__ == "__main__":
    sys.exit(main())
