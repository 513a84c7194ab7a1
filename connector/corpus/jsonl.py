"""Reading JSONL corpora line by line, and keeping what cannot be indexed.

A corpus is never loaded whole: `read_corpus` yields one `Document` or one `Rejected` per
line, in file order, with the 1-based line number, so that a bad line is reported where it
is and the rest of the file still flows through.
"""

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from splade_os.common.errors import InputError, unpaired_surrogate

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024


DEFAULT_TEXT_FIELD = "text"
DEFAULT_TITLE_FIELD = "title"


@dataclass
class CorpusFields:
    """Which JSON fields of a corpus line hold the id, the text and the title (BEIR's by default).

    `text` and `title` left as None mean "the index's" when ingesting into an existing index (its
    `_meta` records them), else BEIR's "text" and "title".
    """

    id: str = "_id"
    text: Optional[str] = None
    title: Optional[str] = None

    @property
    def text_field(self) -> str:
        return self.text or DEFAULT_TEXT_FIELD

    @property
    def title_field(self) -> str:
        return self.title or DEFAULT_TITLE_FIELD

    def for_index(self, name: str, recorded: Optional[tuple]) -> "CorpusFields":
        """These fields made concrete for index `name`, whose `_meta` records (title field, text field)
        (None for a new index): a field left out takes the recorded one.

        Raises:
            InputError: a field given differs from the one the index records (its searches,
                BM25 and hits read the recorded one).
        """
        if recorded is None:
            return CorpusFields(self.id, self.text_field, self.title_field)
        title, text = recorded
        for role, given, kept in (("text", self.text, text), ("title", self.title, title)):
            if given is not None and given != kept:
                raise InputError(f"index {name!r} reads its {role} from field {kept!r}, not {given!r}; "
                                 f"ingest with --{role}-field {kept}, or into another index")
        return CorpusFields(self.id, text, title)


@dataclass
class Document:
    """One indexable line of the corpus."""

    id: str
    title: str
    text: str
    line: int
    raw: bytes = field(default=b"", repr=False)  # the original line, for the dead-letter file
    source: Optional[dict] = field(default=None, repr=False)  # every field of the line but the id: the `_source`

    @property
    def content(self) -> str:
        """What the encoder reads: title and text joined, as BEIR evaluations do."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass
class Rejected:
    """One line that cannot be indexed, with the reason."""

    line: int
    reason: str
    raw: bytes


def stable_id(title: str, text: str) -> str:
    """An id derived from the content, so re-running an ingest overwrites instead of duplicating."""
    digest = hashlib.blake2b(f"{title}\x00{text}".encode("utf-8"), digest_size=12)
    return "h-" + digest.hexdigest()


def _not_json(constant: str):
    # Python's json reads NaN and Infinity, which JSON (and the engines) do not have.
    raise ValueError(f"{constant} is not a JSON value")


def parse_line(raw: bytes, line: int, fields: Optional[CorpusFields] = None,
               reserved: Sequence[str] = ()) -> Union[Document, Rejected]:
    """Turn one raw JSONL line into a `Document`, or a `Rejected` saying what is wrong (see `parse_record`)."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Rejected(line, f"not valid UTF-8 (byte {e.start})", raw)
    try:
        record = json.loads(decoded, parse_constant=_not_json)
    except RecursionError:
        return Rejected(line, "malformed JSON: nested too deeply", raw)
    except ValueError as e:
        return Rejected(line, f"malformed JSON: {e}", raw)
    return parse_record(record, line, raw, fields, reserved)


def reserved_key(record: dict, reserved: Sequence[str]) -> Optional[tuple]:
    """(key, reserved name) of the first top-level key of `record` that is a reserved name or a
    path inside one ("splade.x" is inside "splade"); None when there is none."""
    for key in record:
        for name in reserved:
            if key == name or (key.startswith(name) and key[len(name)] == "."):
                return key, name
    return None


def parse_record(record, line: int, raw: bytes, fields: Optional[CorpusFields] = None,
                 reserved: Sequence[str] = ()) -> Union[Document, Rejected]:
    """Turn one decoded record (a JSON line's object, a Parquet row) into a `Document` or a `Rejected`.

    `raw` is what the dead-letter file shows for it (the line as it was read). The document's
    `source` is the record without its id field, every other field kept as it is; a record
    holding one of the `reserved` names (the fields splade-os writes, see
    `splade_os.cluster.index.reserved_fields`) is rejected.
    """
    fields = fields or CorpusFields()
    id_field, text_field, title_field = fields.id, fields.text_field, fields.title_field
    if not isinstance(record, dict):
        return Rejected(line, f"expected a JSON object, got {type(record).__name__}", raw)
    clash = reserved_key(record, reserved)
    if clash:
        key, name = clash
        what = f"field {key!r}" + (f" (inside {name!r})" if key != name else "")
        return Rejected(line, f"{what} is a name splade-os writes itself (docs/documents.md); rename it in the "
                              "corpus", raw)

    text = record.get(text_field)
    if text is None:
        return Rejected(line, f"missing text field {text_field!r}", raw)
    if not isinstance(text, str):
        return Rejected(line, f"text field {text_field!r} is {type(text).__name__}, not a string", raw)
    title = record.get(title_field)
    if title is None:
        title = ""
    if not isinstance(title, str):
        return Rejected(line, f"title field {title_field!r} is {type(title).__name__}, not a string", raw)
    if not text.strip() and not title.strip():
        return Rejected(line, f"empty text field {text_field!r}", raw)
    for kind, name, value in (("text", text_field, text), ("title", title_field, title)):
        problem = unpaired_surrogate(value)
        if problem:
            return Rejected(line, f"{kind} field {name!r} holds {problem}, not valid Unicode", raw)

    doc_id = record.get(id_field)
    if doc_id is None or doc_id == "":
        doc_id = stable_id(title, text)
    elif isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        return Rejected(line, f"id field {id_field!r} is {type(doc_id).__name__}, not a string or integer", raw)
    doc_id = str(doc_id)
    problem = unpaired_surrogate(doc_id)
    if problem:
        return Rejected(line, f"id field {id_field!r} holds {problem}, not valid Unicode", raw)
    if len(doc_id.encode("utf-8")) > 512:
        return Rejected(line, f"id field {id_field!r} is longer than 512 bytes (OpenSearch's limit)", raw)
    source = {key: value for key, value in record.items() if key != id_field}
    if _ESCAPED_SURROGATE.search(raw):  # only a JSON escape can put a lone surrogate into a string
        problem = _not_text(source)
        if problem:
            return Rejected(line, f"{problem}, not valid Unicode", raw)
    return Document(doc_id, title, text, line, raw, source)


