//! Benchmark of the per-request route lookup (host, then path index, then the full match) with 10
//! and with 10,000 HTTPRoutes: once with a distinct hostname per route, once with every route under
//! one hostname (distinct path prefixes), plus header-matched routes under one path.
//!
//! Two request patterns: `hot`, 10 distinct requests whatever the table size (what the lookup
//! algorithm costs: the routes it touches stay in cache), and `spread`, 1,024 requests over all
//! routes (adds the cache misses of a table larger than the CPU cache).
//!
//! Run: `cargo bench -p serval-proxy --bench router_lookup`. Prints ns per lookup (median of the
//! runs) and the large / 10 ratio for each shape. Figures go to BENCHMARKS.md.

use http::Request;
use serval_common::{Resource, proto::config::v1 as pb};
use serval_proxy::{config::compile::compile, router::Router};
use std::{
    collections::BTreeMap,
    hint::black_box,
    net::SocketAddr,
    time::{Duration, Instant},
};

const LOOKUPS: usize = 200_000;
const RUNS: usize = 11;
/// Under `cargo test` (no `--bench` argument) the benchmark only checks that it runs.
const SMOKE_LOOKUPS: usize = 1_000;

#[derive(Clone, Copy)]
enum Shape {
    Hostnames,
    Paths,
    Headers,
}

fn route(name: String, path: String, header: Option<String>) -> pb::Route {
    pb::Route {
        name,
        r#match: Some(pb::RouteMatch {
            path: Some(pb::PathMatch {
                kind: Some(pb::path_match::Kind::Prefix(path)),
            }),
            headers: header
                .map(|v| pb::HeaderMatch {
                    name: "x-tenant".into(),
                    kind: Some(pb::header_match::Kind::Exact(v)),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        action: Some(pb::route::Action::Route(pb::RouteAction {
            backends: vec![pb::WeightedBackend {
                weight: 1,
                target: Some(pb::weighted_backend::Target::Cluster(
                    "cluster/b/svc/80".into(),
                )),
                filters: None,
            }],
        })),
        ..Default::default()
    }
}

fn router(n: usize, shape: Shape) -> Router {
    // One AttachedRoute per route, as the control plane sends them.
    let attached: Vec<Resource> = (0..n)
        .map(|i| {
            let (host, mut r) = match shape {
                Shape::Hostnames => (
                    format!("app-{i}.example.com"),
                    route(format!("r{i}"), "/".into(), None),
                ),
                Shape::Paths => (
                    "app.example.com".to_owned(),
                    route(format!("r{i}"), format!("/api/{i}"), None),
                ),
                Shape::Headers => (
                    "app.example.com".to_owned(),
                    route(
                        format!("r{i}"),
                        format!("/api/{}", i % 10),
                        Some(format!("t{i}")),
                    ),
                ),
            };
            let m = r.r#match.clone().unwrap_or_default();
            let path_length = match m.path.and_then(|p| p.kind) {
                Some(pb::path_match::Kind::Prefix(p)) => p.trim_end_matches('/').len(),
                _ => 0,
            };
            r.precedence = Some(pb::Precedence {
                path_kind: 2,
                path_length: path_length as u32,
                headers: m.headers.len() as u32,
                namespace: "b".into(),
                route: format!("r{i:06}"),
                ..Default::default()
            });
            Resource::AttachedRoute(pb::AttachedRoute {
                name: format!("attachedroute/b/gw/httproute/b/r{i}"),
                routes: vec![r],
                attachments: vec![pb::RouteAttachment {
                    route_config: "routeconfig/b/gw/80".into(),
                    section_name: "http".into(),
                    hostnames: vec![host],
                }],
            })
        })
        .collect();
    let resources: BTreeMap<String, Resource> = [
        Resource::Listener(pb::Listener {
            name: "listener/b/gw/80".into(),
            address: Some(pb::SocketAddress {
                ip: "127.0.0.1".into(),
                port: 80,
            }),
            gateway: "b/gw".into(),
            gateway_class: String::new(),
            section_names: vec!["http".into()],
            protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
                route_config_name: "routeconfig/b/gw/80".into(),
                ..Default::default()
            })),
        }),
        Resource::RouteConfig(pb::RouteConfig {
            name: "routeconfig/b/gw/80".into(),
            listeners: vec![pb::ListenerHost {
                section_name: "http".into(),
                hostname: "*".into(),
            }],
            ..Default::default()
        }),
        Resource::Cluster(pb::Cluster {
            name: "cluster/b/svc/80".into(),
            load_assignment_name: "endpoints/b/svc/80".into(),
            ..Default::default()
        }),
        Resource::ClusterLoadAssignment(pb::ClusterLoadAssignment {
            name: "endpoints/b/svc/80".into(),
            ..Default::default()
        }),
    ]
    .into_iter()
    .chain(attached)
    .map(|r| (r.name().to_owned(), r))
    .collect();
    let mut config = compile("bench".into(), resources, BTreeMap::new(), None).expect("valid");
    let addr: SocketAddr = ([127, 0, 0, 1], 80).into();
    config.listeners.remove(&addr).expect("listener").router
}

