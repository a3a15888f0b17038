//! The translation loop both modes share: every new source state is translated; the snapshot is
//! published when its version changed, the statuses go to the admin `/status` board and — in
//! Kubernetes mode — to the status writer, together with what the API server holds.
//!
//! `lastTransitionTime`s are carried from the previous translation, then from the statuses the
//! API server holds (Kubernetes), so every replica computes the same times the leader wrote.
//!
//! A proxy's NACK shows on its Gateways' status ([`status::mark_rejected`]): the statuses are
//! published again, without translating, whenever the fleet's rejections change. A snapshot is
//! registered with the fleet before it is published, for the convergence metric.

use crate::{
    admin::StatusBoard,
    metrics::Metrics,
    snapshot::Snapshot,
    sources::SourceState,
    status_writer::{self, Round},
    translate::{self, Inputs, ObjectStatus, Options, status},
    xds::fleet::Fleet,
};
use serval_common::readiness::Latch;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Instant,
};
use tokio::sync::watch;

/// Where translations go.
#[derive(Debug)]
pub struct Pipeline {
    /// The `controllerName` of GatewayClasses we own.
    pub controller_name: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `/status`.
    pub board: StatusBoard,
    /// Snapshots for the delta server.
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    /// The proxies: rejections to show, rollouts to track.
    pub fleet: Arc<Fleet>,
    /// Kubernetes mode only.
    pub kubernetes: Option<KubernetesOutputs>,
    /// Rollout spans, when traces are exported.
    pub tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
}

/// What Kubernetes mode adds.
#[derive(Debug)]
pub struct KubernetesOutputs {
    /// `NAMESPACE/NAME` of the proxy fleet's Service, whose addresses Gateways report.
    pub proxy_service: Option<(String, String)>,
    /// Rounds for the status writer.
    pub rounds: watch::Sender<Arc<Round>>,
}

