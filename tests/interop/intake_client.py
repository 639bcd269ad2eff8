"""Delivers one message over LMTP or SMTP with Python's smtplib.

Usage: intake_client.py PROTOCOL TARGET SENDER RCPT[,RCPT...] MESSAGE_FILE [CA_FILE]
PROTOCOL is LMTP (smtplib.LMTP) or SMTP (smtplib.SMTP; with CA_FILE it
starts TLS first, trusting only that certificate). TARGET is HOST:PORT,
or for LMTP a Unix socket path (starting with /).
Prints one JSON object: the recipients refused at RCPT, each with its
code and text. smtplib reads a single reply after the data, so for LMTP
the caller gives at most one recipient that the server accepts.
"""
import json
import smtplib
import ssl
import sys

protocol, target, sender = sys.argv[1], sys.argv[2], sys.argv[3]
recipients, path = sys.argv[4].split(","), sys.argv[5]
ca = sys.argv[6] if len(sys.argv) > 6 else None
with open(path, "rb") as f:
    message = f.read()
host, _, port = target.rpartition(":")
if protocol == "LMTP" and target.startswith("/"):
    client = smtplib.LMTP(target, timeout=20)
elif protocol == "LMTP":
    client = smtplib.LMTP(host, int(port), timeout=20)
else:
    client = smtplib.SMTP(host, int(port), timeout=20)
    if ca:
        client.starttls(context=ssl.create_default_context(cafile=ca))
try:
    refused = client.sendmail(sender, recipients, message)
except smtplib.SMTPRecipientsRefused as error:
    refused = error.recipients
client.quit()
print(json.dumps({rcpt: [code, text.decode()] for rcpt, (code, text) in refused.items()}))
