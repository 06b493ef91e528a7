//! A circuit breaker around one endpoint.
//!
//! ```text
//!          N failures / failure rate          probation ends
//!  Closed ───────────────────────────▶ Open ────────────────▶ HalfOpen
//!    ▲                                  ▲                        │ one probe
//!    └──────── probe succeeds ──────────┴── probe fails ─────────┘
//!                                         (probation doubles)
//! ```
//!
//! The breaker gates *readiness*: while open, and while its single probe is
//! in flight, `poll_ready` is `Pending` (woken when probation ends or the
//! probe answers). A p2c balancer then picks other endpoints and keeps this
//! one; an error from `poll_ready` would instead make it evict the endpoint.
//!
//! A failure is an error, an HTTP 5xx, or a `grpc-status` in
//! `failure_codes` found in the response headers (where servers put error
//! statuses). A request dropped before it is answered (the caller went away,
//! a deadline fired) counts neither way, since clients cancel for their own
//! reasons; only a dropped probe counts as failed, so that half-open always
//! ends. An endpoint that black-holes requests is therefore not caught by
//! the breaker but by the route timeout and peak-EWMA, which steers traffic
//! away from it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Deserializer};
use tokio::time::{Instant, Sleep};
use tonic::Code;

use super::{Backoff, BoxError, BreakerOpen, Labels, grpc_status, with_label};

/// An endpoint's circuit breaker policy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker; 0 turns this test off.
    pub consecutive_failures: u32,
    /// Also open when too large a share of recent requests failed.
    pub failure_rate: Option<FailureRate>,
    /// How long the breaker stays open before a probe: jittered, doubling
    /// with each failed probe, back to `base` once closed.
    pub probation: Backoff,
    /// The `grpc-status` codes that count as failures.
    #[serde(deserialize_with = "super::codes::deserialize")]
    pub failure_codes: Vec<Code>,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: None,
            probation: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            failure_codes: vec![
                Code::Unavailable,
                Code::Internal,
                Code::Unknown,
                Code::DataLoss,
                Code::DeadlineExceeded,
            ],
        }
    }
}

/// Opens the breaker when at least `threshold` of the requests answered in
/// the last `window` failed, once there were at least `min_requests`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FailureRate {
    /// The failing share that opens the breaker, in `(0, 1]`.
    #[serde(deserialize_with = "threshold")]
    pub threshold: f64,
    /// Fewer requests than this in the window say nothing.
    pub min_requests: u32,
    /// How far back requests count.
    #[serde(deserialize_with = "window")]
    pub window: Duration,
}

impl Default for FailureRate {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
        }
    }
}

fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let t = f64::deserialize(d)?;
    if !(t > 0.0 && t <= 1.0) {
        return Err(serde::de::Error::custom(format!(
            "failure rate threshold {t} is not in (0, 1]"
        )));
    }
    Ok(t)
}

fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let w: Duration = humantime_serde::deserialize(d)?;
    if w < Duration::from_millis(100) {
        return Err(serde::de::Error::custom(
            "failure rate window must be at least 100ms",
        ));
    }
    Ok(w)
}

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// No requests until probation ends.
    Open,
    /// Probation ended: one probe request decides.
    HalfOpen,
}

