//! Per-route and per-endpoint policy: timeouts, retries and circuit breakers,
//! each an independent tower layer.
//!
//! # Layer order
//!
//! The outbound stack, read outermost first:
//!
//! ```text
//! RoutePolicies::for_path(path) picks the RoutePolicy of the request's route
//!   TimeoutLayer   one deadline: min(route timeout, grpc-timeout); answers DEADLINE_EXCEEDED
//!   RetryLayer     replays UNAVAILABLE / connection failures, within the route's budget
//!   (buffer)       makes the balancer cloneable, so the retry layer can call it again
//!   p2c balancer   peak-EWMA over the destination's endpoints
//!     BreakerLayer per endpoint: Pending while open, so the balancer routes around it
//!       connector  mTLS client; wraps connection failures in ConnectError
//! ```
//!
//! Retries sit *inside* the timeout so the caller's deadline bounds all
//! attempts and the backoffs between them together: a retry never extends the
//! time the caller waits, and when the deadline fires the attempt in flight is
//! dropped (cancelled) with it. Were the order reversed, each attempt would get
//! a fresh timeout and three attempts could take three times the deadline the
//! caller asked for. The timeout layer leaves a [`timeout::Deadline`] in the
//! request extensions so the retry layer can tell each attempt how much time is
//! left (`grpc-timeout`) and skip a retry that could not finish in time.
//!
//! The breaker sits *below* the balancer, one per endpoint, so one bad
//! endpoint is taken out of rotation instead of failing the whole route. It
//! reports an open circuit as `Poll::Pending` from `poll_ready`: tower's p2c
//! balancer skips pending endpoints but evicts those whose readiness fails, and
//! an open breaker must not make the endpoint disappear from discovery.
//!
//! Failures are told apart by type, by walking an error's source chain:
//! [`ConnectError`] means the request never reached the server and is safe to
//! retry; [`Shed`] means the proxy itself refused the work (no endpoint ready,
//! queue full) and retrying would only add load. Synthetic answers made by the
//! proxy ([`grpc_error`]) carry `x-cloudsec-proxy-error` so clients and metrics
//! can tell them from the server's.
//!
//! # Layout
//!
//! - [`timeout`]: [`timeout::TimeoutLayer`], `grpc-timeout` parsing and encoding.
//! - [`retry`]: [`retry::RetryLayer`], [`retry::RetryPolicy`], the replayable request body.
//! - [`breaker`]: [`breaker::BreakerLayer`], [`breaker::BreakerPolicy`], [`breaker::BreakerState`].
//! - [`route`]: [`route::RoutePolicy`] and [`route::RoutePolicies`], the configuration.

pub mod breaker;
pub mod retry;
pub mod route;
pub mod timeout;

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use cloudsec_runtime::metrics::Metrics;
use http::HeaderValue;
use serde::Deserialize;
use tonic::Code;

pub use breaker::{BreakerHandle, BreakerLayer, BreakerMetrics, BreakerPolicy, BreakerState};
pub use retry::{RetryLayer, RetryMetrics, RetryPolicy};
pub use route::{RouteKey, RoutePolicies, RoutePolicy};
pub use timeout::{Deadline, TimeoutLayer, TimeoutMetrics};

/// The proxy's error type: boxed, and classified by walking its source chain.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The body type of requests and responses that go through the policy layers.
///
/// The retry layer has to replay request bodies, so it needs one concrete
/// type; responses use the same so synthetic answers fit any stack.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// Extra metric labels a layer adds to its series, e.g. `("route", "pkg.Svc")`.
pub type Labels = Vec<(String, String)>;

/// The header naming why the proxy answered a request itself.
pub const PROXY_ERROR_HEADER: &str = "x-cloudsec-proxy-error";

/// A trailers-only gRPC error response made by the proxy itself.
///
/// HTTP 200 with `grpc-status` and a percent-encoded `grpc-message` in the
/// headers and an empty body, as a gRPC server answers an error; plus
/// `x-cloudsec-proxy-error` carrying the (percent-encoded) reason.
pub fn grpc_error(code: Code, message: &str) -> http::Response<ProxyBody> {
    synthetic_response(code, message)
}

/// [`grpc_error`] for any body type with an empty default, so layers can stay
/// generic over the response body.
pub(crate) fn synthetic_response<B: Default>(code: Code, message: &str) -> http::Response<B> {
    let mut res = http::Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    // Percent-encoding leaves only visible ASCII and spaces, which a header
    // value always accepts, so the conversion cannot fail in practice.
    if let Ok(encoded) = HeaderValue::try_from(percent_encode(message)) {
        headers.insert("grpc-message", encoded.clone());
        headers.insert(PROXY_ERROR_HEADER, encoded);
    }
    res
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec asks: bytes
/// outside `0x20..=0x7E`, and `%` itself, become `%XX`.
fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
    out
}

