"""The ``llm`` section of ``make bench``: Hugging Face models from zero, each next to its baseline.

- ``llm_cold_start_ttft_ms``: the tests' tiny causal LM (random weights, made here) at zero replicas,
  then a streamed chat completion through the gateway, until the first token's text arrives;
  baseline: a fresh Python process that loads the same directory with transformers and makes one
  token (what any server that starts a process per model pays). Goal: ratio <= 0.3.
- ``llm_stream_tokens_per_s_ratio``: a warm replica streams 100 tokens; tokens per second through
  the gateway over the same straight from the replica, rounds alternating. Goal >= 0.9.
- ``embed_cold_start_ms``: all-MiniLM-L6-v2 (shipped on the package index) at zero, then one
  embedding through the gateway; baseline: a fresh process that loads it with transformers and
  embeds one text. No goal: reported.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from zeroserve.backends.local import LocalBackend
from zeroserve.events import ArtifactCreated, DeploymentRequested, new_event
from zeroserve.node import Node
from zeroserve.settings import Settings

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from language_models import make_tiny_causal_lm, shipped_embedding_model  # noqa: E402

CHAT = [{"role": "user", "content": "Hello! Tell me about the sea."}]

# The baselines: a fresh interpreter that loads the directory with transformers and answers once.
FRESH_LM = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
chat = json.loads(sys.argv[2])
ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")["input_ids"]
model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id)
print("token", flush=True)
"""
FRESH_ENCODER = """
import sys, torch
from transformers import AutoModel, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1])
with torch.inference_mode():
    model(**tokenizer(["hello world"], return_tensors="pt"))
print("embedding", flush=True)
"""


async def fresh_process(script: str, model_dir: Path) -> float:
    """Milliseconds from starting ``python -c script model_dir`` until it prints its answer."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(model_dir), json.dumps(CHAT), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert process.stdout is not None
    line = await process.stdout.readline()
    elapsed = (time.perf_counter() - started) * 1000
    await process.wait()
    if not line:
        raise SystemExit(f"the fresh-process baseline failed for {model_dir}")
    return elapsed


async def deploy(zeroserve: Node, id: str, model_dir: Path, executable: str, **parameters: str) -> str:
    """Register and deploy ``model_dir`` (with these template parameters); its deployment URL once RUNNING."""
    from bench.__main__ import running

    platform = zeroserve.platform
    assert platform is not None
    await platform.bus.publish(new_event(ArtifactCreated(id=id, name=id, url=model_dir.as_uri()), source="/bench"),
                               "default")
    await platform.bus.publish(new_event(DeploymentRequested(
        id=id, executable_id=executable, input_artifacts={"model": id}, parameters=parameters), source="/bench"),
        "default")
    deployment = await running(platform, id)
    assert deployment.deployment_url is not None
    return deployment.deployment_url


async def first_token_ms(client: httpx.AsyncClient, url: str, model: str, max_tokens: int = 1) -> tuple[float, int]:
    """A streamed chat completion: milliseconds until the first token's text, and the tokens that came."""
    body = {"model": model, "messages": CHAT, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    started = time.perf_counter()
    first, pieces = None, 0
    async with client.stream("POST", f"{url}/openai/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200, (await answer.aread()).decode()
        async for line in answer.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                pieces += 1
                if first is None:
                    first = (time.perf_counter() - started) * 1000
    assert first is not None, "no token came"
    return first, pieces


async def tokens_per_s(client: httpx.AsyncClient, url: str, model: str, tokens: int) -> float:
    started = time.perf_counter()
    _, pieces = await first_token_ms(client, url, model, tokens)
    return pieces / (time.perf_counter() - started)


async def embed_ms(client: httpx.AsyncClient, url: str, model: str) -> float:
    started = time.perf_counter()
    answer = await client.post(f"{url}/openai/v1/embeddings", json={"model": model, "input": "hello world"})
    assert answer.status_code == 200, answer.text
    return (time.perf_counter() - started) * 1000


async def bench_llm(settings: Settings, trials: int = 5, rounds: int = 5) -> list[dict[str, Any]]:
    from bench.__main__ import demo, p, result

    zeroserve, client, _, _ = await demo(settings)
    platform = zeroserve.platform
    assert platform is not None and isinstance(platform.backend, LocalBackend)
    backend = platform.backend
    sources = settings.data_dir / "sources"
    lm = make_tiny_causal_lm(sources / "tiny-lm")
    encoder = shutil.copytree(shipped_embedding_model(), sources / "minilm")
    cold: dict[str, list[float]] = {"llm": [], "llm_fresh": [], "embed": [], "embed_fresh": []}
    speed: dict[str, list[float]] = {"gateway": [], "direct": []}
    try:
        lm_url = await deploy(zeroserve, "tiny-lm", lm, "huggingface")
        encoder_url = await deploy(zeroserve, "minilm", encoder, "huggingface-embeddings")
        forks = backend.autoscaler.fork_server("huggingface")
        if forks is not None:  # started with the first torch deployment; a start before it is ready is spawned
            await asyncio.wait_for(forks.wait_ready(), 300)
        for trial in range(trials):
            print(f"LLM and embedding cold starts {trial + 1}/{trials}", file=sys.stderr)
            await backend.scale_to_zero("default", "tiny-lm")
            cold["llm"].append((await first_token_ms(client, lm_url, "tiny-lm"))[0])
            cold["llm_fresh"].append(await fresh_process(FRESH_LM, lm))
            await backend.scale_to_zero("default", "minilm")
            cold["embed"].append(await embed_ms(client, encoder_url, "minilm"))
            cold["embed_fresh"].append(await fresh_process(FRESH_ENCODER, encoder))
        await first_token_ms(client, lm_url, "tiny-lm")  # a replica is up
        [replica] = backend.services["default", "tiny-lm"].replicas
        for _ in range(rounds):
            speed["gateway"].append(await tokens_per_s(client, lm_url, "tiny-lm", 100))
            speed["direct"].append(await tokens_per_s(client, replica.url, "tiny-lm", 100))
    finally:
        await client.aclose()
        await zeroserve.stop()
    ratio = p(cold["llm"], 50) / p(cold["llm_fresh"], 50)
    stream_ratio = p(speed["gateway"], 50) / p(speed["direct"], 50)
    return [
        result("llm_cold_start_ttft_ms", p(cold["llm"], 50), "ms", p(cold["llm_fresh"], 50), "ratio <= 0.3",
               ratio <= 0.3, samples_ms={k: [round(v, 1) for v in cold[k]] for k in ("llm", "llm_fresh")}),
        result("llm_stream_tokens_per_s_ratio", stream_ratio, "x", None, ">= 0.9", stream_ratio >= 0.9,
               gateway_tokens_per_s=round(p(speed["gateway"], 50), 1),
               direct_tokens_per_s=round(p(speed["direct"], 50), 1)),
        result("embed_cold_start_ms", p(cold["embed"], 50), "ms", p(cold["embed_fresh"], 50), "-", None,
               samples_ms={k: [round(v, 1) for v in cold[k]] for k in ("embed", "embed_fresh")}),
    ]
