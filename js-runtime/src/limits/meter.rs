//! CPU and wall time per invocation: what each live invocation has used, which are over their
//! limits, and the budget of work done outside any invocation.
//!
//! The isolate's thread CPU clock is read only at the two ends of an entry into the isolate
//! (one system call each). Inside an entry, the wall clock (cheap) is read at each mark: an
//! invocation beginning, finishing, or an op made for it (its response, a chunk of its
//! streamed body, a read of its request body). The wall time up to a mark is that
//! invocation's part of the entry, and the entry's CPU time is charged to the invocations that
//! took part in it in proportion to their parts (what follows the last mark is shared
//! equally among those of them still live). An entry in which no invocation took part (a
//! promise settling, a collection V8 runs in a task of its own) is shared equally by the
//! invocations live during it, except the time V8 spent collecting garbage in it: that is
//! shared by the invocations that used CPU since the last such split, live or finished, in
//! proportion to what they used (the finished ones' part is work outside any invocation).
//! So an invocation that stays live while it waits (a streamed response, `waitUntil` work)
//! is not charged the CPU of every request the isolate serves meanwhile, nor the garbage
//! they leave, and the CPU the isolate used is charged, in all, to its invocations and its
//! background budget: work that no mark names (a computation between two `await`s) may be
//! charged to another invocation of the same function, never to no one. The wall clock is a
//! plain `fn`, so tests move it by hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The time accounts of one worker's invocations, by invocation id.
pub(crate) struct Meter {
    cpu_time: Duration,
    wall_time: Duration,
    accounts: HashMap<u32, Account>,
    /// CPU time that work outside any invocation (a timer, a continuation after the response)
    /// may still use: a whole `cpu_time` again each time an invocation begins, spent by the
    /// entries into the isolate during which no invocation is live.
    background_left: Duration,
    /// Whether the current entry began with no invocation live and none has begun in it.
    entry_background: bool,
    /// When the current entry into the isolate began (wall clock).
    entry_started: Option<Instant>,
    /// The CPU budget the current entry was armed with ([`Meter::cpu_budget`] as it began).
    entry_budget: Duration,
    /// The last mark of the current entry (its start before the first).
    last_mark: Option<Instant>,
    /// The invocation of the last mark, if any in this entry.
    last_marked: Option<u32>,
    /// Whether the last mark was a begin: an invocation begun as an entry ends, or between
    /// entries (its request taken by an async op), runs its code in the next one, which then
    /// starts with it.
    last_was_begin: bool,
    /// That invocation, carried to the next entry.
    carried: Option<u32>,
    /// Whether an invocation took part in the current entry.
    took_part: bool,
    /// Invocations finished during the current entry: their CPU time before it, their part
    /// of it (wall time), and their recent CPU time (see [`Account::recent`]).
    finishing: Vec<(u32, Duration, Duration, Duration)>,
    /// The recent CPU time of the invocations that ended since the last collection was
    /// shared out: their garbage is in the next one too.
    ended_recent: Duration,
    /// The wall clock: `Instant::now`, or a clock a test moves by hand.
    clock: fn() -> Instant,
    /// Where an invocation begun inside an entry stores how much later than armed the
    /// entry's CPU deadline now is (ns; see [`Meter::begin`]), for the watchdog.
    extension: Option<Arc<AtomicU64>>,
}

struct Account {
    cpu_used: Duration,
    /// CPU time charged since the last collection was shared out, collections aside: how
    /// much of the garbage it is taken to have left.
    recent: Duration,
    deadline: Instant,
    /// Its part of the current entry (wall time), and whether it took part at all.
    part: Duration,
    marked: bool,
}

/// How an entry's CPU time is split among the invocations live in it.
struct Split {
    used: Duration,
    /// Of `used`, in an entry no invocation took part in, what V8's collections took: shared
    /// by recent CPU time, out of `recent` in all (when that is zero, equally, as the rest).
    collecting: Duration,
    recent: Duration,
    /// Whether an invocation took part in the entry; if none did, the live ones share it
    /// equally.
    took_part: bool,
    /// How many invocations are live.
    live: u32,
    /// Each part's share of what followed the last mark.
    tail: Duration,
    /// The entry's wall time (ns, at least 1).
    entry: u128,
}

