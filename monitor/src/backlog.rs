//! What the ingest thread has read from the ring buffers and not yet queued: telemetry
//! waiting for room in the queue, and violations waiting for the telemetry that came
//! before them. While the queue is full, telemetry is read no further than
//! `BACKLOG_MAX` records ahead and the rest waits in the kernel's ring buffer: nothing
//! is dropped until that is full too, and the kernel counts what it then drops
//! (`ringbuf_full`).

use std::{collections::VecDeque, sync::mpsc::TrySendError};

use crate::{decode::KernelEvent, ingest::Item, queue::Sender};

/// Telemetry records read ahead of the queue, at most.
pub const BACKLOG_MAX: usize = 4096;

/// The queue's receiver is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected;

#[derive(Default)]
pub struct Backlog {
    telemetry: VecDeque<KernelEvent>,
    /// Each with what its action hook asked to queue after it.
    violations: VecDeque<(KernelEvent, Option<Item>)>,
}

impl Backlog {
    /// Whether to read more telemetry from the ring buffer.
    pub fn has_room(&self) -> bool {
        self.telemetry.len() < BACKLOG_MAX
    }

    /// Telemetry is waiting here: the queue was full.
    pub fn holds_telemetry(&self) -> bool {
        !self.telemetry.is_empty()
    }

    pub fn push_telemetry(&mut self, event: KernelEvent) {
        self.telemetry.push_back(event);
    }

    pub fn push_violation(&mut self, event: KernelEvent, follow_up: Option<Item>) {
        self.violations.push_back((event, follow_up));
    }

    /// Queues what can be queued, in kernel time order: a violation goes after the
    /// telemetry before it, so that it is explained with the fork and exec that led to
    /// it. Violations and adoptions wait for room in the queue; other telemetry stays
    /// here while the queue is full, unless `wait` (the last drain before stopping).
    /// `ring_drained`: the ring buffer holds no more telemetry, so violations later
    /// than all of it may go.
    pub fn forward(&mut self, queue: &Sender<Item>, ring_drained: bool, wait: bool) -> Result<(), Disconnected> {
        loop {
            let violation_time = self.violations.front().map(|(v, _)| v.header().time_ns);
            let telemetry_time = self.telemetry.front().map(|e| e.header().time_ns);
            match (violation_time, telemetry_time) {
                (Some(v), Some(t)) if v <= t => self.send_violation(queue)?,
                (Some(_), None) if ring_drained => self.send_violation(queue)?,
                (_, Some(_)) => {
                    let event = self.telemetry.pop_front().expect("looked at");
                    // An adoption starts a session: without it the daemon cannot say
                    // whose the session's events are. Never left behind.
                    if wait || matches!(event, KernelEvent::Adopt { .. }) {
                        queue.send(Item::Kernel(event)).map_err(|_| Disconnected)?;
                        continue;
                    }
                    match queue.try_send(Item::Kernel(event)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(Item::Kernel(event))) => {
                            self.telemetry.push_front(event);
                            return Ok(());
                        }
                        Err(TrySendError::Full(_)) => unreachable!("sent a kernel event"),
                        Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn send_violation(&mut self, queue: &Sender<Item>) -> Result<(), Disconnected> {
        let (violation, follow_up) = self.violations.pop_front().expect("looked at");
        queue.send(Item::Kernel(violation)).map_err(|_| Disconnected)?;
        match follow_up {
            Some(item) => queue.send(item).map_err(|_| Disconnected),
            None => Ok(()),
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
            kind: event_kind, flags: 0, size: 0, time_ns, session_id: 1, tgid: 2, tid: 2, uid: 0, gid: 0, start_time_ns: 0,
        }
    }

    /// Telemetry: a fork at `time_ns`.
    fn fork(time_ns: u64) -> KernelEvent {
        KernelEvent::Fork { header: header(kind::PROCESS_FORK, time_ns), child_tgid: 3, child_start_time_ns: 0 }
    }

    fn violation(time_ns: u64) -> KernelEvent {
        KernelEvent::Syscall { header: header(kind::PROCESS_SYSCALL, time_ns), nr: 1, verdict: crate::decode::Verdict::ALLOW }
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
        assert!(backlog.holds_telemetry());
        assert_eq!(take(&receiver, 2), [0, 0]);
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(backlog.holds_telemetry(), "room for two of three");
        take(&receiver, CAPACITY - 2);
        assert_eq!(take(&receiver, 2), [1, 2]);
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert!(!backlog.holds_telemetry());
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
        backlog.push_violation(violation(40), Some(Item::SessionKilled { session: 1, time_ns: 41, pids: vec![], trigger_pid: 2, error: None }));
        // The ring buffer still holds telemetry, perhaps from before 40: the violation waits.
        assert_eq!(backlog.forward(&sender, false, false), Ok(()));
        assert_eq!(take(&receiver, 3), [10, 20, 30]);
        assert_eq!(receiver.try_recv().ok().map(time), None);
        backlog.push_telemetry(fork(35));
        assert_eq!(backlog.forward(&sender, true, false), Ok(()));
        assert_eq!(take(&receiver, 3), [35, 40, 41], "then the violation, and what its hook asked to follow it");
    }

    #[test]
    fn an_adoption_and_the_last_drain_wait_for_room() {
        let (sender, receiver) = full_queue();
        let mut backlog = Backlog::default();
        backlog.push_telemetry(KernelEvent::Adopt { header: header(kind::SESSION_ADOPT, 5), selector: 0, generation: 0, policy_id: 1, flags: 0 });
        backlog.push_telemetry(fork(6));
        let waiter = std::thread::spawn(move || backlog.forward(&sender, true, true).map(|()| backlog));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "waits while the queue is full");
        take(&receiver, 1);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "the adoption took the room; the last drain waits for more");
        take(&receiver, 1);
        let backlog = waiter.join().unwrap().expect("connected");
        assert!(!backlog.holds_telemetry());
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
