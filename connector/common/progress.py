"""The one place that draws progress: tqdm bars and notes on stderr, off when `show` is False."""

import contextlib
import sys
import threading

from tqdm.auto import tqdm


def _terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def bar(show: bool, **kwargs):
    """A tqdm progress bar on stderr (a silent one when `show` is False).

    Written to a file or a CI log instead of a terminal, it redraws at most every 10 s.
    """
    if not _terminal():
        kwargs.setdefault("mininterval", 10.0)
    return tqdm(file=sys.stderr, disable=not show, dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def ticking(progress, every: float = 1.0):
    """Redraw `progress` every `every` seconds while the block runs, so its clock moves even when a
    long first step (loading, tokenizing, a first batch of long documents) gives no update yet."""
    if progress.disable or not _terminal():
        yield progress
        return
    stop = threading.Event()

    def tick():
        while not stop.wait(every):
            progress.refresh()

    thread = threading.Thread(target=tick, daemon=True, name="splade-os-progress")
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join()


def note(show: bool, message: str) -> None:
    """One line of progress information on stderr."""
    if show:
        print(message, file=sys.stderr, flush=True)
