//! Per-method admission: at most `limit` calls of a method upstream at
//! once, up to `queue` more waiting for a turn (for at most
//! `queue_timeout`), the rest refused at once with 429.
//!
//! Configured as `[gateway.routes."pkg.Service/Method"] concurrency`. Made
//! for expensive calls such as a login (an argon2 hash in auth): a burst of
//! them waits here, costing a parked task each, instead of piling onto the
//! service's cores in front of everybody else's requests. A token bucket
//! (`throttle`) caps the rate; this caps the work in flight, which is what
//! the other requests feel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Concurrency;

/// One method's turns.
#[derive(Debug)]
pub(crate) struct Admission {
    turns: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    queue_timeout: Duration,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `queue` calls were already waiting.
    QueueFull,
    /// No turn came within `queue_timeout`.
    Waited,
}

impl Admission {
    pub(crate) fn new(config: &Concurrency) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(config.limit as usize)),
            waiting: AtomicUsize::new(0),
            queue: config.queue as usize,
            queue_timeout: config.queue_timeout,
        }
    }

    /// How long a refused client should wait before trying again.
    pub(crate) fn retry_after(&self) -> Duration {
        self.queue_timeout
    }

    /// A turn, held until the permit is dropped (the call's answer, or
    /// the end of its stream).
    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(turn) = Arc::clone(&self.turns).try_acquire_owned() {
            return Ok(turn);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::QueueFull);
        }
        // Leaves the queue however the wait ends, the client going away
        // (this future dropped) included.
        let _waiting = Leave(&self.waiting);
        match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.turns).acquire_owned())
            .await
        {
            Ok(Ok(turn)) => Ok(turn),
            // The semaphore is never closed; a wait that ends without a
            // turn is a wait that took too long.
            Ok(Err(_)) | Err(_) => Err(Refused::Waited),
        }
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn admission(limit: u32, queue: u32) -> Arc<Admission> {
        Arc::new(Admission::new(&Concurrency {
            limit,
            queue,
            queue_timeout: Duration::from_secs(2),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn calls_past_the_limit_wait_their_turn_in_order() {
        let a = admission(1, 2);
        let first = a.enter().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..2 {
            let (a, tx) = (Arc::clone(&a), tx.clone());
            tokio::spawn(async move {
                let turn = a.enter().await;
                tx.send((n, turn.is_ok())).unwrap();
                drop(turn);
            });
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(rx.try_recv().is_err(), "both wait while the turn is taken");
        drop(first);
        assert_eq!(rx.recv().await, Some((0, true)));
        assert_eq!(rx.recv().await, Some((1, true)));
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once_and_a_long_wait_gives_up() {
        let a = admission(1, 1);
        let _held = a.enter().await.unwrap();
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.enter().await.map(drop) })
        };
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert_eq!(a.enter().await.map(drop), Err(Refused::QueueFull));
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        assert_eq!(waiter.await.unwrap(), Err(Refused::Waited));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(
            a.waiting.load(Ordering::Acquire),
            0,
            "the queue is empty again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_goes_away_leaves_the_queue() {
        let a = admission(1, 1);
        let held = a.enter().await.unwrap();
        let gone = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.enter().await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert_eq!(a.waiting.load(Ordering::Acquire), 1);
        gone.abort();
        let _ = gone.await;
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
        drop(held);
        assert!(a.enter().await.is_ok(), "the turn went back");
    }
}
