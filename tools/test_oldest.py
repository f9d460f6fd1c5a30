"""Test the lowest versions the dependency ranges allow: are the lower bounds in pyproject.toml honest?

Usage::

    python tools/test_oldest.py [--python python3.10] [--chapter book/05_nonrigid_mr] [--skip-tests]

1. ``uv pip compile pyproject.toml --resolution lowest-direct`` for the chosen Python (default: the lowest one
   ``requires-python`` allows, if installed): every direct dependency at the lowest version that resolves,
   the rest at their newest compatible; written to ``_build/oldest/constraints.txt``. A declared lower bound
   below what resolves (e.g. a bound no allowed TensorFlow accepts) is reported: narrow it.
2. A fresh venv ``_build/oldest/venv`` with the wheel (``tools/rehearse.py`` builds it) under those
   constraints, plus the test tools (pytest, jupytext, the kernel machinery) at their newest compatible.
3. The unit tests (``pytest tests``) in that venv, against the installed wheel.
4. One chapter, executed as in the rehearsal (alone in an empty folder, fast mode, data mirror, static
   widgets), saved to ``_build/oldest/executed``.

Exit status 1 if anything fails. Needs ``uv`` (``pip install uv``), which the Makefile installs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import rehearse  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TEST_TOOLS = ["pytest", "jupytext", "nbformat", "nbclient", "ipykernel", "tomli; python_version < '3.11'"]


def lowest_python() -> str:
    """The interpreter for the lowest ``requires-python`` (``python3.X``), if it is installed."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.search(r">=\s*3\.(\d+)", spec)
    name = f"python3.{m.group(1)}" if m else "python3"
    return name


def find_python(name: str) -> str:
    """A working interpreter called ``name``: on PATH, else under pyenv (whose shims may not run it)."""
    version = name.removeprefix("python")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(name)]
    candidates += sorted(pyenv.glob(f"{version}.*/bin/{name}"), reverse=True) if pyenv.is_dir() else []
    for candidate in filter(None, candidates):
        ok = subprocess.run([str(candidate), "-c", "pass"], capture_output=True, check=False).returncode == 0
        if ok:
            return str(candidate)
    raise SystemExit(f"test_oldest: {name} not found (install it, or pass --python)")


def declared_lower_bounds() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = {}
    for req in deps:
        name = re.split(r"[ <>=!~;\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
        m = re.search(r">=\s*([0-9][0-9a-zA-Z.]*)", req)
        bounds[name] = m.group(1) if m else "(none)"
    return bounds


def pins(constraints: Path) -> dict[str, str]:
    out = {}
    for line in constraints.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, micro) of a version, missing parts 0: "2.16" == "2.16.0" < "2.16.1"."""
    parts = [int(x) for x in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=None, help="interpreter (default: the lowest requires-python)")
    parser.add_argument("--chapter", default="book/05_nonrigid_mr", help="chapter to execute")
    parser.add_argument("--out", default="_build/oldest")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)

    uv = rehearse.find_uv()
    if uv is None:
        raise SystemExit("test_oldest: needs uv (pip install uv)")
    python = find_python(args.python or lowest_python())
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    constraints = out / "constraints.txt"
    t0 = time.perf_counter()
    subprocess.run([uv, "pip", "compile", "-q", str(ROOT / "pyproject.toml"), "--resolution", "lowest-direct",
                    "--python", python, "--python-version", version, "--no-header", "-o", str(constraints)],
                   check=True)
    lowest, declared = pins(constraints), declared_lower_bounds()
    print(f"test_oldest: Python {version} ({python}); lowest versions that resolve:")
    narrower = []
    for name, bound in declared.items():
        got = lowest.get(name, "?")
        note = ""
        if bound != "(none)" and got != "?" and _release(got)[:2] > _release(bound)[:2]:
            note = f"   <- declared >={bound}, but nothing below {got} resolves: narrow the range"
            narrower.append(name)
        print(f"  {name:12s} {got:10s} (declared >={bound}){note}")

    venv = out / "venv"
    settings_chapter = [args.chapter]
    rehearse_args = ["--venv", str(venv), "--out", str(out / "executed"), "--python", python,
                     "--constraint", str(constraints), "--extra", *TEST_TOOLS, "--setup-only"]
    if rehearse.main(rehearse_args) != 0:
        return 1
    failures = []
    if not args.skip_tests:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        print("test_oldest: unit tests (pytest tests) in the oldest venv", flush=True)
        t1 = time.perf_counter()
        res = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests"], cwd=ROOT, env=env, check=False)
        print(f"test_oldest: unit tests exit {res.returncode} in {time.perf_counter() - t1:.0f} s")
        if res.returncode != 0:
            failures.append("unit tests")
    res = rehearse.main(["--venv", str(venv), "--reuse-venv", "--out", str(out / "executed"),
                         "--chapters", *settings_chapter])
    if res != 0:
        failures.append(f"chapter {args.chapter}")
    print(f"test_oldest: {time.perf_counter() - t0:.0f} s; "
          + ("all passed" if not failures else f"FAILED: {', '.join(failures)}")
          + (f"; ranges to narrow: {', '.join(narrower)}" if narrower else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
