"""The query side as files any language can read, and a conformance pack that proves a port exact.

A query side is one JSON document, the same on disk (`query-side.json`) and in the cluster (a
document of `splade-query-sides`, `_id` = the model's query hash; `splade_os.models.registry`):

- `tokenizer_json`: the `tokenizer.json` text (Hugging Face `tokenizers` format);
- `query_table`: base64 of float32 little-endian, one weight per token id;
- `max_length`: the truncation length of a query's token ids (null: none);
- `key_escape`: how a token becomes a feature key; `hash`, `name`: which model.

A query is built in six steps (docs/apps.md says them for porters):

1. refuse text that is not valid Unicode (an unpaired surrogate);
2. token ids = the tokenizer's encoding of the text without special tokens (added tokens such as
   `[MASK]` are matched inside the text), the first `max_length` of them;
3. each DISTINCT id once (a repeated token counts once);
4. its weight = table[id] as float32; ids whose weight is 0 are dropped (negative ones are kept
   in the features);
5. its key = the token string with "%" -> "%25", then "." -> "%2E";
6. the body: positive weights only, highest first, ties by token id, at most `max_clauses`; on
   OpenSearch a `bool.should` of `rank_feature` clauses (`field.key`, `boost` = weight, `linear`),
   on Elasticsearch of boosted `term` clauses on the field; no term at all: `match_none`.

`write_pack` writes `query-side.json`, the `tokenizer.json`, and `conformance.jsonl`: one line per
query, `{"text", "ids", "features", "max_clauses", "size", "field", "bodies": {"opensearch",
"elasticsearch"}}` exactly as `QueryEncoder.encode` and `to_dsl` give them, or `{"text", "error"}`
for text that must be refused. Weights are written as the float32's exact value (the shortest
decimal of the double it widens to), so a port compares them once parsed as float32.
"""

import base64
import json
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

from splade_os.common.errors import InputError
from splade_os.common.files import staged_dir
from splade_os.query.bodies import DEFAULT_FIELD
from splade_os.query.engine import ENGINES

KEY_ESCAPE = "'%' -> '%25', then '.' -> '%2E'"
TABLE_FORMAT = "float32 little-endian, one weight per token id, base64"
QUERY_SIDE_FILE, CONFORMANCE_FILE = "query-side.json", "conformance.jsonl"
PACK_VERSION = 1
DATA = Path(__file__).resolve().parent.parent / "data"  # the bundled queries and hard cases
# Small caps on some queries, so a port's clause cap (and its tie-break by token id) is checked too.
CAPS = (1024, 3, 1)


def query_side_document(encoder) -> dict:
    """The query side of a `QueryEncoder` as one JSON document (stored in the cluster and in packs)."""
    return {
        "hash": encoder.hash,
        "name": encoder.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tokenizer_json": encoder.tokenizer.to_str(),
        "max_length": encoder.max_length,
        "query_table": base64.b64encode(encoder.table.astype("<f4").tobytes()).decode("ascii"),
        "query_table_format": TABLE_FORMAT,
        "key_escape": KEY_ESCAPE,
    }


def hard_cases() -> List[str]:
    """The hand-made texts every port must get right (accents, CJK, emoji, control characters,
    punctuation, dotted and % tokens, added tokens, repeats, empty, too long, invalid Unicode)."""
    return read_texts(DATA / "query-cases.jsonl")


