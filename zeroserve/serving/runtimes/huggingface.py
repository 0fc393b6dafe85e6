"""The huggingface runtime: a Hugging Face model directory (``config.json``, safetensors weights, the
tokenizer's files), served with ``transformers``. What the model does follows from the architecture
its ``config.json`` names, as KServe's Hugging Face runtime infers its task:

- ``...ForCausalLM`` (Llama, GPT-2, Qwen, ...): text generation through the OpenAI API,
  ``/openai/v1/completions`` and ``/openai/v1/chat/completions`` (the tokenizer's chat template),
  streamed token by token with ``stream: true`` (``openai_api.py``);
- ``...ForSequenceClassification``: classification through the V1 and V2 protocols (texts in, the
  model's labels out, as ``id2label`` names them);
- any other architecture (BERT, MiniLM, ... a sentence-transformers directory): embeddings through
  ``/openai/v1/embeddings``, pooled as the directory's ``1_Pooling/config.json`` says (mean pooling
  otherwise) and normalised when its ``modules.json`` has a ``Normalize`` step.

Weights are read by ``from_pretrained`` from the safetensors files memory-mapped, placed straight on
the replica's device (``device_map``): the GPU when the replica was given one (its
``CUDA_VISIBLE_DEVICES``), else the CPU, where half-precision weights are widened to float32 (most
CPUs multiply bf16 slowly). Nothing is fetched from a hub: ``local_files_only``. A directory that does
not load (no config, no tokenizer, an architecture transformers cannot build) leaves the deployment
DEAD with ``ModelLoadFailed`` and the library's own message. Generation runs in one worker thread, one
request at a time per replica (more replicas serve more at once); a caller that leaves stops its
generation at the next token. A GPU that runs out of memory while generating ends the replica with
``GpuOutOfMemory`` (``faults.py``), since a CUDA context after an out-of-memory is not to be trusted.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import kserve
import numpy as np
import torch
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import get_predict_input, get_predict_response
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as transformers_logging

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes import faults
from zeroserve.serving.runtimes.openai_api import OpenAIError, Piece, Sampling
from zeroserve.serving.runtimes.torch_placement import replica_device, use_replica_threads

CONFIG_FILE = "config.json"
# What a tokenizer is saved as, by tokenizers (fast), sentencepiece, WordPiece or BPE vocabularies.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.txt",
                   "vocab.json")
HALF_PRECISION = (torch.float16, torch.bfloat16)
# A tokenizer that does not say how long a text it takes says 1e30: the model's positions bound it then.
UNBOUNDED = 1_000_000_000
# The process that ran warm_up (a fork server): it keeps torch on one thread; its forks do not.
_warm_parent: int | None = None


def load_huggingface(name: str, model_dir: str | Path) -> kserve.Model:
    """The model of ``model_dir``, by its architecture: a TextGenerator, TextClassifier or TextEncoder."""
    directory = Path(model_dir)
    if not (directory / CONFIG_FILE).is_file():
        raise ModelLoadFailed(f"no {CONFIG_FILE} in {model_dir}: not a Hugging Face model directory")
    try:
        architectures = json.loads((directory / CONFIG_FILE).read_text()).get("architectures") or []
    except (ValueError, AttributeError) as error:
        raise ModelLoadFailed(f"{directory / CONFIG_FILE} is not a JSON object: {error}") from error
    if any(architecture.endswith("ForCausalLM") for architecture in architectures):
        return TextGenerator(name, directory)
    if any(architecture.endswith("ForSequenceClassification") for architecture in architectures):
        return TextClassifier(name, directory)
    return TextEncoder(name, directory)


def warm_up() -> None:
    """Load and run a tiny model of each task once, made here with random weights: a fork of this
    process then finds transformers' code for them imported and initialised, and its first load only
    reads weights (a tiny LM: about 2 s fresh, 0.1 s after this). The two commonest architectures
    are warmed (Llama for generation, BERT for embeddings and classification); another one imports
    its own code on its first load. Torch runs on one thread meanwhile: a process that forks must not
    have started OpenMP's thread pool (its children could hang in their first parallel region)."""
    import tempfile

    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    words = {"[UNK]": 0, "[PAD]": 1, "hello": 2, "world": 3}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(words, unk_token="[UNK]")),
                                        unk_token="[UNK]", pad_token="[PAD]", eos_token="[PAD]")
    tiny: dict[str, Any] = {"vocab_size": len(words), "hidden_size": 8, "intermediate_size": 16,
                            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16}
    global _warm_parent
    _warm_parent = os.getpid()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="zeroserve-warm-up-") as root:
        for name, model, kinds in (
            ("llama", LlamaForCausalLM(LlamaConfig(**tiny, num_key_value_heads=2)), (TextGenerator,)),
            ("bert-classifier", BertForSequenceClassification(BertConfig(**tiny)), (TextClassifier,)),
            ("bert", BertModel(BertConfig(**tiny)), (TextEncoder,)),
        ):
            directory = Path(root) / name
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
            for kind in kinds:
                warm = kind("warm-up", directory)
                warm.load()
                warm.exercise()
                warm.worker.shutdown()


