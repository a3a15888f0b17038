//! Scripted tests of the delta stream state machine: first response, coalescing, NACK, initial versions, stale nonces, per-gateway views.

use super::*;
use crate::snapshot::Snapshot;
use serval_common::{
    Resource, names,
    proto::{config::v1 as pb, discovery::v1::ErrorDetail},
};

/// A snapshot with one Gateway listener per `(gateway, port)` and a cluster each, the cluster's
/// port standing in for "content".
fn snapshot(listeners: &[(&str, u16)]) -> Snapshot {
    let mut resources = BTreeMap::new();
    for (gw, port) in listeners {
        let name = names::listener("ns", gw, *port);
        let rc = names::route_config("ns", gw, *port);
        resources.insert(
            name.clone(),
            Resource::Listener(pb::Listener {
                name,
                gateway: format!("ns/{gw}"),
                gateway_class: String::new(),
                protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
                    route_config_name: rc.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
        );
        resources.insert(
            rc.clone(),
            Resource::RouteConfig(pb::RouteConfig {
                name: rc,
                ..Default::default()
            }),
        );
    }
    Snapshot::new(resources)
}

fn hello(gateways: &[&str], initial: &[(&str, &str)]) -> DeltaConfigRequest {
    DeltaConfigRequest {
        node: Some(Node {
            id: "p1".into(),
            gateways: gateways.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }),
        initial_resource_versions: initial
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn ack(nonce: &str) -> DeltaConfigRequest {
    DeltaConfigRequest {
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn nack(nonce: &str) -> DeltaConfigRequest {
    DeltaConfigRequest {
        response_nonce: nonce.into(),
        error_detail: Some(ErrorDetail {
            message: "listener/ns/a/80: bind failed".into(),
            resource_errors: vec![],
        }),
        ..Default::default()
    }
}

fn names_of(r: &DeltaConfigResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn first_response_carries_the_whole_view_then_ack_settles() {
    let snap = snapshot(&[("a", 80)]);
    let mut s = StreamState::default();
    let r = s
        .on_request(&hello(&[], &[]), &snap)
        .expect("ok")
        .response
        .expect("response");
    assert_eq!(names_of(&r), ["listener/ns/a/80", "routeconfig/ns/a/80"]);
    assert_eq!(r.system_version_info, snap.version.to_string());
    assert!(
        s.on_request(&ack(&r.nonce), &snap)
            .expect("ok")
            .response
            .is_none()
    );
    assert_eq!(s.acked(), Some(&snap.version));
    assert_eq!(
        s.on_snapshot(&snap),
        None,
        "unchanged snapshot sends nothing"
    );
}

#[test]
fn empty_view_still_gets_one_response_to_ack() {
    let snap = snapshot(&[]);
    let mut s = StreamState::default();
    let r = s
        .on_request(&hello(&[], &[]), &snap)
        .expect("ok")
        .response
        .expect("response");
    assert!(r.resources.is_empty() && r.removed_resources.is_empty());
    assert!(
        s.on_request(&ack(&r.nonce), &snap)
            .expect("ok")
            .response
            .is_none()
    );
}

#[test]
fn changes_coalesce_while_a_response_is_unacknowledged() {
    let s1 = snapshot(&[("a", 80)]);
    let s2 = snapshot(&[("a", 80), ("a", 81)]);
    let s3 = snapshot(&[("a", 81)]);
    let mut s = StreamState::default();
    let r1 = s
        .on_request(&hello(&[], &[]), &s1)
        .expect("ok")
        .response
        .expect("response");
    assert_eq!(s.on_snapshot(&s2), None, "one response in flight at most");
    assert_eq!(s.on_snapshot(&s3), None, "one response in flight at most");
    let r2 = s
        .on_request(&ack(&r1.nonce), &s3)
        .expect("ok")
        .response
        .expect("coalesced");
    assert_eq!(names_of(&r2), ["listener/ns/a/81", "routeconfig/ns/a/81"]);
    assert_eq!(
        r2.removed_resources,
        ["listener/ns/a/80", "routeconfig/ns/a/80"]
    );
    assert_eq!(r2.system_version_info, s3.version.to_string());
    assert_ne!(r1.nonce, r2.nonce);
}

#[test]
fn nacked_version_is_not_resent_but_the_next_one_is() {
    let s1 = snapshot(&[("a", 80)]);
    let s2 = snapshot(&[("a", 81)]);
    let s3 = snapshot(&[("a", 82)]);
    let mut s = StreamState::default();
    let r1 = s
        .on_request(&hello(&[], &[]), &s1)
        .expect("ok")
        .response
        .expect("r1");
    s.on_request(&ack(&r1.nonce), &s1).expect("ok");
    let r2 = s.on_snapshot(&s2).expect("r2");
    assert!(
        s.on_request(&nack(&r2.nonce), &s2)
            .expect("ok")
            .response
            .is_none(),
        "no resend after NACK"
    );
    assert_eq!(s.nacked(), Some(&s2.version));
    assert_eq!(s.last_error(), Some("listener/ns/a/80: bind failed"));
    assert_eq!(s.on_snapshot(&s2), None, "the same version is never resent");
    // The next snapshot is diffed against what the proxy still holds (s1), not against s2.
    let r3 = s.on_snapshot(&s3).expect("r3");
    assert_eq!(names_of(&r3), ["listener/ns/a/82", "routeconfig/ns/a/82"]);
    assert_eq!(
        r3.removed_resources,
        ["listener/ns/a/80", "routeconfig/ns/a/80"]
    );
    s.on_request(&ack(&r3.nonce), &s3).expect("ok");
    assert_eq!(s.nacked(), None);
    // Going back to the content the proxy held is a real change again.
    assert!(s.on_snapshot(&s1).is_some());
}

#[test]
fn initial_resource_versions_are_honoured() {
    let snap = snapshot(&[("a", 80), ("a", 81)]);
    let versions: Vec<(String, String)> = snap
        .resources
        .iter()
        .map(|(n, v)| (n.clone(), v.version.to_string()))
        .collect();
    let all: Vec<(&str, &str)> = versions
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut s = StreamState::default();
    let r = s
        .on_request(&hello(&[], &all), &snap)
        .expect("ok")
        .response
        .expect("the first request is answered");
    assert!(
        r.resources.is_empty() && r.removed_resources.is_empty(),
        "nothing changed, nothing sent"
    );
    assert_eq!(r.system_version_info, snap.version.to_string());
    assert!(
        s.on_request(&ack(&r.nonce), &snap)
            .expect("ok")
            .response
            .is_none()
    );
    assert_eq!(s.acked(), Some(&snap.version));

    let mut partial = all.clone();
    partial.retain(|(n, _)| !n.ends_with("/81"));
    partial.push(("cluster/ns/gone/80", "0123"));
    let mut s = StreamState::default();
    let r = s
        .on_request(&hello(&[], &partial), &snap)
        .expect("ok")
        .response
        .expect("difference");
    assert_eq!(names_of(&r), ["listener/ns/a/81", "routeconfig/ns/a/81"]);
    assert_eq!(r.removed_resources, ["cluster/ns/gone/80"]);
}

#[test]
fn stale_nonce_is_ignored() {
    let s1 = snapshot(&[("a", 80)]);
    let mut s = StreamState::default();
    let r1 = s
        .on_request(&hello(&[], &[]), &s1)
        .expect("ok")
        .response
        .expect("r1");
    assert!(
        s.on_request(&ack("not-the-nonce"), &s1)
            .expect("ok")
            .response
            .is_none()
    );
    assert_eq!(s.acked(), None, "a stale nonce acknowledges nothing");
    s.on_request(&ack(&r1.nonce), &s1).expect("ok");
    assert_eq!(s.acked(), Some(&s1.version));
}

#[test]
fn proxy_receives_only_its_gateways() {
    let snap = snapshot(&[("a", 80), ("b", 80)]);
    let mut s = StreamState::default();
    let r = s
        .on_request(&hello(&["ns/b"], &[]), &snap)
        .expect("ok")
        .response
        .expect("r");
    assert_eq!(names_of(&r), ["listener/ns/b/80", "routeconfig/ns/b/80"]);
}

#[test]
fn first_request_must_name_the_node() {
    let snap = snapshot(&[]);
    let mut s = StreamState::default();
    assert_eq!(
        s.on_request(&ack(""), &snap).err(),
        Some(ProtocolError::MissingNode)
    );
    let mut empty = hello(&[], &[]);
    if let Some(n) = empty.node.as_mut() {
        n.id.clear();
    }
    assert_eq!(
        StreamState::default().on_request(&empty, &snap).err(),
        Some(ProtocolError::EmptyNodeId)
    );
}
