//! Runs each scenario against a SQLite temp file and a fresh PostgreSQL database.

#![allow(dead_code)]

pub mod audit;
pub mod relay;

use std::path::PathBuf;
use std::sync::Arc;
use tw_config::{SecretRef, StorageConfig};
use tw_core::{ManualClock, UnixTime};
use tw_store::{Backend, Store};

/// One database, as two or more gateway instances would see it.
pub struct Target {
    pub backend: Backend,
    pub cfg: StorageConfig,
    pub clock: ManualClock,
    /// The SQLite file (SQLite only).
    pub path: Option<PathBuf>,
    pub pg: Option<tw_testkit::Postgres>,
    dir: tempfile::TempDir,
}

pub const START: UnixTime = UnixTime::from_secs(1_800_000_000);

impl Target {
    /// A new `Store` on this database (a new "instance": its own pool and watcher).
    pub async fn open(&self) -> Store {
        Store::open(&self.cfg, Arc::new(self.clock.clone()))
            .await
            .unwrap_or_else(|e| panic!("open {:?}: {e}", self.backend))
    }
}

pub async fn sqlite() -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("dir").join("tw.db");
    let cfg = StorageConfig {
        url: format!("sqlite://{}", path.display()),
        ..StorageConfig::default()
    };
    Target {
        backend: Backend::Sqlite,
        cfg,
        clock: ManualClock::new(START),
        path: Some(path),
        pg: None,
        dir,
    }
}

pub async fn postgres() -> Target {
    let pg = tw_testkit::Postgres::start().await;
    let db = pg.create_database().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("db-password");
    std::fs::write(&secret, pg.password()).expect("write password file");
    let cfg = StorageConfig {
        url: pg.url(&db),
        password: Some(SecretRef::File(secret)),
        ..StorageConfig::default()
    };
    Target {
        backend: Backend::Postgres,
        cfg,
        clock: ManualClock::new(START),
        path: None,
        pg: Some(pg),
        dir,
    }
}

/// `both!(name, scenario)`: a module `name` with tests `sqlite` and `postgres`, each running
/// `scenario(target).await`.
#[macro_export]
macro_rules! both {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::common::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::common::postgres().await).await
            }
        }
    };
}
