//! The inbox's claim under concurrency: many copies of one event delivered
//! at the same moment to subscriber replicas that share an inbox run the
//! handler once; a copy after a retry runs again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudsec_bus::{
    Backoff, Delivery, Envelope, Inbox, Outcome, Queue, Subscriber, SubscriberConfig, handler_fn,
};
use tokio_util::sync::CancellationToken;

use crate::support::{Backend, created, with_db};

/// What the subscriber did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settled {
    Deleted,
    Hidden(Duration),
    DeadLettered,
}

/// A queue that hands all of its messages out in the first receive, as a
/// broker does when duplicates arrive together.
#[derive(Debug)]
struct Burst {
    ready: Mutex<VecDeque<Delivery>>,
    settled: Mutex<Vec<(String, Settled)>>,
}

impl Burst {
    fn new(deliveries: Vec<Delivery>) -> Arc<Self> {
        Arc::new(Self {
            ready: Mutex::new(deliveries.into()),
            settled: Mutex::default(),
        })
    }

    fn settled(&self) -> Vec<(String, Settled)> {
        self.settled.lock().unwrap().clone()
    }

    fn settle(&self, d: &Delivery, how: Settled) {
        self.settled
            .lock()
            .unwrap()
            .push((d.message_id.clone(), how));
    }
}

#[async_trait::async_trait]
impl Queue for Burst {
    fn name(&self) -> &str {
        "burst"
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        _: Duration,
    ) -> cloudsec_bus::Result<Vec<Delivery>> {
        let batch: Vec<Delivery> = {
            let mut ready = self.ready.lock().unwrap();
            let n = max.min(ready.len());
            ready.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::time::sleep(wait).await;
        }
        Ok(batch)
    }

    async fn delete(&self, d: &Delivery) -> cloudsec_bus::Result<()> {
        self.settle(d, Settled::Deleted);
        Ok(())
    }

    async fn set_visibility(&self, d: &Delivery, timeout: Duration) -> cloudsec_bus::Result<()> {
        self.settle(d, Settled::Hidden(timeout));
        Ok(())
    }

    async fn dead_letter(&self, d: &Delivery, _: &str) -> cloudsec_bus::Result<()> {
        self.settle(d, Settled::DeadLettered);
        Ok(())
    }
}

fn copy(event: &Envelope, message_id: String) -> Delivery {
    Delivery {
        message_id,
        receipt: String::new(),
        receive_count: 1,
        group: None,
        body: event.to_json(),
        event: Ok(event.clone()),
        attributes: Default::default(),
    }
}

fn config() -> SubscriberConfig {
    SubscriberConfig {
        // Every copy of a replica's share is handled at once.
        max_in_flight: 32,
        batch_size: 10,
        wait_time: Duration::from_millis(50),
        visibility_timeout: Duration::from_secs(30),
        retry: Backoff::new(Duration::from_millis(10), Duration::from_millis(10)),
        handler_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Runs one subscriber per queue over the shared inbox until every message
/// of every queue is settled.
async fn run(
    queues: &[Arc<Burst>],
    inbox: &Inbox,
    outcome: impl Fn(usize) -> Outcome + Send + Sync + 'static,
) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = Arc::new(outcome);
    let stop = CancellationToken::new();
    let mut replicas = Vec::new();
    for queue in queues {
        let calls = calls.clone();
        let outcome = outcome.clone();
        let handler = handler_fn(move |_, _| {
            let calls = calls.clone();
            let outcome = outcome.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                // Long enough for every copy to arrive while it runs.
                tokio::time::sleep(Duration::from_millis(200)).await;
                outcome(n)
            }
        });
        let subscriber = Subscriber::from_arcs(queue.clone(), Arc::new(handler), config())
            .unwrap()
            .with_inbox(inbox.clone());
        replicas.push(tokio::spawn(subscriber.run(stop.clone())));
    }
    let total: usize = queues.iter().map(|q| q.ready.lock().unwrap().len()).sum();
    for _ in 0..600 {
        let settled: usize = queues.iter().map(|q| q.settled().len()).sum();
        if settled >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    for replica in replicas {
        replica.await.unwrap().unwrap();
    }
    calls.load(Ordering::SeqCst)
}

async fn fifty_copies_run_once(backend: Backend) {
    with_db(backend, |db| async move {
        let inbox = Inbox::new(db, "replicated");
        let event = created("concurrent");
        let copies = |replica: usize| {
            (0..25)
                .map(|i| copy(&event, format!("m-{replica}-{i}")))
                .collect::<Vec<_>>()
        };
        let queues = [Burst::new(copies(0)), Burst::new(copies(1))];
        let calls = run(&queues, &inbox, |_| Outcome::Ack).await;
        assert_eq!(calls, 1, "the handler ran once for 50 concurrent copies");
        let settled: Vec<_> = queues.iter().flat_map(|q| q.settled()).collect();
        assert_eq!(settled.len(), 50, "{settled:?}");
        assert!(
            settled.iter().all(|(_, how)| *how == Settled::Deleted),
            "every copy is deleted, none dead-lettered: {settled:?}"
        );
        assert!(inbox.seen(&event.id).await.unwrap());

        // A handler that asks for a retry releases its claim: the next
        // copy runs again, and only one of those copies does.
        let event = created("retried");
        let first = Burst::new(vec![copy(&event, "r-0".into())]);
        let calls = run(std::slice::from_ref(&first), &inbox, |_| Outcome::retry()).await;
        assert_eq!(calls, 1);
        assert!(!inbox.seen(&event.id).await.unwrap());
        let later = [
            Burst::new((0..5).map(|i| copy(&event, format!("r-a{i}"))).collect()),
            Burst::new((0..5).map(|i| copy(&event, format!("r-b{i}"))).collect()),
        ];
        let calls = run(&later, &inbox, |_| Outcome::Ack).await;
        assert_eq!(calls, 1, "after the retry, one copy ran again");
        assert!(inbox.seen(&event.id).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_copies_run_the_handler_once_sqlite() {
    fifty_copies_run_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_copies_run_the_handler_once_postgres() {
    fifty_copies_run_once(Backend::Postgres).await;
}

#[tokio::test]
async fn a_claim_whose_holder_died_expires() {
    with_db(Backend::Sqlite, |db| async move {
        use cloudsec_bus::Claim;
        let inbox = Inbox::new(db, "crashy");
        let short = Duration::from_millis(50);
        let Claim::Acquired(first) = inbox.claim("e1", "m1", short).await.unwrap() else {
            panic!("the first claim is acquired");
        };
        // A second copy while the first is held: busy, naming the holder.
        match inbox.claim("e1", "m2", short).await.unwrap() {
            Claim::Busy { message_id, .. } => assert_eq!(message_id, "m1"),
            other => panic!("expected busy, got {other:?}"),
        }
        // The holder dies (never extends); its lease runs out.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let Claim::Acquired(second) = inbox.claim("e1", "m2", short).await.unwrap() else {
            panic!("an expired claim is taken over");
        };
        // The dead holder's late release or completion changes nothing.
        inbox.release("e1", &first).await.unwrap();
        inbox.complete("e1", &first).await.unwrap();
        assert!(!inbox.seen("e1").await.unwrap());
        assert!(inbox.extend("e1", &second, short).await.unwrap());
        inbox.complete("e1", &second).await.unwrap();
        assert!(inbox.seen("e1").await.unwrap());
        assert_eq!(
            inbox.claim("e1", "m3", short).await.unwrap(),
            Claim::Handled
        );
    })
    .await;
}
