//! The control plane against a simulated fleet ([`serval_e2e::fleet_sim`]): N simulated proxies
//! (1, 100, 1,000, 10,000), each on its own connection, all serving one Gateway with 5,000
//! HTTPRoutes (one Service). For each N:
//!
//! - **initial sync**: time until every proxy holds the configuration;
//! - **one route change** (repeated): one HTTPRoute's path is rewritten in its file; per proxy,
//!   the time from the write until it received the new version, and per change the time until the
//!   last proxy did (convergence), plus the bytes of that response and the control plane's CPU
//!   seconds spent on the change; from the control plane's metrics, its translate time and the
//!   rollout time (snapshot published → every proxy's ACK in: distribution only);
//! - **memory**: the control plane's RSS with the fleet connected, and per connected proxy: the
//!   growth over the first (smallest) size divided by the extra proxies (for the first size,
//!   over the idle control plane, which counts the allocator's growth from translating too).
//!
//! `cargo build --release && cargo bench -p serval-e2e --bench fleet` runs it against the release
//! binary (next to the bench executable); `-- --sizes 100,1000` picks sizes. Under `cargo test` it
//! runs once with 50 routes and 1 and 10 proxies as a smoke test. Figures are reported, never
//! asserted beyond "every proxy converged".

use serval_e2e::{
    fleet_sim::{SimFleet, process_usage, quantile},
    harness::{ControlPlane, TempDir, gateway_yaml, service_yaml},
};
use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

