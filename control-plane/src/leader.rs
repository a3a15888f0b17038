//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go does it: the holder renews
//! `renewTime` every retry period; another replica takes the Lease over once the record it observed
//! has not changed for `leaseDuration` (measured on its own clock, so clock skew between replicas
//! does not matter). Every write carries the observed `resourceVersion`, so two replicas can never
//! both win: the loser gets 409 Conflict.
//!
//! Every replica watches, translates and serves proxies; only the leader writes status. A leader
//! that cannot renew within the renew deadline steps down before its Lease can expire, and a
//! leader that shuts down releases the Lease so another takes over at once.

use crate::{metrics::Metrics, sources::kubernetes::kinds::LEASE};
use k8s_openapi::{
    api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serval_common::shutdown;
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

/// Election settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the Lease (the control plane's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down. An attempt lasts at most one retry
    /// period and attempts start at most two apart, so a leader stops at most `renew_deadline + 2
    /// × retry_period` after its last renewal started; the flags require that to be at most
    /// `lease_duration`, so it has stopped before another replica may take over.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// The Lease as last observed, and when (on our clock) it last changed.
#[derive(Debug)]
struct ObservedRecord {
    record: (Option<String>, Option<String>, Option<i32>),
    changed_at: Instant,
}

/// Runs the election until shutdown, publishing `true` on `leader` while this replica leads.
pub async fn run(
    client: Client,
    settings: Settings,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    mut shutdown: shutdown::Watch,
) {
    debug_assert_eq!(LEASE.1, "leases");
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut observed: Option<ObservedRecord> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        // A renewal counts from when its attempt started: the others start counting no earlier
        // than the moment it is committed. An attempt lasts at most one retry period.
        let started = Instant::now();
        let attempt = tokio::time::timeout(
            settings.retry_period,
            try_acquire_or_renew(&api, &settings, &mut observed),
        );
        // Some(true): we hold the Lease; Some(false): someone else does (or won a race);
        // None: the API server could not be asked.
        let held = tokio::select! {
            _ = shutdown.fired() => break,
            result = attempt => match result {
                Ok(Ok(held)) => held,
                Ok(Err(error)) => {
                    tracing::debug!(%error, lease = %settings.name, "lease attempt failed");
                    None
                }
                Err(_) => None,
            },
        };
        let now = Instant::now();
        let leading = *leader.borrow();
        match held {
            Some(true) => {
                last_renewed = Some(started);
                if !leading {
                    tracing::info!(identity = %settings.identity, lease = %settings.name, "became leader: writing status");
                    metrics.leader.set(1);
                    metrics.leader_acquisitions.inc();
                    leader.send_replace(true);
                }
            }
            // Another replica holds the Lease: stop writing at once.
            Some(false) if leading => {
                tracing::warn!(identity = %settings.identity, "the lease is held by another replica: no longer leader");
                metrics.leader.set(0);
                leader.send_replace(false);
            }
            // Could not renew: stop before the Lease can expire and another replica take over.
            None if leading
                && last_renewed
                    .is_none_or(|t| now.duration_since(t) >= settings.renew_deadline) =>
            {
                tracing::warn!(identity = %settings.identity, "could not renew the lease in time: no longer leader");
                metrics.leader.set(0);
                leader.send_replace(false);
            }
            _ => {}
        }
        tokio::select! {
            _ = shutdown.fired() => break,
            _ = tokio::time::sleep(settings.retry_period) => {}
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        metrics.leader.set(0);
        let release = release(&api, &settings);
        match tokio::time::timeout(Duration::from_secs(2), release).await {
            Ok(Ok(())) => tracing::info!("released the lease"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the lease"),
            Err(_) => tracing::warn!("could not release the lease within 2s"),
        }
    }
}

/// One round: create the Lease, renew it, or take it over when it expired. `Ok(Some(true))` when
/// this replica holds it afterwards, `Ok(Some(false))` when the Lease names another holder (or
/// another replica won the race to take it), `Ok(None)` when the outcome is unknown (our own
/// renewal conflicted, e.g. with a late-applied earlier one).
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &Settings,
    observed: &mut Option<ObservedRecord>,
) -> Result<Option<bool>, kube::Error> {
    let now = MicroTime(Timestamp::now());
    // Whole seconds, rounded up: the Lease must never claim less than this replica assumes.
    let duration_secs =
        i32::try_from(settings.lease_duration.as_millis().div_ceil(1000)).unwrap_or(i32::MAX);
    let Some(lease) = api.get_opt(&settings.name).await? else {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": settings.name, "namespace": settings.namespace},
            "spec": {
                "holderIdentity": settings.identity,
                "leaseDurationSeconds": duration_secs,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
        }))
        .map_err(kube::Error::SerdeError)?;
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Some(true)),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(Some(false)),
            Err(error) => Err(error),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let record = (
        holder.clone(),
        spec.renew_time.as_ref().map(|t| t.0.to_string()),
        spec.lease_transitions,
    );
    let instant = Instant::now();
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(ObservedRecord {
            record,
            changed_at: instant,
        });
    }
    let held_by_us = holder.as_deref() == Some(settings.identity.as_str());
    if !held_by_us && holder.is_some() {
        let their_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(settings.lease_duration, Duration::from_secs);
        let changed_at = observed.as_ref().map_or(instant, |o| o.changed_at);
        if instant.duration_since(changed_at) < their_duration {
            return Ok(Some(false));
        }
        tracing::info!(previous = ?holder, "the lease expired: taking over");
    }
    let transitions = spec.lease_transitions.unwrap_or(0);
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": lease.metadata.resource_version},
        "spec": {
            "holderIdentity": settings.identity,
            "leaseDurationSeconds": duration_secs,
            "renewTime": now,
            "acquireTime": if held_by_us { spec.acquire_time.unwrap_or_else(|| now.clone()) } else { now.clone() },
            "leaseTransitions": if held_by_us { transitions } else { transitions + 1 },
        }
    });
    match api
        .patch(
            &settings.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(Some(true)),
        // Taking over: another replica won. Renewing our own: unknown, retried.
        Err(kube::Error::Api(status)) if status.is_conflict() => Ok((!held_by_us).then_some(false)),
        Err(error) => Err(error),
    }
}

/// Gives the Lease up (empty holder, 1 s duration) so another replica takes over at once.
async fn release(api: &Api<Lease>, settings: &Settings) -> Result<(), kube::Error> {
    let Some(lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder != Some(settings.identity.as_str()) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": lease.metadata.resource_version},
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
    });
    api.patch(
        &settings.name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}
