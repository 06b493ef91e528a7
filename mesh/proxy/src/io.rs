//! Connection plumbing: an HTTP/2 accept loop with draining shutdown, the
//! mTLS connector for endpoints, and byte counting for TCP metrics.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cloudsec_identity::SpiffeId;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::policy::{BoxError, ConnectError, ProxyBody};
use crate::tls::TlsState;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TcpLabels {
    pub(crate) direction: &'static str,
}

cloudsec_runtime::metric_families! {
    /// Linkerd's TCP counters.
    pub(crate) struct TcpMetrics {
        pub(crate) open: Family<TcpLabels, Counter> = "tcp_open", "connections opened";
        pub(crate) close: Family<TcpLabels, Counter> = "tcp_close", "connections closed";
        pub(crate) read_bytes: Family<TcpLabels, Counter> = "tcp_read_bytes", "bytes read from peers";
        pub(crate) write_bytes: Family<TcpLabels, Counter> = "tcp_write_bytes", "bytes written to peers";
    }
}

pin_project_lite::pin_project! {
    /// Counts bytes both ways and the connection's close.
    pub(crate) struct Counted<T> {
        #[pin]
        inner: T,
        read: Counter,
        write: Counter,
        close: Counter,
    }

    impl<T> PinnedDrop for Counted<T> {
        fn drop(this: Pin<&mut Self>) {
            this.project().close.inc();
        }
    }
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T, metrics: &TcpMetrics, direction: &'static str) -> Self {
        let labels = TcpLabels { direction };
        metrics.open.get_or_create(&labels).inc();
        Self {
            inner,
            read: metrics.read_bytes.get_or_create(&labels).clone(),
            write: metrics.write_bytes.get_or_create(&labels).clone(),
            close: metrics.close.get_or_create(&labels).clone(),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        this.read.inc_by((buf.filled().len() - before) as u64);
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        count_written(this.write, this.inner.poll_write(cx, buf))
    }

    // Without these, writers fall back to one slice per call: h2 then sends
    // a frame's head and its payload in two writes, and rustls's pending
    // TLS records go out in one system call each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        count_written(this.write, this.inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Adds what a write accepted to `written` (nothing while it is pending or
/// failed) and hands the result on.
#[inline]
fn count_written(written: &Counter, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    if let Poll::Ready(Ok(n)) = &result {
        written.inc_by(*n as u64);
    }
    result
}

/// An mTLS connection to a peer sidecar. tokio-rustls's own stream, not
/// a wrapper: a wrapper must forward every `AsyncWrite` method, and one that
/// missed `poll_write_vectored` cost a TLS record and a system call per
/// frame.
pub(crate) type MeshStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Dials one endpoint with mTLS, requiring it to prove `identity`.
///
/// One `Arc` inside: hyper's client clones its connector for every request,
/// even for one that a pooled connection serves, and a deep clone (the
/// identity's strings, the metric families) cost more than a thousand
/// instructions per request.
#[derive(Clone)]
pub(crate) struct MeshConnector(Arc<MeshTarget>);

/// What [`MeshConnector`] dials and checks.
pub(crate) struct MeshTarget {
    pub(crate) addr: SocketAddr,
    pub(crate) identity: SpiffeId,
    pub(crate) tls: Arc<TlsState>,
    pub(crate) tcp: TcpMetrics,
}

impl MeshConnector {
    pub(crate) fn new(target: MeshTarget) -> Self {
        Self(Arc::new(target))
    }
}

impl tower::Service<http::Uri> for MeshConnector {
    type Response = TokioIo<Counted<MeshStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = Arc::clone(&self.0);
        Box::pin(async move {
            let fail = |e: &dyn std::fmt::Display| -> BoxError {
                Box::new(ConnectError::new(format!("{}: {e}", this.addr)))
            };
            let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(this.addr))
                .await
                .map_err(|e| fail(&e))?
                .map_err(|e| fail(&e))?;
            let _ = tcp.set_nodelay(true);
            let config = this.tls.client_config(this.identity.clone());
            let name = rustls::pki_types::ServerName::try_from(this.identity.dns_name())
                .map_err(|e| fail(&e))?;
            let tls = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|e| fail(&e))?
            .map_err(|e| fail(&e))?;
            Ok(TokioIo::new(Counted::new(tls, &this.tcp, "outbound")))
        })
    }
}

