"""What every bench report says about the machine and the build it measured."""

from __future__ import annotations

import os
import platform

import uvloop

from compiled import finder


def describe() -> dict[str, object]:
    """Machine, interpreter and data path; the components inherit this interpreter's build."""
    return {
        "python": platform.python_version(),
        "uvloop": uvloop.__version__,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "data_path": finder.status(),
    }


def headline(env: dict[str, object]) -> str:
    return (
        f"{env['cpus']} CPUs, Python {env['python']}, uvloop {env['uvloop']}, "
        f"data path {env['data_path']}"
    )
