"""The one place that draws progress: tqdm bars and notes on stderr, off when `show` is False.

Notes (and the CLI's notices, warnings and errors) are lines of text by default; after
`log_format("json")` each is one JSON object on a line of its own, with the fields given there
(the CLI's command and run id), and the bars are off: a log collector reads stderr line by line.
"""

import contextlib
import json
import sys
import threading
import time

from tqdm.auto import tqdm


LOG_FORMATS = ("text", "json")
_LOG = {"format": "text", "fields": {}}


def log_format(name: str = "text", **fields) -> None:
    """Write notes as text lines, or ("json") as JSON objects carrying `fields` too."""
    if name not in LOG_FORMATS:
        raise ValueError(f"log format {name!r}: expected one of {', '.join(LOG_FORMATS)}")
    _LOG.update(format=name, fields=dict(fields))


def structured() -> bool:
    """Whether notes are written as JSON objects (then there are no progress bars)."""
    return _LOG["format"] == "json"


def bars(show: bool) -> bool:
    """Whether to draw progress bars (other libraries' too): `show`, unless notes are JSON lines."""
    return show and _LOG["format"] != "json"


def log_line(level: str, message: str) -> None:
    """One line on stderr: the message as it is, or a JSON object with its level and time."""
    if _LOG["format"] == "json":
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level, "message": message,
                  **_LOG["fields"]}
        message = json.dumps(record, ensure_ascii=False)
    print(message, file=sys.stderr, flush=True)


def _terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def bar(show: bool, **kwargs):
    """A tqdm progress bar on stderr (a silent one when `show` is False).

    Written to a file or a CI log instead of a terminal, it redraws at most every 10 s.
    """
    if not _terminal():
        kwargs.setdefault("mininterval", 10.0)
    return tqdm(file=sys.stderr, disable=not bars(show), dynamic_ncols=True, **kwargs)


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
    """One line of progress information on stderr (see `log_line`)."""
    if show:
        log_line("info", message)
