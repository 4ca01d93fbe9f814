//! Test harness of tokenwarden.
//!
//! * [`Idp`] starts the Keycloak-shaped test IdP in `testing/idp` (a Node
//!   process built on `oidc-provider`) and steers it through its control API:
//!   request counters, fault injection, listener down/up, key rotation,
//!   refresh-token minting, client secret changes, answers held back after
//!   processing (crash tests), refresh-token reuse grace, and a browser's
//!   sign-in through the authorization endpoint ([`Idp::browser_login`]).
//! * [`logcapture`] captures every `tracing` record (all levels, fields and
//!   spans) so tests can assert that no secret was logged.
//! * [`Nginx`] starts Debian's nginx with a test's `server` block (forward-auth tests).
//! * [`Postgres`] starts Debian's PostgreSQL in a temp directory (storage tests), one database
//!   per test via [`Postgres::create_database`].
//! * [`fixture_path`] finds files under `testing/fixtures`.
//! * [`upstreams`] models how ASP.NET Core, IIS, Tomcat, Express and Go route a raw path.
//! * [`Running`] keeps a server under test in its own task until stopped; [`TestServer`] serves
//!   a stub (an upstream) until dropped; [`rates`] adds up benchmark rates for ratios against a
//!   baseline.
//!
//! The IdP needs its npm dependencies: run `npm ci` in `testing/idp` once.

mod config;
mod idp;
pub mod logcapture;
mod nginx;
mod paths;
mod postgres;
pub mod rates;
mod running;
mod server;
pub mod upstreams;

pub use config::{ClientSpec, IdpConfig, UserSpec};
pub use idp::{ClientInfo, Endpoint, Fault, Idp, IdpStats, UserInfo};
pub use nginx::{Nginx, nginx_binary};
pub use paths::{fixture_path, idp_dir, repo_root};
pub use postgres::{POSTGRES_USER, Postgres, postgres_bin_dir};
pub use running::{Running, STOP_LIMIT, Shutdown};
pub use server::{TestServer, http_client};

/// A port on 127.0.0.1 that was free a moment ago, for servers that must be told their port
/// before they start (nginx, PostgreSQL, a spawned binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
