"""``python -m bench tools``: the optional load generators and peer tunnels, and how to get them.

wrk (a second opinion on HTTP/1.1) and h2load (HTTP/2 and HTTP/1.1 over TLS, from
nghttp2) are C programs the bench runs when they are on PATH; without them it falls back to
its own Python load generators. OpenSSH (sshd and ssh, for ``ssh -R``) and PageKite are the
other tunnels ``bench peers`` measures beside Burrow; without them their rows say so. On
Debian and Ubuntu all of them come from apt:

    python -m bench tools             which are present, and the apt-get command
    python -m bench tools --install   run apt-get update once and install the missing (root)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OptionalTool:
    command: str
    package: str  # the Debian/Ubuntu package that installs it
    used_for: str


TOOLS = (
    OptionalTool("wrk", "wrk", "bench http: a second opinion on 1 KiB keep-alive"),
    OptionalTool("h2load", "nghttp2-client", "bench h2: HTTP/2 and HTTP/1.1 over TLS"),
    OptionalTool("sshd", "openssh-server", "bench peers: the server end of ssh -R"),
    OptionalTool("ssh", "openssh-client", "bench peers: the client end of ssh -R"),
    OptionalTool("ssh-keygen", "openssh-client", "bench peers: throwaway ssh -R keys"),
    OptionalTool("pagekite", "pagekite", "bench peers: PageKite front-end and back-end"),
    OptionalTool("valgrind", "valgrind", "bench instructions: edge instructions per request"),
)
# One package may bring several commands (openssh-client: ssh and ssh-keygen).
APT_INSTALL = ["apt-get", "install", "-y", *dict.fromkeys(tool.package for tool in TOOLS)]


def find_tool(command: str) -> str | None:
    """The command's path; sshd lives in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def tool_status() -> list[tuple[OptionalTool, str | None]]:
    return [(tool, find_tool(tool.command)) for tool in TOOLS]


def format_tool_status() -> str:
    lines = []
    for tool, path in tool_status():
        where = path if path is not None else "not installed"
        lines.append(f"{tool.command:<10} {where:<28} {tool.used_for}")
    lines.append(f"install with: {' '.join(APT_INSTALL)}   (or: python -m bench tools --install)")
    return "\n".join(lines)


def install_tools() -> int:
    """apt-get update once, then apt-get install what is missing; the exit status."""
    missing = list(dict.fromkeys(tool.package for tool, path in tool_status() if path is None))
    if not missing:
        print("every optional tool is installed already")
        return 0
    if shutil.which("apt-get") is None:
        print(
            "bench: apt-get is not on PATH; install these packages with your system's "
            f"package manager: {' '.join(missing)}"
        )
        return 1
    if os.geteuid() != 0:
        print(f"bench: installing needs root; run: sudo {' '.join(APT_INSTALL)}")
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *missing]):
        print("+ " + " ".join(argv), flush=True)
        code = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, check=False).returncode
        if code != 0:
            print(f"bench: {' '.join(argv)} failed with status {code}")
            return code
    still = [tool.command for tool, path in tool_status() if path is None]
    if still:
        print(f"bench: apt-get finished but these are still not on PATH: {' '.join(still)}")
        return 1
    return 0
