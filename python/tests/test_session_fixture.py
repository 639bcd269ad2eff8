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


def test_a_session_server_left_in_a_pop3_session_is_not_reset_silently(
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
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*409*"])
