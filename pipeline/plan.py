"""`semidavil plan`: what a run of this config would reuse and what it would run, and why. Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.manifest import Manifest
from pipeline.runner import completed, open_manifest, stage_module, stage_payload, stages_of
from pipeline.stage import fingerprint

RESUMABLE = {"caption", "embed_text", "train"}  # keep their shards or checkpoints across a stop


@dataclass(frozen=True)
class PlanRow:
    stage: str
    action: str  # reuse | run | resume | after <input>
    fingerprint: str | None
    reason: str


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _short(value: Any) -> str:
    text = "(absent)" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def payload_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two stage payloads, named as config keys, inputs and versions."""
    changes = []
    if old.get("version") != new.get("version"):
        changes.append(f"stage version {old.get('version')} → {new.get('version')}")
    before, after = flatten(old.get("config", {})), flatten(new.get("config", {}))
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            changes.append(f"{key}: {_short(before.get(key))} → {_short(after.get(key))}")
    before, after = old.get("inputs", {}), new.get("inputs", {})
    changes += [f"input {key} differs" for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
    if old.get("workdir") != new.get("workdir"):
        changes += [f"{key} in the work directory differ" for key in sorted(new.get("workdir", {}))]
    return changes


def _why_run(manifest: Manifest | None, name: str, fp: str, stage_pl: dict[str, Any]) -> tuple[str, str]:
    partial = manifest.latest_stage_run(name, fp) if manifest else None
    action = "resume" if partial is not None and name in RESUMABLE else "run"
    prefix = f"a {partial.status} run with this fingerprint is on record; " if partial is not None else ""
    on_record = [r for r in (manifest.stage_runs(name, status="complete") if manifest else []) if r.payload]
    if not on_record:
        return action, prefix + "no complete run of this stage on record"
    # the closest complete run (fewest differences; the newest of equals) says best what changed
    changes = min((payload_changes(r.payload, stage_pl) for r in on_record), key=len)
    if not changes:  # same payload, but its output is gone
        return action, prefix + f"the output of the complete run {fp[:12]} is missing"
    return action, prefix + "differs from the closest complete run: " + "; ".join(changes)


def plan(cfg: Config) -> list[PlanRow]:
    """For each stage: reuse or run, and why. Nothing is written, not even a manifest."""
    manifest = open_manifest(cfg, read_only=True)
    workdir = Path(cfg.paths.workdir)
    fps: dict[str, str | None] = {}
    blocked_by: dict[str, str] = {}  # stage -> the stage that must run before its fingerprint is known
    rows = []
    for name in stages_of(cfg):
        stage = stage_module(name, cfg.task)
        stage_pl = stage_payload(cfg, manifest, name, fps)
        if stage_pl is None:
            waits = next(i for i in stage.INPUTS if fps[i] is None or completed(manifest, workdir, i, fps[i]) is None)
            fps[name], blocked_by[name] = None, blocked_by.get(waits, waits)
            rows.append(PlanRow(name, f"after {blocked_by[name]}", None,
                                f"decided once {blocked_by[name]} has run: its inputs depend on that output "
                                "(reused if it comes out the same)"))
            continue
        fps[name] = fp = fingerprint(stage_pl)
        if completed(manifest, workdir, name, fp) is not None:
            rows.append(PlanRow(name, "reuse", fp, f"complete run {fp[:12]} on record"))
        else:
            action, reason = _why_run(manifest, name, fp, stage_pl)
            rows.append(PlanRow(name, action, fp, reason))
    return rows
