//! Route attachment: which listeners of a Gateway a route's `parentRef` binds to, checking
//! `sectionName`, `port`, the kinds the listener asks for, whether it is programmed, its
//! `allowedRoutes` (kinds and namespaces) and the hostname intersection, in that order, so the
//! reason reported is the first check that failed.
//!
//! Whether the route's rules are valid is not decided here.

use super::{
    gateway::{GATEWAY_GROUP, GatewayModel},
    hostname,
    inputs::Inputs,
    status::reason,
};

/// A route's reference to a parent, defaults applied.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ParentRef {
    pub(super) group: String,
    pub(super) kind: String,
    pub(super) namespace: String,
    pub(super) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<i32>,
}

impl ParentRef {
    /// A parentRef as written in a route in `route_ns`, with the defaults applied (group
    /// `gateway.networking.k8s.io`, kind `Gateway`, the route's namespace).
    pub(super) fn with_defaults(
        (group, kind, namespace): (Option<&String>, Option<&String>, Option<&String>),
        name: &str,
        (section_name, port): (Option<&String>, Option<i32>),
        route_ns: &str,
    ) -> Self {
        Self {
            group: group.cloned().unwrap_or_else(|| GATEWAY_GROUP.to_owned()),
            kind: kind.cloned().unwrap_or_else(|| "Gateway".to_owned()),
            namespace: namespace.cloned().unwrap_or_else(|| route_ns.to_owned()),
            name: name.to_owned(),
            section_name: section_name.cloned(),
            port,
        }
    }

    /// True if this refers to a Gateway (the only parent kind so far).
    pub(super) fn is_gateway(&self) -> bool {
        self.group == GATEWAY_GROUP && self.kind == "Gateway"
    }
}

/// Those of `parents` that name a Gateway of ours, each with that Gateway's index.
pub(super) fn of_ours(
    parents: impl IntoIterator<Item = ParentRef>,
    gateways: &std::collections::BTreeMap<super::inputs::Key, usize>,
) -> Vec<(ParentRef, usize)> {
    parents
        .into_iter()
        .filter(ParentRef::is_gateway)
        .filter_map(|p| {
            let gw = *gateways.get(&(p.namespace.clone(), p.name.clone()))?;
            Some((p, gw))
        })
        .collect()
}

/// The outcome of attaching one parentRef.
#[derive(Debug)]
pub(super) enum Attachment {
    /// Attached to these listeners (indices into the Gateway's listeners), each with the hostnames
    /// a request must carry to reach the route through it (`*` for any).
    Attached(Vec<(usize, Vec<String>)>),
    /// Not attached: (reason, message).
    Rejected(&'static str, String),
}

/// Attaches a route of `route_kind` in `route_ns` with `route_hostnames` (lower-cased; empty: any)
/// through `parent` to `gateway`.
pub(super) fn attach(
    inputs: &Inputs,
    gateway: &GatewayModel,
    parent: &ParentRef,
    route_kind: &str,
    route_ns: &str,
    route_hostnames: &[String],
) -> Attachment {
    if gateway.bind_ip.is_none() {
        return Attachment::Rejected(
            reason::NO_MATCHING_PARENT,
            format!("Gateway {} has no usable address", gateway.id()),
        );
    }
    let candidates: Vec<usize> = gateway
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| p == i32::from(l.port)))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let what = match (&parent.section_name, parent.port) {
            (Some(s), Some(p)) => format!("listener {s:?} on port {p}"),
            (Some(s), None) => format!("listener {s:?}"),
            (None, Some(p)) => format!("listener on port {p}"),
            (None, None) => "listener".to_owned(),
        };
        return Attachment::Rejected(
            reason::NO_MATCHING_PARENT,
            format!("Gateway {} has no {what}", gateway.id()),
        );
    }
    if !candidates.iter().any(|i| {
        gateway.listeners[*i]
            .requested_kinds
            .iter()
            .any(|k| k == route_kind)
    }) {
        return Attachment::Rejected(
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of Gateway {} allows route kind {route_kind}",
                gateway.id()
            ),
        );
    }
    let programmed: Vec<usize> = candidates
        .into_iter()
        .filter(|i| gateway.listeners[*i].is_programmed())
        .collect();
    if programmed.is_empty() {
        return Attachment::Rejected(
            reason::NO_MATCHING_PARENT,
            "no matching listener is valid".to_owned(),
        );
    }
    let allowed: Vec<usize> = programmed
        .into_iter()
        .filter(|i| {
            let l = &gateway.listeners[*i];
            l.supported_kinds.contains(&route_kind)
                && l.allows_namespace(inputs, &gateway.key.0, route_ns)
        })
        .collect();
    if allowed.is_empty() {
        return Attachment::Rejected(
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of Gateway {} allows this {route_kind} from namespace {route_ns:?}",
                gateway.id()
            ),
        );
    }
    let mut attached = Vec::new();
    for i in allowed {
        let listener = gateway.listeners[i].hostname.as_deref();
        let hostnames: Vec<String> = if route_hostnames.is_empty() {
            vec![listener.unwrap_or("*").to_owned()]
        } else {
            let mut h: Vec<String> = route_hostnames
                .iter()
                .filter_map(|r| hostname::intersect(listener, r))
                .collect();
            h.sort();
            h.dedup();
            h
        };
        if !hostnames.is_empty() {
            attached.push((i, hostnames));
        }
    }
    if attached.is_empty() {
        return Attachment::Rejected(
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            "no listener hostname intersects the route's hostnames".to_owned(),
        );
    }
    Attachment::Attached(attached)
}
