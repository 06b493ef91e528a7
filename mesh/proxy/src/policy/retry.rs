//! The route's retries: one layer, so retries never compound across layers.
//!
//! A request is sent again when its answer says it is safe and useful to:
//! a retryable `grpc-status` in the response headers (by default
//! `UNAVAILABLE`), or a [`ConnectError`](super::ConnectError) anywhere in the
//! error's source chain (the request never left). Never after load shedding
//! ([`Shed`](super::Shed)), never after any other error, and never on a route
//! not marked retryable.
//!
//! Retries are bounded three ways: `max_attempts` per request; a
//! [`TpsBudget`] shared by all requests of the route, so retries stay a
//! fraction of traffic when an upstream fails outright instead of multiplying
//! the load on it; and the request's [`Deadline`], which the timeout layer
//! outside this one enforces anyway. Between attempts the layer waits a
//! fully jittered exponential backoff.
//!
//! To send a body again the layer keeps a copy of it while the first attempt
//! streams it ([`ReplayBody`]), up to `replay_buffer_bytes`. A larger body is
//! sent once and not retried. The first attempt is not held back while the
//! body is read, so streaming calls keep working on retryable routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::TryFutureExt;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;
use tonic::Code;
use tower::Service;
use tower::retry::budget::{Budget as _, TpsBudget};

use super::timeout::{Deadline, GRPC_TIMEOUT, encode_grpc_timeout};
use super::{
    Backoff, BoxError, Labels, ProxyBody, grpc_status, is_connect_error, is_shed, with_label,
};

/// A route's retry policy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Whether the route may be retried at all; only idempotent routes should
    /// be. `false` passes requests through untouched.
    pub retryable: bool,
    /// The `grpc-status` codes that are retried.
    #[serde(deserialize_with = "super::codes::deserialize")]
    pub codes: Vec<Code>,
    /// Attempts per request, the first included.
    #[serde(deserialize_with = "at_least_one")]
    pub max_attempts: u32,
    /// The pause before each retry, fully jittered.
    pub backoff: Backoff,
    /// How many retries the route may make, relative to its traffic.
    pub budget: Budget,
    /// The largest request body kept for replay.
    pub replay_buffer_bytes: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retryable: false,
            codes: vec![Code::Unavailable],
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(25), Duration::from_secs(1)),
            budget: Budget::default(),
            replay_buffer_bytes: 64 * 1024,
        }
    }
}

/// A retry budget, as Finagle and Linkerd have it: retries may add `ratio`
/// of the requests seen in the last `ttl`, plus `min_per_second` always.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Retries allowed per original request, 0 to 1000.
    #[serde(deserialize_with = "ratio")]
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet route can
    /// still retry.
    pub min_per_second: u32,
    /// How long a request counts towards the budget, 1s to 60s.
    #[serde(deserialize_with = "ttl")]
    pub ttl: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl Budget {
    /// The token bucket. `TpsBudget::new` asserts its ranges, so values are
    /// clamped here too for policies built in code rather than parsed.
    fn build(&self) -> TpsBudget {
        let ttl = self
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if self.ratio.is_finite() {
            self.ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        // i32::MAX is what TpsBudget can count up to.
        let min_per_second = self.min_per_second.min(i32::MAX as u32 - 1);
        #[allow(clippy::cast_possible_truncation)] // clamped to 0..=1000 above
        TpsBudget::new(ttl, min_per_second, ratio as f32)
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(
            "max_attempts counts the first attempt and must be at least 1",
        ));
    }
    Ok(n)
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let r = f64::deserialize(d)?;
    if !(0.0..=1000.0).contains(&r) {
        return Err(serde::de::Error::custom(format!(
            "retry budget ratio {r} is not between 0 and 1000"
        )));
    }
    Ok(r)
}

fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ttl = humantime_serde::deserialize(d)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
        return Err(serde::de::Error::custom(format!(
            "retry budget ttl {} is not between 1s and 60s",
            humantime_serde::re::humantime::format_duration(ttl)
        )));
    }
    Ok(ttl)
}

