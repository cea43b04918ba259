"""``burrow service install`` / ``uninstall``: run ``burrow start`` at boot or login, under
systemd (a user unit, or a system unit with ``--system``) or launchd on macOS.

The unit runs this interpreter with ``-m agent.cli`` rather than a ``burrow`` found on PATH:
the service manager's PATH is not the user's, and a venv or pipx install is found exactly.
Exit status 1 (the edge refused the token or every tunnel) and 2 (bad config) are final, so
the unit does not restart on them; anything else restarts after a pause.
"""

from __future__ import annotations

import os
import plistlib
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "burrow-agent"
LAUNCHD_LABEL = "dev.burrow.agent"


@dataclass(frozen=True, slots=True)
class ServicePlan:
    path: Path
    text: str
    next_steps: list[str]  # commands that start it, to print
    stop_steps: list[str]  # commands that stop it before removal


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: systemd splits on spaces, honours double quotes, and expands %
    specifiers and $ variables, so those are escaped."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if any(c in escaped for c in " \t\"'\\;"):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def command(config: Path, tunnels: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "--config",
        str(config),
        "--plain",
        "start",
        *tunnels,
    ]


def systemd_unit(argv: list[str], *, system: bool, user: str = "") -> str:
    lines = [
        "[Unit]",
        "Description=Burrow agent: tunnels from the config file (burrow start)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in argv),
        "Restart=on-failure",
        "RestartSec=5",
        # 1: refused by the edge, 2: bad config or arguments. Restarting repeats them.
        "RestartPreventExitStatus=1 2",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if system and user:
        lines.append(f"User={user}")
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}"]
    return "\n".join(lines) + "\n"


def launchd_plist(argv: list[str], log_dir: Path) -> str:
    document = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": argv,
        "RunAtLoad": True,
        # Restart unless it exited cleanly (stopped) - as Restart=on-failure.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "StandardOutPath": str(log_dir / "burrow-agent.log"),
        "StandardErrorPath": str(log_dir / "burrow-agent.log"),
    }
    return plistlib.dumps(document).decode()


def _systemd_user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "systemd" / "user"


def plan(
    config: Path, tunnels: list[str], *, system: bool, platform: str = sys.platform
) -> ServicePlan:
    argv = command(config, tunnels)
    if platform == "darwin":
        if system:
            path = Path("/Library/LaunchDaemons") / f"{LAUNCHD_LABEL}.plist"
            log_dir = Path("/Library/Logs")
        else:
            path = Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
            log_dir = Path.home() / "Library" / "Logs"
        return ServicePlan(
            path,
            launchd_plist(argv, log_dir),
            [f"launchctl load -w {path}"],
            [f"launchctl unload -w {path}"],
        )
    ctl = "systemctl" if system else "systemctl --user"
    path = (Path("/etc/systemd/system") if system else _systemd_user_dir()) / f"{UNIT_NAME}.service"
    user = os.environ.get("SUDO_USER", "") if system else ""
    steps = [f"{ctl} daemon-reload", f"{ctl} enable --now {UNIT_NAME}"]
    if not system:
        # Without lingering, a user unit stops at logout and starts only at login.
        steps.append("loginctl enable-linger $USER   # to run without being logged in")
    return ServicePlan(
        path,
        systemd_unit(argv, system=system, user=user),
        steps,
        [f"{ctl} disable --now {UNIT_NAME}"],
    )


class ServiceError(Exception):
    """Installing or removing the unit failed; the message says what to do."""


def install(service: ServicePlan) -> None:
    try:
        service.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = service.path.with_suffix(".tmp")
        tmp.write_text(service.text)
        tmp.replace(service.path)
    except PermissionError:
        raise ServiceError(
            f"cannot write {service.path}: permission denied (run as root for --system, "
            "or drop --system for a unit of your own)"
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot write {service.path}: {exc.strerror or exc}") from None


def uninstall(service: ServicePlan) -> bool:
    """Remove the unit; False if there was none."""
    try:
        service.path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ServiceError(f"cannot remove {service.path}: {exc.strerror or exc}") from None
    return True
