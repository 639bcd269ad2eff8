//! `--apop auto`: whether the greeting offers APOP, exact at every
//! greeting, also when another process added or removed the last APOP
//! user a moment ago.
//!
//! One thread of its own holds an [`ApopWatch`] and answers the
//! connections' questions in batches: every question that arrived while
//! it was busy is answered by the next check, which starts after it
//! arrived. So a burst of connections costs one cheap check per batch,
//! no blocking thread per connect, and no connection ever gets an answer
//! older than itself.

use std::sync::Arc;

use smol::channel::{Receiver, Sender};

use super::ServerError;
use crate::storage::{ApopWatch, Store};

/// Where connections ask; the watching thread ends when this is dropped.
pub(super) struct ApopUsers {
    questions: Sender<Sender<bool>>,
}

impl ApopUsers {
    /// Opens the watch (off the executor) and starts its thread.
    pub(super) async fn start(store: &Arc<Store>) -> Result<ApopUsers, ServerError> {
        let store = Arc::clone(store);
        let watch = smol::unblock(move || store.apop_watch()).await?;
        let (questions, asked) = smol::channel::unbounded();
        std::thread::Builder::new()
            .name("poplite-apop".into())
            .spawn(move || answer(watch, asked))
            .map_err(|source| ServerError::Threads { source })?;
        Ok(ApopUsers { questions })
    }

    /// True when some user has an APOP secret now (false, logged, when
    /// the database cannot say: APOP is then off for this connection).
    pub(super) async fn any(&self) -> bool {
        let (reply, answer) = smol::channel::bounded(1);
        if self.questions.send(reply).await.is_err() {
            log::error!("cannot check for APOP users: the watching thread is gone");
            return false;
        }
        answer.recv().await.unwrap_or(false)
    }
}

/// The watching thread: answers every question waiting, with one check.
fn answer(mut watch: Box<dyn ApopWatch>, asked: Receiver<Sender<bool>>) {
    while let Ok(first) = asked.recv_blocking() {
        let mut waiting = vec![first];
        while let Ok(more) = asked.try_recv() {
            waiting.push(more);
        }
        let any = watch.any_apop_secret().unwrap_or_else(|error| {
            log::error!("cannot check for APOP users: {error}");
            false
        });
        for reply in waiting {
            // A connection that went away meanwhile needs no answer.
            let _ = reply.try_send(any);
        }
    }
}
