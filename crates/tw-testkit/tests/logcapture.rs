use tracing::instrument::WithSubscriber;
use tw_testkit::logcapture;

#[test]
fn captures_every_level_field_and_span() {
    let (guard, logs) = logcapture::capture();
    let span = tracing::trace_span!("fetch", client = "agent-basic", attempt = 2);
    span.in_scope(|| {
        tracing::trace!(token_url = %"http://127.0.0.1/token", "trace event");
        tracing::debug!(?span, "debug event");
        tracing::info!(kid = "k1", "info event");
        tracing::warn!("warn event");
        tracing::error!(status = 503, "error event");
    });
    drop(span);
    drop(guard);
    tracing::info!("after the guard: not captured");

    let text = logs.contents();
    for needle in [
        "trace event",
        "debug event",
        "info event",
        "warn event",
        "error event",
        "http://127.0.0.1/token",
        "agent-basic",
        "attempt",
        "kid",
        "k1",
        "503",
        "fetch",
        "close",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains("after the guard"));
    // Both formatters wrote each record.
    assert!(
        text.contains("\"message\":\"info event\""),
        "no JSON output:\n{text}"
    );
    logs.assert_absent("agent-basic-secret");
    logs.clear();
    assert!(logs.contents().is_empty());
}

#[test]
#[should_panic(expected = "a secret appears in the captured logs")]
fn assert_absent_panics_on_a_leak() {
    let (_guard, logs) = logcapture::capture();
    tracing::trace!(secret = "hunter2", "oops");
    logs.assert_absent("hunter2");
}

#[test]
fn dispatch_follows_work_onto_other_threads() {
    let (_guard, logs) = logcapture::capture();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dispatch = logs.dispatch();
    rt.block_on(async move {
        tokio::spawn(
            async {
                tracing::trace!(field = "from-a-worker", "spawned");
            }
            .with_subscriber(dispatch),
        )
        .await
        .expect("join");
    });
    assert!(logs.contains("from-a-worker"));
}
