//! File sinks: a profile's current token written to a file, atomically, whenever it changes.

use crate::metrics_names::*;
use crate::settings::{FileSinkConfig, SinkFormat};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tw_broker::{Broker, IssuedToken, Profile, TokenRequest};
use tw_core::backoff::{Backoff, Delays};
use tw_core::{Error, TokenFingerprint};

/// Waits between attempts after a failed fetch or write: doubles up to the maximum.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The waits after consecutive failures, from the first ([`RETRY_INITIAL`] doubling to
/// [`RETRY_MAX`]).
fn retry_delays() -> Delays {
    Backoff::exponential(RETRY_INITIAL, RETRY_MAX).delays()
}

/// One configured sink, bound to its profile.
#[derive(Debug, Clone)]
pub struct FileSink {
    profile: Arc<Profile>,
    path: PathBuf,
    format: SinkFormat,
    mode: u32,
    command: Option<Vec<String>>,
    command_timeout: Duration,
}

impl FileSink {
    /// Binds `cfg` to its profile; `index` names the config entry in errors.
    pub fn new(cfg: &FileSinkConfig, index: usize, broker: &Broker) -> Result<Self, Error> {
        let key = format!("agent.sinks[{index}]");
        let profile = broker.profile(&cfg.profile).cloned().ok_or_else(|| {
            Error::config(
                "unknown_profile",
                format!("{key}.profile: no profile named `{}`", cfg.profile),
            )
            .with("key", format!("{key}.profile"))
        })?;
        let mode = crate::settings::parse_mode(&cfg.mode).map_err(|m| {
            Error::config(tw_core::CONFIG_INVALID, format!("{key}.mode: {m}"))
                .with("key", format!("{key}.mode"))
        })?;
        Ok(Self {
            profile,
            path: cfg.path.clone(),
            format: cfg.format,
            mode,
            command: cfg.command.clone().filter(|c| !c.is_empty()),
            command_timeout: cfg.command_timeout,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// Writes `token` and runs the command. Only a failed write is an error; the command's
    /// failure is logged.
    pub async fn deliver(&self, token: &IssuedToken) -> Result<(), Error> {
        let contents = render(self.format, token);
        let result = write_atomically(&self.path, contents.into_bytes(), self.mode).await;
        let outcome = result.as_ref().map_or_else(|e| e.code(), |()| "ok");
        metrics::counter!(METRIC_SINK_WRITES, "profile" => self.profile.name().to_owned(), "outcome" => outcome)
            .increment(1);
        let result = result.map_err(|e| {
            e.with("profile", self.profile.name())
                .with("file", self.path.display().to_string())
        });
        if result.is_ok() {
            tracing::info!(
                profile = %self.profile.name(),
                file = %self.path.display(),
                token = ?token.fingerprint,
                "token file written"
            );
            self.run_command().await;
        }
        result
    }

    /// Keeps the file current until the task is dropped: writes the current token, then every new
    /// one. Failures are retried with backoff; a new token interrupts the wait.
    pub async fn run(self) {
        let mut updates = self.profile.subscribe();
        let mut written: Option<TokenFingerprint> = None;
        let mut delays = retry_delays();
        loop {
            // Asking the broker (rather than reading the channel) also starts lazy profiles.
            let failed = match self.profile.token(TokenRequest::default()).await {
                Ok(served) if written == Some(served.token.fingerprint) => false,
                Ok(served) => match self.deliver(&served.token).await {
                    Ok(()) => {
                        written = Some(served.token.fingerprint);
                        false
                    }
                    Err(e) => {
                        tracing::error!(code = e.code(), error = %e, "cannot write token file");
                        true
                    }
                },
                Err(e) => {
                    tracing::warn!(
                        profile = %self.profile.name(),
                        file = %self.path.display(),
                        code = e.code(),
                        error = %e,
                        "no token for file sink yet"
                    );
                    true
                }
            };
            if failed {
                let wait = delays.next().unwrap_or(RETRY_MAX);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    changed = updates.changed() => if changed.is_err() { return },
                }
            } else {
                delays = retry_delays();
                if updates.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    async fn run_command(&self) {
        let Some(argv) = &self.command else { return };
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("TOKENWARDEN_PROFILE", self.profile.name())
            .env("TOKENWARDEN_SINK_PATH", &self.path)
            // Its output is not ours to log: it could echo the token it was told about.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let program = argv[0].as_str();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(program, file = %self.path.display(), error = %e, "sink command could not start");
                return;
            }
        };
        match tokio::time::timeout(self.command_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => {
                tracing::debug!(program, file = %self.path.display(), "sink command done");
            }
            Ok(Ok(status)) => {
                tracing::warn!(program, file = %self.path.display(), %status, "sink command failed");
            }
            Ok(Err(e)) => {
                tracing::warn!(program, file = %self.path.display(), error = %e, "sink command failed");
            }
            Err(_) => {
                let _ = child.kill().await;
                tracing::warn!(
                    program,
                    file = %self.path.display(),
                    timeout_s = self.command_timeout.as_secs_f64(),
                    "sink command timed out and was killed"
                );
            }
        }
    }
}

/// The file contents for `format`.
pub fn render(format: SinkFormat, token: &IssuedToken) -> String {
    match format {
        SinkFormat::Raw => token.access_token.expose().to_owned(),
        SinkFormat::Json => serde_json::json!({
            "access_token": token.access_token.expose(),
            "token_type": token.token_type,
            "expires_at": token.expires_at.as_secs(),
        })
        .to_string(),
    }
}

/// Replaces `path` with `contents` so that readers see the old or the new file, never a part:
/// temp file in the same directory, write, fsync, chmod (before the name is visible), rename,
/// fsync the directory.
pub async fn write_atomically(path: &Path, contents: Vec<u8>, mode: u32) -> Result<(), Error> {
    let target = path.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        tw_core::fsutil::atomic_write(&target, &contents, mode)
    })
    .await
    .map_err(|e| Error::internal("sink_write_failed", format!("writer task failed: {e}")))?;
    result.map_err(|e| {
        Error::internal(
            "sink_write_failed",
            format!("cannot write {}: {e}", path.display()),
        )
        .with("file", path.display().to_string())
    })
}

/// For init containers (`agent --once`): writes every sink once, then returns.
///
/// Transient failures (IdP down, slow) are retried until `patience` runs out; a permanent one
/// (rejected client, unwritable file) fails at once. The error names the sink's file and profile.
pub async fn write_all_once(sinks: &[FileSink], patience: Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + patience;
    // The first permanent failure ends the wait for all: the init container must fail now.
    futures::future::try_join_all(sinks.iter().map(|s| write_once(s, deadline)))
        .await
        .map(drop)
}

async fn write_once(sink: &FileSink, deadline: tokio::time::Instant) -> Result<(), Error> {
    let mut updates: watch::Receiver<_> = sink.profile.subscribe();
    let mut delays = retry_delays();
    loop {
        let err = match sink.profile.token(TokenRequest::default()).await {
            Ok(served) => match sink.deliver(&served.token).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            },
            Err(e) => e.with("file", sink.path.display().to_string()),
        };
        if !err.is_retryable() || tokio::time::Instant::now() >= deadline {
            return Err(err);
        }
        tracing::warn!(code = err.code(), error = %err, "token file not written yet; retrying");
        let delay = delays.next().unwrap_or(RETRY_MAX);
        let wait = err.retry_after().unwrap_or(delay).min(RETRY_MAX);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = updates.changed() => {}
        }
    }
}
