"""Fault injection for the fault suite (tests/faults), off unless its variable is set: a worker
that dies at a given step of a given job, as one killed by the kernel's OOM killer or a crashing
GPU kernel would. No setting of the service; an operator never sets it.

GISP_FAULT_EXIT_AT=<seed>:<step>: the process running a job whose `seed` setting is <seed> exits
at once (os._exit, no cleanup, like SIGKILL) when that job reaches step <step>.
GISP_FAULT_EXIT_AT=<seed>:tyr:<target>:<round>:<phase>:<done>: the same at a `tyr` job's search
progress report (a ladder layer built, not one a resume read back; a generation finished)."""

from __future__ import annotations

import os

VARIABLE = "GISP_FAULT_EXIT_AT"


def maybe_die(seed: int, step: int | str) -> None:
    value = os.environ.get(VARIABLE)
    if value and value == f"{seed}:{step}":
        os._exit(137)
