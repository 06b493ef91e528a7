//! A heartbeat for tokio's time driver, so that per-request deadlines do
//! not each wake it through its eventfd.
//!
//! tokio wakes the driver (an 8-byte `write` to an eventfd, then an
//! `epoll_wait` that returns at once) whenever a timer is registered that
//! expires before the wake-up the driver planned when it last parked. A
//! server idle between requests plans none, or only a far keep-alive, so
//! every request's deadlines wake it: two eventfd writes per call in the
//! gateway (its `request_timeout` and tonic's `grpc-timeout`, traced in
//! docs/benchmarks.md, "Gateway"), one in each service (tonic's server
//! deadline) and in each sidecar (the route timeout). With a tick pending every
//! [`HEARTBEAT`], the planned wake-up is never further away than that, a
//! request's deadline (whole seconds) is later, and registering it costs
//! no system call; the price is four idle wake-ups a second.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the heartbeat ticks; shorter than any request deadline.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// Keeps a timer pending on the current runtime until `stop`. One per
/// runtime is enough; a second one costs only its own ticks.
pub async fn heartbeat(stop: CancellationToken) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_until_stopped() {
        let stop = CancellationToken::new();
        let beat = tokio::spawn(heartbeat(stop.clone()));
        tokio::time::sleep(HEARTBEAT * 10).await;
        assert!(!beat.is_finished(), "the heartbeat ends only when stopped");
        stop.cancel();
        tokio::time::timeout(HEARTBEAT, beat)
            .await
            .expect("the heartbeat ends promptly once stopped")
            .expect("the heartbeat does not panic");
    }
}
