//! Triggers beyond HTTP: queue consumers, storage and record event consumers, and cron
//! schedules of the served functions. One task per consumer and per schedule; the tasks follow
//! the served site (`Triggers::sync` after every change). The backend says what delivers each
//! function's messages and events and which node fires each cron run.

mod cron;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use config::QueueTrigger;
use js_runtime::Event;
use redb::Database;

pub use self::cron::CronRun;
use crate::backend::{
    Claims, Consumer, Encoding, Leased, Queueing, StoreError, Subscriber, Verdict,
};
use crate::functions::Function;
use crate::observe::telemetry::Telemetry;

/// The trigger tasks of the served functions.
pub struct Triggers {
    telemetry: Arc<Telemetry>,
    queues: Arc<dyn Queueing>,
    claims: Arc<dyn Claims>,
    /// This node's history of cron runs.
    db: Arc<Database>,
    /// What a schedule does while claims cannot be made (`[cluster] cron_when_partitioned`).
    when_partitioned: config::CronWhenPartitioned,
    tasks: Mutex<Vec<(Arc<Function>, tokio::task::JoinHandle<()>)>>,
}

impl Triggers {
    pub fn new(
        queues: Arc<dyn Queueing>,
        claims: Arc<dyn Claims>,
        db: Arc<Database>,
        telemetry: Arc<Telemetry>,
        when_partitioned: config::CronWhenPartitioned,
    ) -> Result<Triggers, StoreError> {
        cron::open(&db)?;
        let tasks = Mutex::new(Vec::new());
        Ok(Triggers { telemetry, queues, claims, db, when_partitioned, tasks })
    }

    /// Runs the triggers of exactly `functions`: tasks of functions no longer served stop,
    /// new functions get theirs.
    pub fn sync(self: &Arc<Self>, functions: &[Arc<Function>]) {
        let served: Vec<Subscriber<'_>> = functions.iter().map(|f| f.subscriber()).collect();
        self.queues.route(&served);
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
            for consumer in self.queues.consumers(&f.subscriber()) {
                tasks.push((f.clone(), tokio::spawn(consume(f.clone(), consumer))));
            }
            for trigger in &f.config.triggers.cron {
                let task = tokio::spawn(cron::schedule(self.clone(), f.clone(), trigger.clone()));
                tasks.push((f.clone(), task));
            }
        }
    }

    /// Stops every trigger task.
    pub fn stop(&self) {
        for (_, task) in self.tasks.lock().expect("triggers lock").drain(..) {
            task.abort();
        }
    }
}

/// Hands `consumer`'s batches to `function` until aborted, settling each by its verdicts.
async fn consume(function: Arc<Function>, mut consumer: Box<dyn Consumer>) {
    let (trigger, handler) = (consumer.trigger().clone(), consumer.handler());
    loop {
        let leased = consumer.next().await;
        if leased.is_empty() {
            continue;
        }
        let run = run_batch(&function, &trigger, handler, &leased);
        let verdicts = match consumer.keep_every() {
            None => run.await,
            Some(every) => {
                tokio::pin!(run);
                let mut keep = tokio::time::interval(every);
                keep.tick().await;
                loop {
                    tokio::select! {
                        verdicts = &mut run => break verdicts,
                        _ = keep.tick() => consumer.keep().await,
                    }
                }
            }
        };
        consumer.settle(&verdicts).await;
    }
}

/// Hands a batch to the function and decides each message's fate: acked when the handler
/// acked it (or succeeded without a word), retried with backoff, or dead after its last
/// attempt.
async fn run_batch(
    function: &Function,
    trigger: &QueueTrigger,
    handler: &'static str,
    leased: &[Leased],
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
