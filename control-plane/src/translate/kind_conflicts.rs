//! HTTPRoute and GRPCRoute on one listener with intersecting hostnames: the specification says
//! exactly one of the two routes is accepted there — the oldest, then the first in namespace/name
//! order — and that their rules are never merged. The other loses its entries on that listener,
//! is not counted in its `attachedRoutes`, and, where no listener of that Gateway is left to it,
//! gets `Accepted=False` with reason `Conflicted` naming the winner.

use super::{
    gateway::GatewayModel,
    hostname,
    http_route::{RouteEntry, RouteOwner},
    status::{ObjectStatus, condition, reason},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// One route's hostnames on one listener.
type OnListener = BTreeMap<Arc<RouteOwner>, BTreeSet<String>>;

/// Removes the losing routes' entries and updates counts and status.
pub(super) fn resolve(
    entries: &mut Vec<RouteEntry>,
    statuses: &mut [Arc<ObjectStatus>],
    gateways: &mut [GatewayModel],
) {
    let kinds: BTreeSet<&str> = entries.iter().map(|e| e.owner.kind).collect();
    if kinds.len() < 2 {
        return;
    }
    // (gateway, listener) → owners of each kind with their hostnames there.
    let mut by_listener: BTreeMap<(usize, usize), (OnListener, OnListener)> = BTreeMap::new();
    for e in entries.iter() {
        let (http, grpc) = by_listener.entry((e.gateway, e.listener)).or_default();
        let side = if e.owner.kind == "GRPCRoute" {
            grpc
        } else {
            http
        };
        side.entry(Arc::clone(&e.owner))
            .or_default()
            .insert(e.hostname.to_string());
    }
    // (gateway, listener, loser) → winner.
    let mut losers: BTreeMap<(usize, usize, Arc<RouteOwner>), Arc<RouteOwner>> = BTreeMap::new();
    for ((g, l), (http, grpc)) in &by_listener {
        if http.is_empty() || grpc.is_empty() {
            continue;
        }
        for (h, h_hosts) in http {
            for (r, r_hosts) in grpc {
                let intersect = h_hosts.iter().any(|a| {
                    r_hosts
                        .iter()
                        .any(|b| hostname::covers(a, b) || hostname::covers(b, a))
                });
                if !intersect {
                    continue;
                }
                // Oldest first, then namespace/name (RouteOwner orders by exactly that).
                let (winner, loser) = if h.as_ref() < r.as_ref() {
                    (h, r)
                } else {
                    (r, h)
                };
                losers
                    .entry((*g, *l, Arc::clone(loser)))
                    .or_insert_with(|| Arc::clone(winner));
            }
        }
    }
    if losers.is_empty() {
        return;
    }
    entries.retain(|e| !losers.contains_key(&(e.gateway, e.listener, Arc::clone(&e.owner))));
    for (g, l, _) in losers.keys() {
        let count = &mut gateways[*g].listeners[*l].attached_routes;
        *count = count.saturating_sub(1);
    }
    // Routes still reachable somewhere on a Gateway keep Accepted=True for it.
    let remaining: BTreeSet<(usize, Arc<RouteOwner>)> = entries
        .iter()
        .map(|e| (e.gateway, Arc::clone(&e.owner)))
        .collect();
    for ((g, _, loser), winner) in &losers {
        if remaining.contains(&(*g, Arc::clone(loser))) {
            continue;
        }
        let gateway = &gateways[*g].key;
        let message = format!(
            "{} {}/{} has an intersecting hostname on the same listener and was accepted first; HTTPRoutes and GRPCRoutes are never merged",
            winner.kind, winner.key.0, winner.key.1
        );
        mark_not_accepted(statuses, loser, gateway, &message);
    }
}

fn mark_not_accepted(
    statuses: &mut [Arc<ObjectStatus>],
    route: &RouteOwner,
    gateway: &(String, String),
    message: &str,
) {
    let Some(status) = statuses.iter_mut().find(|s| {
        s.kind == route.kind
            && s.metadata.namespace.as_deref() == Some(route.key.0.as_str())
            && s.metadata.name == route.key.1
    }) else {
        return;
    };
    let Some(parents) = Arc::make_mut(status)
        .status
        .get_mut("parents")
        .and_then(|p| p.as_array_mut())
    else {
        return;
    };
    for parent in parents {
        let r = &parent["parentRef"];
        let same = r["namespace"].as_str() == Some(gateway.0.as_str())
            && r["name"].as_str() == Some(gateway.1.as_str());
        if !same {
            continue;
        }
        let Some(conditions) = parent.get_mut("conditions").and_then(|c| c.as_array_mut()) else {
            continue;
        };
        for c in conditions {
            if c["type"] == condition::ACCEPTED {
                c["status"] = "False".into();
                c["reason"] = reason::CONFLICTED.into();
                c["message"] = message.into();
            }
        }
    }
}