impl Split {
    /// `used` in proportion to `part` of the entry's wall time.
    fn share(&self, part: Duration) -> Duration {
        let share = self.used.as_nanos() * part.as_nanos().min(self.entry) / self.entry;
        Duration::from_nanos(u64::try_from(share).unwrap_or(u64::MAX))
    }

    /// What `account` is charged, clearing its part for the next entry, and its recent CPU
    /// time when a collection is shared out.
    fn of(&self, account: &mut Account) -> Duration {
        if !self.took_part {
            let live = self.live.max(1);
            if self.recent.is_zero() {
                let share = self.used / live;
                account.recent += share;
                return share;
            }
            let rest = (self.used - self.collecting) / live;
            let garbage =
                self.collecting.as_nanos() * account.recent.as_nanos() / self.recent.as_nanos();
            account.recent = rest;
            return rest + Duration::from_nanos(u64::try_from(garbage).unwrap_or(u64::MAX));
        }
        let part = std::mem::take(&mut account.part);
        if !std::mem::take(&mut account.marked) {
            return Duration::ZERO;
        }
        let share = self.share(part + self.tail);
        account.recent += share;
        share
    }
}

/// What the end of an entry decided.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Charged {
    /// Live invocations whose CPU time is now over `cpu_time`, with what they used; they are
    /// no longer counted.
    pub over: Vec<(u32, Duration)>,
    /// Invocations that finished during the entry, with their whole CPU time.
    pub finished: Vec<(u32, Duration)>,
}

impl Meter {
    pub fn new(cpu_time: Duration, wall_time: Duration) -> Meter {
        Meter::with_clock(cpu_time, wall_time, Instant::now)
    }

    pub fn with_clock(cpu_time: Duration, wall_time: Duration, clock: fn() -> Instant) -> Meter {
        Meter {
            cpu_time,
            wall_time,
            accounts: HashMap::new(),
            ended_recent: Duration::ZERO,
            background_left: cpu_time,
            entry_background: false,
            entry_started: None,
            entry_budget: Duration::ZERO,
            last_mark: None,
            last_marked: None,
            last_was_begin: false,
            carried: None,
            took_part: false,
            finishing: Vec::new(),
            clock,
            extension: None,
        }
    }

    /// Invocations begun inside an entry move its CPU deadline through `extension` (see
    /// `Guard::extension`).
    pub fn extend_entries_with(&mut self, extension: Arc<AtomicU64>) {
        self.extension = Some(extension);
    }

    /// Invocation `id` begins: its wall clock runs from the start of the current entry (at
    /// most that much earlier than now), and work after it may use a CPU budget of its own
    /// again; the entry it begins in is the invocation's, not background work. Beginning is
    /// a mark, but none of its code has run yet: the time before it goes to the invocation
    /// marked last in the entry (an async handler's work up to its first `await`, say), if
    /// that one is still live.
    pub fn begin(&mut self, id: u32) {
        let start = self.entry_started.unwrap_or_else(self.clock);
        self.accounts.insert(
            id,
            Account {
                cpu_used: Duration::ZERO,
                recent: Duration::ZERO,
                deadline: start + self.wall_time,
                part: Duration::ZERO,
                marked: false,
            },
        );
        self.background_left = self.cpu_time;
        self.entry_background = false;
        if self.last_mark.is_none() {
            // Begun between entries (an async op took its request): its code runs first in
            // the next entry.
            self.carried = Some(id);
            return;
        }
        if let Some(previous) = self.last_marked.filter(|p| self.accounts.contains_key(p)) {
            self.mark_for(previous);
        }
        self.mark(id);
        self.last_was_begin = true;
        if let (Some(extension), Some(started), Some(now)) =
            (&self.extension, self.entry_started, self.last_mark)
        {
            // What ran so far in the entry took at most its wall time, and each live
            // invocation's part of it is counted against its budget: from here the entry may
            // use what the most spent of them has left.
            let left = self
                .accounts
                .values()
                .map(|a| self.cpu_time.saturating_sub(a.cpu_used + a.part))
                .min()
                .unwrap_or(self.cpu_time);
            let deadline = now.saturating_duration_since(started) + left;
            let extra = deadline.saturating_sub(self.entry_budget).as_nanos();
            extension.store(u64::try_from(extra).unwrap_or(u64::MAX), Ordering::Release);
        }
    }

