#!/usr/bin/env python3
"""Set up and run Burrow from a checkout with nothing but Python 3.11+.

    python3 run.py dev [burrowd dev flags]   start Burrow locally with a demo tunnel
    python3 run.py test [pytest flags]       lint, type-check, check package layers, run the tests
    python3 run.py bench [bench flags]       the load-test harness (python -m bench)
    python3 run.py burrow http 3000          the agent, as .venv/bin/burrow would run it

Each command creates ./.venv on first use and installs the project into it (again whenever
setup.cfg or pyproject.toml change), then compiles the data path with mypyc where a C compiler
is found (again whenever one of its sources changes; see compiled/). Without one, Burrow runs
the same modules as Python; `test` runs the suite against both forms when it can.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".burrow-install"


def _say(text: str) -> None:
    print(f"run.py: {text}", flush=True)


def _install_key() -> str:
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(extras: str = "server,dev") -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py must explain itself on old Pythons
        sys.exit("run.py: Burrow needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        _say(f"creating a virtual environment in {VENV}")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except (subprocess.CalledProcessError, OSError) as exc:
            sys.exit(
                f"run.py: cannot create {VENV} ({exc}); on Debian/Ubuntu install the "
                "python3-venv package first"
            )
    key = _install_key() + extras
    if STAMP.exists() and STAMP.read_text() == key:
        return
    _say("installing Burrow and its test tools into .venv (first run only)")
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]"], check=True)
    STAMP.write_text(key)


def ensure_compiled() -> bool:
    """Build the compiled data path when missing or stale (compiled/); False: pure Python."""
    done = subprocess.run(
        [BIN / "python", "-m", "compiled"], capture_output=True, text=True, check=False
    )
    for line in (done.stdout or done.stderr).splitlines():
        _say(line)
    return done.returncode == 0 and "compiled with mypyc" in done.stdout


_caller_cwd = os.getcwd()


# The test folders whose tests run compiled modules (compiled/: proto, relay, the edge's
# visitors and the agent's relay) through edges and agents.
DATA_PATH_SUITES = ("e2e", "edge", "agent", "http1", "proto", "tls", "unit", "obs")


def _data_path_suites() -> list[str]:
    return [f"tests/{name}" for name in DATA_PATH_SUITES if (ROOT / "tests" / name).is_dir()]


def _names_tests(args: list[str]) -> bool:
    """Whether pytest arguments name tests (a path or node id) rather than only options."""
    return any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in args)


def run(argv: list[str]) -> int:
    os.chdir(ROOT)
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "dev":
        ensure_venv()
        ensure_compiled()
        os.execv(BIN / "burrowd", [str(BIN / "burrowd"), "dev", *rest])
    if command == "test":
        ensure_venv()
        _say("ruff check")
        if subprocess.run([BIN / "ruff", "check", "."]).returncode:
            return 1
        _say("mypy")
        if subprocess.run([BIN / "mypy"]).returncode:
            return 1
        _say("lint-imports (package layers, setup.cfg [importlinter])")
        if subprocess.run([BIN / "lint-imports", "--no-cache"]).returncode:
            return 1
        compiled = ensure_compiled()
        _say("pytest" + (", data path compiled" if compiled else ""))
        pytest = [BIN / "python", "-m", "pytest", *rest]
        if subprocess.run(pytest).returncode:
            return 1
        if not compiled:
            return 0
        # Machines without a C compiler run the sources as they are: test that form too,
        # with the suites that run the data path (control, billing, certs and the console
        # are never compiled, so a second run of theirs would test nothing new).
        pure = pytest if _names_tests(rest) else [*pytest, *_data_path_suites()]
        _say("pytest again, data path as pure Python (BURROW_COMPILED=0)")
        return subprocess.run(pure, env={**os.environ, "BURROW_COMPILED": "0"}).returncode
    if command == "burrow":
        # The agent needs only the base install, but the venv run.py makes has all of it.
        ensure_venv()
        os.chdir(_caller_cwd)  # local paths on the command line (--config, --ca) are the user's
        os.execv(BIN / "burrow", [str(BIN / "burrow"), *rest])
    if command == "bench":
        ensure_venv("server,dev,bench")
        ensure_compiled()
        return subprocess.run([BIN / "python", "-m", "bench", *rest]).returncode
    print(__doc__)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
