//! The status writer: puts the status computed by translate on the `status` subresource of
//! GatewayClasses, Gateways and routes in Kubernetes — only on the leader replica, only what
//! differs from what the API server already holds, batched, rate-limited, with a timeout per call.
//!
//! ```text
//! Round { desired (translate), observed (the watched objects) } ─► plan ─► PATCH …/status
//! ```
//!
//! - A route's `parents[]` entries of other controllers are taken from the object as last observed
//!   and never changed; only entries with our `controllerName` are written (and removed when the
//!   route no longer references a Gateway of ours).
//! - Every patch carries the observed `resourceVersion`, so a concurrent write by anyone else fails
//!   with 409 Conflict instead of being overwritten; the next round (after the watch delivers the
//!   new object) recomputes from it.
//! - Failed writes are retried with backoff; a replica that becomes leader writes everything stale.
//!
//! Not here: computing status (translate) and electing the leader ([`crate::leader`]).

mod observed;
mod plan;
mod rate;

pub use observed::{Observed, StatusKey, normalize, observe};
pub use plan::{Plan, Write, plan};

use crate::{
    metrics::{Metrics, WriteLabels},
    sources::kubernetes::kinds,
    translate::ObjectStatus,
};
use futures::StreamExt;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use serval_common::shutdown;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{Mutex, watch};

/// What the writer works from: the latest translation and the objects it was computed from.
#[derive(Debug, Default)]
pub struct Round {
    /// Statuses computed by translate.
    pub desired: Arc<Vec<Arc<ObjectStatus>>>,
    /// The objects' current statuses and resourceVersions as watched.
    pub observed: Arc<BTreeMap<StatusKey, Observed>>,
}

/// Writer settings (flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Our `controllerName`: route parents entries with it are ours.
    pub controller_name: String,
    /// Sustained writes per second.
    pub qps: f64,
    /// Writes allowed in a burst above `qps`.
    pub burst: u32,
    /// Timeout of one write.
    pub timeout: Duration,
    /// Writes in flight at once.
    pub concurrency: usize,
}

/// A successful write, remembered until the watch shows it.
#[derive(Debug)]
pub struct Written {
    /// The resourceVersion the write was based on.
    pub based_on: String,
    /// What was written (normal form).
    pub status: serde_json::Value,
}

const RETRY_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Writes status while `leader` is true, until shutdown.
pub async fn run(
    client: Client,
    settings: Settings,
    mut rounds: watch::Receiver<Arc<Round>>,
    mut leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    mut shutdown: shutdown::Watch,
) {
    let limiter = Arc::new(Mutex::new(rate::Limiter::new(settings.qps, settings.burst)));
    let mut written: BTreeMap<StatusKey, Written> = BTreeMap::new();
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    loop {
        let retry_at = retry.map(|(at, _)| at);
        tokio::select! {
            _ = shutdown.fired() => return,
            changed = rounds.changed() => if changed.is_err() { return },
            changed = leader.changed() => {
                if changed.is_err() { return }
                // A new leader forgets what it wrote before (another replica may have written
                // since) and compares everything with the API server afresh.
                written.clear();
            }
            _ = async { tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)).await }, if retry_at.is_some() => {}
        }
        if !*leader.borrow_and_update() {
            continue;
        }
        let round = Arc::clone(&rounds.borrow_and_update());
        written.retain(|key, _| round.observed.contains_key(key));
        let plan = crate::pipeline::cpu_bound(|| plan(&round, &written, &settings.controller_name));
        metrics
            .status_writes
            .get_or_create(&WriteLabels {
                result: "skipped_unchanged",
            })
            .inc_by(plan.unchanged);
        if plan.writes.is_empty() {
            retry = None;
            continue;
        }
        tracing::debug!(
            writes = plan.writes.len(),
            unchanged = plan.unchanged,
            "writing status"
        );
        // In chunks: a newer round (or shutdown, or losing the Lease) ends the batch early, so a
        // long batch never keeps writing statuses that are already outdated.
        let chunk_size = settings.concurrency.max(1) * 4;
        let mut results: Vec<(Write, Outcome)> = Vec::with_capacity(plan.writes.len());
        let mut writes = plan.writes.into_iter().peekable();
        while writes.peek().is_some() {
            let chunk: Vec<Write> = writes.by_ref().take(chunk_size).collect();
            let done: Vec<(Write, Outcome)> = futures::stream::iter(chunk)
                .map(|write| {
                    let client = client.clone();
                    let limiter = Arc::clone(&limiter);
                    let leader = leader.clone();
                    let timeout = settings.timeout;
                    async move {
                        limiter.lock().await.acquire().await;
                        if !*leader.borrow() {
                            return (write, Outcome::NotLeader);
                        }
                        let outcome = patch(&client, &write, timeout).await;
                        (write, outcome)
                    }
                })
                .buffer_unordered(settings.concurrency.max(1))
                .collect()
                .await;
            results.extend(done);
            let superseded = rounds.has_changed().unwrap_or(true);
            if superseded || !*leader.borrow() || shutdown.is_fired() {
                break;
            }
        }
        let mut failed = false;
        for (write, outcome) in results {
            let result = match outcome {
                Outcome::Written(elapsed) => {
                    metrics.status_write_seconds.observe(elapsed.as_secs_f64());
                    written.insert(
                        write.key.clone(),
                        Written {
                            based_on: write.resource_version.clone(),
                            status: write.status.clone(),
                        },
                    );
                    "succeeded"
                }
                Outcome::Conflict => {
                    // The watch brings the newer object; the round after it retries.
                    tracing::debug!(object = %write.key, "status write conflicted; retried from the newer object");
                    failed = true;
                    "conflict"
                }
                Outcome::Gone => continue,
                Outcome::NotLeader => continue,
                Outcome::Failed(error) => {
                    tracing::warn!(object = %write.key, %error, "status write failed; retrying");
                    failed = true;
                    "failed"
                }
            };
            metrics
                .status_writes
                .get_or_create(&WriteLabels { result })
                .inc();
        }
        retry = failed.then(|| {
            let delay = retry.map_or(RETRY_BACKOFF.0, |(_, d)| (d * 2).min(RETRY_BACKOFF.1));
            (tokio::time::Instant::now() + delay, delay)
        });
    }
}

#[derive(Debug)]
enum Outcome {
    Written(Duration),
    Conflict,
    Gone,
    NotLeader,
    Failed(String),
}

async fn patch(client: &Client, write: &Write, timeout: Duration) -> Outcome {
    let Some(kind) = kinds::by_name(&write.key.kind) else {
        return Outcome::Failed(format!("{} is not a watched kind", write.key.kind));
    };
    let version = kind.versions[0];
    let resource = ApiResource {
        group: kind.group.to_owned(),
        version: version.to_owned(),
        api_version: if kind.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", kind.group)
        },
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
    };
    let api: Api<DynamicObject> = if kind.namespaced {
        Api::namespaced_with(client.clone(), &write.key.namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let started = Instant::now();
    let body = write.body();
    let params = PatchParams::default();
    let patch = Patch::Merge(&body);
    let call = api.patch_status(&write.key.name, &params, &patch);
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Outcome::Failed(format!("no answer within {timeout:?}")),
        Ok(Ok(_)) => Outcome::Written(started.elapsed()),
        Ok(Err(kube::Error::Api(status))) if status.is_conflict() => Outcome::Conflict,
        Ok(Err(kube::Error::Api(status))) if status.is_not_found() => Outcome::Gone,
        Ok(Err(error)) => Outcome::Failed(error.to_string()),
    }
}