impl BreakerState {
    fn as_u8(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    fn from_u8(n: u8) -> Self {
        match n {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Reads a breaker's state without locking.
///
/// Open becomes HalfOpen when the endpoint is next polled for readiness
/// after probation, so a handle may show Open a little past probation.
#[derive(Clone, Debug)]
pub struct BreakerHandle {
    state: Arc<AtomicU8>,
}

impl BreakerHandle {
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }
}

cloudsec_runtime::metric_families! {
    /// The breaker's metric families (`breaker_transitions_total{to}`,
    /// `breaker_open_endpoints`); register once per proxy.
    pub struct BreakerMetrics {
        transitions: Family<Labels, Counter> = "breaker_transitions",
            "endpoint circuit breaker state changes, by the state entered";
        /// Endpoints whose breaker is not closed, per label set: a breaker
        /// adds one when it leaves Closed and takes it back when it returns
        /// (or is dropped), so endpoints sharing labels add up.
        open: Family<Labels, Gauge> = "breaker_open_endpoints",
            "endpoints whose circuit breaker is open or half-open";
    }
}

impl BreakerMetrics {
    /// Endpoints with these labels whose breaker is not closed.
    pub fn open(&self, labels: &Labels) -> i64 {
        self.open.get_or_create(labels).get()
    }

    /// The count of transitions into `to`, with these labels.
    pub fn transitions(&self, labels: &Labels, to: BreakerState) -> u64 {
        self.transitions
            .get_or_create(&with_label(labels, "to", to.as_str()))
            .get()
    }
}

/// Wraps one endpoint's service in a circuit breaker.
#[derive(Clone, Debug)]
pub struct BreakerLayer {
    policy: Arc<BreakerPolicy>,
    metrics: BreakerMetrics,
    labels: Labels,
}

impl BreakerLayer {
    /// `labels` (e.g. `("endpoint", "10.0.0.7:8443")`) go on the metrics of
    /// every breaker this layer makes.
    pub fn new(policy: BreakerPolicy, metrics: &BreakerMetrics, labels: Labels) -> Self {
        Self {
            policy: Arc::new(policy),
            metrics: metrics.clone(),
            labels,
        }
    }
}

impl<S> tower::Layer<S> for BreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        let counter = |to: BreakerState| {
            self.metrics
                .transitions
                .get_or_create(&with_label(&self.labels, "to", to.as_str()))
                .clone()
        };
        let shared = Shared {
            policy: self.policy.clone(),
            state: Arc::new(AtomicU8::new(BreakerState::Closed.as_u8())),
            to_closed: counter(BreakerState::Closed),
            to_open: counter(BreakerState::Open),
            to_half_open: counter(BreakerState::HalfOpen),
            open: self.metrics.open.get_or_create_owned(&self.labels),
            core: Mutex::new(Core {
                phase: Phase::Closed,
                consecutive: 0,
                window: Window::default(),
                opened: 0,
                waiters: Vec::new(),
            }),
        };
        Breaker {
            inner,
            shared: Arc::new(shared),
            sleep: None,
            admitted: false,
        }
    }
}

/// See [`BreakerLayer`].
#[derive(Debug)]
pub struct Breaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Wakes `poll_ready` when probation ends. Made on first use, since a
    /// timer needs a runtime and the layer may be applied outside one.
    sleep: Option<Pin<Box<Sleep>>>,
    /// `poll_ready` admitted the next `call`.
    admitted: bool,
}

/// Clones share the breaker's state; each has its own readiness.
impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            sleep: None,
            admitted: false,
        }
    }
}

impl<S> Breaker<S> {
    /// A handle on this breaker's state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            state: self.shared.state.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    policy: Arc<BreakerPolicy>,
    /// A lock-free copy of the phase, for handles.
    state: Arc<AtomicU8>,
    to_closed: Counter,
    to_open: Counter,
    to_half_open: Counter,
    open: Gauge,
    core: Mutex<Core>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // An endpoint that goes away open no longer counts.
        if BreakerState::from_u8(self.state.load(Ordering::Acquire)) != BreakerState::Closed {
            self.open.dec();
        }
    }
}

