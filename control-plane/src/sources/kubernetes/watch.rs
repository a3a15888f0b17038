//! One watcher per kind: find the version the API server serves (discovery, retried with backoff
//! while the API server is unreachable), then a kube-runtime `watcher` (list, then a long-lived
//! watch resumed from the last resourceVersion, re-listed with backoff when the watch is lost).
//!
//! Objects arrive as `DynamicObject`s and are decoded one by one into the typed Gateway API /
//! Kubernetes structs, so an object that does not decode is logged, counted and skipped while the
//! rest of its kind keeps flowing (a typed watcher would fail the whole list on it).
//! `managedFields` and the last-applied annotation are dropped before anything is kept.
//!
//! Not here: merging kinds and deciding when to translate (the store, [`super::store`]).

use super::kinds::Kind;
use crate::{
    metrics::{KindLabels, Metrics},
    sources::{
        ObservedStatus,
        objects::{self, Object, ObjectRef},
    },
};
use futures::StreamExt;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, TypeMeta},
    runtime::{WatchStreamExt, watcher},
};
use serval_common::shutdown;
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;

/// One object as the watcher saw it.
#[derive(Debug)]
pub(super) struct Seen {
    /// Which object.
    pub(super) reference: ObjectRef,
    /// Its newest version decoded; `None` when it does not decode (the store keeps the last good
    /// version, if it has one).
    pub(super) decoded: Option<(Object, ObservedStatus)>,
}

/// What a watcher reports to the store.
#[derive(Debug)]
pub(super) enum Change {
    /// The kind's complete current set (first listing, a re-list after a lost watch, or an empty
    /// set for a CRD that is not installed).
    Listed(Vec<Seen>),
    /// An object was created or changed.
    Applied(Box<Seen>),
    /// An object was deleted.
    Deleted(ObjectRef),
}

/// A change of one kind.
#[derive(Debug)]
pub(super) struct Update {
    /// Which kind.
    pub(super) kind: &'static Kind,
    /// What changed.
    pub(super) change: Change,
}

/// How often a kind whose CRD is not installed is looked for again.
const CRD_RECHECK: Duration = Duration::from_secs(30);
/// Discovery retry backoff while the API server is unreachable.
const DISCOVERY_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(10));

/// Watches `kind` until shutdown (or until the store is gone).
pub(super) async fn run(
    client: Client,
    kind: &'static Kind,
    updates: mpsc::Sender<Update>,
    metrics: Arc<Metrics>,
    mut shutdown: shutdown::Watch,
) {
    let labels = KindLabels::of(kind.kind);
    let mut reported_missing = false;
    let version = loop {
        let found = tokio::select! {
            _ = shutdown.fired() => return,
            found = discover(&client, kind, &metrics) => found,
        };
        if let Some(version) = found {
            break version;
        }
        if !reported_missing {
            reported_missing = true;
            tracing::warn!(
                kind = kind.kind,
                group = kind.group,
                versions = ?kind.versions,
                "the API server does not serve this kind (CRD not installed?); skipped, looked for again every {}s",
                CRD_RECHECK.as_secs()
            );
            metrics
                .kubernetes_kind_missing
                .get_or_create(&labels)
                .set(1);
            // Listed once as empty, so the first sync does not wait for it.
            let listed = Update {
                kind,
                change: Change::Listed(Vec::new()),
            };
            if updates.send(listed).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.fired() => return,
            _ = tokio::time::sleep(CRD_RECHECK) => {}
        }
    };
    metrics
        .kubernetes_kind_missing
        .get_or_create(&labels)
        .set(0);
    let resource = ApiResource {
        group: kind.group.to_owned(),
        version: version.to_owned(),
        api_version: api_version(kind.group, version),
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
    };
    tracing::info!(kind = kind.kind, api_version = %resource.api_version, "watching");
    watch_served(client, kind, &resource, updates, &metrics, shutdown).await;
}

