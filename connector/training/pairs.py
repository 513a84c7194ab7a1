"""Self-supervised training pairs from a corpus alone: no test query is ever used.

Four constructions, each giving `query`, `positive` and `positive_id` (the source document):

- "lead": the title when the document has one (as "title"), else its first few words (a
  random 4-10) as the query and the rest as the positive. Abstract collections without a title
  field run the title into the text (Vaswani's documents start "compact memories have flexible
  capacities a digital data storage system..."), so the leading words stand in for it.
- "title": the title as the query, the text (less a leading copy of the title) as the
  positive. Needs titles (Vaswani has none), and titles share most of their words with their
  abstracts: in-batch negatives are then trivially easy to rank (issue #15).
- "ict" (inverse cloze task, Lee et al. 2019): a random span of a few words, query-sized, is the
  query; the document WITHOUT that span is the positive. The query's words are not copied into
  the positive, so the model has to rank by topic, not by string match. Works with or without
  titles.
- "crop" (independent cropping, as Contriever): query and positive are two independent random
  spans of the document (the positive covers half of it or more); they may overlap.

Kinds combine with "+" ("lead+ict"): each document gives one pair of each kind, so there are
more and more varied training queries for the same corpus (useful with a teacher, which labels
whatever the query is). Spans are drawn from a generator seeded per document id, so pairs are
the same on every run and do not depend on the corpus order. The measured choice between them
is in docs/training.md.
"""

import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from splade_os.common.errors import InputError

PAIR_KINDS = ("lead", "ict", "crop", "title")


@dataclass
class SpanSettings:
    """How long the query spans are (in whitespace words) and how long a document must be.

    Attributes:
        query_min, query_max: query length range; real queries of the test collections are
            11-18 words on average (Cranfield 18.0, Vaswani 10.9).
        min_words: documents shorter than this give no pair (too little left to rank on).
        crop_min_ratio: with "crop", the positive covers at least this share of the document.
        lead_max: with "lead", the longest leading query (titles of abstracts are short).
    """

    query_min: int = 4
    query_max: int = 16
    min_words: int = 16
    crop_min_ratio: float = 0.5
    lead_max: int = 10


def _rng(seed: int, doc_id: str) -> random.Random:
    return random.Random(zlib.crc32(doc_id.encode("utf-8")) ^ (seed * 0x9E3779B1))


def ict_pair(words: List[str], rng: random.Random, spans: SpanSettings) -> Tuple[str, str]:
    """(query span, document without the span) for one document's words."""
    length = rng.randint(spans.query_min, min(spans.query_max, len(words) // 3))
    start = rng.randrange(0, len(words) - length + 1)
    return " ".join(words[start:start + length]), " ".join(words[:start] + words[start + length:])


def crop_pair(words: List[str], rng: random.Random, spans: SpanSettings) -> Tuple[str, str]:
    """(query span, independent positive span) for one document's words."""
    length = rng.randint(spans.query_min, min(spans.query_max, len(words) // 3))
    start = rng.randrange(0, len(words) - length + 1)
    size = rng.randint(max(1, int(len(words) * spans.crop_min_ratio)), len(words))
    first = rng.randrange(0, len(words) - size + 1)
    return " ".join(words[start:start + length]), " ".join(words[first:first + size])


def lead_pair(words: List[str], rng: random.Random, spans: SpanSettings) -> Tuple[str, str]:
    """(the first few words, the rest) of a document without a title."""
    length = rng.randint(spans.query_min, min(spans.lead_max, len(words) // 3))
    return " ".join(words[:length]), " ".join(words[length:])


def title_pair(title: str, text: str) -> Optional[Tuple[str, str]]:
    """(title, text less a leading copy of the title), or None when the document has no usable title."""
    title, text = title.strip(), text.strip()
    # Abstracts often repeat the title as their first sentence (Cranfield's do): without that copy
    # the pair is at least not a pure string match.
    if text.lower().startswith(title.lower()):
        text = text[len(title):].lstrip(" .:;-")
    if title and len(text.split()) >= 5:
        return title, text
    return None


def pair_kinds(kind: str) -> List[str]:
    """The kinds of a `--pairs` value ("lead", or several joined by "+": "lead+ict").

    Raises:
        InputError: an unknown or repeated kind.
    """
    kinds = [k.strip() for k in kind.split("+")]
    for k in kinds:
        if k not in PAIR_KINDS:
            raise InputError(f"pairs {kind!r}: {k!r} is not one of {', '.join(PAIR_KINDS)} (combine kinds with '+')")
    if len(set(kinds)) < len(kinds):
        raise InputError(f"pairs {kind!r}: a kind is repeated")
    return kinds


def _document_pair(doc, kind: str, seed: int, spans: SpanSettings) -> Optional[Tuple[str, str]]:
    if kind == "title" or (kind == "lead" and doc.title.strip()):
        return title_pair(doc.title, doc.text)
    if kind == "lead":
        words = doc.text.split()
        return lead_pair(words, _rng(seed, doc.id), spans) if len(words) >= 3 * spans.query_min else None
    words = doc.content.split()
    if len(words) < max(spans.min_words, 3 * spans.query_min):
        return None
    make = ict_pair if kind == "ict" else crop_pair
    return make(words, _rng(seed, doc.id), spans)


def corpus_pairs(corpus: Path, kind: str = "lead", seed: int = 42, spans: Optional[SpanSettings] = None):
    """Self-supervised pairs of a JSONL corpus as a `datasets.Dataset`.

    Args:
        corpus: the corpus file (BEIR fields `_id`, `title`, `text`).
        kind: "lead", "ict", "crop" or "title" (see the module docstring), or several joined by
            "+" ("lead+ict"): one pair of each kind per document, in that order.
        seed: the spans' seed.
        spans: span lengths (`SpanSettings()` by default).

    Returns:
        A Dataset with columns `query`, `positive`, `positive_id`; a row per usable document and kind.

    Raises:
        InputError: unknown kind, no such corpus, or no document gave a pair.
    """
    import datasets

    from splade_os.corpus.jsonl import Document, read_corpus

    kinds = pair_kinds(kind)
    corpus = Path(corpus)
    if not corpus.is_file():
        raise InputError(f"{corpus}: no such file (a BEIR folder has corpus.jsonl)")
    spans = spans or SpanSettings()
    rows: Dict[str, list] = {"query": [], "positive": [], "positive_id": []}
    for doc in read_corpus(corpus):
        if not isinstance(doc, Document):
            continue
        for k in kinds:
            pair = _document_pair(doc, k, seed, spans)
            if pair:
                rows["query"].append(pair[0])
                rows["positive"].append(pair[1])
                rows["positive_id"].append(doc.id)
    if not rows["query"]:
        why = "no document has a title" if kinds == ["title"] else f"no document has {spans.min_words} words or more"
        raise InputError(f"{corpus}: no {kind!r} training pairs could be built ({why})")
    return datasets.Dataset.from_dict(rows)
