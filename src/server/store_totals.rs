//! What the store holds (users, messages, octets) for `/metrics`: read
//! with [`Backend::totals`](crate::storage::Backend::totals) on the
//! storage pool, at most once per `store_totals_interval` and only when
//! scraped, so scrapes never scan the store. A store that fails keeps
//! the last values (and says so in the log) and `poplite_store_ready`
//! goes to 0, as it does when a read is still unanswered one interval on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::future;

use crate::metrics::Metrics;
use crate::storage::Store;

/// How long a scrape waits for a refresh it started; a slower store
/// answers into the gauges for the next scrape.
const WAIT_AT_MOST: Duration = Duration::from_secs(1);

/// When the totals were last read, and whether a read is under way.
#[derive(Debug, Default)]
pub(super) struct TotalsCache {
    last_read: Mutex<Option<Instant>>,
    /// Shared with the read running on the storage pool, which clears it.
    reading: Arc<AtomicBool>,
}

impl TotalsCache {
    /// Brings the store gauges of `metrics` up to date if the last read
    /// is older than `every` and none is under way, waiting for that
    /// read up to [`WAIT_AT_MOST`].
    pub(super) async fn refresh(
        &self,
        store: &Arc<Store>,
        metrics: &Arc<Metrics>,
        every: Duration,
    ) {
        if !self.due(every, metrics) {
            return;
        }
        let (done, finished) = smol::channel::bounded::<()>(1);
        let (store, metrics) = (Arc::clone(store), Arc::clone(metrics));
        let reading = Arc::clone(&self.reading);
        // Detached: once started it finishes and lands in the gauges,
        // even if this scrape stops waiting.
        smol::unblock(move || {
            match store.totals() {
                Ok(totals) => {
                    metrics.set_store_totals(totals.users, totals.messages, totals.bytes);
                    metrics.set_store_ready(true);
                }
                Err(error) => {
                    log::warn!("metrics: cannot read the store's totals: {error}");
                    metrics.set_store_ready(false);
                }
            }
            reading.store(false, Ordering::Release);
            drop(done);
        })
        .detach();
        future::or(
            async {
                let _ = finished.recv().await;
            },
            async {
                smol::Timer::after(WAIT_AT_MOST).await;
            },
        )
        .await;
    }

    /// Whether a read should start now; if so, it counts as started.
    fn due(&self, every: Duration, metrics: &Metrics) -> bool {
        let mut last = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        if self.reading.swap(true, Ordering::AcqRel) {
            // The last read has not come back within an interval (and at
            // least [`WAIT_AT_MOST`]): a store that hangs is not ready.
            if last.is_some_and(|at| at.elapsed() >= WAIT_AT_MOST) {
                metrics.set_store_ready(false);
            }
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}
