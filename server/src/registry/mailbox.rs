//! A socket's mailbox: what the rest of the server has for one socket to write, and the
//! one way its task is woken for it.
//!
//! Rooms and revocation put frames in from any thread; the socket's task is the only
//! reader. Three things wake it, all through one [`AtomicWaker`]: a queued frame (chat,
//! events, replies from elsewhere: kept in order, bounded), a newer `state` frame (only
//! the latest is kept: a slow reader drops stale state rather than fall behind), and a
//! close request. The socket therefore waits on one source instead of three (a queue,
//! a watch channel and a cancellation token each had their own waker, allocation and
//! re-poll on every wake-up).
//!
//! Nothing is allocated until a frame arrives: an idle socket's mailbox is the few words
//! inside its [`super::ConnHandle`]. `tokio::sync::mpsc` allocates its first block of 32
//! slots (about 1 KB) when the channel is made, for every socket.
//!
//! Promises:
//! - frames are taken in the order they were queued, the latest state after them;
//! - at most `capacity` queued frames wait: [`Mailbox::queue`] refuses the next one, and
//!   the caller closes the socket as too slow;
//! - once the reader is gone ([`Mailbox::close_reader`]) nothing more is accepted and
//!   what was waiting is freed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::frame::TextFrame;

/// Why [`Mailbox::queue`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `capacity` frames are already waiting: the socket is not keeping up.
    Full,
    /// The socket's task has ended.
    ReaderGone,
}

pub struct Mailbox {
    pending: Mutex<Pending>,
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Default)]
struct Pending {
    queued: VecDeque<TextFrame>,
    state: Option<TextFrame>,
    reader_gone: bool,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox {
            pending: Mutex::new(Pending::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queue a frame and wake the reader.
    pub fn queue(&self, frame: TextFrame) -> Result<(), Refused> {
        {
            let mut pending = self.lock();
            if pending.reader_gone {
                return Err(Refused::ReaderGone);
            }
            if pending.queued.len() >= self.capacity {
                return Err(Refused::Full);
            }
            pending.queued.push_back(frame);
        }
        self.waker.wake();
        Ok(())
    }

    /// Put the latest state frame in place of any the reader has not taken yet, and wake
    /// the reader. Returns whether an untaken one was replaced (dropped as stale).
    pub fn replace_state(&self, frame: TextFrame) -> bool {
        let replaced = {
            let mut pending = self.lock();
            if pending.reader_gone {
                return false;
            }
            pending.state.replace(frame).is_some()
        };
        self.waker.wake();
        replaced
    }

    /// Wake the reader without a frame (a close was requested: it looks for itself).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// For the reader: ready when a frame is waiting or `woken_for` says the reader has
    /// something else to see (checked after registering, so no wake-up is lost).
    pub fn poll_ready(&self, cx: &mut Context<'_>, woken_for: impl Fn() -> bool) -> Poll<()> {
        self.poll_until(cx, || {
            let pending = self.lock();
            !pending.queued.is_empty() || pending.state.is_some() || woken_for()
        })
    }

    /// For the reader: register for a wake-up and say whether `woken_for` already holds
    /// (a close request, while the reader waits for something else).
    pub fn poll_until(&self, cx: &mut Context<'_>, woken_for: impl Fn() -> bool) -> Poll<()> {
        self.waker.register(cx.waker());
        if woken_for() {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// For the reader: the queued frames in order, at most `max`, then the latest state
    /// frame if there is one.
    pub fn take(&self, max: usize) -> Vec<TextFrame> {
        let mut pending = self.lock();
        let n = pending.queued.len().min(max);
        let mut frames: Vec<TextFrame> = pending.queued.drain(..n).collect();
        let state = pending.state.take();
        frames.extend(state);
        if pending.queued.is_empty() && pending.queued.capacity() > 16 {
            // A burst grew the queue; an idle socket does not keep the memory.
            pending.queued = VecDeque::new();
        }
        frames
    }

    /// The reader has ended: refuse what comes from now on, free what waits.
    pub fn close_reader(&self) {
        let mut pending = self.lock();
        pending.reader_gone = true;
        pending.queued = VecDeque::new();
        pending.state = None;
    }

    /// The oldest queued frame, leaving the state where it is (for tests).
    pub fn pop_queued(&self) -> Option<TextFrame> {
        self.lock().queued.pop_front()
    }

    /// Frames queued and not yet taken (for tests).
    pub fn queued_len(&self) -> usize {
        self.lock().queued.len()
    }

    /// Whether a state frame waits (for tests).
    pub fn has_state(&self) -> bool {
        self.lock().state.is_some()
    }

    /// Poisoning only means another thread panicked mid-update of a plain value; the
    /// frames are still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(s: &str) -> TextFrame {
        TextFrame::from(s)
    }

    #[test]
    fn frames_come_in_order_with_the_latest_state_last() {
        let m = Mailbox::new(8);
        m.queue(frame("a")).unwrap();
        assert!(!m.replace_state(frame("s1")));
        m.queue(frame("b")).unwrap();
        assert!(m.replace_state(frame("s2")), "s1 was dropped as stale");
        let taken = m.take(64);
        let texts: Vec<&str> = taken.iter().map(TextFrame::as_str).collect();
        assert_eq!(texts, ["a", "b", "s2"]);
        assert!(m.take(64).is_empty());
    }

    #[test]
    fn take_stops_at_max_and_leaves_the_rest_in_order() {
        let m = Mailbox::new(8);
        for s in ["1", "2", "3"] {
            m.queue(frame(s)).unwrap();
        }
        let first: Vec<String> = m.take(2).iter().map(|f| f.as_str().into()).collect();
        assert_eq!(first, ["1", "2"]);
        assert_eq!(m.take(2)[0].as_str(), "3");
    }

    #[test]
    fn the_queue_is_bounded_and_a_gone_reader_takes_nothing() {
        let m = Mailbox::new(2);
        m.queue(frame("1")).unwrap();
        m.queue(frame("2")).unwrap();
        assert_eq!(m.queue(frame("3")), Err(Refused::Full));
        m.close_reader();
        assert_eq!(m.queued_len(), 0, "what waited is freed");
        assert_eq!(m.queue(frame("4")), Err(Refused::ReaderGone));
        assert!(!m.replace_state(frame("s")));
        assert!(!m.has_state());
    }

    #[test]
    fn every_kind_of_news_wakes_a_registered_reader() {
        let m = Mailbox::new(8);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(m.poll_ready(&mut cx, || false).is_pending());
        m.queue(frame("a")).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(m.poll_ready(&mut cx, || false).is_ready());
        m.take(64);
        assert!(m.poll_ready(&mut cx, || false).is_pending());
        m.replace_state(frame("s"));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        m.take(64);
        assert!(m.poll_ready(&mut cx, || false).is_pending());
        m.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        assert!(m.poll_ready(&mut cx, || true).is_ready());
    }

    #[test]
    fn racing_writers_lose_nothing_and_break_no_order() {
        let m = Arc::new(Mailbox::new(100_000));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        m.queue(frame(&format!("{w}:{i}"))).unwrap();
                    }
                })
            })
            .collect();
        let mut seen = vec![Vec::new(); 4];
        let mut total = 0;
        while total < 8_000 {
            for f in m.take(64) {
                let (w, i) = f.as_str().split_once(':').unwrap();
                seen[w.parse::<usize>().unwrap()].push(i.parse::<usize>().unwrap());
                total += 1;
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        for per_writer in seen {
            assert_eq!(per_writer, (0..2_000).collect::<Vec<_>>());
        }
    }
}
