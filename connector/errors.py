"""Exceptions raised by the connector.

Every failure a user can cause or fix has its own class with a message that names the
input and says what is wrong; the CLI prints that message on one line and exits non-zero.
"""

from typing import Optional


def unpaired_surrogate(value: str) -> Optional[str]:
    """Where `value` is not text, e.g. "an unpaired surrogate (\\ud800 at character 4)", or None.

    JSON escapes such as "\\ud800", and command-line bytes that are not UTF-8, become Python
    strings holding unpaired surrogates; they cannot be encoded, tokenized or sent.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"an unpaired surrogate (\\u{ord(value[e.start]):04x} at character {e.start})"
    return None


class SpladeOSError(Exception):
    """Base class of every error the connector raises on purpose."""


class ModelError(SpladeOSError):
    """A model folder or hub id is missing, incomplete or not an inference-free SPLADE model."""


class RegistryError(ModelError):
    """A model is missing from the cluster's registry, or its stored copy is incomplete or corrupted."""


class ClusterError(SpladeOSError):
    """OpenSearch is unreachable, refused the credentials, or answered with an error."""


class IndexStateError(SpladeOSError):
    """An index is missing, or was not created for the model in use."""


class ModelMismatchError(IndexStateError):
    """The index was ingested with a different model (vocabulary or query table) than the one given."""


class InputError(SpladeOSError):
    """An input file cannot be read at all (missing, unreadable, a directory)."""


class NodeError(SpladeOSError):
    """The local OpenSearch node could not be fetched, started or stopped."""
