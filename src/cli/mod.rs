//! The `poplite` binary's layer over the library: `args` and `values`
//! (what the command line says), `usage` (what a bad one is told), `exit`
//! (every failure's line and sysexits code), `database` (which file), and
//! one file per command family: `serve`, `user`, `deliver`, `archive`
//! (import, export, backup, mailbox), `copy`, `cert`, `health`.

pub mod archive;
pub mod args;
pub mod cert;
pub mod copy;
pub mod database;
pub mod deliver;
pub mod exit;
pub mod health;
pub mod serve;
pub mod usage;
pub mod user;
pub mod values;

use std::io::Write;

/// Prints a line of results. The work is already done when this runs, so
/// a closed stdout is not a failure: above all, `deliver` must not exit
/// non-zero after its commit, or the MTA would deliver the message twice.
pub fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout(), "{line}");
}
