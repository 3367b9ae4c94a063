"""Run one command per seed, a few at a time, each logged to ``<out>/seed<s>.log`` (used by the seed studies)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_per_seed(commands: dict[int, list[str]], out: Path, jobs: int, *, cwd: Path, what: str) -> None:
    """Run ``commands[seed]`` for every seed, ``jobs`` at a time; a failed one is an error naming its log."""
    out.mkdir(parents=True, exist_ok=True)
    pending = list(commands)
    running: list[tuple[int, subprocess.Popen, Path]] = []
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            log = out / f"seed{seed}.log"
            with open(log, "w") as handle:
                running.append((seed, subprocess.Popen(commands[seed], stdout=handle, stderr=subprocess.STDOUT, cwd=cwd), log))
        seed, process, log = running.pop(0)
        if process.wait() != 0:
            raise RuntimeError(f"the {what} for seed {seed} failed (exit {process.returncode}); see {log}")
        print(f"seed {seed} done (log {log})", flush=True)
