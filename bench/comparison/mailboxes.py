"""Users and mail on every side: poplite's users and deliveries (its CLI
on the bench's store, copied to the other store with `poplite copy` when
poplite runs on both SQLite and PostgreSQL), and Dovecot's passwd-file,
homes and maildirs holding the same users, hashes and messages."""

import concurrent.futures
import grp
import json
import os
import shutil
import sqlite3
import subprocess
import time

from .common import CHEAP_ARGON2, PASSWORD, Failure, log
from .postgres import psql


def run_poplite(bench, *args, stdin_text=None, db=None):
    """Runs the poplite CLI on DB (default: the store users are set up
    in); returns its stdout."""
    db = bench.primary_db if db is None else db
    result = subprocess.run([bench.poplite, "--db", db, *args], input=stdin_text,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise Failure(f"poplite {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def add_poplite_user(bench, name, params=None):
    """A user with password pw at PARAMS (default: --argon2's cost)."""
    params = bench.settings.argon2 if params is None else params
    run_poplite(bench, "user", "add", name, "--password-stdin",
                *(["--argon2-params", params] if params else []), stdin_text=PASSWORD + "\n")


def poplite_message_counts(bench, db=None):
    """{user: messages} from `poplite user list` on DB."""
    counts = {}
    for line in run_poplite(bench, "user", "list", db=db).splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
    return counts


def fill_poplite_mailbox(bench, user, counts, db=None):
    """Delivers messages so that USER has all of the corpus again on DB:
    only the missing ones (the last ones of the corpus), as Dovecot's fill
    does."""
    have = counts.get(user, 0)
    if have < len(bench.corpus_files):
        run_poplite(bench, "deliver", user, *bench.corpus_files[have:], db=db)


def add_users_in_parallel(bench, names):
    """Adds NAMES at --argon2's cost, one `poplite user add` per core at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=bench.cores) as pool:
        for future in [pool.submit(add_poplite_user, bench, name) for name in names]:
            future.result()


def set_up_poplite(bench):
    """poplite's users and mail for every scenario asked for."""
    s = bench.settings
    log(f"poplite: adding {s.users} users (argon2id {s.argon2_label}) and delivering")
    for i in range(s.users):
        add_poplite_user(bench, f"bench{i}")
        fill_poplite_mailbox(bench, f"bench{i}", {})
    if s.cheap_runs:
        log(f"poplite: adding {s.users} users cheap0.. (argon2id {CHEAP_ARGON2}) with the same "
            "mail, for the CPU split")
        for i in range(s.users):
            add_poplite_user(bench, f"cheap{i}", CHEAP_ARGON2)
            fill_poplite_mailbox(bench, f"cheap{i}", {})
    if bench.has("cycle"):
        log(f"poplite: adding {s.cycle_mailboxes} users cycle0.. for cycle "
            "(filled before each run)")
        for i in range(s.cycle_mailboxes):
            add_poplite_user(bench, f"cycle{i}")
    if bench.has("big"):
        add_poplite_user(bench, "big0", CHEAP_ARGON2)
        max_size = max(bench.big_bytes * 2 + 1_000_000, 300_000_000)
        run_poplite(bench, "deliver", "big0", bench.path("corpus-big", "big-00001.eml"),
                    "--max-message-size", str(max_size))
    if bench.has("idle"):
        log(f"poplite: adding {s.idle_conns} users idle0.. for idle "
            "(one mailbox per held connection)")
        add_users_in_parallel(bench, [f"idle{i}" for i in range(s.idle_conns)])
    if bench.runs("poplite") and bench.runs("poplite-pg"):
        log("poplite-pg: the same users, hashes, mail and UIDs (poplite copy)")
        run_poplite(bench, "copy", bench.pg_url, db=bench.db)


def user_hashes(bench):
    """[(name, PHC string)] of every user in the store users are set up
    in, oldest first: from the SQLite file, or through psql."""
    db = bench.primary_db
    if db != bench.db:
        rows = psql(bench.cluster,
                    "SELECT name, password_hash FROM users ORDER BY id").splitlines()
        return [tuple(row.split("|", 1)) for row in rows if row]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT name, password_hash FROM users ORDER BY id").fetchall()
    finally:
        con.close()


def first_password_hash(bench):
    return user_hashes(bench)[0][1]


def dovecot_password_scheme(bench):
    """ARGON2ID if this Dovecot verifies poplite's PHC strings, else PLAIN
    (with a warning: login numbers are then not comparable). Sets the
    report's note on passwords."""
    label = bench.settings.argon2_label
    check = subprocess.run(["doveadm", "-c", bench.dovecot_conf, "pw", "-t",
                            "{ARGON2ID}" + bench.phc, "-p", PASSWORD],
                           capture_output=True, check=False)
    if check.returncode == 0:
        bench.hash_note = (f"the same argon2id PHC strings ({label}) on both sides; "
                           "Dovecot reads them as {ARGON2ID}")
        return "ARGON2ID"
    bench.hash_note = (f"DIFFERENT: poplite argon2id ({label}), Dovecot {{PLAIN}} "
                       "(this Dovecot cannot verify {ARGON2ID})")
    bench.warning("this Dovecot build does not accept {ARGON2ID}$argon2id$...: Dovecot uses "
                  "{PLAIN} passwords, so login numbers are NOT comparable")
    return "PLAIN"


def write_dovecot_passwd(bench, scheme):
    """Dovecot's passwd-file: every poplite user, with poplite's hash."""
    rows = user_hashes(bench)
    out = bench.path("dovecot", "users")
    home_root = bench.path("home")
    with open(out, "w") as f:
        for name, phc in rows:
            secret = f"{{PLAIN}}{PASSWORD}" if scheme == "PLAIN" else f"{{{scheme}}}{phc}"
            f.write(f"{name}:{secret}:{bench.mail_uid}:{bench.mail_gid}::{home_root}/{name}::\n")
    try:
        os.chown(out, 0, grp.getgrnam("dovecot").gr_gid)
    except (KeyError, OSError):
        pass
    os.chmod(out, 0o640)


def make_home(bench, user, mode=0o700):
    home = bench.path("home", user)
    os.makedirs(home, exist_ok=True)
    os.chown(home, bench.mail_uid, bench.mail_gid)
    if mode is not None:
        os.chmod(home, mode)


def fill_maildir(bench, user, manifest_path, generation):
    """Tops USER's maildir up to the manifest's message count by copying
    the missing messages into new/, named as dovecot-lda names them (S= and
    W= sizes), so Dovecot sees freshly delivered mail. Returns how many."""
    maildir = bench.path("home", user, "Maildir")
    with open(manifest_path) as f:
        manifest = json.load(f)
    for sub in ("", "cur", "new", "tmp"):
        d = os.path.join(maildir, sub)
        os.makedirs(d, exist_ok=True)
        os.chown(d, bench.mail_uid, bench.mail_gid)
        os.chmod(d, 0o700)
    have = sum(len(os.listdir(os.path.join(maildir, sub))) for sub in ("cur", "new"))
    now = int(time.time())
    for i, m in enumerate(manifest[have:], start=have):
        base = f"{now}.M{i}P{os.getpid()}G{generation}.popbench,S={m['size']},W={m['vsize']}"
        tmp = os.path.join(maildir, "tmp", base)
        shutil.copyfile(m["path"], tmp)
        os.chown(tmp, bench.mail_uid, bench.mail_gid)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(maildir, "new", base))
    return len(manifest) - min(have, len(manifest))


def set_up_dovecot_mail(bench):
    """Homes and maildirs for every scenario asked for."""
    s = bench.settings
    log("Dovecot: maildirs")
    for i in range(s.users):
        make_home(bench, f"bench{i}")
        fill_maildir(bench, f"bench{i}", bench.path("corpus", "manifest.json"), 0)
    if bench.has("cycle"):
        for i in range(s.cycle_mailboxes):
            make_home(bench, f"cycle{i}")
    if bench.has("big"):
        make_home(bench, "big0")
        fill_maildir(bench, "big0", bench.path("corpus-big", "manifest.json"), 0)
    if bench.has("idle"):
        for i in range(s.idle_conns):
            make_home(bench, f"idle{i}", mode=None)


def refill_cycle_mailboxes(bench, server):
    """Gives every cycle mailbox the whole corpus again on SERVER's side."""
    bench.generation += 1
    db = None if server == "dovecot" else bench.store_of(server)
    counts = poplite_message_counts(bench, db) if db else None
    for i in range(bench.settings.cycle_mailboxes):
        if db:
            fill_poplite_mailbox(bench, f"cycle{i}", counts, db)
        else:
            fill_maildir(bench, f"cycle{i}", bench.path("corpus", "manifest.json"),
                         bench.generation)
    os.sync()