/// What an accepted connection brings to the request handler.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    type Peer: Clone + Send + Sync + 'static;
    fn handle(
        &self,
        peer: Self::Peer,
        request: http::Request<Incoming>,
    ) -> impl Future<Output = http::Response<ProxyBody>> + Send;
}

/// Serves HTTP/2 on `listener` until `shutdown`; then lets open connections
/// finish their streams for up to `grace`.
pub(crate) async fn serve<H, A, Fut, IO>(
    listener: TcpListener,
    accept: A,
    handler: H,
    shutdown: CancellationToken,
    grace: Duration,
) where
    H: Handler,
    A: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(IO, H::Peer), BoxError>> + Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Shared, so that each request clones one pointer, not the handler's
    // many handles.
    let handler = Arc::new(handler);
    loop {
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let accept = accept.clone();
        let handler = Arc::clone(&handler);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let (io, peer) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(tcp)).await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(error)) => {
                    tracing::info!(%remote, %error, "connection refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let handler = Arc::clone(&handler);
                let peer = peer.clone();
                // Boxed: hyper spawns a task per stream holding this
                // future, and tokio copies a task's future as it creates
                // and runs it; the handler's future is large (the whole
                // stack's state), a box is one pointer (issue 21).
                let handling = Box::pin(async move { handler.handle(peer, request).await });
                async move { Ok::<_, Infallible>(handling.await) }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(io), service);
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "grace period over, closing connections still open");
    }
}

/// One HTTP/2 connection to one address, dialled with `C` on first use and
/// again once it has closed: how the outbound reaches each endpoint and the
/// inbound its application.
///
/// hyper's own connection, not hyper-util's pooled client: with one peer
/// there is nothing to pool, and the pooled client costs a pool checkout, a
/// clone of the connector and a key lookup per request (issue 21). What the
/// pooled client did that matters is kept: a request that a closing
/// connection never took is sent again on a new one.
pub(crate) struct Http2Connection<C>(Arc<Http2State<C>>);

impl<C> Clone for Http2Connection<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

struct Http2State<C> {
    connector: C,
    /// The open connection's sender; each request clones it (a channel
    /// handle).
    current: arc_swap::ArcSwapOption<SendRequest<ProxyBody>>,
    /// One dial at a time: requests that find the connection closed wait
    /// for the same new one.
    dialing: tokio::sync::Mutex<()>,
}

impl<C, IO> Http2Connection<C>
where
    C: tower::Service<http::Uri, Response = IO, Error = BoxError> + Clone + Send + Sync + 'static,
    C::Future: Send,
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    pub(crate) fn new(connector: C) -> Self {
        Self(Arc::new(Http2State {
            connector,
            current: arc_swap::ArcSwapOption::empty(),
            dialing: tokio::sync::Mutex::new(()),
        }))
    }

    /// The open connection, dialled first if there is none. Dial and
    /// handshake failures come as [`ConnectError`].
    async fn sender(state: &Http2State<C>) -> Result<SendRequest<ProxyBody>, BoxError> {
        let open = || {
            state
                .current
                .load()
                .as_deref()
                .filter(|s| !s.is_closed())
                .cloned()
        };
        if let Some(sender) = open() {
            return Ok(sender);
        }
        let _dialing = state.dialing.lock().await;
        if let Some(sender) = open() {
            return Ok(sender);
        }
        let io = state
            .connector
            .clone()
            .call(http::Uri::default())
            .await
            .map_err(|e| -> BoxError {
                if crate::policy::is_connect_error(e.as_ref()) {
                    e
                } else {
                    Box::new(ConnectError::new(e))
                }
            })?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(|e| Box::new(ConnectError::new(e)) as BoxError)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
        });
        state.current.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }
}

