//! `poplite user …`: add, change, remove, list users and their quotas.

use std::io::{BufRead, IsTerminal};

use super::args::{AddArgs, PasswordArgs, QuotaArgs};
use super::database::{open_existing, Database};
use super::exit::CliError;
use super::say;
use poplite::auth::{self, Argon2Params};
use poplite::mail::messages;
use poplite::storage::{self, StorageError};

/// `user add`: prompts (or reads stdin) before anything is created.
pub fn add(db: &Database, args: AddArgs) -> Result<(), CliError> {
    let quota = args.quota.applied_to(storage::Quota::default());
    let args = args.password;
    storage::validate_user_name(&args.name)?;
    let params = argon2_params(&args)?;
    // Checked before prompting so nobody types a password twice for nothing;
    // the insert below still refuses a duplicate that appears meanwhile.
    match open_existing(db) {
        Ok(store) => {
            if let Some(existing) = store.credentials(&args.name)? {
                return Err(StorageError::UserExists(existing.name).into());
            }
        }
        Err(CliError::Storage(StorageError::Missing(_) | StorageError::EmptyFile(_))) => {}
        Err(error) => return Err(error),
    }
    let password = read_password(&args)?;
    let hash = auth::hash_password(password.as_bytes(), params)?;
    // Only now, with nothing left to fail but the insert, may a database
    // be created.
    let apop = args.apop.then_some(password.as_str());
    db.open()?
        .add_user_with_quota(&args.name, &hash, apop, quota)?;
    say(format_args!("added user {}", args.name));
    Ok(())
}

/// `user passwd`: a new password, and an APOP secret only with --apop.
pub fn change_password(db: &Database, args: PasswordArgs) -> Result<(), CliError> {
    let params = argon2_params(&args)?;
    let store = open_existing(db)?;
    let (_, name) = store.user(&args.name)?;
    let password = read_password(&args)?;
    let hash = auth::hash_password(password.as_bytes(), params)?;
    // Without --apop the old APOP secret goes: it would still be the old password.
    store.set_password(&name, &hash, args.apop.then_some(password.as_str()))?;
    say(format_args!("changed the password of {name}"));
    Ok(())
}

fn argon2_params(args: &PasswordArgs) -> Result<Argon2Params, CliError> {
    Ok(match &args.argon2_params {
        Some(text) => text.parse()?,
        None => Argon2Params::default(),
    })
}

fn read_password(args: &PasswordArgs) -> Result<String, CliError> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| CliError::Password {
                what: " from stdin",
                error,
            })?;
        line.strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_string()
    } else if std::io::stdin().is_terminal() {
        let prompt = |text: &str| {
            rpassword::prompt_password(text).map_err(|error| CliError::Password { what: "", error })
        };
        let first = prompt(&format!("New password for {}: ", args.name))?;
        if first.is_empty() {
            return Err(CliError::Input("empty passwords are not allowed".into()));
        }
        if first != prompt("Again: ")? {
            return Err(CliError::Input("the passwords do not match".into()));
        }
        first
    } else {
        return Err(CliError::Input(
            "stdin is not a terminal: use --password-stdin to pass the password".into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Input("empty passwords are not allowed".into()));
    }
    Ok(password)
}

/// `user del`: the user and all their mail.
pub fn delete(db: &Database, name: &str) -> Result<(), CliError> {
    let removed = open_existing(db)?.delete_user(name)?;
    say(format_args!(
        "removed user {name} and {}",
        messages(removed)
    ));
    Ok(())
}

/// `user quota`: shows the quota, after changing it if asked to.
pub fn quota(db: &Database, name: &str, quota: &QuotaArgs) -> Result<(), CliError> {
    let store = open_existing(db)?;
    let (_, name) = store.user(name)?;
    let current = store.quota(&name)?;
    let new = quota.applied_to(current);
    if new != current {
        store.set_quota(&name, new)?;
    }
    let show = |limit: Option<u64>| limit.map_or("none".to_string(), |n| n.to_string());
    say(format_args!(
        "{name}\tmessages {}\toctets {}",
        show(new.messages),
        show(new.bytes)
    ));
    Ok(())
}

/// `user list`: name, message count, total octets.
pub fn list(db: &Database) -> Result<(), CliError> {
    for user in open_existing(db)?.users()? {
        say(format_args!(
            "{}\t{}\t{}",
            user.name, user.messages, user.bytes
        ));
    }
    Ok(())
}