class _Discard(BaseStreamer):
    def put(self, value: torch.Tensor) -> None:
        pass

    def end(self) -> None:
        pass


class HuggingFaceModel(kserve.Model):
    """A model directory loaded with transformers: the tokenizer, the model on its device."""

    auto_class: Any = AutoModel

    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.device = replica_device().type
        self.tokenizer: PreTrainedTokenizerBase
        self.model: Any = None
        self.context_length = 0
        # One worker: torch uses every core for one forward pass already; requests queue here.
        self.worker = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-model")

    def load(self) -> bool:
        transformers_logging.disable_progress_bar()  # a bar per load would be a dozen log records
        if not any((self.model_dir / name).is_file() for name in TOKENIZER_FILES):
            raise ModelLoadFailed(f"no tokenizer in {self.model_dir}: a Hugging Face model directory holds its "
                                  f"tokenizer's files as save_pretrained writes them ({', '.join(TOKENIZER_FILES)})")
        if os.getpid() != _warm_parent:  # a fork of the warm parent inherits its single thread: not for serving
            use_replica_threads()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
            dtype: Any = "auto"
            if self.device == "cpu" and getattr(config, "dtype", None) in HALF_PRECISION:
                dtype = torch.float32
            self.model = self.auto_class.from_pretrained(
                self.model_dir, config=config, dtype=dtype, device_map=self.device, local_files_only=True)
        except Exception as error:  # noqa: BLE001 - transformers fails in many ways; each means "cannot load"
            raise ModelLoadFailed(f"cannot load {self.model_dir}: {type(error).__name__}: {error}") from error
        self.model.eval()
        positions = getattr(self.model.config, "max_position_embeddings", None) or UNBOUNDED
        said = self.tokenizer.model_max_length if self.tokenizer.model_max_length < UNBOUNDED else UNBOUNDED
        self.context_length = min(positions, said)
        self.ready = True
        return self.ready

    def exercise(self) -> None:
        """Run the model once on a short text (``warm_up``)."""

    async def in_worker(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)


# --- text generation -------------------------------------------------------------------------------


class _TokensTo(BaseStreamer):
    """transformers' streamer hook: each new token's id, handed to the event loop as it is made."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[int | None]) -> None:
        self.loop, self.queue = loop, queue
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() hands the prompt first
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, token)

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class _Until(StoppingCriteria):
    """Stops a generation once ``stop`` is set: the caller left or a stop string was made."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