cloudsec_runtime::metric_families! {
    /// The retry layer's metric families (`retry_total`,
    /// `retry_budget_exhausted_total`, `retry_skipped_total{reason}`);
    /// register once per proxy.
    pub struct RetryMetrics {
        retries: Family<Labels, Counter> = "retry",
            "requests sent again by the proxy after a retryable failure";
        budget_exhausted: Family<Labels, Counter> = "retry_budget_exhausted",
            "retryable failures not retried because the route's retry budget was spent";
        skipped: Family<Labels, Counter> = "retry_skipped",
            "retryable failures not retried for another reason: body_too_large, body_error, max_attempts, deadline";
    }
}

impl RetryMetrics {
    /// The count of retries with these labels.
    pub fn retries(&self, labels: &Labels) -> u64 {
        self.retries.get_or_create(labels).get()
    }

    /// The count of retries refused by the budget, with these labels.
    pub fn budget_exhausted(&self, labels: &Labels) -> u64 {
        self.budget_exhausted.get_or_create(labels).get()
    }

    /// The count of retries skipped for `reason`, with these labels.
    pub fn skipped(&self, labels: &Labels, reason: &str) -> u64 {
        self.skipped
            .get_or_create(&with_label(labels, "reason", reason))
            .get()
    }
}

/// Counters resolved once per layer, so requests do not look them up.
#[derive(Debug)]
struct Counters {
    retries: Counter,
    budget_exhausted: Counter,
    body_too_large: Counter,
    body_error: Counter,
    max_attempts: Counter,
    deadline: Counter,
}

/// What every request of a route shares: the policy, the budget, counters.
#[derive(Debug)]
struct Shared {
    policy: RetryPolicy,
    budget: TpsBudget,
    counters: Counters,
}

/// Retries a route's requests by its [`RetryPolicy`].
///
/// The inner service must be `Clone` (put a buffer in front of a balancer):
/// each retry needs a service to call while the first is still borrowed.
#[derive(Clone, Debug)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

impl RetryLayer {
    /// One layer per route: every service it makes shares one budget.
    /// `labels` (e.g. the route) go on its metrics.
    pub fn new(policy: RetryPolicy, metrics: &RetryMetrics, labels: Labels) -> Self {
        let skipped = |reason| {
            metrics
                .skipped
                .get_or_create(&with_label(&labels, "reason", reason))
                .clone()
        };
        let counters = Counters {
            retries: metrics.retries.get_or_create(&labels).clone(),
            budget_exhausted: metrics.budget_exhausted.get_or_create(&labels).clone(),
            body_too_large: skipped("body_too_large"),
            body_error: skipped("body_error"),
            max_attempts: skipped("max_attempts"),
            deadline: skipped("deadline"),
        };
        Self {
            shared: Arc::new(Shared {
                budget: policy.budget.build(),
                policy,
                counters,
            }),
        }
    }
}

impl<S> tower::Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See [`RetryLayer`].
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'static>>;

impl<S, RB> Service<http::Request<ProxyBody>> for Retry<S>
where
    S: Service<http::Request<ProxyBody>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = BoxFuture<http::Response<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<ProxyBody>) -> Self::Future {
        // `self.inner` is the clone that was driven ready: call that one, and
        // keep a fresh clone for the next request.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);

        let policy = &self.shared.policy;
        if !policy.retryable || policy.max_attempts <= 1 {
            return call_boxed(&mut inner, req);
        }

        self.shared.budget.deposit();
        let (parts, body) = req.into_parts();
        let replay = Replay::new(body, policy.replay_buffer_bytes);
        let first = call_boxed(
            &mut inner,
            http::Request::from_parts(parts.clone(), replay.body()),
        );
        let shared = self.shared.clone();
        Box::pin(async move {
            let first = first.await;
            shared.retry(inner, parts, replay, first).await
        })
    }
}

/// Calls `svc` and boxes its future with combinators, not an `async` block:
/// holding `S::Future` across an await inside one trips a rustc limitation
/// (`Send` "not general enough" for the boxed error's lifetime).
fn call_boxed<S, RB>(svc: &mut S, req: http::Request<ProxyBody>) -> BoxFuture<http::Response<RB>>
where
    S: Service<http::Request<ProxyBody>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    Box::pin(svc.call(req).err_into())
}

