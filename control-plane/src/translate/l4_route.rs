//! TCPRoute and UDPRoute → one `Listener` resource (protocol `tcp` or `udp`) per programmed TCP or
//! UDP listener, plus each route's status.
//!
//! Attachment and status work as for HTTPRoute (`attach`, the same conditions and reasons). A
//! listener has no way to tell connections of two routes apart, so when several routes attach to
//! one listener all are Accepted and counted, and the oldest (then namespace/name order) serves
//! it. The backendRefs of every rule of that route share the traffic by weight; an invalid one
//! keeps its share and refuses the connections (or datagrams) that pick it.

use super::{
    Options,
    attach::{self, Attachment, ParentRef},
    backends::{self, BackendRef, Transport},
    gateway::GatewayModel,
    inputs::{Inputs, Key},
    status::{Condition, ObjectStatus, StatusMetadata, condition, reason},
};
use serde::Deserialize;
use serval_common::{Resource, names, proto::config::v1 as pb};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// TCPRoute, UDPRoute or TLSRoute.
#[derive(Clone, Copy, Debug)]
pub(super) struct L4Kind {
    name: &'static str,
    api_version: &'static str,
    listener_protocol: &'static str,
    transport: Transport,
}

/// TCPRoute.
pub(super) const TCP_ROUTE: L4Kind = L4Kind {
    name: "TCPRoute",
    api_version: "gateway.networking.k8s.io/v1alpha2",
    listener_protocol: "TCP",
    transport: Transport::Tcp,
};

/// UDPRoute.
pub(super) const UDP_ROUTE: L4Kind = L4Kind {
    name: "UDPRoute",
    api_version: "gateway.networking.k8s.io/v1alpha2",
    listener_protocol: "UDP",
    transport: Transport::Udp,
};

/// TLSRoute. No listener accepts it yet (TLS listeners are not supported), so each parent of ours
/// gets its status — `Accepted=False`, `NoMatchingParent` on a TLS listener, else
/// `NotAllowedByListeners` — and nothing is served. The fields it
/// shares with TCPRoute (parentRefs, rules' backendRefs) are all that is read.
pub(super) const TLS_ROUTE: L4Kind = L4Kind {
    name: "TLSRoute",
    api_version: "gateway.networking.k8s.io/v1",
    listener_protocol: "TLS",
    transport: Transport::Tcp,
};

