//! The fleet as this control plane sees it: one record per open delta stream (node, address,
//! what it ACKed, its last NACK), the rollouts in progress (for the convergence histogram), and
//! the NACKs that show on Gateway status.
//!
//! Stream tasks write here; the admin service, the pipeline (status) and metrics read. This module
//! makes no protocol decision (see `stream`) and does no I/O.

use super::stream::{Held, StreamState};
use crate::{
    metrics::Metrics,
    snapshot::{Scope, Snapshot, View},
};
use parking_lot::Mutex;
use serval_common::{
    ResourceKind, SnapshotVersion,
    proto::{
        admin::v1::{ProxyStatus, SyncState},
        discovery::v1::{ErrorDetail, Node},
    },
};
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};
use tokio::sync::watch;

/// Rollouts tracked at once; older ones are abandoned (counted) when more arrive.
const ROLLOUTS: usize = 64;

/// One proxy's rejection of a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Node id.
    pub node: String,
    /// The rejected view version.
    pub version: SnapshotVersion,
    /// The proxy's message.
    pub message: String,
    /// The resources it named.
    pub resources: Vec<String>,
    /// The Gateways the rejected configuration is for.
    pub gateways: Vec<String>,
}

/// One open stream.
#[derive(Clone, Debug)]
pub struct ProxyRecord {
    /// What the proxy sent in its first request.
    pub node: Node,
    /// Its address.
    pub peer: Option<SocketAddr>,
    /// When the stream opened.
    pub connected_since: SystemTime,
    /// The view it last ACKed.
    pub acked: Option<Arc<View>>,
    /// When it last ACKed.
    pub last_ack: Option<SystemTime>,
    /// Number of resources it holds.
    pub held_count: usize,
    /// Its rejection of a version it has not replaced by a later ACK.
    pub rejection: Option<Rejection>,
    /// Its last NACK message, even after a later ACK.
    pub last_error: Option<String>,
    /// Names and versions it opened the stream with, until its first ACK.
    pub initial: Option<Arc<BTreeMap<String, String>>>,
}

/// A published snapshot whose proxies have not all ACKed it yet.
#[derive(Debug)]
struct Rollout {
    sequence: u64,
    observed: Instant,
    published: Instant,
    pending: BTreeSet<u64>,
}

