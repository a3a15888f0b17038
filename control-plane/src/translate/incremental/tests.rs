use super::*;
use crate::sources::objects::{Object, parse_values};
use serde_json::json;

fn opts() -> Options {
    Options {
        controller_name: serval_common::CONTROLLER_NAME.to_owned(),
        now: "2026-01-01T00:00:00Z".to_owned(),
        fleet_addresses: Vec::new(),
    }
}

/// A Gateway, Services `svc-0` and `svc-1` (one endpoint each), and `routes` HTTPRoutes; route `i`
/// uses `svc-{i % 2}` and the prefix `/r{i}` (or `changed` for route 0 when given).
fn objects(routes: usize, changed: Option<&str>, svc1_ip: &str) -> Vec<Object> {
    let mut docs = vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "serval"},
               "spec": {"controllerName": serval_common::CONTROLLER_NAME}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"gatewayClassName": "serval", "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}}),
    ];
    for (s, ip) in [(0, "10.0.0.1"), (1, svc1_ip)] {
        docs.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{s}"), "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}));
        docs.push(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc-{s}-a"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": format!("svc-{s}")}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]}),
        );
    }
    for i in 0..routes {
        let path = match (i, changed) {
            (0, Some(p)) => p.to_owned(),
            _ => format!("/r{i}"),
        };
        docs.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": format!("route-{i}"), "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": format!("svc-{}", i % 2), "port": 80}]}]}}));
    }
    parse_values("test", docs).expect("valid objects").objects
}

/// Keeps the Arcs of `base` for every object equal to one in `next`, as a source does for
/// objects that did not change.
fn sharing(base: &[Object], next: Vec<Object>) -> Vec<Object> {
    next.into_iter()
        .map(|o| {
            base.iter()
                .find(|b| b.object_ref() == o.object_ref() && format!("{b:?}") == format!("{o:?}"))
                .cloned()
                .unwrap_or(o)
        })
        .collect()
}

fn translate_both(incremental: &mut Incremental, objects: &[Object]) -> Output {
    let inputs = Inputs::from_objects(objects.iter().cloned());
    let scratch = super::super::translate(&inputs, &opts());
    let got = incremental.translate(inputs, &opts());
    assert_eq!(got.resources, scratch.resources);
    assert_eq!(got.statuses, scratch.statuses);
    got
}

#[test]
fn one_route_change_translates_that_route_only() {
    let mut incremental = Incremental::default();
    let base = objects(100, None, "10.0.0.2");
    assert_eq!(translate_both(&mut incremental, &base).reused_routes, 0);
    assert_eq!(translate_both(&mut incremental, &base).reused_routes, 100);
    let changed = sharing(&base, objects(100, Some("/changed"), "10.0.0.2"));
    let out = translate_both(&mut incremental, &changed);
    assert_eq!(out.reused_routes, 99);
    // Equal but not shared objects are recognised too (a source that decodes anew).
    let out = translate_both(
        &mut incremental,
        &objects(100, Some("/changed"), "10.0.0.2"),
    );
    assert_eq!(out.reused_routes, 100);
}

#[test]
fn an_endpoint_change_translates_the_routes_of_that_service_only() {
    let mut incremental = Incremental::default();
    let base = objects(10, None, "10.0.0.2");
    translate_both(&mut incremental, &base);
    let moved = sharing(&base, objects(10, None, "10.0.0.3"));
    let out = translate_both(&mut incremental, &moved);
    assert_eq!(out.reused_routes, 5, "the 5 routes of svc-0 are reused");
    let name = serval_common::names::load_assignment("default", "svc-1", 80);
    let Some(Resource::ClusterLoadAssignment(cla)) = out.resources.get(&name).map(|r| &**r) else {
        panic!(
            "no assignment for svc-1: {:?}",
            out.resources.keys().collect::<Vec<_>>()
        );
    };
    assert_eq!(
        cla.endpoints[0].address.as_ref().map(|a| a.ip.as_str()),
        Some("10.0.0.3")
    );
}

#[test]
fn a_gateway_change_translates_everything() {
    let mut incremental = Incremental::default();
    let base = objects(10, None, "10.0.0.2");
    translate_both(&mut incremental, &base);
    let mut changed = base.clone();
    let Object::Gateway(gw) = &mut changed[1] else {
        panic!("the Gateway is the second object");
    };
    Arc::make_mut(gw).spec.listeners[0].port = 9090;
    assert_eq!(translate_both(&mut incremental, &changed).reused_routes, 0);
}
