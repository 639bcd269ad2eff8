//! Fairness between connections on the executor's threads.
//!
//! A task gives its thread back only when it waits, and a socket that
//! always has data ready never makes it wait: without a budget, a client
//! streaming garbage or pipelining commands as fast as the server answers
//! kept a thread to itself, and two such clients delayed every other
//! client's greeting by seconds. Each connection therefore spends a
//! budget as it reads and answers, and yields to the other tasks once a
//! turn's worth is gone, as tokio's cooperative budget does.

use smol::future;

/// What one turn may cost before the task yields: about this many octets
/// read, discarded or answered. 64 KiB is a few dozen microseconds of
/// work, so a turn is short against a network round trip, and a bulk
/// transfer still yields only once per 64 KiB.
const PER_TURN: usize = 64 * 1024;

/// The cost of answering one command line, whatever its length: the
/// session, the reply and its encoding. 512 lets a pipelining client
/// have about a hundred commands answered per turn.
pub(super) const LINE_COST: usize = 512;

/// One connection's budget for the current turn.
#[derive(Debug)]
pub(super) struct Budget {
    left: usize,
}

impl Budget {
    /// A full budget.
    pub(super) fn new() -> Budget {
        Budget { left: PER_TURN }
    }

    /// Spends `cost`; once the turn's budget is used up, yields to the
    /// other tasks first and starts a new turn.
    pub(super) async fn spend(&mut self, cost: usize) {
        match self.left.checked_sub(cost) {
            Some(left) if left > 0 => self.left = left,
            _ => {
                self.left = PER_TURN;
                future::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_busy_task_lets_another_run_within_one_turn() {
        // One thread: the busy task never waits for I/O, so only its
        // budget can let the other task run before it finishes.
        let executor = smol::LocalExecutor::new();
        let ran = Arc::new(AtomicBool::new(false));
        let seen_by_busy = smol::block_on(executor.run(async {
            let flag = Arc::clone(&ran);
            let busy = executor.spawn(async move {
                let mut budget = Budget::new();
                for _ in 0..PER_TURN / LINE_COST + 1 {
                    budget.spend(LINE_COST).await;
                }
                flag.load(Ordering::SeqCst)
            });
            let flag = Arc::clone(&ran);
            let other = executor.spawn(async move { flag.store(true, Ordering::SeqCst) });
            let seen = busy.await;
            other.await;
            seen
        }));
        assert!(seen_by_busy, "the other task ran while the busy one worked");
    }
}
