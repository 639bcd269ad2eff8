//! The `poplite` command: `serve` runs the server; `user`, `deliver`,
//! `mailbox`, `import`, `export`, `backup`, `copy` and `cert` administer;
//! `health` checks a running server. A thin
//! layer over the library (see `cli/`: arguments, exit codes, one file per
//! command family); this file only dispatches.

mod cli;

use std::process::ExitCode;

use cli::args::{CertCommand, Cli, Command, UserCommand};
use cli::database::Database;
use cli::exit::CliError;
use cli::{archive, cert, copy, deliver, health, serve, usage, user};

fn main() -> ExitCode {
    let cli = match usage::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("poplite: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs one command on the database the global options name.
fn run(cli: Cli) -> Result<(), CliError> {
    let db = &Database {
        location: cli.db,
        password_file: cli.db_password_file,
        busy_timeout: cli.busy_timeout,
    };
    match cli.command {
        Command::Serve(args) => serve::serve(db, *args),
        Command::Health { addr, timeout } => Ok(health::health(addr, timeout)?),
        Command::User(UserCommand::Add(args)) => user::add(db, args),
        Command::User(UserCommand::Passwd(args)) => user::change_password(db, args),
        Command::User(UserCommand::Del { name }) => user::delete(db, &name),
        Command::User(UserCommand::Quota { name, quota }) => user::quota(db, &name, &quota),
        Command::User(UserCommand::List) => user::list(db),
        Command::Deliver(args) => deliver::deliver(db, args),
        Command::Mailbox { user } => archive::mailbox(db, &user),
        Command::Backup { dest } => archive::backup(db, &dest),
        Command::Copy {
            dest,
            dest_password_file,
        } => copy::copy(db, &dest, dest_password_file),
        Command::Import(args) => archive::import(db, args),
        Command::Export { user, mbox } => archive::export(db, &user, &mbox),
        Command::Cert(CertCommand::SelfSigned { out, names, force }) => {
            cert::self_signed(&out, names, force)
        }
    }
}
