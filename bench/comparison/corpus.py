"""The mail both servers are given: deterministic message files (the
corpus, and big0's one big message) with a manifest of their sizes."""

import json
import os
import random

from .common import log

WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with",
         "was", "on", "be", "by", "at", "this", "from", "or", "an", "mail", "server",
         "message", "queue", "inbox", "relay", "delivery", "lunch", "meeting",
         "report", "budget", "quarterly", "invoice", "attached", "please", "review",
         "thanks", "regards", "tomorrow", "agenda", "project", "status", "update",
         "release", "schedule", "database", "storage", "network")


def text_lines(rng, nbytes):
    """ASCII lines of at most 76 characters, about nbytes in all (LF ends).
    About one line in 40 starts with a dot, to exercise dot-stuffing."""
    out, total = [], 0
    while total < nbytes:
        words, n = [], 0
        while n < 60:
            w = rng.choice(WORDS)
            words.append(w)
            n += len(w) + 1
        line = " ".join(words)[:76]
        if rng.random() < 0.025:
            line = "." + line[:75]
        out.append(line)
        total += len(line) + 1
    return "\n".join(out) + "\n"


def message_text(rng, i, nbytes, subject):
    """Message number I: headers and about NBYTES of text in all."""
    header = (f"From: sender{i % 7}@example.org\n"
              f"To: bench@example.org\n"
              f"Subject: {subject}\n"
              f"Date: Mon, 02 Jun 2025 10:{i % 60:02d}:00 +0000\n"
              f"Message-ID: <bench.{i}@example.org>\n"
              f"MIME-Version: 1.0\n"
              f"Content-Type: text/plain; charset=us-ascii\n\n")
    return header + text_lines(rng, max(0, nbytes - len(header)))


def sizes_of(path):
    """(size on disk, size with CRLF line ends as POP3 sends it, before
    dot-stuffing)."""
    size, lf, crlf, prev = 0, 0, 0, b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            lf += chunk.count(b"\n")
            crlf += chunk.count(b"\r\n") + (1 if prev == b"\r" and chunk[:1] == b"\n" else 0)
            prev = chunk[-1:]
    return size, size + lf - crlf


def write_manifest(outdir, paths):
    """manifest.json in OUTDIR: path, size and vsize of each file; returns it."""
    manifest = []
    for path in paths:
        size, vsize = sizes_of(path)
        manifest.append({"path": path, "size": size, "vsize": vsize})
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


def write_corpus(outdir, count):
    """COUNT message files, 2-20 KB each, every 25th 2 MB, and their
    manifest; returns (paths, total bytes)."""
    rng = random.Random(1939)
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        nbytes = 2_000_000 if i % 25 == 0 else rng.randint(2_000, 20_000)
        path = os.path.join(outdir, f"msg-{i:05d}.eml")
        with open(path, "w", newline="\n") as f:
            f.write(message_text(rng, i, nbytes, f"bench message {i} ({nbytes} bytes)"))
        paths.append(path)
    manifest = write_manifest(outdir, paths)
    return paths, sum(m["size"] for m in manifest)


def write_big_message(outdir, mb):
    """One message of MB * 10^6 octets (LF ends), for `big`, and its
    manifest; returns (path, bytes)."""
    rng = random.Random(5034)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "big-00001.eml")
    target = mb * 1_000_000
    block = text_lines(rng, 1 << 20)
    with open(path, "w", newline="\n") as f:
        head = message_text(rng, 0, 0, f"big message ({mb} MB)")
        f.write(head)
        written = len(head)
        while written + len(block) <= target:
            f.write(block)
            written += len(block)
        rest = target - written
        if rest > 0:
            tail = block[: max(0, rest - 1)]
            tail = tail[: tail.rfind("\n") + 1] if "\n" in tail else ""
            f.write(tail + "x" * (rest - len(tail) - 1) + "\n")
    manifest = write_manifest(outdir, [path])
    return path, manifest[0]["size"]


def write_corpora(bench):
    s = bench.settings
    log(f"work directory: {bench.work}")
    log(f"generating corpus: {s.messages} messages per mailbox")
    bench.corpus_files, bench.corpus_bytes = write_corpus(bench.path("corpus"), s.messages)
    if bench.has("big"):
        log(f"generating the {s.big_mb} MB message for big0")
        _, bench.big_bytes = write_big_message(bench.path("corpus-big"), s.big_mb)
