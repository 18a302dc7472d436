"""The training process (``RunInfo.source``) -> what ClearML records about where a task comes from. Pure.

``Task.init`` describes the process that calls it, and that is our delivery worker (``python -m
tracelet_otel.delivery``), so the task is described from the training process instead: its script section
(repository, branch, commit, working directory, entry point) as ClearML's own detection would fill it, and the
rest (command line, user, host, pid) as user properties.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["project_name", "script_fields", "training_properties"]

DEFAULT_PROJECT = "Untitled"  # ClearML's own name for a task with neither a project nor a repository


def project_name(project: str | None, source: Mapping[str, Any]) -> str:
    """``project``, else the training repository's name, as ClearML names a project when given none."""
    if project:
        return project
    remote = str(source.get("git_remote") or "").rstrip("/")
    name = remote.rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    return name or DEFAULT_PROJECT


def script_fields(source: Mapping[str, Any], repository_root: str | None) -> dict[str, str]:
    """ClearML's script section for the training program.

    In a repository ClearML keeps the working directory relative to its root (the root itself when the job ran
    from elsewhere) and the entry point relative to the working directory; outside one, the working directory
    and the script as absolute paths.
    """
    program = source.get("program") or ""
    cwd = source.get("cwd") or ""
    if repository_root:
        working_dir = os.path.relpath(cwd, repository_root) if cwd and _within(cwd, repository_root) else "."
        entry_point = os.path.relpath(program, os.path.join(repository_root, working_dir)) if program else ""
    else:
        working_dir, entry_point = cwd or ".", program
    return {
        "repository": source.get("git_remote") or "",
        "branch": source.get("git_branch") or "",
        "version_num": source.get("git_commit") or "",
        "working_dir": working_dir,
        "entry_point": entry_point,
    }


def training_properties(rank: int | None, source: Mapping[str, Any]) -> dict[str, str]:
    """User properties naming the training process; only what is known."""
    properties = {}
    if rank is not None:
        properties["training_rank"] = str(rank)
    if "args" in source or source.get("program"):
        properties["training_command"] = shlex.join([source.get("program") or "python", *source.get("args", [])])
    for key in ("user", "host", "pid", "cwd"):
        if source.get(key) is not None:
            properties[f"training_{key}"] = str(source[key])
    return properties


def _within(path: str, root: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) == os.path.abspath(root)