    /// Marks that invocation `id` took part in the current entry: the wall time since the
    /// last mark is its. Outside an entry, or for an invocation that has ended, nothing (the
    /// time then goes to the next mark).
    pub fn mark(&mut self, id: u32) {
        if self.mark_for(id) {
            self.last_marked = Some(id);
            self.last_was_begin = false;
        }
    }

    /// Gives the wall time since the last mark to invocation `id`; whether it did (inside an
    /// entry, for a live invocation).
    fn mark_for(&mut self, id: u32) -> bool {
        let Some(last) = self.last_mark else { return false };
        let Some(account) = self.accounts.get_mut(&id) else { return false };
        let now = (self.clock)();
        account.part += now.saturating_duration_since(last);
        account.marked = true;
        self.took_part = true;
        self.last_mark = Some(now);
        true
    }

    /// The CPU time the next entry may use: what the most spent live invocation has left, or
    /// a whole `cpu_time` when none is live (background work is held to the same per entry).
    pub fn cpu_budget(&self) -> Duration {
        self.accounts
            .values()
            .map(|a| self.cpu_time.saturating_sub(a.cpu_used))
            .min()
            .unwrap_or(self.cpu_time)
    }

    /// An entry into the isolate begins; the CPU time it may use ([`Meter::cpu_budget`]).
    pub fn enter(&mut self) -> Duration {
        let now = (self.clock)();
        self.entry_started = Some(now);
        self.entry_budget = self.cpu_budget();
        self.last_mark = Some(now);
        self.last_marked = self.carried.take();
        self.last_was_begin = false;
        self.took_part = false;
        self.entry_background = self.accounts.is_empty();
        self.entry_budget
    }

    /// The entry ends having used `used` of CPU time, `collecting` of its wall time in V8's
    /// collections: charged to the invocations that took part in it by their parts, or, when
    /// none did, shared by those live during it (see the module's comment); those now over
    /// `cpu_time` are returned and no longer counted.
    pub fn charge(&mut self, used: Duration, collecting: Duration) -> Charged {
        let (split, finished) = self.end_entry(used, collecting);
        let limit = self.cpu_time;
        let mut over = Vec::new();
        let mut ended_recent = Duration::ZERO;
        self.accounts.retain(|&id, account| {
            let share = split.of(account);
            account.cpu_used += share;
            if account.cpu_used > limit {
                over.push((id, account.cpu_used));
                ended_recent += account.recent;
                return false;
            }
            true
        });
        self.ended_recent += ended_recent;
        Charged { over, finished }
    }

    /// The entry ends having used `used`, and the isolate is stopping: charged like
    /// [`Meter::charge`], but none is ended for it (they end with the reason it stops).
    pub fn charge_stopping(
        &mut self,
        used: Duration,
        collecting: Duration,
    ) -> Vec<(u32, Duration)> {
        let (split, finished) = self.end_entry(used, collecting);
        for account in self.accounts.values_mut() {
            let share = split.of(account);
            account.cpu_used += share;
        }
        finished
    }

