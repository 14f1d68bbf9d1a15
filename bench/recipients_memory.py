"""Peak memory and time of reading a big subscriber list, against holding it in memory.

Run: python bench/recipients_memory.py [ROWS]

Baseline: the same file read into a list with csv.DictReader (what a naive reader
would hold). scan_recipients and iter_recipients should stay far below it, growing
only by the set of seen addresses. Also times suppression look-ups per recipient.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from mailer.recipients import iter_recipients, scan_recipients
from mailer.suppression import SuppressionList


def make_list(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "first_name", "lists", "organisation", "role"])
        for i in range(rows):
            writer.writerow(
                [
                    f"partner{i}@agency{i % 500}.example.org",
                    f"Partner Number {i}",
                    "Partner",
                    "news;board" if i % 3 else "news",
                    f"Organisation {i % 900}",
                    "Designated Safeguarding Lead",
                ]
            )


def measure(label: str, work: Callable[[], object], rows: int) -> None:
    """Time a plain run, then trace a second one for peak memory: tracemalloc slows
    allocation-heavy code several times over, so it must not be in the timing."""
    started = time.perf_counter()
    result = work()
    per_row = (time.perf_counter() - started) / rows * 1e6
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<42} peak {peak / 2**20:7.1f} MiB  {per_row:6.1f} us/row  -> {result}")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "list.csv"
        make_list(path, rows)
        print(f"{rows} rows, {path.stat().st_size / 2**20:.1f} MiB on disk")

        def baseline() -> int:
            with path.open(encoding="utf-8", newline="") as handle:
                return len(list(csv.DictReader(handle)))

        measure("baseline: list(csv.DictReader)", baseline, rows)
        measure("scan_recipients", lambda: scan_recipients([path]).valid, rows)
        measure("iter_recipients", lambda: sum(1 for _ in iter_recipients([path])), rows)
        with SuppressionList(Path(folder) / "state.sqlite3") as suppression:
            suppression.add([f"partner{i}@agency{i % 500}.example.org" for i in range(0, rows, 10)])
            lookup = suppression.__contains__
            measure(
                "iter_recipients + suppression look-ups",
                lambda: sum(1 for _ in iter_recipients([path], is_suppressed=lookup)),
                rows,
            )
            keys = [f"partner{i}@agency{i % 500}.example.org" for i in range(rows)]
            started = time.perf_counter()
            hits = sum(1 for key in keys if key in suppression)
            per_lookup = (time.perf_counter() - started) / rows * 1e6
            print(f"suppression look-up alone: {per_lookup:.1f} us each ({hits} hits)")


if __name__ == "__main__":
    main()
