"""Exceptions raised by splade-os.

Every failure a user can cause or fix has its own class with a message that names the input and
says what is wrong; the CLI prints that message on one line and exits non-zero. The library never
prints and never exits.
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
    """Base class of every error splade-os raises on purpose."""


class InputError(SpladeOSError):
    """An argument or input file is wrong: missing, unreadable, malformed, or an option out of range."""


class MissingExtraError(SpladeOSError):
    """The feature needs an optional part of the package that is not installed (`pip install 'splade-os[...]'`)."""


class ModelError(SpladeOSError):
    """A model folder or hub id is missing, incomplete or not an inference-free SPLADE model."""


class RegistryError(ModelError):
    """A model is missing from the cluster's registry, or its stored copy is incomplete or corrupted."""


class ClusterError(SpladeOSError):
    """The cluster is unreachable, refused the credentials, or answered with an error.

    Attributes:
        status: the HTTP status, or None when no answer came (connection error, timeout).
        error_type: the engine's error type, e.g. "resource_already_exists_exception".
        transient: a retry may succeed (no answer, 429, 502, 503, 504).
    """

    def __init__(self, message: str, status: Optional[int] = None, error_type: Optional[str] = None,
                 transient: bool = False):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.transient = transient


class IndexStateError(SpladeOSError):
    """An index is missing, or was not created for the model in use."""


class ModelMismatchError(IndexStateError):
    """The index was ingested with a different model (vocabulary or query table) than the one given."""


class NodeError(SpladeOSError):
    """A local search node could not be fetched, started or stopped."""


class TrainingError(SpladeOSError):
    """Training cannot start or went wrong (bad data, a learning-rate mapping that matched nothing)."""


class TrainingNotBetterError(TrainingError):
    """The trained model did not beat the model training started from on the held-out validation queries."""


class IngestInterrupted(SpladeOSError):
    """Ctrl-C during an ingest: the windows in flight were settled and the checkpoint written."""
