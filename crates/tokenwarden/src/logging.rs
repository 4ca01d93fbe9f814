//! Logging to stderr, text or JSON. Secrets never reach here: they are `tw_core::Secret`s, whose
//! Debug/Display print `[REDACTED]`, and no code logs request or response bodies.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tw_config::{LogConfig, LogFormat};

/// `TOKENWARDEN_LOG` (a `tracing` filter) overrides the configured level.
pub fn init(cfg: &LogConfig) {
    let filter = std::env::var("TOKENWARDEN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
