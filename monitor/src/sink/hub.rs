//! Fan-out of event lines to live followers (the control socket's `events --follow`).
//!
//! Each follower has its own bounded queue. Publishing never blocks: a line that finds
//! a follower's queue full is dropped for that follower only, and counted. A follower
//! is unsubscribed when it is dropped; it sees the end of the stream when every `Hub`
//! handle is dropped or `close` is called.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    time::Duration,
};

pub use std::sync::mpsc::RecvTimeoutError;

use serde::Deserialize;

/// Which events a follower gets. The default matches every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Only this session (`session.id`).
    pub session: Option<String>,
    /// Only these event types (`file.open`, `process.exec`, ...); empty: every type.
    pub types: BTreeSet<String>,
}

impl Filter {
    pub fn matches(&self, event_type: &str, session_id: &str) -> bool {
        self.session.as_deref().is_none_or(|s| s == session_id)
            && (self.types.is_empty() || self.types.contains(event_type))
    }
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    subscribers: Mutex<Vec<Subscriber>>,
    capacity: usize,
    next_id: AtomicU64,
    dropped_total: AtomicU64,
}

struct Subscriber {
    id: u64,
    filter: Filter,
    sender: SyncSender<Arc<[u8]>>,
    dropped: Arc<AtomicU64>,
}

