//! The route timeout: one deadline per request, the earlier of the route's
//! timeout and the caller's `grpc-timeout`.
//!
//! The layer forwards the deadline upstream as a rewritten `grpc-timeout`, so
//! the server can give up when the caller has, and leaves a [`Deadline`] in
//! the request extensions for inner layers. When the deadline passes before
//! the response headers arrive, the request is dropped (which cancels it
//! upstream) and the caller gets a synthetic `DEADLINE_EXCEEDED`; the layer
//! never fails with an error of its own.
//!
//! The deadline covers the time to the response headers. For unary gRPC that
//! is the whole call: a server sends its headers when the handler returns.
//! Streaming responses are bounded by the server honouring `grpc-timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::{Instant, Sleep};
use tonic::Code;

use super::{Labels, synthetic_response};

/// The gRPC deadline header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The longest value `grpc-timeout` may carry: at most eight digits.
const MAX_TIMEOUT_VALUE: u128 = 99_999_999;

/// When the request's response must have started, put in the request
/// extensions by [`TimeoutLayer`] for the layers inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Parses a `grpc-timeout` value: up to eight digits and a unit, one of
/// `H`ours, `M`inutes, `S`econds, `m`illis, `u` micros, `n`anos.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight ASCII digits always fit in a u64, and times 3600 still do.
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    match unit {
        b'H' => Some(Duration::from_secs(n * 3600)),
        b'M' => Some(Duration::from_secs(n * 60)),
        b'S' => Some(Duration::from_secs(n)),
        b'm' => Some(Duration::from_millis(n)),
        b'u' => Some(Duration::from_micros(n)),
        b'n' => Some(Duration::from_nanos(n)),
        _ => None,
    }
}

/// Encodes a duration as a `grpc-timeout` value in the finest unit whose
/// value fits in eight digits, rounding down so the server gives up no later
/// than the proxy does.
pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    // Runs for every request with a deadline: u64 arithmetic on seconds
    // and nanoseconds apart (no u128 division) and digits written into a
    // stack buffer (no formatting machinery).
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    const UNITS: [(u8, u64); 6] = [
        (b'n', 1),
        (b'u', 1_000),
        (b'm', 1_000_000),
        (b'S', NANOS_PER_SEC),
        (b'M', 60 * NANOS_PER_SEC),
        (b'H', 3600 * NANOS_PER_SEC),
    ];
    let secs = timeout.as_secs();
    let subsec = u64::from(timeout.subsec_nanos());
    // floor(total nanos / per): every unit below a second divides one, and
    // for a second or more the sub-second part never reaches a whole unit.
    let in_unit = |per: u64| {
        if per < NANOS_PER_SEC {
            secs.checked_mul(NANOS_PER_SEC / per)?
                .checked_add(subsec / per)
        } else {
            Some(secs / (per / NANOS_PER_SEC))
        }
    };
    let (value, unit) = UNITS
        .iter()
        .find_map(|&(unit, per)| {
            in_unit(per)
                .filter(|v| u128::from(*v) <= MAX_TIMEOUT_VALUE)
                .map(|v| (v, unit))
        })
        .unwrap_or((99_999_999, b'H'));
    // At most eight digits and the unit.
    let mut text = [0u8; 9];
    let mut digits = 0;
    let mut rest = value;
    loop {
        text[digits] = b'0' + (rest % 10) as u8;
        digits += 1;
        rest /= 10;
        if rest == 0 || digits == 8 {
            break;
        }
    }
    text[..digits].reverse();
    text[digits] = unit;
    HeaderValue::from_bytes(&text[..=digits])
        .unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

/// The `grpc-timeout` of a request, `None` if absent or invalid.
fn requested_timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(GRPC_TIMEOUT)
        .and_then(|value| parse_grpc_timeout(value.as_bytes()))
}

cloudsec_runtime::metric_families! {
    /// The timeout layer's metric family (`timeout_total`); register once
    /// per proxy.
    pub struct TimeoutMetrics {
        expired: Family<Labels, Counter> = "timeout",
            "requests answered DEADLINE_EXCEEDED by the proxy when their deadline passed";
    }
}

impl TimeoutMetrics {
    /// The count of expired requests with these labels.
    pub fn expired(&self, labels: &Labels) -> u64 {
        self.expired.get_or_create(labels).get()
    }
}

/// Applies a route timeout and the caller's `grpc-timeout`.
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    timeout: Option<Duration>,
    expired: Counter,
}

