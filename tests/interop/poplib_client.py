"""Drives Python's poplib against poplite for tests/interop/poplib.rs.

Usage: poplib_client.py PORT MODE USER SECRET OUTDIR [DELE]

MODE is how to log in: "user" (USER/PASS), "apop" (poplib.POP3.apop) or
"plain" (AUTH PLAIN with an initial response). DELE is a comma-separated
list of message numbers to delete before QUIT.

With POPLIB_TLS=stls the client sends STLS (poplib.POP3.stls) before
anything else; with POPLIB_TLS=implicit it connects with poplib.POP3_SSL.
Either way it trusts only the certificate in POPLIB_CAFILE, which must
name 127.0.0.1.

Prints one fact per line for the Rust side to check:
  greeting TEXT | capa NAME ARGS... | login TEXT | login-error TEXT |
  stat COUNT SIZE | list N SIZE | uidl N UID | retr N OCTETS |
  top N OCTETS | dele TEXT | quit TEXT
and writes what RETR and TOP n 0 returned, lines joined with CRLF plus a
final CRLF, to OUTDIR/retr.N and OUTDIR/top.N.
"""

import base64
import os
import poplib
import ssl
import sys


def text(raw):
    return raw.decode("latin-1")


def main():
    port, mode, user, secret, outdir = sys.argv[1:6]
    dele = [int(n) for n in sys.argv[6].split(",") if n] if len(sys.argv) > 6 else []
    out = []
    tls = os.environ.get("POPLIB_TLS", "")
    context = None
    if tls:
        context = ssl.create_default_context(cafile=os.environ["POPLIB_CAFILE"])
    if tls == "implicit":
        pop = poplib.POP3_SSL("127.0.0.1", int(port), timeout=30, context=context)
    else:
        pop = poplib.POP3("127.0.0.1", int(port), timeout=30)
    if tls == "stls":
        out.append("stls " + text(pop.stls(context=context)))
    out.append("greeting " + text(pop.getwelcome()))
    for name, args in sorted(pop.capa().items()):
        out.append(" ".join(["capa", name] + args))
    try:
        if mode == "user":
            pop.user(user)
            reply = pop.pass_(secret)
        elif mode == "apop":
            reply = pop.apop(user, secret)
        elif mode == "plain":
            token = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode())
            reply = pop._shortcmd("AUTH PLAIN " + token.decode("ascii"))
        else:
            raise SystemExit("unknown mode " + mode)
    except poplib.error_proto as error:
        out.append("login-error " + text(error.args[0]))
        out.append("quit " + text(pop.quit()))
        print("\n".join(out))
        return
    out.append("login " + text(reply))
    count, size = pop.stat()
    out.append("stat %d %d" % (count, size))
    for line in pop.list()[1]:
        out.append("list " + text(line))
    for line in pop.uidl()[1]:
        out.append("uidl " + text(line))
    for n in range(1, count + 1):
        for command, fetch in (("retr", lambda: pop.retr(n)), ("top", lambda: pop.top(n, 0))):
            _, lines, octets = fetch()
            with open(os.path.join(outdir, "%s.%d" % (command, n)), "wb") as f:
                f.write(b"".join(line + b"\r\n" for line in lines))
            out.append("%s %d %d" % (command, n, octets))
    for n in dele:
        out.append("dele " + text(pop.dele(n)))
    out.append("quit " + text(pop.quit()))
    print("\n".join(out))


if __name__ == "__main__":
    main()
