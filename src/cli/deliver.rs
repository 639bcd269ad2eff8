//! `poplite deliver`: messages from files or stdin into a maildrop, all or
//! none, streamed; also what `serve --seed` delivers with.

use std::io::Read;
use std::path::PathBuf;

use super::args::DeliverArgs;
use super::database::{open_existing, Database};
use super::exit::CliError;
use super::say;
use poplite::storage::{Incoming, IngestError, Received, Store};

/// `deliver`: an unknown user fails before a message is read.
pub fn deliver(db: &Database, args: DeliverArgs) -> Result<(), CliError> {
    let store = open_existing(db)?;
    // An unknown user fails before the message is even read.
    store.user(&args.user)?;
    let inputs = match args.files.is_empty() {
        true => vec![Input::Stdin],
        false => args.files.into_iter().map(Input::File).collect(),
    };
    for uid in deliver_inputs(&store, &args.user, &inputs, args.max_message_size)? {
        say(format_args!("{uid}"));
    }
    Ok(())
}

/// Where `deliver` and `--seed` read a message from.
pub enum Input {
    Stdin,
    File(PathBuf),
}

/// Takes each input in as it is read (never holding more than a megabyte
/// of one, see `storage::ingest`), then stores them all for `user` in one
/// transaction: all or none. Returns their UIDs.
pub fn deliver_inputs(
    store: &Store,
    user: &str,
    inputs: &[Input],
    limit: u64,
) -> Result<Vec<String>, CliError> {
    let mut taken = Vec::with_capacity(inputs.len());
    let mut outcome = Ok(());
    for input in inputs {
        match take_in(store, input, limit) {
            Ok(received) => taken.push(received),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let published = outcome.and_then(|()| {
        let all: Vec<&Received> = taken.iter().collect();
        Ok(store.publish_received(user, &all)?)
    });
    for received in taken {
        store.discard_received(received);
    }
    published
}

/// Takes one message in from `input`, as it is read.
fn take_in(store: &Store, input: &Input, limit: u64) -> Result<Received, CliError> {
    let (mut reader, source): (Box<dyn Read>, String) = match input {
        Input::Stdin => (Box::new(std::io::stdin().lock()), "stdin".to_string()),
        Input::File(path) => {
            let source = path.display().to_string();
            let open_error = |error| CliError::Open {
                input: source.clone(),
                error,
            };
            let file = std::fs::File::open(path).map_err(open_error)?;
            if !file.metadata().map_err(open_error)?.is_file() {
                return Err(open_error(std::io::Error::other("not a regular file")));
            }
            (Box::new(file), source)
        }
    };
    let ingest_error = |error| match error {
        IngestError::Message(error) => CliError::Message {
            input: source.clone(),
            error,
        },
        IngestError::Storage(error) => CliError::Storage(error),
    };
    let mut incoming = Incoming::new("", limit);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                incoming.discard(store);
                return Err(CliError::Read {
                    input: source.clone(),
                    error,
                });
            }
        };
        if let Err(error) = incoming.write(store, &buf[..n]) {
            incoming.discard(store);
            return Err(ingest_error(error));
        }
    }
    incoming.finish(store, false).map_err(ingest_error)
}