_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _not_text(value, path: str = "") -> Optional[str]:
    """Where a string (or a key) inside `value` holds an unpaired surrogate, e.g. "field 'a.b' holds ..."."""
    if isinstance(value, str):
        problem = unpaired_surrogate(value)
        return f"field {path!r} holds {problem}" if problem else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        inner = f"{path}.{key}" if path else str(key)
        in_name = unpaired_surrogate(key) if isinstance(key, str) else None
        problem = f"field name {inner!r} holds {in_name}" if in_name else _not_text(item, inner)
        if problem:
            return problem
    return None


def read_lines(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, start: int = 0, stop: Optional[int] = None,
               first_line: int = 1) -> Iterator[tuple]:
    """Yield (line number, raw bytes without the newline, too_long flag) for each non-blank line.

    `start`, `stop` and `first_line` read one part of the file: the lines beginning at byte
    offsets in [start, stop) (`start` must be a line's first byte), numbered from `first_line`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a JSONL file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from e
    with f:
        f.seek(start)
        number = first_line - 1
        while stop is None or f.tell() < stop:
            chunk = f.readline(max_line_bytes + 1)
            if not chunk:
                return
            number += 1
            too_long = len(chunk) > max_line_bytes and not chunk.endswith(b"\n")
            if too_long:
                # Skip the rest of the line without holding it in memory.
                rest = chunk
                while rest and not rest.endswith(b"\n"):
                    rest = f.readline(1 << 20)
                yield number, chunk[:1024], True
                continue
            raw = chunk.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw, False


def read_corpus(
    path: Path,
    fields: Optional[CorpusFields] = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    skip_lines: int = 0,
    shard: Optional[tuple] = None,
    reserved: Sequence[str] = (),
) -> Iterator[Union[Document, Rejected]]:
    """Stream a JSONL corpus as `Document`s and `Rejected`s; duplicate ids are rejected.

    Args:
        path: the JSONL file.
        fields: which JSON fields hold the id, text and title (BEIR's by default).
        max_line_bytes: longer lines are rejected without being read into memory.
        skip_lines: lines up to and including this number are passed over (for resuming).
        shard: (i, n): only lines whose (number - 1) % n == i (a deterministic split of the input).
        reserved: names a line may not hold (the fields splade-os writes); such a line is rejected.
    """
    if shard is not None and not (0 <= shard[0] < shard[1]):
        raise InputError(f"shard {shard[0]}/{shard[1]}: expected i/n with 0 <= i < n")
    seen = set()
    for number, raw, too_long in read_lines(path, max_line_bytes):
        if shard is not None and (number - 1) % shard[1] != shard[0]:
            continue
        if too_long:
            yield Rejected(number, f"line longer than {max_line_bytes} bytes", raw)
            continue
        item = parse_line(raw, number, fields, reserved)
        if isinstance(item, Document):
            # A digest keeps the memory per id small for corpora of millions of lines.
            key = hashlib.blake2b(item.id.encode("utf-8"), digest_size=8).digest()
            if key in seen:
                item = Rejected(number, f"duplicate id {item.id!r}", raw)
            else:
                seen.add(key)
        if number > skip_lines:
            yield item


class DeadLetters:
    """A JSONL file of what could not be indexed: file, line, reason and the original line.

    The file is only created when the first rejection arrives.
    """

    def __init__(self, path: Path, source: str, append: bool = False):
        self.path = Path(path)
        self.source = source
        self.append = append  # a resumed ingest keeps what the interrupted run wrote
        self.count = sum(1 for line in open(self.path, "rb") if line.strip()) if append and self.path.exists() else 0
        self._file = None
        self._lock = threading.Lock()  # the reader and the bulk sender both add

    def add(self, line: int, reason: str, raw: bytes) -> None:
        self.write({"file": self.source, "line": line, "reason": reason}, raw)

    def write(self, record: dict, raw: bytes) -> None:
        """Add `record` (where the rejected input was, and why) with the input itself as `raw`."""
        record = dict(record)
        try:
            record["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw"] = raw.decode("utf-8", "replace")
            record["raw_base64"] = base64.b64encode(raw).decode("ascii")
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a" if self.append else "w", encoding="utf-8")
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
