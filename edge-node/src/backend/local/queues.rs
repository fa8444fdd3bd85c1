//! Durable queues in the node's redb store. A send is committed (synced) before it returns; a
//! delivery leases messages (they turn invisible for the visibility timeout and count an
//! attempt) in one transaction, and a settlement acks, retries or dead-letters them in another.
//! A node killed between the two finds the leased messages visible again after the timeout:
//! delivery is at least once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::Notify;

use crate::backend::local::store::StoreError;

/// (queue, id) -> message: attempts u32 | visible_at ms u64 | enqueued ms u64 | encoding u8 | body.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_messages");
/// queue -> next id u64 | dead-lettered count u64.
const META: TableDefinition<&str, (u64, u64)> = TableDefinition::new("queue_meta");
/// (queue, visible_at ms, id) for every message: consumers find the visible ones without
/// reading the invisible (leased, delayed) ones.
const VISIBLE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("queue_visible");
/// Set once [`VISIBLE`] holds every message (stores made before it are indexed on open), and
/// once [`DEPTH`] counts them.
const INDEXED: TableDefinition<&str, u64> = TableDefinition::new("queue_indexed");
/// queue -> messages it holds, so its figures need not count them.
const DEPTH: TableDefinition<&str, u64> = TableDefinition::new("queue_depth");
/// (queue, id) -> lease end (ms) of each message handed to a consumer and not settled yet.
const LEASED: TableDefinition<(&str, u64), u64> = TableDefinition::new("queue_leased");

/// Adds `delta` to the depth of `queue`.
fn add_depth(
    depth: &mut redb::Table<&str, u64>,
    queue: &str,
    delta: i64,
) -> Result<(), StoreError> {
    let now = depth.get(queue)?.map_or(0, |v| v.value());
    depth.insert(queue, now.saturating_add_signed(delta))?;
    Ok(())
}

/// How a message body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON text (sent through the admin API).
    Json = 0,
    /// V8's structured-clone serialisation (sent by a function).
    V8 = 1,
}

/// A message handed out by [`Queues::lease`].
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: u64,
    /// Deliveries so far, this one included.
    pub attempts: u32,
    pub enqueued_ms: u64,
    pub encoding: Encoding,
    pub body: Bytes,
}

/// What to do with a leased message.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    Ack,
    /// Deliver again after the delay.
    Retry(Duration),
    /// Move to the dead-letter queue, or drop it when there is none.
    Dead,
}

/// A queue's state, as the admin API and metrics show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Messages in the queue, in flight included.
    pub depth: u64,
    /// Messages leased to a consumer and not yet settled.
    pub in_flight: u64,
    /// Age of the oldest message, milliseconds.
    pub oldest_age_ms: u64,
    /// Messages moved to a dead-letter queue (or dropped) after their last attempt.
    pub dead_lettered: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn encode(
    attempts: u32,
    visible_at: u64,
    enqueued: u64,
    encoding: Encoding,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + body.len());
    out.extend_from_slice(&attempts.to_le_bytes());
    out.extend_from_slice(&visible_at.to_le_bytes());
    out.extend_from_slice(&enqueued.to_le_bytes());
    out.push(encoding as u8);
    out.extend_from_slice(body);
    out
}

struct Decoded<'a> {
    attempts: u32,
    visible_at: u64,
    enqueued: u64,
    encoding: Encoding,
    body: &'a [u8],
}

fn decode(bytes: &[u8]) -> Option<Decoded<'_>> {
    if bytes.len() < 21 {
        return None;
    }
    Some(Decoded {
        attempts: u32::from_le_bytes(bytes[0..4].try_into().ok()?),
        visible_at: u64::from_le_bytes(bytes[4..12].try_into().ok()?),
        enqueued: u64::from_le_bytes(bytes[12..20].try_into().ok()?),
        encoding: if bytes[20] == 1 { Encoding::V8 } else { Encoding::Json },
        body: &bytes[21..],
    })
}

/// The node's queues.
pub struct Queues {
    db: Arc<Database>,
    /// Woken on every send, so consumers need not poll fast.
    pub sent: Notify,
}