impl Pipeline {
    /// Translates every new source state until the source is gone. After the first translation it
    /// releases the readiness latch and sets `synced` to true.
    pub async fn run(
        self,
        mut source: watch::Receiver<Arc<SourceState>>,
        first_sync: (Latch, watch::Sender<bool>),
    ) {
        let mut first_sync = Some(first_sync);
        let mut rejections = self.fleet.watch_rejections();
        let mut memory = Memory::default();
        loop {
            tokio::select! {
                changed = source.changed() => if changed.is_err() { break },
                changed = rejections.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    rejections.borrow_and_update();
                    // Statuses as last computed, with the rejections as they are now.
                    if let Some((state, statuses)) = memory.last.clone() {
                        let mut statuses = (*statuses).clone();
                        status::restamp(&mut statuses, &now_rfc3339());
                        self.publish_statuses(&state, statuses);
                    }
                    continue;
                }
            }
            let state = Arc::clone(&source.borrow_and_update());
            if memory.translated == Some(state.config_generation)
                && let Some(k8s) = &self.kubernetes
            {
                // Only statuses changed since the last translation (mostly the echo of our own
                // writes): the configuration is the same, so the writer just gets what the API
                // server now holds.
                let desired = Arc::clone(&k8s.rounds.borrow().desired);
                k8s.rounds.send_replace(Arc::new(Round {
                    desired,
                    observed: Arc::new(status_writer::observe(&state)),
                }));
                if let Some(last) = &mut memory.last {
                    last.0 = Arc::clone(&state);
                }
                self.metrics.translations_skipped.inc();
                continue;
            }
            // Translation is CPU work of up to ~100 ms: keep it off the async workers, so the
            // delta server, the admin server and the status writer are never stalled by it.
            cpu_bound(|| self.translate(&state, &mut memory));
            memory.translated = Some(state.config_generation);
            if let Some((latch, synced)) = first_sync.take() {
                latch.release();
                synced.send_replace(true);
            }
        }
    }

    /// One translation of `state`: publishes the snapshot and the statuses.
    fn translate(&self, state: &Arc<SourceState>, memory: &mut Memory) {
        self.metrics
            .config_file_errors
            .set(state.errors.len() as i64);
        let started = Instant::now();
        if let Some(at) = state.observed_at {
            self.metrics
                .debounce_delay_seconds
                .observe(started.saturating_duration_since(at).as_secs_f64());
        }
        // One changed stretch of objects (a file, a watch event): index only that.
        let inputs = memory
            .indexed
            .as_ref()
            .and_then(|(before, inputs)| Inputs::patched(inputs, &before.objects, &state.objects))
            .unwrap_or_else(|| Inputs::from_objects(state.objects.iter().cloned()));
        memory.indexed = Some((Arc::clone(state), inputs.clone()));
        let options = Options {
            controller_name: self.controller_name.clone(),
            now: now_rfc3339(),
            fleet_addresses: self.fleet_addresses(&inputs),
        };
        let output = memory.translator.translate(inputs, &options);
        self.metrics.translations.inc();
        self.metrics
            .translate_reused_routes
            .inc_by(output.reused_routes as u64);
        self.metrics
            .translate_seconds
            .observe(started.elapsed().as_secs_f64());
        // Log each diagnostic once, not on every reload.
        let current: BTreeSet<String> = output.diagnostics.iter().cloned().collect();
        for d in current.difference(&memory.reported) {
            tracing::warn!(diagnostic = %d, "translate");
        }
        memory.reported = current;

        let previous = Arc::clone(&self.snapshots.borrow());
        let snapshot = Snapshot::next(&previous, output.resources)
            .observed_at(state.observed_at.unwrap_or(started))
            .sequence(memory.sequence + 1);
        self.metrics
            .snapshot_resources
            .set(snapshot.resources.len() as i64);
        if snapshot.version != self.snapshots.borrow().version {
            tracing::info!(
                version = %snapshot.version,
                resources = snapshot.resources.len(),
                took_ms = started.elapsed().as_secs_f64() * 1e3,
                since_observed_ms = snapshot.observed.elapsed().as_secs_f64() * 1e3,
                "new snapshot"
            );
            memory.sequence += 1;
            self.metrics.snapshots.inc();
            let trace = self.tracer.as_ref().map(|tracer| {
                crate::rollout_trace::rollout(
                    tracer,
                    &snapshot.version.to_string(),
                    snapshot.resources.len(),
                    snapshot.observed,
                    started,
                )
            });
            let snapshot = snapshot.traced(trace);
            // Registered first, so no proxy can ACK it before the rollout is tracked.
            self.fleet.on_snapshot(&snapshot);
            self.snapshots.send_replace(Arc::new(snapshot));
        }
        let statuses = Arc::new(output.statuses);
        memory.last = Some((Arc::clone(state), Arc::clone(&statuses)));
        self.publish_statuses(state, (*statuses).clone());
    }

    /// Publishes `statuses` (as translate computed them) with the fleet's rejections marked and
    /// transition times carried: to `/status` and, in Kubernetes, to the status writer.
    fn publish_statuses(&self, state: &SourceState, mut statuses: Vec<Arc<ObjectStatus>>) {
        let rejected: BTreeMap<String, Vec<String>> = self
            .fleet
            .rejections()
            .into_iter()
            .map(|(gateway, list)| {
                let messages = list
                    .iter()
                    .map(|r| {
                        format!(
                            "proxy {} rejected configuration {}: {}",
                            r.node, r.version, r.message
                        )
                    })
                    .collect();
                (gateway, messages)
            })
            .collect();
        status::mark_rejected(&mut statuses, &rejected, &now_rfc3339());
        let mut board = self.board.lock();
        status::carry_transition_times(&board, &mut statuses);
        if let Some(k8s) = &self.kubernetes {
            let observed = status_writer::observe(state);
            status::carry_transition_times(&as_statuses(&observed), &mut statuses);
            let statuses = Arc::new(statuses.clone());
            k8s.rounds.send_replace(Arc::new(Round {
                desired: Arc::clone(&statuses),
                observed: Arc::new(observed),
            }));
        }
        *board = Arc::new(statuses);
    }

    fn fleet_addresses(&self, inputs: &Inputs) -> Vec<translate::GatewayAddress> {
        self.kubernetes
            .as_ref()
            .and_then(|k| k.proxy_service.clone())
            .and_then(|key| inputs.services.get(&key))
            .map(|s| translate::fleet_addresses(s))
            .unwrap_or_default()
    }
}

/// Statuses as translate computed them, shared.
type Statuses = Arc<Vec<Arc<ObjectStatus>>>;

/// What the loop remembers between source states.
#[derive(Debug, Default)]
struct Memory {
    /// The config generation last translated (Kubernetes); None before the first translation.
    translated: Option<u64>,
    /// Diagnostics already logged.
    reported: BTreeSet<String>,
    /// Sequence number of the last published snapshot.
    sequence: u64,
    /// The last source state and the statuses translate computed for it (before rejections).
    last: Option<(Arc<SourceState>, Statuses)>,
    /// Translates only what changed since the last source state.
    translator: translate::Incremental,
    /// The last source state translated and its inputs (shared with the translator).
    indexed: Option<(Arc<SourceState>, Inputs)>,
}

/// Observed statuses in the shape [`status::carry_transition_times`] takes.
fn as_statuses(
    observed: &std::collections::BTreeMap<status_writer::StatusKey, status_writer::Observed>,
) -> Vec<Arc<ObjectStatus>> {
    observed
        .iter()
        .filter(|(_, o)| !o.status.is_null())
        .map(|(key, o)| {
            Arc::new(ObjectStatus {
                api_version: String::new(),
                kind: key.kind.clone(),
                metadata: status::StatusMetadata {
                    name: key.name.clone(),
                    namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
                    generation: 0,
                },
                status: o.status.clone(),
            })
        })
        .collect()
}

/// Runs CPU-bound `f` without blocking the other tasks of this async worker (on a multi-thread
/// runtime; on a current-thread runtime it simply runs).
pub(crate) fn cpu_bound<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
