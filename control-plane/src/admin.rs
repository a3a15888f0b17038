//! The control plane's admin server: the shared `/healthz`, `/readyz`, `/metrics` plus `/status`
//! (every Gateway API object with the status computed for it, as it would be written to
//! Kubernetes) and `/debug/snapshot` (resource names and versions of the latest snapshot).

use crate::{snapshot::Snapshot, translate::ObjectStatus};
use parking_lot::Mutex;
use serde::Serialize;
use serval_common::admin::{Reply, Routes};
use std::{collections::BTreeMap, sync::Arc};
use tokio::sync::watch;

/// What `/status` reports, updated after each translation.
pub type StatusBoard = Arc<Mutex<Arc<Vec<Arc<ObjectStatus>>>>>;

#[derive(Serialize)]
struct SnapshotSummary {
    version: String,
    resources: BTreeMap<String, String>,
}

/// The control plane's extra admin routes.
pub fn routes(statuses: StatusBoard, snapshots: watch::Receiver<Arc<Snapshot>>) -> Routes {
    Arc::new(move |path| match path {
        "/status" => {
            let current = Arc::clone(&statuses.lock());
            Some(Reply::json(&*current))
        }
        "/debug/snapshot" => {
            let snapshot = Arc::clone(&snapshots.borrow());
            Some(Reply::json(&SnapshotSummary {
                version: snapshot.version.to_string(),
                resources: snapshot
                    .resources
                    .iter()
                    .map(|(n, v)| (n.clone(), v.version.to_string()))
                    .collect(),
            }))
        }
        _ => None,
    })
}
