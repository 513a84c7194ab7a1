#!/usr/bin/env python
"""Convert a classic test collection's raw files into a BEIR folder.

    python benchmarks/build_collection.py medline --source RAW_DIR --out OUT_DIR

writes OUT_DIR/corpus.jsonl, OUT_DIR/queries.jsonl and OUT_DIR/qrels/test.tsv (BEIR format:
`{"_id", "title", "text"}` per corpus line, `{"_id", "text"}` per query line, a tab-separated
qrels file with header `query-id corpus-id score`), and prints counts. Output is deterministic:
source order, UTF-8, `\\n` line endings, `ensure_ascii=False`. It fails (exit 1) when a qrels id
is missing from the queries or the corpus.

Collections
-----------
medline -- the MEDLINE (MED) collection: 1033 medical abstracts, 30 queries, binary relevance.
    Raw files: `med/MED.ALL`, `med/MED.QRY`, `med/MED.REL` in the GitHub repository
    `lailaglez/belief-network-irs` at commit 9094e4cde738bd93ed1747dc958b5acb0e0fa684
    (git blobs 1447d9ab81ce99d790b7f66a32acca872bb19630, 43135620e82ef93d9aa0f308d6a5a26b62148b60,
    8d20ec3700e76fd2cacb7793dca06ec58c0905a4). The repository is MIT-licensed (its LICENSE
    file); the same folder holds `med.tar.gz`, the archive as distributed by the University of
    Glasgow IR group (ir.dcs.gla.ac.uk/resources/test_collections/medl/), whose MED.ALL and
    MED.QRY are byte-identical to the committed ones and whose MED.REL has the same judgments in
    TREC layout (`qid 0 docid 1`); either layout is read. To get the files:

        git clone https://github.com/lailaglez/belief-network-irs
        git -C belief-network-irs checkout 9094e4cde738bd93ed1747dc958b5acb0e0fa684
        python benchmarks/build_collection.py medline --source belief-network-irs/med --out DIR

    Conversion: records start with `.I n` and have one `.W` field; `_id` = n, `title` = ""
    (the collection has no title field; the first sentence of `.W` is the article title),
    `text` = `.W` with whitespace runs (line breaks, the source's padding) collapsed to one
    space. Queries likewise. Qrels: every MED.REL line is a judged-relevant pair, score 1.
"""

import argparse
import json
import re
import sys
from pathlib import Path


def read_text(path):
    """The file's text with CRLF normalised to LF."""
    return path.read_text(encoding="ascii").replace("\r\n", "\n")


def smart_records(text):
    """SMART-format records `.I id` / `.X` fields as [(id, {field: text})], in file order."""
    records = []
    for chunk in re.split(r"^\.I[ \t]+", text, flags=re.M)[1:]:
        head, _, body = chunk.partition("\n")
        fields, field = {}, None
        for line in body.split("\n"):
            marker = re.fullmatch(r"\.([A-Z])\s*", line)
            if marker:
                field = marker.group(1)
                fields.setdefault(field, [])
            elif field is not None:
                fields[field].append(line)
        records.append((head.strip(), {k: " ".join(" ".join(v).split()) for k, v in fields.items()}))
    return records


def read_pairs(path):
    """Relevance lines `qid docid score` or TREC `qid 0 docid score`, as (qid, docid, score)."""
    pairs = []
    for line in read_text(path).split("\n"):
        cols = line.split()
        if not cols:
            continue
        if len(cols) == 3:
            qid, did, score = cols
        elif len(cols) == 4:
            qid, _, did, score = cols
        else:
            raise SystemExit(f"{path}: unexpected line {line!r}")
        pairs.append((qid, did, int(score)))
    return pairs


def medline(source):
    docs = smart_records(read_text(source / "MED.ALL"))
    corpus = [{"_id": i, "title": "", "text": f.get("W", "")} for i, f in docs]
    queries = [{"_id": i, "text": f.get("W", "")} for i, f in smart_records(read_text(source / "MED.QRY"))]
    qrels = [(q, d, s) for q, d, s in read_pairs(source / "MED.REL") if s > 0]
    return corpus, queries, qrels


BUILDERS = {"medline": medline}


def write_beir(out, corpus, queries, qrels):
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(out / name, "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in qrels:
            f.write(f"{q}\t{d}\t{s}\n")


def check(corpus, queries, qrels):
    """Problems that make the folder unusable: duplicate ids, dangling qrels ids."""
    doc_ids = [d["_id"] for d in corpus]
    query_ids = [q["_id"] for q in queries]
    problems = []
    if len(set(doc_ids)) != len(doc_ids):
        problems.append("duplicate corpus ids")
    if len(set(query_ids)) != len(query_ids):
        problems.append("duplicate query ids")
    if len({(q, d) for q, d, _ in qrels}) != len(qrels):
        problems.append("duplicate qrels pairs")
    problems += [f"qrels query {q} not in queries" for q in sorted({q for q, _, _ in qrels} - set(query_ids))]
    problems += [f"qrels doc {d} not in corpus" for d in sorted({d for _, d, _ in qrels} - set(doc_ids))]
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("--source", type=Path, required=True, help="folder holding the raw files")
    parser.add_argument("--out", type=Path, required=True, help="BEIR folder to write")
    args = parser.parse_args()

    corpus, queries, qrels = BUILDERS[args.name](args.source)
    problems = check(corpus, queries, qrels)
    if problems:
        sys.exit("not written: " + "; ".join(problems))
    write_beir(args.out, corpus, queries, qrels)

    judged = {q for q, _, _ in qrels}
    scores = {}
    for _, _, s in qrels:
        scores[s] = scores.get(s, 0) + 1
    print(f"{args.name}: {len(corpus)} documents, {len(queries)} queries "
          f"({len(judged)} judged), {len(qrels)} qrels lines, scores {dict(sorted(scores.items()))}, "
          f"query ids among corpus ids: {len(judged & {d['_id'] for d in corpus})}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
