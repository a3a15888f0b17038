//! Gateway: addresses, listener validation (protocol, allowed route kinds, conflicts on one port)
//! and the Gateway's status with per-listener conditions and attached-route counts.
//!
//! Route attachment itself is decided in `attach`; this module only counts what attached. The
//! certificates of HTTPS listeners are resolved in `certificates`.

use super::{
    Options, certificates,
    inputs::{Inputs, Key},
    status::{Condition, GATEWAY_API_VERSION, ObjectStatus, StatusMetadata, condition, reason},
};
use gateway_api::gateways::{
    Gateway, GatewayListenersAllowedRoutesNamespacesFrom as From,
    GatewayListenersAllowedRoutesNamespacesSelector as Selector,
};
use serval_common::Resource;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
};

/// The API group of Gateway API kinds.
pub(super) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// A Gateway of one of our classes, analysed.
#[derive(Debug)]
pub(super) struct GatewayModel {
    pub(super) key: Key,
    /// `spec.gatewayClassName`.
    pub(super) class: String,
    pub(super) generation: i64,
    /// The IP to bind; `None` when the Gateway has no usable address (then it is not programmed)
    /// and `Some(0.0.0.0)` when it asks for none.
    pub(super) bind_ip: Option<IpAddr>,
    /// IPs to report in `status.addresses`.
    pub(super) status_addresses: Vec<IpAddr>,
    /// `spec.addresses` is empty: the fleet's addresses ([`super::Options::fleet_addresses`])
    /// are reported.
    pub(super) asks_for_no_address: bool,
    /// Gateway-level problem: (condition type, reason, message).
    pub(super) problem: Option<(&'static str, &'static str, String)>,
    pub(super) listeners: Vec<ListenerModel>,
}

/// One listener of a Gateway, validated.
#[derive(Debug)]
pub(super) struct ListenerModel {
    pub(super) name: String,
    pub(super) port: u16,
    pub(super) protocol: String,
    /// Lower-cased hostname, `None` for any.
    pub(super) hostname: Option<String>,
    /// Route kinds this listener accepts.
    pub(super) supported_kinds: Vec<&'static str>,
    /// Route kinds the listener asks for, supported or not: `allowedRoutes.kinds`, or the
    /// specification's defaults for its protocol. A route of another kind is never allowed here,
    /// whatever else is wrong with the listener.
    pub(super) requested_kinds: Vec<String>,
    pub(super) namespaces: AllowedNamespaces,
    /// Why the listener is not accepted (reason, message).
    pub(super) not_accepted: Option<(&'static str, String)>,
    /// Why its references do not resolve (reason, message).
    pub(super) unresolved: Option<(&'static str, String)>,
    /// Why it conflicts with another listener on its port (reason).
    pub(super) conflicted: Option<&'static str>,
    /// HTTPS: the `Secret` resources of the certificateRefs that resolved, in reference order.
    pub(super) certificates: Vec<Arc<Resource>>,
    pub(super) attached_routes: u32,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug)]
pub(super) enum AllowedNamespaces {
    Same,
    All,
    Selector(Selector),
}

impl ListenerModel {
    /// True if traffic is served on this listener (an HTTPS listener needs a certificate).
    pub(super) fn is_programmed(&self) -> bool {
        self.not_accepted.is_none()
            && self.conflicted.is_none()
            && !self.supported_kinds.is_empty()
            && (self.protocol != "HTTPS" || !self.certificates.is_empty())
    }

    /// True for the listeners HTTPRoutes and GRPCRoutes are served on (HTTP and HTTPS).
    pub(super) fn serves_http(&self) -> bool {
        matches!(self.protocol.as_str(), "HTTP" | "HTTPS")
    }

    /// True if routes from `route_ns` may attach (gateway in `gateway_ns`).
    pub(super) fn allows_namespace(
        &self,
        inputs: &Inputs,
        gateway_ns: &str,
        route_ns: &str,
    ) -> bool {
        match &self.namespaces {
            AllowedNamespaces::Same => gateway_ns == route_ns,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(selector) => {
                selector_matches(selector, &inputs.namespace_labels(route_ns))
            }
        }
    }
}

/// Route kinds each protocol can serve.
fn kinds_for(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "HTTP" | "HTTPS" => &["GRPCRoute", "HTTPRoute"],
        "TCP" => &["TCPRoute"],
        "UDP" => &["UDPRoute"],
        _ => &[],
    }
}

