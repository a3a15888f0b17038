//! Applying a delta to a compiled configuration in place: when a response changes only
//! AttachedRoutes, Clusters and ClusterLoadAssignments (route churn, endpoint churn), the new
//! configuration is the previous one with the changed Clusters and AttachedRoutes compiled and
//! only the virtual hosts they reach rebuilt — the work follows the size of the change, not of the
//! configuration. Every map is persistent (`Held`), so the copy shares the rest.
//!
//! The result is exactly what [`super::compile_with`] would give for the same resources (the
//! tests check it over random sequences of changes); any other change (a Listener, a
//! RouteConfig, a Secret, a Cluster a TCP or UDP listener uses, a socket shared with a TCP
//! proxy) returns `None` and the caller compiles in full.

use super::{Compiled, Held, RouteConfigHosts, add_to, cluster, invalid, remove_from, route_table};
use crate::{
    config::{Config, ListenerConfig},
    upstream::Cluster,
};
use serval_common::{Resource, ResourceKind, hostname, proto::config::v1 as pb};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
};

/// One response's changes, decoded.
#[derive(Debug, Default)]
pub struct Changes {
    /// Added or changed resources with their versions.
    pub upserts: Vec<(String, Arc<Resource>, String)>,
    /// Removed resource names.
    pub removed: Vec<String>,
}

impl Changes {
    /// `resources` and `versions` with these changes applied.
    pub fn applied_to(
        &self,
        resources: &Held<Arc<Resource>>,
        versions: &Held<String>,
    ) -> (Held<Arc<Resource>>, Held<String>) {
        let (mut resources, mut versions) = (resources.clone(), versions.clone());
        for name in &self.removed {
            resources.remove(name);
            versions.remove(name);
        }
        for (name, resource, version) in &self.upserts {
            resources.insert(name.clone(), Arc::clone(resource));
            versions.insert(name.clone(), version.clone());
        }
        (resources, versions)
    }
}

/// `previous` with `changes` applied, or `None` when the change is not one this path handles
/// (then compile in full). `Some(Err(_))` is a rejection, as the full compile would give.
pub fn apply(
    previous: &Config,
    version: String,
    changes: &Changes,
) -> Option<Result<Config, super::CompileError>> {
    if previous.listeners.is_empty() && previous.udp.is_empty() {
        return None;
    }
    // What kind each changed name is, before or after.
    let mut clusters_changed = BTreeSet::new();
    let mut assignments_changed = BTreeSet::new();
    let mut routes_changed = BTreeSet::new();
    let removed = changes
        .removed
        .iter()
        .filter_map(|n| Some((n, previous.resources.get(n)?)));
    let upserted = changes.upserts.iter().map(|(n, r, _)| (n, r));
    for (name, resource) in removed.chain(upserted) {
        let before = previous.resources.get(name).map(|r| r.kind());
        if before.is_some_and(|k| k != resource.kind()) {
            return None;
        }
        match resource.kind() {
            ResourceKind::Cluster => clusters_changed.insert(name.clone()),
            ResourceKind::ClusterLoadAssignment => assignments_changed.insert(name.clone()),
            ResourceKind::AttachedRoute => routes_changed.insert(name.clone()),
            ResourceKind::Listener | ResourceKind::RouteConfig | ResourceKind::Secret => {
                return None;
            }
        };
    }
    let (resources, versions) = changes.applied_to(&previous.resources, &previous.versions);
    let compiled = previous.compiled.clone();
    for cla in &assignments_changed {
        if let Some(users) = compiled.assignments.get(cla) {
            clusters_changed.extend(users.iter().cloned());
        }
    }
    if clusters_changed.iter().any(|c| used_by_l4(previous, c)) {
        return None;
    }
    Some(patch(
        previous,
        version,
        (resources, versions),
        compiled,
        clusters_changed,
        routes_changed,
    ))
}

