//! The cluster's queues: one JetStream stream (`ISOLA_QUEUES`), a queue `q` is the subject
//! `isola.queue.q`; each function consuming a queue has a durable consumer shared by every
//! node serving it. Storage and record events are read from the change logs of the buckets
//! and tables (see `objects`), one consumer per bucket or table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use async_trait::async_trait;
use bytes::Bytes;
use config::QueueTrigger;
use futures::StreamExt;

use super::objects::{change_event, ChangeLog, EVENT_PROGRESS};
use super::{encoding_of, Link, ENCODING_HEADER, QUEUES_STREAM, QUEUE_SUBJECT};
use crate::backend::{
    event_trigger, Consumer, Encoding, Leased, QueueStats, Queueing, StoreError, Subscriber,
    Verdict,
};

impl Link {
    /// Appends messages to a queue of the cluster; answers once JetStream has stored them.
    pub async fn send(
        &self,
        queue: &str,
        messages: &[(Encoding, &[u8])],
    ) -> Result<Vec<u64>, String> {
        let stores = self.ready().await?;
        let subject = format!("{QUEUE_SUBJECT}.{queue}");
        let mut acks = Vec::with_capacity(messages.len());
        for (encoding, body) in messages {
            let mut headers = async_nats::HeaderMap::new();
            let name = if *encoding == Encoding::Json { "json" } else { "v8" };
            headers.insert(ENCODING_HEADER, name);
            let ack = stores
                .js
                .publish_with_headers(subject.clone(), headers, bytes::Bytes::copy_from_slice(body))
                .await
                .map_err(|e| e.to_string())?;
            acks.push(ack);
        }
        let mut ids = Vec::with_capacity(acks.len());
        for ack in acks {
            ids.push(ack.await.map_err(|e| e.to_string())?.sequence);
        }
        Ok(ids)
    }

