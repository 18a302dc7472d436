"""Where a run comes from: the training process, as each tracker would record it had it opened the run there.

Backend runs are opened in a delivery worker process, whose own program is ``python -m tracelet_otel.delivery``;
``start_logging`` records the training process here and each backend gives it to its tracker instead.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
from typing import Any

__all__ = ["training_process"]

GIT_TIMEOUT_S = 2.0


def training_process() -> dict[str, Any]:
    """``program`` (the script's absolute path, None for ``python -c`` or an interactive session), ``args``,
    ``user``, ``host``, ``pid``, ``cwd``, and ``git_commit``, ``git_branch``, ``git_remote`` where the script
    lives in a git work tree."""
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-") else None
    program = os.path.abspath(script) if script and os.path.exists(script) else None
    source: dict[str, Any] = {"program": program, "args": list(sys.argv[1:]), "user": _user(),
                              "host": socket.gethostname(), "pid": os.getpid(), "cwd": os.getcwd()}
    directory = os.path.dirname(program) if program else os.getcwd()
    for key, command in (("git_commit", ["rev-parse", "HEAD"]), ("git_branch", ["rev-parse", "--abbrev-ref", "HEAD"]),
                         ("git_remote", ["config", "--get", "remote.origin.url"])):
        value = _git(directory, command)
        if value is None and key == "git_commit":
            break  # not a work tree, or no git: nothing more to ask
        if value:
            source[key] = value
    return source


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return None


def _git(directory: str, command: list[str]) -> str | None:
    try:
        result = subprocess.run(["git", "-C", directory, *command], capture_output=True, text=True,
                                timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None
