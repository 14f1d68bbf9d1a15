"""The SMTP transport against a real server: reuse, TLS, AUTH, retries, refusals."""

from __future__ import annotations

import pytest

from mailer.config import Settings
from mailer.delivery import (
    RateLimiter,
    RecipientRejected,
    RetryPolicy,
    SmtpSetupError,
    SmtpTransport,
    deliver,
)
from mailer.errors import DeliveryError, RetryableDeliveryError
from tests.smtp_sink import Faults

SENDER = "newsletter@example.org"
NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)


def message_for(address: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {address}\r\nSubject: Hello\r\n"
        "Message-ID: <1@example.org>\r\n\r\nHello there.\r\n.leading dot\r\n"
    ).encode()


def settings_for(sink, **overrides) -> Settings:
    values = {"smtp_host": sink.host, "smtp_port": sink.port, "smtp_security": "none"}
    return Settings(**{**values, **overrides})


def send_all(transport: SmtpTransport, addresses: list[str], policy=NO_WAIT) -> list[str]:
    retries: list[tuple[int, str]] = []
    replies = []
    for address in addresses:
        replies.append(
            deliver(
                transport,
                SENDER,
                address,
                message_for(address),
                policy=policy,
                before_attempt=lambda n: None,
                on_retry=lambda n, exc, delay: retries.append((n, str(exc))),
            )
        )
    return replies


def test_messages_arrive_byte_for_byte_over_one_reused_connection(smtp_sink):
    sink = smtp_sink()
    transport = SmtpTransport(settings_for(sink))
    addresses = [f"reader{i}@example.org" for i in range(3)]
    replies = send_all(transport, addresses)
    transport.close()
    assert replies == ["250 2.0.0 Ok: queued"] * 3
    assert [item.rcpt_tos for item in sink.received] == [(a,) for a in addresses]
    assert sink.received[0].data.replace(b"\r\n", b"\n") == message_for(addresses[0]).replace(
        b"\r\n", b"\n"
    )
    assert sink.handler.connections == 1


def test_starttls_with_a_trusted_certificate_and_login_delivers(smtp_sink):
    sink = smtp_sink(starttls=True, auth=("news", "s3cret-pw"))
    settings = settings_for(
        sink,
        smtp_security="starttls",
        smtp_user="news",
        smtp_password="s3cret-pw",
        smtp_ca_file=sink.cert_file,
    )
    transport = SmtpTransport(settings)
    send_all(transport, ["jane@example.org"])
    transport.close()
    assert sink.count_by_recipient() == {"jane@example.org": 1}


def test_implicit_tls_delivers(smtp_sink):
    sink = smtp_sink(implicit_tls=True)
    transport = SmtpTransport(settings_for(sink, smtp_security="tls", smtp_ca_file=sink.cert_file))
    send_all(transport, ["jane@example.org"])
    transport.close()
    assert sink.count_by_recipient() == {"jane@example.org": 1}


def test_a_certificate_nobody_vouches_for_is_refused(smtp_sink):
    sink = smtp_sink(starttls=True)
    transport = SmtpTransport(settings_for(sink, smtp_security="starttls"))
    with pytest.raises(SmtpSetupError, match="certificate did not verify"):
        transport.connect()
    assert sink.received == []


def test_a_missing_ca_file_is_named(smtp_sink, tmp_path):
    sink = smtp_sink(starttls=True)
    missing = tmp_path / "no-such-ca.pem"
    settings = settings_for(sink, smtp_security="starttls", smtp_ca_file=missing)
    with pytest.raises(SmtpSetupError, match="CA file not found") as caught:
        SmtpTransport(settings).connect()
    assert caught.value.path == missing


def test_starttls_mode_refuses_a_server_without_starttls(smtp_sink):
    sink = smtp_sink()
    transport = SmtpTransport(settings_for(sink, smtp_security="starttls"))
    with pytest.raises(SmtpSetupError, match="does not offer STARTTLS"):
        transport.connect()


def test_login_over_an_unencrypted_connection_is_refused(smtp_sink):
    sink = smtp_sink(auth=("news", "pw"))
    settings = settings_for(sink, smtp_user="news", smtp_password="pw")
    with pytest.raises(SmtpSetupError, match="unencrypted"):
        SmtpTransport(settings).connect()


def test_allow_insecure_auth_permits_a_login_without_tls(smtp_sink):
    sink = smtp_sink(auth=("news", "pw"))
    settings = settings_for(sink, smtp_user="news", smtp_password="pw")
    transport = SmtpTransport(settings, allow_insecure_auth=True)
    send_all(transport, ["jane@example.org"])
    transport.close()
    assert sink.count_by_recipient() == {"jane@example.org": 1}


def test_a_refused_login_names_the_user_but_never_the_password(smtp_sink):
    sink = smtp_sink(starttls=True, auth=("news", "right"))
    settings = settings_for(
        sink,
        smtp_security="starttls",
        smtp_user="news",
        smtp_password="Wrong-Pa55word",
        smtp_ca_file=sink.cert_file,
    )
    with pytest.raises(SmtpSetupError) as caught:
        SmtpTransport(settings).connect()
    text = f"{caught.value} {caught.value!r} {caught.value.hint}"
    assert "news" in text and "535" in text
    assert "Wrong-Pa55word" not in text
    assert "Wrong-Pa55word" not in repr(settings)