/// Every open stream of this control plane.
#[derive(Debug)]
pub struct Fleet {
    proxies: Mutex<BTreeMap<u64, ProxyRecord>>,
    rollouts: Mutex<VecDeque<Rollout>>,
    /// Bumped whenever the set of rejections changes.
    rejections: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            proxies: Mutex::default(),
            rollouts: Mutex::default(),
            rejections: watch::Sender::new(0),
            metrics,
        }
    }

    /// A stream `id` opened by `node` from `peer`.
    pub fn connect(&self, id: u64, node: Node, peer: Option<SocketAddr>, state: &StreamState) {
        let initial = match state.held() {
            Held::Initial(m) if !m.is_empty() => Some(Arc::new(
                m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            )),
            _ => None,
        };
        self.proxies.lock().insert(
            id,
            ProxyRecord {
                node,
                peer,
                connected_since: SystemTime::now(),
                acked: None,
                last_ack: None,
                held_count: state.held_count(),
                rejection: None,
                last_error: None,
                initial,
            },
        );
    }

    /// Stream `id` ACKed the response of snapshot `sequence`.
    pub fn acked(&self, id: u64, sequence: u64, state: &StreamState) {
        let cleared = {
            let mut proxies = self.proxies.lock();
            let Some(record) = proxies.get_mut(&id) else {
                return;
            };
            if let Held::View(view) = state.held() {
                record.acked = Some(Arc::clone(view));
            }
            record.last_ack = Some(SystemTime::now());
            record.held_count = state.held_count();
            record.initial = None;
            record.rejection.take().is_some()
        };
        if cleared {
            self.rejections_changed();
        }
        let now = Instant::now();
        let mut rollouts = self.rollouts.lock();
        for rollout in rollouts.iter_mut().filter(|r| r.sequence <= sequence) {
            rollout.pending.remove(&id);
        }
        self.complete(&mut rollouts, now);
    }

    /// Stream `id` rejected a response.
    pub fn nacked(&self, id: u64, rejection: Rejection) {
        {
            let mut proxies = self.proxies.lock();
            let Some(record) = proxies.get_mut(&id) else {
                return;
            };
            record.last_error = Some(rejection.message.clone());
            record.rejection = Some(rejection);
        }
        self.rejections_changed();
        self.forget(id);
    }

    /// Stream `id` closed.
    pub fn disconnect(&self, id: u64) {
        let had_rejection = self
            .proxies
            .lock()
            .remove(&id)
            .is_some_and(|r| r.rejection.is_some());
        if had_rejection {
            self.rejections_changed();
        }
        self.forget(id);
    }

    /// `snapshot` is about to be published: every connected proxy whose view it changes must ACK
    /// it for the rollout to complete. Call before publishing, so no ACK can come first.
    pub fn on_snapshot(&self, snapshot: &Snapshot) {
        let proxies: Vec<(u64, Scope, Option<SnapshotVersion>)> = self
            .proxies
            .lock()
            .iter()
            .map(|(id, r)| {
                (
                    *id,
                    Scope::of(&r.node),
                    r.acked.as_ref().map(|v| v.version.clone()),
                )
            })
            .collect();
        let pending: BTreeSet<u64> = proxies
            .into_iter()
            .filter(|(_, scope, acked)| acked.as_ref() != Some(&snapshot.view(scope).version))
            .map(|(id, _, _)| id)
            .collect();
        let mut rollouts = self.rollouts.lock();
        rollouts.push_back(Rollout {
            sequence: snapshot.sequence,
            observed: snapshot.observed,
            published: Instant::now(),
            pending,
        });
        while rollouts.len() > ROLLOUTS {
            rollouts.pop_front();
            self.metrics.xds_rollouts_abandoned.inc();
        }
        self.complete(&mut rollouts, Instant::now());
    }

    /// Every open stream, sorted by node id, as the admin service shows it against `snapshot`.
    pub fn list(&self, snapshot: &Snapshot) -> Vec<ProxyStatus> {
        let records: Vec<ProxyRecord> = self.proxies.lock().values().cloned().collect();
        let mut out: Vec<ProxyStatus> = records
            .iter()
            .map(|r| status_of(r, &snapshot.view(&Scope::of(&r.node))))
            .collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    /// The newest stream of `node_id`.
    pub fn get(&self, node_id: &str) -> Option<ProxyRecord> {
        self.proxies
            .lock()
            .iter()
            .rev()
            .find(|(_, r)| r.node.id == node_id)
            .map(|(_, r)| r.clone())
    }

    /// Current rejections by Gateway (`namespace/name`), each sorted by node id.
    pub fn rejections(&self) -> BTreeMap<String, Vec<Rejection>> {
        let mut out: BTreeMap<String, Vec<Rejection>> = BTreeMap::new();
        for record in self.proxies.lock().values() {
            if let Some(r) = &record.rejection {
                for g in &r.gateways {
                    out.entry(g.clone()).or_default().push(r.clone());
                }
            }
        }
        for list in out.values_mut() {
            list.sort_by(|a, b| a.node.cmp(&b.node));
            list.dedup();
        }
        out
    }

    /// Changes whenever [`Fleet::rejections`] may have changed.
    pub fn watch_rejections(&self) -> watch::Receiver<u64> {
        self.rejections.subscribe()
    }

    fn rejections_changed(&self) {
        let rejecting = self
            .proxies
            .lock()
            .values()
            .filter(|r| r.rejection.is_some())
            .count();
        self.metrics.xds_rejecting_proxies.set(rejecting as i64);
        self.rejections.send_modify(|n| *n += 1);
    }

    /// Stops waiting for `id` in every rollout.
    fn forget(&self, id: u64) {
        let mut rollouts = self.rollouts.lock();
        for rollout in rollouts.iter_mut() {
            rollout.pending.remove(&id);
        }
        self.complete(&mut rollouts, Instant::now());
    }

    /// Observes and drops the rollouts every proxy has ACKed.
    fn complete(&self, rollouts: &mut VecDeque<Rollout>, now: Instant) {
        rollouts.retain(|r| {
            if r.pending.is_empty() {
                self.metrics
                    .xds_convergence_seconds
                    .observe(now.saturating_duration_since(r.observed).as_secs_f64());
                self.metrics
                    .xds_rollout_seconds
                    .observe(now.saturating_duration_since(r.published).as_secs_f64());
                false
            } else {
                true
            }
        });
    }
}

