//! The Kubernetes source: one kube-runtime watcher per kind ([`kinds::WATCHED`]) feeding a store
//! that publishes complete object sets — the first only after every kind has been listed, then
//! debounced after changes.
//!
//! Not here: status (the status writer, [`crate::status_writer`]) and leader election
//! ([`crate::leader`]).

pub mod client;
pub mod kinds;
mod store;
mod watch;

use super::{SourceState, Timing};
use crate::metrics::Metrics;
use serval_common::shutdown;
use std::sync::Arc;
use tokio::sync::{mpsc, watch as channel};

/// Watches every kind of [`kinds::WATCHED`] and publishes their objects until shutdown.
pub async fn run(
    client: kube::Client,
    timing: Timing,
    publish: channel::Sender<Arc<SourceState>>,
    metrics: Arc<Metrics>,
    shutdown: shutdown::Watch,
) {
    let (updates_tx, updates_rx) = mpsc::channel(1024);
    for kind in kinds::WATCHED {
        tokio::spawn(watch::run(
            client.clone(),
            kind,
            updates_tx.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    drop(updates_tx);
    store::run(updates_rx, timing, publish, metrics, shutdown).await;
}