fn routes_yaml(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| route(i, &format!("/app/{i}")))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn route(i: usize, path: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: route-{i}, namespace: default, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"app-{i}.example.com\"]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: \"{path}\"}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n"
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| {
            if full {
                vec![1, 100, 1_000, 10_000]
            } else {
                vec![1, 10]
            }
        });
    let (routes, changes) = if full { (5_000, 20) } else { (50, 3) };

    let logs = TempDir::new("bench-fleet-logs");
    let dir = TempDir::new("bench-fleet");
    dir.write(
        "gateway.yaml",
        &gateway_yaml(Ipv4Addr::new(127, 0, 0, 1), 8080),
    );
    dir.write(
        "service.yaml",
        &service_yaml("svc", &[SocketAddr::from(([127, 0, 0, 1], 9))]),
    );
    // Every route but the last in one file; the last, which changes, in its own.
    dir.write("routes.yaml", &routes_yaml(0, routes - 1));
    let changing = routes - 1;
    dir.write("changing.yaml", &route(changing, "/change/0"));
    let cp = ControlPlane::start(
        dir.path(),
        logs.path(),
        None,
        &["--no-proxy", "--debounce-ms", "10", "--max-delay-ms", "50"],
    )
    .await;
    let pid = cp.process.id().expect("control plane pid");
    let url = format!("http://{}", cp.xds);
    let (rss_idle, _) = process_usage(pid).expect("/proc");
    println!(
        "{routes} HTTPRoutes; control plane RSS with no proxy: {:.1} MiB",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| proxies | initial sync | change → proxy p50 / p99 (per proxy) | change → last proxy p50 / p99 | publish → every ACK p50 / p99 | bytes per change | CP CPU s per change | translate per change | CP RSS | per proxy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");

    let mut generation = 0;
    // RSS and size of the first run: later runs report memory per proxy against it, so the
    // allocator's growth from translating and encoding (there with one proxy too) is not counted.
    let mut first: Option<(u64, usize)> = None;
    for &n in &sizes {
        let started = Instant::now();
        let fleet = SimFleet::start(&url, n, &["default/gw".to_owned()]).await;
        // The initial version: the one every proxy ends up with.
        let synced = loop {
            let versions = fleet.received.versions();
            if let Some((v, _)) = versions.iter().find(|(_, count)| *count >= n) {
                break Some(v.clone());
            }
            if started.elapsed() > Duration::from_secs(900) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let Some(_) = synced else {
            println!(
                "| {n} | did not sync in 900 s ({} connected, {} errors) |",
                fleet
                    .received
                    .connected
                    .load(std::sync::atomic::Ordering::Relaxed),
                fleet
                    .received
                    .errors
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
            fleet.stop().await;
            continue;
        };
        let initial = started.elapsed();
        // Let the allocator settle after the initial burst before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut per_proxy = Vec::new();
        let mut last_proxy = Vec::new();
        let mut bytes = Vec::new();
        let mut cpu = Vec::new();
        let mut rollout = Vec::new();
        let translate_before = cp.metric("serval_translate_duration_seconds_sum").await;
        let translations_before = cp.metric("serval_translate_duration_seconds_count").await;
        for _ in 0..changes {
            generation += 1;
            let known: BTreeSet<String> = fleet
                .received
                .versions()
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            let (_, cpu_before) = process_usage(pid).expect("/proc");
            let rollouts_before = cp.metric("serval_xds_rollout_seconds_sum").await;
            let t0 = Instant::now();
            dir.write(
                "changing.yaml",
                &route(changing, &format!("/change/{generation}")),
            );
            let new_version = loop {
                let fresh = fleet
                    .received
                    .versions()
                    .into_iter()
                    .find(|(v, _)| !known.contains(v));
                if let Some((v, _)) = fresh {
                    break Some(v);
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            let Some(version) = new_version else {
                println!("change {generation}: no new version within 60 s");
                break;
            };
            if !fleet.wait_for(&version, n, Duration::from_secs(120)).await {
                println!("change {generation}: not every proxy converged within 120 s");
                break;
            }
            let (_, cpu_after) = process_usage(pid).expect("/proc");
            cpu.push(cpu_after - cpu_before);
            // One rollout per change: the histogram's sum grows by exactly its duration once every
            // proxy's ACK is in.
            let acked = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let now = cp.metric("serval_xds_rollout_seconds_sum").await;
                    if now != rollouts_before {
                        return now;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await;
            if let (Ok(Some(after)), Some(before)) = (acked, rollouts_before) {
                rollout.push((after - before) * 1e3);
            }
            let arrivals = fleet.received.arrivals(&version);
            let mut latest = 0.0f64;
            for a in &arrivals {
                let ms = a.at.duration_since(t0).as_secs_f64() * 1e3;
                latest = latest.max(ms);
                per_proxy.push(ms);
            }
            last_proxy.push(latest);
            if let Some(a) = arrivals.first() {
                bytes.push(a.bytes as f64 + 14.0);
                assert_eq!(
                    a.names,
                    vec![format!(
                        "attachedroute/default/gw/httproute/default/route-{changing}"
                    )],
                    "a change sends the changed route only"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let translate_ms = match (
            translate_before,
            translations_before,
            cp.metric("serval_translate_duration_seconds_sum").await,
            cp.metric("serval_translate_duration_seconds_count").await,
        ) {
            (Some(s0), Some(c0), Some(s1), Some(c1)) if c1 > c0 => {
                eprintln!("translations: {} taking {:.3} s in all", c1 - c0, s1 - s0);
                (s1 - s0) / (c1 - c0) * 1e3
            }
            _ => 0.0,
        };
        let (rss, _) = process_usage(pid).expect("/proc");
        let per = match first {
            Some((rss0, n0)) if n > n0 => rss.saturating_sub(rss0) as f64 / (n - n0) as f64,
            _ => rss.saturating_sub(rss_idle) as f64 / n as f64,
        };
        first.get_or_insert((rss, n));
        println!(
            "| {n} | {:.2} s | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.0} | {:.3} | {:.1} ms | {:.1} MiB | {:.1} KiB |",
            initial.as_secs_f64(),
            quantile(&mut per_proxy, 0.5),
            quantile(&mut per_proxy, 0.99),
            quantile(&mut last_proxy, 0.5),
            quantile(&mut last_proxy, 0.99),
            quantile(&mut rollout, 0.5),
            quantile(&mut rollout, 0.99),
            quantile(&mut bytes, 0.5),
            quantile(&mut cpu, 0.5),
            translate_ms,
            rss as f64 / 1024.0,
            per,
        );
        fleet.stop().await;
        // Wait for the control plane to see every stream close before the next size.
        let deadline = Instant::now() + Duration::from_secs(60);
        while cp.metric("serval_xds_streams").await != Some(0.0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(hist) = cp.metric("serval_xds_convergence_seconds_count").await {
        println!("control plane convergence histogram observations: {hist}");
    }
}