    /// Ends the entry: how its CPU time is split among the live invocations, and the whole
    /// CPU time of those finished in it.
    fn end_entry(&mut self, used: Duration, collecting: Duration) -> (Split, Vec<(u32, Duration)>) {
        if std::mem::take(&mut self.entry_background) {
            self.background_left = self.background_left.saturating_sub(used);
        }
        let last = self.last_mark.take();
        let last_marked = self.last_marked.take();
        self.carried = last_marked.filter(|_| std::mem::take(&mut self.last_was_begin));
        let took_part = std::mem::take(&mut self.took_part);
        let live = u32::try_from(self.accounts.len()).unwrap_or(u32::MAX);
        let Some(started) = self.entry_started.take() else {
            let split = Split {
                used,
                collecting: Duration::ZERO,
                recent: Duration::ZERO,
                took_part: false,
                live,
                tail: Duration::ZERO,
                entry: 1,
            };
            return (split, Vec::new());
        };
        let now = (self.clock)();
        let entry = now.saturating_duration_since(started).as_nanos().max(1);
        // What follows the last mark is shared by the live invocations that took part.
        let marked = self.accounts.values().filter(|a| a.marked).count();
        let tail = last.map_or(Duration::ZERO, |last| now.saturating_duration_since(last))
            / u32::try_from(marked.max(1)).unwrap_or(u32::MAX);
        let mut split = Split {
            used,
            collecting: Duration::ZERO,
            recent: Duration::ZERO,
            took_part,
            live,
            tail,
            entry,
        };
        let finished = self
            .finishing
            .drain(..)
            .map(|(id, before, part, recent)| {
                let share = split.share(part);
                self.ended_recent += recent + share;
                (id, before + share)
            })
            .collect();
        // Collections in an entry no invocation took part in: shared by recent CPU time; the
        // part of the invocations that ended since is background work. With none live,
        // background work paid for the whole entry, the collection with it.
        if !took_part && !collecting.is_zero() {
            let ended_recent = std::mem::take(&mut self.ended_recent);
            let recent = self.accounts.values().map(|a| a.recent).sum::<Duration>() + ended_recent;
            if live > 0 && !recent.is_zero() {
                let collecting =
                    split.share(Duration::from_nanos(collecting.as_nanos().min(entry) as u64));
                let ended = collecting.as_nanos() * ended_recent.as_nanos() / recent.as_nanos();
                self.background_left =
                    self.background_left.saturating_sub(Duration::from_nanos(ended as u64));
                split.collecting = collecting;
                split.recent = recent;
            }
        }
        (split, finished)
    }

    /// Charges CPU time used on another thread for invocation `id` (or, with `None` or an
    /// invocation that has ended, for work outside any invocation). Returns what `id` used in
    /// all if that is now over `cpu_time` (it is no longer counted).
    pub fn charge_off_thread(&mut self, id: Option<u32>, used: Duration) -> Option<Duration> {
        let Some(account) = id.and_then(|id| self.accounts.get_mut(&id)) else {
            self.background_left = self.background_left.saturating_sub(used);
            return None;
        };
        account.cpu_used = account.cpu_used.saturating_add(used);
        let total = account.cpu_used;
        if total > self.cpu_time {
            self.accounts.remove(&id?);
            return Some(total);
        }
        None
    }

    /// Invocation `id` is done (a mark). Outside an entry, its CPU time is returned now;
    /// inside one, `None`, and [`Charged::finished`] has it, with its part of the entry, when
    /// the entry ends.
    pub fn finish(&mut self, id: u32) -> Option<Duration> {
        self.mark(id);
        let account = self.accounts.remove(&id)?;
        match self.entry_started {
            Some(_) => {
                self.finishing.push((id, account.cpu_used, account.part, account.recent));
                None
            }
            None => {
                self.ended_recent += account.recent;
                Some(account.cpu_used)
            }
        }
    }

    /// Stops counting invocation `id` (it ends for another reason); what it used.
    pub fn remove(&mut self, id: u32) -> Duration {
        let Some(account) = self.accounts.remove(&id) else { return Duration::ZERO };
        self.ended_recent += account.recent;
        account.cpu_used
    }

    /// The invocations past their wall-clock deadline (no longer counted), with what they
    /// used, and the earliest deadline still ahead.
    pub fn expire(&mut self) -> (Vec<(u32, Duration)>, Option<Instant>) {
        let now = (self.clock)();
        let mut over = Vec::new();
        self.accounts.retain(|&id, account| {
            if account.deadline <= now {
                over.push((id, account.cpu_used));
                return false;
            }
            true
        });
        (over, self.accounts.values().map(|a| a.deadline).min())
    }

