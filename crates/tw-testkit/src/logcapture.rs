//! Captures all `tracing` output — every level down to TRACE, every field,
//! span open/close events with their fields — into a shared buffer, so that
//! tests can assert that no secret was ever logged.
//!
//! Each record is written twice, once by the human `fmt` formatter and once
//! as JSON, so a secret that slips through either formatting path is caught.
//!
//! ```no_run
//! let (_guard, logs) = tw_testkit::logcapture::capture();
//! tracing::trace!(client = "agent-basic", "fetching a token");
//! assert!(!logs.contents().contains("agent-basic-secret"));
//! ```
//!
//! [`capture`] installs a thread-local default: it sees what runs on the
//! current thread (a `#[tokio::test]` with the default current-thread
//! runtime, and everything it spawns). For work that runs on other threads,
//! attach [`LogBuffer::dispatch`] with `tracing::instrument::WithSubscriber`,
//! or use [`capture_global`].

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::Dispatch;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;

/// Shared buffer of captured log output.
#[derive(Clone)]
pub struct LogBuffer {
    bytes: Arc<Mutex<Vec<u8>>>,
    dispatch: Option<Dispatch>,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuffer")
            .field("len", &self.lock().len())
            .finish()
    }
}

impl LogBuffer {
    fn new() -> Self {
        Self {
            bytes: Arc::new(Mutex::new(Vec::new())),
            dispatch: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything captured so far (lossy UTF-8).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// Whether the captured output contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.contents().contains(needle)
    }

    /// Panics, showing where, if the captured output contains `secret`.
    pub fn assert_absent(&self, secret: &str) {
        let text = self.contents();
        if let Some(at) = text.find(secret) {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!(
                "a secret appears in the captured logs (shown redacted):\n{}",
                text[start..end].replace(secret, "<SECRET>")
            );
        }
    }

    /// Forgets what was captured.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The subscriber writing into this buffer, to attach to work running on
    /// other threads (`fut.with_subscriber(logs.dispatch())`).
    pub fn dispatch(&self) -> Dispatch {
        self.dispatch.clone().expect("LogBuffer made by capture()")
    }
}

/// Writer handed out per record by [`LogBuffer`].
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self.bytes.clone())
    }
}

fn subscriber_for(buf: &LogBuffer) -> Dispatch {
    let human = tracing_subscriber::fmt::layer()
        .with_writer(buf.clone())
        .with_ansi(false)
        .with_target(true)
        .with_thread_names(true)
        .with_file(true)
        .with_line_number(true)
        .with_span_events(FmtSpan::FULL);
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(buf.clone())
        .with_current_span(true)
        .with_span_list(true)
        .with_span_events(FmtSpan::FULL);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with(human)
        .with(json);
    Dispatch::new(subscriber)
}

/// Routes `log`-crate records (from dependencies) into `tracing`, once per process.
fn bridge_log_crate() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_log::LogTracer::init();
    });
}

/// Starts capturing on the current thread until the guard is dropped.
pub fn capture() -> (DefaultGuard, LogBuffer) {
    bridge_log_crate();
    let mut buf = LogBuffer::new();
    let dispatch = subscriber_for(&buf);
    buf.dispatch = Some(dispatch.clone());
    let guard = tracing::dispatcher::set_default(&dispatch);
    (guard, buf)
}

/// Captures on every thread of the process, into one buffer shared by all
/// callers (tests in the same binary run concurrently, so it holds all their
/// output). Installs a global subscriber the first time; panics if some
/// other global subscriber was installed before.
pub fn capture_global() -> LogBuffer {
    static GLOBAL: OnceLock<LogBuffer> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            bridge_log_crate();
            let mut buf = LogBuffer::new();
            let dispatch = subscriber_for(&buf);
            buf.dispatch = Some(dispatch.clone());
            tracing::dispatcher::set_global_default(dispatch)
                .expect("capture_global: another global tracing subscriber is already installed");
            buf
        })
        .clone()
}
