//! The queue from the ingest thread to the pipeline: bounded by a count of items, with
//! memory taken as items arrive and given back as they are consumed. (A `sync_channel`
//! of that bound preallocates every slot: 65,536 items of 128 bytes kept 8 MiB
//! resident in an idle daemon.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{self, RecvTimeoutError, TryRecvError, TrySendError},
    },
    time::Duration,
};

/// Items waiting, at most.
pub const CAPACITY: usize = 65_536;

struct Shared {
    waiting: AtomicUsize,
    receiver_gone: AtomicBool,
}

pub struct Sender<T> {
    inner: mpsc::Sender<T>,
    shared: Arc<Shared>,
}

pub struct Receiver<T> {
    inner: mpsc::Receiver<T>,
    shared: Arc<Shared>,
}

pub fn bounded<T>() -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = mpsc::channel();
    let shared = Arc::new(Shared { waiting: AtomicUsize::new(0), receiver_gone: AtomicBool::new(false) });
    (Sender { inner: sender, shared: shared.clone() }, Receiver { inner: receiver, shared })
}

impl<T> Sender<T> {
    /// Queues `item` unless `CAPACITY` items are waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.shared.waiting.load(Ordering::Acquire) >= CAPACITY {
            return Err(TrySendError::Full(item));
        }
        self.push(item).map_err(TrySendError::Disconnected)
    }

    /// Queues `item`, waiting while `CAPACITY` items are waiting. Err: the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        while self.shared.waiting.load(Ordering::Acquire) >= CAPACITY {
            if self.shared.receiver_gone.load(Ordering::Acquire) {
                return Err(item);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.push(item)
    }

    fn push(&self, item: T) -> Result<(), T> {
        self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        self.inner.send(item).map_err(|error| {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            error.0
        })
    }
}

impl<T> Receiver<T> {
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.inner.recv_timeout(timeout).inspect(|_| self.taken())
    }

    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.inner.try_recv().inspect(|_| self.taken())
    }

    fn taken(&self) {
        self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_blocking_send_waits_for_room() {
        let (sender, receiver) = bounded::<usize>();
        for i in 0..CAPACITY {
            sender.try_send(i).unwrap();
        }
        assert!(matches!(sender.try_send(CAPACITY), Err(TrySendError::Full(_))));
        let waiter = std::thread::spawn(move || sender.send(CAPACITY).map(|()| sender));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "send waits while the queue is full");
        assert_eq!(receiver.try_recv(), Ok(0));
        let sender = waiter.join().unwrap().expect("sent once there was room");
        for i in 1..=CAPACITY {
            assert_eq!(receiver.recv_timeout(Duration::from_secs(1)), Ok(i), "in order, nothing lost");
        }
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        sender.try_send(7).unwrap();
        drop(receiver);
        assert!(matches!(sender.try_send(8), Err(TrySendError::Disconnected(8))));
    }

    #[test]
    fn a_blocked_send_ends_when_the_receiver_goes() {
        let (sender, receiver) = bounded::<usize>();
        for i in 0..CAPACITY {
            sender.try_send(i).unwrap();
        }
        let waiter = std::thread::spawn(move || sender.send(1));
        std::thread::sleep(Duration::from_millis(20));
        drop(receiver);
        assert_eq!(waiter.join().unwrap(), Err(1));
    }
}