/// The gRPC status a response carries in its headers.
///
/// Only trailers-only responses (how servers, tonic included, answer an error)
/// have it there; a response whose status comes in trailers gives `None`. An
/// unparsable value reads as `Unknown`, as a gRPC client would read it.
pub fn grpc_status<B>(res: &http::Response<B>) -> Option<Code> {
    res.headers()
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// A connection-level failure: refused, reset, TLS handshake failed.
///
/// The request never reached the server, so it is always safe to retry.
/// The connector wraps its errors in this.
#[derive(Debug)]
pub struct ConnectError(BoxError);

impl ConnectError {
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self(cause.into())
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection to endpoint failed")
    }
}

impl Error for ConnectError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// The proxy refused the request itself: load shedding, no endpoint ready,
/// queue full. Never retried: retrying is exactly the extra load being shed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shed {
    reason: Cow<'static, str>,
}

impl Shed {
    /// `reason` says what was full or missing, e.g. "queue full".
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Shed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request shed: {}", self.reason)
    }
}

impl Error for Shed {}

/// An endpoint's circuit breaker refused a request.
///
/// The breaker answers `Pending` from `poll_ready` while open; this error is
/// only returned when `call` comes without readiness having been granted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerOpen;

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("endpoint circuit breaker is open")
    }
}

impl Error for BreakerOpen {}

/// The first error of type `E` in `err`'s source chain, `err` included.
pub fn find_cause<'a, E: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Whether a connection failure caused `err`.
pub fn is_connect_error(err: &(dyn Error + 'static)) -> bool {
    find_cause::<ConnectError>(err).is_some()
}

/// Whether `err` is load shedding: ours ([`Shed`]) or tower's `LoadShed`.
pub fn is_shed(err: &(dyn Error + 'static)) -> bool {
    find_cause::<Shed>(err).is_some()
        || find_cause::<tower::load_shed::error::Overloaded>(err).is_some()
}

/// A capped exponential backoff: the `n`th delay (from 0) is at most
/// `min(max, base * 2^n)`, before jitter.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The un-jittered `n`th delay (from 0): `min(max, base * 2^n)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 2u32.checked_pow(n).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// "Full jitter": uniform in `[0, ceiling(n)]`. Spreads retries of many
    /// clients that failed together, so they do not come back together.
    pub fn full_jitter(&self, n: u32) -> Duration {
        random_between(Duration::ZERO, self.ceiling(n))
    }

    /// "Equal jitter": uniform in `[ceiling(n) / 2, ceiling(n)]`. Spread, but
    /// never close to zero: used where a delay must mean a real pause.
    pub fn equal_jitter(&self, n: u32) -> Duration {
        let ceiling = self.ceiling(n);
        random_between(ceiling / 2, ceiling)
    }
}

/// Uniform in `[low, high]`, in whole nanoseconds (`low <= high`).
fn random_between(low: Duration, high: Duration) -> Duration {
    // Integer arithmetic: `Duration::mul_f64` can panic near `Duration::MAX`.
    let low = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX).max(low);
    Duration::from_nanos(rand::random_range(low..=high))
}

/// The metric families of all policy layers; register once per proxy.
#[derive(Clone, Debug, Default)]
pub struct PolicyMetrics {
    pub timeout: TimeoutMetrics,
    pub retry: RetryMetrics,
    pub breaker: BreakerMetrics,
}

impl PolicyMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            timeout: TimeoutMetrics::register(metrics),
            retry: RetryMetrics::register(metrics),
            breaker: BreakerMetrics::register(metrics),
        }
    }
}

/// `labels` plus one more.
fn with_label(labels: &Labels, key: &str, value: &str) -> Labels {
    let mut all = labels.clone();
    all.push((key.to_owned(), value.to_owned()));
    all
}

/// Serde support for gRPC codes, written as names (`UNAVAILABLE`,
/// `Unavailable`, `unavailable`, `DEADLINE_EXCEEDED`, `DeadlineExceeded`) or
/// numbers (`14`).
pub(crate) mod codes {
    use std::fmt;

    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use tonic::Code;

    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// Compares names without case or underscores: `DEADLINE_EXCEEDED` is
    /// `DeadlineExceeded`.
    pub(crate) fn parse(name: &str) -> Option<Code> {
        let wanted: String = name
            .chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        ALL.into_iter()
            .find(|code| format!("{code:?}").to_ascii_lowercase() == wanted)
    }

