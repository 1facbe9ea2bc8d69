//! [`serve`]: runs an axum router (the gateway's API, the center's) on hyper
//! with a header-read timeout and a cap on open connections, so half-sent
//! requests cannot hold them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// How long a client may take to send a request's headers, from the first
/// byte it could send (a new connection, or the end of the previous answer
/// on a kept-alive one). A browser, `curl` or Prometheus sends them in one
/// packet; a client that dribbles them (Slowloris) is holding a connection,
/// not making a request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections one API serves at once. A wall page keeps about four
/// (events, live video, a request or two); a county center's dozen walls,
/// its scrapers and scripts stay far below. Beyond it a connection is
/// answered 503 at once and closed, and counted
/// (`…_http_refused_total{reason="connections"}`), so a flood of
/// connections costs file descriptors and memory only up to here.
pub const MAX_CONNECTIONS: usize = 512;

/// The limits [`serve`] applies to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers before hyper
    /// closes the connection; [`HEADER_READ_TIMEOUT`] by default.
    pub header_read_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed, and
    /// counted as refused. [`MAX_CONNECTIONS`] by default.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What a connection over the cap is told, if its socket takes it at once.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
    retry-after: 1\r\nconnection: close\r\ncontent-length: 33\r\n\r\n\
    too many connections; retry soon\n";

/// Binds the listener (so a port clash is reported before the daemon says it
/// is ready) and serves until `shutdown` fires, with the default
/// [`ConnectionLimits`]; connections refused over the cap are counted in
/// `refused`.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: Shutdown,
    refused: Counter,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_with(addr, app, shutdown, refused, ConnectionLimits::default()).await
}

/// [`serve`] with explicit limits. Each accepted connection takes a permit
/// of a semaphore before any byte of it is read, and hyper closes one
/// whose headers do not arrive within the header timeout, so neither
/// half-sent requests nor idle sockets can hold the API.
pub async fn serve_with(
    addr: SocketAddr,
    app: Router,
    shutdown: Shutdown,
    refused: Counter,
    limits: ConnectionLimits,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("HTTP API: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, app, shutdown, refused, limits));
    Ok((local, task))
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
    refused: Counter,
    limits: ConnectionLimits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut last_warned: Option<Instant> = None;
    let mut stop = shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.signalled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "HTTP API: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.inc();
            if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_warned = Some(Instant::now());
                tracing::warn!(
                    %peer,
                    limit = limits.max_connections,
                    "HTTP API: connection refused, too many open (counted as reason=connections; \
                     this warning repeats at most every 10 s)"
                );
            }
            // Best effort and never waited on: a client that does not read
            // loses only the explanation, the connection is closed anyway.
            if let Err(e) = stream.try_write(BUSY) {
                tracing::debug!(%peer, error = %e, "HTTP API: 503 not sent");
            }
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Header timeouts, resets, clients gone: the client's doing,
                // not an API fault.
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Answers under way finish; the wall's endless streams (events, live
    // video) are cut after a moment rather than holding the shutdown.
    if tokio::time::timeout(Duration::from_secs(2), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP API: long-lived answers cut at shutdown");
    }
    drop(shutdown);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn server(limits: ConnectionLimits) -> (SocketAddr, Counter, crate::shutdown::Trigger) {
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (trigger, shutdown) = crate::shutdown::Trigger::new();
        let refused = Counter::default();
        let (addr, _task) = serve_with(
            "127.0.0.1:0".parse().expect("addr"),
            app,
            shutdown,
            refused.clone(),
            limits,
        )
        .await
        .expect("serve");
        (addr, refused, trigger)
    }

    /// Reads until the server closes; what it sent.
    async fn until_closed(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server did not close the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn half_sent_headers_are_cut_off() {
        let (addr, _, _t) = server(ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 8,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        until_closed(&mut slow).await;
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(250) && held < Duration::from_secs(3),
            "{held:?}"
        );
        // A whole request is answered as before.
        let mut ok = TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        assert!(until_closed(&mut ok).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_refused_and_counted() {
        let (addr, refused, _t) = server(ConnectionLimits {
            header_read_timeout: Duration::from_millis(500),
            max_connections: 2,
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
            held.push(s);
        }
        // Let the accept loop take both before the third knocks.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let answer = until_closed(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert_eq!(refused.get(), 1);
        // Once the dribbling ones are cut off, there is room again.
        for mut s in held {
            until_closed(&mut s).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut next = TcpStream::connect(addr).await.expect("connect");
        next.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        assert!(until_closed(&mut next).await.starts_with("HTTP/1.1 200"));
        assert_eq!(refused.get(), 1);
    }
}
