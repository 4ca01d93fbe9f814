//! Binding a configured listener and serving a router on it until shutdown.

use crate::connections::ConnectionLimits;
use crate::connections::{
    AcceptedStream, ConnectionContext, ConnectionRegistry, effective_max_connections,
    refuse_over_capacity, serve_connection,
};
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tw_core::Error;
use tw_core::Invalid;
use tw_core::ListenAddr;

/// Unix sockets hand out tokens to whoever can connect, so only the owner may.
pub const SOCKET_MODE: u32 = 0o600;

/// A bound listener, ready for [`serve`].
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    /// The config key it was bound for, for error messages.
    key: String,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

impl Listener {
    /// Where the listener actually is (a TCP port of `0` is resolved).
    pub fn local_addr(&self) -> ListenAddr {
        match &self.inner {
            Inner::Tcp(l) => match l.local_addr() {
                Ok(a) => ListenAddr::Tcp(a),
                Err(_) => ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
            },
            Inner::Unix(_, file) => ListenAddr::Unix(file.path.clone()),
        }
    }

    /// The TCP address, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self.local_addr() {
            ListenAddr::Tcp(a) => Some(a),
            ListenAddr::Unix(_) => None,
        }
    }
}

/// The caller's address as seen by the server: `None` on a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl Connected<IncomingStream<'_, NoDelayTcp>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, NoDelayTcp>) -> Self {
        PeerAddr(Some(*stream.remote_addr()))
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerAddr {
    fn connect_info(_: IncomingStream<'_, UnixListener>) -> Self {
        PeerAddr(None)
    }
}

/// TCP listener that disables Nagle on every connection: responses are small and latency matters.
#[derive(Debug)]
pub struct NoDelayTcp(TcpListener);

impl axum::serve::Listener for NoDelayTcp {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Binds `addr`. `key` names the config key (`agent.listen`) so errors point at the fix, e.g.
/// `agent.listen 127.0.0.1:8790: address in use`.
pub async fn bind(addr: &ListenAddr, key: &str) -> Result<Listener, Error> {
    let inner = match addr {
        ListenAddr::Tcp(a) => TcpListener::bind(a)
            .await
            .map(Inner::Tcp)
            .map_err(|e| listen_error(key, &a.to_string(), &describe_io(&e)))?,
        ListenAddr::Unix(path) => {
            let (l, file) = bind_unix(path)
                .await
                .map_err(|m| listen_error(key, &format!("unix:{}", path.display()), m.message()))?;
            Inner::Unix(l, file)
        }
    };
    Ok(Listener {
        inner,
        key: key.to_owned(),
    })
}

fn listen_error(key: &str, addr: &str, reason: &str) -> Error {
    Error::config("listen_failed", format!("{key} {addr}: {reason}"))
        .with("key", key)
        .with("listen", addr)
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address in use".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        _ => e.to_string(),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish,
/// with the default [`ConnectionLimits`]. Handlers can extract [`PeerAddr`] via
/// `ConnectInfo<PeerAddr>`.
pub async fn serve<F>(listener: Listener, router: Router, shutdown: F) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with(listener, router, shutdown, ConnectionLimits::default()).await
}

/// As [`serve`], with these connection limits (see [`crate::connections`]).
pub async fn serve_with<F>(
    listener: Listener,
    router: Router,
    shutdown: F,
    limits: ConnectionLimits,
) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    let Listener { inner, key } = listener;
    let registry = ConnectionRegistry::new(effective_max_connections(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    let (tcp, unix) = match &inner {
        Inner::Tcp(l) => (Some(l), None),
        Inner::Unix(l, _) => (None, Some(l)),
    };
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = accept(tcp, unix) => a,
        };
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors (or a transient accept failure): make room, then retry.
                tracing::warn!(listen = %key, error = %e, "cannot accept a connection");
                registry.evict_oldest_idle();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(conn) = registry.admit() else {
            tasks.spawn(refuse_over_capacity(stream));
            continue;
        };
        let ctx = ConnectionContext {
            router: router.clone(),
            conn,
            registry: registry.clone(),
            limits,
            stop: stop_rx.clone(),
        };
        tasks.spawn(serve_connection(stream, ctx));
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(inner);
    Ok(())
}

async fn accept(
    tcp: Option<&TcpListener>,
    unix: Option<&UnixListener>,
) -> io::Result<AcceptedStream> {
    match (tcp, unix) {
        (Some(l), _) => {
            let (stream, addr) = l.accept().await?;
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            Ok(AcceptedStream::Tcp(stream, addr))
        }
        (None, Some(l)) => Ok(AcceptedStream::Unix(l.accept().await?.0)),
        (None, None) => std::future::pending().await,
    }
}

/// The socket file we created; removed when the listener goes away, unless someone replaced it.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_some() && file_identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

async fn bind_unix(path: &Path) -> Result<(UnixListener, SocketFile), Invalid> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(format!("directory {} does not exist", parent.display()).into());
    }
    remove_stale_socket(path).await?;

    // Bind under a temporary name, restrict it, then rename into place: the socket is never
    // reachable at its public path with looser permissions, not even for an instant.
    let file_name = path
        .file_name()
        .ok_or_else(|| "the socket path needs a file name".to_owned())?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| describe_io(&e))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(describe_io(&e).into());
    }
    let file = SocketFile {
        path: path.to_owned(),
        identity: file_identity(path),
    };
    Ok((listener, file))
}

/// A socket file left by a crashed process is removed; a live one (or a non-socket) is not.
async fn remove_stale_socket(path: &Path) -> Result<(), Invalid> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err("the path exists and is not a socket; refusing to replace it".into());
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err("address in use (another process is listening on this socket)".into()),
        Err(_) => std::fs::remove_file(path).map_err(|e| {
            format!("cannot remove the stale socket file: {}", describe_io(&e)).into()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    fn app() -> Router {
        Router::new().route("/", get(|| async { "hello" }))
    }

    #[tokio::test]
    async fn tcp_port_in_use_names_the_key_and_address() {
        let first = bind(
            &ListenAddr::parse("127.0.0.1:0").expect("addr"),
            "agent.listen",
        )
        .await
        .expect("bind");
        let addr = first.local_addr();
        let err = bind(&addr, "agent.listen").await.expect_err("in use");
        let ListenAddr::Tcp(a) = addr else {
            panic!("tcp")
        };
        assert_eq!(err.code(), "listen_failed");
        assert_eq!(err.message(), format!("agent.listen {a}: address in use"));
    }

    async fn get_over_unix(path: &Path) -> String {
        let mut s = tokio::net::UnixStream::connect(path)
            .await
            .expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn unix_socket_is_private_replaces_stale_refuses_live_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        // A stale socket from a dead process.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
        assert!(path.exists());

        let addr = ListenAddr::Unix(path.clone());
        let listener = bind(&addr, "agent.listen").await.expect("bind over stale");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let err = bind(&addr, "agent.listen").await.expect_err("live socket");
        assert!(err.message().contains("address in use"), "{err}");

        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app(), async {
            let _ = rx.await;
        }));
        let reply = get_over_unix(&path).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("hello"), "{reply}");
        tx.send(()).expect("shutdown");
        server.await.expect("join").expect("serve");
        assert!(!path.exists(), "socket file left behind");
    }

    #[tokio::test]
    async fn unix_path_that_is_a_regular_file_is_not_clobbered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("important.txt");
        std::fs::write(&path, "data").expect("write");
        let err = bind(&ListenAddr::Unix(path.clone()), "agent.listen")
            .await
            .expect_err("not a socket");
        assert!(err.message().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "data");
    }
}
