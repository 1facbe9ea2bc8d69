//! How the feeder thread hands a dial-in camera's frames to the thread that sends them
//! (an RTMP publisher, a GB/T 28181 device): a small bounded queue the feeder never
//! waits on, and a sending thread that is told to stop and joined when the camera goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

/// The sending side of one dial-in camera.
pub struct Feeder<T> {
    tx: SyncSender<T>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What the thread is, for the message if it panicked.
    what: &'static str,
}

impl<T: Send + 'static> Feeder<T> {
    /// Runs `run` on a thread named `name` with the queue's receiving end (at most
    /// `capacity` items waiting) and the flag that tells it to stop.
    pub fn spawn<F>(
        name: String,
        what: &'static str,
        capacity: usize,
        run: F,
    ) -> std::io::Result<Feeder<T>>
    where
        F: FnOnce(Receiver<T>, Arc<AtomicBool>) + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(rx, flag))?;
        Ok(Feeder {
            tx,
            stop,
            thread: Some(thread),
            what,
        })
    }

    /// Queues `item`; never waits. `false` when the queue is full (or the thread gone).
    pub fn offer(&self, item: T) -> bool {
        self.tx.try_send(item).is_ok()
    }
}

impl<T> Drop for Feeder<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            eprintln!("fleet: {} thread panicked", self.what);
        }
    }
}
