//! Triggers beyond HTTP: queue consumers, storage and record event consumers, and cron
//! schedules of the served functions. One task per consumer mapping and per schedule; the
//! tasks follow the served site (`Triggers::sync` after every change).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use config::{CronTrigger, QueueTrigger, RecordTrigger, StorageTrigger};
use futures::StreamExt;
use js_runtime::Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::backend::local::queues::{now_ms, Encoding, Queues, Verdict};
use crate::backend::nats::objects::{change_event, ChangeLog, EVENT_PROGRESS};
use crate::backend::objects::EventRoutes;
use crate::functions::Function;

/// The largest message a function may send, as on Workers.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// (function, schedule, scheduled ms) -> [`CronRun`] as JSON.
const CRON_RUNS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("cron_runs");
/// Runs kept per schedule.
const CRON_HISTORY: usize = 200;

/// The trigger tasks of the served functions.
pub struct Triggers {
    telemetry: Arc<crate::observe::telemetry::Telemetry>,
    queues: Arc<Queues>,
    db: Arc<Database>,
    tasks: Mutex<Vec<(Arc<Function>, tokio::task::JoinHandle<()>)>>,
    /// Served functions' storage and record triggers, for routing change events.
    routes: std::sync::RwLock<Vec<Routes>>,
    /// In a cluster: where runs are claimed, so each fires on one node, and this node's id.
    cluster: std::sync::OnceLock<(Arc<crate::backend::nats::DeployLink>, String)>,
}

/// A served function's storage and record triggers.
type Routes = (String, Vec<StorageTrigger>, Vec<RecordTrigger>);

/// The internal queue of a function's storage events.
fn storage_queue(function: &str) -> String {
    format!("__storage.{function}")
}

/// The internal queue of a function's record events.
fn record_queue(function: &str) -> String {
    format!("__record.{function}")
}

impl EventRoutes for Triggers {
    fn storage(&self, bucket: &str, key: &str) -> Vec<String> {
        let routes = self.routes.read().expect("routes lock");
        routes
            .iter()
            .filter(|(_, storage, _)| {
                storage.iter().any(|t| t.bucket == bucket && key.starts_with(&t.prefix))
            })
            .map(|(name, _, _)| storage_queue(name))
            .collect()
    }

    fn record(&self, table: &str) -> Vec<String> {
        let routes = self.routes.read().expect("routes lock");
        routes
            .iter()
            .filter(|(_, _, record)| record.iter().any(|t| t.table == table))
            .map(|(name, _, _)| record_queue(name))
            .collect()
    }
}

