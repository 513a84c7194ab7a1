"""What a node says: progress lines on stderr and the gist of a failed node's log on one line."""

from __future__ import annotations

import re
from pathlib import Path

from splade_os.common.progress import note

# Markers in the node log that mean "a port we picked was taken in the meantime".
BIND_FAILURE_MARKERS = ("BindTransportException", "BindHttpException", "Address already in use")


def progress(show: bool, message: str) -> None:
    """One `[splade-os node]` line on stderr when `show`."""
    note(show, f"[splade-os node] {message}")


def shorten(text: str, limit: int = 400) -> str:
    """`text` on one line, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bind_failed(path: Path) -> bool:
    """Whether the node log says that a port could not be bound."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return any(marker in text for marker in BIND_FAILURE_MARKERS)


def summarise_log(path: Path, lines: int = 20) -> str:
    """The gist of why a node failed, on one line, from its log."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log output"
    # Stack frames, blank lines and pointers to other logs say little.
    noise = ("at ", "... ", "For complete error details")
    useful = [
        (number, line.strip())
        for number, line in enumerate(text)
        if line.strip() and not line.strip().startswith(noise)
    ]
    # A fatal error once logging is up is one ERROR line followed by the exception, and then
    # many lines of stack frames and shutdown chatter: so look for it in the whole log.
    for position in range(len(useful) - 1, -1, -1):
        if "][ERROR]" in useful[position][1]:
            picked = [re.sub(r"^\[[^\]]*\]", "", useful[position][1])]
            picked += [line for _, line in useful[position + 1: position + 2]]
            return shorten(" | ".join(picked))
    # Otherwise (the JVM or the launcher failed before logging started) the last lines tell.
    tail = [line for number, line in useful if number >= len(text) - lines]
    if not tail:
        return "no log output"
    errors = [line for line in tail if re.search(r"Exception|[Ee]rror|could not|failed", line)]
    picked = [errors[0], errors[-1]] if errors else [tail[-1]]
    return shorten(" | ".join(dict.fromkeys(picked)))
