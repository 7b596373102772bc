//! What the ingest thread has read from the ring buffers and not yet queued: records
//! waiting for room in the queue, and violations waiting for the telemetry that came
//! before them. While the queue is full, each ring buffer is read no further than
//! `BACKLOG_MAX` records ahead and the rest waits in the kernel: nothing is dropped
//! until a ring buffer is full too, and the kernel counts what it then drops
//! (`ringbuf_full`, `decision_ringbuf_full`). The ingest thread never waits for room,
//! so it goes on reading violations, and running their actions, whatever the daemon's
//! thread is doing.

use std::{collections::VecDeque, sync::mpsc::TrySendError};

use crate::{decode::KernelEvent, item::Item, queue::Sender};

/// Records of each ring buffer read ahead of the queue, at most.
pub const BACKLOG_MAX: usize = 4096;

/// The queue's receiver is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected;

#[derive(Default)]
pub struct Backlog {
    /// Each item with its kernel time.
    telemetry: VecDeque<(u64, Item)>,
    /// Violations and adoptions, each followed by what its action hook asked to queue
    /// after it.
    decisions: VecDeque<(u64, Item)>,
    /// The last `forward` stopped at a full queue.
    waiting_for_room: bool,
}

impl Backlog {
    /// Whether to read more telemetry from its ring buffer.
    pub fn has_room(&self) -> bool {
        self.telemetry.len() < BACKLOG_MAX
    }

    /// Whether to read more from the decisions ring buffer. (Its records wait there, and
    /// their action hooks with them, only while the daemon takes nothing at all.)
    pub fn has_room_for_decisions(&self) -> bool {
        self.decisions.len() < BACKLOG_MAX
    }

    /// Records are held here because the queue was full.
    pub fn waiting_for_room(&self) -> bool {
        self.waiting_for_room
    }

    pub fn push_telemetry(&mut self, event: KernelEvent) {
        self.telemetry.push_back((event.header().time_ns, Item::Kernel(event)));
    }

    pub fn push_violation(&mut self, event: KernelEvent, follow_up: Option<Item>) {
        let time = event.header().time_ns;
        self.decisions.push_back((time, Item::Kernel(event)));
        if let Some(item) = follow_up {
            self.decisions.push_back((time, item));
        }
    }

