"""Delivers one message over LMTP with Python's smtplib.LMTP.

Usage: lmtp_client.py TARGET SENDER RCPT[,RCPT...] MESSAGE_FILE
TARGET is HOST:PORT, or a Unix socket path (starting with /).
Prints one JSON object: the recipients refused at RCPT, each with its
code and text. smtplib reads a single reply after the data, so the
caller gives at most one recipient that the server accepts.
"""
import json
import smtplib
import sys

target, sender, recipients, path = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
with open(path, "rb") as f:
    message = f.read()
if target.startswith("/"):
    lmtp = smtplib.LMTP(target, timeout=20)
else:
    host, _, port = target.rpartition(":")
    lmtp = smtplib.LMTP(host, int(port), timeout=20)
try:
    refused = lmtp.sendmail(sender, recipients, message)
except smtplib.SMTPRecipientsRefused as error:
    refused = error.recipients
lmtp.quit()
print(json.dumps({rcpt: [code, text.decode()] for rcpt, (code, text) in refused.items()}))
