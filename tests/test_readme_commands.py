"""Every command the README documents parses and validates: each command in a fenced code block that
starts with ``python src/``, ``tagfer`` or ``torchrun`` (also after ``&&``) runs with ``--dry-run``.

README.md stays the source: the commands are read from it at collection time. Placeholder paths
(``/data/...``, ``/models/...``) become paths under a temporary directory, images named on the command
line (``face1.jpg``) are written there, and every command runs with that directory as its working
directory (``configs/`` and ``src/`` linked in), so a dry run that wrote anything would be seen. A
``torchrun`` line is checked through its script part (``python src/train.py ...``).
"""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagfer.cli import main as tagfer_main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PREFIXES = ("python src/", "tagfer ", "torchrun ")
PLACEHOLDER_ROOT = re.compile(r"(?<![\w.])/(data|models)/")
IMAGE_NAME = re.compile(r"^[\w-]+\.(jpg|jpeg|png)$")


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def documented_commands(text: str) -> list[str]:
    """The commands of every fenced block: continuation lines joined, comments dropped, ``&&``/``;`` split."""
    commands = []
    for block in fenced_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            for part in re.split(r"\s*(?:&&|;)\s*", line):
                if part.startswith(PREFIXES):
                    commands.append(" ".join(part.split()))
    return commands


COMMANDS = documented_commands(README.read_text(encoding="utf-8"))


def test_the_readme_documents_the_commands_this_test_checks():
    assert any(c.startswith("python src/train.py --config configs/rl.yaml") for c in COMMANDS), COMMANDS
    assert any(c.startswith("tagfer ") for c in COMMANDS) and any(c.startswith("torchrun ") for c in COMMANDS)


def script_argv(command: str, workdir: Path) -> list[str]:
    """``[program, args...]`` with placeholders replaced; a torchrun line becomes its script's command."""
    argv = shlex.split(PLACEHOLDER_ROOT.sub(lambda m: f"{workdir}/{m[1]}/", command))
    if argv[0] == "torchrun":
        script = next(i for i, token in enumerate(argv) if token.endswith(".py"))
        argv = ["python", *argv[script:]]
    unresolved = [token for token in argv if "$" in token]
    assert not unresolved, f"{command!r}: environment variables left in the command itself: {unresolved}"
    for token in argv[1:]:
        if IMAGE_NAME.match(token):
            Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(workdir / token)
    return argv


def run_dry(argv: list[str]) -> int:
    if argv[0] == "tagfer":
        return tagfer_main([*argv[1:], "--dry-run"])
    assert argv[0] == "python" and argv[1].startswith("src/"), argv
    saved = sys.argv
    sys.argv = [argv[1], *argv[2:], "--dry-run"]
    try:
        runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as stop:
        return stop.code or 0
    finally:
        sys.argv = saved
    return 0


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:80] for c in COMMANDS])
def test_a_documented_command_parses_and_validates(command, tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "src").symlink_to(REPO / "src")
    monkeypatch.chdir(tmp_path)
    argv = script_argv(command, tmp_path)
    try:
        code = run_dry(argv)
    except SystemExit as stop:  # argparse rejected the arguments
        code = stop.code
    captured = capsys.readouterr()
    assert code == 0, f"README command failed its dry run (exit {code}): {command}\n{captured.err[-3000:]}"
    assert captured.out.startswith("dry run: "), f"{command}: no dry-run report\n{captured.out[-2000:]}"
    written = sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not IMAGE_NAME.match(p.name) and p.name not in ("configs", "src")
    )
    assert not written, f"the dry run of {command!r} wrote {written}"
