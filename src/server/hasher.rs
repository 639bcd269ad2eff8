//! A small pool of threads that verify argon2 passwords, one per core by
//! default. It bounds how many verifications run at once (each is a core
//! and ~19 MiB), queues the rest, and lets each thread reuse one argon2
//! buffer: allocating it per login made glibc keep freed buffers resident
//! (1.4 GB peak RSS under a login flood, against 45 MB with reuse). A
//! thread with no work for [`RELEASE_AFTER`] gives its buffer back, so a
//! server holding idle sessions does not hold login-time memory too.

use std::sync::Arc;
use std::time::Duration;

use smol::channel::{Receiver, Sender};
use smol::future;
use smol::Timer;

use crate::auth;
use crate::metrics::Metrics;
use crate::protocol::Secret;

/// How many verifications may wait for a thread before callers wait too.
const QUEUE: usize = 1024;

/// How long a hashing thread keeps its argon2 buffer without work.
const RELEASE_AFTER: Duration = Duration::from_secs(2);

struct Job {
    phc: std::sync::Arc<str>,
    password: Secret,
    reply: Sender<bool>,
}

/// Verifies passwords on dedicated threads; cheap to share by reference.
pub(super) struct HashPool {
    jobs: Sender<Job>,
    metrics: Arc<Metrics>,
}

impl HashPool {
    /// Starts `threads` hashing threads. They end when the pool is dropped
    /// (the job channel closes), so they are detached rather than joined.
    pub(super) fn start(threads: usize, metrics: Arc<Metrics>) -> std::io::Result<HashPool> {
        let (jobs, queue) = smol::channel::bounded::<Job>(QUEUE);
        for i in 0..threads.max(1) {
            let queue: Receiver<Job> = queue.clone();
            std::thread::Builder::new()
                .name(format!("poplite-hash-{i}"))
                .spawn(move || {
                    yield_to_sessions();
                    let mut memory = Vec::new();
                    while let Some(job) = next_job(&queue, &mut memory) {
                        let matched =
                            auth::verify_password_in(&job.phc, job.password.expose(), &mut memory);
                        let _ = job.reply.send_blocking(matched);
                    }
                })?;
        }
        Ok(HashPool { jobs, metrics })
    }

    /// Whether `password` matches `phc`; false if the pool has stopped.
    pub(super) async fn verify(&self, phc: std::sync::Arc<str>, password: Secret) -> bool {
        // Queued and timed from here until the answer (or until the
        // caller gives up waiting).
        let _verification = self.metrics.password_verification();
        let (reply, answer) = smol::channel::bounded(1);
        let job = Job {
            phc,
            password,
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return false;
        }
        answer.recv().await.unwrap_or(false)
    }
}

/// The hashing threads' nice value: under contention the scheduler gives
/// them about a tenth of a core's weight against a session's thread, so a
/// login flood cannot slow the sessions already logged in; with nothing
/// else to run they still get whole cores.
const HASHING_NICE_PRIORITY: u8 = 24; // thread-priority's 0..=99 scale: nice 9

/// Lowers this thread's priority to [`HASHING_NICE_PRIORITY`]; if the
/// system refuses, hashing just runs at normal priority.
fn yield_to_sessions() {
    use thread_priority::{set_current_thread_priority, ThreadPriority};
    let lowered = HASHING_NICE_PRIORITY
        .try_into()
        .map_err(|e| format!("{e:?}"))
        .and_then(|value| {
            set_current_thread_priority(ThreadPriority::Crossplatform(value))
                .map_err(|e| format!("{e:?}"))
        });
    if let Err(error) = lowered {
        log::debug!("hashing threads keep normal priority: {error}");
    }
}

/// The next job, or `None` once the pool is dropped. While none comes for
/// [`RELEASE_AFTER`], `memory` is given back to the system.
fn next_job(queue: &Receiver<Job>, memory: &mut Vec<argon2::Block>) -> Option<Job> {
    if !memory.is_empty() {
        let job = async { Some(queue.recv().await.ok()) };
        let quiet = async {
            Timer::after(RELEASE_AFTER).await;
            None
        };
        if let Some(job) = smol::block_on(future::or(job, quiet)) {
            return job;
        }
        // Unmapped at once: see `auth::verify_password_in`.
        *memory = Vec::new();
    }
    queue.recv_blocking().ok()
}