def test_a_greylisted_recipient_is_retried_and_delivered_once(smtp_sink):
    sink = smtp_sink(Faults(tempfail_once={"grey@example.org"}))
    attempts: list[int] = []
    retries: list[str] = []
    transport = SmtpTransport(settings_for(sink))
    reply = deliver(
        transport,
        SENDER,
        "grey@example.org",
        message_for("grey@example.org"),
        policy=NO_WAIT,
        before_attempt=attempts.append,
        on_retry=lambda n, exc, delay: retries.append(str(exc)),
    )
    transport.close()
    assert reply.startswith("250")
    assert attempts == [1, 2]
    assert retries == ["RCPT TO refused: 451 4.7.1 Greylisted, try again later"]
    assert sink.count_by_recipient() == {"grey@example.org": 1}


def test_a_temporary_failure_that_persists_gives_up_after_the_attempt_limit(smtp_sink):
    sink = smtp_sink(Faults(tempfail_always={"grey@example.org"}))
    attempts: list[int] = []
    slept: list[float] = []
    with pytest.raises(RetryableDeliveryError, match="451"):
        deliver(
            SmtpTransport(settings_for(sink)),
            SENDER,
            "grey@example.org",
            b"Subject: x\r\n\r\nx\r\n",
            policy=RetryPolicy(attempts=3, base_delay=0.5, max_delay=10),
            before_attempt=attempts.append,
            on_retry=lambda n, exc, delay: None,
            sleep=slept.append,
        )
    assert attempts == [1, 2, 3]
    assert slept == [0.5, 1.0]
    assert sink.received == []


def test_backoff_doubles_up_to_its_cap():
    policy = RetryPolicy(attempts=6, base_delay=1, max_delay=5)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_a_refused_address_is_a_bounce_carrying_the_servers_reply(smtp_sink):
    sink = smtp_sink(Faults(reject_domains={"gone.example.net"}))
    transport = SmtpTransport(settings_for(sink))
    with pytest.raises(RecipientRejected) as caught:
        send_all(transport, ["old@gone.example.net"])
    assert caught.value.code == 550
    assert "550 5.1.1 User unknown" in str(caught.value)
    # the connection is still good for the next recipient
    send_all(transport, ["jane@example.org"])
    transport.close()
    assert sink.count_by_recipient() == {"jane@example.org": 1}
    assert sink.handler.connections == 1


def test_a_rejected_message_is_a_permanent_failure_but_not_a_bounce(smtp_sink):
    sink = smtp_sink(Faults(reject_data={"jane@example.org"}))
    with pytest.raises(DeliveryError) as caught:
        send_all(SmtpTransport(settings_for(sink)), ["jane@example.org"])
    assert not isinstance(caught.value, RecipientRejected | RetryableDeliveryError)
    assert "554 5.7.1" in str(caught.value)


def test_a_421_hang_up_reconnects_and_every_message_arrives_once(smtp_sink):
    sink = smtp_sink(Faults(close_after=2))
    addresses = [f"reader{i}@example.org" for i in range(7)]
    transport = SmtpTransport(settings_for(sink))
    send_all(transport, addresses)
    transport.close()
    assert sink.count_by_recipient() == dict.fromkeys(addresses, 1)
    assert sink.handler.connections == 4


def test_a_connection_dropped_during_data_is_retried_on_a_new_one(smtp_sink):
    sink = smtp_sink(Faults(drop_data_once={"jane@example.org"}))
    transport = SmtpTransport(settings_for(sink))
    send_all(transport, ["first@example.org", "jane@example.org", "last@example.org"])
    transport.close()
    assert sink.count_by_recipient() == {
        "first@example.org": 1,
        "jane@example.org": 1,
        "last@example.org": 1,
    }


def test_no_server_listening_is_a_temporary_failure(smtp_sink):
    from tests.smtp_sink import free_port

    settings = Settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none")
    with pytest.raises(RetryableDeliveryError, match="cannot connect"):
        SmtpTransport(settings, timeout=2).connect()


def test_the_rate_limiter_spaces_sends_evenly():
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(per_minute=120, clock=lambda: clock[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert slept == [0.5, 1.0, 1.5]


@pytest.mark.parametrize(
    "message",
    [
        b".starts with a dot\r\n\r\nbody\r\n",
        b"Subject: x\r\n\r\n.\r\n..two\r\nlast line without CRLF",
        b"Subject: x\r\n\r\nno dots at all\r\n",
    ],
)
def test_dot_stuffing_delivers_lines_starting_with_a_dot_intact(smtp_sink, message):
    sink = smtp_sink()
    transport = SmtpTransport(settings_for(sink))
    transport.send(SENDER, "jane@example.org", message)
    transport.close()
    expected = message if message.endswith(b"\r\n") else message + b"\r\n"
    assert sink.received[0].data.replace(b"\r\n", b"\n") == expected.replace(b"\r\n", b"\n")


def test_without_pipelining_the_envelope_goes_one_command_at_a_time(smtp_sink):
    sink = smtp_sink(
        Faults(tempfail_once={"grey@example.org"}, reject_domains={"gone.example.net"}),
        pipelining=False,
    )
    transport = SmtpTransport(settings_for(sink))
    assert send_all(transport, ["grey@example.org"], NO_WAIT)[0].startswith("250")
    with pytest.raises(RecipientRejected):
        send_all(transport, ["old@gone.example.net"])
    send_all(transport, ["jane@example.org"])
    transport.close()
    assert sink.handler.seen_rcpt["grey@example.org"] == 2  # greylisted, then retried
    assert sink.count_by_recipient() == {"grey@example.org": 1, "jane@example.org": 1}


def test_a_failing_hook_before_data_hangs_up_and_sends_nothing(smtp_sink):
    sink = smtp_sink()
    transport = SmtpTransport(settings_for(sink))

    def disk_full() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        transport.send(SENDER, "jane@example.org", message_for("jane@example.org"), disk_full)
    send_all(transport, ["next@example.org"])
    transport.close()
    assert sink.count_by_recipient() == {"next@example.org": 1}
    assert sink.handler.connections == 2
