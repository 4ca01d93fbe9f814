//! The audit log: every decision goes onto a bounded queue (never blocking the request) drained
//! by a writer task into an [`AuditSink`] (`tw-store` writes the database table; here: the tracing
//! log, and memory for tests with the `testing` feature).
//!
//! No decision is lost silently:
//!
//! - A batch the sink fails to write is kept, in order, and retried with a doubling delay
//!   (`retry_min_delay` up to `retry_max_delay`) until the sink takes it.
//! - With a spool ([`SpoolSettings`]), the rows the sink has not taken move to an append-only
//!   local file while the sink fails, or while the writer's in-memory backlog is full: one JSON
//!   line per decision, fsynced per batch. The spool is replayed in order as soon as the sink
//!   answers again (new decisions queue behind it), and at start, before anything new, so it
//!   survives a restart or a crash. A replayed batch is marked done in a small `<spool>.offset`
//!   file after the sink committed it; the file is removed once all of it is done. A crash between
//!   the sink's commit and that mark replays the batch again: every event carries an
//!   [`AuditEvent::id`], by which `tw-store` inserts idempotently.
//! - What does not fit (the queue full on the request path, the backlog without a spool, the
//!   spool at `spool_max_bytes`, a spool that cannot be written) is dropped and counted:
//!   [`METRIC_AUDIT_DROPPED`](crate::METRIC_AUDIT_DROPPED) with a `reason` label (`queue_full`,
//!   `spool_full`, `spool_error`, `spool_corrupt`, `shutdown`), and a warning in the log at most
//!   once per `drop_report_interval` says how many. The gauge
//!   [`METRIC_AUDIT_SPOOLED`](crate::METRIC_AUDIT_SPOOLED) shows the rows waiting in the spool.
//!
//! - A sink may ask for a pace ([`AuditSink::pace`]: `tw-store` asks for 20 ms): the writer starts
//!   at most one write per pace, taking new events meanwhile, so under load batches grow instead
//!   of the writes.
//!
//! The spool's file operations are small (a batch of lines and one fsync) and run on the writer
//! task itself. Every wait (the retry delays, the pace) and the drop reports' interval are
//! measured by the injected [`Clock`] ([`Clock::sleep_until`]), so tests move time by hand.

use crate::metrics_names::*;
use crate::settings::AuditConfig;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tw_core::backoff::Backoff;
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

    /// The outcome named by [`AuditOutcome::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            AuditOutcome::Allow,
            AuditOutcome::Deny,
            AuditOutcome::DryRunDeny,
            AuditOutcome::RateLimited,
            AuditOutcome::Provisioned,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// A unique id of this decision (a UUID), given by [`AuditQueue::push`] when `None`. A sink
    /// may see an event twice (a crash after the sink committed a replayed batch, before the
    /// spool noted it): the store inserts by this id, once.
    pub id: Option<String>,
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

impl AuditEvent {
    /// The spool's line for this event (JSON, with the final newline).
    fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::json!({
            "v": 1,
            "id": self.id,
            "time_ms": self.time.as_millis(),
            "principal": self.principal,
            "issuer": self.issuer,
            "subject": self.subject,
            "client_id": self.client_id,
            "method": self.method,
            "path": self.path,
            "rule": self.rule,
            "permissions": self.permissions,
            "outcome": self.outcome.as_str(),
            "reason": self.reason,
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        line
    }

    /// The event of a spool line (without its newline); `None` when it is not one.
    fn from_line(line: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        Some(AuditEvent {
            id: text("id"),
            time: UnixTime::from_millis(v.get("time_ms")?.as_i64()?),
            principal: text("principal")?,
            issuer: text("issuer")?,
            subject: text("subject"),
            client_id: text("client_id"),
            method: text("method")?,
            path: text("path"),
            rule: text("rule"),
            permissions: v
                .get("permissions")?
                .as_array()?
                .iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
            outcome: AuditOutcome::parse(v.get("outcome")?.as_str()?)?,
            reason: text("reason")?,
        })
    }
}

/// Where audit events are written.
pub trait AuditSink: Send + Sync + 'static {
    /// Writes a batch (in order), all or nothing. On an error the writer keeps the batch and
    /// retries it later (with the events behind it queued after it).
    fn write<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), Error>>;

    /// The shortest time between the starts of two writes; the writer waits the rest of it (on
    /// its clock) before the next write, taking new events meanwhile, so under load each write
    /// carries a bigger batch. Zero (the default): no pace.
    fn pace(&self) -> Duration {
        Duration::ZERO
    }
}

/// Keeps events in memory, for tests (the `testing` feature; `events()` returns a copy).
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    events: parking_lot::Mutex<Vec<AuditEvent>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryAuditSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().clone()
    }
}

#[cfg(any(test, feature = "testing"))]
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

/// The local spool of an [`AuditQueue`] (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The spool file (`<path>.offset` next to it notes how much of it is done).
    pub path: PathBuf,
    /// The file's size limit; what would go beyond is dropped and counted (`spool_full`).
    pub max_bytes: u64,
}

