"""What a workdir records about the runs that wrote it: `config.json` and `runs.jsonl`.

- `config.json`: the config of the latest start, written only once the run has checked it
  (the task is built, its data read, the checkpoints found compatible).
- `runs.jsonl`: one row per start: time, command line, working folder, git commit of the
  code (when it is a git checkout), versions of Python, jax, jaxlib, flax, optax, orbax and
  numpy, the process count, the step resumed from, and every config key changed since the
  previous start (old and new value).

A run that resumes from checkpoints first compares its config with the recorded one
(`check_resume`): keys that only change how long or how often things happen (`ALLOWED`) may
change and are recorded, as may keys the record lacks (declared since) when the new value
is what the code did before the key existed (`LEGACY`; a key not listed there is assumed to
have been declared with the old behaviour as its default); any other change would make the
checkpoints mean something else (model shape, data, objective, optimiser) and stops the run
with an error naming the keys.
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
    "host_allocator",
    "schedule.log_every_steps",
    "schedule.checkpoint_every_steps",
    "schedule.keep_checkpoints",
    "schedule.async_checkpoints",
    "evals.",
    "data.cache_dir",
)
# Keys declared after runs existed whose default is NOT the old behaviour: the value the code
# used before the key existed. A record without the key resumes only with that value.
LEGACY = {
    "loss.co_train_epoch": "fixed",  # NCR-style: the one-pass epoch became the default later
    "loss.elbo": "analytic",  # explicit iVAE/VAE: the beta-TC objective became the default later
    "model.target_basis": "pca",  # Recipe1M: the CCA target basis became the default later
    "loss.soft_form": "joint",  # DisNCL: directional soft targets became the default later
    "loss.neighbour_trusted": "own",  # DisNCL: caption-trusted neighbours likewise
    "model.mei_decorrelation": "none",  # DisNCL: the MEI code's linear removal likewise
    "model.mii_decorrelation": "none",  # DisNCL: the exclusive residual likewise (session 8)
    "loss.exclusive_weighting": "all",  # DisNCL: clean-weighted running moments likewise
}
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
    # Unless the key is in LEGACY: then the code before it behaved as its legacy value.
    old_flat, new_flat = flatten(recorded), flatten(new)
    both = set(old_flat) & set(new_flat)
    refused = {k: v for k, v in changes.items() if k in both and not _allowed(k)}
    legacy = {
        k: [LEGACY[k], new_flat[k]]
        for k in changes
        if k in LEGACY and k not in old_flat and k in new_flat and new_flat[k] != LEGACY[k]
    }
    if refused or legacy:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        shown_legacy = "; ".join(
            f"{k}: {old!r} -> {new!r}, set {k}={old!r} to resume it as it ran"
            for k, (old, new) in legacy.items()
        )
        if shown_legacy:
            shown_legacy = (
                "keys declared after this record, whose code then behaved as the first "
                f"value: {shown_legacy}"
            )
        raise IncompatibleConfigError(
            f"the checkpoints in {workdir} were trained with another config "
            f"({'; '.join(s for s in (shown, shown_legacy) if s)}); "
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
