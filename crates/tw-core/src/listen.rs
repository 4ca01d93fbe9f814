//! Where a server listens: a TCP address or a unix socket path, read from `HOST:PORT` or
//! `unix:/path` (the one reading of every `listen` setting).

use crate::Invalid;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Parses `127.0.0.1:8790` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs a socket path, e.g. unix:/run/tokenwarden/agent.sock".into(),
                );
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(Self::Tcp).map_err(|_| {
            format!("`{s}` is neither HOST:PORT (e.g. 127.0.0.1:8790) nor unix:/path").into()
        })
    }

    /// Reachable from this host only: a loopback address (127.0.0.0/8, `::1`, also as
    /// `::ffff:127.x`) or a unix socket. `0.0.0.0` and `::` are every interface, so not local.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Tcp(a) => a.ip().to_canonical().is_loopback(),
            Self::Unix(_) => true,
        }
    }
}
