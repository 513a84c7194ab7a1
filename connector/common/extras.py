"""The optional parts of the package, and the one-line message when one is missing.

The base install (`pip install splade-os`) is the query side and the cluster tools. Encoding
documents needs torch and transformers (`encode`), training needs datasets and accelerate on top
(`train`), SigV4 needs boto3 (`aws`), the inspection page (`splade-os ui`) Flask (`ui`). Code that
needs an extra calls `require` before importing it.
"""

import importlib.util

from splade_os.common.errors import MissingExtraError

# extra -> the modules it brings that the code imports
EXTRAS = {
    "encode": ("torch", "transformers", "sentence_transformers", "scipy", "ir_measures"),
    "train": ("torch", "transformers", "sentence_transformers", "datasets", "accelerate"),
    "aws": ("boto3",),
    "ray": ("ray",),
    "ui": ("flask",),
}


def missing(extra: str) -> list:
    """The modules of `extra` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, feature: str) -> None:
    """Raise `MissingExtraError` naming the `pip install` to run when `extra` is not installed.

    Args:
        extra: a key of `EXTRAS`.
        feature: what needs it, for the message ("document encoding", "training", ...).
    """
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{feature} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install 'splade-os[{extra}]'"
        )
