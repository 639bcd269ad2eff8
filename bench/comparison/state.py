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
    generation: int = 0

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    @property
    def db(self):
        return self.path("poplite.db")

    @property
    def dovecot_conf(self):
        return self.path("dovecot", "dovecot.conf")

    def has(self, scenario):
        return scenario in self.settings.scenarios

    def warning(self, message):
        """A warning both on stderr now and in the report."""
        self.warnings.append(message)
        warn(message)
