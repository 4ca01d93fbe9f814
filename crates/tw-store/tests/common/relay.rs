//! A loopback TCP relay in front of the test's PostgreSQL: an outage the store cannot tell from a
//! stopped server, and a return with the data intact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::Target;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tw_store::Store;

/// A store of `target`'s database, reached through `relay`.
pub async fn open_through(target: &Target, relay: &Relay) -> Store {
    let pg = target.pg.as_ref().unwrap();
    let mut cfg = target.cfg.clone();
    let direct = format!("127.0.0.1:{}/", pg.port());
    assert!(cfg.url.contains(&direct), "{}", cfg.url);
    cfg.url = cfg
        .url
        .replace(&direct, &format!("127.0.0.1:{}/", relay.addr.port()));
    Store::open(&cfg, Arc::new(target.clock.clone()))
        .await
        .unwrap_or_else(|e| panic!("open through the relay: {e}"))
}

/// A loopback TCP relay in front of the test's PostgreSQL, so the server can go away and come
/// back with its data: `cut` closes the relay's port and every connection through it (to the
/// store, PostgreSQL is gone: connections are refused), `restore` listens on the same port again.
pub struct Relay {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub fn start(upstream_port: u16) -> Relay {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().unwrap();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        Relay {
            addr,
            upstream,
            task: Some(tokio::spawn(relay(listener, upstream))),
        }
    }

    /// Closes the port and drops every relayed connection.
    pub async fn cut(&mut self) {
        let task = self.task.take().expect("the relay is running");
        task.abort();
        // Once the task reports its cancellation, its listener and connections are dropped.
        assert!(task.await.unwrap_err().is_cancelled());
    }

    pub fn restore(&mut self) {
        assert!(self.task.is_none(), "the relay is running");
        let listener = listen(self.addr);
        self.task = Some(tokio::spawn(relay(listener, self.upstream)));
    }
}

fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(128).unwrap()
}

/// Relays every accepted connection to `upstream`; dropping this future (abort) drops the
/// listener and, with the `JoinSet`, aborts every relayed connection.
async fn relay(listener: TcpListener, upstream: SocketAddr) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let Ok((mut client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections.spawn(async move {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}