#[derive(Debug)]
struct Core {
    phase: Phase,
    /// Failures since the last success, while closed.
    consecutive: u32,
    window: Window,
    /// Times opened since last closed: the probation's exponent.
    opened: u32,
    /// Tasks (clones of the service) waiting for the probe to finish.
    waiters: Vec<Waker>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // Every update is a plain assignment, so a poisoned state is still
        // consistent.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_failure<B>(&self, res: &http::Response<B>) -> bool {
        res.status().is_server_error()
            || grpc_status(res).is_some_and(|code| self.policy.failure_codes.contains(&code))
    }

    fn set(&self, core: &mut Core, phase: Phase) {
        core.phase = phase;
        let (state, counter) = match phase {
            Phase::Closed => (BreakerState::Closed, &self.to_closed),
            Phase::Open { .. } => (BreakerState::Open, &self.to_open),
            Phase::HalfOpen { .. } => (BreakerState::HalfOpen, &self.to_half_open),
        };
        let before = BreakerState::from_u8(self.state.swap(state.as_u8(), Ordering::AcqRel));
        if before != state {
            counter.inc();
            match (
                before == BreakerState::Closed,
                state == BreakerState::Closed,
            ) {
                (true, false) => drop(self.open.inc()),
                (false, true) => drop(self.open.dec()),
                _ => {}
            }
            tracing::debug!(state = state.as_str(), "circuit breaker changed state");
        }
    }

    fn open(&self, core: &mut Core, now: Instant) {
        let probation = self.policy.probation.equal_jitter(core.opened);
        core.opened = core.opened.saturating_add(1);
        core.consecutive = 0;
        core.window.clear();
        let until = now
            .checked_add(probation)
            .or_else(|| now.checked_add(self.policy.probation.max))
            .unwrap_or(now);
        self.set(core, Phase::Open { until });
    }

    fn close(&self, core: &mut Core) {
        core.opened = 0;
        core.consecutive = 0;
        core.window.clear();
        self.set(core, Phase::Closed);
    }

    /// Takes in one answer.
    fn record(&self, failed: bool, probe: bool) {
        let mut core = self.lock();
        let now = Instant::now();
        match core.phase {
            Phase::Closed => {
                if failed {
                    core.consecutive = core.consecutive.saturating_add(1);
                } else {
                    core.consecutive = 0;
                }
                if let Some(rate) = &self.policy.failure_rate {
                    core.window.record(now, rate.window, failed);
                }
                if failed && self.tripped(&core) {
                    self.open(&mut core, now);
                }
            }
            Phase::HalfOpen { probing: true } if probe => {
                if failed {
                    self.open(&mut core, now);
                } else {
                    self.close(&mut core);
                }
                for waiter in core.waiters.drain(..) {
                    waiter.wake();
                }
            }
            // Late answers to requests let through before the breaker opened
            // say nothing about the endpoint now.
            Phase::Open { .. } | Phase::HalfOpen { .. } => {}
        }
    }

    fn tripped(&self, core: &Core) -> bool {
        let threshold = self.policy.consecutive_failures;
        if threshold > 0 && core.consecutive >= threshold {
            return true;
        }
        self.policy.failure_rate.is_some_and(|rate| {
            let (total, failed) = core.window.totals();
            total >= u64::from(rate.min_requests.max(1))
                && failed as f64 >= rate.threshold * total as f64
        })
    }
}

/// Answers over a sliding window, in ten buckets so memory stays bounded.
#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    total: u64,
    failed: u64,
}

impl Window {
    const BUCKETS: u32 = 10;

    fn record(&mut self, now: Instant, window: Duration, failed: bool) {
        let width = window / Self::BUCKETS;
        while self
            .buckets
            .front()
            .is_some_and(|b| now.saturating_duration_since(b.start) >= window)
        {
            self.buckets.pop_front();
        }
        let current = match self.buckets.back_mut() {
            Some(b) if now.saturating_duration_since(b.start) < width => b,
            _ => {
                self.buckets.push_back(Bucket {
                    start: now,
                    total: 0,
                    failed: 0,
                });
                let Some(b) = self.buckets.back_mut() else {
                    return;
                };
                b
            }
        };
        current.total += 1;
        current.failed += u64::from(failed);
    }

    fn totals(&self) -> (u64, u64) {
        self.buckets
            .iter()
            .fold((0, 0), |(t, f), b| (t + b.total, f + b.failed))
    }

    fn clear(&mut self) {
        self.buckets.clear();
    }
}