    /// Queues what the queue has room for, in kernel time order: a violation goes after
    /// the telemetry before it, so that it is explained with the fork and exec that led
    /// to it. Nothing waits for room, unless `wait` (the last drain before stopping).
    /// `ring_drained`: the telemetry ring buffer holds no more, so violations later than
    /// all of it may go.
    pub fn forward(&mut self, queue: &Sender<Item>, ring_drained: bool, wait: bool) -> Result<(), Disconnected> {
        self.waiting_for_room = false;
        loop {
            let decision_time = self.decisions.front().map(|(time, _)| *time);
            let telemetry_time = self.telemetry.front().map(|(time, _)| *time);
            let from = match (decision_time, telemetry_time) {
                (Some(d), Some(t)) if d <= t => &mut self.decisions,
                (Some(_), None) if ring_drained => &mut self.decisions,
                (_, Some(_)) => &mut self.telemetry,
                _ => return Ok(()),
            };
            let (time, item) = from.pop_front().expect("looked at");
            if wait {
                queue.send(item).map_err(|_| Disconnected)?;
                continue;
            }
            match queue.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    from.push_front((time, item));
                    self.waiting_for_room = true;
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::event::{EventHeader, kind};

    use super::*;
    use crate::queue::{self, CAPACITY, Receiver};

    fn header(event_kind: u16, time_ns: u64) -> EventHeader {
        EventHeader {
            kind: event_kind,
            flags: 0,
            size: 0,
            time_ns,
            session_id: 1,
            tgid: 2,
            tid: 2,
            uid: 0,
            gid: 0,
            start_time_ns: 0,
        }
    }

    /// Telemetry: a fork at `time_ns`.
    fn fork(time_ns: u64) -> KernelEvent {
        KernelEvent::Fork { header: header(kind::PROCESS_FORK, time_ns), child_tgid: 3, child_start_time_ns: 0 }
    }

    fn violation(time_ns: u64) -> KernelEvent {
        KernelEvent::Syscall {
            header: header(kind::PROCESS_SYSCALL, time_ns),
            nr: 1,
            verdict: crate::decode::Verdict::ALLOW,
            arg: 0,
        }
    }

    fn time(item: Item) -> u64 {
        match item {
            Item::Kernel(event) => event.header().time_ns,
            Item::SessionKilled { time_ns, .. } => time_ns,
        }
    }

    fn take(receiver: &Receiver<Item>, n: usize) -> Vec<u64> {
        (0..n).map(|_| time(receiver.recv_timeout(Duration::from_secs(1)).expect("queued"))).collect()
    }

    fn full_queue() -> (Sender<Item>, Receiver<Item>) {
        let (sender, receiver) = queue::bounded::<Item>();
        (0..CAPACITY).for_each(|_| sender.try_send(Item::Kernel(fork(0))).unwrap());
        (sender, receiver)
    }

    #[test]
    fn telemetry_waits_for_room_in_the_queue_and_none_is_dropped() {
        let (sender, receiver) = full_queue();
        let mut backlog = Backlog::default();
        (1..=3).for_each(|t| backlog.push_telemetry(fork(t)));
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(backlog.waiting_for_room());
        assert_eq!(take(&receiver, 2), [0, 0]);
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(backlog.waiting_for_room(), "room for two of three");
        take(&receiver, CAPACITY - 2);
        assert_eq!(take(&receiver, 2), [1, 2]);
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(!backlog.waiting_for_room());
        assert_eq!(take(&receiver, 1), [3]);
        assert!(backlog.has_room());
    }

    #[test]
    fn a_violation_goes_after_the_telemetry_before_it_not_before_what_is_still_unread() {
        let (sender, receiver) = queue::bounded::<Item>();
        let mut backlog = Backlog::default();
        backlog.push_telemetry(fork(10));
        backlog.push_violation(violation(20), None);
        backlog.push_telemetry(fork(30));
        backlog.push_violation(
            violation(40),
            Some(Item::SessionKilled { session: 1, time_ns: 41, pids: vec![], trigger_pid: 2, error: None }),
        );
        // The ring buffer still holds telemetry, perhaps from before 40: the violation waits.
        assert_eq!(backlog.forward(&sender, false, false), Ok(()));
        assert_eq!(take(&receiver, 3), [10, 20, 30]);
        assert_eq!(receiver.try_recv().ok().map(time), None);
        backlog.push_telemetry(fork(35));
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert_eq!(take(&receiver, 3), [35, 40, 41], "then the violation, and what its hook asked to follow it");
    }

    #[test]
    fn violations_wait_for_room_without_blocking_the_reader_and_keep_what_follows_them() {
        let (sender, receiver) = full_queue();
        let mut backlog = Backlog::default();
        let killed = Item::SessionKilled { session: 1, time_ns: 8, pids: vec![], trigger_pid: 2, error: None };
        backlog.push_violation(violation(7), Some(killed));
        backlog.push_violation(
            KernelEvent::Adopt {
                header: header(kind::SESSION_ADOPT, 9),
                selector: 0,
                generation: 0,
                policy_id: 1,
                flags: 0,
            },
            None,
        );
        assert_eq!(backlog.forward(&sender, true, false), Ok(()), "returns at once");
        assert!(backlog.waiting_for_room());
        take(&receiver, 2);
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(backlog.waiting_for_room(), "the violation and what follows it went; the adoption waits");
        take(&receiver, 1);
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(!backlog.waiting_for_room());
        take(&receiver, CAPACITY - 3);
        assert_eq!(take(&receiver, 3), [7, 8, 9]);
    }

    #[test]
    fn the_last_drain_waits_for_room() {
        let (sender, receiver) = full_queue();
        let mut backlog = Backlog::default();
        backlog.push_telemetry(fork(5));
        backlog.push_telemetry(fork(6));
        let waiter = std::thread::spawn(move || backlog.forward(&sender, true, true).map(|()| backlog));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "waits while the queue is full");
        take(&receiver, 1);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "one was queued; the other waits for more room");
        take(&receiver, 1);
        let backlog = waiter.join().unwrap().expect("connected");
        assert!(!backlog.waiting_for_room());
        take(&receiver, CAPACITY - 2);
        assert_eq!(take(&receiver, 2), [5, 6]);
    }

    #[test]
    fn a_gone_receiver_ends_forwarding() {
        let (sender, receiver) = queue::bounded::<Item>();
        drop(receiver);
        let mut backlog = Backlog::default();
        backlog.push_telemetry(fork(1));
        assert_eq!(backlog.forward(&sender, true, false), Err(Disconnected));
    }
}
