//! Graceful shutdown, the mini-redis way: one [`Trigger`] fires a signal every
//! task watches through its [`Shutdown`] clone; each task also holds a
//! [`Shutdown`] (and with it a drop guard) until it has reached a safe point,
//! so [`Trigger::fire_and_wait`] returns only when every task has finished
//! (the alert outbox flushed, streams closed).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Held by the daemon's main task.
pub struct Trigger {
    signal: watch::Sender<bool>,
    done_rx: mpsc::Receiver<()>,
    done_tx: Option<mpsc::Sender<()>>,
}

/// Held by every task that must stop cleanly. Cloning it registers another
/// task the trigger waits for.
#[derive(Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    /// Never sent on: its drop tells the trigger this task is done.
    _done: mpsc::Sender<()>,
}

impl Trigger {
    pub fn new() -> (Trigger, Shutdown) {
        let (signal, rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        let shutdown = Shutdown {
            signal: rx,
            _done: done_tx.clone(),
        };
        (
            Trigger {
                signal,
                done_rx,
                done_tx: Some(done_tx),
            },
            shutdown,
        )
    }

    /// Signals every task, then waits (at most `limit`) until all of them
    /// dropped their [`Shutdown`]. Returns false if the limit ran out.
    pub async fn fire_and_wait(mut self, limit: Duration) -> bool {
        self.signal.send_replace(true);
        self.done_tx.take();
        tokio::time::timeout(limit, self.done_rx.recv())
            .await
            .is_ok()
    }
}

impl Shutdown {
    /// Resolves once shutdown has been signalled.
    pub async fn wait(mut self) {
        self.signalled().await;
    }

    /// Like [`Shutdown::wait`] without consuming the handle, for loops.
    pub async fn signalled(&mut self) {
        if self.signal.wait_for(|fired| *fired).await.is_err() {
            // The trigger is gone without firing: the daemon is ending all the same.
            tracing::debug!("shutdown trigger dropped; stopping");
        }
    }

    pub fn is_signalled(&self) -> bool {
        *self.signal.borrow()
    }
}

/// Waits for SIGTERM or SIGINT, whichever comes first.
pub async fn stop_signal() -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_task() {
        let (trigger, shutdown) = Trigger::new();
        let (tx, mut rx) = mpsc::channel(3);
        for i in 0..3 {
            let s = shutdown.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                s.clone().wait().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send(i).await.expect("the test holds the receiver");
                drop(s);
            });
        }
        drop(shutdown);
        drop(tx);
        assert!(trigger.fire_and_wait(Duration::from_secs(5)).await);
        let mut finished = Vec::new();
        while let Some(i) = rx.recv().await {
            finished.push(i);
        }
        finished.sort_unstable();
        assert_eq!(finished, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn gives_up_after_the_limit() {
        let (trigger, shutdown) = Trigger::new();
        let _stuck = shutdown; // never dropped before the limit
        assert!(!trigger.fire_and_wait(Duration::from_millis(50)).await);
    }
}