impl<S, Req, RB> tower::Service<Req> for Breaker<S>
where
    S: tower::Service<Req, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            let mut core = self.shared.lock();
            match core.phase {
                Phase::Closed | Phase::HalfOpen { probing: false } => break,
                Phase::HalfOpen { probing: true } => {
                    // The probe's answer wakes us.
                    if !core.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        core.waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Phase::Open { until } => {
                    drop(core);
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                    if sleep.deadline() != until {
                        sleep.as_mut().reset(until);
                    }
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Probation is over (the timer, not a clock read, says
                    // so: it cannot disagree with itself and spin).
                    let mut core = self.shared.lock();
                    if core.phase == (Phase::Open { until }) {
                        self.shared
                            .set(&mut core, Phase::HalfOpen { probing: false });
                    }
                }
            }
        }
        ready!(self.inner.poll_ready(cx)).map_err(Into::into)?;
        self.admitted = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if !std::mem::take(&mut self.admitted) {
            // Called without readiness: the inner service was not driven
            // ready either, so it must not be called.
            return ResponseFuture {
                inner: None,
                recorder: None,
            };
        }
        let (probe, opened) = {
            let mut core = self.shared.lock();
            match core.phase {
                Phase::HalfOpen { probing: false } => {
                    core.phase = Phase::HalfOpen { probing: true };
                    (true, false)
                }
                Phase::Open { .. } => (false, true),
                _ => (false, false),
            }
        };
        // Readiness granted while closed does not outlive the breaker
        // opening: a balancer or queue may hold it for a while, and the
        // endpoint has just proved it is failing.
        if opened {
            return ResponseFuture {
                inner: None,
                recorder: None,
            };
        }
        ResponseFuture {
            inner: Some(self.inner.call(req)),
            recorder: Some(Recorder {
                shared: self.shared.clone(),
                probe,
                done: false,
            }),
        }
    }
}

/// Reports one request's outcome exactly once; a request dropped before its
/// answer reports a failure.
#[derive(Debug)]
struct Recorder {
    shared: Arc<Shared>,
    probe: bool,
    done: bool,
}

impl Recorder {
    fn finish(mut self, failed: bool) {
        self.done = true;
        self.shared.record(failed, self.probe);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A request dropped unanswered was cancelled by its caller (a client
        // going away, a deadline): no evidence against the endpoint, and
        // counting it let ordinary cancellations open breakers. A cancelled
        // probe is the exception: it must end the half-open state one way.
        if !self.done && self.probe {
            self.shared.record(true, true);
        }
    }
}

pin_project_lite::pin_project! {
    /// The endpoint's answer, recorded by the breaker.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        recorder: Option<Recorder>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(BreakerOpen.into()));
        };
        let result = ready!(inner.poll(cx)).map_err(Into::into);
        if let Some(recorder) = this.recorder.take() {
            let failed = match &result {
                Ok(res) => recorder.shared.is_failure(res),
                Err(_) => true,
            };
            recorder.finish(failed);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ProxyBody, grpc_error};
    use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
    use tower::{Service, ServiceExt};
    use tower_test::mock;

    type Req = http::Request<()>;
    type Res = http::Response<ProxyBody>;
    type Svc = mock::Spawn<Breaker<mock::Mock<Req, Res>>>;
    type Handle = mock::Handle<Req, Res>;

    fn labels() -> Labels {
        vec![("endpoint".to_owned(), "10.0.0.7:8443".to_owned())]
    }

