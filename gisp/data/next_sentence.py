"""A multiple-choice task a TinyStories model can actually do: pick a story's true next sentence.

Each item: context = the first few sentences of a paragraph, choices = the sentence that follows
plus sentences drawn from other paragraphs, answer = the true one's (shuffled) position. Everything
is seeded, and `part` picks a slice of the paragraphs, so disjoint calibration (`margin` objective)
and evaluation sets come from one file. Paragraphs (blank-line blocks) stand in for stories, whose
boundaries the file does not keep.

    python -m gisp.data.next_sentence TEXT OUT --items 500 --seed 0 --part 0.5:1
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from gisp.errors import DataFormatError

_SENTENCE_END = re.compile(r'(?:(?<=[.!?])|(?<=[.!?]["”]))\s+')
MIN_WORDS = 3


def sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph (split after . ! ? and a closing quote), whitespace-normalized."""
    flat = " ".join(paragraph.split())
    return [s for s in _SENTENCE_END.split(flat) if s]


def build_items(
    text: str,
    items: int,
    context_sentences: int = 3,
    num_choices: int = 4,
    seed: int = 0,
    part: tuple[float, float] = (0.0, 1.0),
) -> list[dict]:
    """Up to `items` records `{"context", "choices", "answer"}` from the paragraphs in `part`."""
    paragraphs = [p for p in (sentences(block) for block in text.split("\n\n")) if p]
    lo, hi = (int(round(f * len(paragraphs))) for f in part)
    paragraphs = paragraphs[lo:hi]
    usable = [
        i
        for i, p in enumerate(paragraphs)
        if len(p) > context_sentences and len(p[context_sentences].split()) >= MIN_WORDS
    ]
    pool = [(i, s) for i, p in enumerate(paragraphs) for s in p[1:] if len(s.split()) >= MIN_WORDS]
    if not usable or len(pool) < num_choices:
        raise DataFormatError(
            f"the text has too few paragraphs of more than {context_sentences} sentences", field="data"
        )
    rng = random.Random(seed)
    chosen = rng.sample(usable, min(items, len(usable)))
    out = []
    for index in chosen:
        paragraph = paragraphs[index]
        truth = paragraph[context_sentences]
        distractors: list[str] = []
        while len(distractors) < num_choices - 1:
            other, sentence = pool[rng.randrange(len(pool))]
            if other != index and sentence != truth and sentence not in distractors:
                distractors.append(sentence)
        answer = rng.randrange(num_choices)
        choices = distractors[:answer] + [truth] + distractors[answer:]
        out.append({"context": " ".join(paragraph[:context_sentences]), "choices": choices, "answer": answer})
    return out


def write_items(path: str | Path, records: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _part(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    bounds = (float(lo or 0), float(hi or 1))
    if not 0 <= bounds[0] < bounds[1] <= 1:
        raise argparse.ArgumentTypeError(f"part must be START:END with 0 <= START < END <= 1, not {text!r}")
    return bounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gisp.data.next_sentence", description=__doc__.split("\n")[0])
    parser.add_argument("text", help="plain-text stories (.txt)")
    parser.add_argument("out", help="output .jsonl")
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--context-sentences", type=int, default=3)
    parser.add_argument("--choices", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", type=_part, default=(0.0, 1.0), help="slice of the paragraphs, e.g. 0:0.5")
    args = parser.parse_args(argv)
    text = Path(args.text).read_text(encoding="utf-8")
    records = build_items(text, args.items, args.context_sentences, args.choices, args.seed, args.part)
    write_items(args.out, records)
    print(f"{len(records)} items -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
