"""The tokenizer as llama.cpp's own converter (convert_hf_to_gguf.py) writes it, with the helpers
the `gguf` package publishes (`SentencePieceVocab`, `SpecialVocab`):

* a sentencepiece `tokenizer.model` (Llama-2 style, e.g. stories260K): tokenizer model "llama",
  pre-tokenizer "default", pieces with their scores and types;
* a byte-level BPE `tokenizer.json` (GPT-2 / SmolLM2 style): tokenizer model "gpt2", the tokens in
  id order with their types (an added special token is CONTROL, another added token USER_DEFINED),
  the merges, and the pre-tokenizer name that selects llama.cpp's splitting regex.

Ids the tokenizer does not cover up to the model's vocab_size become unused `[PAD<i>]` tokens.
Special token ids, add_bos/add_eos and the chat template come from `SpecialVocab`.

llama.cpp's converter names the pre-tokenizer by hashing the tokens of a test text against its
table of known models; here the name comes from the structure of `tokenizer.json`'s pre_tokenizer
(the splitting llama.cpp must reproduce), for the shapes listed in `BPE_PRE_TOKENIZERS`. Another
shape is refused unless the caller names llama.cpp's pre-tokenizer (`tokenizer_pre`). The same
table restores the splitting of a GGUF base model, whose transformers conversion keeps only
GPT-2's (see `gisp.gguf_input`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gisp.exporters.base import ExportError

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_DIGITS = {"type": "Digits", "individual_digits": True}

# llama.cpp pre-tokenizer name -> the tokenizer.json pre_tokenizer steps whose splitting it reproduces
BPE_PRE_TOKENIZERS: dict[str, list[dict[str, Any]]] = {
    "gpt2": [_BYTE_LEVEL],  # GPT-2's regex
    "smollm": [_DIGITS, _BYTE_LEVEL],  # every digit alone, then GPT-2's regex
}
_OFFSETS_ONLY = {"trim_offsets"}  # fields that change offsets, not tokens


def pre_tokenizer_json(name: str) -> dict[str, Any] | None:
    """The tokenizer.json pre_tokenizer for llama.cpp pre-tokenizer `name` (None if not known)."""
    steps = BPE_PRE_TOKENIZERS.get(name)
    if steps is None:
        return None
    return dict(steps[0]) if len(steps) == 1 else {"type": "Sequence", "pretokenizers": [dict(s) for s in steps]}


def _steps(pre_tokenizer: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        return list(pre_tokenizer.get("pretokenizers", []))
    return [pre_tokenizer]


def bpe_pre_name(tokenizer_json: dict[str, Any]) -> str:
    steps = _steps(tokenizer_json.get("pre_tokenizer"))

    def matches(step: dict[str, Any], want: dict[str, Any]) -> bool:
        return all(step.get(key) == value for key, value in want.items() if key not in _OFFSETS_ONLY)

    for name, pattern in BPE_PRE_TOKENIZERS.items():
        if len(steps) == len(pattern) and all(map(matches, steps, pattern)):
            return name
    raise ExportError(
        f"llama.cpp has no known pre-tokenizer for this tokenizer.json pre_tokenizer {json.dumps(steps)[:200]}; "
        f"known: {', '.join(BPE_PRE_TOKENIZERS)}. Name llama.cpp's pre-tokenizer with --tokenizer-pre if you know it",
        field="tokenizer_pre",
    )


def _sentencepiece(folder: Path, vocab_size: int) -> tuple[list[bytes], list[float], list[int]]:
    try:
        import gguf

        vocab = gguf.SentencePieceVocab(folder)
    except RuntimeError as exc:  # the gguf package says "sentencepiece is not installed"
        raise ExportError(f"{exc}: pip install 'gisp-service[gguf]'", field="checkpoint") from None
    tokens: list[bytes] = []
    scores: list[float] = []
    types: list[int] = []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(int(kind))
    return _padded(tokens, types, vocab_size, scores)


def _padded(
    tokens: list[bytes], types: list[int], vocab_size: int, scores: list[float] | None = None
) -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    if len(tokens) > vocab_size:
        raise ExportError(f"the tokenizer has {len(tokens)} tokens, more than vocab_size {vocab_size}")
    scores = list(scores) if scores is not None else [0.0] * len(tokens)
    for index in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{index}]".encode())
        scores.append(-1000.0)
        types.append(int(gguf.TokenType.UNUSED))
    return tokens, scores, types


def _byte_level_bpe(tokenizer_json: dict[str, Any], vocab_size: int) -> tuple[list[bytes], list[int]]:
    import gguf

    by_id: dict[int, str] = {index: token for token, index in tokenizer_json["model"]["vocab"].items()}
    kinds = {index: int(gguf.TokenType.NORMAL) for index in by_id}
    for added in tokenizer_json.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        kinds[added["id"]] = int(gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
    if max(by_id) >= vocab_size:
        raise ExportError(f"tokenizer id {max(by_id)} is outside the model's vocab_size {vocab_size}")
    tokens, types = [], []
    for index in range(vocab_size):
        if index in by_id:
            tokens.append(by_id[index].encode("utf-8"))
            types.append(kinds[index])
        else:
            tokens.append(f"[PAD{index}]".encode())
            types.append(int(gguf.TokenType.UNUSED))
    return tokens, types


@contextmanager
def _quiet_gguf_vocab() -> Iterator[None]:
    """SpecialVocab warns about post-processor templates it only half parses (e.g. a pair template
    repeating BOS); the fields it writes are the same as llama.cpp's converter's, so keep it quiet."""
    logger = logging.getLogger("gguf.vocab")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _special_vocab(writer: Any, folder: Path, n_vocab: int, merges: bool, bpe: bool = False) -> None:
    import gguf

    with _quiet_gguf_vocab():
        special = gguf.SpecialVocab(folder, load_merges=merges, n_vocab=n_vocab)
    if bpe:  # a BPE tokenizer.json that adds no BOS/EOS says so by omission; llama.cpp is told explicitly
        special.add_special_token.setdefault("bos", False)
        special.add_special_token.setdefault("eos", False)
    special.add_to_gguf(writer, quiet=True)


def add_tokenizer(writer: Any, folder: Path, vocab_size: int, tokenizer_pre: str | None = None) -> str:
    """Write the folder's tokenizer into `writer` (a `gguf.GGUFWriter`); return what was written
    ("sentencepiece" or "bpe:<pre>")."""

    tokenizer_file = folder / "tokenizer.json"
    if (folder / "tokenizer.model").is_file():
        tokens, scores, types = _sentencepiece(folder, vocab_size)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        _special_vocab(writer, folder, len(tokens), merges=False)
        return "sentencepiece"
    if not tokenizer_file.is_file():
        raise ExportError(f"{folder} has neither tokenizer.model nor tokenizer.json", field="checkpoint")
    tokenizer_json = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    model = tokenizer_json.get("model", {})
    decoder = (tokenizer_json.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        if model.get("type") == "BPE" and model.get("byte_fallback"):
            why = "a sentencepiece-style BPE tokenizer.json; llama.cpp needs its tokenizer.model beside it"
        else:
            why = f"a {model.get('type')} tokenizer (llama.cpp reads sentencepiece or byte-level BPE)"
        raise ExportError(f"{folder}: cannot write {why}", field="checkpoint")
    pre = tokenizer_pre or bpe_pre_name(tokenizer_json)
    tokens, types = _byte_level_bpe(tokenizer_json, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    _special_vocab(writer, folder, len(tokens), merges=True, bpe=True)
    return f"bpe:{pre}"
