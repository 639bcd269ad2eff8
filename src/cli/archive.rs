//! Moving mail in and out: `import`, `export`, `backup`, `mailbox`.

use super::args::{ImportArgs, MboxFormat};
use super::database::{open_existing, Database};
use super::exit::CliError;
use super::say;
use poplite::mail::archive;
use poplite::mail::mbox::Escaping;
use poplite::mail::messages;
use std::path::Path;

/// `import`: an mbox file or a Maildir, all of it or nothing.
pub fn import(db: &Database, args: ImportArgs) -> Result<(), CliError> {
    let store = open_existing(db)?;
    let (source, from) = match (args.mbox, args.maildir) {
        (Some(path), _) => {
            let escaping = match args.mbox_format {
                None | Some(MboxFormat::Mboxrd) => Escaping::Mboxrd,
                Some(MboxFormat::Mboxo) => Escaping::Mboxo,
            };
            let from = path.display().to_string();
            (archive::Source::Mbox(path, escaping), from)
        }
        (None, Some(dir)) => {
            let from = dir.display().to_string();
            (archive::Source::Maildir(dir), from)
        }
        // clap's group makes one of them required.
        (None, None) => return Err(CliError::Input("give --mbox FILE or --maildir DIR".into())),
    };
    let started = std::time::Instant::now();
    let summary = archive::import(&store, &args.user, &source, args.max_message_size)?;
    say(format_args!(
        "imported {} ({} octets) from {from} into {} in {:.2} s",
        messages(summary.messages as u64),
        summary.octets,
        args.user,
        started.elapsed().as_secs_f64()
    ));
    if summary.undated > 0 {
        say(format_args!(
            "{} no readable date on {} From line and {} dated now",
            match summary.undated {
                1 => "1 of them had".to_string(),
                n => format!("{n} of them had"),
            },
            if summary.undated == 1 { "its" } else { "their" },
            if summary.undated == 1 { "is" } else { "are" },
        ));
    }
    if summary.trashed > 0 {
        say(format_args!(
            "left out {} flagged trashed (T)",
            messages(summary.trashed as u64)
        ));
    }
    Ok(())
}

/// `export`: a user's mail, oldest first, to a new mboxrd file.
pub fn export(db: &Database, user: &str, mbox: &Path) -> Result<(), CliError> {
    let store = open_existing(db)?;
    let summary = archive::export(&store, user, mbox)?;
    say(format_args!(
        "exported {} ({} octets) of {user} to {}",
        messages(summary.messages as u64),
        summary.octets,
        mbox.display()
    ));
    Ok(())
}

/// `backup`: a consistent copy, while the server runs.
pub fn backup(db: &Database, dest: &Path) -> Result<(), CliError> {
    open_existing(db)?.backup_to(dest)?;
    say(format_args!(
        "backed up {} to {}",
        db.describe(),
        dest.display()
    ));
    Ok(())
}

/// `mailbox`: UID, size, received time and Subject of each stored message.
pub fn mailbox(db: &Database, user: &str) -> Result<(), CliError> {
    for entry in open_existing(db)?.mailbox(user)? {
        let subject = entry
            .subject
            .unwrap_or_default()
            .replace(char::is_control, " ");
        say(format_args!(
            "{}\t{}\t{}\t{subject}",
            entry.uid, entry.size, entry.received
        ));
    }
    Ok(())
}