impl TimeoutLayer {
    /// `timeout` is the route's; `None` leaves only the caller's deadline.
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            expired: Counter::default(),
        }
    }

    /// Counts expiries in `metrics`, with `labels` (e.g. the route).
    pub fn with_metrics(mut self, metrics: &TimeoutMetrics, labels: Labels) -> Self {
        self.expired = metrics.expired.get_or_create(&labels).clone();
        self
    }
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
            expired: self.expired.clone(),
        }
    }
}

/// See [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Option<Duration>,
    expired: Counter,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Timeout<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let effective = match (self.timeout, requested_timeout(req.headers())) {
            (Some(route), Some(caller)) => Some(route.min(caller)),
            (route, caller) => route.or(caller),
        };
        // A deadline too far away to represent is no deadline at all.
        let deadline = effective.and_then(|t| Instant::now().checked_add(t).map(|at| (t, at)));
        let sleep = deadline.map(|(timeout, at)| {
            req.headers_mut()
                .insert(GRPC_TIMEOUT, encode_grpc_timeout(timeout));
            req.extensions_mut().insert(Deadline(at));
            tokio::time::sleep_until(at)
        });
        ResponseFuture {
            inner: self.inner.call(req),
            sleep,
            expired: self.expired.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response, or `DEADLINE_EXCEEDED` once the deadline passes.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        expired: Counter,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The response wins a tie with the deadline: it is already here.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => {
                ready!(sleep.poll(cx));
                this.expired.inc();
                tracing::debug!("request deadline passed");
                Poll::Ready(Ok(synthetic_response(
                    Code::DeadlineExceeded,
                    "request timed out in the proxy",
                )))
            }
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PROXY_ERROR_HEADER, ProxyBody, grpc_status};
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_test::mock;

    type Mock = mock::Mock<http::Request<()>, http::Response<ProxyBody>>;
    type Handle = mock::Handle<http::Request<()>, http::Response<ProxyBody>>;

    fn labels() -> Labels {
        vec![("route".to_owned(), "pkg.Svc".to_owned())]
    }

    fn service(
        timeout: Option<Duration>,
        metrics: &TimeoutMetrics,
    ) -> (mock::Spawn<Timeout<Mock>>, Handle) {
        mock::spawn_layer(TimeoutLayer::new(timeout).with_metrics(metrics, labels()))
    }

    fn request(grpc_timeout: Option<&'static str>) -> http::Request<()> {
        let mut req = http::Request::new(());
        if let Some(t) = grpc_timeout {
            req.headers_mut()
                .insert(GRPC_TIMEOUT, HeaderValue::from_static(t));
        }
        req
    }

    #[test]
    fn parses_every_grpc_timeout_unit() {
        let cases = [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("4S", Duration::from_secs(4)),
            ("5m", Duration::from_millis(5)),
            ("6u", Duration::from_micros(6)),
            ("7n", Duration::from_nanos(7)),
            ("0S", Duration::ZERO),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_grpc_timeout(text.as_bytes()), Some(want), "{text}");
        }
    }

    #[test]
    fn rejects_invalid_grpc_timeouts() {
        for text in [
            "",
            "S",
            "10",
            "10s",
            "10x",
            "-1S",
            "1.5S",
            " 1S",
            "123456789S",
            "１S",
        ] {
            assert_eq!(parse_grpc_timeout(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn encodes_in_the_finest_unit_that_fits() {
        let cases = [
            (Duration::from_nanos(500), "500n"),
            (Duration::from_millis(50), "50000000n"),
            (Duration::from_millis(150), "150000u"),
            (Duration::from_secs(10), "10000000u"),
            (Duration::from_secs(3600), "3600000m"),
            (Duration::from_secs(200_000), "200000S"),
            (Duration::from_secs(99_999_999 * 3600), "99999999H"),
            (Duration::MAX, "99999999H"),
        ];
        for (d, want) in cases {
            assert_eq!(encode_grpc_timeout(d), want, "{d:?}");
        }
        // The finest unit whose value fits eight digits, rounded down, for
        // durations across the whole range.
        for nanos in [
            0u64,
            1,
            9,
            99_999_999,
            100_000_001,
            999_999_999_999,
            1 << 40,
            1 << 62,
            u64::MAX,
        ] {
            let d = Duration::from_nanos(nanos) + Duration::from_secs(nanos / 7);
            let total = d.as_nanos();
            let reference = [
                ('n', 1u128),
                ('u', 1_000),
                ('m', 1_000_000),
                ('S', 1_000_000_000),
                ('M', 60_000_000_000),
                ('H', 3_600_000_000_000),
            ]
            .iter()
            .map(|(unit, per)| (total / per, unit))
            .find(|(value, _)| *value <= MAX_TIMEOUT_VALUE)
            .map_or_else(
                || "99999999H".to_owned(),
                |(value, unit)| format!("{value}{unit}"),
            );
            assert_eq!(encode_grpc_timeout(d), reference.as_str(), "{d:?}");
        }
        // What is encoded parses back to at most the original.
        let d = Duration::from_millis(123_456);
        let back = parse_grpc_timeout(encode_grpc_timeout(d).as_bytes()).unwrap();
        assert!(back <= d && d - back < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn route_timeout_answers_deadline_exceeded() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(Some(Duration::from_secs(2)), &metrics);
        assert_ready_ok!(svc.poll_ready());
        let start = Instant::now();
        let fut = svc.call(request(None));
        let (req, _pending) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()[GRPC_TIMEOUT], "2000000u");
        assert_eq!(
            req.extensions().get::<Deadline>(),
            Some(&Deadline(start + Duration::from_secs(2)))
        );

        let res = fut.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(grpc_status(&res), Some(Code::DeadlineExceeded));
        assert!(res.headers().contains_key(PROXY_ERROR_HEADER));
        assert_eq!(metrics.expired(&labels()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shorter_grpc_timeout_wins() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(Some(Duration::from_secs(10)), &metrics);
        assert_ready_ok!(svc.poll_ready());
        let start = Instant::now();
        let fut = svc.call(request(Some("100m")));
        let (req, _pending) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()[GRPC_TIMEOUT], "100000u");

        let res = fut.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(grpc_status(&res), Some(Code::DeadlineExceeded));
        assert_eq!(metrics.expired(&labels()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shorter_route_timeout_wins() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(Some(Duration::from_millis(200)), &metrics);
        assert_ready_ok!(svc.poll_ready());
        let start = Instant::now();
        let fut = svc.call(request(Some("1S")));
        let (req, _pending) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()[GRPC_TIMEOUT], "200000u");

        let res = fut.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert_eq!(grpc_status(&res), Some(Code::DeadlineExceeded));
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_timeout_alone_applies() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(None, &metrics);
        assert_ready_ok!(svc.poll_ready());
        let start = Instant::now();
        let fut = svc.call(request(Some("3S")));
        let (req, _pending) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()[GRPC_TIMEOUT], "3000000u");
        let res = fut.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(grpc_status(&res), Some(Code::DeadlineExceeded));
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_grpc_timeout_is_ignored() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(Some(Duration::from_secs(1)), &metrics);
        assert_ready_ok!(svc.poll_ready());
        let start = Instant::now();
        let fut = svc.call(request(Some("soon")));
        let (req, _pending) = handle.next_request().await.unwrap();
        // Replaced by the route's deadline.
        assert_eq!(req.headers()[GRPC_TIMEOUT], "1000000u");
        let res = fut.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(grpc_status(&res), Some(Code::DeadlineExceeded));
    }

    #[tokio::test(start_paused = true)]
    async fn without_any_timeout_requests_pass_untouched() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(None, &metrics);
        assert_ready_ok!(svc.poll_ready());
        let mut fut = tokio_test::task::spawn(svc.call(request(Some("bogus"))));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()[GRPC_TIMEOUT], "bogus");
        assert!(req.extensions().get::<Deadline>().is_none());

        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_pending!(fut.poll());
        send.send_response(http::Response::new(ProxyBody::default()));
        let res = fut.await.unwrap();
        assert_eq!(grpc_status(&res), None);
        assert_eq!(metrics.expired(&labels()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn response_before_the_deadline_passes_through() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(Some(Duration::from_secs(1)), &metrics);
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call(request(None));
        let (_req, send) = handle.next_request().await.unwrap();
        tokio::time::advance(Duration::from_millis(999)).await;
        let mut ok = http::Response::new(ProxyBody::default());
        ok.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("0"));
        send.send_response(ok);
        let res = fut.await.unwrap();
        assert_eq!(grpc_status(&res), Some(Code::Ok));
        assert_eq!(metrics.expired(&labels()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn inner_errors_pass_through() {
        let metrics = TimeoutMetrics::default();
        let (mut svc, mut handle) = service(Some(Duration::from_secs(1)), &metrics);
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call(request(None));
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_error("boom");
        assert_eq!(fut.await.unwrap_err().to_string(), "boom");
    }
}
