"""Bench: the state one comparison's steps share (settings, paths, the
running processes, what the report will say about the set-up)."""

import dataclasses
import os
import subprocess

from .common import warn
from .options import Settings


@dataclasses.dataclass
class Bench:
    """What the steps of one comparison share."""
    settings: Settings
    work: str  # the temporary directory
    poplite: str
    loadgen: str
    rev: str
    cores: int
    mail_uid: int = 0
    mail_gid: int = 0
    corpus_files: list = dataclasses.field(default_factory=list)
    corpus_bytes: int = 0
    big_bytes: int = 0
    dovecot_version: str = ""
    hash_note: str = ""
    phc: str = ""
    warnings: list = dataclasses.field(default_factory=list)
    poplite_proc: subprocess.Popen = None
    dovecot_proc: subprocess.Popen = None
    loadgen_proc: subprocess.Popen = None
    # --postgres: the cluster (postgres.Cluster) and poplite's nodes on it.
    cluster: object = None
    pg_procs: list = dataclasses.field(default_factory=list)
    generation: int = 0

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    @property
    def db(self):
        """poplite's SQLite file."""
        return self.path("poplite.db")

    @property
    def pg_url(self):
        """poplite-pg's database, or None without --postgres."""
        return self.cluster.url if self.cluster else None

    @property
    def primary_db(self):
        """The store users and mail are set up in, and Dovecot's hashes read
        from: the SQLite file, or the PostgreSQL database when poplite runs
        only there. The other store gets a copy (`poplite copy`)."""
        return self.db if "poplite" in self.settings.servers else self.pg_url

    def store_of(self, server):
        """The --db of SERVER (poplite, poplite-cheap, poplite-pg...)."""
        return self.pg_url if server.startswith("poplite-pg") else self.db

    def runs(self, server):
        return server in self.settings.servers

    @property
    def dovecot_conf(self):
        return self.path("dovecot", "dovecot.conf")

    def has(self, scenario):
        return scenario in self.settings.scenarios

    def warning(self, message):
        """A warning both on stderr now and in the report."""
        self.warnings.append(message)
        warn(message)
