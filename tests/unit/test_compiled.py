"""The compiled data path: a build is used whole while its sources match, else not at all."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from compiled import HOT_MODULES, build, finder, manifest

# Run in a fresh interpreter (with the project importable) so that each case decides from an
# empty sys.modules, as an interpreter start does.
_PROBE = textwrap.dedent(
    """
    import json, sys
    root, lib, first = sys.argv[1:]
    sys.path.insert(0, root)
    if first:
        __import__(first)
    from compiled import finder
    finder.install(lib, group=("demo.alpha", "demo.beta"))
    import demo.beta as beta
    import demo.alpha as alpha
    try:
        result = beta.quadruple("ab")
    except TypeError as exc:
        result = f"TypeError: {exc}"
    print(json.dumps({"status": finder.status(), "files": [alpha.__file__, beta.__file__],
                      "result": result}))
    """
)


def _demo_package(root: Path) -> None:
    (root / "demo").mkdir()
    (root / "demo" / "__init__.py").write_text("")
    (root / "demo" / "alpha.py").write_text("def double(x: int) -> int:\n    return x * 2\n")
    (root / "demo" / "beta.py").write_text(
        "from demo.alpha import double\n\n\n"
        "def quadruple(x: int) -> int:\n    return double(double(x))\n"
    )


def _probe(root: Path, lib: Path, first: str = "", **env: str) -> dict[str, object]:
    project = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        # -S: without site-packages, so this environment's own hook stays out of the way.
        [sys.executable, "-S", "-c", _PROBE, str(root), str(lib), first],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(project), "BURROW_COMPILED": "1", **env},
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _fake_build(root: Path, lib: Path, suffix: str | None = None) -> None:
    """A manifest that matches the sources, over files that are not real extensions."""
    modules = ("demo.alpha", "demo.beta")
    lib.mkdir()
    for module in modules:
        (lib / f"{module}.so").write_bytes(b"not an extension")
    made = manifest.Manifest(
        root=root,
        suffix=suffix or sysconfig.get_config_var("EXT_SUFFIX"),
        sources={m: manifest.source_digest(manifest.source_path(root, m)) for m in modules},
        files={m: f"{m}.so" for m in modules},
    )
    (lib / manifest.MANIFEST).write_text(made.dump())


@pytest.mark.skipif(
    build.missing_prerequisite() is not None,
    reason=f"cannot compile here: {build.missing_prerequisite()}",
)
def test_a_build_is_used_whole_until_one_source_changes(tmp_path: Path) -> None:
    root, lib = tmp_path / "src", tmp_path / "lib"
    root.mkdir()
    _demo_package(root)
    made = build.build(("demo.alpha", "demo.beta"), root=root, lib=lib)
    assert set(made.sources) == {"demo.alpha", "demo.beta"}

    compiled = _probe(root, lib)
    assert compiled["status"] == "compiled with mypyc (2 modules)"
    assert all(str(f).startswith(str(lib)) for f in compiled["files"])  # type: ignore[attr-defined]
    # mypyc checks the annotation at the call; the Python source would repeat the string.
    assert str(compiled["result"]).startswith("TypeError")

    disabled = _probe(root, lib, BURROW_COMPILED="0")
    assert disabled["status"] == "pure Python (BURROW_COMPILED=0)"
    assert disabled["result"] == "abababab"

    # One module of the group edited: neither is used, since the compiled beta would call
    # the compiled (old) alpha directly.
    with (root / "demo" / "alpha.py").open("a") as alpha:
        alpha.write("# edited\n")
    stale = _probe(root, lib)
    assert "alpha.py changed since the build" in str(stale["status"])
    assert [Path(str(f)).suffix for f in stale["files"]] == [".py", ".py"]  # type: ignore[attr-defined]
    assert stale["result"] == "abababab"


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path) -> None:
    root, lib = tmp_path / "src", tmp_path / "lib"
    root.mkdir()
    _demo_package(root)
    _fake_build(root, lib, suffix=".cpython-399-elsewhere.so")
    probe = _probe(root, lib)
    assert str(probe["status"]).startswith("pure Python (built for .cpython-399-elsewhere.so")
    assert probe["result"] == "abababab"


def test_a_group_module_imported_before_the_finder_keeps_the_group_in_python(
    tmp_path: Path,
) -> None:
    root, lib = tmp_path / "src", tmp_path / "lib"
    root.mkdir()
    _demo_package(root)
    _fake_build(root, lib)
    probe = _probe(root, lib, first="demo.alpha")
    assert probe["status"] == (
        "pure Python (demo.alpha was imported before the finder was installed)"
    )
    assert probe["result"] == "abababab"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"root": "/x"}', b"[]", b"\xff\xfe"],
    ids=["truncated", "incomplete", "wrong-shape", "not-utf8"],
)
def test_an_unreadable_manifest_means_pure_python(tmp_path: Path, content: bytes) -> None:
    root, lib = tmp_path / "src", tmp_path / "lib"
    root.mkdir()
    _demo_package(root)
    lib.mkdir()
    (lib / manifest.MANIFEST).write_bytes(content)
    probe = _probe(root, lib)
    assert str(probe["status"]).startswith(f"pure Python (unreadable manifest in {lib}")
    assert probe["result"] == "abababab"


def test_no_build_means_pure_python(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    _demo_package(root)
    probe = _probe(root, tmp_path / "never-built")
    assert probe["status"] == "pure Python (not built; python -m compiled builds it)"


def test_the_running_data_path_is_all_compiled_or_all_python() -> None:
    modules = [importlib.import_module(name) for name in HOT_MODULES]
    kinds = {(m.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES)) for m in modules}
    assert kinds == {finder.status().startswith("compiled with mypyc")}


def _run_hook_line(pythonpath: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # What site does with the line at start-up, in an interpreter without site-packages.
    script = f"exec({build.PTH_LINE!r})\nimport sys\nm = sys.modules.get('compiled.finder')\n"
    script += "print(m.status() if m else 'no finder')"
    return subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": pythonpath, "BURROW_COMPILED": "1"},
        cwd=cwd,
        check=False,
    )


def test_the_hook_line_installs_the_finder(tmp_path: Path) -> None:
    done = _run_hook_line(str(Path(__file__).resolve().parents[2]), tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert "this environment has no hook" not in done.stdout
    assert done.stdout.startswith(("compiled with mypyc", "pure Python ("))


def test_the_hook_line_is_silent_once_the_package_is_gone(tmp_path: Path) -> None:
    # pip uninstall leaves the .pth behind; every later interpreter start still reads it.
    done = _run_hook_line(str(tmp_path), tmp_path)
    assert (done.returncode, done.stderr, done.stdout.strip()) == (0, "", "no finder")


def test_a_second_tree_on_the_same_environment_runs_its_own_sources(tmp_path: Path) -> None:
    # An environment whose build was made from one checkout, running another: the packages
    # come from the second tree, and so must the modules, whatever the first one's build.
    first, second, lib = tmp_path / "first", tmp_path / "second", tmp_path / "lib"
    first.mkdir()
    second.mkdir()
    _demo_package(first)
    _demo_package(second)
    _fake_build(first, lib)
    probe = _probe(second, lib)
    assert probe["files"] == [
        str(second / "demo" / "alpha.py"),
        str(second / "demo" / "beta.py"),
    ]
    assert probe["result"] == "abababab"
