//! Graceful shutdown: a [`Trigger`] fired by SIGINT/SIGTERM (or a test), and [`Watch`]es that every
//! long-running task selects on.
//!
//! This module does not drain anything itself; each task decides how to finish.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Resolves when shutdown was fired. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Watch(watch::Receiver<bool>);

/// A new trigger and its watch.
pub fn channel() -> (Trigger, Watch) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Watch(rx))
}

impl Trigger {
    /// Tells every watch to shut down.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A new watch of this trigger.
    pub fn watch(&self) -> Watch {
        Watch(self.0.subscribe())
    }
}

impl Watch {
    /// Waits until shutdown was fired (or the trigger dropped).
    pub async fn fired(&mut self) {
        // An error means the trigger is gone, which also means shut down.
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// True if shutdown was fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
