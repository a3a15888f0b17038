//! Benchmark of `translate`: N HTTPRoutes, each with its own Service (two ready endpoints), on one
//! Gateway; once with a distinct hostname per route and once with every route under one hostname
//! (distinct path prefixes). Prints the median and spread of repeated runs; parsing and snapshot
//! encoding are timed separately.
//!
//! Run: `cargo bench -p serval-control-plane --bench translate` (optionally `-- 5000 11`: routes and
//! runs). Under `cargo test` it runs once on 20 routes, as a smoke test. Figures go to BENCHMARKS.md.

use serde_json::{Value, json};
use serval_control_plane::{
    snapshot::Snapshot,
    sources::objects::parse_values,
    translate::{self, Options, inputs::Inputs},
};
use std::time::{Duration, Instant};

fn documents(routes: usize, one_host: bool) -> Vec<Value> {
    let mut docs = vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "serval"},
               "spec": {"controllerName": serval_common::CONTROLLER_NAME}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "bench"},
               "spec": {"gatewayClassName": "serval",
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}),
    ];
    for i in 0..routes {
        let svc = format!("svc-{i}");
        docs.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc, "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 8080}]}}));
        docs.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-1"), "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": [format!("10.{}.{}.1", i / 250, i % 250)], "conditions": {"ready": true}},
                {"addresses": [format!("10.{}.{}.2", i / 250, i % 250)], "conditions": {"ready": true}},
            ]}));
        let hostnames = if one_host {
            json!(["app.example.com"])
        } else {
            json!([format!("app-{i}.example.com")])
        };
        docs.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": format!("route-{i}"), "namespace": "bench",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": hostnames,
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": format!("/api/{i}")}}],
                                "backendRefs": [{"name": svc, "port": 8080}]}]}}));
    }
    docs
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test` this only checks that the benchmark runs.
    let benching = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (default_routes, default_runs) = if benching { (5000, 11) } else { (20, 1) };
    let routes = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_routes);
    let runs = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_runs);
    let opts = Options {
        controller_name: serval_common::CONTROLLER_NAME.to_owned(),
        now: "2026-01-01T00:00:00Z".to_owned(),
        fleet_addresses: Vec::new(),
    };
    for (label, one_host) in [("distinct hostnames", false), ("one hostname", true)] {
        let started = Instant::now();
        let parsed = parse_values("bench", documents(routes, one_host)).expect("valid objects");
        let inputs = Inputs::from_objects(parsed.objects);
        let parse = started.elapsed();
        let mut translate_times = Vec::new();
        let mut encode_times = Vec::new();
        let mut resources = 0;
        for run in 0..=runs {
            let t = Instant::now();
            let out = translate::translate(&inputs, &opts);
            let translated = t.elapsed();
            let t = Instant::now();
            let snapshot = Snapshot::new(out.resources);
            let encoded = t.elapsed();
            resources = snapshot.resources.len();
            if run > 0 {
                translate_times.push(translated);
                encode_times.push(encoded);
            }
        }
        let min = translate_times.iter().min().copied().unwrap_or_default();
        let max = translate_times.iter().max().copied().unwrap_or_default();
        println!(
            "translate {routes} HTTPRoutes + {routes} Services ({label}): median {:.1} ms (min {:.1}, max {:.1}, {runs} runs); snapshot encode median {:.1} ms; {resources} resources; inputs built in {:.0} ms",
            median(translate_times).as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            median(encode_times).as_secs_f64() * 1e3,
            parse.as_secs_f64() * 1e3,
        );
    }
}

// The allocator the control-plane binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
