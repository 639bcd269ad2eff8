"""`poplite_server_session`: one process for the session, emptied before each test."""

from __future__ import annotations

import pytest

SUITE = '''
import poplib

PORTS = []

def test_first(poplite_server_session):
    PORTS.append(poplite_server_session.pop3_port)
    poplite_server_session.add_user("alice", "pw")
    poplite_server_session.deliver("alice", b"Subject: left behind\\r\\n\\r\\nx\\r\\n")

def test_second_sees_an_empty_server_on_the_same_port(poplite_server_session):
    assert PORTS == [poplite_server_session.pop3_port]
    poplite_server_session.add_user("alice", "pw")
    assert poplite_server_session.messages("alice") == []

def test_a_fresh_server_is_another_process(poplite_server, poplite_server_session):
    assert poplite_server.pop3_port != poplite_server_session.pop3_port
'''


def test_the_session_server_is_shared_and_reset(pytester: pytest.Pytester) -> None:
    # No conftest: the fixtures come from the pytest11 entry point alone.
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_test_that_leaves_a_pop3_client_logged_in_is_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_suite='''
import poplib

KEEP = []

def test_leaves_a_session_open(poplite_server_session):
    poplite_server_session.add_user("alice", "pw")
    client = poplib.POP3(poplite_server_session.host, poplite_server_session.pop3_port)
    client.user("alice"); client.pass_("pw")
    KEEP.append(client)

def test_next(poplite_server_session):
    pass
'''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # The leaking test fails at its teardown, by name; the next cannot start.
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_leaves_a_session_open*",
        "*this test left 1 POP3 session(s) logged in (alice)*",
    ])


def test_server_options_come_from_an_overridden_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        '''
import pytest

@pytest.fixture(scope="session")
def poplite_serve_args():
    return ["--max-message-size", "100"]
'''
    )
    pytester.makepyfile(
        test_suite='''
import pytest
from poplite import PopliteError

def test_small_messages_only(poplite_server):
    poplite_server.add_user("alice", "pw")
    with pytest.raises(PopliteError, match="413"):
        poplite_server.deliver("alice", b"Subject: big\\r\\n\\r\\n" + b"x" * 200)
'''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
