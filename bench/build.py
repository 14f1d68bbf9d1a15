"""Benchmark: how long a build takes, stage by stage, and what personalising costs.

    python bench/build.py [--runs 5]

Renders the example edition and a generated edition of 50 sections, RUNS times
each, and prints the median seconds per stage (RenderedEdition.timings). The last
rows compare personalising one recipient (a join) with a full render, the reason
the sender renders once per edition and never per recipient.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mailer.config import Settings  # noqa: E402
from mailer.edition import load_edition  # noqa: E402
from mailer.render import STAGES, render_edition  # noqa: E402

EXAMPLE = REPO / "issues" / "2025-07-summer"
KINDS = ("article", "events", "training", "callout", "alert", "profile")
DATED_ITEM = "- **{day} Sept** Course {day} on [safeguarding](https://example.org/{day}) *Level 2*"
SETTINGS = Settings(
    organisation="Northvale Safeguarding Children Partnership",
    postal_address="Civic Centre, 1 Market Street, Northvale NV1 2AB",
    unsubscribe_url="https://example.org/newsletter/unsubscribe",
)


def generated_edition(folder: Path, count: int) -> Path:
    """An edition of ``count`` sections cycling through every kind."""
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE / "edition.toml", folder / "edition.toml")
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        if kind in ("events", "training"):
            body = "\n".join(DATED_ITEM.format(day=day) for day in range(1, 6))
        else:
            body = "Hello {{ first_name | default('colleague') }}. " + "Some text. " * 40
        (folder / f"{number:02d}-section.md").write_text(
            f"---\ntitle: Section {number}\nkind: {kind}\n"
            "image: https://example.org/p.jpg\nimage_alt: A photo\n---\n" + body + "\n",
            encoding="utf-8",
        )
    return folder


def measure(root: Path, runs: int) -> dict[str, float]:
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        start = time.perf_counter()
        rendered = render_edition(load_edition(root), SETTINGS)
        total = time.perf_counter() - start
        samples.append({**rendered.timings, "total": total})
    result = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    start = time.perf_counter()
    for index in range(1000):
        rendered.personalise({"first_name": f"Reader {index}", "unsubscribe_url": "https://x"})
    result["personalise"] = (time.perf_counter() - start) / 1000
    result["html_kb"] = len(rendered.preview().html.encode()) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = generated_edition(Path(tmp) / "issues" / "bench-50", 50)
        results = {
            "example (10 sections)": measure(EXAMPLE, args.runs),
            "generated (50 sections)": measure(big, args.runs),
        }
    columns = [*STAGES, "total"]
    print(f"median of {args.runs} runs, milliseconds")
    print(f"{'edition':<26}" + "".join(f"{c:>10}" for c in columns) + f"{'HTML KB':>10}")
    for name, result in results.items():
        cells = "".join(f"{result[c] * 1000:>10.1f}" for c in columns)
        print(f"{name:<26}{cells}{result['html_kb']:>10.1f}")
    print()
    print(f"{'edition':<26}{'render ms':>12}{'personalise ms':>16}{'ratio':>10}")
    for name, result in results.items():
        ratio = result["total"] / result["personalise"]
        print(
            f"{name:<26}{result['total'] * 1000:>12.1f}{result['personalise'] * 1000:>16.3f}"
            f"{ratio:>9.0f}x"
        )


if __name__ == "__main__":
    main()
