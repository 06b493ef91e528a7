//! Process-wide shutdown: one token that SIGTERM or ctrl-c cancels and that
//! every server watches.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Cancels `shutdown` when the process receives SIGTERM or ctrl-c.
///
/// The handlers are installed before this returns, so a signal that comes
/// right after (an orchestrator stopping a pod the moment it looks ready)
/// drains instead of killing the process. Must run inside a runtime.
pub fn cancel_on_signal(shutdown: Shutdown) {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind, name: &'static str| {
            signal(kind)
                .inspect_err(|error| tracing::warn!(%error, "cannot listen for {name}"))
                .ok()
        };
        (
            install(SignalKind::terminate(), "SIGTERM"),
            install(SignalKind::interrupt(), "SIGINT"),
        )
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let recv = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = recv(term) => {}
                () = recv(int) => {}
            }
        }
        #[cfg(not(unix))]
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested, draining");
        shutdown.cancel();
    });
}
