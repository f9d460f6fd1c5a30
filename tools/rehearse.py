"""Colab rehearsal: run every chapter the way a reader who opens it alone in Colab gets it.

Usage::

    python tools/rehearse.py [--chapters book/04_affine_ct ...] [--out _build/executed] [--full]

1. **Wheel**: ``pip wheel --no-deps`` of the working tree's package (the files a clone would have: tracked
   and untracked-but-not-ignored), built from a clean temporary copy; the wheel must contain every file of
   ``src/tutorialreg`` (modules and package data: configs, HTML templates, the data manifest).
2. **Venv**: a fresh virtual environment (``_build/rehearsal/venv``) with only the wheel, its declared
   dependencies and the kernel machinery Colab itself provides (ipykernel, nbclient, nbformat): no editable
   install, no book tools. ``uv`` makes it in seconds from its cache; ``pip`` is the fallback.
3. **Chapters**, one at a time: each ``book/<chapter>.ipynb`` is copied alone into its own empty temporary
   folder and executed there by that venv's kernel with ``TUTORIALREG_FAST=1`` (``--full``: full settings),
   ``TUTORIALREG_WIDGETS=static``, the data mirror as an absolute path (``--mirror``, default
   ``$TUTORIALREG_MIRROR``, else ``../shared/data`` when it exists, else the upstream URLs),
   ``TUTORIALREG_ALLOW_STANDIN`` passed through from the environment, and a fresh, empty data cache per
   chapter (``--data-dir`` shares one instead). The chapter's assert cells are its checks.
4. The executed notebooks are saved as ``<out>/book/<chapter>.ipynb`` (failed ones too, with the error) and
   the per-chapter times in ``<out>/timings.json``; the book can then be built from them without executing
   anything (``tools/stage_book.py``).

Exit status 1 if anything fails; a failing chapter is reported with its failing cell and traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tutorialreg"
KERNEL_NAME = "tutorialreg-rehearsal"
KERNEL_TOOLS = ["ipykernel", "nbclient", "nbformat"]  # what Colab's own runtime provides
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Files at the repository root that a build of the package may read (metadata, symlink targets).
ROOT_FILES = ["pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README.md", "data_manifest.yaml"]


def log(message: str) -> None:
    print(f"rehearse: {message}", flush=True)


# ---------------------------------------------------------------------------------------------- chapters
def toc_chapters() -> list[str]:
    """Every ``file:`` of ``_toc.yml`` in reading order (root first), without suffix."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for key, value in node.items():
                if key != "root":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", f) for f in found]


