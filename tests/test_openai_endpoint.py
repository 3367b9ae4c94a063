"""The OpenAI-compatible client (retries, explicit sampling) and the server manager, against a fake server
on the loopback interface (tests/fake_openai_server.py): no vLLM needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagfer.models.openai_endpoint import ChatClient, EndpointError, EndpointSettings, Sampling, backoff_delay, chat_body
from tagfer.models.vllm_server import ServerError, ServerSpec, launched_server, server_command
from vllm_support import group_alive

FAKE = str(Path(__file__).with_name("fake_openai_server.py"))
IMAGES = [Image.fromarray(np.full((8, 8, 3), i * 30, dtype=np.uint8)) for i in range(5)]
PROMPTS = [f"prompt {i}" for i in range(5)]


def fake_spec(*switches: str, **kwargs) -> ServerSpec:
    return ServerSpec(
        python=sys.executable, model="tiny-model", entry=(FAKE,), args=switches, startup_timeout_s=30, stop_grace_s=5, **kwargs
    )


def client(server, *, sleeps: list | None = None, **settings) -> ChatClient:
    options = dict(base_url=server.base_url, model=server.model, api_key=server.api_key, timeout_s=10, max_retries=3, concurrency=3)
    return ChatClient(EndpointSettings(**(options | settings)), sleep=(sleeps.append if sleeps is not None else time.sleep))


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_delay(r, 0.5, 3.0) for r in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_sampling_is_explicit_and_greedy_turns_sampling_knobs_off():
    greedy = Sampling(max_new_tokens=7).request_fields()
    assert greedy == {
        "max_tokens": 7, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "min_p": 0.0,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "n": 1, "return_token_ids": True,
    }  # fmt: skip
    plain = Sampling(max_new_tokens=7, temperature=0.5, top_k=3).request_fields(extensions=False)
    assert not {"top_k", "repetition_penalty", "min_p", "return_token_ids"} & set(plain) and plain["temperature"] == 0.5
    assert Sampling(max_new_tokens=1, banned_token_ids=(5, 9)).request_fields()["logit_bias"] == {"5": -100, "9": -100}
    sampled = Sampling(max_new_tokens=7, temperature=0.7, top_p=0.9, top_k=20, seed=3).request_fields()
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"], sampled["seed"]) == (0.7, 0.9, 20, 3)


def test_chat_body_sends_the_image_then_the_prompt_after_the_system_turn():
    body = chat_body("m", IMAGES[0], "hi", Sampling(max_new_tokens=3), system_prompt="sys")
    system, user = body["messages"]
    assert system == {"role": "system", "content": "sys"}
    assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert user["content"][1] == {"type": "text", "text": "hi"}


def test_launched_server_answers_in_order_on_loopback_with_a_fresh_key_and_is_stopped():
    with launched_server(fake_spec()) as first:
        assert first.base_url.startswith("http://127.0.0.1:")
        texts = client(first).complete(IMAGES, PROMPTS, Sampling(max_new_tokens=4, temperature=0.5, top_k=5))
        assert texts == [f"tiny-model|0.5|5|{p}" for p in PROMPTS]
        sent = [json.loads(line) for line in first.log_path.read_text().splitlines() if line.startswith("{")]
        assert all(s["repetition_penalty"] == 1.0 and s["max_tokens"] == 4 for s in sent) and len(sent) == 5
        with pytest.raises(EndpointError, match="HTTP 401"):  # the key is required, and a 401 is not retried
            ChatClient(EndpointSettings(first.base_url, "tiny-model", api_key="wrong")).complete(IMAGES[:1], PROMPTS[:1], Sampling(4))
    assert not group_alive(first.pid)
    with launched_server(fake_spec()) as second:
        assert second.api_key != first.api_key
    assert "***" not in " ".join(server_command(fake_spec(), 1, "k"))


@pytest.mark.parametrize(
    "switches", [("--fail-first", "2", "--fail-status", "503"), ("--fail-first", "2", "--fail-status", "429"), ("--drop-first", "2")]
)
def test_retryable_failures_are_retried_with_backoff(switches):
    sleeps: list[float] = []
    with launched_server(fake_spec(*switches)) as server:
        texts = client(server, sleeps=sleeps, concurrency=1, backoff_s=0.25).complete(IMAGES[:2], PROMPTS[:2], Sampling(4))
    assert texts == [f"tiny-model|0.0|-1|{p}" for p in PROMPTS[:2]]
    assert sleeps == [0.25, 0.5]  # two failures of the first request, nothing lost or repeated after


def test_a_non_retryable_status_fails_at_once_with_the_servers_message():
    sleeps: list[float] = []
    with launched_server(fake_spec("--fail-first", "1", "--fail-status", "400")) as server:
        with pytest.raises(EndpointError, match="HTTP 400 .*injected 400"):
            client(server, sleeps=sleeps).complete(IMAGES[:1], PROMPTS[:1], Sampling(4))
    assert sleeps == []


def test_retries_run_out_with_a_clear_error():
    with launched_server(fake_spec("--fail-first", "99")) as server:
        with pytest.raises(EndpointError, match="gave up after 3 attempts: HTTP 503"):
            client(server, sleeps=[], max_retries=2).complete(IMAGES[:1], PROMPTS[:1], Sampling(4))


def test_a_killed_server_gives_an_error_not_a_hang():
    with launched_server(fake_spec()) as server:
        os.killpg(server.pid, signal.SIGKILL)
        time.sleep(0.2)
        start = time.monotonic()
        with pytest.raises(EndpointError, match="gave up after 2 attempts: URLError"):
            client(server, sleeps=[], max_retries=1).complete(IMAGES[:1], PROMPTS[:1], Sampling(4))
        assert time.monotonic() - start < 5


def test_start_failures_are_clear_and_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"exited with code 3 before it was healthy(.|\n)*cannot start \(asked to\)"):
        with launched_server(fake_spec("--exit-at-start")):
            pass
    assert time.monotonic() - start < 20
    with pytest.raises(ServerError, match="scripts/setup_vllm.sh"):
        with launched_server(ServerSpec(python=str(tmp_path / "missing" / "python"), model="m")):
            pass


LAUNCHER = textwrap.dedent(
    """
    import sys, time
    from tagfer.models.vllm_server import ServerSpec, launched_server
    spec = ServerSpec(python=sys.executable, model="m", entry=(sys.argv[1],), startup_timeout_s=30, stop_grace_s=5)
    with launched_server(spec) as server:
        print(server.pid, flush=True)
        time.sleep(120)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_the_server_dies_with_the_run(signum):
    """SIGTERM: the run stops the group on its way out; SIGKILL: the kernel kills the server (no orphan)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.Popen([sys.executable, "-c", LAUNCHER, FAKE], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(run.stdout.readline())
        assert group_alive(pid)
        run.send_signal(signum)
        run.wait(timeout=30)
        deadline = time.monotonic() + 10
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(pid)
    finally:
        run.kill()
        run.wait()


def test_teacher_endpoint_keeps_verified_traces_with_provenance(tiny_qwen2_vl_dir, monkeypatch):
    """``traces.teacher.endpoint``: the key from its environment variable, the teacher's sampling sent
    explicitly, the box space from the processor at ``name_or_path``, the loop's checks unchanged."""
    from omegaconf import OmegaConf

    from tagfer.core.config import TagferConfig
    from tagfer.core.trace import Trace, TraceStep, render_trace
    from tagfer.reasoning.build import loaded_teacher
    from tagfer.reasoning.teacher import KEPT, TeacherOptions, TeacherSample, run_teacher

    reply = render_trace(
        Trace("A smile.", (TraceStep("lip corners", ("AU12",), "lip corners pulled up", (4, 5, 30, 20)),), ("AU12",), "happiness")
    )
    with launched_server(fake_spec("--reply", reply)) as server:
        monkeypatch.setenv("FAKE_TEACHER_KEY", server.api_key)
        cfg = OmegaConf.structured(TagferConfig)
        teacher = {
            "endpoint": server.base_url,
            "model": "big-teacher",
            "name_or_path": str(tiny_qwen2_vl_dir),
            "api_key_env": "FAKE_TEACHER_KEY",
        }
        cfg = OmegaConf.merge(cfg, {"traces": {"teacher": teacher | {"temperature": 0.6, "max_new_tokens": 99}}})
        samples = [
            TeacherSample(str(i), IMAGES[i], label, {"AU12": 0.9}, {"AU12": (1, 2, 30, 40)})
            for i, label in enumerate(["happiness", "sadness"])
        ]
        with loaded_teacher(cfg) as (generate, space, name):
            outcomes = {o.sample.id: o for o in run_teacher(samples, generate, TeacherOptions(teacher=name, max_label_retries=1))}
        sent = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert (name, space.convention) == ("big-teacher", "norm1000")  # Qwen2-VL, from the processor directory
    assert outcomes["0"].status == KEPT and outcomes["0"].provenance(name)["teacher"] == "big-teacher"
    assert outcomes["1"].status == "label_failed" and outcomes["1"].eliminated == ["happiness"] and outcomes["1"].attempts == 2
    assert len(sent) == 3 and all((s["model"], s["temperature"], s["max_tokens"], s["top_k"]) == ("big-teacher", 0.6, 99, -1) for s in sent)