/// How an [`AuditQueue`] queues, retries and spools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The request side's queue, and as much again in the writer's in-memory backlog.
    pub queue_capacity: usize,
    /// Drops are reported in the log at most once per this interval.
    pub drop_report_interval: Duration,
    /// `None`: a failed batch is retried from memory only.
    pub spool: Option<SpoolSettings>,
    /// The first wait before a failed write is retried; doubles up to `retry_max_delay`.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
}

impl AuditSettings {
    /// Without a spool, retrying after 100 ms doubling up to 5 s.
    pub fn new(queue_capacity: usize, drop_report_interval: Duration) -> Self {
        Self {
            queue_capacity,
            drop_report_interval,
            spool: None,
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(5),
        }
    }
}

impl From<&AuditConfig> for AuditSettings {
    /// `[gateway.authz.audit]`; `spool_max_bytes = 0` is no spool.
    fn from(cfg: &AuditConfig) -> Self {
        Self {
            queue_capacity: cfg.queue_capacity,
            drop_report_interval: cfg.drop_report_interval,
            spool: (cfg.spool_max_bytes > 0).then(|| SpoolSettings {
                path: cfg.spool_path.clone(),
                max_bytes: cfg.spool_max_bytes,
            }),
            retry_min_delay: cfg.retry_min_delay,
            retry_max_delay: cfg.retry_max_delay,
        }
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

impl Drops {
    /// Counts `n` dropped events (metric with `reason`), and logs at most once per interval.
    fn record(&self, n: u64, reason: &'static str) {
        if n == 0 {
            return;
        }
        self.total.fetch_add(n, Ordering::Relaxed);
        self.since_report.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(METRIC_AUDIT_DROPPED, "reason" => reason).increment(n);
        let now = self.clock.now().as_millis();
        let last = self.last_report_ms.load(Ordering::Relaxed);
        let due = last == i64::MIN || now.saturating_sub(last) >= self.interval_ms;
        if due
            && self
                .last_report_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let dropped = self.since_report.swap(0, Ordering::AcqRel);
            self.reports.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                dropped_total = self.total.load(Ordering::Relaxed),
                reason,
                "audit events dropped: these decisions are not in the audit log"
            );
        }
    }
}

/// Events the writer takes from the queue at once.
const BATCH: usize = 256;
/// Spooled events the writer hands the sink at once.
const REPLAY_BATCH: usize = 1000;

impl AuditQueue {
    /// A queue of `capacity` events and its writer task, without a spool (see
    /// [`AuditQueue::start_with`]).
    pub fn start(
        sink: Arc<dyn AuditSink>,
        capacity: usize,
        drop_report_interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), Error> {
        Self::start_with(
            sink,
            AuditSettings::new(capacity, drop_report_interval),
            clock,
        )
    }

    /// The queue and its writer task (spawned on the current Tokio runtime). An existing spool is
    /// opened here (an error when it cannot be, e.g. another process holds it) and replayed
    /// before anything pushed now. The task ends when every `AuditQueue` clone is dropped: after
    /// writing what is queued, or, if the sink fails then, leaving it in the spool (without a
    /// spool it is dropped and counted, `shutdown`).
    pub fn start_with(
        sink: Arc<dyn AuditSink>,
        settings: AuditSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "no_runtime",
                "the audit writer needs a Tokio runtime (build the authorizer inside one)",
            )
        })?;
        let spool = match &settings.spool {
            None => None,
            Some(s) => Some(Spool::open(&s.path, s.max_bytes).map_err(|e| {
                Error::config(
                    "audit_spool",
                    format!("the audit spool {} cannot be opened: {e}", s.path.display()),
                )
            })?),
        };
        let (queue, rx) = Self::unstarted(
            settings.queue_capacity,
            settings.drop_report_interval,
            clock,
        );
        let backlog = Backlog {
            mem: VecDeque::new(),
            mem_cap: settings.queue_capacity.max(1),
            spool,
            failing: false,
        };
        backlog.publish();
        let retry = Backoff::exponential(
            settings.retry_min_delay,
            settings.retry_max_delay.max(settings.retry_min_delay),
        );
        let drops = queue.drops.clone();
        let clock = drops.clock.clone();
        let task = writer(rx, sink, backlog, drops, retry, clock);
        Ok((queue, handle.spawn(task)))
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

    /// Queues `event` (giving it an id); when the queue is full (or the writer is gone) drops it
    /// and counts (`queue_full`).
    pub fn push(&self, mut event: AuditEvent) {
        if event.id.is_none() {
            event.id = Some(uuid::Uuid::new_v4().to_string());
        }
        if self.tx.try_send(event).is_ok() {
            return;
        }
        self.drops.record(1, "queue_full");
    }

    /// Log lines reporting drops so far (at most one per interval).
    pub fn drop_reports(&self) -> u64 {
        self.drops.reports.load(Ordering::Relaxed)
    }

    /// Events dropped since the start, for any reason.
    pub fn dropped(&self) -> u64 {
        self.drops.total.load(Ordering::Relaxed)
    }
}