fn requests(n: usize, shape: Shape, distinct: usize) -> Vec<(String, Request<()>)> {
    let mut rng = fastrand::Rng::with_seed(7);
    let targets: Vec<usize> = (0..distinct).map(|_| rng.usize(0..n)).collect();
    (0..1024)
        .map(|k| {
            let i = targets[k % targets.len()];
            let (host, path, tenant) = match shape {
                Shape::Hostnames => (
                    format!("app-{i}.example.com"),
                    "/index.html".to_owned(),
                    None,
                ),
                Shape::Paths => (
                    "app.example.com".to_owned(),
                    format!("/api/{i}/items"),
                    None,
                ),
                Shape::Headers => (
                    "app.example.com".to_owned(),
                    format!("/api/{}/items", i % 10),
                    Some(format!("t{i}")),
                ),
            };
            let mut req = Request::builder().uri(path);
            if let Some(t) = tenant {
                req = req.header("x-tenant", t);
            }
            (host, req.body(()).expect("request"))
        })
        .collect()
}

fn measure(
    n: usize,
    shape: Shape,
    distinct: usize,
    lookups: usize,
    runs_wanted: usize,
) -> Duration {
    let router = router(n, shape);
    let reqs = requests(n, shape, distinct);
    for (host, req) in &reqs {
        assert!(
            router.route(host, req).is_some(),
            "every request must find its route"
        );
    }
    let mut runs = Vec::with_capacity(runs_wanted);
    for _ in 0..runs_wanted {
        let started = Instant::now();
        for k in 0..lookups {
            let (host, req) = &reqs[k % reqs.len()];
            black_box(router.route(black_box(host), black_box(req)));
        }
        runs.push(started.elapsed() / u32::try_from(lookups).unwrap_or(1));
    }
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (lookups, runs) = if benching {
        (LOOKUPS, RUNS)
    } else {
        (SMOKE_LOOKUPS, 1)
    };
    for (label, shape, big) in [
        ("distinct hostnames", Shape::Hostnames, 10_000),
        ("paths under one hostname", Shape::Paths, 10_000),
        ("header matches under 10 paths", Shape::Headers, 1_000),
    ] {
        for (pattern, distinct) in [("hot", 10), ("spread", 1024)] {
            let small = measure(10, shape, distinct, lookups, runs);
            let large = measure(big, shape, distinct, lookups, runs);
            println!(
                "route lookup, {label}, {pattern}: 10 routes {} ns, {big} routes {} ns, ratio {:.2}",
                small.as_nanos(),
                large.as_nanos(),
                large.as_secs_f64() / small.as_secs_f64()
            );
        }
    }
}