# ---------------------------------------------------------------------------------------------- wheel
def clone_files() -> list[str]:
    """Paths (relative to the root) a fresh clone of the working tree would have: tracked + untracked, not
    ignored, still present."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sorted({p for p in out.split("\0") if p and ((ROOT / p).exists() or (ROOT / p).is_symlink())})


def package_sources(files: list[str]) -> list[str]:
    """Files of ``src/<package>`` that the wheel must carry (modules and package data)."""
    prefix = f"src/{PACKAGE}/"
    return sorted(p for p in files if p.startswith(prefix) and "__pycache__" not in p
                  and not p.endswith((".pyc", ".pyo")))


def build_wheel(dist: Path) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the package sources; returns the wheel."""
    files = clone_files()
    with tempfile.TemporaryDirectory(prefix="rehearse-src-") as tmp:
        src = Path(tmp)
        for rel in [f for f in files if f.startswith("src/") or f in ROOT_FILES or
                    re.match(r"^(LICEN[CS]E|NOTICE|AUTHORS|COPYING)", f)]:
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / rel).is_symlink():
                target.symlink_to(os.readlink(ROOT / rel))
            else:
                shutil.copy2(ROOT / rel, target)
        if dist.exists():
            shutil.rmtree(dist)
        dist.mkdir(parents=True)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
        subprocess.run(cmd, check=True)
    wheels = sorted(dist.glob(f"{PACKAGE}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"rehearse: expected one wheel in {dist}, found {wheels}")
    return wheels[0]


def check_wheel(wheel: Path) -> list[str]:
    """Problems with the wheel's file list: every source file of the package must be in it, nothing else."""
    expected = {p.removeprefix("src/") for p in package_sources(clone_files())}
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if not n.startswith(f"{PACKAGE}-") and ".dist-info/" not in n]
        empty = [n for n in names if z.getinfo(n).file_size == 0 and not n.endswith("__init__.py")]
    actual = set(names)
    problems = [f"missing from the wheel: {p} (add it to [tool.setuptools.package-data] in pyproject.toml)"
                for p in sorted(expected - actual)]
    problems += [f"in the wheel but not in the sources (stale build/?): {p}"
                 for p in sorted(actual - expected)]
    problems += [f"empty file in the wheel (a broken symlink?): {p}" for p in empty]
    return problems


# ---------------------------------------------------------------------------------------------- venv
def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def find_uv() -> str | None:
    here = Path(sys.executable).parent / "uv"
    return str(here) if here.is_file() else shutil.which("uv")


def make_venv(venv: Path, requirements: list[str], python: str, constraints: list[str],
              upgrade: list[str], installer: str, resolution: str | None = None) -> None:
    """A fresh venv at ``venv`` with ``requirements`` (and their dependencies) installed."""
    if venv.exists():
        shutil.rmtree(venv)
    uv = find_uv() if installer in ("auto", "uv") else None
    if installer == "uv" and uv is None:
        raise SystemExit("rehearse: --installer uv but uv is not installed (pip install uv)")
    extra = [a for c in constraints for a in ("-c", c)]
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", python, str(venv)], check=True)
        cmd = [uv, "pip", "install", "-q", "--python", str(venv_python(venv)), *extra, *requirements]
        if resolution:
            cmd[3:3] = ["--resolution", resolution]
        for name in upgrade:
            cmd += ["--upgrade-package", name]
    else:
        if resolution:
            raise SystemExit("rehearse: --resolution needs uv (pip install uv)")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        cmd = [str(venv_python(venv)), "-m", "pip", "install", "-q", *extra, *requirements]
        if upgrade:
            cmd += ["--upgrade", "--upgrade-strategy", "only-if-needed", *upgrade]
    subprocess.run(cmd, check=True)


def installed_versions(python: Path, names: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    res = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's declared dependencies (``Requires-Dist``), without extras-only ones."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    reqs = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r]


# ---------------------------------------------------------------------------------------------- kernel
def kernel_env(venv: Path, run_dir: Path, settings: dict[str, str]) -> dict[str, str]:
    """The environment of a rehearsal kernel: the machine's basics, the rehearsal venv, the settings; no
    PYTHONPATH, no user Jupyter/IPython configuration, no other TUTORIALREG_* variable."""
    keep = ("HOME", "LANG", "LC_ALL", "TERM", "TZ", "USER", "LOGNAME", "TMPDIR",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin"
    env["VIRTUAL_ENV"] = str(venv)
    jupyter = run_dir / ".jupyter"
    env["JUPYTER_PATH"] = str(jupyter / "share")          # our kernelspec, found before any user one
    env["JUPYTER_CONFIG_DIR"] = str(jupyter / "config")
    env["JUPYTER_DATA_DIR"] = str(jupyter / "data")
    env["JUPYTER_RUNTIME_DIR"] = str(jupyter / "runtime")
    env["IPYTHONDIR"] = str(jupyter / "ipython")          # no user startup scripts
    env["MPLCONFIGDIR"] = str(jupyter / "matplotlib")
    env.update(settings)
    return env


def write_kernelspec(venv: Path, run_dir: Path) -> None:
    spec = run_dir / ".jupyter" / "share" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(venv_python(venv)), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (rehearsal)", "language": "python"}))


# Runs inside the rehearsal venv (stdlib + nbclient + nbformat only): execute one notebook in its folder.
EXECUTOR = r'''
import json, sys, time, traceback
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

src, dst, kernel, timeout, report = sys.argv[1:6]
nb = nbformat.read(src, as_version=4)
kernelspec = dict(nb.metadata.get("kernelspec", {}))
state = {"cell": None}

def on_start(cell, cell_index):
    state["cell"] = cell_index

client = NotebookClient(nb, timeout=int(timeout), kernel_name=kernel, allow_errors=False,
                        resources={"metadata": {"path": "."}}, on_cell_start=on_start)
result = {"ok": True}
t0 = time.perf_counter()
try:
    client.execute()
except BaseException as exc:
    result = {"ok": False, "cell": state["cell"], "error": f"{type(exc).__name__}",
              "traceback": str(exc) if isinstance(exc, CellExecutionError) else traceback.format_exc()}
result["seconds"] = round(time.perf_counter() - t0, 1)
if kernelspec:
    nb.metadata["kernelspec"] = kernelspec  # keep the chapter's own kernelspec for the book build
nbformat.write(nb, dst)
json.dump(result, open(report, "w"))
'''

PREFLIGHT = r'''
import importlib.util, json, sys
spec = importlib.util.find_spec("tutorialreg")
origin = spec.origin if spec else None
print(json.dumps({"python": sys.executable, "prefix": sys.prefix, "tutorialreg": origin}))
'''


def preflight(venv: Path, settings: dict[str, str]) -> list[str]:
    """Run a one-cell notebook with the rehearsal kernel: it must be the venv's Python importing the
    installed wheel (not an editable install, not ``src/``)."""
    import nbformat

    with tempfile.TemporaryDirectory(prefix="rehearse-preflight-") as tmp:
        home = Path(tmp)
        run_dir = home / "preflight"
        run_dir.mkdir()
        write_kernelspec(venv, home)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PREFLIGHT)])
        nbformat.write(nb, run_dir / "preflight.ipynb")
        ok = run_notebook(venv, home, run_dir, "preflight.ipynb", home / "out.ipynb", settings, 120)
        if not ok["ok"]:
            return [f"the rehearsal kernel does not start: {ok.get('traceback', '')[-2000:]}"]
        out = nbformat.read(home / "out.ipynb", as_version=4).cells[0].outputs
        info = json.loads("".join(o.get("text", "") for o in out if o.get("name") == "stdout"))
    problems = []
    if Path(info["prefix"]).resolve() != venv.resolve():
        problems.append(f"the kernel runs {info['python']}, not the rehearsal venv {venv}")
    origin = info["tutorialreg"]
    inside = bool(origin) and Path(origin).resolve().is_relative_to(venv.resolve())
    if not inside or "site-packages" not in origin:
        problems.append(f"the kernel imports tutorialreg from {origin}, not from the installed wheel")
    else:
        log(f"kernel: {info['python']}; tutorialreg from {Path(origin).parent}")
    return problems


