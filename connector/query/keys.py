"""Reversible escaping of vocabulary tokens into `rank_features` keys.

OpenSearch's `rank_feature` query splits its field path at the LAST dot, so a feature whose
key contains "." ("." , "...", "##.") can be indexed but never queried. Keys therefore go
through a percent-style escape: "%" -> "%25" and "." -> "%2E". Escaping the escape character
keeps the mapping injective (no two tokens share a key) and exactly reversible.
Indexing and querying both call `escape_key`, so the two sides always agree.
"""

import re

_ESCAPES = {"%": "%25", ".": "%2E"}
_ESCAPE_RE = re.compile(r"[%.]")
_UNESCAPE_RE = re.compile(r"%(25|2E)")
_UNESCAPES = {"25": "%", "2E": "."}


def escape_key(token: str) -> str:
    """Return the `rank_features` key for a vocabulary token (contains no ".")."""
    if "%" not in token and "." not in token:
        return token  # fast path: almost every token
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], token)


def unescape_key(key: str) -> str:
    """Inverse of `escape_key`."""
    if "%" not in key:
        return key
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES[m.group(1)], key)