/// Analyses every Gateway whose class is in `classes`.
pub(super) fn analyze(inputs: &Inputs, classes: &BTreeSet<String>) -> Vec<GatewayModel> {
    let mut gateways: Vec<GatewayModel> = inputs
        .gateways
        .iter()
        .filter(|(_, gw)| classes.contains(&gw.spec.gateway_class_name))
        .map(|(key, gw)| analyze_one(inputs, key, gw))
        .collect();
    mark_cross_gateway_conflicts(&mut gateways);
    gateways
}

/// Listeners of different Gateways that would need one socket (same port and transport, same IP
/// or a wildcard IP) but cannot share it: an HTTP and a TCP listener, or two TCP (or two UDP)
/// proxies. The Gateway that sorts later gets its listener `Conflicted`, so the proxies never
/// receive two things to serve on one socket. HTTP listeners of several Gateways do share a
/// socket (their virtual hosts are merged), and so do HTTPS listeners (their certificates too).
fn mark_cross_gateway_conflicts(gateways: &mut [GatewayModel]) {
    let mut by_port: BTreeMap<(u16, bool), Vec<(usize, usize)>> = BTreeMap::new();
    for (g, gateway) in gateways.iter().enumerate() {
        if gateway.bind_ip.is_none() {
            continue;
        }
        for (l, listener) in gateway.listeners.iter().enumerate() {
            if listener.is_programmed() {
                by_port
                    .entry((listener.port, listener.protocol == "UDP"))
                    .or_default()
                    .push((g, l));
            }
        }
    }
    let mut conflicted = Vec::new();
    for users in by_port.values() {
        for (k, &(g, l)) in users.iter().enumerate() {
            let mine = &gateways[g];
            let clash = users[..k].iter().find_map(|&(og, ol)| {
                let other = &gateways[og];
                let (a, b) = (mine.bind_ip?, other.bind_ip?);
                let overlap = og != g && (a == b || a.is_unspecified() || b.is_unspecified());
                let (p, q) = (&mine.listeners[l].protocol, &other.listeners[ol].protocol);
                // HTTPS listeners share a socket by SNI: the same hostname on two Gateways would
                // present one Gateway's certificate for the other's name.
                let same_name = mine.listeners[l].hostname == other.listeners[ol].hostname;
                let shares =
                    (p == "HTTP" && q == "HTTP") || (p == "HTTPS" && q == "HTTPS" && !same_name);
                if !overlap || shares {
                    return None;
                }
                Some(if p == q {
                    reason::HOSTNAME_CONFLICT
                } else {
                    reason::PROTOCOL_CONFLICT
                })
            });
            if let Some(reason) = clash {
                conflicted.push((g, l, reason));
            }
        }
    }
    for (g, l, reason) in conflicted {
        gateways[g].listeners[l].conflicted = Some(reason);
    }
}