/// The fields TCPRoute and UDPRoute share, read from either (they have the same schema).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct L4Route {
    #[serde(default)]
    spec: L4Spec,
    #[serde(default)]
    status: Option<L4Status>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct L4Spec {
    #[serde(default)]
    parent_refs: Vec<L4ParentRef>,
    #[serde(default)]
    rules: Vec<L4Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct L4ParentRef {
    group: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: String,
    section_name: Option<String>,
    port: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct L4Rule {
    #[serde(default)]
    backend_refs: Vec<L4BackendRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct L4BackendRef {
    group: Option<String>,
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    port: Option<i32>,
    weight: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
struct L4Status {
    #[serde(default)]
    parents: Vec<serde_json::Value>,
}

/// A route attached to a listener: (gateway, listener) → candidates ordered by age.
type Served = BTreeMap<(usize, usize), Vec<(RouteOrder, Vec<pb::L4Backend>)>>;

/// Oldest first, then namespace/name.
type RouteOrder = (Option<String>, Key);

/// Translates the routes of `kind` (any serializable TCPRoute/UDPRoute type) and adds the
/// listeners of that protocol to `resources`.
pub(super) fn translate<T: serde::Serialize>(
    kind: L4Kind,
    routes: &super::inputs::Map<Key, std::sync::Arc<T>>,
    inputs: &Inputs,
    opts: &Options,
    gateways: &mut [GatewayModel],
    resources: &mut super::Resources,
) -> Vec<Arc<ObjectStatus>> {
    let index: BTreeMap<Key, usize> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (g.key.clone(), i))
        .collect();
    let mut served: Served = BTreeMap::new();
    let mut statuses = Vec::new();
    for (key, typed) in routes {
        let value = serde_json::to_value(&**typed).unwrap_or_default();
        let metadata = value.get("metadata").cloned().unwrap_or_default();
        let route: L4Route = serde_json::from_value(value).unwrap_or_default();
        let generation = metadata
            .get("generation")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        let created = metadata
            .get("creationTimestamp")
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        let order: RouteOrder = (created, key.clone());
        if let Some(status) = translate_one(
            kind,
            inputs,
            opts,
            gateways,
            &index,
            resources,
            key,
            &route,
            generation,
            order,
            &mut served,
        ) {
            statuses.push(Arc::new(status));
        }
    }
    for ((g, l), mut candidates) in served {
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let backends = candidates.into_iter().next().map(|c| c.1);
        add_listener(kind, &gateways[g], l, backends, resources);
    }
    // Programmed listeners without routes are bound too (connections are refused).
    for gateway in gateways.iter() {
        for (l, listener) in gateway.listeners.iter().enumerate() {
            if listener.protocol == kind.listener_protocol && listener.is_programmed() {
                let name = listener_name(kind, gateway, listener.port);
                if !resources.contains_key(&name) {
                    add_listener(kind, gateway, l, None, resources);
                }
            }
        }
    }
    statuses
}

fn listener_name(kind: L4Kind, gateway: &GatewayModel, port: u16) -> String {
    let base = names::listener(&gateway.key.0, &gateway.key.1, port);
    if kind.listener_protocol == "UDP" {
        format!("{base}/udp")
    } else {
        base
    }
}

fn add_listener(
    kind: L4Kind,
    gateway: &GatewayModel,
    listener: usize,
    backends: Option<Vec<pb::L4Backend>>,
    resources: &mut super::Resources,
) {
    let Some(ip) = gateway.bind_ip else { return };
    let model = &gateway.listeners[listener];
    let name = listener_name(kind, gateway, model.port);
    let l4 = pb::L4Listener {
        backends: backends.unwrap_or_default(),
    };
    let protocol = if kind.listener_protocol == "UDP" {
        pb::listener::Protocol::Udp(l4)
    } else {
        pb::listener::Protocol::Tcp(l4)
    };
    resources.insert(
        name.clone(),
        Arc::new(Resource::Listener(pb::Listener {
            name,
            address: Some(pb::SocketAddress {
                ip: ip.to_string(),
                port: u32::from(model.port),
            }),
            gateway: gateway.id(),
            gateway_class: gateway.class.clone(),
            section_names: vec![model.name.clone()],
            protocol: Some(protocol),
        })),
    );
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the arguments
fn translate_one(
    kind: L4Kind,
    inputs: &Inputs,
    opts: &Options,
    gateways: &mut [GatewayModel],
    index: &BTreeMap<Key, usize>,
    resources: &mut super::Resources,
    (ns, name): &Key,
    route: &L4Route,
    generation: i64,
    order: RouteOrder,
    served: &mut Served,
) -> Option<ObjectStatus> {
    let parents = attach::of_ours(
        route.spec.parent_refs.iter().map(|p| {
            ParentRef::with_defaults(
                (p.group.as_ref(), p.kind.as_ref(), p.namespace.as_ref()),
                &p.name,
                (p.section_name.as_ref(), p.port),
                ns,
            )
        }),
        index,
    );
    if parents.is_empty() {
        return None;
    }
    let attachments: Vec<Attachment> = parents
        .iter()
        .map(|(parent, gw)| attach::attach(inputs, &gateways[*gw], parent, kind.name, ns, &[]))
        .collect();
    let attached = attachments
        .iter()
        .any(|a| matches!(a, Attachment::Attached(_)));
    let mut unresolved: Option<(&'static str, String)> = None;
    let mut backends = Vec::new();
    if attached {
        for (i, rule) in route.spec.rules.iter().enumerate() {
            for (j, b) in rule.backend_refs.iter().enumerate() {
                let backend = BackendRef::with_defaults(
                    (b.group.as_deref(), b.kind.as_deref()),
                    &b.name,
                    b.namespace.as_deref(),
                    b.port,
                    ns,
                );
                let cluster = match backends::resolve(
                    inputs,
                    kind.name,
                    kind.transport,
                    ns,
                    &backend,
                    &mut backends::Produced::new(resources),
                ) {
                    Ok(c) => c,
                    Err((r, m)) => {
                        unresolved
                            .get_or_insert((r, format!("spec.rules[{i}].backendRefs[{j}]: {m}")));
                        String::new()
                    }
                };
                backends.push(pb::L4Backend {
                    cluster,
                    weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
                });
            }
        }
    }
    let cond =
        |t: &str, ok: bool, r: &str, m: String| Condition::new(t, ok, r, m, generation, &opts.now);
    let mut ours = Vec::new();
    let mut counted = BTreeSet::new();
    for ((parent, gw), attachment) in parents.iter().zip(attachments) {
        let mut conditions = Vec::new();
        match attachment {
            Attachment::Rejected(r, m) => conditions.push(cond(condition::ACCEPTED, false, r, m)),
            Attachment::Attached(listeners) => {
                conditions.push(cond(
                    condition::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "accepted".into(),
                ));
                for (listener, _) in listeners {
                    if counted.insert((*gw, listener)) {
                        gateways[*gw].listeners[listener].attached_routes += 1;
                        served
                            .entry((*gw, listener))
                            .or_default()
                            .push((order.clone(), backends.clone()));
                    }
                }
            }
        }
        conditions.push(match &unresolved {
            Some((r, m)) => cond(condition::RESOLVED_REFS, false, r, m.clone()),
            None => cond(
                condition::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "resolved".into(),
            ),
        });
        ours.push(serde_json::json!({
            "parentRef": parent,
            "controllerName": opts.controller_name,
            "conditions": conditions,
        }));
    }
    // Entries of other controllers stay untouched, first.
    let mut parents_out: Vec<serde_json::Value> = route
        .status
        .iter()
        .flat_map(|s| &s.parents)
        .filter(|p| {
            p.get("controllerName").and_then(|c| c.as_str()) != Some(opts.controller_name.as_str())
        })
        .cloned()
        .collect();
    parents_out.extend(ours);
    Some(ObjectStatus {
        api_version: kind.api_version.to_owned(),
        kind: kind.name.to_owned(),
        metadata: StatusMetadata {
            name: name.clone(),
            namespace: Some(ns.clone()),
            generation,
        },
        status: serde_json::json!({ "parents": parents_out }),
    })
}
