"""Progress of long steps (SASRec's epochs, scoring batches of large runs): log lines with
elapsed time and an ETA, and on a terminal (stderr a TTY) a tqdm bar as well."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm import tqdm


def on_terminal() -> bool:
    return sys.stderr.isatty()


def duration(seconds: float) -> str:
    """12 s, 3.5 min, 2.1 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """`total` steps of `what`: a log line on `logger` every `every` steps (and at the
    last), with elapsed time and an ETA from the mean step time so far; a bar on a
    terminal. With `bound`, `total` is an upper bound (the work may stop early) and the
    ETA says "at most"."""

    def __init__(
        self,
        what: str,
        total: int,
        logger: logging.Logger,
        every: int = 1,
        unit: str = "step",
        done: int = 0,
        bound: bool = False,
    ) -> None:
        self.bound = bound
        self.what, self.total, self.logger, self.every = what, total, logger, max(1, every)
        self.done = self.start_done = done
        self.started = time.perf_counter()
        self.next_log = done + self.every
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=what,
            unit=unit,
            disable=not on_terminal(),
            leave=False,
            file=sys.stderr,
        )

    def update(self, n: int = 1, detail: str = "") -> None:
        """`n` more steps done; `detail` (a loss, a score) goes into the log line."""
        self.done += n
        self.bar.update(n)
        if detail:
            self.bar.set_postfix_str(detail, refresh=False)
        if self.done >= self.next_log or self.done >= self.total:
            self.next_log = self.done + self.every
            self.logger.info("%s", self.line(detail))

    def line(self, detail: str = "") -> str:
        elapsed = time.perf_counter() - self.started
        steps = self.done - self.start_done
        left = max(self.total - self.done, 0)
        eta = ""
        if steps and left:
            eta = f", ETA {'at most ' if self.bound else ''}{duration(elapsed / steps * left)}"
        detail = f": {detail}" if detail else ""
        return f"{self.what} {self.done} of {self.total}{detail}; {duration(elapsed)}{eta}"

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
