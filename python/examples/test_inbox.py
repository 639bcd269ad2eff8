"""A sample test suite, written as a poplite user would write theirs.

The code under test is an application that sends a welcome mail over SMTP
and a job that fetches mail over POP3 and deletes what it has read. With the
`poplite` package installed there is nothing to set up: the fixtures come
with it.
"""

from __future__ import annotations

import poplib
import smtplib
import time
from email.message import EmailMessage
from typing import List

from poplite import PopliteServer

# --- the application under test --------------------------------------------


def send_welcome(smtp_host: str, smtp_port: int, address: str) -> None:
    mail = EmailMessage()
    mail["From"] = "shop@example.test"
    mail["To"] = address
    mail["Subject"] = "Welcome!"
    mail.set_content("Thanks for signing up.")
    with smtplib.SMTP(smtp_host, smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)


def fetch_and_delete(host: str, port: int, user: str, password: str) -> List[bytes]:
    client = poplib.POP3(host, port, timeout=10)
    client.user(user)
    client.pass_(password)
    bodies = []
    for number in range(1, client.stat()[0] + 1):
        bodies.append(b"\r\n".join(client.retr(number)[1]))
        client.dele(number)
    client.quit()
    return bodies


# --- the tests ----------------------------------------------------------------


def test_signing_up_sends_a_welcome_mail(poplite_server_session: PopliteServer) -> None:
    server = poplite_server_session
    server.add_user("carol", "pw")
    send_welcome(server.host, server.smtp_port, "carol@example.test")
    (welcome,) = server.wait_for_messages("carol", 1, timeout=10)
    assert welcome.subject == "Welcome!"
    assert "Thanks for signing up." in welcome.message.get_content()


def test_the_job_fetches_everything_and_deletes_it_at_quit(
    poplite_server_session: PopliteServer,
) -> None:
    server = poplite_server_session
    server.add_user("dave", "pw")
    server.deliver("dave", "Subject: one\n\nfirst\n")
    server.deliver("dave", "Subject: two\n\nsecond\n")
    bodies = fetch_and_delete(server.host, server.pop3_port, "dave", "pw")
    assert [b"Subject: one" in bodies[0], b"Subject: two" in bodies[1]] == [True, True]
    assert server.messages("dave") == []


def test_nothing_is_deleted_when_the_job_dies_before_quit(
    poplite_server_session: PopliteServer,
) -> None:
    server = poplite_server_session
    server.add_user("erin", "pw")
    server.deliver("erin", "Subject: keep me\n\nx\n")
    client = poplib.POP3(server.host, server.pop3_port, timeout=10)
    client.user("erin")
    client.pass_("pw")
    client.dele(1)
    client.close()  # the connection drops: no QUIT, so no UPDATE state
    # Logging in again waits for the dropped session to let go of the
    # maildrop (POP3 allows one session at a time), then sees the message.
    deadline = time.monotonic() + 5
    while True:
        again = poplib.POP3(server.host, server.pop3_port, timeout=10)
        try:
            again.user("erin")
            again.pass_("pw")
            break
        except poplib.error_proto:
            again.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert again.stat()[0] == 1
    again.quit()
    assert [m.subject for m in server.messages("erin")] == ["keep me"]
