//! The audit log: every decision goes onto a bounded queue (never blocking the request) drained
//! by a writer task into an [`AuditSink`] (`tw-store` writes the database table; here: memory and
//! the tracing log). A full queue drops the event, counts it
//! ([`METRIC_AUDIT_DROPPED`](crate::METRIC_AUDIT_DROPPED)) and says so in the log at most once
//! per interval.

use crate::metrics_names::*;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tw_core::{Clock, Error, UnixTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Allow,
    Deny,
    /// Dry-run: would have been denied, was allowed.
    DryRunDeny,
    RateLimited,
    /// An unknown principal was registered on first sight.
    Provisioned,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allow => "allow",
            AuditOutcome::Deny => "deny",
            AuditOutcome::DryRunDeny => "dry_run_deny",
            AuditOutcome::RateLimited => "rate_limited",
            AuditOutcome::Provisioned => "provisioned",
        }
    }
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub time: UnixTime,
    /// `service_account:<client>` or `user:<name>`.
    pub principal: String,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub method: String,
    /// The path (never the query string); `None` when a forward-auth caller did not say.
    pub path: Option<String>,
    /// The matched rule's name.
    pub rule: Option<String>,
    /// The grants that satisfied the rule (allow), or the required ones (deny).
    pub permissions: Vec<String>,
    pub outcome: AuditOutcome,
    /// A stable code: `allowed`, `insufficient_scope`, `unknown_principal`, `no_matching_rule`, ...
    pub reason: String,
}

/// Where audit events are written.
pub trait AuditSink: Send + Sync + 'static {
    /// Writes a batch (in order). An error is logged and counted; the batch is not retried.
    fn write<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), Error>>;
}

/// Keeps events in memory (tests; `events()` returns a copy).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().clone()
    }
}

impl AuditSink for MemoryAuditSink {
    fn write<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), Error>> {
        self.events.lock().extend_from_slice(events);
        Box::pin(async { Ok(()) })
    }
}

/// Writes each event as an `info` log line (target `tokenwarden::audit`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn write<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), Error>> {
        for e in events {
            tracing::info!(
                target: "tokenwarden::audit",
                time_ms = e.time.as_millis(),
                principal = %e.principal,
                client_id = e.client_id.as_deref().unwrap_or("-"),
                method = %e.method,
                path = e.path.as_deref().unwrap_or("-"),
                rule = e.rule.as_deref().unwrap_or("-"),
                permissions = %e.permissions.join(" "),
                outcome = e.outcome.as_str(),
                reason = %e.reason,
                "authorization decision"
            );
        }
        Box::pin(async { Ok(()) })
    }
}

/// The request side of the audit queue: [`AuditQueue::push`] never waits.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<AuditEvent>,
    drops: Arc<Drops>,
}

struct Drops {
    clock: Arc<dyn Clock>,
    interval_ms: i64,
    total: AtomicU64,
    since_report: AtomicU64,
    last_report_ms: AtomicI64,
    reports: AtomicU64,
}

/// Events the writer takes from the queue at once.
const BATCH: usize = 256;

impl AuditQueue {
    /// A queue of `capacity` events and its writer task (spawned on the current Tokio runtime;
    /// it ends when every `AuditQueue` clone is dropped, after writing what is queued).
    pub fn start(
        sink: Arc<dyn AuditSink>,
        capacity: usize,
        drop_report_interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "no_runtime",
                "the audit writer needs a Tokio runtime (build the authorizer inside one)",
            )
        })?;
        let (queue, rx) = Self::unstarted(capacity, drop_report_interval, clock);
        Ok((queue, handle.spawn(writer(rx, sink))))
    }

    /// The queue and its receiving end, without a writer (tests drive the receiver).
    pub fn unstarted(
        capacity: usize,
        drop_report_interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> (Self, mpsc::Receiver<AuditEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let interval_ms = i64::try_from(drop_report_interval.as_millis()).unwrap_or(i64::MAX);
        let queue = Self {
            tx,
            drops: Arc::new(Drops {
                clock,
                interval_ms,
                total: AtomicU64::new(0),
                since_report: AtomicU64::new(0),
                last_report_ms: AtomicI64::new(i64::MIN),
                reports: AtomicU64::new(0),
            }),
        };
        (queue, rx)
    }

    /// Queues `event`; when the queue is full (or the writer is gone) drops it and counts.
    pub fn push(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_ok() {
            return;
        }
        let d = &self.drops;
        d.total.fetch_add(1, Ordering::Relaxed);
        d.since_report.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(METRIC_AUDIT_DROPPED).increment(1);
        let now = d.clock.now().as_millis();
        let last = d.last_report_ms.load(Ordering::Relaxed);
        let due = last == i64::MIN || now.saturating_sub(last) >= d.interval_ms;
        if due
            && d.last_report_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let n = d.since_report.swap(0, Ordering::AcqRel);
            d.reports.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                dropped = n,
                dropped_total = d.total.load(Ordering::Relaxed),
                "audit queue full: events dropped (the audit writer cannot keep up)"
            );
        }
    }

    /// Log lines reporting drops so far (at most one per interval).
    pub fn drop_reports(&self) -> u64 {
        self.drops.reports.load(Ordering::Relaxed)
    }

    /// Events dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.drops.total.load(Ordering::Relaxed)
    }
}

async fn writer(mut rx: mpsc::Receiver<AuditEvent>, sink: Arc<dyn AuditSink>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = sink.write(&batch).await {
            metrics::counter!(METRIC_AUDIT_WRITE_ERRORS).increment(1);
            tracing::warn!(code = e.code(), error = %e, events = batch.len(), "audit events could not be written");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tw_core::ManualClock;

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            time: UnixTime::from_secs(0),
            principal: format!("user:{n}"),
            issuer: "iss".into(),
            subject: None,
            client_id: None,
            method: "GET".into(),
            path: Some("/".into()),
            rule: None,
            permissions: vec![],
            outcome: AuditOutcome::Allow,
            reason: "allowed".into(),
        }
    }

    #[test]
    fn overflow_is_counted_not_blocking() {
        let clock = Arc::new(ManualClock::starting_now());
        let (q, mut rx) = AuditQueue::unstarted(2, Duration::from_secs(60), clock.clone());
        for n in 0..5 {
            q.push(event(n)); // would block forever if push waited
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.drop_reports(), 1, "one log line per interval");
        assert_eq!(rx.try_recv().expect("first").principal, "user:0");
        assert_eq!(rx.try_recv().expect("second").principal, "user:1");
        assert!(rx.try_recv().is_err());
        q.push(event(9));
        assert_eq!(q.dropped(), 3, "room again");
        // The writer gone: pushes are dropped and counted, never a panic.
        drop(rx);
        q.push(event(10));
        assert_eq!(q.dropped(), 4);
        assert_eq!(q.drop_reports(), 1);
        clock.advance(Duration::from_secs(60));
        q.push(event(11));
        assert_eq!(q.drop_reports(), 2, "the next interval reports again");
    }

    #[tokio::test]
    async fn writer_drains_into_the_sink() {
        let sink = Arc::new(MemoryAuditSink::new());
        let clock = Arc::new(ManualClock::starting_now());
        let (q, task) =
            AuditQueue::start(sink.clone(), 100, Duration::from_secs(1), clock).expect("start");
        for n in 0..10 {
            q.push(event(n));
        }
        drop(q);
        task.await.expect("writer");
        assert_eq!(sink.events().len(), 10);
    }
}
