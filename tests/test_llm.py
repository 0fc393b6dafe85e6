"""Hugging Face models deployed by events and called from zero through the gateway with the clients
people use: a tiny causal LM (made here, random weights, a tokenizer trained here) through the
official ``openai`` client, chat completions streamed token by token; a real sentence-embedding
model shipped on the package index, through the same client's embeddings, next to
sentence-transformers' own answer; a classifier through the V1 and V2 protocols; and a directory
that does not load, DEAD with transformers' own message."""

from __future__ import annotations

import shutil

import numpy as np
import openai
import pytest
from conftest import operator, token_for
from language_models import make_tiny_causal_lm, make_tiny_classifier, make_tokenizer, shipped_embedding_model
from test_end_to_end import publish

from zeroserve.events import ArtifactCreated, DeploymentRequested
from zeroserve.node import Node

pytestmark = pytest.mark.slow

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello! Tell me about the sea."}]


async def deploy(zeroserve: Node, listen, deployment_id: str, model_dir, executable: str = "huggingface",
                 wait_for: str = "RUNNING") -> dict:
    """Register ``model_dir`` as an artifact, deploy it with ``executable``: its ``wait_for`` status."""
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await publish(zeroserve, ArtifactCreated(id=deployment_id, name=deployment_id, url=model_dir.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == deployment_id and e["status"] == "staged")
    await publish(zeroserve, DeploymentRequested(id=deployment_id, executable_id=executable,
                                                 input_artifacts={"model": deployment_id}))
    return await statuses.wait_for(lambda e: e["id"] == deployment_id and e["status"] == wait_for, timeout=120)


async def openai_client(zeroserve: Node, running: dict) -> openai.AsyncOpenAI:
    """The official client, pointed at the deployment's OpenAI paths, with an API token as its key."""
    token = await token_for(zeroserve, ["default"])
    return openai.AsyncOpenAI(base_url=f"{running['deploymentUrl']}/openai/v1", api_key=token,
                              default_headers={"AI-Resource-Group": "default"}, max_retries=0, timeout=120)


async def test_the_openai_client_streams_a_chat_completion_from_a_deployment_at_zero(zeroserve: Node, listen):
    model_dir = make_tiny_causal_lm(zeroserve.settings.data_dir / "sources" / "tiny-lm")
    running = await deploy(zeroserve, listen, "tiny-lm", model_dir)
    client = await openai_client(zeroserve, running)

    raw = await client.chat.completions.with_raw_response.create(
        model="tiny-lm", messages=CHAT, max_tokens=12, temperature=0, stream=True)  # type: ignore[arg-type]
    assert raw.headers["X-Cold-Start"] == "true"  # the deployment was at zero
    chunks = [chunk async for chunk in raw.parse()]
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(pieces) >= 3, chunks  # token by token, not one block at the end
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert {chunk.model for chunk in chunks} == {"tiny-lm"} and len({chunk.id for chunk in chunks}) == 1

    # Greedy decoding: the same text whole as streamed, and as transformers makes it itself.
    whole = await client.chat.completions.create(model="tiny-lm", messages=CHAT, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert whole.choices[0].message.content == "".join(pieces)
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    assert whole.choices[0].message.content == generate_directly(model_dir, 12)

    completion = await client.completions.create(model="tiny-lm", prompt="The quick brown fox", max_tokens=5,
                                                 temperature=0)
    assert completion.choices[0].text and completion.usage is not None and completion.usage.completion_tokens <= 5

    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="gpt-4o", messages=CHAT)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.completions.create(model="tiny-lm", prompt="The sea " * 40, max_tokens=100)
    assert too_long.value.code == "context_length_exceeded"
    assert "maximum context length is 128" in too_long.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="tiny-lm", messages=CHAT, temperature=7)  # type: ignore[arg-type]
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as no_embeddings:
        await client.embeddings.create(model="tiny-lm", input="hello")
    assert no_embeddings.value.code == "unsupported_task"


def generate_directly(model_dir, max_tokens: int) -> str:
    """The chat answer as plain transformers makes it, greedy: the baseline the replica must match."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))


async def test_embeddings_classification_and_a_broken_directory(zeroserve: Node, listen):
    from sentence_transformers import SentenceTransformer

    sources = zeroserve.settings.data_dir / "sources"
    shutil.copytree(shipped_embedding_model(), sources / "minilm")  # into the allowed roots, as a user's would be
    embedder = await deploy(zeroserve, listen, "minilm", sources / "minilm", "huggingface-embeddings")
    client = await openai_client(zeroserve, embedder)
    texts = ["A deployment starts on the first request.", "The sea is calm today."]
    answer = await client.embeddings.create(model="minilm", input=texts)  # the client asks for base64
    vectors = np.array([item.embedding for item in answer.data])
    expected = SentenceTransformer(str(shipped_embedding_model()), device="cpu").encode(texts)
    assert vectors.shape == (2, 384)
    assert np.allclose(vectors, expected, atol=1e-4)
    assert answer.usage.prompt_tokens > 0
    floats = await client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, expected[0], atol=1e-4)

    classifier = await deploy(zeroserve, listen, "sentiment", make_tiny_classifier(sources / "sentiment"))
    async with operator(zeroserve) as http:
        v1 = await http.post(f"{classifier['deploymentUrl']}/v1/models/sentiment:predict",
                             json={"instances": ["good", "bad"]})
        v2 = await http.post(f"{classifier['deploymentUrl']}/v2/models/sentiment/infer", json={
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]})
    assert v1.status_code == 200, v1.text
    assert v2.status_code == 200, v2.text
    assert set(v1.json()["predictions"]) <= {"negative", "positive"} and len(v1.json()["predictions"]) == 2
    assert v2.json()["outputs"][0]["datatype"] == "BYTES"
    assert v2.json()["outputs"][0]["data"] == v1.json()["predictions"]

    # A directory with a tokenizer and a config but no weights: DEAD, with transformers' own words.
    broken = sources / "no-weights"
    make_tokenizer(broken)
    (broken / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    running = await deploy(zeroserve, listen, "no-weights", broken)
    async with operator(zeroserve) as http:
        called = await http.post(f"{running['deploymentUrl']}/openai/v1/completions",
                                 json={"model": "no-weights", "prompt": "hi"})
    assert called.status_code == 503 and called.json()["error"]["code"] == "ModelLoadFailed"
    dead = await statuses.wait_for(lambda e: e["id"] == "no-weights" and e["status"] == "DEAD", timeout=60)
    assert dead["reason"] == "ModelLoadFailed"
    assert "OSError: Error no file named model.safetensors" in dead["message"]