class Detokenizer:
    """Text of a growing list of token ids, a piece at a time: a token that ends inside a UTF-8
    character or merges with the next one waits for it (the prefix-offset method of TGI and vLLM).
    Stop strings are held back until it is known whether they complete."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.ids: list[int] = []
        self.prefix_offset = self.read_offset = 0
        self.held = ""  # decoded, not yet sent: it may be the start of a stop string

    def add(self, token: int) -> tuple[str, bool]:
        """The text that may be sent now, and whether a stop string was reached."""
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return "", False
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._release(self.held + after[len(before):])

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _release(self, text: str) -> tuple[str, bool]:
        for stop in self.stops:
            at = text.find(stop)
            if at >= 0:
                self.held = ""
                return text[:at], True
        keep = max((len(stop) - 1 for stop in self.stops), default=0)
        # Hold back the longest tail that could still grow into a stop string.
        cut = len(text)
        for size in range(min(keep, len(text)), 0, -1):
            if any(stop.startswith(text[-size:]) for stop in self.stops):
                cut = len(text) - size
                break
        self.held = text[cut:]
        return text[:cut], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class TextGenerator(HuggingFaceModel):
    """A causal LM: completions and chat completions through the OpenAI API (``openai_api.Generator``)."""

    auto_class = AutoModelForCausalLM
    serves_openai = True

    def encode_prompt(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if not self.tokenizer.chat_template:
            raise OpenAIError(400, f"the model `{self.name}` has no chat template (its tokenizer_config.json "
                              "or chat_template.jinja names none): use /openai/v1/completions", param="messages")
        try:
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        except Exception as error:  # noqa: BLE001 - a template that raises (e.g. roles it does not allow)
            raise OpenAIError(400, f"the chat template refused the messages: {error}", param="messages") from error
        # transformers 5 answers a BatchEncoding, 4.x a plain list of ids
        ids: Any = encoded["input_ids"] if hasattr(encoded, "keys") else encoded  # type: ignore[call-overload,index]
        return [int(token) for token in ids]

    async def generate(self, prompt_ids: list[int], sampling: Sampling, max_tokens: int) -> AsyncIterator[Piece]:
        """The generation's text piece by piece, as tokens are made; the last piece says why it ended."""
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[int | None] = asyncio.Queue()
        stop = threading.Event()
        done = loop.run_in_executor(self.worker, self._generate, prompt_ids, sampling, max_tokens,
                                    _TokensTo(loop, tokens), stop)
        done.add_done_callback(lambda _: tokens.put_nowait(None))  # also when generate() raised before end()
        text = Detokenizer(self.tokenizer, sampling.stops)
        made, stopped = 0, False
        try:
            while (token := await tokens.get()) is not None:
                made += 1
                piece, stopped = text.add(token)
                if stopped:
                    stop.set()
                if piece:
                    yield Piece(piece)
                if stopped:
                    break
            await done  # raises what the generation raised
        finally:
            stop.set()  # the caller left, or the answer is complete: the worker stops at the next token
        reason: Literal["stop", "length"] = "stop" if stopped or made < max_tokens else "length"
        yield Piece("" if stopped else text.flush(), reason, made)

    def exercise(self) -> None:
        self._generate(self.encode_prompt("hello world"), Sampling(model=self.name), 1, _Discard(), threading.Event())

    def _generate(self, prompt_ids: list[int], sampling: Sampling, max_tokens: int, streamer: BaseStreamer,
                  stop: threading.Event) -> None:
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        sample = sampling.temperature > 0
        options: dict[str, Any] = {"do_sample": sample}
        if sample:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        ids = torch.tensor([prompt_ids], device=self.model.device)
        try:
            with torch.inference_mode():
                self.model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, min_new_tokens=0,
                    streamer=streamer, stopping_criteria=StoppingCriteriaList([_Until(stop)]),
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id, **options)
        except Exception as error:
            _exit_if_out_of_gpu_memory(error)
            raise


def _exit_if_out_of_gpu_memory(error: BaseException) -> None:
    """In a worker thread no handler of the app sees the error: a GPU out of memory ends the replica here."""
    if faults.is_gpu_out_of_memory(error):
        faults.exit_out_of_gpu_memory(error)


# --- embeddings --------------------------------------------------------------------------------------


class TextEncoder(HuggingFaceModel):
    """A text encoder: embeddings through the OpenAI API (``openai_api.Encoder``), pooled and
    normalised as a sentence-transformers directory says."""

    serves_openai = True

    def load(self) -> bool:
        super().load()
        pooling_file = self.model_dir / "1_Pooling" / "config.json"
        pooling = json.loads(pooling_file.read_text()) if pooling_file.is_file() else {}
        self.cls_pooling = bool(pooling.get("pooling_mode_cls_token")) and not pooling.get("pooling_mode_mean_tokens")
        modules_file = self.model_dir / "modules.json"
        modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
        self.normalize = any(str(module.get("type", "")).endswith("Normalize") for module in modules)
        return self.ready

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts)["input_ids"]]

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self.in_worker(self._embed, texts)

    def exercise(self) -> None:
        self._embed(["hello world"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.model.device)
        try:
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
        except Exception as error:
            _exit_if_out_of_gpu_memory(error)
            raise
        if self.cls_pooling:
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()


# --- classification ----------------------------------------------------------------------------------


class TextClassifier(HuggingFaceModel):
    """A sequence classifier: texts in through V1 (``{"instances": ["..."]}``) or V2 (a BYTES
    tensor), each text's label (``id2label``) out."""

    auto_class = AutoModelForSequenceClassification

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None
                      ) -> dict | InferResponse:
        texts = get_predict_input(payload)
        texts = [text.decode() if isinstance(text, bytes) else text for text in np.asarray(texts).reshape(-1).tolist()]
        if not texts or not all(isinstance(text, str) for text in texts):
            raise InvalidInput("a text classifier takes a list of strings (V1 instances, or a V2 BYTES tensor)")
        labels = await self.in_worker(self._classify, texts)
        return get_predict_response(payload, np.array(labels, dtype=object), self.name)

    def exercise(self) -> None:
        self._classify(["hello world"])

    def _classify(self, texts: list[str]) -> list[str]:
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.model.device)
        try:
            with torch.inference_mode():
                best = self.model(**batch).logits.argmax(-1).tolist()
        except Exception as error:
            _exit_if_out_of_gpu_memory(error)
            raise
        names = self.model.config.id2label
        return [str(names.get(index, index)) for index in best]