fn analyze_one(inputs: &Inputs, key: &Key, gateway: &Gateway) -> GatewayModel {
    let mut model = GatewayModel {
        key: key.clone(),
        class: gateway.spec.gateway_class_name.clone(),
        generation: gateway.metadata.generation.unwrap_or(0),
        bind_ip: Some(IpAddr::from([0, 0, 0, 0])),
        status_addresses: Vec::new(),
        asks_for_no_address: gateway.spec.addresses.as_ref().is_none_or(Vec::is_empty),
        problem: None,
        listeners: Vec::new(),
    };
    let addresses = gateway.spec.addresses.as_deref().unwrap_or_default();
    for (i, address) in addresses.iter().enumerate() {
        let kind = address.r#type.as_deref().unwrap_or("IPAddress");
        if kind != "IPAddress" {
            model.bind_ip = None;
            model.problem = Some((
                condition::ACCEPTED,
                reason::UNSUPPORTED_ADDRESS,
                format!("spec.addresses[{i}].type {kind:?} is not supported; use IPAddress"),
            ));
            break;
        }
        let value = address.value.as_deref().unwrap_or_default();
        match value.parse::<IpAddr>() {
            Ok(ip) if i == 0 => {
                model.bind_ip = Some(ip);
                model.status_addresses.push(ip);
            }
            Ok(_) => {} // only the first address is served (see README: limitations)
            Err(_) => {
                model.bind_ip = None;
                model.problem = Some((
                    condition::PROGRAMMED,
                    reason::ADDRESS_NOT_USABLE,
                    format!("spec.addresses[{i}].value {value:?} is not an IP address"),
                ));
                break;
            }
        }
    }

    if let Some(r) = gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    {
        // Serval reads no parameters kind yet, so every reference is one it cannot resolve.
        model.bind_ip = None;
        model.problem = Some((
            condition::ACCEPTED,
            reason::INVALID_PARAMETERS,
            format!(
                "spec.infrastructure.parametersRef {}/{} {:?}: no parameters kind is supported",
                r.group, r.kind, r.name
            ),
        ));
    }
    // Client certificate validation is not built yet: rather than serve without it, HTTPS
    // listeners of a Gateway that asks for it are not accepted.
    let frontend_validation = gateway
        .spec
        .tls
        .as_ref()
        .is_some_and(|t| t.frontend.is_some());
    for listener in &gateway.spec.listeners {
        let mut analyzed = analyze_listener(inputs, &key.0, listener);
        if frontend_validation && analyzed.protocol == "HTTPS" {
            analyzed.not_accepted = Some((
                reason::UNSUPPORTED_VALUE,
                "spec.tls.frontend: client certificate validation is not supported yet".to_owned(),
            ));
        }
        model.listeners.push(analyzed);
    }
    mark_conflicts(&mut model.listeners);
    model
}

fn analyze_listener(
    inputs: &Inputs,
    gateway_ns: &str,
    l: &gateway_api::gateways::GatewayListeners,
) -> ListenerModel {
    let mut not_accepted = None;
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0);
    if port.is_none() {
        not_accepted = Some((
            reason::UNSUPPORTED_VALUE,
            format!("port {} is out of range", l.port),
        ));
    }
    let possible = kinds_for(&l.protocol);
    if possible.is_empty() {
        not_accepted = Some((
            reason::UNSUPPORTED_PROTOCOL,
            format!("protocol {:?} is not supported yet", l.protocol),
        ));
    }
    let hostname = l.hostname.as_ref().map(|h| h.to_ascii_lowercase());
    if let Some(Err(e)) = hostname
        .as_deref()
        .map(|h| serval_common::validate::host_pattern(h, false))
    {
        not_accepted = Some((reason::UNSUPPORTED_VALUE, format!("hostname: {e}")));
    }
    let allowed = l.allowed_routes.as_ref();
    let requested_kinds: Vec<String> = match allowed.and_then(|a| a.kinds.as_ref()) {
        Some(kinds) => kinds
            .iter()
            .filter(|k| k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP)
            .map(|k| k.kind.clone())
            .collect(),
        None => match l.protocol.as_str() {
            "HTTP" | "HTTPS" => vec!["HTTPRoute".to_owned(), "GRPCRoute".to_owned()],
            "TLS" => vec!["TLSRoute".to_owned()],
            "TCP" => vec!["TCPRoute".to_owned()],
            "UDP" => vec!["UDPRoute".to_owned()],
            _ => Vec::new(),
        },
    };
    let mut unresolved = None;
    let supported_kinds: Vec<&'static str> = match allowed.and_then(|a| a.kinds.as_ref()) {
        None => possible.to_vec(),
        Some(kinds) => {
            let mut valid = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                match possible.iter().find(|p| **p == k.kind) {
                    Some(p) if group == GATEWAY_GROUP => valid.push(*p),
                    _ => {
                        unresolved = Some((
                            reason::INVALID_ROUTE_KINDS,
                            format!(
                                "route kind {group}/{} is not supported on {}",
                                k.kind, l.protocol
                            ),
                        ));
                    }
                }
            }
            valid.sort_unstable();
            valid.dedup();
            valid
        }
    };
    let namespaces = match allowed
        .and_then(|a| a.namespaces.as_ref())
        .map(|n| (n.from.as_ref(), n.selector.clone()))
    {
        Some((Some(From::All), _)) => AllowedNamespaces::All,
        Some((Some(From::Selector), Some(selector))) => AllowedNamespaces::Selector(selector),
        Some((Some(From::Selector), None)) => {
            not_accepted = Some((
                reason::INVALID,
                "allowedRoutes.namespaces.selector is required with from: Selector".to_owned(),
            ));
            AllowedNamespaces::Same
        }
        _ => AllowedNamespaces::Same,
    };
    let mut certificates = Vec::new();
    if l.protocol == "HTTPS" {
        let resolved = certificates::resolve(inputs, gateway_ns, l);
        certificates = resolved.secrets;
        not_accepted = not_accepted.or(resolved.not_accepted);
        unresolved = unresolved.or(resolved.unresolved);
    }
    ListenerModel {
        name: l.name.clone(),
        port: port.unwrap_or(0),
        protocol: l.protocol.clone(),
        hostname,
        supported_kinds,
        requested_kinds,
        namespaces,
        not_accepted,
        unresolved,
        conflicted: None,
        certificates,
        attached_routes: 0,
    }
}

