//! The event side: the queue the service needs and the handler that turns
//! each delivered event into an audit record.
//!
//! Outcomes: a recorded (or already recorded) event is acknowledged; an
//! event without a tenant cannot be placed in any chain and goes to the
//! dead letters at once; anything else that fails is the database, so the
//! event is retried with the subscriber's backoff.

use cloudsec_bus::{DeliveryInfo, Envelope, Handler, Outcome, QueueSpec, handler_fn};
use tracing::{Instrument, info_span};

use crate::config::AuditConfig;
use crate::store::{Appended, AuditLog};

/// Receives before an event goes to the dead letters. Higher than the
/// bus's default of 5: with the backoff doubling from 1 s, 5 receives are
/// spent in about 15 s of database outage, while 20 span hours, and an
/// audit event in the dead letters is one the log is missing.
pub const MAX_RECEIVES: u32 = 20;

/// The audit queue: every event type, not FIFO (each tenant's chain is
/// ordered by the order of recording, not of delivery).
pub fn queue_spec(config: &AuditConfig) -> QueueSpec {
    QueueSpec::new(config.queue.clone(), &[]).max_receives(MAX_RECEIVES)
}

/// The handler that appends every event to `log`.
pub fn handler(log: AuditLog) -> impl Handler {
    handler_fn(move |event: Envelope, _: DeliveryInfo| {
        let log = log.clone();
        async move { handle(&log, event).await }
    })
}

/// Records one event; see the module docs for the outcomes.
pub async fn handle(log: &AuditLog, event: Envelope) -> Outcome {
    let span = info_span!(
        "audit.handle",
        event_id = %event.id,
        event_type = %event.event_type,
        tenant = %event.tenant,
    );
    // Under the bus subscriber this span is a child of its `bus.handle`,
    // which already continues the cause's trace. Called any other way it
    // would start a trace of its own, so it continues the cause's itself.
    if tracing::Span::current().is_none()
        && let Some(traceparent) = &event.traceparent
    {
        cloudsec_bus::trace::continue_trace(&span, traceparent);
    }
    async {
        if event.tenant.is_empty() {
            tracing::warn!("event names no tenant; dead-lettering it");
            return Outcome::dead_letter("event names no tenant");
        }
        match log.append(&event).await {
            Ok(Appended::Recorded(record)) => {
                tracing::info!(seq = record.seq, "event recorded");
                Outcome::Ack
            }
            Ok(Appended::Duplicate) => {
                tracing::debug!("event already recorded");
                Outcome::Ack
            }
            Err(error) => {
                tracing::warn!(%error, "recording the event failed; retrying it later");
                Outcome::retry()
            }
        }
    }
    .instrument(span)
    .await
}