    fn breaker(policy: BreakerPolicy) -> (Svc, Handle, BreakerHandle, BreakerMetrics) {
        let metrics = BreakerMetrics::default();
        let layer = BreakerLayer::new(policy, &metrics, labels());
        let (inner, handle) = mock::pair();
        let svc = tower::Layer::layer(&layer, inner);
        let state = svc.handle();
        (mock::Spawn::new(svc), handle, state, metrics)
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            probation: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            ..BreakerPolicy::default()
        }
    }

    #[allow(clippy::unwrap_used)]
    async fn answer(svc: &mut Svc, handle: &mut Handle, res: Res) -> Res {
        assert!(svc.poll_ready().is_ready(), "endpoint not ready");
        let fut = svc.call(http::Request::new(()));
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(res);
        fut.await.unwrap()
    }

    #[allow(clippy::unwrap_used)]
    async fn fail(svc: &mut Svc, handle: &mut Handle) {
        let res = answer(svc, handle, grpc_error(Code::Unavailable, "down")).await;
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
    }

    async fn succeed(svc: &mut Svc, handle: &mut Handle) {
        answer(svc, handle, grpc_error(Code::Ok, "")).await;
    }

    /// Trips the default test breaker.
    async fn trip(svc: &mut Svc, handle: &mut Handle) {
        for _ in 0..3 {
            fail(svc, handle).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures() {
        let (mut svc, mut handle, state, metrics) = breaker(policy());
        fail(&mut svc, &mut handle).await;
        fail(&mut svc, &mut handle).await;
        // A success in between starts the count again.
        succeed(&mut svc, &mut handle).await;
        fail(&mut svc, &mut handle).await;
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Closed);
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Open);
        assert_eq!(metrics.transitions(&labels(), BreakerState::Open), 1);
        assert_eq!(metrics.open(&labels()), 1, "counted as open");
        drop(svc);
        assert_eq!(metrics.open(&labels()), 0, "a dropped endpoint is not");
    }

    #[tokio::test(start_paused = true)]
    async fn counts_5xx_errors_and_failure_codes_only() {
        let (mut svc, mut handle, state, _metrics) = breaker(policy());
        for _ in 0..10 {
            // Not failures: the endpoint is fine, the request was not.
            answer(
                &mut svc,
                &mut handle,
                grpc_error(Code::InvalidArgument, "bad"),
            )
            .await;
            answer(&mut svc, &mut handle, grpc_error(Code::NotFound, "no")).await;
            let mut not_found = http::Response::new(ProxyBody::default());
            *not_found.status_mut() = http::StatusCode::NOT_FOUND;
            answer(&mut svc, &mut handle, not_found).await;
        }
        assert_eq!(state.state(), BreakerState::Closed);

        let mut bad_gateway = http::Response::new(ProxyBody::default());
        *bad_gateway.status_mut() = http::StatusCode::BAD_GATEWAY;
        answer(&mut svc, &mut handle, bad_gateway).await;
        answer(&mut svc, &mut handle, grpc_error(Code::Internal, "bug")).await;
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(http::Request::new(()));
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_error("reset");
        assert!(fut.await.is_err());
        assert_eq!(state.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_while_open_then_one_probe() {
        let (mut svc, mut handle, state, metrics) = breaker(policy());
        trip(&mut svc, &mut handle).await;
        assert_pending!(svc.poll_ready());

        // Probation is between 0.5s and 1s (equal jitter on 1s).
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!svc.is_woken());
        assert_pending!(svc.poll_ready());
        tokio::time::advance(Duration::from_millis(501)).await;
        // The probation timer woke the task that polled.
        assert!(svc.is_woken());
        assert_ready_ok!(svc.poll_ready());
        assert_eq!(state.state(), BreakerState::HalfOpen);

        // One probe; everything else waits for its answer.
        let probe = svc.call(http::Request::new(()));
        assert_pending!(svc.poll_ready());
        let (_req, send) = handle.next_request().await.unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_pending!(svc.poll_ready());
        assert!(handle.poll_request().is_pending());

        // It succeeds: closed, and the waiting task is woken.
        send.send_response(grpc_error(Code::Ok, ""));
        probe.await.unwrap();
        assert!(svc.is_woken());
        assert_eq!(state.state(), BreakerState::Closed);
        assert_ready_ok!(svc.poll_ready());
        assert_eq!(metrics.transitions(&labels(), BreakerState::HalfOpen), 1);
        assert_eq!(metrics.transitions(&labels(), BreakerState::Closed), 1);
        assert_eq!(metrics.open(&labels()), 0, "closed again");

        // Closed again from scratch: takes three failures to open.
        fail(&mut svc, &mut handle).await;
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_with_longer_probation() {
        let (mut svc, mut handle, state, metrics) = breaker(policy());
        trip(&mut svc, &mut handle).await;
        tokio::time::advance(Duration::from_secs(1)).await;

        // Probe fails: open again, now for 1s to 2s.
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Open);
        assert_pending!(svc.poll_ready());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_pending!(svc.poll_ready());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_ready_ok!(svc.poll_ready());

        // Fails again: 2s to 4s.
        let res = answer(&mut svc, &mut handle, grpc_error(Code::Internal, "")).await;
        assert_eq!(grpc_status(&res), Some(Code::Internal));
        assert_eq!(state.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_pending!(svc.poll_ready());
        tokio::time::advance(Duration::from_millis(2001)).await;
        assert_ready_ok!(svc.poll_ready());

        // Succeeds: closed, and probation is back to its base.
        succeed(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Closed);
        trip(&mut svc, &mut handle).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_ready_ok!(svc.poll_ready());
        assert_eq!(metrics.transitions(&labels(), BreakerState::Open), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn probation_is_capped() {
        let p = BreakerPolicy {
            probation: Backoff::new(Duration::from_secs(1), Duration::from_secs(3)),
            ..policy()
        };
        let (mut svc, mut handle, _state, _metrics) = breaker(p);
        trip(&mut svc, &mut handle).await;
        for _ in 0..6 {
            tokio::time::advance(Duration::from_secs(3)).await;
            assert_ready_ok!(svc.poll_ready());
            fail(&mut svc, &mut handle).await;
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_ready_ok!(svc.poll_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_probe_counts_as_failure() {
        let (mut svc, mut handle, state, _metrics) = breaker(policy());
        trip(&mut svc, &mut handle).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_ready_ok!(svc.poll_ready());
        let probe = svc.call(http::Request::new(()));
        let (_req, _send) = handle.next_request().await.unwrap();
        assert_pending!(svc.poll_ready());
        // Cancelled, e.g. by the route timeout: the breaker must not stay
        // half-open forever waiting for it.
        drop(probe);
        assert!(svc.is_woken());
        assert_eq!(state.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn call_without_readiness_is_refused() {
        let (mut svc, mut handle, _state, _metrics) = breaker(policy());
        trip(&mut svc, &mut handle).await;
        assert_pending!(svc.poll_ready());
        let err = svc.call(http::Request::new(())).await.unwrap_err();
        assert!(err.is::<BreakerOpen>());
        assert!(handle.poll_request().is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_needs_minimum_volume() {
        let p = BreakerPolicy {
            consecutive_failures: 0,
            failure_rate: Some(FailureRate {
                threshold: 0.5,
                min_requests: 10,
                window: Duration::from_secs(10),
            }),
            ..policy()
        };
        let (mut svc, mut handle, state, _metrics) = breaker(p);
        // 5 of 9 failed: rate high, volume low.
        for _ in 0..4 {
            fail(&mut svc, &mut handle).await;
            succeed(&mut svc, &mut handle).await;
        }
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Closed);
        // The 10th answer is a success: 5 of 10 but only failures trip it.
        succeed(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Closed);
        // 6 of 11.
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_forgets_old_answers() {
        let p = BreakerPolicy {
            consecutive_failures: 0,
            failure_rate: Some(FailureRate {
                threshold: 0.5,
                min_requests: 10,
                window: Duration::from_secs(10),
            }),
            ..policy()
        };
        let (mut svc, mut handle, state, _metrics) = breaker(p);
        for _ in 0..9 {
            fail(&mut svc, &mut handle).await;
        }
        // Those nine age out of the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..9 {
            fail(&mut svc, &mut handle).await;
        }
        assert_eq!(state.state(), BreakerState::Closed);
        fail(&mut svc, &mut handle).await;
        assert_eq!(state.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn low_failure_rate_stays_closed() {
        let p = BreakerPolicy {
            consecutive_failures: 0,
            failure_rate: Some(FailureRate::default()),
            ..policy()
        };
        let (mut svc, mut handle, state, _metrics) = breaker(p);
        for _ in 0..50 {
            fail(&mut svc, &mut handle).await;
            succeed(&mut svc, &mut handle).await;
            succeed(&mut svc, &mut handle).await;
        }
        assert_eq!(state.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn inner_readiness_errors_pass_through() {
        let (mut svc, mut handle, _state, _metrics) = breaker(policy());
        handle.send_error("connection lost");
        assert_ready_err!(svc.poll_ready());
    }

    /// An open endpoint is skipped by the p2c balancer, not evicted.
    /// (Real time, and a probation far longer than the test: the point is
    /// where requests go while the breaker is open.)
    #[tokio::test]
    async fn balancer_routes_around_an_open_breaker() {
        let metrics = BreakerMetrics::default();
        let p = BreakerPolicy {
            probation: Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600)),
            ..policy()
        };
        let layer = BreakerLayer::new(p, &metrics, labels());
        let (a, mut handle_a) = mock::pair::<Req, Res>();
        let (b, mut handle_b) = mock::pair::<Req, Res>();
        let a = tower::Layer::layer(&layer, a);
        let b = tower::Layer::layer(&layer, b);
        let state_a = a.handle();
        let endpoints = vec![
            tower::load::Constant::new(a, 0u32),
            tower::load::Constant::new(b, 0u32),
        ];
        let mut balancer =
            tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(endpoints));

        // Endpoint a fails until its breaker opens; b answers.
        let upstream_a = tokio::spawn(async move {
            let mut answered = 0u32;
            while let Some((_req, send)) = handle_a.next_request().await {
                send.send_response(grpc_error(Code::Unavailable, "down"));
                answered += 1;
            }
            answered
        });
        let upstream_b = tokio::spawn(async move {
            let mut answered = 0u32;
            while let Some((_req, send)) = handle_b.next_request().await {
                send.send_response(grpc_error(Code::Ok, ""));
                answered += 1;
            }
            answered
        });

        let mut failures = 0;
        for _ in 0..200 {
            let res = balancer
                .ready()
                .await
                .unwrap()
                .call(http::Request::new(()))
                .await
                .unwrap();
            if grpc_status(&res) == Some(Code::Unavailable) {
                failures += 1;
            }
        }
        assert_eq!(state_a.state(), BreakerState::Open);
        // Three failures opened it; the rest went to b.
        assert_eq!(failures, 3);
        // Still in the balancer, just not ready.
        assert_eq!(balancer.len(), 2);

        drop(balancer);
        assert_eq!(upstream_a.await.unwrap(), 3);
        assert_eq!(upstream_b.await.unwrap(), 197);
    }

    #[test]
    fn policy_parses_with_defaults() {
        let p: BreakerPolicy = toml::from_str("").unwrap();
        assert_eq!(p, BreakerPolicy::default());

        let p: BreakerPolicy = toml::from_str(
            r#"
            consecutive_failures = 7
            failure_rate = { threshold = 0.25 }
            probation = { base = "500ms", max = "30s" }
            failure_codes = ["UNAVAILABLE"]
            "#,
        )
        .unwrap();
        assert_eq!(p.consecutive_failures, 7);
        assert_eq!(
            p.failure_rate,
            Some(FailureRate {
                threshold: 0.25,
                ..FailureRate::default()
            })
        );
        assert_eq!(p.probation.base, Duration::from_millis(500));
        assert_eq!(p.failure_codes, vec![Code::Unavailable]);
    }

    #[test]
    fn policy_rejects_bad_values() {
        for (text, wanted) in [
            ("failures = 3", "unknown field"),
            ("failure_rate = { threshold = 0.0 }", "not in (0, 1]"),
            ("failure_rate = { threshold = 1.5 }", "not in (0, 1]"),
            ("failure_rate = { window = \"0s\" }", "at least 100ms"),
            ("failure_rate = { ratio = 0.5 }", "unknown field"),
            ("probation = { base = \"1s\" }", "missing field `max`"),
        ] {
            let err = toml::from_str::<BreakerPolicy>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
