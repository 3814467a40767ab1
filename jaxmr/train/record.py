"""What a workdir records about the runs that wrote it: `config.json` and `runs.jsonl`.

- `config.json`: the config of the latest start, written only once the run has checked it
  (the task is built, its data read, the checkpoints found compatible).
- `runs.jsonl`: one row per start: time, command line, working folder, git commit of the
  code (when it is a git checkout), versions of Python, jax, jaxlib, flax, optax, orbax and
  numpy, the process count, the step resumed from, and every config key changed since the
  previous start (old and new value).

A run that resumes from checkpoints first compares its config with the recorded one
(`check_resume`): keys that only change how long or how often things happen (`ALLOWED`) may
change and are recorded, as may keys the record lacks (declared since, with the default the
code used before); any other change would make the checkpoints mean something else (model
shape, data, objective, optimiser) and stops the run with an error naming the keys.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any

# Keys (or sections, ending in ".") a resumed run may change.
ALLOWED = (
    "total_steps",
    "num_devices",
    "prefetch",
    "schedule.log_every_steps",
    "schedule.checkpoint_every_steps",
    "schedule.keep_checkpoints",
    "schedule.async_checkpoints",
    "evals.",
    "data.cache_dir",
)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


class IncompatibleConfigError(ValueError):
    """A resumed run's config changes keys the checkpoints depend on."""


def config_dict(config) -> dict[str, Any]:
    """The config as the JSON-compatible dict `config.json` holds (tuples become lists)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """{dotted key: [old, new]} for every key whose value differs, is added or removed."""
    a, b = flatten(old), flatten(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _allowed(key: str) -> bool:
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in ALLOWED)


def read_recorded(workdir: str) -> dict[str, Any] | None:
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); move it aside to resume") from e


def check_resume(workdir: str, config) -> dict[str, list[Any]]:
    """Compares `config` with the one recorded in `workdir`; returns the allowed changes.

    Raises:
      IncompatibleConfigError naming every key that may not change on resume.
    """
    recorded = read_recorded(workdir)
    if recorded is None:
        return {}
    new = config_dict(config)
    changes = config_changes(recorded, new)
    # A key only one side has was added to (or dropped from) the recipes since the record
    # was written: the code read it with that default, so it is recorded, not refused.
    both = set(flatten(recorded)) & set(flatten(new))
    refused = {k: v for k, v in changes.items() if k in both and not _allowed(k)}
    if refused:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise IncompatibleConfigError(
            f"the checkpoints in {workdir} were trained with another config ({shown}); "
            "resume with the values in config.json, or train in a new --workdir"
        )
    return changes


def git_commit(path: str) -> str | None:
    """`<sha>` (plus `-dirty` with uncommitted changes) of the git checkout holding `path`."""
    try:
        sha = subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import jax  # noqa: PLC0415 - the record is written after the backend is up anyway

    return {
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "git_commit": git_commit(os.path.dirname(os.path.abspath(__file__))),
        "versions": versions,
        "process_count": jax.process_count(),
        "host": platform.node(),
    }


def write_record(
    workdir: str, config, *, resumed_from: int | None, changes: dict[str, list[Any]]
) -> None:
    """Writes `config.json` (atomically) and appends this start's row to `runs.jsonl`."""
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
        json.dump(config_dict(config), f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    row = provenance() | {"resumed_from": resumed_from, "config_changes": changes}
    with open(os.path.join(workdir, "runs.jsonl"), "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