impl Shared {
    /// Whether an outcome may be retried at all.
    fn is_retryable<RB>(&self, outcome: &Result<http::Response<RB>, BoxError>) -> bool {
        match outcome {
            Ok(res) => grpc_status(res).is_some_and(|code| self.policy.codes.contains(&code)),
            // Shed wins over a connection failure further down the chain:
            // shedding is the proxy saying "not now", whatever the cause.
            Err(err) => !is_shed(&**err) && is_connect_error(&**err),
        }
    }

    /// Sends the request again while its outcome is retryable and the
    /// limits allow, and returns the last outcome.
    async fn retry<S, RB>(
        &self,
        mut inner: S,
        parts: http::request::Parts,
        replay: Replay,
        first: Result<http::Response<RB>, BoxError>,
    ) -> Result<http::Response<RB>, BoxError>
    where
        S: Service<http::Request<ProxyBody>, Response = http::Response<RB>>,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let policy = &self.policy;
        let counters = &self.counters;
        let deadline = parts.extensions.get::<Deadline>().copied();
        let mut outcome = first;
        let mut attempts = 1;
        loop {
            if !self.is_retryable(&outcome) {
                return outcome;
            }
            // Cheapest checks first; the budget is withdrawn last so that a
            // retry refused for another reason costs no budget.
            if attempts >= policy.max_attempts {
                counters.max_attempts.inc();
                return outcome;
            }
            match replay.replayable() {
                Ok(()) => {}
                Err(NotReplayable::TooLarge) => {
                    counters.body_too_large.inc();
                    return outcome;
                }
                Err(NotReplayable::Failed) => {
                    counters.body_error.inc();
                    return outcome;
                }
            }
            let delay = policy.backoff.full_jitter(attempts - 1);
            if deadline.is_some_and(|Deadline(at)| Instant::now() + delay >= at) {
                counters.deadline.inc();
                return outcome;
            }
            if !self.budget.withdraw() {
                counters.budget_exhausted.inc();
                tracing::debug!("retry budget exhausted");
                return outcome;
            }

            // Let go of the failed response before waiting.
            drop(outcome);
            tokio::time::sleep(delay).await;
            attempts += 1;
            counters.retries.inc();
            tracing::debug!(attempt = attempts, "retrying request");

            let mut parts = parts.clone();
            if let Some(deadline) = deadline {
                // Tell the server what is left, not what the first attempt had.
                parts
                    .headers
                    .insert(GRPC_TIMEOUT, encode_grpc_timeout(deadline.remaining()));
            }
            let req = http::Request::from_parts(parts, replay.body());
            let ready =
                futures::future::poll_fn(|cx| inner.poll_ready(cx).map_err(Into::<BoxError>::into))
                    .await;
            outcome = match ready {
                Ok(()) => call_boxed(&mut inner, req).await,
                Err(err) => Err(err),
            };
        }
    }
}

/// Why a request body cannot be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NotReplayable {
    TooLarge,
    Failed,
}

/// A request body shared by all attempts of one request: the first attempt
/// reads the original body and keeps a copy of each chunk; later attempts
/// replay the copy, then go on reading the original where it stopped.
#[derive(Clone, Debug)]
struct Replay {
    state: Arc<Mutex<ReplayState>>,
}

struct ReplayState {
    /// The original body, until it ends or fails.
    source: Option<ProxyBody>,
    /// Every data chunk read from `source`, for replay; emptied on overflow.
    chunks: Vec<Bytes>,
    /// Chunks read from `source` in all, kept or not.
    read: usize,
    buffered_bytes: usize,
    limit: usize,
    trailers: Option<HeaderMap>,
    /// `source` has ended: no more frames beyond `chunks` and `trailers`.
    ended: bool,
    /// The body outgrew `limit`: only the reader at its head can go on.
    overflowed: bool,
    /// `source` failed; a later attempt could not send the whole body.
    failed: bool,
}