/// Listeners on one port must share a protocol and differ in hostname.
fn mark_conflicts(listeners: &mut [ListenerModel]) {
    // Every listener with a valid port takes part, supported or not: an unsupported protocol on a
    // port still conflicts with the others there.
    // TCP and UDP ports are different ports: a UDP listener never conflicts with a TCP-based one.
    let mut by_port: BTreeMap<(u16, bool), Vec<usize>> = BTreeMap::new();
    for (i, l) in listeners.iter().enumerate() {
        if l.port != 0 {
            by_port
                .entry((l.port, l.protocol == "UDP"))
                .or_default()
                .push(i);
        }
    }
    for indices in by_port.values() {
        let protocols: BTreeSet<&str> = indices
            .iter()
            .map(|i| listeners[*i].protocol.as_str())
            .collect();
        if protocols.len() > 1 {
            for i in indices {
                listeners[*i].conflicted = Some(reason::PROTOCOL_CONFLICT);
            }
            continue;
        }
        let mut hostnames: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
        for i in indices {
            hostnames
                .entry(listeners[*i].hostname.clone())
                .or_default()
                .push(*i);
        }
        for same in hostnames.values().filter(|v| v.len() > 1) {
            for i in same {
                listeners[*i].conflicted = Some(reason::HOSTNAME_CONFLICT);
            }
        }
    }
}

