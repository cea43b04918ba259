"""``python -m compiled``: build the compiled data path if it is missing or stale, and say so.

    python -m compiled            build when needed; print what this environment now runs
    python -m compiled --force    build even if the current build matches its sources
    python -m compiled --status   only print what this environment runs, and why
    python -m compiled --remove   delete the build and its hook: pure Python from now on

Exit status 1 when a build was needed and failed; the modules then run as Python.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from compiled import HOT_MODULES
from compiled import build as builder
from compiled.manifest import usable


def _status_in_new_interpreter() -> str:
    # This interpreter's own state was decided before the build; a fresh one shows the result.
    done = subprocess.run(
        [sys.executable, "-c", "import compiled.finder as f; print(f.status())"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or done.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compiled", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--force", action="store_true", help="build even if up to date")
    action.add_argument("--status", action="store_true", help="print the state, build nothing")
    action.add_argument("--remove", action="store_true", help="delete the build and its hook")
    args = parser.parse_args(argv)

    if args.remove:
        builder.remove()
        print("compiled: removed; data path: pure Python")
        return 0
    if args.status:
        print(f"data path: {_status_in_new_interpreter()}")
        return 0
    if args.force or usable(builder.LIB, HOT_MODULES)[0] is None:
        started = time.monotonic()
        try:
            manifest = builder.build()
        except builder.BuildError as exc:
            print(f"compiled: not built: {exc}")
            print(f"data path: {_status_in_new_interpreter()}")
            return 1
        print(
            f"compiled: built {len(manifest.sources)} modules with mypyc "
            f"in {time.monotonic() - started:.1f} s into {builder.LIB}"
        )
    builder.hook_in()
    print(f"data path: {_status_in_new_interpreter()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
