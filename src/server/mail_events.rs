//! "Mail arrived": what wakes an API request waiting for a maildrop to
//! fill (`GET /api/v1/users/{name}/messages?min=N&timeout=S`) without it
//! asking the database in a loop.
//!
//! Two things wake a waiter, and it then counts its maildrop once more
//! (and a third ends every wait: the server stopping, [`MailEvents::stop`]):
//! - a delivery by this process, at once: every intake (`POST …/messages`,
//!   LMTP, SMTP) calls [`MailEvents::delivered`] with the recipient;
//! - a delivery by another process (`poplite deliver` on the same SQLite
//!   file, another node on PostgreSQL), within [`LOOK_EVERY`]: while any
//!   request waits, one thread asks the store whether anything at all was
//!   committed ([`ChangeWatch`]: SQLite's `PRAGMA data_version`,
//!   PostgreSQL's WAL position), and wakes every waiter if so. With no
//!   request waiting the thread sleeps on a channel and asks nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};
use smol::Timer;

use crate::storage::{ChangeWatch, Store};

/// How often the store is asked for other processes' commits while a
/// request waits: coarse, as a test polling for mail would be.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Where deliveries tell waiters; one per server (clones share it).
#[derive(Clone)]
pub(super) struct MailEvents {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    /// Per waited-for user (lower case, as lookups ignore case): how many
    /// requests wait, and the event they listen to.
    waiting: Mutex<HashMap<String, (usize, Arc<Event>)>>,
    /// Nudges the watching thread out of its idle sleep; `None` until
    /// the first wait starts it.
    watcher: Mutex<Option<mpsc::Sender<()>>>,
    /// The server is stopping: waits end now rather than hold it up.
    stopping: AtomicBool,
}

/// One request's registration as a waiter for a user's mail; dropping
/// it ends the registration.
pub(super) struct Waiting {
    inner: Arc<Inner>,
    key: String,
    event: Arc<Event>,
}

impl MailEvents {
    /// Events for deliveries to `store`.
    pub(super) fn new(store: Arc<Store>) -> MailEvents {
        MailEvents {
            inner: Arc::new(Inner {
                store,
                waiting: Mutex::default(),
                watcher: Mutex::default(),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// Mail was stored for `user` by this process: wakes whoever waits
    /// for it. Cheap when nobody waits (one map lookup).
    pub(super) fn delivered(&self, user: &str) {
        let waiting = lock(&self.inner.waiting);
        if let Some((_, event)) = waiting.get(&user.to_lowercase()) {
            event.notify(usize::MAX);
        }
    }

    /// The server is stopping: wakes every waiter, and
    /// [`Waiting::stopping`] tells them to answer now.
    pub(super) fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake_everyone();
    }

    /// Registers a waiter for `user`'s mail. Listen (with
    /// [`Waiting::listen`]) before counting the maildrop, so a delivery
    /// between the count and the wait is not missed.
    pub(super) fn wait_for(&self, user: &str) -> Waiting {
        let key = user.to_lowercase();
        let event = {
            let mut waiting = lock(&self.inner.waiting);
            let entry = waiting
                .entry(key.clone())
                .or_insert_with(|| (0, Arc::new(Event::new())));
            entry.0 += 1;
            Arc::clone(&entry.1)
        };
        self.nudge_watcher();
        Waiting {
            inner: Arc::clone(&self.inner),
            key,
            event,
        }
    }

    /// Looks at `user`'s maildrop with `look` until what it finds is
    /// `enough`, `deadline` passes or the server stops, and answers with
    /// the last look. Between looks it sleeps until woken (see the module
    /// documentation): it never asks the store in a loop.
    pub(super) async fn wait_until<T, E, Look>(
        &self,
        user: &str,
        deadline: Instant,
        mut look: impl FnMut() -> Look,
        enough: impl Fn(&T) -> bool,
    ) -> Result<T, E>
    where
        Look: Future<Output = Result<T, E>>,
    {
        let waiting = self.wait_for(user);
        loop {
            // Listening before looking: a delivery in between still wakes us.
            let arrived = waiting.listen();
            let found = look().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if enough(&found) || left.is_zero() || waiting.stopping() {
                return Ok(found);
            }
            smol::future::or(arrived, async {
                Timer::after(left).await;
            })
            .await;
        }
    }

    /// Wakes the watching thread, starting it the first time.
    fn nudge_watcher(&self) {
        let mut watcher = lock(&self.inner.watcher);
        if let Some(nudge) = watcher.as_ref() {
            if nudge.send(()).is_ok() {
                return;
            }
        }
        let (nudge, nudges) = mpsc::channel();
        let inner = Arc::downgrade(&self.inner);
        let started = std::thread::Builder::new()
            .name("poplite-mail-watch".into())
            .spawn(move || watch(inner, nudges));
        match started {
            Ok(_) => {
                let _ = nudge.send(());
                *watcher = Some(nudge);
            }
            // Waiters still wake for this process's deliveries and at
            // their timeout.
            Err(error) => log::error!("cannot watch for other processes' mail: {error}"),
        }
    }
}

impl Waiting {
    /// A listener that completes at the next delivery to this user (or
    /// the next commit seen by another process).
    pub(super) fn listen(&self) -> EventListener {
        self.event.listen()
    }

    /// Whether the server is stopping (see [`MailEvents::stop`]).
    pub(super) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = lock(&self.inner.waiting);
        if let Some(entry) = waiting.get_mut(&self.key) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                waiting.remove(&self.key);
            }
        }
    }
}