def read_texts(path: Path) -> List[str]:
    """Query texts of a JSONL file (BEIR's queries.jsonl: a "text" per line)."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    texts.append(json.loads(line)["text"])
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"{path}:{number}: expected a JSON object with a \"text\"") from None
    return texts


def expectations(encoder, texts: Iterable[str], field: str = DEFAULT_FIELD, size: int = 10) -> Iterator[dict]:
    """One conformance record per text (see the module docstring); the caps cycle over `CAPS`."""
    for number, text in enumerate(texts):
        try:
            ids = encoder.token_ids(text)
        except InputError as e:
            yield {"text": text, "error": str(e)}
            continue
        cap = CAPS[number % len(CAPS)]
        with warnings.catch_warnings():  # negative weights and clause caps are expected here
            warnings.simplefilter("ignore")
            bodies = {name: encoder.to_dsl(text, name, field=field, size=size, max_clauses=cap) for name in ENGINES}
        yield {"text": text, "ids": ids, "features": encoder.encode(text), "max_clauses": cap, "size": size,
               "field": field, "bodies": bodies}


def write_pack(encoder, directory, texts: Optional[Iterable[str]], overwrite: bool = False) -> Path:
    """Write a conformance pack for `encoder`'s query side into `directory` (see the module docstring);
    `texts` None: the query side alone.

    Returns:
        The folder written (atomically: a failed write leaves nothing).
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        if not (directory / QUERY_SIDE_FILE).exists():
            raise InputError(f"{directory}: exists and is not a query-side pack; write into a new folder")
        raise InputError(f"{directory}: holds a pack already; write into a new folder, or replace it with --overwrite")
    with staged_dir(directory, replace=True) as staging:
        side = query_side_document(encoder)
        side["pack_version"] = PACK_VERSION
        (staging / QUERY_SIDE_FILE).write_text(json.dumps(side), encoding="utf-8")
        (staging / "tokenizer.json").write_text(side["tokenizer_json"], encoding="utf-8")
        if texts is None:
            return directory
        with open(staging / CONFORMANCE_FILE, "w", encoding="utf-8") as out:
            for record in expectations(encoder, texts):
                # ensure_ascii: a text holding an unpaired surrogate is written as its JSON escape.
                out.write(json.dumps(record, ensure_ascii=True) + "\n")
    return directory


def load_side(path) -> "object":
    """A `QueryEncoder` from a `query-side.json` (or a folder holding one): what ports read, read back."""
    from tokenizers import Tokenizer

    import numpy as np

    from splade_os.query.encoder import QueryEncoder

    path = Path(path)
    if path.is_dir():
        path = path / QUERY_SIDE_FILE
    try:
        side = json.loads(path.read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_str(side["tokenizer_json"])
        table = np.frombuffer(base64.b64decode(side["query_table"]), dtype="<f4").astype(np.float32)
    except Exception as e:  # noqa: BLE001 - OSError, bad JSON or base64, a missing key, or the tokenizers library's own
        raise InputError(f"{path}: not a splade-os query side ({str(e).splitlines()[0] if str(e) else e})") from None
    return QueryEncoder(tokenizer, table, side.get("name", ""), side.get("max_length"), str(path))


def default_texts(extra: Optional[List[Path]] = None) -> List[str]:
    """The bundled pack's texts: the bundled Cranfield queries, the hard cases, and `extra` files."""
    texts = read_texts(DATA / "cranfield" / "queries.jsonl") + hard_cases()
    for path in extra or []:
        texts += read_texts(path)
    return texts


def answer(encoder, request: dict, field: Optional[str] = None) -> dict:
    """What a query port answers to one request line (`scripts/query-port`): `{"text", optional
    "max_clauses" (1024), "size" (10), "field" (`field`, else "splade")}` -> `{"features", "bodies"}`
    or `{"error"}`."""
    text = request.get("text") if isinstance(request, dict) else None
    if not isinstance(text, str):
        return {"error": 'expected a JSON object with a "text" string'}
    field, size = request.get("field", field or DEFAULT_FIELD), request.get("size", 10)
    cap = request.get("max_clauses", 1024)
    try:
        features = encoder.encode(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bodies = {name: encoder.to_dsl(text, name, field=field, size=size, max_clauses=cap) for name in ENGINES}
    except InputError as e:
        return {"error": str(e)}
    return {"features": features, "bodies": bodies}


def serve(encoder, lines: Iterable[str], write, field: Optional[str] = None) -> None:
    """Answer JSON request lines one by one (`answer`), each answer a line given to `write`."""
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as e:
            reply = {"error": f"not a JSON line ({e})"}
        else:
            reply = answer(encoder, request, field)
        write(json.dumps(reply) + "\n")  # ASCII: a key such as U+2028 stays on its line