    struct CodeVisitor;

    impl Visitor<'_> for CodeVisitor {
        type Value = Code;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a gRPC status code name such as \"UNAVAILABLE\", or a number 0-16")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Code, E> {
            parse(v).ok_or_else(|| E::custom(format!("unknown gRPC status code {v:?}")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Code, E> {
            i32::try_from(v)
                .ok()
                .filter(|n| (0..=16).contains(n))
                .map(Code::from_i32)
                .ok_or_else(|| E::custom(format!("gRPC status code {v} is not in 0-16")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Code, E> {
            self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
        }
    }

    struct CodesVisitor;

    impl<'de> Visitor<'de> for CodesVisitor {
        type Value = Vec<Code>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of gRPC status codes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Code>, A::Error> {
            let mut codes = Vec::new();
            while let Some(Code1(code)) = seq.next_element()? {
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
            Ok(codes)
        }
    }

    struct Code1(Code);

    impl<'de> de::Deserialize<'de> for Code1 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(CodeVisitor).map(Code1)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Code>, D::Error> {
        d.deserialize_seq(CodesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_error_is_trailers_only() {
        let res = grpc_error(Code::Unavailable, "no endpoint 100% ready\n");
        assert_eq!(res.status(), http::StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], "14");
        assert_eq!(res.headers()["grpc-message"], "no endpoint 100%25 ready%0A");
        assert_eq!(
            res.headers()[PROXY_ERROR_HEADER],
            "no endpoint 100%25 ready%0A"
        );
        assert!(http_body::Body::is_end_stream(res.body()));
        assert_eq!(grpc_status(&res), Some(Code::Unavailable));
    }

    #[test]
    fn percent_encodes_non_ascii() {
        assert_eq!(percent_encode("café"), "caf%C3%A9");
        assert_eq!(percent_encode("plain text"), "plain text");
    }

    #[test]
    fn reads_grpc_status() {
        let mut res = http::Response::new(());
        assert_eq!(grpc_status(&res), None);
        res.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("4"));
        assert_eq!(grpc_status(&res), Some(Code::DeadlineExceeded));
        res.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("garbage"));
        assert_eq!(grpc_status(&res), Some(Code::Unknown));
    }

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn classifies_by_source_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err: BoxError = Box::new(Wrapper(Box::new(ConnectError::new(refused))));
        assert!(is_connect_error(&*err));
        assert!(!is_shed(&*err));

        let err: BoxError = Box::new(Wrapper(Box::new(Shed::new("queue full"))));
        assert_eq!(
            err.source().unwrap().to_string(),
            "request shed: queue full"
        );
        assert!(is_shed(&*err));
        assert!(!is_connect_error(&*err));

        let err: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
        assert!(is_shed(&*err));

        let err: BoxError = "other".into();
        assert!(!is_shed(&*err) && !is_connect_error(&*err));
    }

    #[test]
    fn backoff_is_capped_exponential_with_jitter() {
        let b = Backoff::new(Duration::from_millis(25), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_millis(25));
        assert_eq!(b.ceiling(1), Duration::from_millis(50));
        assert_eq!(b.ceiling(5), Duration::from_millis(800));
        assert_eq!(b.ceiling(6), Duration::from_secs(1));
        assert_eq!(b.ceiling(200), Duration::from_secs(1));
        for n in 0..10 {
            assert!(b.full_jitter(n) <= b.ceiling(n));
            let d = b.equal_jitter(n);
            assert!(d >= b.ceiling(n) / 2 && d <= b.ceiling(n));
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert!(huge.full_jitter(3) <= Duration::MAX);
    }

    #[derive(Debug, Deserialize)]
    struct Codes {
        #[serde(deserialize_with = "codes::deserialize")]
        codes: Vec<Code>,
    }

    #[test]
    fn parses_code_names_and_numbers() {
        let c: Codes =
            toml::from_str(r#"codes = ["UNAVAILABLE", "DeadlineExceeded", "data_loss", 13, 14]"#)
                .unwrap();
        assert_eq!(
            c.codes,
            vec![
                Code::Unavailable,
                Code::DeadlineExceeded,
                Code::DataLoss,
                Code::Internal
            ]
        );
        let err = toml::from_str::<Codes>(r#"codes = ["UNAVAILABLEX"]"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown gRPC status code"),
            "{err}"
        );
        assert!(toml::from_str::<Codes>("codes = [17]").is_err());
    }
}
