"""The huggingface runtime in process, on directories made here: what a directory that does not load
says (transformers' own words), how text is cut into pieces and stop strings are honoured, and the
OpenAI answers the replica's routes give for a caller's mistakes (through FastAPI's test client,
the app the replica serves them with). The whole path, from zero through the gateway with the
official client, is in test_llm.py."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from language_models import make_tiny_causal_lm, make_tiny_classifier, make_tokenizer

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes.huggingface import Detokenizer, TextClassifier, TextGenerator, load_huggingface
from zeroserve.serving.runtimes.openai_api import add_openai_routes


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    generator = load_huggingface("tiny", make_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny"))
    assert isinstance(generator, TextGenerator) and generator.load()
    return generator


def test_the_task_follows_the_architecture(tmp_path):
    assert isinstance(load_huggingface("c", make_tiny_classifier(tmp_path / "c")), TextClassifier)
    with pytest.raises(ModelLoadFailed, match="no config.json .*not a Hugging Face model directory"):
        load_huggingface("x", tmp_path)


def test_a_directory_without_a_tokenizer_says_so(tmp_path):
    model_dir = make_tiny_causal_lm(tmp_path / "lm")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (model_dir / name).unlink()
    with pytest.raises(ModelLoadFailed) as failure:
        load_huggingface("lm", model_dir).load()
    assert failure.value.message.startswith(f"no tokenizer in {model_dir}: ")
    assert "(tokenizer.json, tokenizer_config.json" in str(failure.value)


def test_a_broken_tokenizer_fails_with_the_librarys_message(tmp_path):
    model_dir = make_tiny_causal_lm(tmp_path / "lm")
    (model_dir / "tokenizer.json").write_text("{not a tokenizer")
    with pytest.raises(ModelLoadFailed) as failure:
        load_huggingface("lm", model_dir).load()
    assert failure.value.message.startswith(f"cannot load {model_dir}: JSONDecodeError: ")


def test_an_architecture_transformers_cannot_build_fails_with_its_message(tmp_path):
    make_tokenizer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["WarpDriveForCausalLM"],
                                                      "model_type": "warp-drive"}))
    with pytest.raises(ModelLoadFailed, match="warp-drive"):
        load_huggingface("warp", tmp_path).load()


def test_text_comes_in_pieces_and_a_stop_string_ends_it_even_across_tokens(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    ids = tokenizer("The quick brown fox jumps over the lazy dog.")["input_ids"]
    text = Detokenizer(tokenizer, [])
    assert "".join(text.add(token)[0] for token in ids) + text.flush() == tokenizer.decode(ids)

    stopping = Detokenizer(tokenizer, ["brown fox"])
    sent, stopped = [], False
    for token in ids:
        piece, stopped = stopping.add(token)
        sent.append(piece)
        if stopped:
            break
    assert stopped and "".join(sent) == "The quick "  # nothing of the stop string was sent


def test_the_routes_answer_a_callers_mistakes_in_openais_shape(tiny_lm):
    app = FastAPI()
    add_openai_routes(app, tiny_lm)
    client = TestClient(app)

    def post(path: str, body: dict) -> tuple[int, dict]:
        answer = client.post(f"/openai/v1/{path}", json=body)
        return answer.status_code, answer.json().get("error", {})

    chat = [{"role": "user", "content": "hello"}]
    assert post("chat/completions", {"model": "other", "messages": chat}) == (404, {
        "message": "The model `other` does not exist; this deployment serves `tiny`",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"})
    status, error = post("chat/completions", {"model": "tiny", "messages": chat, "max_tokens": 0})
    assert (status, error["param"]) == (400, "max_tokens")
    status, error = post("chat/completions", {"model": "tiny", "messages": chat, "n": 2})
    assert (status, error["param"]) == (400, "n")
    status, error = post("chat/completions", {"model": "tiny", "messages": []})
    assert (status, error["param"]) == (400, "messages")
    status, error = post("completions", {"model": "tiny", "prompt": "hi", "max_tokens": 1000})
    assert (status, error["code"]) == (400, "context_length_exceeded")
    status, error = post("embeddings", {"model": "tiny", "input": "hi"})
    assert (status, error["code"]) == (400, "unsupported_task")
    answer = client.post("/openai/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]["message"]

    whole = client.post("/openai/v1/completions", json={"model": "tiny", "prompt": "The sea", "max_tokens": 4,
                                                         "temperature": 0, "stop": ["\n"]}).json()
    assert whole["object"] == "text_completion" and whole["usage"]["completion_tokens"] <= 4
    assert client.get("/openai/v1/models").json()["data"][0]["id"] == "tiny"


def test_a_tokenizer_without_a_chat_template_is_told_to_use_completions(tmp_path):
    model_dir = make_tiny_causal_lm(tmp_path / "lm")
    (model_dir / "chat_template.jinja").unlink()
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    generator = load_huggingface("plain", model_dir)
    generator.load()
    app = FastAPI()
    add_openai_routes(app, generator)
    answer = TestClient(app).post("/openai/v1/chat/completions",
                                  json={"model": "plain", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 400 and "no chat template" in answer.json()["error"]["message"]
    assert "/openai/v1/completions" in answer.json()["error"]["message"]
