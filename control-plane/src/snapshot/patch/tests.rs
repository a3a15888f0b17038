//! Patched views against the closure computed from scratch, over random sequences of route,
//! Cluster and endpoint changes (routes joining RouteConfigs of one or two Gateways, Clusters a
//! TCP listener uses, ClusterLoadAssignments shared and removed).

use super::super::{Scope, Snapshot};
use super::PATCHED;
use crate::translate::Resources;
use serval_common::{Resource, proto::config::v1 as pb};
use std::sync::Arc;

const GATEWAYS: &[(&str, &str)] = &[
    ("ns/a", "internal"),
    ("ns/b", "internal"),
    ("ns/c", "public"),
];

fn http_listener(gateway: &str, class: &str) -> Resource {
    Resource::Listener(pb::Listener {
        name: format!("listener/{gateway}/80"),
        gateway: gateway.into(),
        gateway_class: class.into(),
        section_names: vec!["http".into()],
        protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
            route_config_name: format!("routeconfig/{gateway}/80"),
            ..Default::default()
        })),
        ..Default::default()
    })
}

fn route_config(gateway: &str) -> Resource {
    Resource::RouteConfig(pb::RouteConfig {
        name: format!("routeconfig/{gateway}/80"),
        listeners: vec![pb::ListenerHost {
            section_name: "http".into(),
            hostname: "*".into(),
        }],
        ..Default::default()
    })
}

fn tcp_listener() -> Resource {
    Resource::Listener(pb::Listener {
        name: "listener/ns/c/90".into(),
        gateway: "ns/c".into(),
        gateway_class: "public".into(),
        section_names: vec!["tcp".into()],
        protocol: Some(pb::listener::Protocol::Tcp(pb::L4Listener {
            backends: vec![pb::L4Backend {
                cluster: "cluster/3".into(),
                weight: 1,
            }],
        })),
        ..Default::default()
    })
}

fn cluster(i: usize, assignment: usize) -> Resource {
    Resource::Cluster(pb::Cluster {
        name: format!("cluster/{i}"),
        load_assignment_name: format!("endpoints/{assignment}"),
        ..Default::default()
    })
}

fn assignment(i: usize, port: u32) -> Resource {
    Resource::ClusterLoadAssignment(pb::ClusterLoadAssignment {
        name: format!("endpoints/{i}"),
        endpoints: vec![pb::Endpoint {
            address: Some(pb::SocketAddress {
                ip: "127.0.0.1".into(),
                port,
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Route `i`: joins one Gateway's RouteConfig (now and then two Gateways'), forwards to one or
/// two Clusters (which may not exist).
fn route(rng: &mut fastrand::Rng, i: usize) -> Resource {
    let gateways = if rng.usize(..8) == 0 { 2 } else { 1 };
    Resource::AttachedRoute(pb::AttachedRoute {
        name: format!("attachedroute/{i}"),
        attachments: (0..gateways)
            .map(|_| pb::RouteAttachment {
                route_config: format!("routeconfig/{}/80", GATEWAYS[rng.usize(..3)].0),
                section_name: "http".into(),
                hostnames: vec![format!("h{i}.example")],
            })
            .collect(),
        routes: vec![pb::Route {
            name: format!("route/{i}"),
            action: Some(pb::route::Action::Route(pb::RouteAction {
                backends: (0..rng.usize(1..=2))
                    .map(|_| pb::WeightedBackend {
                        weight: 1,
                        target: Some(pb::weighted_backend::Target::Cluster(format!(
                            "cluster/{}",
                            rng.usize(..5)
                        ))),
                        filters: None,
                    })
                    .collect(),
            })),
            ..Default::default()
        }],
    })
}

fn put(resources: &mut Resources, r: Resource) {
    resources.insert(r.name().to_owned(), Arc::new(r));
}

fn mutate(rng: &mut fastrand::Rng, resources: &mut Resources) {
    for _ in 0..rng.usize(1..=3) {
        match rng.usize(..10) {
            0..=4 => {
                let i = rng.usize(..15);
                put(resources, route(rng, i));
            }
            5 => {
                resources.remove(&format!("attachedroute/{}", rng.usize(..15)));
            }
            6 => {
                let (i, a) = (rng.usize(..5), rng.usize(..5));
                put(resources, cluster(i, a));
            }
            7 => {
                resources.remove(&format!("cluster/{}", rng.usize(..5)));
            }
            8 => {
                let i = rng.usize(..5);
                put(resources, assignment(i, rng.u32(1..1000)));
            }
            _ => {
                resources.remove(&format!("endpoints/{}", rng.usize(..5)));
            }
        }
    }
}

fn scopes() -> Vec<Scope> {
    vec![
        Scope::default(),
        Scope::new(vec!["ns/a".into()], String::new()),
        Scope::new(vec!["ns/c".into()], String::new()),
        Scope::new(vec![], "internal".into()),
    ]
}

#[test]
fn patched_views_equal_the_closure_over_random_changes() {
    PATCHED.with(|p| p.set(0));
    for seed in 0..10 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut resources = Resources::new();
        for (gateway, class) in GATEWAYS {
            put(&mut resources, http_listener(gateway, class));
            put(&mut resources, route_config(gateway));
        }
        put(&mut resources, tcp_listener());
        for i in 0..5 {
            put(&mut resources, cluster(i, i));
            put(&mut resources, assignment(i, 8000 + i as u32));
        }
        let mut snapshot = Snapshot::next(&Snapshot::default(), resources.clone());
        for step in 0..120 {
            for scope in scopes() {
                snapshot.view(&scope);
            }
            mutate(&mut rng, &mut resources);
            let next = Snapshot::next(&snapshot, resources.clone());
            let scratch = Snapshot::new(resources.iter().map(|(n, r)| (n.clone(), Arc::clone(r))));
            assert_eq!(next.version, scratch.version);
            for scope in scopes() {
                let (got, want) = (next.view(&scope), scratch.view(&scope));
                let names = |v: &super::super::View| -> Vec<(String, String)> {
                    v.resources
                        .iter()
                        .map(|(n, r)| (n.clone(), r.version.to_string()))
                        .collect()
                };
                assert_eq!(
                    names(&got),
                    names(&want),
                    "seed {seed} step {step} {scope:?}"
                );
                assert_eq!(got.version, want.version);
            }
            snapshot = next;
        }
    }
    let patched = PATCHED.with(std::cell::Cell::get);
    assert!(patched > 3_000, "only {patched} views were patched");
}
