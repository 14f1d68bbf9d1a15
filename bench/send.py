"""How fast `mailer send` delivers, and how much memory it needs, against a raw baseline.

    python bench/send.py [--recipients 10000] [--dry-run-recipients 100000]

Measured in one run, each in a fresh subprocess so memory is the send's own:

* baseline: a raw smtplib loop sending one prebuilt message of the same size per
  recipient over one connection (no rendering, no journal): the ceiling;
* ``mailer send``: the real thing (journal, personalisation, one connection);
* against two sinks: aiosmtpd (Python, tops out at a few hundred messages a second and
  hides client overhead) and Postfix's C ``smtp-sink``, fetched with
  ``apt-get download postfix`` into a temporary folder (skipped with a note if that
  fails);
* the journal's cost per message: a commit per mark (the ``sent`` one fsynced or
  not) against what a send does, one commit a message (see mailer/journal.py);
* ``--dry-run`` peak memory at N and 10 N recipients: flat means streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EDITION = REPO / "issues" / "2025-07-summer"


def make_project(root: Path, count: int) -> tuple[Path, Path]:
    edition = root / "issues" / EDITION.name
    if not edition.exists():
        shutil.copytree(EDITION, edition)
    recipients = root / f"list-{count}.csv"
    with recipients.open("w", encoding="utf-8") as handle:
        handle.write("email,name,first_name\n")
        for n in range(count):
            handle.write(f"reader{n}@example.org,Reader {n} Example,Reader{n}\n")
    return edition, recipients


def env_for(port: int, state: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILER_")},
        "MAILER_SMTP_HOST": "127.0.0.1",
        "MAILER_SMTP_PORT": str(port),
        "MAILER_SMTP_SECURITY": "none",
        "MAILER_FROM": "Partnership News <news@example.org>",
        "MAILER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe",
        "MAILER_SECRET": "bench-secret",
        "MAILER_ORGANISATION": "Example Partnership",
        "MAILER_POSTAL_ADDRESS": "1 Example Street",
        "MAILER_STATE": str(state),
    }


# -- children: each prints one JSON line -------------------------------------------------


def child_mailer(edition: str, recipients: str, dry_run: str) -> None:
    from mailer.campaign import SendOptions, prepare_send, run_send
    from mailer.config import load_settings
    from mailer.reporting import PlainReporter

    settings = load_settings()
    plan = prepare_send(
        Path(edition), [Path(recipients)], settings, SendOptions(dry_run=dry_run == "1")
    )
    with open(os.devnull, "w") as quiet:
        summary = run_send(plan, PlainReporter(quiet, every=10**9))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": summary.sent, "seconds": summary.seconds, "peak_kb": peak}))


def child_raw(port: str, size: str, count: str) -> None:
    body = b"x" * 76 + b"\r\n"
    message = b"Subject: bench\r\n\r\n" + body * (int(size) // len(body))
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", int(port)) as smtp:
        for n in range(int(count)):
            smtp.sendmail("news@example.org", [f"reader{n}@example.org"], message)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": int(count), "seconds": seconds, "peak_kb": peak}))


def child_aiosmtpd() -> None:
    sys.path.insert(0, str(REPO))
    from tests.smtp_sink import Sink

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    sink = Sink()
    sink.controller.handler = Discard()
    sink.start()
    print(sink.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin


def child_journal(mode: str, count: str) -> None:
    """``held``: what a send does, each sent mark riding in the next sending commit;
    ``FULL``/``NORMAL``: a commit for each mark, the sent one with that synchronous."""
    from mailer.journal import Journal

    folder = Path(tempfile.mkdtemp())
    journal = Journal(folder / "state.sqlite3", sent_sync="NORMAL" if mode == "held" else mode)
    journal.begin("bench", "hash")
    started = time.perf_counter()
    held = None
    for n in range(int(count)):
        key = f"reader{n}@example.org"
        journal.mark_sending("bench", key, key, sent=held)
        if mode == "held":
            held = (key, key, "250 OK")
        else:
            journal.mark_sent("bench", key, "250 OK")
    seconds = time.perf_counter() - started
    shutil.rmtree(folder)
    print(json.dumps({"sent": int(count), "seconds": seconds, "peak_kb": 0}))


CHILDREN = {
    "mailer": child_mailer,
    "raw": child_raw,
    "aiosmtpd": child_aiosmtpd,
    "journal": child_journal,
}


# -- parent ------------------------------------------------------------------------------


def run_child(*args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_aiosmtpd() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", "aiosmtpd"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, int(process.stdout.readline())


def start_smtp_sink(folder: Path) -> tuple[subprocess.Popen, int] | None:
    """Postfix's smtp-sink, unpacked from the Debian package; None (with a note) if not."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["apt-get", "download", "postfix"],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=120,
        )
        package = next(folder.glob("postfix_*.deb"))
        subprocess.run(["dpkg", "-x", str(package), str(folder / "root")], check=True)
    except (OSError, subprocess.SubprocessError, StopIteration) as exc:
        print(f"note: Postfix smtp-sink unavailable ({exc}); skipping the C sink")
        return None
    sys.path.insert(0, str(REPO))
    from tests.smtp_sink import free_port

    port = free_port()
    command = [str(folder / "root/usr/sbin/smtp-sink"), "-c", f"127.0.0.1:{port}", "1000"]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(folder / "root/usr/lib/postfix")}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    if process.poll() is not None:
        print("note: smtp-sink did not start; skipping the C sink")
        return None
    return process, port


