//! A real PostgreSQL (Debian's package) started per test, for the storage tests.
//!
//! `initdb` into a temp directory, then `postgres` on a free port of 127.0.0.1 with its unix
//! socket in the same temp directory and `fsync=off`. TCP connections authenticate with SCRAM and
//! the superuser password [`Postgres::password`], so tests exercise the password path for real.
//! Run as root (CI), both programs run as the `postgres` system user. The server is stopped on
//! drop. [`Postgres::create_database`] gives each test (or each scenario) its own database.

use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The superuser the harness creates.
pub const POSTGRES_USER: &str = "postgres";

pub struct Postgres {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
}

/// Debian's PostgreSQL binaries (`/usr/lib/postgresql/<version>/bin`, the highest version), or
/// the directory named by `TW_PG_BIN`.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TW_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args...`, as the `postgres` system user when we are root.
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        // setpriv execs (no intermediate process), so the child's pid is the server's own.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Starts a fresh server and waits until it accepts connections. Panics with a clear message
    /// when PostgreSQL is not installed.
    pub async fn start() -> Postgres {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL not found under /usr/lib/postgresql/<version>/bin — run scripts/test.sh (it installs Debian's postgresql) or set TW_PG_BIN"
            )
        });
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tw-postgres-")
            .tempdir()
            .expect("postgres temp dir");
        let password = format!("testkit-pg-{}", std::process::id());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).expect("write pwfile");
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "could not chown the PostgreSQL temp dir to the `postgres` user (does it exist?)"
            );
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-U", POSTGRES_USER, "-E", "UTF8", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("postgres log");
        if root {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path().join("postgres.log"))
                .status();
        }
        let child = command(&bin.join("postgres"), root)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        let mut pg = Postgres {
            child,
            dir,
            port,
            password,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited ({status}); its log:\n{}", pg.log());
            }
            if let Ok(conn) = sqlx::PgConnection::connect_with(&pg.admin_options("postgres")).await
            {
                let _ = conn.close().await;
                return pg;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "postgres did not accept connections in 30 s; its log:\n{}",
            pg.log()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (TCP connections need it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>` — no password in it; pass [`Self::password`]
    /// separately.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{POSTGRES_USER}@127.0.0.1:{}/{db}", self.port)
    }

    fn admin_options(&self, db: &str) -> sqlx::postgres::PgConnectOptions {
        sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(POSTGRES_USER)
            .password(&self.password)
            .database(db)
    }

    /// Creates a new, empty database with a unique name and returns its name.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tw_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = sqlx::PgConnection::connect_with(&self.admin_options("postgres"))
            .await
            .expect("connect to postgres");
        // The name is ours (letters, digits, `_`), so formatting it into the statement is safe.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        name
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown (SIGQUIT) takes the backends down with the postmaster; SIGKILL if
        // it lingers.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
