"""The one place that draws progress: tqdm bars and notes on stderr, off when `show` is False."""

import sys

from tqdm.auto import tqdm


def bar(show: bool, **kwargs):
    """A tqdm progress bar on stderr (a silent one when `show` is False)."""
    return tqdm(file=sys.stderr, disable=not show, dynamic_ncols=True, **kwargs)


def note(show: bool, message: str) -> None:
    """One line of progress information on stderr."""
    if show:
        print(message, file=sys.stderr, flush=True)
