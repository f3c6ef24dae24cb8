"""A multiple-choice task stories260K can actually do: pick the true next sentence of a TinyStories
paragraph among it and sentences drawn from other paragraphs. bench/alignment.py uses the engine's
`gisp.data.next_sentence` and falls back to this one only where the engine predates it."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SENTENCE_END = re.compile(r'(?<=[.!?])\s+|(?<=[.!?]")\s+')


def sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(paragraph.strip()) if s.strip()]


def build_items(text: str, count: int, choices: int = 4, seed: int = 0, min_context: int = 2) -> list[dict]:
    """`count` items {"context", "choices", "answer"}: the context is the first k ≥ `min_context`
    sentences of a paragraph, the answer its sentence k, the distractors sentences of other
    paragraphs; the answer's position is random."""
    rng = random.Random(seed)
    paragraphs = [sentences(p) for p in text.split("\n\n")]
    usable = [i for i, p in enumerate(paragraphs) if len(p) > min_context]
    pool = [(i, s) for i, p in enumerate(paragraphs) for s in p]
    rng.shuffle(usable)
    items = []
    for index in usable[:count]:
        paragraph = paragraphs[index]
        k = rng.randrange(min_context, len(paragraph))
        distractors: list[str] = []
        while len(distractors) < choices - 1:
            other, sentence = rng.choice(pool)
            if other != index and sentence not in distractors and sentence != paragraph[k]:
                distractors.append(sentence)
        answer = rng.randrange(choices)
        options = distractors[:answer] + [paragraph[k]] + distractors[answer:]
        items.append({"context": " ".join(paragraph[:k]), "choices": options, "answer": answer})
    return items


def write_items(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path