impl std::fmt::Debug for ReplayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayState")
            .field("read", &self.read)
            .field("buffered_bytes", &self.buffered_bytes)
            .field("ended", &self.ended)
            .field("overflowed", &self.overflowed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl ReplayState {
    fn keep(&mut self, chunk: &Bytes) {
        self.read += 1;
        if self.overflowed {
            return;
        }
        if self.buffered_bytes.saturating_add(chunk.len()) > self.limit {
            // Too large to replay: stop keeping chunks and free those kept.
            self.overflowed = true;
            self.chunks = Vec::new();
            self.buffered_bytes = 0;
        } else {
            self.buffered_bytes += chunk.len();
            self.chunks.push(chunk.clone());
        }
    }
}

fn lock(state: &Mutex<ReplayState>) -> MutexGuard<'_, ReplayState> {
    // The state stays consistent even if a holder panicked: every update is
    // a plain assignment.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Replay {
    fn new(body: ProxyBody, limit: usize) -> Self {
        let too_large = body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX);
        let ended = body.is_end_stream();
        Self {
            state: Arc::new(Mutex::new(ReplayState {
                source: (!ended).then_some(body),
                chunks: Vec::new(),
                read: 0,
                buffered_bytes: 0,
                limit,
                trailers: None,
                ended,
                overflowed: too_large,
                failed: false,
            })),
        }
    }

    /// A body for one attempt.
    fn body(&self) -> ProxyBody {
        ProxyBody::new(ReplayBody {
            state: self.state.clone(),
            pos: 0,
            trailers_sent: false,
            done: false,
        })
    }

    /// Whether another attempt could send the whole body.
    fn replayable(&self) -> Result<(), NotReplayable> {
        let state = lock(&self.state);
        if state.failed {
            Err(NotReplayable::Failed)
        } else if state.overflowed {
            Err(NotReplayable::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// One attempt's view of a request body shared by all attempts: replays
/// what earlier attempts read, then reads on from the original.
#[derive(Debug)]
pub struct ReplayBody {
    state: Arc<Mutex<ReplayState>>,
    /// Chunks this attempt has sent.
    pos: usize,
    trailers_sent: bool,
    done: bool,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut state = lock(&this.state);

        // First what an earlier attempt already read.
        if this.pos < state.read {
            let Some(chunk) = state.chunks.get(this.pos).cloned() else {
                // Dropped on overflow; the retry layer does not start an
                // attempt it cannot complete, so this only happens when the
                // body outgrew the buffer after the attempt was started.
                this.done = true;
                return Poll::Ready(Some(Err("request body too large to replay".into())));
            };
            this.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if state.ended {
            this.done = true;
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(trailers) = state.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
            return Poll::Ready(None);
        }

        // Then the rest of the original body, keeping a copy for later attempts.
        loop {
            let Some(source) = state.source.as_mut() else {
                this.done = true;
                return Poll::Ready(Some(
                    Err("request body failed in an earlier attempt".into()),
                ));
            };
            match ready!(Pin::new(source).poll_frame(cx)) {
                None => {
                    state.ended = true;
                    state.source = None;
                    this.done = true;
                    return Poll::Ready(None);
                }
                Some(Err(err)) => {
                    state.failed = true;
                    state.source = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        state.keep(&chunk);
                        this.pos = state.read;
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            // Trailers end a body.
                            state.trailers = Some(trailers.clone());
                            state.ended = true;
                            state.source = None;
                            this.trailers_sent = true;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        // A frame kind this code does not know: skip it.
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        let state = lock(&self.state);
        if self.pos < state.read {
            return false;
        }
        if state.ended {
            return self.trailers_sent || state.trailers.is_none();
        }
        // Caught up with an original body that says it is done: lets the
        // client end the stream with the last data frame.
        state.source.as_ref().is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        let state = lock(&self.state);
        if self.pos < state.read && state.overflowed {
            return SizeHint::default();
        }
        let kept: u64 = state
            .chunks
            .get(self.pos..)
            .unwrap_or_default()
            .iter()
            .map(|c| c.len() as u64)
            .sum();
        match &state.source {
            None => SizeHint::with_exact(kept),
            Some(source) => {
                let rest = source.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(kept));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(kept));
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ConnectError, Shed, grpc_error};
    use http_body_util::{BodyExt, Full, StreamBody};
    use tokio_test::assert_ready_ok;
    use tower::ServiceExt;
    use tower_test::mock;

    type Req = http::Request<ProxyBody>;
    type Res = http::Response<ProxyBody>;

    fn labels() -> Labels {
        vec![("route".to_owned(), "pkg.Svc/Get".to_owned())]
    }

    fn retryable() -> RetryPolicy {
        RetryPolicy {
            retryable: true,
            ..RetryPolicy::default()
        }
    }

    fn layer(policy: RetryPolicy) -> (RetryLayer, RetryMetrics) {
        let metrics = RetryMetrics::default();
        (RetryLayer::new(policy, &metrics, labels()), metrics)
    }

    fn full(data: &'static [u8]) -> ProxyBody {
        Full::new(Bytes::from_static(data))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    fn request(data: &'static [u8]) -> Req {
        let mut req = http::Request::new(full(data));
        *req.uri_mut() = http::Uri::from_static("/pkg.Svc/Get");
        req
    }

    fn ok() -> Res {
        grpc_error(Code::Ok, "")
    }

    fn unavailable() -> Res {
        grpc_error(Code::Unavailable, "try again")
    }

    #[allow(clippy::unwrap_used)]
    async fn read(body: ProxyBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    /// Spawns one request through a fresh retry service.
    fn spawn_call(
        layer: &RetryLayer,
        svc: &mock::Mock<Req, Res>,
        req: Req,
    ) -> tokio::task::JoinHandle<Result<Res, BoxError>> {
        let svc = tower::Layer::layer(layer, svc.clone());
        tokio::spawn(svc.oneshot(req))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_unavailable_then_succeeds() {
        let (layer, metrics) = layer(retryable());
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(request(b"hello")));

        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(read(req.into_body()).await, "hello");
        send.send_response(unavailable());

        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.uri().path(), "/pkg.Svc/Get");
        assert_eq!(read(req.into_body()).await, "hello");
        send.send_response(ok());

        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Ok));
        assert_eq!(metrics.retries(&labels()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let (layer, metrics) = layer(retryable());
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(request(b"x")));
        for _ in 0..3 {
            let (_req, send) = handle.next_request().await.unwrap();
            send.send_response(unavailable());
        }
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
        assert_eq!(metrics.retries(&labels()), 2);
        assert_eq!(metrics.skipped(&labels(), "max_attempts"), 1);
        // No fourth attempt.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(handle.poll_request().is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_routes_pass_through() {
        let (layer, metrics) = layer(RetryPolicy::default());
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(request(b"x")));
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(unavailable());
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
        assert_eq!(metrics.retries(&labels()), 0);
        assert!(handle.poll_request().is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn other_codes_are_not_retried() {
        let (layer, metrics) = layer(retryable());
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(request(b"x")));
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(grpc_error(Code::Internal, "bug"));
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Internal));
        assert_eq!(metrics.retries(&labels()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried() {
        let (layer, metrics) = layer(retryable());
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(request(b"body")));
        // The connector fails before reading the body: the retry still has it.
        let (req, send) = handle.next_request().await.unwrap();
        drop(req);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        send.send_error(ConnectError::new(refused));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(read(req.into_body()).await, "body");
        send.send_response(ok());
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Ok));
        assert_eq!(metrics.retries(&labels()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shed_and_other_errors_are_never_retried() {
        let (layer, metrics) = layer(retryable());
        for error in [
            BoxError::from(Shed::new("queue full")),
            // Shed wins when the chain also holds a connection failure.
            BoxError::from(ConnectError::new(Shed::new("no endpoint"))),
            BoxError::from("protocol error"),
        ] {
            let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer.clone());
            assert_ready_ok!(svc.poll_ready());
            let fut = tokio::spawn(svc.call(request(b"x")));
            let (_req, send) = handle.next_request().await.unwrap();
            let message = error.to_string();
            send.send_error(error);
            let err = fut.await.unwrap().unwrap_err();
            assert_eq!(err.to_string(), message);
            assert!(handle.poll_request().is_pending());
        }
        assert_eq!(metrics.retries(&labels()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn budget_holds_retries_to_its_ratio() {
        let policy = RetryPolicy {
            retryable: true,
            budget: Budget {
                ratio: 0.2,
                min_per_second: 0,
                ttl: Duration::from_secs(10),
            },
            ..RetryPolicy::default()
        };
        let (layer, metrics) = layer(policy);
        let (svc, mut handle) = mock::pair::<Req, Res>();
        // The upstream fails everything, at once.
        let upstream = tokio::spawn(async move {
            let mut sent = 0u32;
            while let Some((_req, send)) = handle.next_request().await {
                send.send_response(unavailable());
                sent += 1;
            }
            sent
        });
        for _ in 0..100 {
            let res = spawn_call(&layer, &svc, request(b"x"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(grpc_status(&res), Some(Code::Unavailable));
        }
        drop(svc);
        drop(layer);
        let sent = upstream.await.unwrap();

        let retries = metrics.retries(&labels());
        // 100 deposits at 0.2 buy 20 retries; each costs a token.
        assert!((19..=20).contains(&retries), "{retries} retries");
        assert_eq!(u64::from(sent), 100 + retries);
        // Every failed request wanted two retries, 200 in all.
        let refused = metrics.budget_exhausted(&labels());
        let gave_up = metrics.skipped(&labels(), "max_attempts");
        assert_eq!(refused + gave_up, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn large_bodies_are_sent_once_and_counted() {
        let policy = RetryPolicy {
            replay_buffer_bytes: 4,
            ..retryable()
        };
        let (layer, metrics) = layer(policy);

        // Known too large up front, by its size hint.
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer.clone());
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(request(b"too large")));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(read(req.into_body()).await, "too large");
        send.send_response(unavailable());
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
        assert!(handle.poll_request().is_pending());
        assert_eq!(metrics.skipped(&labels(), "body_too_large"), 1);

        // Found too large while streaming, with no size hint.
        let chunks = ["ab", "cd", "ef"].map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c))));
        let body = ProxyBody::new(StreamBody::new(futures::stream::iter(chunks)));
        let req = http::Request::new(body);
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(req));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(read(req.into_body()).await, "abcdef");
        send.send_response(unavailable());
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
        assert!(handle.poll_request().is_pending());
        assert_eq!(metrics.skipped(&labels(), "body_too_large"), 2);
        assert_eq!(metrics.retries(&labels()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn streamed_bodies_and_trailers_are_replayed() {
        let (layer, metrics) = layer(retryable());
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("42"));
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from("ab"))),
            Ok(Frame::data(Bytes::from("cd"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = ProxyBody::new(StreamBody::new(futures::stream::iter(frames)));
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let fut = tokio::spawn(svc.call(http::Request::new(body)));

        // The first attempt reads only part of the body before failing.
        let (req, send) = handle.next_request().await.unwrap();
        let mut body = req.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        drop(body);
        send.send_response(unavailable());

        // The second gets all of it: replayed, then the rest of the original.
        let (req, send) = handle.next_request().await.unwrap();
        let collected = req.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-sum"], "42");
        assert_eq!(collected.to_bytes(), "abcd");
        send.send_response(unavailable());

        // And the third, all replayed.
        let (req, send) = handle.next_request().await.unwrap();
        let body = req.into_body();
        assert!(body.size_hint().exact() == Some(4));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-sum"], "42");
        assert_eq!(collected.to_bytes(), "abcd");
        send.send_response(ok());

        assert_eq!(grpc_status(&fut.await.unwrap().unwrap()), Some(Code::Ok));
        assert_eq!(metrics.retries(&labels()), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_delays_are_respected() {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(150)),
            budget: Budget {
                ratio: 1000.0,
                ..Budget::default()
            },
            ..retryable()
        };
        let (layer, _metrics) = layer(policy);
        let (svc, mut handle) = mock::pair::<Req, Res>();
        let mut first_waits = Duration::ZERO;
        let mut second_waits = Duration::ZERO;
        let rounds = 200;
        for _ in 0..rounds {
            let fut = spawn_call(&layer, &svc, request(b"x"));
            let (_req, send) = handle.next_request().await.unwrap();
            let failed_at = Instant::now();
            send.send_response(unavailable());
            let (_req, send) = handle.next_request().await.unwrap();
            let waited = failed_at.elapsed();
            // Full jitter: anywhere from 0 to base.
            assert!(waited <= Duration::from_millis(100), "{waited:?}");
            first_waits += waited;

            let failed_at = Instant::now();
            send.send_response(unavailable());
            let (_req, send) = handle.next_request().await.unwrap();
            let waited = failed_at.elapsed();
            // Doubled, then capped by max.
            assert!(waited <= Duration::from_millis(150), "{waited:?}");
            second_waits += waited;
            send.send_response(ok());
            fut.await.unwrap().unwrap();
        }
        // Jittered around half the ceiling, so not skipped.
        let mean_first = first_waits / rounds;
        let mean_second = second_waits / rounds;
        assert!(
            mean_first > Duration::from_millis(35) && mean_first < Duration::from_millis(65),
            "{mean_first:?}"
        );
        assert!(
            mean_second > Duration::from_millis(55) && mean_second < Duration::from_millis(95),
            "{mean_second:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_carry_the_remaining_deadline() {
        let policy = RetryPolicy {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(100)),
            ..retryable()
        };
        let (layer, metrics) = layer(policy);
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
        assert_ready_ok!(svc.poll_ready());
        let mut req = request(b"x");
        let deadline = Instant::now() + Duration::from_secs(1);
        req.extensions_mut().insert(Deadline(deadline));
        req.headers_mut()
            .insert(GRPC_TIMEOUT, http::HeaderValue::from_static("1S"));
        let fut = tokio::spawn(svc.call(req));

        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()[GRPC_TIMEOUT], "1S");
        tokio::time::advance(Duration::from_millis(500)).await;
        send.send_response(unavailable());
        let (req, send) = handle.next_request().await.unwrap();
        let left = deadline - Instant::now();
        assert_eq!(
            req.headers()[GRPC_TIMEOUT],
            encode_grpc_timeout(left),
            "{left:?}"
        );

        // No time left for another backoff: not retried.
        tokio::time::advance(deadline - Instant::now()).await;
        send.send_response(unavailable());
        let res = fut.await.unwrap().unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
        assert_eq!(metrics.retries(&labels()), 1);
        assert_eq!(metrics.skipped(&labels(), "deadline"), 1);
    }

    #[test]
    fn policy_parses_with_defaults() {
        let p: RetryPolicy = toml::from_str("retryable = true").unwrap();
        assert_eq!(p, retryable());

        let p: RetryPolicy = toml::from_str(
            r#"
            retryable = true
            codes = ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
            max_attempts = 5
            backoff = { base = "10ms", max = "2s" }
            budget = { ratio = 0.5, min_per_second = 0, ttl = "30s" }
            replay_buffer_bytes = 1024
            "#,
        )
        .unwrap();
        assert_eq!(p.codes, vec![Code::Unavailable, Code::ResourceExhausted]);
        assert_eq!(p.max_attempts, 5);
        assert_eq!(
            p.backoff,
            Backoff::new(Duration::from_millis(10), Duration::from_secs(2))
        );
        assert_eq!(p.budget.ttl, Duration::from_secs(30));
        assert_eq!(p.replay_buffer_bytes, 1024);
    }

    #[test]
    fn policy_rejects_bad_values() {
        for (text, wanted) in [
            ("retryable = true\nretries = 3", "unknown field"),
            ("max_attempts = 0", "at least 1"),
            ("budget = { ratio = -1.0 }", "between 0 and 1000"),
            ("budget = { ttl = \"500ms\" }", "between 1s and 60s"),
            ("budget = { ttl = \"2m\" }", "between 1s and 60s"),
            ("backoff = { base = \"10ms\" }", "missing field `max`"),
            ("codes = [\"NOPE\"]", "unknown gRPC status code"),
        ] {
            let err = toml::from_str::<RetryPolicy>(text).unwrap_err().to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn budget_clamps_values_built_in_code() {
        // TpsBudget asserts its ranges; building must not panic.
        let budget = Budget {
            ratio: f64::NAN,
            min_per_second: u32::MAX,
            ttl: Duration::ZERO,
        };
        let _ = budget.build();
        let budget = Budget {
            ratio: 1e9,
            min_per_second: 0,
            ttl: Duration::from_secs(3600),
        };
        let _ = budget.build();
    }
}