/// Watches `kind` at the version the API server serves.
async fn watch_served(
    client: Client,
    kind: &'static Kind,
    resource: &ApiResource,
    updates: mpsc::Sender<Update>,
    metrics: &Metrics,
    mut shutdown: shutdown::Watch,
) {
    let labels = KindLabels::of(kind.kind);
    let api: Api<DynamicObject> = Api::all_with(client, resource);
    let mut config = watcher::Config::default();
    if let Some(selector) = kind.field_selector {
        config = config.fields(selector);
    }
    let types = TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    };
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut listing: Vec<Seen> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.fired() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        let change = match event {
            Err(error) => {
                metrics.kubernetes_watch_errors.get_or_create(&labels).inc();
                tracing::warn!(kind = kind.kind, %error, "watch failed; retrying with backoff");
                continue;
            }
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(seen) = decode(kind, &types, object, metrics) {
                    listing.push(seen);
                }
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                metrics.kubernetes_listings.get_or_create(&labels).inc();
                Change::Listed(std::mem::take(&mut listing))
            }
            Ok(watcher::Event::Apply(object)) => match decode(kind, &types, object, metrics) {
                Some(seen) => Change::Applied(Box::new(seen)),
                None => continue,
            },
            Ok(watcher::Event::Delete(object)) => {
                metrics.kubernetes_events.get_or_create(&labels).inc();
                Change::Deleted(object_ref(kind, &object))
            }
        };
        if updates.send(Update { kind, change }).await.is_err() {
            return;
        }
    }
}

/// The first of `kind.versions` the API server serves; `None` when it serves none of them.
/// Retries (with backoff) while the API server cannot be asked.
async fn discover(client: &Client, kind: &Kind, metrics: &Metrics) -> Option<&'static str> {
    let mut delay = DISCOVERY_BACKOFF.0;
    loop {
        match served_version(client, kind).await {
            Ok(found) => return found,
            Err(error) => {
                metrics
                    .kubernetes_watch_errors
                    .get_or_create(&KindLabels::of(kind.kind))
                    .inc();
                tracing::warn!(kind = kind.kind, %error, retry_in = ?delay, "API discovery failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(DISCOVERY_BACKOFF.1);
            }
        }
    }
}

async fn served_version(client: &Client, kind: &Kind) -> Result<Option<&'static str>, kube::Error> {
    for &version in kind.versions {
        let listed = if kind.group.is_empty() {
            client.list_core_api_resources(version).await
        } else {
            client
                .list_api_group_resources(&api_version(kind.group, version))
                .await
        };
        match listed {
            Ok(list) if list.resources.iter().any(|r| r.name == kind.plural) => {
                return Ok(Some(version));
            }
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Decodes one object into its typed form. `None` when it does not pass the kind's field
/// selector; a [`Seen`] without a decoded object (logged and counted) when it does not decode.
fn decode(
    kind: &Kind,
    types: &TypeMeta,
    mut object: DynamicObject,
    metrics: &Metrics,
) -> Option<Seen> {
    let labels = KindLabels::of(kind.kind);
    metrics.kubernetes_events.get_or_create(&labels).inc();
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    object.types = Some(types.clone());
    let reference = object_ref(kind, &object);
    if !passes_selector(kind, &object) {
        return None;
    }
    let observed = ObservedStatus {
        resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
        status: object
            .data
            .get("status")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
    };
    let decoded = serde_json::to_value(&object)
        .map_err(|e| e.to_string())
        .and_then(|value| {
            objects::parse_values("kubernetes", vec![value]).map_err(|e| e.to_string())
        })
        .map(|parsed| parsed.objects.into_iter().next());
    match decoded {
        Ok(Some(decoded)) => Some(Seen {
            reference,
            decoded: Some((decoded, observed)),
        }),
        Ok(None) => None,
        Err(error) => {
            metrics
                .kubernetes_decode_errors
                .get_or_create(&labels)
                .inc();
            tracing::warn!(
                object = %reference,
                resource_version = observed.resource_version,
                %error,
                "object does not decode; skipped (this replica keeps its last good version, if it has one)"
            );
            Some(Seen {
                reference,
                decoded: None,
            })
        }
    }
}

/// The client-side check of the field selector (some API servers and emulators ignore it): only
/// `type=kubernetes.io/tls` Secrets are kept.
fn passes_selector(kind: &Kind, object: &DynamicObject) -> bool {
    match kind.field_selector {
        Some(selector) => {
            let wanted = selector.strip_prefix("type=").unwrap_or(selector);
            object.data.get("type").and_then(|t| t.as_str()) == Some(wanted)
        }
        None => true,
    }
}

fn object_ref(kind: &Kind, object: &DynamicObject) -> ObjectRef {
    ObjectRef {
        kind: kind.kind,
        namespace: if kind.namespaced {
            object.metadata.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        },
        name: object.metadata.name.clone().unwrap_or_default(),
    }
}
