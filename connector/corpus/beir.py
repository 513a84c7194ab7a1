"""Reading test collections: BEIR folders, queries files and qrels (BEIR TSV or TREC).

One reader serves evaluation (`splade-os eval`) and training (`splade-os train --beir`): the same
formats, the same one-line errors naming the file and line.

A BEIR folder holds `corpus.jsonl` (`{"_id", "title", "text"}` per line), `queries.jsonl`
(`{"_id", "text"}`) and `qrels/<split>.tsv` (`query-id<TAB>corpus-id<TAB>score` with a header).
"""

import json
from pathlib import Path
from typing import Dict, List, Tuple

from splade_os.common.errors import InputError


def _read_text_lines(path: Path, what: str) -> List[Tuple[int, str]]:
    """(1-based line number, line) for each non-blank line of a UTF-8 text file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file ({what})")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {what} file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def load_queries(path) -> Dict[str, str]:
    """Read queries: BEIR `queries.jsonl` (`{"_id", "text"}` per line) or a TSV of `id<TAB>text`.

    The format is taken from the first non-blank line: a JSON object means JSONL.

    Args:
        path: the queries file.

    Returns:
        query id -> query text, in file order.

    Raises:
        InputError: the file is missing, not UTF-8, or a line cannot be read.
    """
    lines = _read_text_lines(path, "queries")
    queries: Dict[str, str] = {}
    is_jsonl = bool(lines) and lines[0][1].lstrip().startswith("{")
    for number, line in lines:
        if is_jsonl:
            try:
                record = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}:{number}: malformed JSON ({e})") from None
            if not isinstance(record, dict) or "_id" not in record or not isinstance(record.get("text"), str):
                raise InputError(f'{path}:{number}: expected an object with "_id" and a string "text"')
            qid, text = str(record["_id"]), record["text"]
        else:
            qid, sep, text = line.partition("\t")
            if not sep:
                raise InputError(f"{path}:{number}: expected 'query id<TAB>text'")
        queries[qid] = text
    if not queries:
        raise InputError(f"{path}: holds no query")
    return queries


def _parse_grade(value: str, path, number: int) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    # Some qrels files write grades as "1.0"; anything else is not a grade.
    try:
        grade = float(value)
    except ValueError:
        grade = None
    if grade is None or not grade.is_integer():
        raise InputError(f"{path}:{number}: relevance {value!r} is not an integer")
    return int(grade)


def load_qrels(path) -> Dict[str, Dict[str, int]]:
    """Read relevance judgments: BEIR TSV or TREC qrels.

    Accepted line formats (tab- or space-separated):
    - BEIR: `query-id  corpus-id  score`, with a header line first (it is skipped);
    - TREC: `query-id  iteration  doc-id  relevance`, without header (the iteration is ignored).

    Args:
        path: the qrels file.

    Returns:
        query id -> {document id: grade}. Grades are kept as given (0 and negative too); the
        metrics decide what counts as relevant. A repeated pair keeps its last grade.

    Raises:
        InputError: the file is missing, holds no judgment, or a line has another shape.
    """
    qrels: Dict[str, Dict[str, int]] = {}
    for position, (number, line) in enumerate(_read_text_lines(path, "qrels")):
        # BEIR files are tab-separated (ids could hold spaces); TREC files usually use spaces.
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if position == 0 and len(fields) == 3:
            try:
                float(fields[-1])
            except ValueError:
                continue  # BEIR's header "query-id corpus-id score" (TREC qrels have none)
        if len(fields) == 3:
            qid, docid, grade = fields
        elif len(fields) == 4:
            qid, _, docid, grade = fields
        else:
            raise InputError(
                f"{path}:{number}: expected 'query-id corpus-id score' (BEIR) or "
                f"'query-id iteration doc-id relevance' (TREC), got {len(fields)} fields"
            )
        qrels.setdefault(qid, {})[docid] = _parse_grade(grade, path, number)
    if not qrels:
        raise InputError(f"{path}: holds no relevance judgment")
    return qrels


def load_beir(folder, split: str = "test") -> Tuple[Dict[str, str], Dict[str, Dict[str, int]], Path]:
    """Read a BEIR folder: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`.

    Args:
        folder: the BEIR collection folder.
        split: which qrels file to read (`test`, `dev`, `train`...).

    Returns:
        (queries: id -> text, qrels: query id -> {document id: grade}, path of `corpus.jsonl`).
        The corpus is not read here: it is streamed by whoever needs it.

    Raises:
        InputError: the folder or one of its files is missing or unreadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a BEIR collection)")
    corpus_path = folder / "corpus.jsonl"
    if not corpus_path.is_file():
        raise InputError(f"{corpus_path}: no such file (a BEIR folder has corpus.jsonl)")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise InputError(f"{qrels_path}: no such file (splits found: {', '.join(splits) or 'none'})")
    return load_queries(folder / "queries.jsonl"), load_qrels(qrels_path), corpus_path


def relevant(qrels: Dict[str, Dict[str, int]]) -> Dict[str, set]:
    """query id -> set of relevant document ids: grade > 0 (TREC's binary convention)."""
    return {qid: {docid for docid, grade in docs.items() if grade > 0} for qid, docs in qrels.items()}