/// `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist) against `labels`.
fn selector_matches(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

impl GatewayModel {
    /// `namespace/name`.
    pub(super) fn id(&self) -> String {
        format!("{}/{}", self.key.0, self.key.1)
    }

    /// The Gateway's status entry.
    pub(super) fn status(&self, opts: &Options) -> ObjectStatus {
        let generation = self.generation;
        let cond = |t: &str, ok: bool, r: &str, m: String| {
            Condition::new(t, ok, r, m, generation, &opts.now)
        };
        let programmed_listeners = self.listeners.iter().filter(|l| l.is_programmed()).count();
        let all_valid = programmed_listeners == self.listeners.len();
        let mut conditions = Vec::new();
        match &self.problem {
            Some((t, r, m)) if *t == condition::ACCEPTED => {
                conditions.push(cond(condition::ACCEPTED, false, r, m.clone()));
                conditions.push(cond(
                    condition::PROGRAMMED,
                    false,
                    reason::INVALID,
                    m.clone(),
                ));
            }
            Some((_, r, m)) => {
                conditions.push(cond(
                    condition::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "accepted".into(),
                ));
                conditions.push(cond(condition::PROGRAMMED, false, r, m.clone()));
            }
            None => {
                let (accepted, accepted_reason, msg) = if all_valid {
                    (true, reason::ACCEPTED, "accepted".to_owned())
                } else if programmed_listeners > 0 {
                    (
                        true,
                        reason::LISTENERS_NOT_VALID,
                        "some listeners are not valid".to_owned(),
                    )
                } else {
                    (
                        false,
                        reason::LISTENERS_NOT_VALID,
                        "no listener is valid".to_owned(),
                    )
                };
                conditions.push(cond(condition::ACCEPTED, accepted, accepted_reason, msg));
                let programmed = programmed_listeners > 0 || self.listeners.is_empty();
                conditions.push(programmed_condition(
                    programmed,
                    "no listener is valid",
                    generation,
                    opts,
                ));
            }
        }
        let listeners: Vec<serde_json::Value> = self
            .listeners
            .iter()
            .map(|l| listener_status(l, self.bind_ip.is_some(), generation, opts))
            .collect();
        let mut addresses: Vec<serde_json::Value> = self
            .status_addresses
            .iter()
            .map(|ip| serde_json::json!({"type": "IPAddress", "value": ip.to_string()}))
            .collect();
        if self.asks_for_no_address {
            addresses.extend(
                opts.fleet_addresses
                    .iter()
                    .map(|a| serde_json::json!({"type": a.r#type, "value": a.value})),
            );
        }
        let mut status = serde_json::json!({ "conditions": conditions, "listeners": listeners });
        if !addresses.is_empty() {
            status["addresses"] = serde_json::Value::Array(addresses);
        }
        ObjectStatus {
            api_version: GATEWAY_API_VERSION.to_owned(),
            kind: "Gateway".to_owned(),
            metadata: StatusMetadata {
                name: self.key.1.clone(),
                namespace: Some(self.key.0.clone()),
                generation,
            },
            status,
        }
    }
}

/// A listener's status; `gateway_servable` is false when a Gateway-level problem (address,
/// parameters) keeps every listener from being served.
fn listener_status(
    l: &ListenerModel,
    gateway_servable: bool,
    generation: i64,
    opts: &Options,
) -> serde_json::Value {
    let cond =
        |t: &str, ok: bool, r: &str, m: String| Condition::new(t, ok, r, m, generation, &opts.now);
    let mut conditions = Vec::new();
    match (&l.not_accepted, l.conflicted) {
        (Some((r, m)), _) => conditions.push(cond(condition::ACCEPTED, false, r, m.clone())),
        (None, Some(r)) => conditions.push(cond(
            condition::ACCEPTED,
            false,
            r,
            "conflicts with another listener on its port".into(),
        )),
        (None, None) => conditions.push(cond(
            condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            "accepted".into(),
        )),
    }
    conditions.push(match l.conflicted {
        Some(r) => cond(
            condition::CONFLICTED,
            true,
            r,
            "conflicts with another listener on its port".into(),
        ),
        None => cond(
            condition::CONFLICTED,
            false,
            reason::NO_CONFLICTS,
            "no conflicts".into(),
        ),
    });
    conditions.push(match &l.unresolved {
        Some((r, m)) => cond(condition::RESOLVED_REFS, false, r, m.clone()),
        None => cond(
            condition::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "resolved".into(),
        ),
    });
    conditions.push(programmed_condition(
        gateway_servable && l.is_programmed(),
        "not programmed",
        generation,
        opts,
    ));
    let kinds: Vec<serde_json::Value> = l
        .supported_kinds
        .iter()
        .map(|k| serde_json::json!({"group": GATEWAY_GROUP, "kind": k}))
        .collect();
    serde_json::json!({
        "name": l.name,
        "supportedKinds": kinds,
        "attachedRoutes": l.attached_routes,
        "conditions": conditions,
    })
}

/// `Programmed=True` (reason Programmed), or `False` (reason Invalid) with `why_not`.
fn programmed_condition(ok: bool, why_not: &str, generation: i64, opts: &Options) -> Condition {
    let (reason, message) = if ok {
        (reason::PROGRAMMED, "programmed")
    } else {
        (reason::INVALID, why_not)
    };
    Condition::new(
        condition::PROGRAMMED,
        ok,
        reason,
        message,
        generation,
        &opts.now,
    )
}