impl Queues {
    pub fn new(db: Arc<Database>) -> Result<Queues, StoreError> {
        let tx = db.begin_write()?;
        {
            let messages = tx.open_table(MESSAGES)?;
            tx.open_table(META)?;
            let mut index = tx.open_table(VISIBLE)?;
            let mut indexed = tx.open_table(INDEXED)?;
            if indexed.get("visible")?.is_none() {
                for entry in messages.iter()? {
                    let (k, v) = entry?;
                    let (queue, id) = k.value();
                    if let Some(m) = decode(v.value()) {
                        index.insert((queue, m.visible_at, id), ())?;
                    }
                }
                indexed.insert("visible", 1)?;
            }
            let mut depth = tx.open_table(DEPTH)?;
            tx.open_table(LEASED)?;
            if indexed.get("depth")?.is_none() {
                let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
                for entry in messages.iter()? {
                    *counts.entry(entry?.0.value().0.to_string()).or_default() += 1;
                }
                for (queue, count) in counts {
                    depth.insert(queue.as_str(), count)?;
                }
                indexed.insert("depth", 1)?;
            }
        }
        tx.commit()?;
        Ok(Queues { db, sent: Notify::new() })
    }

    /// Appends messages to `queue` in one synced transaction; returns their ids.
    pub fn send(
        &self,
        queue: &str,
        messages: &[(Encoding, &[u8])],
    ) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.begin_write()?;
        let ids = Queues::append(&tx, queue, messages)?;
        tx.commit()?;
        self.sent.notify_waiters();
        Ok(ids)
    }

    /// Appends messages to `queue` within `tx` (committed with whatever else it holds).
    pub fn append(
        tx: &redb::WriteTransaction,
        queue: &str,
        messages: &[(Encoding, &[u8])],
    ) -> Result<Vec<u64>, StoreError> {
        let now = now_ms();
        let mut meta = tx.open_table(META)?;
        let mut table = tx.open_table(MESSAGES)?;
        let mut index = tx.open_table(VISIBLE)?;
        let (mut next, dead) = meta.get(queue)?.map(|v| v.value()).unwrap_or((1, 0));
        let mut ids = Vec::with_capacity(messages.len());
        for (encoding, body) in messages {
            table.insert((queue, next), encode(0, now, now, *encoding, body).as_slice())?;
            index.insert((queue, now, next), ())?;
            ids.push(next);
            next += 1;
        }
        meta.insert(queue, (next, dead))?;
        add_depth(&mut tx.open_table(DEPTH)?, queue, ids.len() as i64)?;
        Ok(ids)
    }

    /// Makes every leased message visible again. A standalone node calls this when it starts:
    /// no delivery of an earlier run can still be going, so there is no reason to wait out
    /// the visibility timeout. Returns how many were released.
    pub fn release_leases(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let tx = self.db.begin_write()?;
        let released = {
            let mut table = tx.open_table(MESSAGES)?;
            let mut index = tx.open_table(VISIBLE)?;
            let mut leased = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                if let Some(m) = decode(v.value()) {
                    if m.attempts > 0 && m.visible_at > now {
                        let (queue, id) = k.value();
                        let value = encode(m.attempts, now, m.enqueued, m.encoding, m.body);
                        leased.push((queue.to_string(), id, m.visible_at, value));
                    }
                }
            }
            let mut leases = tx.open_table(LEASED)?;
            leases.retain(|_, _| false)?;
            for (queue, id, was, value) in &leased {
                table.insert((queue.as_str(), *id), value.as_slice())?;
                index.remove((queue.as_str(), *was, *id))?;
                index.insert((queue.as_str(), now, *id), ())?;
            }
            leased.len() as u64
        };
        tx.commit()?;
        Ok(released)
    }

    /// How many messages are visible now, and when the oldest of them was sent. Only the
    /// visible ones are read.
    pub fn peek(&self, queue: &str) -> Result<(usize, Option<u64>), StoreError> {
        let now = now_ms();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(MESSAGES)?;
        let index = tx.open_table(VISIBLE)?;
        let mut count = 0;
        let mut oldest: Option<u64> = None;
        for entry in index.range((queue, 0, 0)..=(queue, now, u64::MAX))? {
            let (_, _, id) = entry?.0.value();
            if let Some(m) = table.get((queue, id))?.as_ref().and_then(|v| decode(v.value())) {
                count += 1;
                oldest = Some(oldest.map_or(m.enqueued, |o| o.min(m.enqueued)));
            }
        }
        Ok((count, oldest))
    }

    /// Leases up to `max` visible messages, oldest first: each turns invisible for
    /// `visibility` and counts one more attempt.
    pub fn lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Leased>, StoreError> {
        let now = now_ms();
        let until = now + visibility.as_millis() as u64;
        let tx = self.db.begin_write()?;
        let leased = {
            let mut table = tx.open_table(MESSAGES)?;
            let mut index = tx.open_table(VISIBLE)?;
            let mut picked = Vec::new();
            // The visible ones only, those visible longest first.
            let visible: Vec<(u64, u64)> = index
                .range((queue, 0, 0)..=(queue, now, u64::MAX))?
                .take(max)
                .map(|entry| entry.map(|(k, _)| (k.value().1, k.value().2)))
                .collect::<Result<_, _>>()?;
            for (was, id) in visible {
                let Some(value) = table.get((queue, id))?.map(|v| v.value().to_vec()) else {
                    index.remove((queue, was, id))?;
                    continue;
                };
                if let Some(m) = decode(&value) {
                    picked.push((
                        was,
                        Leased {
                            id,
                            attempts: m.attempts + 1,
                            enqueued_ms: m.enqueued,
                            encoding: m.encoding,
                            body: Bytes::copy_from_slice(m.body),
                        },
                    ));
                }
            }
            let mut leases = tx.open_table(LEASED)?;
            for (was, m) in &picked {
                let value = encode(m.attempts, until, m.enqueued_ms, m.encoding, &m.body);
                table.insert((queue, m.id), value.as_slice())?;
                leases.insert((queue, m.id), until)?;
                index.remove((queue, *was, m.id))?;
                index.insert((queue, until, m.id), ())?;
            }
            picked.into_iter().map(|(_, m)| m).collect::<Vec<_>>()
        };
        tx.commit()?;
        Ok(leased)
    }

    /// Settles leased messages in one transaction: acked ones are deleted, retried ones
    /// turn visible after their delay, dead ones move to `dead_letter` (or are dropped).
    pub fn settle(
        &self,
        queue: &str,
        verdicts: &[(u64, Verdict)],
        dead_letter: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(MESSAGES)?;
            let mut meta = tx.open_table(META)?;
            let mut index = tx.open_table(VISIBLE)?;
            let mut depth = tx.open_table(DEPTH)?;
            let mut leases = tx.open_table(LEASED)?;
            let mut dead_count = 0;
            for (id, verdict) in verdicts {
                let Some(current) = table.get((queue, *id))?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let Some(m) = decode(&current) else { continue };
                index.remove((queue, m.visible_at, *id))?;
                leases.remove((queue, *id))?;
                match verdict {
                    Verdict::Ack => {
                        table.remove((queue, *id))?;
                        add_depth(&mut depth, queue, -1)?;
                    }
                    Verdict::Retry(delay) => {
                        let visible = now + delay.as_millis() as u64;
                        let value = encode(m.attempts, visible, m.enqueued, m.encoding, m.body);
                        table.insert((queue, *id), value.as_slice())?;
                        index.insert((queue, visible, *id), ())?;
                    }
                    Verdict::Dead => {
                        table.remove((queue, *id))?;
                        add_depth(&mut depth, queue, -1)?;
                        dead_count += 1;
                        if let Some(dlq) = dead_letter {
                            add_depth(&mut depth, dlq, 1)?;
                            let (next, dead) = meta.get(dlq)?.map(|v| v.value()).unwrap_or((1, 0));
                            let value = encode(0, now, m.enqueued, m.encoding, m.body);
                            table.insert((dlq, next), value.as_slice())?;
                            index.insert((dlq, now, next), ())?;
                            meta.insert(dlq, (next + 1, dead))?;
                        }
                    }
                }
            }
            if dead_count > 0 {
                let (next, dead) = meta.get(queue)?.map(|v| v.value()).unwrap_or((1, 0));
                meta.insert(queue, (next, dead + dead_count))?;
            }
        }
        tx.commit()?;
        if dead_letter.is_some() {
            self.sent.notify_waiters();
        }
        Ok(())
    }

    /// A queue's figures, without reading its messages: the depth is counted as they come
    /// and go, the oldest is the first by id, and only the leased ones are looked at.
    pub fn stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        let now = now_ms();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(MESSAGES)?;
        let meta = tx.open_table(META)?;
        let oldest = table.range((queue, 0)..=(queue, u64::MAX))?.next().transpose()?;
        let oldest = oldest.and_then(|(_, v)| decode(v.value()).map(|m| m.enqueued));
        let mut in_flight = 0;
        for entry in tx.open_table(LEASED)?.range((queue, 0)..=(queue, u64::MAX))? {
            if entry?.1.value() > now {
                in_flight += 1;
            }
        }
        Ok(QueueStats {
            depth: tx.open_table(DEPTH)?.get(queue)?.map_or(0, |v| v.value()),
            in_flight,
            oldest_age_ms: oldest.map_or(0, |t| now.saturating_sub(t)),
            dead_lettered: meta.get(queue)?.map_or(0, |v| v.value().1),
        })
    }

    /// Every queue that has ever held a message.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let mut out = Vec::new();
        for entry in meta.iter()? {
            out.push(entry?.0.value().to_string());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_settles_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("q.redb")).unwrap());
        let q = Queues::new(db).unwrap();
        let ids = q
            .send("q", &[(Encoding::Json, b"1"), (Encoding::V8, b"2"), (Encoding::Json, b"3")])
            .unwrap();
        assert_eq!(ids, [1, 2, 3]);
        let first = q.lease("q", 2, Duration::from_secs(60)).unwrap();
        assert_eq!(first.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(), [(1, 1), (2, 1)]);
        assert_eq!(first[1].encoding, Encoding::V8);
        // Leased messages are invisible; the third is not.
        let second = q.lease("q", 10, Duration::from_secs(60)).unwrap();
        assert_eq!(second.iter().map(|m| m.id).collect::<Vec<_>>(), [3]);
        assert_eq!(q.stats("q").unwrap().in_flight, 3);
        q.settle(
            "q",
            &[(1, Verdict::Ack), (2, Verdict::Retry(Duration::ZERO)), (3, Verdict::Dead)],
            Some("dlq"),
        )
        .unwrap();
        let again = q.lease("q", 10, Duration::from_millis(1)).unwrap();
        assert_eq!(again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(), [(2, 2)]);
        // The lease ran out: the message is visible again, a third attempt.
        std::thread::sleep(Duration::from_millis(5));
        let expired = q.lease("q", 10, Duration::from_secs(60)).unwrap();
        assert_eq!(expired.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(), [(2, 3)]);
        let stats = q.stats("q").unwrap();
        assert_eq!((stats.depth, stats.dead_lettered), (1, 1));
        let dead = q.lease("dlq", 10, Duration::from_secs(1)).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(&dead[0].body[..], b"3");
        assert_eq!(dead[0].attempts, 1, "a dead-lettered message starts over");
    }

    /// An index entry: queue, visible time, id.
    type Entry = (String, u64, u64);

    /// The index's entries, and what they should be: one per message, at its visible time.
    fn index_and_messages(q: &Queues) -> (Vec<Entry>, Vec<Entry>) {
        let tx = q.db.begin_read().unwrap();
        let index: Vec<Entry> = tx
            .open_table(VISIBLE)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let k = e.unwrap().0;
                let (queue, at, id) = k.value();
                (queue.to_string(), at, id)
            })
            .collect();
        let mut expected: Vec<Entry> = tx
            .open_table(MESSAGES)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                let (queue, id) = k.value();
                (queue.to_string(), decode(v.value()).unwrap().visible_at, id)
            })
            .collect();
        expected.sort();
        (index, expected)
    }

    #[test]
    fn a_delayed_backlog_is_not_read_to_find_the_visible_message() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("q.redb")).unwrap());
        let q = Queues::new(db.clone()).unwrap();
        let backlog: Vec<(Encoding, &[u8])> =
            (0..5000).map(|_| (Encoding::Json, &b"x"[..])).collect();
        q.send("q", &backlog).unwrap();
        assert_eq!(q.lease("q", 5000, Duration::from_secs(3600)).unwrap().len(), 5000);
        let fresh = q.send("q", &[(Encoding::Json, b"fresh")]).unwrap();
        assert_eq!(q.peek("q").unwrap().0, 1, "only the fresh one is visible");
        let leased = q.lease("q", 10, Duration::from_secs(60)).unwrap();
        assert_eq!(leased.iter().map(|m| m.id).collect::<Vec<_>>(), fresh);
        let stats = q.stats("q").unwrap();
        assert_eq!((stats.depth, stats.in_flight), (5001, 5001));
        // Only the visible part of the index is read: the backlog sits after `now`.
        let tx = db.begin_read().unwrap();
        let index = tx.open_table(VISIBLE).unwrap();
        let visible = index.range(("q", 0, 0)..=("q", now_ms(), u64::MAX)).unwrap().count();
        assert_eq!(visible, 0);
        let (index, expected) = index_and_messages(&q);
        assert_eq!(index, expected);
    }

    #[test]
    fn a_store_made_before_the_index_is_indexed_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("q.redb")).unwrap());
        let q = Queues::new(db.clone()).unwrap();
        q.send("q", &[(Encoding::Json, b"1"), (Encoding::Json, b"2")]).unwrap();
        // As a store written before the index existed: no index, no mark.
        let tx = db.begin_write().unwrap();
        tx.delete_table(VISIBLE).unwrap();
        tx.delete_table(INDEXED).unwrap();
        tx.delete_table(DEPTH).unwrap();
        tx.commit().unwrap();
        let q = Queues::new(db).unwrap();
        let (index, expected) = index_and_messages(&q);
        assert_eq!((index.len(), &index), (2, &expected));
        assert_eq!(q.stats("q").unwrap().depth, 2);
        assert_eq!(q.lease("q", 10, Duration::from_secs(60)).unwrap().len(), 2);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// What a test does to the queues.
        #[derive(Debug, Clone)]
        enum Op {
            Send(u8),
            Lease(u8, bool),
            Settle(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (1..4u8).prop_map(Op::Send),
                (1..5u8, any::<bool>()).prop_map(|(n, long)| Op::Lease(n, long)),
                any::<u8>().prop_map(Op::Settle),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever is sent, leased, acked, retried or dead-lettered, the index holds
            /// exactly one entry per message, at its visible time.
            #[test]
            fn the_index_follows_every_message(ops in proptest::collection::vec(op(), 1..30)) {
                let dir = tempfile::tempdir().unwrap();
                let db = Arc::new(Database::create(dir.path().join("q.redb")).unwrap());
                let q = Queues::new(db).unwrap();
                let mut leased: Vec<u64> = Vec::new();
                for op in ops {
                    match op {
                        Op::Send(n) => {
                            let batch: Vec<(Encoding, &[u8])> = (0..n).map(|_| (Encoding::Json, &b"m"[..])).collect();
                            q.send("q", &batch).unwrap();
                        }
                        Op::Lease(n, long) => {
                            let visibility = if long { Duration::from_secs(60) } else { Duration::ZERO };
                            leased.extend(q.lease("q", n as usize, visibility).unwrap().iter().map(|m| m.id));
                        }
                        Op::Settle(pick) => {
                            let verdicts: Vec<(u64, Verdict)> = leased.drain(..).enumerate().map(|(i, id)| {
                                let verdict = match (pick as usize + i) % 3 {
                                    0 => Verdict::Ack,
                                    1 => Verdict::Retry(Duration::from_millis(u64::from(pick))),
                                    _ => Verdict::Dead,
                                };
                                (id, verdict)
                            }).collect();
                            q.settle("q", &verdicts, Some("dlq")).unwrap();
                        }
                    }
                    let (index, expected) = index_and_messages(&q);
                    // The counted figures match the messages.
                    for queue in ["q", "dlq"] {
                        let held = expected.iter().filter(|e| e.0 == queue).count() as u64;
                        prop_assert_eq!(q.stats(queue).unwrap().depth, held);
                    }
                    let stats = q.stats("q").unwrap();
                    let now = now_ms();
                    let invisible = expected.iter().filter(|e| e.0 == "q" && e.1 > now).count() as u64;
                    prop_assert!(stats.in_flight <= invisible, "{} in flight, {} invisible", stats.in_flight, invisible);
                    prop_assert_eq!(index, expected);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// A stored message of any bytes: decoded or refused, never a panic; what decodes
            /// keeps its body.
            #[test]
            fn any_stored_message_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                if let Some(decoded) = decode(&bytes) {
                    prop_assert_eq!(decoded.body, &bytes[21..]);
                }
            }
        }
    }
}