    /// The durable consumer of `queue` for `function`: every function consuming a queue gets
    /// each message, and any node may take the next batch.
    pub async fn consumer(
        &self,
        function: &str,
        trigger: &config::QueueTrigger,
    ) -> Result<async_nats::jetstream::consumer::PullConsumer, String> {
        let stores = self.ready().await?;
        let stream = stores.js.get_stream(QUEUES_STREAM).await.map_err(|e| e.to_string())?;
        let digest: String = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            format!("{function}/{}", trigger.queue),
        ))[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name: String = format!("{function}-{}-{digest}", trigger.queue)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        stream
            .get_or_create_consumer(
                &name,
                async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{QUEUE_SUBJECT}.{}", trigger.queue),
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: trigger.visibility_timeout,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// The figures of the cluster's queues, by name. A queue that functions consume: the
    /// messages its most behind consumer has not acknowledged; one nobody consumes (a
    /// dead-letter queue, say): every message it holds. Dead-lettering is not counted here.
    pub async fn queue_stats(&self) -> Result<BTreeMap<String, QueueStats>, String> {
        use futures::TryStreamExt;
        let stores = self.stores()?;
        let stream = stores.js.get_stream(QUEUES_STREAM).await.map_err(|e| e.to_string())?;
        let prefix = format!("{QUEUE_SUBJECT}.");
        let age = |m: &async_nats::jetstream::message::StreamMessage| {
            let published = (m.time.unix_timestamp_nanos() / 1_000_000) as u64;
            crate::backend::now_ms().saturating_sub(published)
        };
        let mut out: BTreeMap<String, QueueStats> = Default::default();
        let consumers: Vec<_> =
            stream.consumers().try_collect().await.map_err(|e| e.to_string())?;
        for info in consumers {
            let subject = info.config.filter_subject.clone();
            let Some(queue) = subject.strip_prefix(&prefix) else { continue };
            let depth = info.num_pending + info.num_ack_pending as u64;
            let mut stats =
                QueueStats { depth, in_flight: info.num_ack_pending as u64, ..Default::default() };
            if depth > 0 {
                let oldest = stream
                    .raw_message_builder()
                    .sequence(info.ack_floor.stream_sequence + 1)
                    .next_by_subject(subject.clone())
                    .send()
                    .await;
                stats.oldest_age_ms = oldest.map(|m| age(&m)).unwrap_or(0);
            }
            let entry = out.entry(queue.to_string()).or_default();
            if stats.depth >= entry.depth {
                *entry = stats;
            }
        }
        let mut info =
            stream.info_with_subjects(format!("{prefix}>")).await.map_err(|e| e.to_string())?;
        let mut held = Vec::new();
        while let Some((subject, count)) = info.try_next().await.map_err(|e| e.to_string())? {
            held.push((subject, count));
        }
        for (subject, count) in held {
            let Some(queue) = subject.strip_prefix(&prefix) else { continue };
            if out.contains_key(queue) {
                continue;
            }
            let first = stream.get_next_raw_message_by_subject(&subject).await;
            let oldest_age_ms = first.map(|m| age(&m)).unwrap_or(0);
            out.insert(
                queue.to_string(),
                QueueStats { depth: count as u64, oldest_age_ms, ..Default::default() },
            );
        }
        Ok(out)
    }
}

/// The cluster's queues.
pub(super) struct NatsQueueing {
    pub link: Arc<Link>,
}

#[async_trait]
impl Queueing for NatsQueueing {
    async fn send(
        &self,
        queue: &str,
        encoding: Encoding,
        messages: Vec<Vec<u8>>,
    ) -> Result<Vec<u64>, StoreError> {
        let refs: Vec<(Encoding, &[u8])> =
            messages.iter().map(|m| (encoding, m.as_slice())).collect();
        self.link.send(queue, &refs).await.map_err(StoreError::Cluster)
    }

    async fn stats(&self) -> Result<BTreeMap<String, QueueStats>, StoreError> {
        self.link.queue_stats().await.map_err(StoreError::Cluster)
    }

    /// The change logs carry every change; each consumer keeps the ones its function wants.
    fn route(&self, _served: &[Subscriber<'_>]) {}

    fn consumers(&self, function: &Subscriber<'_>) -> Vec<Box<dyn Consumer>> {
        let consumer = |trigger: QueueTrigger, source: Source| -> Box<dyn Consumer> {
            Box::new(NatsConsumer {
                link: self.link.clone(),
                function: function.name.to_string(),
                since: function.since,
                trigger,
                source,
                consumer: None,
                taken: Vec::new(),
            })
        };
        let t = function.triggers;
        let mut out: Vec<Box<dyn Consumer>> =
            t.queue.iter().map(|trigger| consumer(trigger.clone(), Source::Queue)).collect();
        // One consumer per bucket (with the prefixes of all its triggers) and per table.
        let mut sources: BTreeMap<(String, &str), Source> = BTreeMap::new();
        for s in &t.storage {
            let source =
                sources.entry((s.bucket.clone(), "storage")).or_insert_with(|| Source::Changes {
                    log: ChangeLog::Objects,
                    scope: s.bucket.clone(),
                    prefixes: Vec::new(),
                });
            if let Source::Changes { prefixes, .. } = source {
                prefixes.push(s.prefix.clone());
            }
        }
        for r in &t.record {
            sources.entry((r.table.clone(), "record")).or_insert(Source::Changes {
                log: ChangeLog::Records,
                scope: r.table.clone(),
                prefixes: Vec::new(),
            });
        }
        for ((scope, handler), source) in sources {
            let trigger = event_trigger(format!("__{handler}.{}.{scope}", function.name));
            out.push(consumer(trigger, source));
        }
        out
    }
}

/// What a consumer reads: a queue, or the changes of a bucket (objects whose key starts with
/// one of `prefixes`) or of a table.
#[derive(Clone)]
enum Source {
    Queue,
    Changes { log: ChangeLog, scope: String, prefixes: Vec<String> },
}

impl Source {
    /// The body to hand over for a delivered message; `None` to acknowledge it unseen (a
    /// deletion marker, an object outside the prefixes).
    fn body(&self, message: &Message) -> Option<Bytes> {
        let Source::Changes { log, prefixes, .. } = self else {
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

/// Reads a queue or a change log of the cluster through a JetStream durable consumer shared
/// by every node serving the function. JetStream redelivers a message not acked within the
/// visibility timeout, so a node dying mid-batch loses nothing.
struct NatsConsumer {
    link: Arc<Link>,
    function: String,
    since: SystemTime,
    trigger: QueueTrigger,
    source: Source,
    /// The durable consumer, once made (again after an interruption).
    consumer: Option<PullConsumer>,
    /// The batch handed out last, with the messages to settle.
    taken: Vec<(Message, Leased)>,
}

#[async_trait]
impl Consumer for NatsConsumer {
    fn handler(&self) -> &'static str {
        match self.source {
            Source::Queue => "queue",
            Source::Changes { log: ChangeLog::Objects, .. } => "storage",
            Source::Changes { log: ChangeLog::Records, .. } => "record",
        }
    }

    fn trigger(&self) -> &QueueTrigger {
        &self.trigger
    }

    async fn next(&mut self) -> Vec<Leased> {
        let consumer = match &self.consumer {
            Some(consumer) => consumer.clone(),
            None => {
                let made = match &self.source {
                    Source::Queue => self.link.consumer(&self.function, &self.trigger).await,
                    Source::Changes { log, scope, .. } => {
                        self.link.change_consumer(&self.function, *log, scope, self.since).await
                    }
                };
                match made {
                    Ok(consumer) => self.consumer.insert(consumer).clone(),
                    Err(e) => {
                        tracing::debug!(function = %self.function, queue = %self.trigger.queue, error = %e, "cluster consumer not ready");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return Vec::new();
                    }
                }
            }
        };
        let batch = consumer
            .fetch()
            .max_messages(self.trigger.max_batch_size)
            .expires(self.trigger.max_batch_timeout.max(Duration::from_millis(100)))
            .messages()
            .await;
        let Ok(mut batch) = batch else {
            // Made again on the next call.
            self.consumer = None;
            return Vec::new();
        };
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => messages.push(message),
                Err(_) => break,
            }
        }
        self.taken.clear();
        for m in messages {
            match (self.source.body(&m), m.info()) {
                (Some(body), Ok(info)) => {
                    let leased = Leased {
                        id: info.stream_sequence,
                        attempts: u32::try_from(info.delivered).unwrap_or(u32::MAX),
                        enqueued_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as u64,
                        encoding: encoding_of(&m),
                        body,
                    };
                    self.taken.push((m, leased));
                }
                _ => {
                    if let Err(e) = m.ack().await {
                        tracing::warn!(error = %e, "cannot acknowledge a skipped message");
                    }
                }
            }
        }
        self.taken.iter().map(|(_, l)| l.clone()).collect()
    }

    /// Change events stay this node's only while it says so (see `EVENT_ACK_WAIT`).
    fn keep_every(&self) -> Option<Duration> {
        matches!(self.source, Source::Changes { .. }).then_some(EVENT_PROGRESS)
    }

    async fn keep(&mut self) {
        for (m, _) in &self.taken {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }

    async fn settle(&mut self, verdicts: &[(u64, Verdict)]) {
        for (m, l) in std::mem::take(&mut self.taken) {
            let verdict = verdicts.iter().find(|(id, _)| *id == l.id).map(|(_, v)| *v);
            let kind = match verdict {
                Some(Verdict::Ack) | None => AckKind::Ack,
                Some(Verdict::Retry(delay)) => AckKind::Nak(Some(delay)),
                Some(Verdict::Dead) => {
                    if let Some(dlq) = &self.trigger.dead_letter_queue {
                        if let Err(e) = self.link.send(dlq, &[(l.encoding, &l.body)]).await {
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