def message_size(edition: Path, recipients: Path, folder: Path) -> int:
    outbox = folder / "outbox"
    subprocess.run(
        [
            sys.executable, "-m", "mailer", "send", str(edition), "--recipients",
            str(recipients), "--dry-run", "--limit", "1", "--outbox", str(outbox),
        ],
        env=env_for(1, folder / "unused.sqlite3"),
        check=True,
        capture_output=True,
    )  # fmt: skip
    return next(outbox.iterdir()).stat().st_size


def rate(result: dict) -> float:
    return result["sent"] / result["seconds"]


def compare(
    name: str, port: int, edition: Path, recipients: Path, size: int, folder: Path, count: int
) -> None:
    raw = run_child("raw", str(port), str(size), str(count))
    state = folder / f"state-{name}.sqlite3"
    ours = run_child("mailer", str(edition), str(recipients), "0", env=env_for(port, state))
    print(
        f"{name:>9}: raw smtplib {rate(raw):7.0f} msg/s | mailer send {rate(ours):7.0f} msg/s"
        f" = {rate(ours) / rate(raw):.2f} of raw | peak RSS raw {raw['peak_kb'] / 1024:.0f} MB,"
        f" mailer {ours['peak_kb'] / 1024:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--dry-run-recipients", type=int, default=100_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    try:
        edition, recipients = make_project(folder / "project", args.recipients)
        size = message_size(edition, recipients, folder)
        print(f"{args.recipients} recipients, example edition, {size / 1024:.0f} KB per message")

        for mode, label in (
            ("FULL", "a commit per mark, both FULL"),
            ("NORMAL", "a commit per mark, sent NORMAL"),
            ("held", "sent mark rides in the next sending commit (what send does)"),
        ):
            result = run_child("journal", mode, "2000")
            print(
                f"  journal: {1000 * result['seconds'] / result['sent']:.2f} ms per message,"
                f" {label}"
            )

        aiosmtpd, port = start_aiosmtpd()
        try:
            compare("aiosmtpd", port, edition, recipients, size, folder, args.recipients)
        finally:
            aiosmtpd.stdin.close()
            aiosmtpd.wait(timeout=30)

        started = start_smtp_sink(folder / "postfix")
        if started:
            sink, port = started
            try:
                compare("smtp-sink", port, edition, recipients, size, folder, args.recipients)
            finally:
                sink.terminate()
                sink.wait(timeout=10)

        for count in (args.recipients, args.dry_run_recipients):
            _, big = make_project(folder / "project", count)
            result = run_child(
                "mailer", str(edition), str(big), "1", env=env_for(1, folder / "dry.sqlite3")
            )
            print(
                f"  dry run {count:>7} recipients: {rate(result):6.0f} msg/s,"
                f" peak RSS {result['peak_kb'] / 1024:.0f} MB"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        CHILDREN[sys.argv[2]](*sys.argv[3:])
    else:
        main()
