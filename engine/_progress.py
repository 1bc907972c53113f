"""A small progress bar on stderr for long work (conversions, compilation, benchmarks); no dependency."""
import sys
import time


def progress_iter(items, label, enabled=True, stream=None):
    items = list(items)
    stream = stream or sys.stderr
    if not enabled or not items:
        yield from items
        return
    bar = Progress(len(items), label, stream)
    for item in items:
        yield item
        bar.advance()
    bar.close()


class Progress:
    def __init__(self, total, label, stream=None, width=28):
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._draw()

    def advance(self, n=1, note=""):
        self.done = min(self.total, self.done + n)
        self._draw(note)

    def _draw(self, note=""):
        frac = self.done / self.total
        filled = int(round(frac * self.width))
        text = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{time.perf_counter() - self.t0:5.1f}s {note}")
        if self.tty:
            self.stream.write("\r" + text[:120].ljust(120))
        elif self.done in (0, self.total) or note:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