def describe_failure(chapter: str, executed: Path, result: dict) -> str:
    """The failing cell (number among code cells, source) and its traceback, for the log."""
    lines = [f"FAILED {chapter}: {result.get('error')}"]
    try:
        import nbformat

        nb = nbformat.read(executed, as_version=4)
        index = result.get("cell")
        if index is not None and 0 <= index < len(nb.cells):
            code_number = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
            source = nb.cells[index].source
            lines.append(f"  failing cell: code cell {code_number} (cell index {index} of {len(nb.cells)})")
            if "executing the following cell" not in (result.get("traceback") or ""):  # nbclient quotes it
                lines += [f"    | {s}" for s in source.splitlines()[:40]]
    except Exception as exc:  # the report must not hide the original failure
        lines.append(f"  (could not read the executed notebook: {exc})")
    lines.append("  traceback:")
    lines += [f"    {s}" for s in ANSI.sub("", result.get("traceback") or "").splitlines()[-60:]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def resolve_mirror(value: str | None) -> str | None:
    if value is None:
        value = os.environ.get("TUTORIALREG_MIRROR", "").strip() or None
        if value is None and (ROOT.parent / "shared" / "data").is_dir():
            value = str(ROOT.parent / "shared" / "data")
    if not value or value.lower() in ("none", "upstream"):
        return None
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
        return value
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise SystemExit(f"rehearse: mirror {path} is not a folder")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="chapters as in _toc.yml (book/04_affine_ct); default: all")
    parser.add_argument("--out", default="_build/executed", help="folder for executed notebooks")
    parser.add_argument("--venv", default="_build/rehearsal/venv", help="the rehearsal venv (made anew)")
    parser.add_argument("--reuse-venv", action="store_true",
                        help="reuse --venv as it is (after a previous rehearsal); no wheel, no install")
    parser.add_argument("--python", default=None, help="interpreter of the venv (default: this one)")
    parser.add_argument("--full", action="store_true", help="full settings (TUTORIALREG_FAST=0)")
    parser.add_argument("--mirror", default=None,
                        help="data mirror (default: $TUTORIALREG_MIRROR, else ../shared/data if present; "
                             "'upstream': none)")
    parser.add_argument("--data-dir", default=None,
                        help="one data cache for all chapters (default: a fresh empty cache per chapter)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--constraint", action="append", default=[], help="pip/uv constraints file")
    parser.add_argument("--resolution", default=None, help="uv resolution strategy (e.g. lowest-direct)")
    parser.add_argument("--upgrade", nargs="*", default=[],
                        help="packages to take at their newest release (e.g. tensorflow keras)")
    parser.add_argument("--extra", nargs="*", default=[], help="more requirements for the venv")
    parser.add_argument("--installer", choices=["auto", "uv", "pip"], default="auto")
    parser.add_argument("--setup-only", action="store_true", help="make the venv, run no chapter")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    venv = (ROOT / args.venv).resolve() if not Path(args.venv).is_absolute() else Path(args.venv)
    out = (ROOT / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    chapters = args.chapters or toc_chapters()
    chapters = [re.sub(r"\.(md|ipynb)$", "", c) for c in chapters]
    for chapter in chapters:
        if not (ROOT / f"{chapter}.ipynb").is_file():
            raise SystemExit(f"rehearse: {chapter}.ipynb does not exist")
    mirror = resolve_mirror(args.mirror)
    settings = {"TUTORIALREG_FAST": "0" if args.full else "1", "TUTORIALREG_WIDGETS": "static"}
    if mirror:
        settings["TUTORIALREG_MIRROR"] = mirror
    standin = os.environ.get("TUTORIALREG_ALLOW_STANDIN", "").strip()
    if standin:
        settings["TUTORIALREG_ALLOW_STANDIN"] = standin
    failures: list[str] = []

    if not args.reuse_venv:
        t0 = time.perf_counter()
        wheel = build_wheel(venv.parent / "dist")
        problems = check_wheel(wheel)
        with zipfile.ZipFile(wheel) as z:
            data = sorted(n for n in z.namelist() if not n.endswith(".py") and ".dist-info/" not in n)
        log(f"wheel {wheel.name}: {len(data)} package data file(s): {', '.join(data) or 'none'}")
        for p in problems:
            print(f"  FAIL wheel: {p}")
        if problems:
            return 1
        t1 = time.perf_counter()
        reqs = [str(wheel), *KERNEL_TOOLS, *args.extra]
        make_venv(venv, reqs, args.python or sys.executable, args.constraint, args.upgrade, args.installer,
                  args.resolution)
        names = [re.split(r"[ <>=!~;\[(]", r, maxsplit=1)[0] for r in wheel_requirements(wheel)]
        versions = installed_versions(venv_python(venv), names + KERNEL_TOOLS)
        log(f"wheel built in {t1 - t0:.1f} s; venv {venv} made in {time.perf_counter() - t1:.1f} s")
        log("venv: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    elif not venv_python(venv).is_file():
        raise SystemExit(f"rehearse: --reuse-venv but {venv} has no Python")
    (venv.parent / "settings.json").write_text(json.dumps(settings, indent=1))
    if args.setup_only:
        return 0

    problems = preflight(venv, settings)
    for p in problems:
        print(f"  FAIL kernel: {p}")
    if problems:
        return 1

    shown = {k: v for k, v in settings.items()}
    log(f"settings: {' '.join(f'{k}={v}' for k, v in shown.items())}; data cache: "
        f"{args.data_dir or 'fresh per chapter'}")
    timings: dict[str, dict] = {}
    for chapter in chapters:
        name = Path(chapter).name
        with tempfile.TemporaryDirectory(prefix=f"rehearse-{name}-") as tmp:
            run_dir = Path(tmp) / name
            run_dir.mkdir()
            shutil.copy2(ROOT / f"{chapter}.ipynb", run_dir / f"{name}.ipynb")  # the notebook alone
            cache = Path(args.data_dir).resolve() if args.data_dir else Path(tmp) / "data-cache"
            chapter_settings = {**settings, "TUTORIALREG_DATA_DIR": str(cache)}
            # the kernel's own files live beside the chapter's folder, not in it
            write_kernelspec(venv, Path(tmp))
            executed = out / f"{chapter}.ipynb"
            t0 = time.perf_counter()
            result = run_notebook(venv, Path(tmp), run_dir, f"{name}.ipynb", executed, chapter_settings,
                                  args.timeout)
            seconds = time.perf_counter() - t0
        timings[chapter] = {"ok": result["ok"], "seconds": round(seconds, 1)}
        status = "ok  " if result["ok"] else "FAIL"
        log(f"{status} {chapter}  {seconds:6.1f} s")
        if not result["ok"]:
            failures.append(chapter)
            print(describe_failure(chapter, executed, result), flush=True)
    (out / "timings.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "timings.json").write_text(json.dumps({"settings": settings, "chapters": timings}, indent=1))

    total = sum(t["seconds"] for t in timings.values())
    print(f"rehearse: {len(chapters) - len(failures)} passed, {len(failures)} failed "
          f"({total:.0f} s in chapters, {time.perf_counter() - t_start:.0f} s in all)")
    for chapter in failures:
        print(f"  - {chapter} (executed notebook with the error: {out / chapter}.ipynb)")
    return 1 if failures else 0


def run_notebook(venv: Path, home: Path, run_dir: Path, name: str, out: Path, settings: dict[str, str],
                 timeout: int) -> dict:
    """Execute ``run_dir/name`` with the rehearsal kernel (cwd ``run_dir``) into ``out``; the kernel's
    Jupyter/IPython folders and the report live in ``home``, outside ``run_dir``."""
    report = home / ".jupyter" / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    env = kernel_env(venv, home, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(venv_python(venv)), "-c", EXECUTOR, name, str(out), KERNEL_NAME, str(timeout),
                           str(report)], cwd=run_dir, env=env, capture_output=True, text=True, check=False)
    if not report.is_file():
        return {"ok": False, "cell": None, "error": "executor crashed",
                "traceback": (proc.stdout + proc.stderr)[-5000:], "seconds": 0.0}
    return json.loads(report.read_text())


if __name__ == "__main__":
    sys.exit(main())