/// The append-only spool file and how much of it the sink has taken.
struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    max_bytes: u64,
    /// Open (and locked) while the file exists.
    file: Option<File>,
    /// The file's length.
    len: u64,
    /// Bytes the sink has taken (committed), from the start of the file.
    offset: u64,
    /// Lines in `offset..len`.
    rows: u64,
}

impl Spool {
    /// Opens an existing spool (locking it) and counts what is left of it; a missing one is made
    /// on first use. A torn last line (a crash while appending, never acknowledged) is cut off.
    fn open(path: &Path, max_bytes: u64) -> io::Result<Spool> {
        let mut offset_path = path.as_os_str().to_owned();
        offset_path.push(".offset");
        let mut spool = Spool {
            path: path.to_owned(),
            offset_path: PathBuf::from(offset_path),
            max_bytes,
            file: None,
            len: 0,
            offset: 0,
            rows: 0,
        };
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A leftover of a crash after the spool was done.
                remove_if_exists(&spool.offset_path)?;
                return Ok(spool);
            }
            Err(e) => return Err(e),
        };
        lock(&file, path)?;
        let noted = match std::fs::read_to_string(&spool.offset_path) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        // Count the lines (all of them, and those from the noted offset on), streaming.
        let (mut complete, mut total, mut after, mut at_line_start) =
            (0u64, 0u64, 0u64, noted == 0);
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            if complete >= noted {
                after += 1;
            }
            complete += len_u64(n);
            total += 1;
            at_line_start |= complete == noted;
        }
        let file_len = file.metadata()?.len();
        if complete < file_len {
            tracing::warn!(
                spool = %path.display(),
                bytes = file_len - complete,
                "the audit spool ends in a torn line (a crash while it was written); cut off"
            );
            file.set_len(complete)?;
            file.sync_data()?;
        }
        // An offset beyond the end, or not at a line start, is not ours: replay all (the sink
        // takes a row once by its id).
        let (offset, rows) = if at_line_start && noted <= complete {
            (noted, after)
        } else {
            (0, total)
        };
        spool.rows = rows;
        spool.len = complete;
        spool.offset = offset;
        spool.file = Some(file);
        if spool.rows > 0 {
            tracing::info!(
                spool = %path.display(),
                rows = spool.rows,
                "audit spool found: its decisions are written first"
            );
        }
        Ok(spool)
    }

    /// The bytes `events` take as lines.
    fn lines(events: &[AuditEvent]) -> Vec<Vec<u8>> {
        events.iter().map(AuditEvent::to_line).collect()
    }

    /// Appends as many of `events` as fit (in order) and syncs; how many.
    fn append(&mut self, events: &[AuditEvent]) -> io::Result<usize> {
        let lines = Self::lines(events);
        let mut fit = 0;
        let mut size = self.len;
        for line in &lines {
            let next = size + len_u64(line.len());
            if next > self.max_bytes {
                break;
            }
            size = next;
            fit += 1;
        }
        self.write_lines(&lines[..fit])?;
        Ok(fit)
    }

    /// Appends all of `events`, or (when they do not all fit) none; whether they were.
    fn append_all(&mut self, events: &[AuditEvent]) -> io::Result<bool> {
        let lines = Self::lines(events);
        let size: u64 = lines.iter().map(|l| len_u64(l.len())).sum();
        if self.len + size > self.max_bytes {
            return Ok(false);
        }
        self.write_lines(&lines)?;
        Ok(true)
    }

    /// Puts `events` before what is left of the spool (all of them, or, when they do not all
    /// fit, none; whether they were): a new file with them and the rest, renamed over the spool.
    /// The done-mark is reset first, so a crash in between replays the old file from its start
    /// (the sink takes a row once by its id) rather than skip rows of the new one.
    fn prepend(&mut self, events: &[AuditEvent]) -> io::Result<bool> {
        let Some(file) = &self.file else {
            return self.append_all(events);
        };
        let lines = Self::lines(events);
        let size: u64 = lines.iter().map(|l| len_u64(l.len())).sum();
        if size + (self.len - self.offset) > self.max_bytes {
            return Ok(false);
        }
        let mut bytes: Vec<u8> = lines.concat();
        let mut r = file;
        r.seek(SeekFrom::Start(self.offset))?;
        r.take(self.len - self.offset).read_to_end(&mut bytes)?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        write_synced(&tmp, &bytes)?;
        write_synced(&self.offset_path, b"0")?;
        std::fs::rename(&tmp, &self.path)?;
        let new = OpenOptions::new().read(true).write(true).open(&self.path)?;
        lock(&new, &self.path)?;
        self.file = Some(new);
        self.len = len_u64(bytes.len());
        self.offset = 0;
        self.rows += len_u64(lines.len());
        Ok(true)
    }

    fn write_lines(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let file = match &self.file {
            Some(f) => f,
            None => {
                let f = private_file()
                    .read(true)
                    .write(true)
                    .truncate(false)
                    .open(&self.path)?;
                lock(&f, &self.path)?;
                f.set_len(0)?;
                remove_if_exists(&self.offset_path)?;
                self.len = 0;
                self.offset = 0;
                self.rows = 0;
                self.file.insert(f)
            }
        };
        let mut bytes = Vec::with_capacity(lines.iter().map(Vec::len).sum());
        for line in lines {
            bytes.extend_from_slice(line);
        }
        let mut w = file;
        w.seek(SeekFrom::Start(self.len))?;
        if let Err(e) = w.write_all(&bytes).and_then(|()| file.sync_data()) {
            // Whatever part was written is not ours: cut it off again (best effort).
            let _ = file.set_len(self.len);
            return Err(e);
        }
        self.len += len_u64(bytes.len());
        self.rows += len_u64(lines.len());
        Ok(())
    }

    /// Up to `max` events from the committed offset: the events, the offset after them and the
    /// lines read (unreadable lines are skipped; their count is the third value).
    fn read(&self, max: usize) -> io::Result<SpoolFront> {
        let mut front = SpoolFront {
            events: Vec::new(),
            end: self.offset,
            lines: 0,
            corrupt: 0,
        };
        let Some(file) = &self.file else {
            return Ok(front);
        };
        let mut r = file;
        r.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::new(r.take(self.len - self.offset));
        let mut line = Vec::new();
        while front.events.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            front.end += len_u64(n);
            front.lines += 1;
            match AuditEvent::from_line(&line[..n - 1]) {
                Some(e) => front.events.push(e),
                None => front.corrupt += 1,
            }
        }
        Ok(front)
    }

    /// Marks the lines up to `end` done; removes the spool once all of it is.
    fn commit(&mut self, end: u64, lines: u64) -> io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        self.offset = end;
        self.rows = self.rows.saturating_sub(lines);
        write_synced(&self.offset_path, end.to_string().as_bytes())?;
        if self.offset >= self.len {
            // Done: remove it (a crash before the offset file goes leaves an offset the next
            // start ignores, as there is no spool).
            std::fs::remove_file(&self.path)?;
            self.file = None;
            remove_if_exists(&self.offset_path)?;
            self.len = 0;
            self.offset = 0;
            self.rows = 0;
        }
        Ok(())
    }
}

