//! The translation of a change to a few HTTPRoutes, as a patch of the previous output: only the
//! changed routes are translated; their Clusters (counted by how many routes produce them),
//! AttachedRoutes, statuses and the `attachedRoutes` of the listeners they count in are replaced
//! in the previous output; everything else — including the output maps themselves, which are
//! persistent — is shared. The cost follows the size of the change, not the number of routes.
//!
//! It applies only when nothing else a route's translation reads changed (GatewayClasses,
//! Gateways, Namespaces, ReferenceGrants, Secrets, Services, EndpointSlices, the controller name),
//! no GRPCRoute, TCPRoute, UDPRoute or TLSRoute changed, no GRPCRoute has entries (HTTPRoutes and
//! GRPCRoutes on one listener may conflict, which is a global decision), and at most a few
//! percent of the routes changed. Otherwise `None`: the caller translates in full (still reusing
//! unchanged routes). The result equals translation from scratch; the golden tests check it for
//! every case, object by object.

use super::{
    super::{
        Options, Output, gateway, gateway_class,
        http_route::{self, HTTP_ROUTE},
        inputs::{Inputs, Key},
        route_config,
        status::ObjectStatus,
    },
    Incremental, changed_services, differing, same, same_context,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// The last output, with how many routes produce each Cluster and ClusterLoadAssignment.
#[derive(Debug)]
pub(super) struct Last {
    /// The output as returned.
    pub(super) output: Output,
    /// Resource name → number of routes (one for all TCP, UDP and TLS routes together) producing
    /// it.
    pub(super) producers: BTreeMap<String, usize>,
}

/// Routes that may change at once for a patch: more, and a full translation is as cheap.
fn limit(routes: usize) -> usize {
    (routes / 20).max(64)
}

/// The output for `inputs` as a patch of the last one, or `None` (see the module docs).
pub(super) fn translate(inc: &mut Incremental, inputs: &Inputs, opts: &Options) -> Option<Output> {
    let (previous, controller) = inc.previous.as_ref()?;
    let last = inc.last.as_mut()?;
    let unchanged_context = *controller == opts.controller_name
        && same_context(previous, inputs)
        && changed_services(previous, inputs).is_empty()
        && same(&previous.grpc_routes, &inputs.grpc_routes)
        && same(&previous.tcp_routes, &inputs.tcp_routes)
        && same(&previous.udp_routes, &inputs.udp_routes)
        && same(&previous.tls_routes, &inputs.tls_routes);
    if !unchanged_context || inc.memos.grpc_entries {
        return None;
    }
    let mut changed: Vec<Key> = Vec::new();
    differing(&previous.http_routes, &inputs.http_routes, |k| {
        changed.push(k.clone());
        true
    });
    if changed.len() > limit(inputs.http_routes.len()) {
        return None;
    }
    // The Gateways as analysed, with the counts the last translation left.
    let (classes, _) = gateway_class::translate(inputs, opts);
    let mut gateways = gateway::analyze(inputs, &classes);
    if gateways.len() != inc.memos.counts.len()
        || gateways
            .iter()
            .zip(&inc.memos.counts)
            .any(|(g, c)| g.listeners.len() != c.len())
    {
        return None;
    }
    for (g, counts) in gateways.iter_mut().zip(&inc.memos.counts) {
        for (l, count) in g.listeners.iter_mut().zip(counts) {
            l.attached_routes = *count;
        }
    }
    let index: BTreeMap<Key, usize> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (g.key.clone(), i))
        .collect();
    let served = route_config::served(&gateways);
    let mut out = last.output.clone();
    out.diagnostics = inputs.diagnostics.clone();
    out.diagnostics
        .extend(super::super::class_diagnostics(inputs, &classes));
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for key in &changed {
        if let Some(old) = inc.memos.http_routes.remove(key) {
            for (g, l) in &old.counted {
                let count = &mut gateways[*g].listeners[*l].attached_routes;
                *count = count.saturating_sub(1);
            }
            for name in distinct(&old.names) {
                let left = last.producers.get_mut(name).map(|n| {
                    *n -= 1;
                    *n
                });
                if left == Some(0) {
                    last.producers.remove(name);
                    out.resources.remove(name);
                }
                touched.insert(name.to_owned());
            }
            route_config::forget(
                &old.entries,
                &mut out.resources,
                &mut inc.memos.attached_routes,
            );
            if let Some(status) = &old.status {
                remove_status(&mut out.statuses, status);
            }
        }
        let Some(source) = inputs.http_routes.get(key) else {
            continue;
        };
        let translated = Arc::new(http_route::translate_one(
            HTTP_ROUTE,
            None,
            inputs,
            opts,
            &gateways,
            &index,
            &mut out.resources,
            key,
            source,
        ));
        for (g, l) in &translated.counted {
            gateways[*g].listeners[*l].attached_routes += 1;
        }
        for name in distinct(&translated.names) {
            *last.producers.entry(name.to_owned()).or_default() += 1;
            touched.insert(name.to_owned());
        }
        route_config::remember(
            &gateways,
            &served,
            &translated.entries,
            &mut out.resources,
            &mut inc.memos.attached_routes,
        );
        if let Some(status) = &translated.status {
            put_status(&mut out.statuses, Arc::clone(status));
        }
        inc.memos.http_routes.insert(key, source, &translated);
    }
    for name in &touched {
        // TCP, UDP and TLS routes write last in a full translation.
        if let Some(resource) = inc.memos.l4.get(name) {
            out.resources.insert(name.clone(), Arc::clone(resource));
        }
        match out.resources.get(name) {
            Some(resource) => inc.clusters.insert(name.clone(), Arc::clone(resource)),
            None => inc.clusters.remove(name),
        };
    }
    for g in &gateways {
        put_status(&mut out.statuses, Arc::new(g.status(opts)));
    }
    inc.memos.counts = super::super::attached_counts(&gateways);
    out.reused_routes =
        (inputs.http_routes.len() + inputs.grpc_routes.len()).saturating_sub(changed.len());
    last.output = out.clone();
    Some(out)
}

/// The names in `names`, each once.
fn distinct(names: &[String]) -> BTreeSet<&str> {
    names.iter().map(String::as_str).collect()
}

/// Where `status` sorts in `statuses` (by kind, namespace, name).
fn position(statuses: &[Arc<ObjectStatus>], status: &ObjectStatus) -> Result<usize, usize> {
    let key = |s: &ObjectStatus| {
        (
            s.kind.clone(),
            s.metadata.namespace.clone(),
            s.metadata.name.clone(),
        )
    };
    let wanted = key(status);
    statuses.binary_search_by(|s| {
        (&s.kind, &s.metadata.namespace, &s.metadata.name).cmp(&(&wanted.0, &wanted.1, &wanted.2))
    })
}

fn remove_status(statuses: &mut Vec<Arc<ObjectStatus>>, status: &ObjectStatus) {
    if let Ok(at) = position(statuses, status) {
        statuses.remove(at);
    }
}

/// Puts `status` in its place, replacing the object's previous one.
fn put_status(statuses: &mut Vec<Arc<ObjectStatus>>, status: Arc<ObjectStatus>) {
    match position(statuses, &status) {
        Ok(at) => statuses[at] = status,
        Err(at) => statuses.insert(at, status),
    }
}
