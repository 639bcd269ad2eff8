//! What a command line that does not parse is told: one line, like every
//! other failure, naming what is missing.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Arg, CommandFactory, FromArgMatches};

use super::args::Cli;
use super::exit::EX_USAGE;

/// The command line, or the exit code after its help, version or one-line
/// complaint has been printed.
pub fn parse() -> Result<Cli, ExitCode> {
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(error) if !error.use_stderr() => {
            // --help and --version: not failures.
            let _ = error.print();
            Err(ExitCode::SUCCESS)
        }
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
            ) =>
        {
            eprintln!("poplite: {} (see --help)", missing_subcommand());
            Err(ExitCode::from(EX_USAGE))
        }
        Err(error) => {
            // One line, like every other failure; --help has the details.
            let text = error.to_string();
            let first_paragraph: Vec<&str> = text
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = first_paragraph.join(" ");
            eprintln!(
                "poplite: {} (see --help)",
                message.trim_start_matches("error: ")
            );
            Err(ExitCode::from(EX_USAGE))
        }
    }
}

/// The command line's grammar: `Cli`'s, with the database options kept
/// out of `cert`'s help, since certificates touch no database.
fn command() -> clap::Command {
    // clap copies a global option into a subcommand only where none of
    // that name is defined yet: a hidden one of cert's own takes its place.
    // Its values are `Cli`'s types, so `--db` after `cert` parses as before.
    let hidden = |id: &'static str, long: &'static str, parser: clap::builder::ValueParser| {
        Arg::new(id)
            .long(long)
            .value_parser(parser)
            .global(true)
            .hide(true)
    };
    Cli::command().mut_subcommand("cert", |cert| {
        cert.arg(hidden("db", "db", clap::value_parser!(std::path::PathBuf)))
            .arg(hidden(
                "db_password_file",
                "db-password-file",
                clap::value_parser!(std::path::PathBuf),
            ))
            .arg(hidden(
                "busy_timeout",
                "busy-timeout",
                clap::builder::ValueParser::new(poplite::server::parse_duration),
            ))
    })
}

/// What a command line that stops short of a subcommand lacks, e.g.
/// `'poplite user' requires a subcommand: add, passwd, del, list`.
fn missing_subcommand() -> String {
    let mut command = command();
    let mut path = vec![command.get_name().to_string()];
    // Option values are skipped over: they name no subcommand.
    for arg in std::env::args().skip(1) {
        if let Some(sub) = command.find_subcommand(&arg).cloned() {
            path.push(arg);
            command = sub;
        }
    }
    // In the order --help lists them, which is not always the stored one.
    let mut subcommands: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .collect();
    subcommands.sort_by_key(|sub| sub.get_display_order());
    let names: Vec<&str> = subcommands.iter().map(|sub| sub.get_name()).collect();
    format!(
        "'{}' requires a subcommand: {}",
        path.join(" "),
        names.join(", ")
    )
}