impl Hub {
    /// Each follower buffers up to `capacity` lines (at least 1).
    pub fn new(capacity: usize) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                subscribers: Mutex::new(Vec::new()),
                capacity: capacity.max(1),
                next_id: AtomicU64::new(0),
                dropped_total: AtomicU64::new(0),
            }),
        }
    }

    pub fn subscribe(&self, filter: Filter) -> Follower {
        self.subscribe_with_capacity(filter, self.inner.capacity)
    }

    /// A follower with its own buffer size (a `run` client's stream of its session).
    pub fn subscribe_with_capacity(&self, filter: Filter, capacity: usize) -> Follower {
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers().push(Subscriber { id, filter, sender, dropped: dropped.clone() });
        Follower { id, receiver, dropped, hub: Arc::downgrade(&self.inner) }
    }

    /// Hands `line` (one NDJSON line, `\n` included) to every follower whose filter
    /// matches. Never blocks on a follower.
    pub fn publish(&self, event_type: &str, session_id: &str, line: &[u8]) {
        let mut shared: Option<Arc<[u8]>> = None;
        self.subscribers().retain(|subscriber| {
            if !subscriber.filter.matches(event_type, session_id) {
                return true;
            }
            let line = shared.get_or_insert_with(|| Arc::from(line)).clone();
            match subscriber.sender.try_send(line) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    subscriber.dropped.fetch_add(1, Ordering::Relaxed);
                    self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }

    /// Followers subscribed now.
    pub fn followers(&self) -> usize {
        self.subscribers().len()
    }

    /// Lines dropped for a full follower queue, over every follower there ever was.
    pub fn dropped_total(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    /// Ends every follower's stream (once it has read what is queued).
    pub fn close(&self) {
        self.subscribers().clear();
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        lock(&self.inner)
    }
}

/// A publisher panicking mid-`retain` leaves a valid list: keep using it.
fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
    inner.subscribers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One follower's end; read it from any thread. Iterating yields lines until the hub
/// is closed or dropped.
pub struct Follower {
    id: u64,
    receiver: Receiver<Arc<[u8]>>,
    dropped: Arc<AtomicU64>,
    hub: Weak<Inner>,
}

impl Follower {
    /// The next line, waiting up to `timeout`. `Disconnected`: the stream has ended.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Arc<[u8]>, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout)
    }

    /// Lines dropped for this follower because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Iterator for Follower {
    type Item = Arc<[u8]>;

    /// Waits for the next line; `None` once the stream has ended.
    fn next(&mut self) -> Option<Arc<[u8]>> {
        self.receiver.recv().ok()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            lock(&inner).retain(|s| s.id != self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    fn line(i: u32) -> Vec<u8> {
        format!("{{\"n\":{i}}}\n").into_bytes()
    }

    #[test]
    fn a_fast_follower_gets_every_line_in_order() {
        let hub = Hub::new(16);
        let follower = hub.subscribe(Filter::default());
        let (ack, acks) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            for line in follower {
                got.push(line.to_vec());
                ack.send(()).unwrap();
            }
            got
        });
        // Never more lines in flight than the queue holds: the reader keeps up.
        for i in 0..10_000 {
            if i >= 16 {
                acks.recv().unwrap();
            }
            hub.publish("file.open", "s1", &line(i));
        }
        hub.close();
        assert_eq!(reader.join().unwrap(), (0..10_000).map(line).collect::<Vec<_>>());
        assert_eq!(hub.dropped_total(), 0);
    }

    #[test]
    fn a_stalled_follower_drops_and_counts_only_its_own_lines() {
        let hub = Hub::new(4);
        let stalled = hub.subscribe(Filter::default());
        let reading = hub.subscribe(Filter::default());
        for i in 0..10 {
            hub.publish("file.open", "s1", &line(i));
            assert_eq!(reading.recv_timeout(Duration::from_secs(5)).unwrap().to_vec(), line(i));
        }
        assert_eq!(stalled.dropped(), 6);
        assert_eq!(reading.dropped(), 0);
        assert_eq!(hub.dropped_total(), 6);
        // What it did get is the oldest lines, in order.
        for i in 0..4 {
            assert_eq!(stalled.recv_timeout(Duration::ZERO).unwrap().to_vec(), line(i));
        }
        assert_eq!(stalled.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
    }

    #[test]
    fn filters_by_session_and_type() {
        let hub = Hub::new(16);
        let all = hub.subscribe(Filter::default());
        let session = hub.subscribe(Filter { session: Some("s2".into()), ..Filter::default() });
        let types = hub
            .subscribe(Filter { session: None, types: ["process.exec".to_string(), "net.connect".to_string()].into() });
        let both = hub.subscribe(Filter { session: Some("s1".into()), types: ["file.open".to_string()].into() });
        hub.publish("file.open", "s1", b"a\n");
        hub.publish("process.exec", "s2", b"b\n");
        hub.publish("net.connect", "s1", b"c\n");
        hub.publish("file.open", "s2", b"d\n");
        hub.close();
        let got = |f: Follower| f.map(|l| String::from_utf8(l.to_vec()).unwrap()).collect::<String>();
        assert_eq!(got(all), "a\nb\nc\nd\n");
        assert_eq!(got(session), "b\nd\n");
        assert_eq!(got(types), "b\nc\n");
        assert_eq!(got(both), "a\n");
    }

    #[test]
    fn dropping_a_follower_unsubscribes_it() {
        let hub = Hub::new(1);
        let first = hub.subscribe(Filter::default());
        let second = hub.subscribe(Filter::default());
        assert_eq!(hub.followers(), 2);
        drop(first);
        assert_eq!(hub.followers(), 1);
        hub.publish("file.open", "s1", b"a\n");
        hub.publish("file.open", "s1", b"b\n");
        assert_eq!(hub.dropped_total(), 1, "only the remaining follower counts");
        drop(second);
        assert_eq!(hub.followers(), 0);
    }

    #[test]
    fn the_stream_ends_when_the_hub_goes() {
        let hub = Hub::new(4);
        let follower = hub.subscribe(Filter::default());
        let reader = thread::spawn(move || follower.count());
        hub.publish("file.open", "s1", b"a\n");
        drop(hub);
        assert_eq!(reader.join().unwrap(), 1);
    }

    #[test]
    fn filter_from_config() {
        let filter: Filter = serde_saphyr::from_str("session: 00000000000000ab\ntypes: [file.open]\n").unwrap();
        assert!(filter.matches("file.open", "00000000000000ab"));
        assert!(!filter.matches("file.open", "00000000000000ac"));
        assert!(!filter.matches("process.exec", "00000000000000ab"));
        assert!(serde_saphyr::from_str::<Filter>("sesion: x\n").is_err());
    }
}
