//! The task that keeps this node's maildrop leases (see
//! `auth/maildrop_lease.rs`): renewed three times a lease, off the
//! executor, until the server stops.

use std::sync::Arc;

use smol::channel::{Receiver, Sender};
use smol::Timer;

use crate::auth::LeaseTable;
use crate::storage::Store;

/// Renews `leases` until `stop` closes; `_alive` tells `run` it is gone.
pub(super) async fn renew_leases(
    leases: Arc<LeaseTable>,
    store: Arc<Store>,
    stop: Receiver<()>,
    _alive: Sender<()>,
) {
    loop {
        let tick = async {
            Timer::after(leases.renew_every()).await;
            true
        };
        // `stop` only ever closes: any answer from it means stop.
        let stopped = async {
            let _ = stop.recv().await;
            false
        };
        if !smol::future::or(stopped, tick).await {
            return;
        }
        let (table, db) = (Arc::clone(&leases), Arc::clone(&store));
        smol::unblock(move || table.renew(&db)).await;
    }
}