impl Triggers {
    pub fn new(
        queues: Arc<Queues>,
        db: Arc<Database>,
        telemetry: Arc<crate::observe::telemetry::Telemetry>,
    ) -> Result<Triggers, crate::backend::local::store::StoreError> {
        let tx = db.begin_write()?;
        tx.open_table(CRON_RUNS)?;
        tx.commit()?;
        Ok(Triggers {
            telemetry,
            queues,
            db,
            tasks: Mutex::new(Vec::new()),
            routes: std::sync::RwLock::new(Vec::new()),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Runs the triggers of exactly `functions`: tasks of functions no longer served stop,
    /// new functions get theirs.
    pub fn sync(self: &Arc<Self>, functions: &[Arc<Function>]) {
        *self.routes.write().expect("routes lock") = functions
            .iter()
            .map(|f| {
                let t = &f.config.triggers;
                (f.config.name.clone(), t.storage.clone(), t.record.clone())
            })
            .collect();
        let mut tasks = self.tasks.lock().expect("triggers lock");
        tasks.retain(|(f, task)| {
            let keep = functions.iter().any(|g| Arc::ptr_eq(f, g));
            if !keep {
                task.abort();
            }
            keep
        });
        for f in functions {
            if tasks.iter().any(|(g, _)| Arc::ptr_eq(f, g)) || !f.serves_here() {
                continue;
            }
            let cluster = self.cluster.get().map(|(link, _)| link.clone());
            for trigger in &f.config.triggers.queue {
                let task = match &cluster {
                    Some(link) => tokio::spawn(consume_cluster(
                        link.clone(),
                        f.clone(),
                        trigger.clone(),
                        ClusterSource::Queue,
                    )),
                    None => tokio::spawn(consume(
                        self.queues.clone(),
                        f.clone(),
                        trigger.clone(),
                        "queue",
                    )),
                };
                tasks.push((f.clone(), task));
            }
            // Storage and record events go one per invocation, retried like queue messages
            // and dropped (logged) after 5 attempts. Standalone they wait in the function's
            // internal queues; in a cluster they are read from the change logs of the buckets
            // and tables, one consumer per bucket or table.
            let events = |queue: String| QueueTrigger {
                queue,
                max_batch_size: 1,
                max_batch_timeout: Duration::ZERO,
                max_retries: 5,
                visibility_timeout: Duration::from_secs(60),
                retry_delay: Duration::from_secs(1),
                dead_letter_queue: None,
            };
            let t = &f.config.triggers;
            if let Some(link) = &cluster {
                let mut sources: BTreeMap<(String, &str), ClusterSource> = BTreeMap::new();
                for s in &t.storage {
                    let source =
                        sources.entry((s.bucket.clone(), "storage")).or_insert_with(|| {
                            ClusterSource::Changes {
                                log: ChangeLog::Objects,
                                scope: s.bucket.clone(),
                                prefixes: Vec::new(),
                            }
                        });
                    if let ClusterSource::Changes { prefixes, .. } = source {
                        prefixes.push(s.prefix.clone());
                    }
                }
                for r in &t.record {
                    sources.entry((r.table.clone(), "record")).or_insert(ClusterSource::Changes {
                        log: ChangeLog::Records,
                        scope: r.table.clone(),
                        prefixes: Vec::new(),
                    });
                }
                for ((scope, handler), source) in sources {
                    let trigger = events(format!("__{handler}.{}.{scope}", f.config.name));
                    let task =
                        tokio::spawn(consume_cluster(link.clone(), f.clone(), trigger, source));
                    tasks.push((f.clone(), task));
                }
            } else {
                for (handler, queue, wanted) in [
                    ("storage", storage_queue(&f.config.name), !t.storage.is_empty()),
                    ("record", record_queue(&f.config.name), !t.record.is_empty()),
                ] {
                    if wanted {
                        let task = tokio::spawn(consume(
                            self.queues.clone(),
                            f.clone(),
                            events(queue),
                            handler,
                        ));
                        tasks.push((f.clone(), task));
                    }
                }
            }
            for trigger in &f.config.triggers.cron {
                let task = tokio::spawn(schedule(self.clone(), f.clone(), trigger.clone()));
                tasks.push((f.clone(), task));
            }
        }
    }

    /// Makes cron runs claim their second in the cluster first (one node fires each run).
    pub fn join_cluster(&self, link: Arc<crate::backend::nats::DeployLink>, node: String) {
        let _ = self.cluster.set((link, node));
    }

    /// Whether this node fires the run of `schedule` due at `due_ms`: always when standalone;
    /// in a cluster when it claims the run first. While NATS cannot be reached every node
    /// fires (a run may then fire more than once, none is lost).
    async fn claim(&self, function: &str, schedule: &str, due_ms: u64) -> bool {
        let Some((link, node)) = self.cluster.get() else { return true };
        let digest: String = sha2::Sha256::digest(schedule.as_bytes())[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("{function}.{digest}.{due_ms}");
        match link.claim(&key, node).await {
            Ok(mine) => mine,
            Err(e) => {
                tracing::warn!(error = %e, function, "cron run not claimed in the cluster; firing here");
                true
            }
        }
    }

    /// The cluster's link, when the node is in one.
    pub fn cluster_link(&self) -> Option<&Arc<crate::backend::nats::DeployLink>> {
        self.cluster.get().map(|(link, _)| link)
    }

    /// Stops every trigger task.
    pub fn stop(&self) {
        for (_, task) in self.tasks.lock().expect("triggers lock").drain(..) {
            task.abort();
        }
    }

    /// The newest runs of a function's schedules, newest first.
    pub fn cron_runs(
        &self,
        function: &str,
    ) -> Result<Vec<CronRun>, crate::backend::local::store::StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(CRON_RUNS)?;
        let mut out = Vec::new();
        for entry in table.range((function, "", 0)..)? {
            let (k, v) = entry?;
            if k.value().0 != function {
                break;
            }
            if let Ok(run) = serde_json::from_slice::<CronRun>(v.value()) {
                out.push(run);
            }
        }
        out.sort_by_key(|run| std::cmp::Reverse(run.scheduled_ms));
        Ok(out)
    }

    fn record(&self, function: &str, run: &CronRun) {
        let write = || -> Result<(), crate::backend::local::store::StoreError> {
            let tx = self.db.begin_write()?;
            {
                let mut table = tx.open_table(CRON_RUNS)?;
                let value = serde_json::to_vec(run).expect("runs serialise");
                table.insert(
                    (function, run.schedule.as_str(), run.scheduled_ms),
                    value.as_slice(),
                )?;
                let keys: Vec<u64> = table
                    .range(
                        (function, run.schedule.as_str(), 0)
                            ..=(function, run.schedule.as_str(), u64::MAX),
                    )?
                    .map(|e| e.map(|(k, _)| k.value().2))
                    .collect::<Result<_, _>>()?;
                for old in keys.iter().take(keys.len().saturating_sub(CRON_HISTORY)) {
                    table.remove((function, run.schedule.as_str(), *old))?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        match write() {
            Ok(()) => {
                tracing::debug!(function, scheduled = run.scheduled_ms, outcome = %run.outcome, "cron run recorded")
            }
            Err(e) => tracing::warn!(error = %e, function, "cannot record a cron run"),
        }
    }

    /// When the schedule last fired (or was recorded missed), if ever.
    fn last_run(&self, function: &str, schedule: &str) -> Option<u64> {
        let tx = self.db.begin_read().ok()?;
        let table = tx.open_table(CRON_RUNS).ok()?;
        let last = table
            .range((function, schedule, 0)..=(function, schedule, u64::MAX))
            .ok()?
            .next_back()?;
        Some(last.ok()?.0.value().2)
    }
}

/// One run of a schedule, as the history keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CronRun {
    pub schedule: String,
    /// The second it was due, ms since the epoch.
    pub scheduled_ms: u64,
    /// When it started (the last attempt), ms since the epoch; 0 if it never ran.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// `ok`, an invocation outcome, `missed` (the node was down), or `skipped` (the previous
    /// run was still going).
    pub outcome: String,
    pub attempts: u32,
    /// The run made at start for the latest missed one (`catch_up = true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catch_up: bool,
}

/// Consumes `trigger.queue` for `function` until aborted, calling `handler`: `queue` with
/// batches, or `storage`/`record` with one event (a message's JSON body) each.
async fn consume(
    queues: Arc<Queues>,
    function: Arc<Function>,
    trigger: QueueTrigger,
    handler: &'static str,
) {
    let name = function.config.name.clone();
    loop {
        let notified = queues.sent.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let q = queues.clone();
        let queue = trigger.queue.clone();
        let peeked = tokio::task::spawn_blocking(move || q.peek(&queue)).await;
        let (visible, oldest) = match peeked {
            Ok(Ok(p)) => p,
            other => {
                tracing::warn!(function = %name, queue = %trigger.queue, error = ?other.err(), "cannot read the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let waited = oldest.map(|t| Duration::from_millis(now_ms().saturating_sub(t)));
        let ready = visible >= trigger.max_batch_size
            || waited.is_some_and(|w| w >= trigger.max_batch_timeout);
        if !ready {
            // Wake on a send, when the oldest message has waited long enough, or to look
            // for messages whose lease ran out.
            let wait = match waited {
                Some(w) => trigger.max_batch_timeout.saturating_sub(w),
                None => Duration::from_millis(500),
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait.min(Duration::from_millis(500))) => {}
            }
            continue;
        }
        let q = queues.clone();
        let (queue, max, visibility) =
            (trigger.queue.clone(), trigger.max_batch_size, trigger.visibility_timeout);
        let leased = match tokio::task::spawn_blocking(move || q.lease(&queue, max, visibility))
            .await
        {
            Ok(Ok(leased)) => leased,
            other => {
                tracing::warn!(function = %name, queue = %trigger.queue, error = ?other.err(), "cannot lease messages");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if leased.is_empty() {
            continue;
        }
        let verdicts = run_batch(&function, &trigger, handler, &leased).await;
        let q = queues.clone();
        let queue = trigger.queue.clone();
        let dlq = trigger.dead_letter_queue.clone();
        let settled =
            tokio::task::spawn_blocking(move || q.settle(&queue, &verdicts, dlq.as_deref())).await;
        if !matches!(settled, Ok(Ok(()))) {
            tracing::warn!(function = %name, queue = %trigger.queue, "cannot settle a batch; it is delivered again after the visibility timeout");
        }
    }
}

/// What a cluster consumer reads: a queue, or the changes of a bucket (objects whose key
/// starts with one of `prefixes`) or of a table.
#[derive(Clone)]
enum ClusterSource {
    Queue,
    Changes { log: ChangeLog, scope: String, prefixes: Vec<String> },
}

impl ClusterSource {
    fn handler(&self) -> &'static str {
        match self {
            ClusterSource::Queue => "queue",
            ClusterSource::Changes { log: ChangeLog::Objects, .. } => "storage",
            ClusterSource::Changes { log: ChangeLog::Records, .. } => "record",
        }
    }

    /// The body to hand over for a delivered message; `None` to acknowledge it unseen (a
    /// deletion marker, an object outside the prefixes).
    fn body(&self, message: &async_nats::jetstream::Message) -> Option<Bytes> {
        let ClusterSource::Changes { log, prefixes, .. } = self else {
            return Some(message.payload.clone());
        };
        let event = change_event(*log, message)?;
        if *log == ChangeLog::Objects {
            let parsed: serde_json::Value = serde_json::from_slice(&event).ok()?;
            let key = parsed["key"].as_str()?;
            if !prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                return None;
            }
        }
        Some(event)
    }
}

/// Consumes a queue or a change log of the cluster (a JetStream durable consumer shared by
/// every node serving the function) until aborted. JetStream redelivers a message not acked
/// within the visibility timeout, so a node dying mid-batch loses nothing.
async fn consume_cluster(
    link: Arc<crate::backend::nats::DeployLink>,
    function: Arc<Function>,
    trigger: QueueTrigger,
    source: ClusterSource,
) {
    use async_nats::jetstream::AckKind;
    let name = function.config.name.clone();
    let handler = source.handler();
    loop {
        let consumer = match &source {
            ClusterSource::Queue => link.consumer(&name, &trigger).await,
            ClusterSource::Changes { log, scope, .. } => {
                link.change_consumer(&name, *log, scope, function.started).await
            }
        };
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::debug!(function = %name, queue = %trigger.queue, error = %e, "cluster consumer not ready");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let batch = consumer
                .fetch()
                .max_messages(trigger.max_batch_size)
                .expires(trigger.max_batch_timeout.max(Duration::from_millis(100)))
                .messages()
                .await;
            let Ok(mut batch) = batch else { break };
            let mut messages = Vec::new();
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => messages.push(message),
                    Err(_) => break,
                }
            }
            let mut taken = Vec::with_capacity(messages.len());
            for m in messages {
                match (source.body(&m), m.info()) {
                    (Some(body), Ok(info)) => {
                        let leased = crate::backend::local::queues::Leased {
                            id: info.stream_sequence,
                            attempts: u32::try_from(info.delivered).unwrap_or(u32::MAX),
                            enqueued_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as u64,
                            encoding: crate::backend::nats::encoding_of(&m),
                            body,
                        };
                        taken.push((m, leased));
                    }
                    _ => {
                        if let Err(e) = m.ack().await {
                            tracing::warn!(error = %e, "cannot acknowledge a skipped message");
                        }
                    }
                }
            }
            if taken.is_empty() {
                continue;
            }
            let leased: Vec<crate::backend::local::queues::Leased> =
                taken.iter().map(|(_, l)| l.clone()).collect();
            let verdicts = if matches!(source, ClusterSource::Changes { .. }) {
                // Keep the events this node's own while the handler runs (see EVENT_ACK_WAIT).
                let run = run_batch(&function, &trigger, handler, &leased);
                tokio::pin!(run);
                let mut progress = tokio::time::interval(EVENT_PROGRESS);
                progress.tick().await;
                loop {
                    tokio::select! {
                        verdicts = &mut run => break verdicts,
                        _ = progress.tick() => {
                            for (m, _) in &taken {
                                let _ = m.ack_with(AckKind::Progress).await;
                            }
                        }
                    }
                }
            } else {
                run_batch(&function, &trigger, handler, &leased).await
            };
            for (m, l) in &taken {
                let verdict = verdicts.iter().find(|(id, _)| *id == l.id).map(|(_, v)| *v);
                let kind = match verdict {
                    Some(Verdict::Ack) | None => AckKind::Ack,
                    Some(Verdict::Retry(delay)) => AckKind::Nak(Some(delay)),
                    Some(Verdict::Dead) => {
                        if let Some(dlq) = &trigger.dead_letter_queue {
                            if let Err(e) = link.send(dlq, &[(l.encoding, &l.body)]).await {
                                tracing::warn!(error = %e, "cannot dead-letter a message; it is delivered again");
                                continue;
                            }
                        }
                        AckKind::Term
                    }
                };
                if let Err(e) = m.ack_with(kind).await {
                    tracing::warn!(error = %e, "cannot settle a message; it is delivered again");
                }
            }
        }
    }
}

/// Hands a batch to the function and decides each message's fate: acked when the handler
/// acked it (or succeeded without a word), retried with backoff, or dead after its last
/// attempt.
async fn run_batch(
    function: &Function,
    trigger: &QueueTrigger,
    handler: &'static str,
    leased: &[crate::backend::local::queues::Leased],
) -> Vec<(u64, Verdict)> {
    let name = function.config.name.clone();
    let payload = serde_json::json!({
        "queue": trigger.queue,
        "messages": leased.iter().enumerate().map(|(i, m)| serde_json::json!({
            "id": m.id.to_string(),
            "timestamp": m.enqueued_ms,
            "attempts": m.attempts,
            "encoding": if m.encoding == Encoding::Json { "json" } else { "v8" },
            "blob": i,
        })).collect::<Vec<_>>(),
    });
    let event = if handler == "queue" {
        Event {
            handler: "queue",
            payload: payload.to_string(),
            blobs: leased.iter().map(|m| m.body.clone()).collect::<Vec<Bytes>>(),
        }
    } else {
        let body = String::from_utf8_lossy(&leased[0].body).into_owned();
        Event { handler, payload: body, blobs: Vec::new() }
    };
    let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().simple().to_string());
    let result = function.invoke_event(handler, id, event).await;
    let explicit: BTreeMap<String, (bool, Option<f64>)> = match &result {
        Ok(json) => serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v["verdicts"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| {
                let id = v["id"].as_str()?.to_string();
                Some((id, (v["ack"].as_bool().unwrap_or(false), v["delaySeconds"].as_f64())))
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let verdicts: Vec<(u64, Verdict)> = leased
        .iter()
        .map(|m| {
            let (ack, delay) = match explicit.get(&m.id.to_string()) {
                Some(&(ack, delay)) => (ack, delay),
                // Not marked: acked when the handler succeeded, retried when it failed.
                None => (result.is_ok(), None),
            };
            let verdict = if ack {
                Verdict::Ack
            } else if m.attempts >= trigger.max_retries {
                Verdict::Dead
            } else {
                let backoff = trigger.retry_delay.saturating_mul(1 << (m.attempts - 1).min(16));
                let delay = delay.map(Duration::from_secs_f64).unwrap_or(backoff);
                Verdict::Retry(delay.min(Duration::from_secs(300)))
            };
            (m.id, verdict)
        })
        .collect();
    for (id, verdict) in &verdicts {
        if matches!(verdict, Verdict::Dead) {
            let attempts = leased.iter().find(|m| m.id == *id).map_or(0, |m| m.attempts);
            match &trigger.dead_letter_queue {
                Some(dlq) => {
                    tracing::info!(function = %name, queue = %trigger.queue, message = id, attempts, dead_letter_queue = %dlq, "message dead-lettered")
                }
                None => {
                    tracing::warn!(function = %name, queue = %trigger.queue, message = id, attempts, "message dropped after its last attempt (no dead_letter_queue)")
                }
            }
        }
    }
    verdicts
}

/// Fires `trigger` for `function` until aborted: runs never overlap (a run still going when
/// the next is due makes that one `skipped`); runs missed while the node was down are
/// recorded, not replayed.
async fn schedule(triggers: Arc<Triggers>, function: Arc<Function>, trigger: CronTrigger) {
    let name = function.config.name.clone();
    let cron = match croner::Cron::from_str(&trigger.schedule) {
        Ok(cron) => cron,
        Err(e) => {
            tracing::error!(function = %name, schedule = %trigger.schedule, error = %e, "invalid cron schedule");
            return;
        }
    };
    let now = chrono::Utc::now();
    let mut latest_missed = None;
    if let Some(last) = triggers.last_run(&name, &trigger.schedule) {
        if let Some(since) = chrono::DateTime::from_timestamp_millis(last as i64) {
            // One due time after another (croner's own iterator skips one after each hit).
            let mut missed_times = Vec::new();
            let mut at = since;
            while let Ok(next) = cron.find_next_occurrence(&at, false) {
                if next >= now || missed_times.len() >= 1000 {
                    break;
                }
                missed_times.push(next);
                at = next;
            }
            for missed in missed_times {
                latest_missed = Some(missed.timestamp_millis() as u64);
                let run = CronRun {
                    schedule: trigger.schedule.clone(),
                    scheduled_ms: missed.timestamp_millis() as u64,
                    started_ms: 0,
                    duration_ms: 0,
                    outcome: "missed".into(),
                    attempts: 0,
                    catch_up: false,
                };
                triggers.record(&name, &run);
            }
        }
    }
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let catch_up = match (trigger.catch_up, latest_missed) {
        (true, Some(due)) if triggers.claim(&name, &trigger.schedule, due).await => Some(due),
        _ => None,
    };
    if let Some(scheduled_ms) = catch_up {
        running.store(true, std::sync::atomic::Ordering::Release);
        let (t, f, trig, running) =
            (triggers.clone(), function.clone(), trigger.clone(), running.clone());
        tokio::spawn(async move {
            let run = CronRun { catch_up: true, ..fire(&f, &trig, scheduled_ms).await };
            running.store(false, std::sync::atomic::Ordering::Release);
            let name = f.config.name.clone();
            let _ = tokio::task::spawn_blocking(move || t.record(&name, &run)).await;
        });
    }
    // Schedules are in whole seconds.
    let mut after = chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now);
    loop {
        let Ok(due) = cron.find_next_occurrence(&after, false) else {
            tracing::error!(function = %name, schedule = %trigger.schedule, "the schedule never fires again");
            return;
        };
        after = due;
        let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let scheduled_ms = due.timestamp_millis() as u64;
        if !triggers.claim(&name, &trigger.schedule, scheduled_ms).await {
            continue; // another node of the cluster fires this one
        }
        if running.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let run = CronRun {
                schedule: trigger.schedule.clone(),
                scheduled_ms,
                started_ms: 0,
                duration_ms: 0,
                outcome: "skipped".into(),
                attempts: 0,
                catch_up: false,
            };
            let t = triggers.clone();
            let name = name.clone();
            tokio::task::spawn_blocking(move || t.record(&name, &run));
            continue;
        }
        let delay = Duration::from_millis(now_ms().saturating_sub(scheduled_ms));
        triggers.telemetry.cron_delay(&name, delay);
        let (t, f, trig, running) =
            (triggers.clone(), function.clone(), trigger.clone(), running.clone());
        tokio::spawn(async move {
            let run = fire(&f, &trig, scheduled_ms).await;
            running.store(false, std::sync::atomic::Ordering::Release);
            let name = f.config.name.clone();
            let _ = tokio::task::spawn_blocking(move || t.record(&name, &run)).await;
        });
    }
}

/// One run of a schedule, with retries (1 s, 2 s, 4 s, ... apart) after failures.
async fn fire(function: &Function, trigger: &CronTrigger, scheduled_ms: u64) -> CronRun {
    let payload = serde_json::json!({ "cron": trigger.schedule, "scheduledTime": scheduled_ms });
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started_ms = now_ms();
        let event = Event { handler: "scheduled", payload: payload.to_string(), blobs: Vec::new() };
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().simple().to_string());
        let result = function.invoke_event("cron", id, event).await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(f) => f.outcome.as_str().to_string(),
        };
        if result.is_ok() || attempts > trigger.retries {
            return CronRun {
                schedule: trigger.schedule.clone(),
                scheduled_ms,
                started_ms,
                duration_ms: now_ms().saturating_sub(started_ms),
                outcome,
                attempts,
                catch_up: false,
            };
        }
        tokio::time::sleep(Duration::from_secs(1 << (attempts - 1).min(6))).await;
    }
}
