"""What `poplite_server` and `PopliteServer` promise, checked over POP3, SMTP and HTTP."""

from __future__ import annotations

import email.message
import hashlib
import os
import poplib
import smtplib
import stat
import sysconfig
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from poplite import (
    PopliteError,
    PopliteServer,
    PopliteStartError,
    PopliteTimeout,
    find_binary,
)


def pop3(server: PopliteServer) -> poplib.POP3:
    return poplib.POP3(server.host, server.pop3_port, timeout=10)


def test_a_fresh_server_has_every_listener_and_no_user(poplite_server: PopliteServer) -> None:
    ports = {poplite_server.pop3_port, poplite_server.smtp_port}
    assert len(ports) == 2 and poplite_server.http_url.startswith("http://127.0.0.1:")
    assert pop3(poplite_server).getwelcome().startswith(b"+OK")
    with smtplib.SMTP(poplite_server.host, poplite_server.smtp_port, timeout=10) as smtp:
        assert smtp.noop()[0] == 250
    with pytest.raises(PopliteError, match="404"):
        poplite_server.messages("alice")


def test_deliver_takes_bytes_text_and_message_objects(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    composed = email.message.EmailMessage()
    composed["Subject"] = "object"
    composed.set_content("from an EmailMessage")
    poplite_server.deliver("alice", b"Subject: bytes\n\nraw\n")
    poplite_server.deliver("alice", "Subject: text\n\nnot ascii: \u00e9\n")
    stored = poplite_server.deliver("alice", composed)
    assert stored.subject == "object"

    messages = poplite_server.messages("alice")
    assert [m.subject for m in messages] == ["bytes", "text", "object"]
    assert messages[0].content == b"Subject: bytes\r\n\r\nraw\r\n"
    assert "\u00e9" in messages[1].content.decode()
    assert messages[2].message.get_content().strip() == "from an EmailMessage"
    assert all(m.size == len(m.content) for m in messages)

    client = pop3(poplite_server)
    client.user("alice")
    client.pass_("pw")
    assert client.stat()[0] == 3
    assert client.uidl(1).split()[2].decode() == messages[0].uid
    client.quit()


def test_apop_users_log_in_with_apop(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "secret", apop=True)
    poplite_server.add_user("bob", "secret")
    client = pop3(poplite_server)
    client.apop("alice", "secret")
    client.quit()
    client = pop3(poplite_server)
    with pytest.raises(poplib.error_proto):
        client.apop("bob", "secret")


def test_wait_for_messages_returns_when_smtp_mail_arrives(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")

    def send_later() -> None:
        time.sleep(0.3)
        with smtplib.SMTP(poplite_server.host, poplite_server.smtp_port, timeout=10) as smtp:
            smtp.sendmail("app@example.test", ["alice@example.test"], b"Subject: late\r\n\r\nhi\r\n")

    sender = threading.Thread(target=send_later)
    sender.start()
    started = time.monotonic()
    messages = poplite_server.wait_for_messages("alice", 1, timeout=10)
    sender.join()
    assert [m.subject for m in messages] == ["late"]
    assert time.monotonic() - started < 9, "the wait was not woken by the delivery"


def test_wait_for_messages_times_out_saying_how_many_came(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    poplite_server.deliver("alice", b"Subject: one\r\n\r\n1\r\n")
    with pytest.raises(PopliteTimeout, match="alice has 1 of 2 messages after 0.5 s") as caught:
        poplite_server.wait_for_messages("alice", 2, timeout=0.5)
    assert isinstance(caught.value, TimeoutError)


def test_refusals_name_the_status_and_the_reason(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    with pytest.raises(PopliteError, match="409 Conflict: user alice exists") as taken:
        poplite_server.add_user("alice", "again")
    assert taken.value.status == 409
    with pytest.raises(PopliteError, match="404") as unknown:
        poplite_server.deliver("nobody", b"Subject: x\r\n\r\nx\r\n")
    assert unknown.value.status == 404


def test_bad_arguments_are_refused_before_any_request(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    with pytest.raises(TypeError, match="not int"):
        poplite_server.deliver("alice", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        poplite_server.wait_for_messages("alice", 1, timeout=-1)
    assert poplite_server.messages("alice") == []


def test_encoded_subjects_come_back_decoded(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    stored = poplite_server.deliver("alice", b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nx\r\n")
    assert stored.subject == "Gr\u00fc\u00dfe"


def test_reset_removes_every_user_and_message(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    poplite_server.deliver("alice", b"Subject: x\r\n\r\nx\r\n")
    poplite_server.reset()
    with pytest.raises(PopliteError, match="404"):
        poplite_server.messages("alice")
    poplite_server.add_user("alice", "pw")
    assert poplite_server.messages("alice") == []


def test_stop_ends_the_process_and_can_be_repeated() -> None:
    server = PopliteServer.start()
    server.stop()
    server.stop()
    with pytest.raises(OSError):
        pop3(server)
    with pytest.raises(PopliteError, match="the server was stopped"):
        server.messages("alice")


def test_the_server_dies_with_the_test_process_even_on_sigkill(tmp_path: Path) -> None:
    # A test run killed by a CI timeout must not leave servers behind.
    program = (
        "import sys, time\n"
        "from poplite import PopliteServer\n"
        "server = PopliteServer.start()\n"
        "print(server.pop3_port, flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    port = int(runner.stdout.readline())
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    runner.kill()
    runner.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    pytest.fail(f"the server on port {port} outlived its killed parent")


def test_poplite_variables_of_the_shell_do_not_reach_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set for some other poplite server (a container, a service): a fixture's
    # server must still be fresh and its API open.
    monkeypatch.setenv("POPLITE_HTTP_TOKEN", "not-for-the-fixture")
    monkeypatch.setenv("POPLITE_USERS", "mallory:pw")
    monkeypatch.setenv("POPLITE_LMTP", "127.0.0.1:0")
    with PopliteServer.start() as server:
        with pytest.raises(PopliteError, match="404"):
            server.messages("mallory")
        server.add_user("alice", "pw")


def test_extra_listeners_do_not_confuse_the_start() -> None:
    # LMTP's line comes before SMTP's and HTTP's.
    with PopliteServer.start(extra_args=["--lmtp", "127.0.0.1:0"]) as server:
        server.add_user("alice", "pw")
        assert server.messages("alice") == []


def test_the_wheel_binary_is_found_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POPLITE_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_binary() == os.path.join(sysconfig.get_path("scripts"), "poplite")


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_poplite_bin_chooses_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_binary()
    marker = tmp_path / "ran"
    monkeypatch.setenv("POPLITE_BIN", script(tmp_path / "wrapper", f'touch {marker}\nexec {real} "$@"\n'))
    with PopliteServer.start() as server:
        server.add_user("alice", "pw")
    assert marker.exists()


def test_a_server_that_exits_is_reported_with_its_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POPLITE_BIN", script(tmp_path / "broken", "echo 'cannot bind: no' >&2\nexit 3\n"))
    with pytest.raises(PopliteStartError, match=r"exited with 3 .*chosen by POPLITE_BIN(.|\n)*cannot bind: no"):
        PopliteServer.start()


def test_a_bad_option_is_reported_with_the_servers_own_words() -> None:
    with pytest.raises(PopliteStartError, match="--max-message-size"):
        PopliteServer.start(extra_args=["--max-message-size", "lots"])


def test_a_silent_server_times_out_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POPLITE_BIN", script(tmp_path / "silent", "echo starting >&2\nexec sleep 30\n"))
    with pytest.raises(PopliteStartError, match=r"did not say where it listens within 0.5 s(.|\n)*starting"):
        PopliteServer.start(timeout=0.5)


def test_poplite_bin_must_be_an_executable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for wrong in (tmp_path / "missing", tmp_path):
        monkeypatch.setenv("POPLITE_BIN", str(wrong))
        with pytest.raises(PopliteStartError, match=f"POPLITE_BIN={wrong} is not an executable file"):
            PopliteServer.start()


def test_large_messages_come_back_whole(poplite_server: PopliteServer) -> None:
    poplite_server.add_user("alice", "pw")
    body = b"".join(b"%07d 0123456789abcdef0123456789abcdef\r\n" % i for i in range(60_000))
    raw = b"Subject: big\r\n\r\n" + body
    poplite_server.deliver("alice", raw)
    (stored,) = poplite_server.messages("alice")
    assert hashlib.sha256(stored.content).digest() == hashlib.sha256(raw).digest()
