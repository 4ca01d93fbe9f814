//! Logging to stderr, text or JSON. Secrets never reach here: they are `tw_core::Secret`s, whose
//! Debug/Display print `[REDACTED]`, and no code logs request or response bodies.

use std::io::IsTerminal;
use std::sync::Mutex;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tw_config::{LogConfig, LogFormat};

/// Lines waiting for the writer thread before a logging call waits for room.
const LOG_QUEUE_LINES: usize = 4096;

/// The log writer's thread, kept until [`flush`] so that no line is lost at exit.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Writes out every line still queued. `main` calls it before the process exits.
pub fn flush() {
    let guard = WRITER.lock().map(|mut g| g.take()).unwrap_or(None);
    drop(guard);
}

/// `TOKENWARDEN_LOG` (a `tracing` filter) overrides the configured level.
pub fn init(cfg: &LogConfig) {
    let filter = std::env::var("TOKENWARDEN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Lines go through a queue to a thread of their own, buffered there and flushed whenever the
    // queue runs dry: a request never waits on a write to stderr (the gateway's audit lines are
    // one per decision). Not lossy: under a flood the queue applies back-pressure rather than
    // dropping audit lines.
    // A few thousand lines queued at most: the queue's slots are allocated up front.
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(false)
        .thread_name("tokenwarden-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    if let Ok(mut slot) = WRITER.lock() {
        *slot = Some(guard);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colours only for a person at a terminal, not in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