fn patch(
    previous: &Config,
    version: String,
    (resources, versions): (Held<Arc<Resource>>, Held<String>),
    mut compiled: Compiled,
    clusters_changed: BTreeSet<String>,
    mut routes_changed: BTreeSet<String>,
) -> Result<Config, super::CompileError> {
    let known = |name: &str| versions.get(name).cloned().unwrap_or_default();
    // Clusters first: the routes compile against them.
    for name in &clusters_changed {
        if let Some(old) = previous.resources.get(name).and_then(|r| as_cluster(r)) {
            remove_from(&mut compiled.assignments, &old.load_assignment_name, name);
        }
        match resources.get(name).and_then(|r| as_cluster(r)) {
            Some(c) => {
                let arc = Arc::new(cluster(c, &resources)?);
                compiled
                    .cluster_versions
                    .insert(name.clone(), (known(name), known(&c.load_assignment_name)));
                add_to(&mut compiled.assignments, &c.load_assignment_name, name);
                compiled.clusters.insert(name.clone(), arc);
            }
            None => {
                compiled.cluster_versions.remove(name);
                compiled.clusters.remove(name);
            }
        }
        if let Some(users) = compiled.users.get(name) {
            routes_changed.extend(users.iter().cloned());
        }
    }
    // Then the AttachedRoutes, and which hostnames of which served RouteConfig they touch.
    let mut touched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &routes_changed {
        let old = previous.resources.get(name).and_then(|r| as_route(r));
        let new = resources.get(name).and_then(|r| as_route(r));
        if let Some(before) = compiled.routes.remove(name) {
            for (cluster, _) in &before.clusters {
                remove_from(&mut compiled.users, cluster, name);
            }
        }
        if let Some(old) = old {
            for rc in served(&compiled, old) {
                let mut state = compiled.hosts.get(&rc).cloned().unwrap_or_default();
                for a in old.attachments.iter().filter(|a| a.route_config == rc) {
                    for h in &a.hostnames {
                        detach(&mut state, h, name);
                        touched.entry(rc.clone()).or_default().insert(h.clone());
                    }
                }
                compiled.hosts.insert(rc, state);
            }
        }
        let Some(new) = new else { continue };
        check_attachments(new, &resources)?;
        let rcs = served(&compiled, new);
        if rcs.is_empty() {
            continue;
        }
        let built = route_table::compile_attached_route(new, known(name), &compiled.clusters)?;
        for (cluster, _) in &built.clusters {
            add_to(&mut compiled.users, cluster, name);
        }
        compiled.routes.insert(name.clone(), Arc::new(built));
        for rc in rcs {
            let mut state = compiled.hosts.get(&rc).cloned().unwrap_or_default();
            for (h, section) in route_table::attachments_to(new, &rc)? {
                attach(&mut state, h, name, section);
                touched.entry(rc.clone()).or_default().insert(h.to_owned());
            }
            compiled.hosts.insert(rc, state);
        }
    }
    // The virtual hosts those hostnames reach, rebuilt.
    let mut rebuilt: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rc_name, hostnames) in touched {
        let Some(rc) = resources.get(&rc_name).and_then(|r| as_route_config(r)) else {
            continue;
        };
        let Some(mut state) = compiled.hosts.get(&rc_name).cloned() else {
            continue;
        };
        let patterns = reached(rc, &state, &hostnames);
        let rc_version = known(&rc_name);
        for pattern in &patterns {
            let is_pattern = state.attached.contains_key(pattern)
                || rc.listeners.iter().any(|l| l.hostname == *pattern);
            let kept = state.hosts.get(pattern);
            let host = is_pattern
                .then(|| {
                    route_table::build_host(
                        rc,
                        &rc_version,
                        pattern,
                        &state.attached,
                        &compiled.routes,
                        kept,
                    )
                })
                .flatten();
            match host {
                Some(host) => state.hosts.insert(pattern.clone(), host),
                None => state.hosts.remove(pattern),
            };
        }
        compiled.hosts.insert(rc_name.clone(), state);
        rebuilt.insert(rc_name, patterns);
    }
    let listeners = route_sockets(previous, &resources, &compiled, &rebuilt)?;
    Ok(Config {
        version,
        resources,
        versions,
        listeners,
        udp: previous.udp.clone(),
        compiled,
    })
}

/// The sockets with the rebuilt virtual hosts swapped in: for each pattern, the first Listener
/// (by name) on the socket whose RouteConfig has a host for it serves it, as in the full compile.
fn route_sockets(
    previous: &Config,
    resources: &Held<Arc<Resource>>,
    compiled: &Compiled,
    rebuilt: &BTreeMap<String, BTreeSet<String>>,
) -> Result<BTreeMap<SocketAddr, ListenerConfig>, super::CompileError> {
    let mut listeners = previous.listeners.clone();
    for (addr, socket) in &mut listeners {
        let rcs: Vec<&str> = socket
            .names
            .iter()
            .filter_map(|l| route_config_of(resources, l))
            .collect();
        let patterns: BTreeSet<&String> = rcs
            .iter()
            .filter_map(|rc| rebuilt.get(*rc))
            .flatten()
            .collect();
        for pattern in patterns {
            let winner = rcs.iter().find_map(|rc| {
                compiled
                    .hosts
                    .get(*rc)
                    .and_then(|state| state.hosts.get(pattern))
            });
            match winner {
                Some(host) => socket.router.hosts.set(pattern, Arc::clone(&host.host)),
                None => socket.router.hosts.remove(pattern),
            }
        }
        if socket.tcp.is_some() && !socket.router.hosts.is_empty() {
            return Err(invalid(
                &socket.names.join(", "),
                "protocol",
                format!("{addr} is both an HTTP and a TCP listener"),
            ));
        }
    }
    Ok(listeners)
}

