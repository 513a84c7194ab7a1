"""Reading documents as users have them: JSONL corpora line by line (`splade_os.corpus.jsonl`:
`Document`, `CorpusFields`, dead letters) and BEIR folders (`splade_os.corpus.beir`).

May import: `splade_os.common`.
"""

from splade_os.corpus.jsonl import (  # noqa: F401 - the corpus reader's names, as before the packages
    DEFAULT_MAX_LINE_BYTES, DEFAULT_TEXT_FIELD, DEFAULT_TITLE_FIELD, CorpusFields, DeadLetters, Document, Rejected,
    parse_line, parse_record, read_corpus, read_lines, reserved_key, stable_id)
