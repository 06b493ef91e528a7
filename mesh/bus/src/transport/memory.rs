//! Publishers that stay in memory: [`NullPublisher`] accepts and forgets
//! (the relay's throughput without a broker), [`MemoryPublisher`] records
//! what it is given and can be told to fail (tests).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::envelope::Envelope;
use crate::error::{BusError, Result};
use crate::transport::{Published, Publisher};

/// Accepts every event and keeps only a count.
#[derive(Debug, Default)]
pub struct NullPublisher {
    count: AtomicU64,
}

impl NullPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many events it has accepted.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Publisher for NullPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Result<Published> {
        self.count.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(Published::all())
    }
}

/// Records every accepted event, in publish order. While "down" it fails
/// whole batches, like an unreachable broker. Like a FIFO topic, once it
/// refuses an entry it refuses the rest of that aggregate's entries in the
/// same batch.
#[derive(Debug, Default, Clone)]
pub struct MemoryPublisher {
    events: Arc<Mutex<Vec<Envelope>>>,
    down: Arc<AtomicBool>,
    refuse: Arc<Mutex<Vec<String>>>,
}

impl MemoryPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events accepted so far.
    pub fn events(&self) -> Vec<Envelope> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Makes every publish fail (`true`) or succeed again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Refuses the next entry whose event id is `event_id`, once.
    pub fn refuse_once(&self, event_id: &str) {
        if let Ok(mut refuse) = self.refuse.lock() {
            refuse.push(event_id.to_owned());
        }
    }
}

#[async_trait::async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Result<Published> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Aws {
                service: "memory",
                operation: "publish",
                message: "broker is down".into(),
            });
        }
        let mut published = Published::all();
        let mut refuse = self
            .refuse
            .lock()
            .map_err(|_| BusError::Config("memory publisher poisoned".into()))?;
        let mut events = self
            .events
            .lock()
            .map_err(|_| BusError::Config("memory publisher poisoned".into()))?;
        let mut blocked = std::collections::HashSet::new();
        for (i, envelope) in batch.iter().enumerate() {
            if blocked.contains(envelope.aggregate()) {
                published
                    .failed
                    .push((i, "an earlier entry of its group was refused".into()));
            } else if let Some(at) = refuse.iter().position(|id| *id == envelope.id) {
                refuse.remove(at);
                blocked.insert(envelope.aggregate().to_owned());
                published.failed.push((i, "refused".into()));
            } else {
                events.push(envelope.clone());
            }
        }
        Ok(published)
    }
}