/// The patterns of `rc` a change to `hostnames` reaches: each hostname, and every pattern a
/// wildcard among them covers (its routes are in those hosts too).
fn reached(
    rc: &pb::RouteConfig,
    state: &RouteConfigHosts,
    hostnames: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = hostnames.clone();
    if hostnames.iter().any(|h| h.starts_with('*')) {
        let all = state
            .hosts
            .keys()
            .chain(state.attached.keys())
            .chain(rc.listeners.iter().map(|l| &l.hostname));
        for pattern in all {
            if hostnames.iter().any(|h| hostname::covers(h, pattern)) {
                out.insert(pattern.clone());
            }
        }
    }
    out
}

/// The served RouteConfigs `ar` attaches to.
fn served(compiled: &Compiled, ar: &pb::AttachedRoute) -> BTreeSet<String> {
    ar.attachments
        .iter()
        .filter(|a| compiled.hosts.contains_key(&a.route_config))
        .map(|a| a.route_config.clone())
        .collect()
}

/// Removes every attachment of `ar` with hostname `h`.
fn detach(state: &mut RouteConfigHosts, h: &str, ar: &str) {
    let Some(list) = state.attached.get(h) else {
        return;
    };
    let kept: Vec<(String, String)> = list.iter().filter(|(n, _)| n != ar).cloned().collect();
    if kept.is_empty() {
        state.attached.remove(h);
    } else if kept.len() != list.len() {
        state.attached.insert(h.to_owned(), Arc::new(kept));
    }
}

/// Adds `ar` through `section` with hostname `h`, after the AttachedRoutes sorting before it and
/// its own earlier attachments (the order the full compile gathers them in).
fn attach(state: &mut RouteConfigHosts, h: &str, ar: &str, section: &str) {
    let mut list: Vec<(String, String)> = state
        .attached
        .get(h)
        .map(|l| l.as_ref().clone())
        .unwrap_or_default();
    let at = list.partition_point(|(n, _)| n.as_str() <= ar);
    list.insert(at, (ar.to_owned(), section.to_owned()));
    state.attached.insert(h.to_owned(), Arc::new(list));
}

/// Every RouteConfig `ar` names is held and has the listener it names.
fn check_attachments(
    ar: &pb::AttachedRoute,
    resources: &Held<Arc<Resource>>,
) -> Result<(), super::CompileError> {
    for (i, a) in ar.attachments.iter().enumerate() {
        let rc = resources
            .get(&a.route_config)
            .and_then(|r| as_route_config(r));
        route_table::check_attachment(ar, i, a, rc)?;
    }
    Ok(())
}

/// True when a TCP or UDP socket forwards to Cluster `name`.
fn used_by_l4(config: &Config, name: &str) -> bool {
    let uses = |backends: &crate::l4::L4Backends| {
        backends
            .cumulative
            .iter()
            .any(|(_, c): &(u64, Option<Arc<Cluster>>)| c.as_ref().is_some_and(|c| c.name == name))
    };
    config
        .listeners
        .values()
        .filter_map(|l| l.tcp.as_deref())
        .any(uses)
        || config.udp.values().any(|u| uses(&u.backends))
}

fn route_config_of<'a>(resources: &'a Held<Arc<Resource>>, listener: &str) -> Option<&'a str> {
    match resources.get(listener).map(|r| &**r) {
        Some(Resource::Listener(pb::Listener {
            protocol: Some(pb::listener::Protocol::Http(http)),
            ..
        })) => Some(&http.route_config_name),
        _ => None,
    }
}

fn as_cluster(r: &Resource) -> Option<&pb::Cluster> {
    match r {
        Resource::Cluster(c) => Some(c),
        _ => None,
    }
}

fn as_route(r: &Resource) -> Option<&pb::AttachedRoute> {
    match r {
        Resource::AttachedRoute(ar) => Some(ar),
        _ => None,
    }
}

fn as_route_config(r: &Resource) -> Option<&pb::RouteConfig> {
    match r {
        Resource::RouteConfig(rc) => Some(rc),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