struct SpoolFront {
    events: Vec<AuditEvent>,
    end: u64,
    lines: u64,
    corrupt: u64,
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn lock(file: &File, path: &Path) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("{} is in use by another audit writer", path.display()),
        ),
        std::fs::TryLockError::Error(e) => e,
    })
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = private_file().write(true).truncate(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// Spool files name callers and paths: readable by this user only (0600).
fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    o
}

/// What the writer holds that the sink has not taken, oldest first: `mem`, then the spool.
struct Backlog {
    mem: VecDeque<AuditEvent>,
    mem_cap: usize,
    spool: Option<Spool>,
    /// The last write failed: new events go to the spool (when there is one).
    failing: bool,
}

/// The batch the writer hands the sink, and where it came from.
enum Front {
    Mem(Vec<AuditEvent>),
    Spool(SpoolFront),
}

impl Front {
    fn events(&self) -> &[AuditEvent] {
        match self {
            Front::Mem(e) => e,
            Front::Spool(s) => &s.events,
        }
    }
}

impl Backlog {
    fn spooled(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.rows)
    }

    fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.spooled() == 0
    }

    fn publish(&self) {
        // A float gauge: exact below 2^53 rows.
        metrics::gauge!(METRIC_AUDIT_SPOOLED).set(self.spooled() as f64);
    }

    /// Takes new events: into memory while nothing is spooled, the sink answers and there is
    /// room; else into the spool (behind what is there, so the order holds). What fits nowhere
    /// is dropped and counted.
    fn add(&mut self, events: &mut Vec<AuditEvent>, drops: &Drops) {
        let mut rest = &events[..];
        let spooling = self.spool.is_some() && (self.failing || self.spooled() > 0);
        if !spooling {
            let room = self.mem_cap.saturating_sub(self.mem.len()).min(rest.len());
            self.mem.extend(rest[..room].iter().cloned());
            rest = &rest[room..];
        }
        if !rest.is_empty() {
            match &mut self.spool {
                None => drops.record(len_u64(rest.len()), "queue_full"),
                Some(spool) => match spool.append(rest) {
                    Ok(n) => drops.record(len_u64(rest.len() - n), "spool_full"),
                    Err(e) => {
                        tracing::error!(spool = %spool.path.display(), error = %e, "the audit spool cannot be written");
                        drops.record(len_u64(rest.len()), "spool_error");
                    }
                },
            }
        }
        events.clear();
        self.publish();
    }

    /// The sink failed: from now on new events go to the spool, and so does the in-memory
    /// backlog, ahead of what the spool holds (it is older). Only when the spool cannot take it
    /// whole does it stay in memory (retried from there, spooled at shutdown).
    fn fail(&mut self) {
        self.failing = true;
        if self.mem.is_empty() {
            return;
        }
        let Some(spool) = &mut self.spool else {
            return;
        };
        let mem: Vec<AuditEvent> = self.mem.iter().cloned().collect();
        match spool.prepend(&mem) {
            Ok(true) => self.mem.clear(),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(spool = %spool.path.display(), error = %e, "the audit spool cannot be written; the batch stays in memory");
            }
        }
        self.publish();
    }

    /// The oldest events.
    fn front(&self) -> io::Result<Front> {
        if !self.mem.is_empty() {
            return Ok(Front::Mem(self.mem.iter().take(BATCH).cloned().collect()));
        }
        match &self.spool {
            Some(spool) => spool.read(REPLAY_BATCH).map(Front::Spool),
            None => Ok(Front::Mem(Vec::new())),
        }
    }

    /// The sink took `front`.
    fn commit(&mut self, front: Front, drops: &Drops) -> io::Result<()> {
        self.failing = false;
        let result = match front {
            Front::Mem(events) => {
                self.mem.drain(..events.len());
                Ok(())
            }
            Front::Spool(f) => {
                drops.record(f.corrupt, "spool_corrupt");
                match &mut self.spool {
                    Some(spool) => {
                        let r = spool.commit(f.end, f.lines);
                        if r.is_ok() && spool.rows == 0 {
                            tracing::info!(spool = %spool.path.display(), "audit spool replayed: every spooled decision is written");
                        }
                        r
                    }
                    None => Ok(()),
                }
            }
        };
        self.publish();
        result
    }

    /// The writer stops while the sink fails: the in-memory backlog goes to the spool (ahead of
    /// it when it fits whole, else as much as fits behind it), or is dropped and counted.
    fn shutdown(&mut self, drops: &Drops) {
        let mem: Vec<AuditEvent> = self.mem.drain(..).collect();
        if mem.is_empty() {
            return;
        }
        match &mut self.spool {
            None => drops.record(len_u64(mem.len()), "shutdown"),
            Some(spool) => match spool.prepend(&mem) {
                Ok(true) => {}
                Ok(false) => match spool.append(&mem) {
                    Ok(n) => drops.record(len_u64(mem.len() - n), "spool_full"),
                    Err(e) => {
                        tracing::error!(spool = %spool.path.display(), error = %e, "the audit spool cannot be written");
                        drops.record(len_u64(mem.len()), "spool_error");
                    }
                },
                Err(e) => {
                    tracing::error!(spool = %spool.path.display(), error = %e, "the audit spool cannot be written");
                    drops.record(len_u64(mem.len()), "spool_error");
                }
            },
        }
        self.publish();
    }
}