/// The Gateways a NACK concerns: the node's, else the Gateway named by each rejected resource
/// (Listener, RouteConfig, AttachedRoute names start with it), else every Gateway in `view`.
pub fn rejected_gateways(node: &Node, error: &ErrorDetail, view: &View) -> Vec<String> {
    if !node.gateways.is_empty() {
        return node.gateways.clone();
    }
    let named: BTreeSet<String> = error
        .resource_errors
        .iter()
        .filter_map(|e| gateway_of(&e.name))
        .collect();
    if !named.is_empty() {
        return named.into_iter().collect();
    }
    let all: BTreeSet<String> = view
        .resources
        .values()
        .filter_map(|v| match &*v.resource {
            serval_common::Resource::Listener(l) => Some(l.gateway.clone()),
            _ => None,
        })
        .collect();
    all.into_iter().collect()
}

/// `namespace/name` of the Gateway a per-Gateway resource belongs to.
fn gateway_of(resource: &str) -> Option<String> {
    let kind = ResourceKind::of_name(resource)?;
    if !matches!(
        kind,
        ResourceKind::Listener | ResourceKind::RouteConfig | ResourceKind::AttachedRoute
    ) {
        return None;
    }
    let mut parts = resource.split('/').skip(1);
    Some(format!("{}/{}", parts.next()?, parts.next()?))
}

fn status_of(r: &ProxyRecord, latest: &View) -> ProxyStatus {
    let acked = r.acked.as_ref().map(|v| &v.version);
    let nacked = r.rejection.as_ref().map(|x| &x.version);
    let state = if acked == Some(&latest.version) {
        SyncState::Synced
    } else if nacked == Some(&latest.version) {
        SyncState::Nacked
    } else if acked.is_some() || nacked.is_some() {
        SyncState::Stale
    } else {
        SyncState::Unspecified
    };
    ProxyStatus {
        node_id: r.node.id.clone(),
        gateways: r.node.gateways.clone(),
        acked_version: acked.map(ToString::to_string).unwrap_or_default(),
        nacked_version: nacked.map(ToString::to_string).unwrap_or_default(),
        last_error: r.last_error.clone().unwrap_or_default(),
        resource_count: u32::try_from(r.held_count).unwrap_or(u32::MAX),
        address: r.peer.map(|p| p.to_string()).unwrap_or_default(),
        connected_since: Some(timestamp(r.connected_since)),
        latest_version: latest.version.to_string(),
        state: state.into(),
        build_version: r.node.build_version.clone(),
        last_ack_time: r.last_ack.map(timestamp),
    }
}

fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_read_from_per_gateway_resource_names() {
        assert_eq!(gateway_of("listener/ns/gw/80").as_deref(), Some("ns/gw"));
        assert_eq!(
            gateway_of("attachedroute/ns/gw/httproute/app/web").as_deref(),
            Some("ns/gw")
        );
        assert_eq!(gateway_of("cluster/ns/svc/80"), None);
        assert_eq!(gateway_of("nonsense"), None);
    }
}
