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
    /// The `Sender` is gone: once the items it sent are taken, the queue is disconnected
    /// (`Waker`s keep the channel itself open).
    sender_gone: AtomicBool,
}

enum Message<T> {
    Item(T),
    /// Look at your other inputs (see `Waker`).
    Wake,
}

pub struct Sender<T> {
    inner: mpsc::Sender<Message<T>>,
    shared: Arc<Shared>,
}

/// Wakes the receiver without an item, for a consumer that waits on this queue and
/// has other inputs to look at when woken (the daemon's control commands), so that it
/// need not poll them.
pub struct Waker<T> {
    inner: mpsc::Sender<Message<T>>,
}

pub struct Receiver<T> {
    inner: mpsc::Receiver<Message<T>>,
    shared: Arc<Shared>,
}

pub fn bounded<T>() -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = mpsc::channel();
    let shared = Arc::new(Shared {
        waiting: AtomicUsize::new(0),
        receiver_gone: AtomicBool::new(false),
        sender_gone: AtomicBool::new(false),
    });
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

    pub fn waker(&self) -> Waker<T> {
        Waker { inner: self.inner.clone() }
    }

    fn push(&self, item: T) -> Result<(), T> {
        self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        self.inner.send(Message::Item(item)).map_err(|error| {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            match error.0 {
                Message::Item(item) => item,
                Message::Wake => unreachable!("pushed an item"),
            }
        })
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.sender_gone.store(true, Ordering::Release);
        // Behind every item sent: the receiver learns of it after taking them.
        let _ = self.inner.send(Message::Wake);
    }
}

impl<T> Waker<T> {
    pub fn wake(&self) {
        let _ = self.inner.send(Message::Wake);
    }
}

impl<T> Clone for Waker<T> {
    fn clone(&self) -> Self {
        Waker { inner: self.inner.clone() }
    }
}

impl<T> Receiver<T> {
    /// The next item. `Err(Timeout)` also when a `Waker` woke the receiver;
    /// `Err(Disconnected)` once the sender is gone and every item it sent was taken.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        match self.inner.recv_timeout(timeout) {
            Ok(Message::Item(item)) => Ok(self.taken(item)),
            Ok(Message::Wake) => self.after_wake().map_err(|error| match error {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            }),
            Err(error) => Err(error),
        }
    }

    /// An item if one is waiting; `Err(Empty)` also when a `Waker` woke the receiver.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.inner.try_recv()? {
            Message::Item(item) => Ok(self.taken(item)),
            Message::Wake => self.after_wake(),
        }
    }

    /// After a wake: once the sender is gone, the items it sent before (which a waker's
    /// wake may have overtaken), then `Disconnected`.
    fn after_wake(&self) -> Result<T, TryRecvError> {
        if !self.shared.sender_gone.load(Ordering::Acquire) {
            return Err(TryRecvError::Empty);
        }
        loop {
            match self.inner.try_recv() {
                Ok(Message::Item(item)) => return Ok(self.taken(item)),
                Ok(Message::Wake) => continue,
                Err(_) => return Err(TryRecvError::Disconnected),
            }
        }
    }

    fn taken(&self, item: T) -> T {
        self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        item
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
    fn a_waker_wakes_the_receiver_without_an_item() {
        let (sender, receiver) = bounded::<usize>();
        let waker = sender.waker();
        let started = std::time::Instant::now();
        let woken = std::thread::spawn(move || {
            receiver.recv_timeout(Duration::from_secs(30)).map(|_| ()).map_err(|e| (e, receiver))
        });
        std::thread::sleep(Duration::from_millis(20));
        waker.wake();
        let (error, receiver) = woken.join().unwrap().unwrap_err();
        assert_eq!(error, RecvTimeoutError::Timeout);
        assert!(started.elapsed() < Duration::from_secs(10), "woken, not timed out");
        waker.wake();
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty), "a wake is no item");
        sender.try_send(1).unwrap();
        assert_eq!(receiver.try_recv(), Ok(1));
    }

    #[test]
    fn disconnected_only_after_every_item_though_wakers_remain() {
        let (sender, receiver) = bounded::<usize>();
        let waker = sender.waker();
        waker.wake(); // a wake ahead of items, taken after the sender is gone
        sender.try_send(1).unwrap();
        sender.try_send(2).unwrap();
        drop(sender);
        assert_eq!(receiver.recv_timeout(Duration::from_secs(1)), Ok(1));
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.recv_timeout(Duration::from_secs(1)), Err(RecvTimeoutError::Disconnected));
        waker.wake();
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
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
