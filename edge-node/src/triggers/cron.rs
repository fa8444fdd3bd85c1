//! Cron schedules: each run fired on one node (the backend's claim), never overlapping, with
//! retries; the history of runs kept in this node's store, missed runs recorded (and the
//! latest one made up for with `catch_up`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use config::CronTrigger;
use js_runtime::Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::Triggers;
use crate::backend::{now_ms, StoreError};
use crate::functions::Function;

/// (function, schedule, scheduled ms) -> [`CronRun`] as JSON.
const CRON_RUNS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("cron_runs");
/// Runs kept per schedule.
const CRON_HISTORY: usize = 200;

/// Makes the table of cron runs.
pub(super) fn open(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(CRON_RUNS)?;
    tx.commit()?;
    Ok(())
}

impl Triggers {
    /// The newest runs of a function's schedules, newest first.
    pub fn cron_runs(&self, function: &str) -> Result<Vec<CronRun>, StoreError> {
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
        let write = || -> Result<(), StoreError> {
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

    /// When the schedule last fired (or was recorded missed), if ever; runs fired by hand
    /// do not count.
    fn last_run(&self, function: &str, schedule: &str) -> Option<u64> {
        let tx = self.db.begin_read().ok()?;
        let table = tx.open_table(CRON_RUNS).ok()?;
        let runs = table.range((function, schedule, 0)..=(function, schedule, u64::MAX)).ok()?;
        runs.rev().filter_map(Result::ok).find_map(|(k, v)| {
            let manual = serde_json::from_slice::<CronRun>(v.value()).is_ok_and(|r| r.manual);
            (!manual).then(|| k.value().2)
        })
    }

    /// Records a run of a function's `scheduled` handler fired by hand (`invoke --cron`) in
    /// its history, marked `manual`.
    pub fn record_manual(&self, function: &str, run: CronRun) {
        self.record(function, &CronRun { manual: true, ..run });
    }

    /// Whether this node fires the run of `schedule` due at `due_ms`: when it claims the run
    /// first. While the claim cannot be made (NATS unreachable), `[cluster]
    /// cron_when_partitioned` decides: `skip` fires nowhere, `fire` fires on every node cut
    /// off (a run may then fire more than once).
    async fn claim(&self, function: &str, schedule: &str, due_ms: u64) -> Claim {
        let digest: String = sha2::Sha256::digest(schedule.as_bytes())[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("{function}.{digest}.{due_ms}");
        // A claim made late is of no use (its run is due now): one that does not answer
        // within the deadline counts as the claim store being unreachable.
        let claimed =
            tokio::time::timeout(CLAIM_DEADLINE, self.claims.claim(&key)).await.unwrap_or_else(
                |_| Err(StoreError::Cluster("the claim did not answer within 1 s".into())),
            );
        match claimed {
            Ok(true) => Claim::Mine,
            Ok(false) => Claim::Theirs,
            Err(e) if self.when_partitioned == config::CronWhenPartitioned::Fire => {
                tracing::warn!(error = %e, function, "cron run not claimed in the cluster; firing here (cron_when_partitioned = \"fire\")");
                Claim::Mine
            }
            Err(e) => {
                tracing::warn!(error = %e, function, "cron run not claimed in the cluster; skipped (cron_when_partitioned = \"skip\")");
                Claim::Unreachable
            }
        }
    }
}

/// How long a node waits for the cluster to answer a claim.
const CLAIM_DEADLINE: Duration = Duration::from_secs(1);

/// Who fires a run of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Mine,
    /// Another node of the cluster.
    Theirs,
    /// Nobody: the claim store cannot be reached and partitioned runs are skipped.
    Unreachable,
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
    /// Fired by hand (`edge-node invoke NAME --cron`), not by the schedule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

impl CronRun {
    /// A run that did not happen: `missed` (the node was down, or claims could not be made)
    /// or `skipped` (the previous run was still going).
    fn not_run(schedule: &str, scheduled_ms: u64, outcome: &str) -> CronRun {
        CronRun {
            schedule: schedule.to_string(),
            scheduled_ms,
            started_ms: 0,
            duration_ms: 0,
            outcome: outcome.into(),
            attempts: 0,
            catch_up: false,
            manual: false,
        }
    }
}

/// Fires `trigger` for `function` until aborted: runs never overlap (a run still going when
/// the next is due makes that one `skipped`); runs missed while the node was down are
/// recorded, not replayed.
pub(super) async fn schedule(
    triggers: Arc<Triggers>,
    function: Arc<Function>,
    trigger: CronTrigger,
) {
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
                let run =
                    CronRun::not_run(&trigger.schedule, missed.timestamp_millis() as u64, "missed");
                triggers.record(&name, &run);
            }
        }
    }
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let catch_up = match (trigger.catch_up, latest_missed) {
        (true, Some(due)) if triggers.claim(&name, &trigger.schedule, due).await == Claim::Mine => {
            Some(due)
        }
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
    // The latest run skipped while claims could not be made.
    let mut skipped: Option<u64> = None;
    loop {
        let Ok(due) = cron.find_next_occurrence(&after, false) else {
            tracing::error!(function = %name, schedule = %trigger.schedule, "the schedule never fires again");
            return;
        };
        after = due;
        let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let scheduled_ms = due.timestamp_millis() as u64;
        match triggers.claim(&name, &trigger.schedule, scheduled_ms).await {
            Claim::Mine => {}
            Claim::Theirs => continue, // another node of the cluster fires this one
            Claim::Unreachable => {
                let run = CronRun::not_run(&trigger.schedule, scheduled_ms, "missed");
                let (t, name) = (triggers.clone(), name.clone());
                tokio::task::spawn_blocking(move || t.record(&name, &run));
                skipped = Some(scheduled_ms);
                continue;
            }
        }
        // Claims work again: a `catch_up` schedule runs once for the latest run skipped while
        // they did not (claimed like any run, so once per cluster).
        if let (true, Some(missed)) = (trigger.catch_up, skipped.take()) {
            if triggers.claim(&name, &trigger.schedule, missed).await == Claim::Mine {
                let run = CronRun { catch_up: true, ..fire(&function, &trigger, missed).await };
                let (t, name) = (triggers.clone(), name.clone());
                tokio::task::spawn_blocking(move || t.record(&name, &run));
            }
        }
        if running.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let run = CronRun::not_run(&trigger.schedule, scheduled_ms, "skipped");
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
                manual: false,
            };
        }
        tokio::time::sleep(Duration::from_secs(1 << (attempts - 1).min(6))).await;
    }
}
