//! The REST listener, optionally terminating TLS.
//!
//! With `listen_tls` the gateway serves HTTPS itself (HTTP/2 by ALPN, and
//! HTTP/1.1), for deployments without a load balancer that terminates TLS.
//! Handshakes run off the accept path, each in its own task with a time
//! limit and a cap on how many run at once, so that a slow or silent client
//! cannot hold up everyone else's connections.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ListenTls;

/// The longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; further connections wait in the
/// kernel's backlog.
const MAX_HANDSHAKES: usize = 512;

/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Why `listen_tls` cannot be used; the gateway does not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenTlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no usable PEM certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{path} holds no usable PEM private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Config(#[source] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, ListenTlsError> {
    std::fs::read(path).map_err(|source| ListenTlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The rustls server configuration of `listen_tls`.
pub(crate) fn server_config(
    files: &ListenTls,
) -> Result<Arc<rustls::ServerConfig>, ListenTlsError> {
    let cert_error = |reason: String| ListenTlsError::Certificate {
        path: files.cert_file.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(&files.cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block".to_owned()));
    }
    // The key's bytes never appear in an error: only rustls's reason.
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key_file)?).map_err(|e| {
        ListenTlsError::Key {
            path: files.key_file.clone(),
            reason: e.to_string(),
        }
    })?;
    // An explicit provider: building never depends on which providers
    // other crates compiled in.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ListenTlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(ListenTlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection's byte stream, plain or TLS.
pub(crate) trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// The TCP peer of a connection, as the handler sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

impl Connected<IncomingStream<'_, PublicListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, PublicListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

type Handshaken = (TlsStream<TcpStream>, SocketAddr);

enum Inner {
    Plain(TcpListener),
    /// The port is closed: the gateway drains.
    Closed,
    Tls {
        ready: mpsc::Receiver<Handshaken>,
        acceptor: JoinHandle<()>,
    },
}

/// The listener axum serves REST from.
pub(crate) struct PublicListener {
    local_addr: SocketAddr,
    inner: Inner,
    /// Cancelled when the gateway drains: the port closes and no
    /// connection is accepted any more.
    closing: cloudsec_runtime::Shutdown,
}

impl std::fmt::Debug for PublicListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicListener")
            .field("local_addr", &self.local_addr)
            .field("tls", &matches!(self.inner, Inner::Tls { .. }))
            .finish()
    }
}

impl PublicListener {
    /// Serves `listener` as is, or behind TLS with `tls`. Must be called
    /// inside the runtime: TLS starts its accepting task here.
    pub(crate) fn new(
        listener: TcpListener,
        local_addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        closing: cloudsec_runtime::Shutdown,
    ) -> Self {
        let inner = match tls {
            None => Inner::Plain(listener),
            Some(config) => {
                let (sender, ready) = mpsc::channel(READY_QUEUE);
                let acceptor =
                    tokio::spawn(accept_tls(listener, TlsAcceptor::from(config), sender));
                Inner::Tls { ready, acceptor }
            }
        };
        Self {
            local_addr,
            inner,
            closing,
        }
    }

    /// Closes the port (and the TLS handshakes in progress).
    fn close(&mut self) {
        if let Inner::Tls { acceptor, .. } = &self.inner {
            acceptor.abort();
        }
        self.inner = Inner::Closed;
    }
}

impl Drop for PublicListener {
    fn drop(&mut self) {
        // Stop accepting (and close the port) as soon as the server lets
        // go of the listener, as a dropped TcpListener would.
        if let Inner::Tls { acceptor, .. } = &self.inner {
            acceptor.abort();
        }
    }
}

impl Listener for PublicListener {
    type Io = Box<dyn Connection>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let closing = self.closing.clone();
        tokio::select! {
            biased;
            () = closing.cancelled() => {
                self.close();
                std::future::pending().await
            }
            accepted = self.accept_open() => accepted,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

impl PublicListener {
    async fn accept_open(&mut self) -> (Box<dyn Connection>, SocketAddr) {
        match &mut self.inner {
            Inner::Plain(listener) => {
                // axum's own accept loop, error handling included.
                let (stream, peer) = Listener::accept(listener).await;
                no_delay(&stream, peer);
                (Box::new(stream), peer)
            }
            Inner::Tls { ready, .. } => match ready.recv().await {
                Some((stream, peer)) => (Box::new(stream), peer),
                // The accepting task only ends when this receiver is gone
                // or it was aborted; either way no connection will come.
                None => std::future::pending().await,
            },
            Inner::Closed => std::future::pending().await,
        }
    }
}

/// Small responses go out at once: with Nagle's algorithm a response
/// written in pieces (HTTP/2 HEADERS, then DATA) waits for the client's
/// delayed ACK, which added about 10 ms to every unloaded request.
fn no_delay(stream: &TcpStream, peer: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
    }
}

/// As axum does for its own listener: errors about one connection are
/// skipped, others (such as running out of file descriptors) are logged
/// and waited out rather than spun on.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn accept_tls(listener: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<Handshaken>) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            () = ready.closed() => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = ready.closed() => return,
            accepted = TcpListener::accept(&listener) => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        no_delay(&stream, peer);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    if ready.send((tls, peer)).await.is_err() {
                        tracing::debug!(%peer, "listener closed during the handshake");
                    }
                }
                Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
