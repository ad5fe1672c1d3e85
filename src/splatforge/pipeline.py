"""The stages in their order, their options composed, and the loop that runs them.

    frames -> check (gate) -> poses -> train -> export -> report

Nothing here passes in-memory state between stages: each reads what the previous ones wrote in the run
folder (`splatforge.rundir`). A stage is skipped on a re-run when it finished with the same options and
its outputs are on disk; once one runs, every later one runs too (its inputs changed); `from_stage`
redoes that stage and everything after; an interrupted training resumes from its newest checkpoint.

More stages can be added without touching this file: a module named in `SPLATFORGE_STAGES`
(`module:ATTRIBUTE,...`) or in the `splatforge.stages` entry-point group holds a `Stage` (with `after`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from splatforge.errors import InputError
from splatforge.options import apply_overrides, to_dict
from splatforge.rundir import RunDir, read_json
from splatforge.stage import Events, Stage, changed_options, is_complete, run_stage

log = logging.getLogger(__name__)


def _builtin_stages() -> list[Stage]:
    from splatforge.capture.stages import CHECK, FRAMES
    from splatforge.poses.stage import POSES
    from splatforge.report.stage import REPORT
    from splatforge.splat.stages import EXPORT, TRAIN

    return [FRAMES, CHECK, POSES, TRAIN, EXPORT, REPORT]


def _added_stages() -> list[Stage]:
    specs = [s.strip() for s in os.environ.get("SPLATFORGE_STAGES", "").split(",") if s.strip()]
    specs += [ep.value for ep in importlib.metadata.entry_points(group="splatforge.stages")]
    added = []
    for spec in specs:
        module, _, attribute = spec.partition(":")
        try:
            added.append(getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError) as exc:
            raise InputError(f"the added stage {spec!r} cannot be loaded ({exc})",
                             "fix or remove it from SPLATFORGE_STAGES / the splatforge.stages entry points") from None
    return added


@cache
def stages() -> tuple[Stage, ...]:
    """Every stage in the order it runs: the built-in ones, and added ones after the stage they name."""
    order = _builtin_stages()
    for stage in _added_stages():
        names = [s.name for s in order]
        order.insert(names.index(stage.after) + 1 if stage.after in names else len(order), stage)
    return tuple(order)


def stage_named(name: str) -> Stage:
    for stage in stages():
        if stage.name == name:
            return stage
    raise InputError(f"unknown stage {name!r}", f"use one of: {', '.join(s.name for s in stages())}")


@dataclass
class RunOptions:
    """Everything `splatforge run` (or a job) can be told: each stage's options, and which stages to run."""

    stages: dict[str, Any] = field(default_factory=lambda: {s.name: s.options() for s in stages()})
    from_stage: str | None = None  # redo this stage and all after it
    until_stage: str | None = None  # stop after this stage (e.g. "poses")

    def __getattr__(self, name: str) -> Any:  # options.train, options.poses, ...
        if name != "stages" and name in self.__dict__.get("stages", {}):
            return self.stages[name]
        raise AttributeError(name)

    def with_changes(self, changes: dict[str, Any]) -> RunOptions:
        """A copy with `{"train.steps": 3000, "poses": {"mapper": "global"}, "from_stage": ...}` applied;
        anything unknown or ill-typed is an InputError that lists what is known."""
        new = RunOptions(dict(self.stages), self.from_stage, self.until_stage)
        per_stage: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            head, _, rest = str(key).partition(".")
            if head in ("from_stage", "until_stage") and not rest:
                setattr(new, head, stage_named(value).name if value is not None else None)
            elif head in new.stages:
                per_stage.setdefault(head, {}).update({rest: value} if rest else dict(value or {}))
            else:
                raise InputError(f"unknown option {key!r}",
                                 f"options start with a stage name ({', '.join(new.stages)}) or are from_stage/until_stage")
        for name, sub in per_stage.items():
            new.stages[name] = apply_overrides(new.stages[name], sub, name)
        return new

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunOptions:
        return cls().with_changes(data or {})

    def to_dict(self) -> dict[str, Any]:
        return {**{name: to_dict(value) for name, value in self.stages.items()},
                "from_stage": self.from_stage, "until_stage": self.until_stage}

    def selected(self) -> list[Stage]:
        names = [s.name for s in stages()]
        last = names.index(stage_named(self.until_stage).name) if self.until_stage else len(names) - 1
        return list(stages())[: last + 1]


@dataclass
class PipelineResult:
    run: RunDir
    stages: dict[str, dict[str, Any]]  # per stage: {"status": "done" | "skipped (already done)", ...}
    report: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run.root), "stages": self.stages, "report": self.report}


def record_input(source: Path | None, run: RunDir, options: RunOptions) -> Path:
    """The input this run folder belongs to (recorded in run.json); refuses another input."""
    recorded = run.read_manifest().get("input")
    if source is None:
        if not recorded:
            raise InputError(f"{run.root} is not a run folder with a recorded input", "give the input to start a run")
        return Path(recorded)
    source = Path(source).expanduser().resolve()
    if recorded and Path(recorded) != source and options.from_stage != stages()[0].name:
        raise InputError(f"{run.root} holds a run of {recorded}, not of {source}",
                         "choose another run folder with -o (or leave -o out: a free name is chosen)")
    return source


def run_pipeline(source: Path | None, run: RunDir, options: RunOptions | None = None,
                 events: Events | None = None) -> PipelineResult:
    """Run every selected stage that is not already done. `source` None continues an existing run."""
    options, events = options or RunOptions(), events or Events()
    chosen = options.selected()
    if "train" in [s.name for s in chosen]:
        from splatforge.splat.warmup import preload_training_imports

        preload_training_imports()
    source = record_input(source, run.create(), options)
    run.update_manifest(input=str(source), options=options.to_dict())
    outcome: dict[str, dict[str, Any]] = {}
    redo = False
    for stage in chosen:
        stage_options = options.stages[stage.name]
        redo = redo or stage.name == options.from_stage
        if not redo and is_complete(stage, run, stage_options):
            outcome[stage.name] = {"status": "skipped (already done)"}
            events.progress(stage.name, 1.0, "already done")
            continue
        changed = changed_options(stage, run, stage_options)
        if changed and not redo:
            log.warning("%s runs again: its options changed since the last run (%s)", stage.name,
                        "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()))
        redo = True  # every later stage reads what this one writes
        outcome[stage.name] = {"status": "done", **run_stage(stage, run, stage_options, events)}
    report = read_json(run.report_json) if run.report_json.exists() and "report" in outcome else None
    return PipelineResult(run=run, stages=outcome, report=report)