/// Connection-level failures are what retries may safely repeat: the
/// request never reached the application, or the connection broke under
/// it (peer gone, reset, closed).
fn classify(error: hyper::Error) -> BoxError {
    if error.is_canceled() || error.is_closed() || error.is_incomplete_message() {
        Box::new(ConnectError::new(error))
    } else {
        Box::new(error)
    }
}

impl<C, IO> tower::Service<http::Request<ProxyBody>> for Http2Connection<C>
where
    C: tower::Service<http::Uri, Response = IO, Error = BoxError> + Clone + Send + Sync + 'static,
    C::Future: Send,
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Response = http::Response<ProxyBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<ProxyBody>) -> Self::Future {
        let state = Arc::clone(&self.0);
        Box::pin(async move {
            let mut sender = Self::sender(&state).await?;
            let response = match sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut error) => match error.take_message() {
                    // The connection closed before taking the request: a
                    // new connection gets it.
                    Some(request) => {
                        let mut sender = Self::sender(&state).await?;
                        sender.send_request(request).await.map_err(classify)?
                    }
                    None => return Err(classify(error.into_error())),
                },
            };
            Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }
}

/// Dials the application on loopback, in plaintext.
#[derive(Clone)]
pub(crate) struct AppConnector(pub(crate) SocketAddr);

impl tower::Service<http::Uri> for AppConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|e| Box::new(ConnectError::new(format!("{addr}: {e}"))) as BoxError)?
                .map_err(|e| Box::new(ConnectError::new(format!("{addr}: {e}"))) as BoxError)?;
            // Without TCP_NODELAY, Nagle's algorithm holds small gRPC frames
            // back for up to 40 ms on this loopback hop.
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(tcp))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use tower::Service;

    use super::*;

    fn request() -> http::Request<ProxyBody> {
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::builder()
            .uri("http://app/pkg.Svc/Get")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn counted_streams_pass_vectored_writes_through_and_count_them() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, accepted) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let metrics = TcpMetrics::default();
        let mut counted = Counted::new(client.unwrap(), &metrics, "outbound");
        // A writer that sees false sends each slice in a call of its own.
        assert!(counted.is_write_vectored());
        let slices = [
            io::IoSlice::new(b"frame head "),
            io::IoSlice::new(b"payload"),
        ];
        // A fresh socket's buffer takes both at once.
        let n = counted.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 18, "both slices in one call");
        counted.flush().await.unwrap();
        let labels = TcpLabels {
            direction: "outbound",
        };
        assert_eq!(metrics.write_bytes.get_or_create(&labels).get(), 18);
        drop(counted);
        let mut got = Vec::new();
        accepted.unwrap().0.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"frame head payload");
        assert_eq!(metrics.close.get_or_create(&labels).get(), 1);
    }

    #[tokio::test]
    async fn a_refused_dial_is_a_connect_error() {
        // Bound and released: nothing listens there any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut conn = Http2Connection::new(AppConnector(addr));
        let error = conn.call(request()).await.unwrap_err();
        assert!(crate::policy::is_connect_error(error.as_ref()), "{error}");
    }

    #[tokio::test]
    async fn requests_share_one_connection_and_a_closed_one_is_redialled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(tokio::sync::Notify::new());
        {
            let accepted = Arc::clone(&accepted);
            let close = Arc::clone(&close);
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let close = Arc::clone(&close);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|_req| async {
                            Ok::<_, Infallible>(http::Response::new(
                                http_body_util::Empty::<Bytes>::new(),
                            ))
                        });
                        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), service);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            () = close.notified() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    });
                }
            });
        }

        let mut client = Http2Connection::new(AppConnector(addr));
        for _ in 0..3 {
            let response = client.call(request()).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::OK);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");

        // The server closes the connection; the client notices, then dials
        // again for the next request.
        close.notify_one();
        while client
            .0
            .current
            .load()
            .as_deref()
            .is_some_and(|s| !s.is_closed())
        {
            tokio::task::yield_now().await;
        }
        let response = client.call(request()).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
