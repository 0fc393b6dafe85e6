"""What ``bench/gpu.sh`` measures on a machine with an NVIDIA GPU: a causal LM of about 1B parameters
(Llama 3.2 1B's shape, random weights, bf16 safetensors at real size, made here) deployed with a
GPU plan, from zero to its first streamed token through the gateway, next to a fresh process that
does ``from_pretrained(...).to("cuda")`` and makes one token; and tokens per second streamed
through the gateway next to straight from the replica. Goal: zero -> first token <= 1 s (p50).

    python -m bench.gpu [--tiny] [--trials N]     (bench/gpu.sh sets the environment up)
    python -m bench.gpu --wheels DIR              (the wheels a GPU machine without them needs)

``--tiny`` runs the same steps with the tests' tiny LM on the CPU plan: how this script is tested
on a machine without a GPU. Prints a table and writes bench/gpu-results.json (a dry run:
gpu-results-tiny.json), with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "gpu-results.json"
GPU_PLAN, CPU_PLAN = "infer.s", "starter"

# Llama 3.2 1B's shape: 1.24 B parameters, 2.5 GB in bf16.
ONE_B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
         "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 4096,
         "tie_word_embeddings": True}


# What a GPU machine's Python has already (torch, transformers and what they bring), and the CPU
# runtimes' frameworks, which serving an LLM does not need: no wheel of these is carried.
ON_THE_GPU_MACHINE = frozenset({
    "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "numpy", "pyyaml", "filelock", "fsspec",
    "jinja2", "markupsafe", "networkx", "sympy", "mpmath", "typing-extensions", "packaging", "regex", "requests",
    "tqdm", "urllib3", "idna", "certifi", "charset-normalizer", "setuptools", "hf-xet", "triton"})
# kserve requires pillow and grpcio-tools but imports neither when it serves (image inputs, gRPC code
# generation); left out with the CPU runtimes' frameworks, the wheels fit in 64 MiB.
NOT_NEEDED_TO_SERVE = frozenset({
    "scikit-learn", "scipy", "onnxruntime", "xgboost-cpu", "lightgbm", "joblib", "threadpoolctl", "kserve-storage",
    "pillow", "grpcio-tools"})


def make_1b(directory: Path) -> Path:
    """A 1B-parameter Llama with random weights, saved as bf16 safetensors, with the tests' tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(HERE.parent / "tests"))
    from language_models import make_tokenizer

    tokenizer = make_tokenizer(directory)
    config = LlamaConfig(**ONE_B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # made in bf16 at once: 2.5 GB, not 5 GB of float32 first
    try:
        LlamaForCausalLM(config).save_pretrained(directory)
    finally:
        torch.set_default_dtype(torch.float32)
    return directory


FRESH_CUDA = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16).to("cuda")
chat = json.loads(sys.argv[2])
ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")["input_ids"].to("cuda")
model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id)
print("token", flush=True)
"""


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu,
            "cpus": len(__import__("os").sched_getaffinity(0))}


async def measure(tiny: bool, trials: int, tokens: int) -> list[dict[str, Any]]:
    from bench.__main__ import p, result, started
    from bench.llm import FRESH_LM, deploy, first_token_ms, fresh_process, tokens_per_s
    from zeroserve.backends.local import LocalBackend
    from zeroserve.settings import Settings

    with tempfile.TemporaryDirectory(prefix="zeroserve-gpu-") as tmp:
        settings = Settings(data_dir=Path(tmp), gateway_port=0, idle_window_s=3600)
        sources = settings.data_dir / "sources"
        print("making the model", file=sys.stderr)
        if tiny:
            sys.path.insert(0, str(HERE.parent / "tests"))
            from language_models import make_tiny_causal_lm

            model_dir, fresh = make_tiny_causal_lm(sources / "llm"), FRESH_LM
        else:
            model_dir, fresh = make_1b(sources / "llm"), FRESH_CUDA
        zeroserve, client = await started(settings)
        platform_ = zeroserve.platform
        assert platform_ is not None and isinstance(platform_.backend, LocalBackend)
        cold, fresh_ms, speed = [], [], {"gateway": [], "direct": []}
        forks = None
        try:
            url = await deploy(zeroserve, "llm-1b", model_dir, "huggingface",
                               resourcePlan=CPU_PLAN if tiny else GPU_PLAN)
            forks = platform_.backend.autoscaler.fork_server("huggingface")
            if forks is not None:  # a replica asked for before it is ready would be spawned
                await asyncio.wait_for(forks.wait_ready(), 300)
            for trial in range(trials):
                print(f"cold start {trial + 1}/{trials}", file=sys.stderr)
                await platform_.backend.scale_to_zero("default", "llm-1b")
                cold.append((await first_token_ms(client, url, "llm-1b"))[0])
                fresh_ms.append(await fresh_process(fresh, model_dir))
            [replica] = platform_.backend.services["default", "llm-1b"].replicas
            for _ in range(3):
                speed["gateway"].append(await tokens_per_s(client, url, "llm-1b", tokens))
                speed["direct"].append(await tokens_per_s(client, replica.url, "llm-1b", tokens))
        finally:
            await client.aclose()
            await zeroserve.stop()
    ratio = p(speed["gateway"], 50) / p(speed["direct"], 50)
    how = {"gpu_forks": bool(forks and forks.gpu_forks)}  # False: GPU replicas were spawned, not forked
    return [
        result("gpu_llm_cold_start_ttft_ms", p(cold, 50), "ms", p(fresh_ms, 50), "<= 1000", p(cold, 50) <= 1000,
               samples_ms={"zeroserve": [round(c, 1) for c in cold], "fresh": [round(f, 1) for f in fresh_ms]},
               **how),
        result("gpu_llm_stream_tokens_per_s", p(speed["gateway"], 50), "tokens/s", p(speed["direct"], 50),
               ">= 0.9 of direct", ratio >= 0.9),
    ]


def wheels(directory: Path) -> int:
    """Download, for CPython 3.12 on x86-64, the wheels of what zeroserve needs at run time besides
    torch, transformers and what they bring (a GPU machine has those), and the frameworks of the
    CPU runtimes (not needed to serve an LLM): what bench/gpu.sh installs where they are missing."""
    import importlib.metadata as metadata

    from packaging.requirements import Requirement

    left_out = ON_THE_GPU_MACHINE | NOT_NEEDED_TO_SERVE
    pins: dict[str, str] = {}

    def walk(name: str, extras: tuple[str, ...] = ("",)) -> None:
        key = name.lower().replace("_", "-")
        if key in pins or key in left_out or key.startswith("nvidia-"):
            return
        try:
            distribution = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            return
        pins[key] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras):
                walk(requirement.name)

    walk("zeroserve", ("", "server", "torch"))  # the platform and the torch runtimes are extras
    walk("accelerate")
    pins.pop("zeroserve", None)
    directory.mkdir(parents=True, exist_ok=True)
    requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
    (directory / "requirements.txt").write_text("\n".join(requirements) + "\n")
    platforms = [arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
                 for arg in ("--platform", tag)]
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                           "--python-version", "3.12", *platforms, "-d", str(directory), *requirements])
    size = sum(path.stat().st_size for path in directory.glob("*.whl"))
    print(f"{len(requirements)} wheels, {size / 2**20:.1f} MiB in {directory}", file=sys.stderr)
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny LM on the CPU: a dry run")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per streamed answer for tokens/s")
    parser.add_argument("--wheels", type=Path, help="download the wheels a GPU machine needs into this folder")
    args = parser.parse_args()
    if args.wheels is not None:
        return wheels(args.wheels)
    from bench.__main__ import show
    from zeroserve.node import run

    started = time.monotonic()
    rows = run(measure(args.tiny, args.trials, min(args.tokens, 100) if args.tiny else args.tokens))
    show(rows)
    written = RESULTS.with_name("gpu-results-tiny.json") if args.tiny else RESULTS  # a dry run is no GPU figure
    written.write_text(json.dumps({"machine": machine(), "seconds": round(time.monotonic() - started),
                                   "rows": rows}, indent=2) + "\n")
    print(f"written to {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
