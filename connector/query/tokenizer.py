"""Query token ids in a few microseconds, identical to the `tokenizers` library's.

`Tokenizer.encode` tracks, for every character, its offset in the original text through each
normalisation step. A query needs none of that: only the ids. For the common case, a BERT-style
tokenizer (BertNormalizer + BertPreTokenizer + WordPiece) and a query of printable ASCII, the
normaliser and pre-tokenizer reduce to "lowercase, then split into runs of letters and digits
and single punctuation characters"; each word's WordPiece ids still come from the library's own
WordPiece model, cached per word (the speed-up is measured in benchmarks/bench_query.py).

Any other text (non-ASCII, control characters, an added token such as "[MASK]") or any other
tokenizer goes through `Tokenizer.encode` unchanged, so the ids are always the library's.
"""

import re
from typing import List

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from splade_os.common.errors import InputError, unpaired_surrogate

# Printable ASCII plus the whitespace BertNormalizer maps to a space: the fast path's alphabet.
_OUTSIDE_FAST_ALPHABET = re.compile(r"[^\x20-\x7e\t\n\r]")
# In printable ASCII every character that is not a letter, digit or space is punctuation to
# BertPreTokenizer (codes 33-47, 58-64, 91-96, 123-126), split off as a word of its own.
_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]")
_MAX_ADDED_TOKENS = 256  # beyond this, checking a query for added tokens costs more than it saves
_MAX_CACHED_WORDS = 1 << 16


class QueryTokenizer:
    """`ids(text)` == `tokenizer.encode(text, add_special_tokens=False).ids`, faster for BERT-style tokenizers.

    The tokenizer's truncation settings at construction time apply to both paths.

    Example:
        >>> ids = QueryTokenizer(Tokenizer.from_file("tokenizer.json")).ids("what is lift?")
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        truncation = tokenizer.truncation
        self.max_length = truncation["max_length"] if truncation else None
        added = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
        self.fast = (
            isinstance(tokenizer.normalizer, normalizers.BertNormalizer)
            and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
            and isinstance(tokenizer.model, models.WordPiece)
            and (truncation is None or truncation["direction"] == "right")
            and len(added) <= _MAX_ADDED_TOKENS
        )
        self.lowercase = self.fast and tokenizer.normalizer.lowercase
        # Added tokens are matched before normalisation; a query holding one takes the slow path.
        # Compared lowercased: added tokens marked `normalized` match the lowercased text.
        self.added = [t.lower() for t in added if t]
        self.words = {}

    def ids(self, text: str) -> List[int]:
        """The token ids of `text`.

        Raises:
            InputError: the text is not valid Unicode (an unpaired surrogate).
        """
        if not self.fast or _OUTSIDE_FAST_ALPHABET.search(text):
            return self._library_ids(text)
        folded = text.lower()
        if any(token in folded for token in self.added):
            return self._library_ids(text)
        words = self.words
        out: List[int] = []
        for word in _WORDS.findall(folded if self.lowercase else text):
            ids = words.get(word)
            if ids is None:
                ids = [token.id for token in self.tokenizer.model.tokenize(word)]
                if len(words) >= _MAX_CACHED_WORDS:
                    words.clear()
                words[word] = ids
            out.extend(ids)
        if self.max_length is not None and len(out) > self.max_length:
            del out[self.max_length :]
        return out

    def _library_ids(self, text: str) -> List[int]:
        problem = unpaired_surrogate(text)
        if problem:
            raise InputError(f"query text holds {problem}, not valid Unicode (bytes that are not UTF-8?)")
        return self.tokenizer.encode(text, add_special_tokens=False).ids
