//! Applying one delta response: held resources + upserts − removals → decode → compile → bind new
//! sockets → swap → start/stop sockets. Any failure before the swap rejects the whole response
//! (NACK) and leaves the running configuration untouched, with one exception: a socket the new
//! configuration drops and that overlaps one it adds (same port, wildcard or same IP) is closed
//! before binding, since both cannot be bound at once.

use crate::{
    config::{ConfigStore, compile},
    listeners::Listeners,
};
use serval_common::{
    Resource, ResourceKind,
    proto::discovery::v1::{DeltaConfigResponse, ErrorDetail, ResourceError},
};
use std::{net::IpAddr, sync::Arc};

/// Applies responses to the store and the sockets.
#[derive(Debug)]
pub struct Applier {
    /// The configuration.
    pub store: Arc<ConfigStore>,
    /// The sockets.
    pub listeners: Arc<Listeners>,
    /// `--bind-address`.
    pub bind_ip: Option<IpAddr>,
}

impl Applier {
    /// Applies `response`; `Err` is the NACK's error detail.
    pub async fn apply(&self, response: &DeltaConfigResponse) -> Result<(), ErrorDetail> {
        let current = self.store.load();
        let mut changes = compile::delta::Changes {
            removed: response.removed_resources.clone(),
            ..Default::default()
        };
        for r in &response.resources {
            let Some(any) = &r.resource else {
                return Err(one_error(
                    "",
                    &r.name,
                    format!("resource {}: no payload", r.name),
                ));
            };
            let decoded = Resource::from_any(&r.name, any)
                .map_err(|e| one_error(&any.type_url, &r.name, e.to_string()))?;
            changes
                .upserts
                .push((r.name.clone(), Arc::new(decoded), r.version.clone()));
        }
        let version = response.system_version_info.clone();
        // Only routes and endpoints changed: patch the running configuration; else compile
        // everything (reusing what is unchanged).
        let compiled = match compile::delta::apply(&current, version.clone(), &changes) {
            Some(done) => done,
            None => {
                let (resources, versions) =
                    changes.applied_to(&current.resources, &current.versions);
                compile::compile_with(
                    Some(&current.compiled),
                    version,
                    resources,
                    versions,
                    self.bind_ip,
                )
            }
        };
        let config = compiled.map_err(|e| {
            let type_url = ResourceKind::of_name(e.resource())
                .map(|k| k.type_url())
                .unwrap_or_default();
            one_error(&type_url, e.resource(), e.to_string())
        })?;
        self.listeners.release_overlapping(&config).await;
        let prepared = self.listeners.prepare(&config).map_err(|e| {
            let first = config
                .listeners
                .get(&e.addr)
                .and_then(|l| l.names.first().cloned())
                .unwrap_or_default();
            one_error(&ResourceKind::Listener.type_url(), &first, e.to_string())
        })?;
        let config = Arc::new(config);
        self.store.swap(Arc::clone(&config));
        self.listeners.commit(prepared, &config).await;
        Ok(())
    }
}

fn one_error(type_url: &str, name: &str, message: String) -> ErrorDetail {
    ErrorDetail {
        message: message.clone(),
        resource_errors: vec![ResourceError {
            type_url: type_url.to_owned(),
            name: name.to_owned(),
            message,
        }],
    }
}
