"""A stage added from outside the package, as a user or a test would: one object, named in
SPLATFORGE_STAGES (`toy_stage:TOY`). It runs after export and writes toy.txt with its option's value."""

from __future__ import annotations

from dataclasses import dataclass

from splatforge.rundir import atomic_write_text
from splatforge.stage import Stage


@dataclass
class ToyOptions:
    greeting: str = "hello"


def _run(run, options: ToyOptions, events):
    events.progress("toy", 0.5, "greeting")
    atomic_write_text(run.root / "toy.txt", f"{options.greeting} after {run.ply.name}\n")
    return {"greeting": options.greeting}


TOY = Stage(name="toy", options=ToyOptions, run=_run, done=lambda run: (run.root / "toy.txt").exists(),
            reads=("export/",), writes=("toy.txt",), after="export", help="a test stage")
