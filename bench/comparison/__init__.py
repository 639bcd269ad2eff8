"""bench/compare.py's parts: poplite against Dovecot (POP3) on one machine,
and poplite on PostgreSQL beside them (--postgres).

One module per job, in the order a comparison uses them:

- common: paths, constants, the Failure error and logging, shared by all
- options: the command line and its checks (Settings)
- state: Bench, what the steps of one comparison share
- system: root, the release build, Dovecot's install, descriptors, ports
- corpus: the message files both servers are given
- postgres: poplite-pg's throwaway cluster (fsync on), psql, and the
  connections a node holds to it
- mailboxes: users and mail on every side (poplite's stores, Dovecot's
  passwd-file and maildirs)
- servers: dovecot.conf, starting, checking and stopping the servers, and
  what each run measures of them (Target)
- measure: CPU time and memory of a process tree, from /proc
- hashing: the cost of one argon2id verification, for the login bound
- scenarios: the loadgen runs, round by round, and their records
- stats: figures computed from the run records
- report: the markdown report from the records and the set-up
"""