impl Inner {
    fn anyone_waits(&self) -> bool {
        !lock(&self.waiting).is_empty()
    }

    fn wake_everyone(&self) {
        for (_, event) in lock(&self.waiting).values() {
            event.notify(usize::MAX);
        }
    }
}

/// The watching thread: idle (blocked on `nudges`) while nobody waits,
/// else one look at the store's change counter per [`LOOK_EVERY`]. Ends
/// once the server's [`MailEvents`] is gone.
fn watch(inner: Weak<Inner>, nudges: mpsc::Receiver<()>) {
    let mut watch: Option<Box<dyn ChangeWatch>> = None;
    loop {
        let Some(events) = inner.upgrade() else {
            return;
        };
        if !events.anyone_waits() {
            drop(events);
            if nudges.recv().is_err() {
                return;
            }
            continue;
        }
        let changed = match watch.as_mut() {
            Some(watch) => watch.changed(),
            // A new watch's first look only takes the counter; waking
            // everyone then covers commits made before it.
            None => events.store.change_watch().and_then(|mut new| {
                new.changed()?;
                watch = Some(new);
                Ok(true)
            }),
        };
        match changed {
            Ok(true) => events.wake_everyone(),
            Ok(false) => {}
            Err(error) => {
                log::warn!("cannot look for mail other processes delivered: {error}");
                watch = None;
            }
        }
        drop(events);
        std::thread::sleep(LOOK_EVERY);
        while nudges.try_recv().is_ok() {}
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn woken(listener: EventListener, within: Duration) -> bool {
        smol::block_on(smol::future::or(
            async {
                listener.await;
                true
            },
            async {
                smol::Timer::after(within).await;
                false
            },
        ))
    }

    #[test]
    fn a_delivery_wakes_the_waiters_for_that_user_in_any_case_and_no_others() {
        let events = MailEvents::new(Arc::new(Store::open_in_memory().unwrap()));
        let bob = events.wait_for("bob");
        let carol = events.wait_for("carol");
        let (for_bob, for_carol) = (bob.listen(), carol.listen());
        events.delivered("BOB");
        assert!(woken(for_bob, Duration::from_secs(5)));
        // The watcher's first look wakes everyone once; then only commits do.
        let for_carol_later = {
            let _ = woken(for_carol, LOOK_EVERY * 3);
            carol.listen()
        };
        events.delivered("bob");
        assert!(!woken(for_carol_later, Duration::from_millis(50)));
    }

    #[test]
    fn a_commit_by_anyone_wakes_every_waiter_and_registrations_end_with_their_request() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let events = MailEvents::new(Arc::clone(&store));
        let waiting = events.wait_for("bob");
        // Past the watcher's first look, which wakes everyone.
        let _ = woken(waiting.listen(), LOOK_EVERY * 3);
        let listener = waiting.listen();
        store.add_user("bob", "$argon2id$x", None).unwrap();
        assert!(woken(listener, LOOK_EVERY * 5));
        drop(waiting);
        assert!(!events.inner.anyone_waits());
    }
}
