//! `copy DEST`: everything in this store (users with their hashes, APOP
//! secrets and quotas; every message with its UID, arrival time and bytes)
//! into another, empty one, SQLite to PostgreSQL or back, in one
//! transaction, with progress on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use poplite::storage::{
    CopiedMessage, CopiedUser, CopySink, IdsHandedOut, MessageId, StorageError,
};

use super::database::{open_existing, Database};
use super::exit::CliError;
use super::say;

/// How often progress is reported while a large store is copied.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// `copy`: this store into `dest`, which must hold no user.
pub fn copy(
    db: &Database,
    dest: &Path,
    dest_password_file: Option<PathBuf>,
) -> Result<(), CliError> {
    let source = open_existing(db)?;
    let totals = source.users()?;
    let target = Database {
        location: dest.to_path_buf(),
        password_file: dest_password_file,
        busy_timeout: db.busy_timeout,
    };
    // A SQLite file this command creates is removed again if the copy
    // fails: nothing is left half-written.
    let created = target.url().is_none() && !dest.exists();
    let destination = target.open()?;
    let mut progress = Progress {
        users: 0,
        messages: 0,
        octets: 0,
        total_octets: totals.iter().map(|user| user.bytes).sum(),
        started: Instant::now(),
        reported: Instant::now(),
    };
    let copied = destination.restore(|sink| {
        source.copy_to(&mut Counting {
            sink,
            progress: &mut progress,
        })
    });
    drop(destination);
    if let Err(error) = copied {
        if created {
            remove_sqlite_files(dest);
        }
        return Err(error.into());
    }
    let seconds = progress.started.elapsed().as_secs_f64();
    say(format_args!(
        "copied {} and {} ({} octets) from {} to {} in {seconds:.1} s ({:.0} messages/s)",
        match progress.users {
            1 => "1 user".to_string(),
            n => format!("{n} users"),
        },
        poplite::mail::messages(progress.messages),
        progress.octets,
        db.describe(),
        target.describe(),
        progress.messages as f64 / seconds.max(1e-6),
    ));
    Ok(())
}

/// What has been copied so far.
struct Progress {
    users: u64,
    messages: u64,
    octets: u64,
    total_octets: u64,
    started: Instant,
    reported: Instant,
}

impl Progress {
    fn report(&mut self) {
        if self.reported.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.reported = Instant::now();
        let percent = self.octets * 100 / self.total_octets.max(1);
        let _ = writeln!(
            std::io::stderr(),
            "poplite: copying: {percent}% ({} of {} octets, {} users, {} message rows)",
            self.octets,
            self.total_octets,
            self.users,
            self.messages
        );
    }
}

/// A sink that counts what passes through it on the way to the real one.
struct Counting<'a> {
    sink: &'a mut dyn CopySink,
    progress: &'a mut Progress,
}

impl CopySink for Counting<'_> {
    fn ids_handed_out(&mut self, ids: IdsHandedOut) -> Result<(), StorageError> {
        self.sink.ids_handed_out(ids)
    }

    fn user(&mut self, user: &CopiedUser) -> Result<(), StorageError> {
        self.progress.users += 1;
        self.sink.user(user)
    }

    fn message(&mut self, message: &CopiedMessage) -> Result<(), StorageError> {
        self.progress.messages += 1;
        self.progress.report();
        self.sink.message(message)
    }

    fn chunk(&mut self, id: MessageId, seq: i64, data: &[u8]) -> Result<(), StorageError> {
        self.progress.octets += data.len() as u64;
        self.progress.report();
        self.sink.chunk(id, seq, data)
    }
}

/// Removes a SQLite database this command created, with its journal files.
fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}
