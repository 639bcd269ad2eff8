"""Schemathesis hooks for tests/http_schema.rs: how to send message/rfc822."""

import schemathesis


@schemathesis.serializer("message/rfc822")
def rfc822(ctx, value):
    # Any octets are a message; a value that is not a string (a negative
    # case) has no message/rfc822 form, so it goes as an empty body,
    # which the API refuses (422).
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return b""