    /// Whether work outside any invocation has used up its budget while none is live (those
    /// live are not ended for it: the isolate stops once they are done, unless one of them
    /// gives the budget back).
    pub fn background_spent(&self) -> bool {
        self.background_left.is_zero() && self.accounts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wall clock that moves only when the test says, one per test thread.
    mod test_clock {
        use std::cell::Cell;
        use std::time::{Duration, Instant};

        thread_local! {
            static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
        }

        pub fn now() -> Instant {
            NOW.with(|now| {
                let at = now.get().unwrap_or_else(Instant::now);
                now.set(Some(at));
                at
            })
        }

        pub fn advance(by: Duration) {
            let next = now() + by;
            NOW.with(|now| now.set(Some(next)));
        }
    }

    const MS: Duration = Duration::from_millis(1);

    fn meter(cpu_time: Duration, wall_time: Duration) -> Meter {
        Meter::with_clock(cpu_time, wall_time, test_clock::now)
    }

    #[test]
    fn an_entry_is_charged_to_the_invocations_that_took_part_by_their_parts() {
        let mut m = meter(1000 * MS, 30_000 * MS);
        m.begin(0);
        m.begin(1);
        m.begin(2);
        m.enter();
        test_clock::advance(40 * MS);
        assert_eq!(m.finish(0), None, "known when the entry ends, not before");
        test_clock::advance(20 * MS);
        m.mark(1);
        test_clock::advance(40 * MS);
        let charged = m.charge(100 * MS, Duration::ZERO);
        // 0 finished 40 ms in, the first mark: the first 40% of the entry's CPU time.
        assert_eq!(charged, Charged { over: vec![], finished: vec![(0, 40 * MS)] });
        // 1 had the 20 ms up to its mark, and what followed the last mark.
        assert_eq!(m.remove(1), 60 * MS);
        // 2 did not take part: nothing.
        assert_eq!(m.remove(2), Duration::ZERO);
        // Outside an entry, a finished invocation's time is known at once.
        m.begin(3);
        assert_eq!(m.finish(3), Some(Duration::ZERO));
    }

    /// An invocation begun inside an entry moves the entry's CPU deadline: what ran before
    /// it took at most its wall time, and from there the entry may use what the most spent
    /// live invocation has left, its part of the entry so far counted. One begun between
    /// entries, or any other mark, does not move it.
    #[test]
    fn a_begin_inside_an_entry_moves_its_deadline() {
        let mut m = meter(50 * MS, 30_000 * MS);
        let extension = Arc::new(AtomicU64::new(0));
        m.extend_entries_with(extension.clone());
        let extra = || Duration::from_nanos(extension.load(Ordering::Relaxed));
        m.begin(0);
        assert_eq!(extra(), Duration::ZERO, "begun between entries");
        m.enter(); // armed with 50 ms
        test_clock::advance(4 * MS);
        m.finish(0);
        assert_eq!(extra(), Duration::ZERO, "a finish is no beginning");
        m.begin(1);
        // 4 ms in, and 1 has all of its 50 left: 54 ms from the entry's start.
        assert_eq!(extra(), 4 * MS);
        test_clock::advance(3 * MS);
        m.mark(1);
        assert_eq!(extra(), 4 * MS, "a mark is no beginning");
        m.begin(2);
        // 7 ms in, and 1, live, has 47 left: still 54 ms.
        assert_eq!(extra(), 4 * MS);
        m.finish(1);
        m.finish(2);
        m.charge(7 * MS, Duration::ZERO);
        // An entry armed with what a long-lived invocation has left (20 ms): a request begun
        // in it does not give that one more.
        m.begin(3);
        m.enter();
        test_clock::advance(30 * MS);
        m.mark(3);
        m.charge(30 * MS, Duration::ZERO);
        m.enter(); // armed with 20 ms
        test_clock::advance(2 * MS);
        m.begin(4);
        assert_eq!(extra(), 2 * MS, "2 ms in, 3 still has 20 left");
        test_clock::advance(5 * MS);
        m.mark(3);
        m.begin(5);
        assert_eq!(extra(), 2 * MS, "7 ms in, 3 has 15 left: the same deadline");
    }

    /// With no invocation live, background work pays for an entry once, the collection in it
    /// included: not once for the entry and again as the ended invocations' share of the
    /// collection.
    #[test]
    fn a_collection_with_nobody_live_is_charged_to_background_work_once() {
        let mut m = meter(50 * MS, 30_000 * MS);
        m.begin(0);
        m.enter();
        test_clock::advance(MS);
        m.finish(0);
        m.charge(MS, Duration::ZERO);
        m.enter();
        test_clock::advance(4 * MS);
        m.charge(4 * MS, 4 * MS);
        assert_eq!(m.background_left, 46 * MS, "charged once");
    }

    /// A collection in an entry no invocation took part in is shared by the CPU time used
    /// since the last one: a stream that used little is charged little of it, though it is
    /// the only invocation live, and the part of the requests already gone is background
    /// work. What else the entry used is shared equally, as before.
    #[test]
    fn a_collection_no_invocation_took_part_in_is_shared_by_recent_cpu_time() {
        let mut m = meter(50 * MS, 30_000 * MS);
        // The stream writes a chunk (1 ms), while 9 requests come and go (3 ms each).
        m.begin(0);
        m.enter();
        test_clock::advance(MS);
        m.mark(0);
        for id in 1..10 {
            m.begin(id);
            test_clock::advance(3 * MS);
            m.finish(id);
        }
        m.charge(28 * MS, Duration::ZERO);
        assert_eq!(m.accounts[&0].cpu_used, MS);
        let background = m.background_left;
        // A collection of 10 ms in an entry of its own: the stream used 1 ms of the 28.
        m.enter();
        test_clock::advance(10 * MS);
        m.charge(10 * MS, 10 * MS);
        let stream = m.accounts[&0].cpu_used - MS;
        assert_eq!(stream, Duration::from_nanos(10_000_000 / 28), "its part of the garbage");
        let to_background = background - m.background_left;
        assert!((10 * MS - stream).abs_diff(to_background).as_nanos() <= 1, "the rest, background");
        // The next collection counts from this one: the stream alone used CPU since.
        m.enter();
        test_clock::advance(MS);
        m.mark(0);
        m.charge(MS, Duration::ZERO);
        m.enter();
        test_clock::advance(2 * MS);
        m.charge(2 * MS, 2 * MS);
        assert_eq!(m.accounts[&0].cpu_used, 2 * MS + stream + 2 * MS);
        // Half an entry collecting, half something else (a promise settling): the other
        // half is shared equally by the live, as any entry nobody took part in; the
        // collection goes to the one that used CPU since the last (1 ms, its own mark).
        m.begin(10);
        m.enter();
        test_clock::advance(MS);
        m.mark(10);
        m.charge(MS, Duration::ZERO);
        let before = m.accounts[&0].cpu_used;
        m.enter();
        test_clock::advance(4 * MS);
        m.charge(4 * MS, 2 * MS);
        assert_eq!(m.accounts[&0].cpu_used - before, MS, "half of the 2 ms not collecting");
        assert_eq!(
            m.accounts[&10].cpu_used,
            MS + MS + 2 * MS,
            "its 1 ms, half the rest, and the collection"
        );
    }

    #[test]
    fn an_entry_no_invocation_took_part_in_is_shared_by_the_live_ones() {
        let mut m = meter(50 * MS, 30_000 * MS);
        m.begin(0);
        m.begin(1);
        m.enter();
        test_clock::advance(10 * MS);
        m.charge(10 * MS, Duration::ZERO);
        assert_eq!(m.remove(0), 5 * MS);
        assert_eq!(m.remove(1), 5 * MS);
    }

    /// An async handler's work up to its first `await` is its own, not that of the request
    /// that begins after it in the same entry.
    #[test]
    fn the_time_before_a_begin_goes_to_the_invocation_marked_last() {
        let mut m = meter(50 * MS, 30_000 * MS);
        m.enter();
        m.begin(0);
        test_clock::advance(30 * MS);
        m.begin(1);
        test_clock::advance(MS);
        m.finish(1);
        let charged = m.charge(31 * MS, Duration::ZERO);
        assert_eq!(charged.finished, vec![(1, MS)]);
        assert_eq!(m.remove(0), 30 * MS);
        // Begun as an entry ends (an async op took its request), it runs first in the next.
        m.enter();
        test_clock::advance(MS);
        m.begin(2);
        m.charge(MS, Duration::ZERO);
        m.enter();
        test_clock::advance(30 * MS);
        m.begin(3);
        test_clock::advance(MS);
        m.finish(3);
        let charged = m.charge(31 * MS, Duration::ZERO);
        assert_eq!(charged.finished, vec![(3, MS)]);
        assert_eq!(m.remove(2), 31 * MS, "the entry it was begun in, and the next up to 3");
        // Begun between entries, likewise.
        m.begin(4);
        m.enter();
        test_clock::advance(30 * MS);
        m.begin(5);
        test_clock::advance(MS);
        m.finish(5);
        m.charge(31 * MS, Duration::ZERO);
        assert_eq!(m.remove(4), 30 * MS);
    }

    /// An invocation whose response streams while the isolate serves other requests is
    /// charged only the entries it writes in, by its part of them.
    #[test]
    fn a_streaming_invocation_is_not_charged_the_requests_served_while_it_waits() {
        let mut m = meter(50 * MS, 30_000 * MS);
        m.begin(0);
        for id in 1..=1000 {
            m.enter();
            m.begin(id);
            test_clock::advance(MS);
            m.finish(id);
            let charged = m.charge(MS, Duration::ZERO);
            assert_eq!(charged.finished, vec![(id, MS)]);
            assert!(charged.over.is_empty());
        }
        // A chunk of its body: 0.2 ms of its own in an entry with one request of 1 ms.
        m.enter();
        m.begin(1001);
        test_clock::advance(MS);
        m.finish(1001);
        test_clock::advance(MS / 5);
        m.mark(0);
        let charged = m.charge(MS + MS / 5, Duration::ZERO);
        assert_eq!(charged.finished, vec![(1001, MS)]);
        assert_eq!(m.remove(0), MS / 5);
    }

    #[test]
    fn entries_add_up_past_cpu_time_and_the_budget_is_what_the_most_spent_has_left() {
        let mut m = meter(50 * MS, 30_000 * MS);
        m.begin(0);
        m.enter();
        m.charge(30 * MS, Duration::ZERO);
        m.begin(1);
        assert_eq!(m.cpu_budget(), 20 * MS, "the most spent invocation bounds the entry");
        m.enter();
        m.mark(0);
        test_clock::advance(25 * MS);
        let charged = m.charge(25 * MS, Duration::ZERO);
        assert_eq!(charged.over, vec![(0, 55 * MS)]);
        assert_eq!(m.cpu_budget(), 50 * MS, "1 took no part in the entry");
        // CPU time spent on another thread counts too.
        assert_eq!(m.charge_off_thread(Some(1), 30 * MS), None);
        assert_eq!(m.cpu_budget(), 20 * MS);
        assert_eq!(m.charge_off_thread(Some(1), 30 * MS), Some(60 * MS));
        assert_eq!(m.cpu_budget(), 50 * MS, "none live: a whole cpu_time");
    }

    #[test]
    fn deadlines_run_from_the_entry_an_invocation_began_in() {
        let mut m = meter(50 * MS, 1000 * MS);
        m.enter();
        test_clock::advance(300 * MS);
        m.begin(0);
        m.charge(MS, Duration::ZERO);
        m.begin(1);
        let (over, next) = m.expire();
        assert!(over.is_empty());
        assert_eq!(next, Some(test_clock::now() + 700 * MS), "began 300 ms into an entry");
        test_clock::advance(700 * MS);
        let (over, next) = m.expire();
        assert_eq!(over, vec![(0, MS)]);
        assert_eq!(next, Some(test_clock::now() + 300 * MS));
    }

    #[test]
    fn background_work_has_one_cpu_time_per_invocation() {
        let mut m = meter(50 * MS, 30_000 * MS);
        m.begin(0);
        m.finish(0);
        for _ in 0..2 {
            m.enter();
            m.charge(20 * MS, Duration::ZERO);
        }
        assert!(!m.background_spent());
        m.enter();
        m.charge(20 * MS, Duration::ZERO);
        assert!(m.background_spent(), "60 ms of background work after one invocation");
        m.charge_off_thread(None, MS);
        m.begin(1);
        assert!(!m.background_spent(), "an invocation gives the budget back");
        // An entry an invocation runs in is not background work.
        m.enter();
        m.finish(1);
        m.charge(40 * MS, Duration::ZERO);
        m.enter();
        m.charge(20 * MS, Duration::ZERO);
        assert!(!m.background_spent());
    }
}