async fn writer(
    mut rx: mpsc::Receiver<AuditEvent>,
    sink: Arc<dyn AuditSink>,
    mut backlog: Backlog,
    drops: Arc<Drops>,
    retry: Backoff,
    clock: Arc<dyn Clock>,
) {
    let mut incoming = Vec::with_capacity(BATCH);
    let mut open = true;
    // Set after a failed attempt: the wait before the next.
    let mut delay: Option<Duration> = None;
    // The waits after consecutive failed attempts (restarted after a success).
    let mut delays = retry.delays();
    let pace = sink.pace();
    // When the last write started (for the pace).
    let mut last_write: Option<UnixTime> = None;
    loop {
        if backlog.is_empty() {
            if !open || rx.recv_many(&mut incoming, BATCH).await == 0 {
                break;
            }
            backlog.add(&mut incoming, &drops);
            continue;
        }
        if let Some(wait) = delay {
            // Closed meanwhile: one last attempt at once, then stop if it fails.
            let until = clock.now().plus(wait);
            let mut inbox = Inbox {
                rx: &mut rx,
                incoming: &mut incoming,
                open: &mut open,
            };
            inbox
                .take_until(&*clock, until, &mut backlog, &drops, true)
                .await;
        }
        if let Some(last) = last_write.filter(|_| !pace.is_zero()) {
            // The pace holds at shutdown too: never two writes within one pace.
            let mut inbox = Inbox {
                rx: &mut rx,
                incoming: &mut incoming,
                open: &mut open,
            };
            inbox
                .take_until(&*clock, last.plus(pace), &mut backlog, &drops, false)
                .await;
        }
        last_write = Some(clock.now());
        let result = match backlog.front() {
            Err(e) => Err(Error::internal(
                "audit_spool",
                format!("the audit spool cannot be read: {e}"),
            )),
            Ok(front) => {
                // Meanwhile, take new events, so the queue does not fill during a slow write.
                let written = {
                    let write = sink.write(front.events());
                    tokio::pin!(write);
                    loop {
                        tokio::select! {
                            r = &mut write => break r,
                            n = rx.recv_many(&mut incoming, BATCH), if open => {
                                if n == 0 {
                                    open = false;
                                } else {
                                    backlog.add(&mut incoming, &drops);
                                }
                            }
                        }
                    }
                };
                match written {
                    Ok(()) => backlog.commit(front, &drops).map_err(|e| {
                        Error::internal(
                            "audit_spool",
                            format!("the audit spool cannot be updated: {e}"),
                        )
                    }),
                    Err(e) => {
                        metrics::counter!(METRIC_AUDIT_WRITE_ERRORS).increment(1);
                        backlog.fail();
                        Err(e)
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                delay = None;
                delays = retry.delays();
            }
            Err(e) => {
                let next = delays.next().unwrap_or(retry.min());
                tracing::warn!(
                    code = e.code(),
                    error = %e,
                    in_memory = backlog.mem.len(),
                    spooled = backlog.spooled(),
                    retry_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
                    "audit events could not be written; they are kept and retried"
                );
                delay = Some(next);
                if !open {
                    // Nobody pushes any more and the sink fails: keep what is left for next time.
                    backlog.shutdown(&drops);
                    break;
                }
            }
        }
    }
}

/// The writer's receiving end while it waits.
struct Inbox<'a> {
    rx: &'a mut mpsc::Receiver<AuditEvent>,
    incoming: &'a mut Vec<AuditEvent>,
    open: &'a mut bool,
}

impl Inbox<'_> {
    /// Takes new events into `backlog` until `clock` reaches `until` (or, with `until_closed`,
    /// until the queue is closed, whichever comes first).
    async fn take_until(
        &mut self,
        clock: &dyn Clock,
        until: UnixTime,
        backlog: &mut Backlog,
        drops: &Drops,
        until_closed: bool,
    ) {
        if until_closed && !*self.open {
            return;
        }
        let sleep = clock.sleep_until(until);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                n = self.rx.recv_many(self.incoming, BATCH), if *self.open => {
                    if n == 0 {
                        *self.open = false;
                        if until_closed {
                            return;
                        }
                    } else {
                        backlog.add(self.incoming, drops);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use tw_core::ManualClock;

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            id: None,
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

    /// A sink that fails while `down`; what it took, in order.
    #[derive(Default)]
    struct FlakySink {
        down: std::sync::atomic::AtomicBool,
        events: Mutex<Vec<AuditEvent>>,
        failures: AtomicU64,
    }

    impl FlakySink {
        fn down() -> Arc<Self> {
            let s = Arc::new(Self::default());
            s.set_down(true);
            s
        }
        fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }
        fn principals(&self) -> Vec<String> {
            self.events
                .lock()
                .iter()
                .map(|e| e.principal.clone())
                .collect()
        }
    }

    impl AuditSink for FlakySink {
        fn write<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), Error>> {
            let result = if self.down.load(Ordering::SeqCst) {
                self.failures.fetch_add(1, Ordering::SeqCst);
                Err(Error::internal("storage_unavailable", "down"))
            } else {
                self.events.lock().extend_from_slice(events);
                Ok(())
            };
            Box::pin(async move { result })
        }
    }

    fn settings(capacity: usize, spool: Option<(&Path, u64)>) -> AuditSettings {
        AuditSettings {
            spool: spool.map(|(path, max_bytes)| SpoolSettings {
                path: path.to_owned(),
                max_bytes,
            }),
            retry_min_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(200),
            ..AuditSettings::new(capacity, Duration::from_secs(60))
        }
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("user:{n}")).collect()
    }

    /// Waits until `done`, moving the writer's clock on by 5 ms per look (and the paused Tokio
    /// clock, which jumps ahead while the runtime idles).
    async fn until(clock: &ManualClock, what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            clock.advance(Duration::from_millis(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never happened: {what}");
    }

    fn spool_lines(path: &Path) -> usize {
        std::fs::read(path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_is_retried_until_written_without_a_spool() {
        let sink = FlakySink::down();
        let clock = Arc::new(ManualClock::starting_now());
        let (q, task) = AuditQueue::start_with(sink.clone(), settings(100, None), clock.clone())
            .expect("start");
        for n in 0..50 {
            q.push(event(n));
        }
        until(&clock, "several failed attempts", || {
            sink.failures.load(Ordering::SeqCst) >= 3
        })
        .await;
        assert!(sink.principals().is_empty());
        sink.set_down(false);
        until(&clock, "all written", || sink.principals().len() >= 50).await;
        for n in 50..60 {
            q.push(event(n));
        }
        drop(q);
        task.await.expect("writer");
        assert_eq!(
            sink.principals(),
            names(0..60),
            "every event, once, in order"
        );
        let ids: std::collections::BTreeSet<_> = sink
            .events
            .lock()
            .iter()
            .map(|e| e.id.clone().expect("an id"))
            .collect();
        assert_eq!(ids.len(), 60, "each event has its own id");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_spool_what_is_left_at_shutdown_is_counted() {
        let sink = FlakySink::down();
        let clock = Arc::new(ManualClock::starting_now());
        let (q, task) =
            AuditQueue::start_with(sink.clone(), settings(10, None), clock.clone()).expect("start");
        let drops = q.drops.clone();
        for n in 0..10 {
            q.push(event(n));
        }
        until(&clock, "a failed attempt", || {
            sink.failures.load(Ordering::SeqCst) >= 1
        })
        .await;
        // The writer holds 10 in memory, 10 more fit the queue; the rest are dropped.
        for n in 10..25 {
            q.push(event(n));
            tokio::task::yield_now().await;
        }
        // The writer makes one last attempt, which fails, and stops.
        drop(q);
        task.await.expect("writer");
        assert!(sink.principals().is_empty());
        assert_eq!(
            drops.total.load(Ordering::Relaxed),
            25,
            "every event not written is counted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_spools_and_replays_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.spool");
        let sink = FlakySink::down();
        let clock = Arc::new(ManualClock::starting_now());
        let (q, task) = AuditQueue::start_with(
            sink.clone(),
            settings(100, Some((&path, 10 << 20))),
            clock.clone(),
        )
        .expect("start");
        for n in 0..1000 {
            q.push(event(n));
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        until(&clock, "everything spooled", || spool_lines(&path) == 1000).await;
        assert_eq!(q.dropped(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("spool")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the spool is private");
        sink.set_down(false);
        until(&clock, "all written", || sink.principals().len() >= 1000).await;
        q.push(event(1000));
        drop(q);
        task.await.expect("writer");
        assert_eq!(sink.principals(), names(0..1001), "once each, in order");
        assert!(!path.exists(), "the replayed spool is removed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_spool_survives_a_restart_and_is_replayed_first() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.spool");
        let clock = Arc::new(ManualClock::starting_now());
        let down = FlakySink::down();
        let (q, task) = AuditQueue::start_with(
            down.clone(),
            settings(100, Some((&path, 10 << 20))),
            clock.clone(),
        )
        .expect("start");
        for n in 0..300 {
            q.push(event(n));
            tokio::task::yield_now().await;
        }
        drop(q);
        task.await.expect("writer");
        assert_eq!(spool_lines(&path), 300, "all of it kept on disk");
        assert!(down.principals().is_empty());

        // A new process: an answering sink, the same spool.
        let sink = Arc::new(FlakySink::default());
        let (q, task) =
            AuditQueue::start_with(sink.clone(), settings(100, Some((&path, 10 << 20))), clock)
                .expect("restart");
        for n in 300..310 {
            q.push(event(n));
        }
        drop(q);
        task.await.expect("writer");
        assert_eq!(
            sink.principals(),
            names(0..310),
            "the spool first, then the new"
        );
        assert!(!path.exists());
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_spool_limit_drops_are_counted_exactly() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.spool");
        let line = event(0).to_line().len() as u64;
        let sink = FlakySink::down();
        let clock = Arc::new(ManualClock::starting_now());
        let (q, task) = AuditQueue::start_with(
            sink.clone(),
            settings(20, Some((&path, 30 * line + line / 2))),
            clock.clone(),
        )
        .expect("start");
        for n in 0..200 {
            q.push(event(n));
            tokio::task::yield_now().await;
        }
        until(&clock, "all taken or counted", || {
            spool_lines(&path) + usize::try_from(q.dropped()).expect("small") >= 180
        })
        .await;
        assert!(q.dropped() > 0, "the limit was reached");
        assert!(q.drop_reports() >= 1, "and said so in the log");
        sink.set_down(false);
        let observer = q.drops.clone();
        drop(q);
        task.await.expect("writer");
        let dropped = usize::try_from(observer.total.load(Ordering::Relaxed)).expect("small");
        let written = sink.principals();
        assert_eq!(written.len() + dropped, 200, "written + counted = pushed");
        // What was written is in order (the oldest kept, the newest dropped).
        let mut sorted = written.clone();
        sorted.sort_by_key(|p| p[5..].parse::<usize>().expect("n"));
        assert_eq!(written, sorted);
        assert!(std::fs::metadata(&path).map_or(0, |m| m.len()) <= 30 * line + line / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_torn_or_unreadable_spool_line_is_cut_or_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.spool");
        let mut bytes = event(0).to_line();
        bytes.extend_from_slice(b"{not json}\n");
        bytes.extend(event(1).to_line());
        bytes.extend_from_slice(&event(2).to_line()[..20]); // a crash while appending
        std::fs::write(&path, &bytes).expect("write");
        let sink = Arc::new(FlakySink::default());
        let clock = Arc::new(ManualClock::starting_now());
        let (q, task) =
            AuditQueue::start_with(sink.clone(), settings(10, Some((&path, 10 << 20))), clock)
                .expect("start");
        let drops = q.drops.clone();
        drop(q);
        task.await.expect("writer");
        assert_eq!(sink.principals(), names(0..2));
        assert_eq!(
            drops.total.load(Ordering::Relaxed),
            1,
            "the unreadable line"
        );
        assert!(!path.exists());
    }

    #[tokio::test(start_paused = true)]
    async fn a_spool_in_use_by_another_writer_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.spool");
        std::fs::write(&path, event(0).to_line()).expect("write");
        let clock = Arc::new(ManualClock::starting_now());
        let down = FlakySink::down();
        let (q, task) =
            AuditQueue::start_with(down, settings(10, Some((&path, 1 << 20))), clock.clone())
                .expect("first");
        let Err(e) = AuditQueue::start_with(
            Arc::new(FlakySink::default()),
            settings(10, Some((&path, 1 << 20))),
            clock,
        ) else {
            panic!("a second writer on the same spool");
        };
        assert_eq!(e.code(), "audit_spool", "{e}");
        drop(q);
        task.await.expect("writer");
        assert_eq!(spool_lines(&path), 1, "kept for the next start");
    }

    #[tokio::test(start_paused = true)]
    async fn a_noted_offset_skips_what_the_sink_took_and_a_bad_one_replays_all() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.spool");
        let offset = dir.path().join("audit.spool.offset");
        let first = event(0).to_line();
        let mut bytes = first.clone();
        bytes.extend(event(1).to_line());
        bytes.extend(event(2).to_line());
        let clock = Arc::new(ManualClock::starting_now());
        for (noted, expected) in [
            (first.len().to_string(), names(1..3)),
            ((first.len() + 1).to_string(), names(0..3)),
            ((bytes.len() + 10).to_string(), names(0..3)),
        ] {
            std::fs::write(&path, &bytes).expect("write");
            std::fs::write(&offset, &noted).expect("write");
            let sink = Arc::new(FlakySink::default());
            let (q, task) = AuditQueue::start_with(
                sink.clone(),
                settings(10, Some((&path, 10 << 20))),
                clock.clone(),
            )
            .expect("start");
            drop(q);
            task.await.expect("writer");
            assert_eq!(sink.principals(), expected, "offset {noted}");
            assert!(!path.exists() && !offset.exists());
        }
    }

    /// Lets the writer task run (no time passes: the Tokio clock is paused and nothing idles).
    async fn settle() {
        for _ in 0..1_000 {
            tokio::task::yield_now().await;
        }
    }

    /// Retry delays are waited on the injected clock: nothing is tried again until the clock
    /// reaches the delay (10 ms, then 20 ms, doubling), however long the writer is left to run.
    /// Tokio's clock is paused and never idles here, so a Tokio timer would never fire.
    #[tokio::test(start_paused = true)]
    async fn retry_delays_are_measured_by_the_clock() {
        let sink = FlakySink::down();
        let clock = Arc::new(ManualClock::starting_now());
        let (q, _task) = AuditQueue::start_with(sink.clone(), settings(100, None), clock.clone())
            .expect("start");
        q.push(event(0));
        let failures = || sink.failures.load(Ordering::SeqCst);
        settle().await;
        assert_eq!(failures(), 1, "the first attempt is at once");
        for (attempt, delay_ms) in [(2, 10), (3, 20), (4, 40)] {
            clock.advance(Duration::from_millis(delay_ms - 1));
            settle().await;
            assert_eq!(
                failures(),
                attempt - 1,
                "1 ms before the {delay_ms} ms delay"
            );
            clock.advance(Duration::from_millis(1));
            settle().await;
            assert_eq!(failures(), attempt, "at the {delay_ms} ms delay");
        }
        sink.set_down(false);
        clock.advance(Duration::from_millis(80));
        settle().await;
        assert_eq!(sink.principals(), names(0..1));
    }

    /// Writes `pace` apart at the most, each recording when it started (by the clock) and how
    /// many events it carried.
    #[derive(Debug)]
    struct PacedSink {
        clock: Arc<ManualClock>,
        pace: Duration,
        writes: Mutex<Vec<(UnixTime, usize)>>,
    }

    impl AuditSink for PacedSink {
        fn write<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), Error>> {
            self.writes.lock().push((self.clock.now(), events.len()));
            Box::pin(async { Ok(()) })
        }

        fn pace(&self) -> Duration {
            self.pace
        }
    }

    /// The sink's pace is kept by the writer on the injected clock: the next write waits until
    /// the pace since the last one has passed, and carries everything that arrived meanwhile.
    #[tokio::test(start_paused = true)]
    async fn the_sink_pace_is_kept_on_the_clock_and_batches_grow_meanwhile() {
        let clock = Arc::new(ManualClock::starting_now());
        let t0 = clock.now();
        let sink = Arc::new(PacedSink {
            clock: clock.clone(),
            pace: Duration::from_millis(20),
            writes: Mutex::new(Vec::new()),
        });
        let (q, task) = AuditQueue::start_with(sink.clone(), settings(100, None), clock.clone())
            .expect("start");
        q.push(event(0));
        settle().await;
        assert_eq!(*sink.writes.lock(), [(t0, 1)], "the first write is at once");
        for n in 1..6 {
            q.push(event(n));
            settle().await;
        }
        clock.advance(Duration::from_millis(19));
        settle().await;
        assert_eq!(sink.writes.lock().len(), 1, "not within the pace");
        clock.advance(Duration::from_millis(1));
        settle().await;
        let t20 = t0.plus(Duration::from_millis(20));
        assert_eq!(
            *sink.writes.lock(),
            [(t0, 1), (t20, 5)],
            "one write for all that arrived"
        );
        // The pace holds at shutdown too.
        q.push(event(6));
        drop(q);
        settle().await;
        assert_eq!(sink.writes.lock().len(), 2);
        clock.advance(Duration::from_millis(20));
        task.await.expect("writer");
        let t40 = t0.plus(Duration::from_millis(40));
        assert_eq!(sink.writes.lock().last(), Some(&(t40, 1)));
    }
}
