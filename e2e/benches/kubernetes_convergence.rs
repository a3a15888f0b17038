//! Kubernetes mode end to end, with the real binaries and the Kubernetes API emulator over HTTP:
//!
//! - **first sync**: N HTTPRoutes exist before the control plane starts; time until `/readyz`,
//!   until a proxy serves the last route, and until every route's status is written;
//! - **convergence**: M times, an HTTPRoute is created in the API server; time until the proxy
//!   answers 200 for it (watch → debounce → translate → delta push → proxy apply);
//! - the control plane's resident memory after all of it.
//!
//! `cargo build --release && cargo bench -p serval-e2e --bench kubernetes_convergence` runs it
//! with N = 2,000 and M = 50 against the release binaries (next to the bench executable). Under `cargo test` it runs once with N = 20,
//! M = 3 as a smoke test. Figures are reported, never asserted.

use serval_e2e::{
    harness::{HttpClient, wait_until},
    kube_emulator::KubeEmulator,
    kube_world::{KubeControlPlane, World, route},
};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (routes, changes) = if full { (2_000, 50) } else { (20, 3) };
    let world = World::start("bench-k8s").await;
    let em = KubeEmulator::start(world.logs.path(), &[]).await;
    world.seed(&em).await;
    let created = Instant::now();
    for i in 0..routes {
        em.create(route(&format!("r{i}"), &format!("r{i}.example"), "svc-a"))
            .await
            .expect("create route");
    }
    println!(
        "created {routes} HTTPRoutes in the emulator in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    let kubeconfig = em.write_kubeconfig(world.logs.path());
    let started = Instant::now();
    let cp = KubeControlPlane::start_with(
        &kubeconfig,
        "bench",
        world.logs.path(),
        &[
            "--status-qps",
            "1000",
            "--status-burst",
            "1000",
            "--status-concurrency",
            "8",
        ],
    );
    let ready = wait_until(Duration::from_secs(300), || cp.ready()).await;
    assert!(ready, "control plane not ready");
    let to_ready = started.elapsed();
    let _proxy = world.proxy(&cp, "bench-proxy").await;
    let last = format!("r{}.example", routes - 1);
    assert!(
        world.wait_pod(&last, "svc-a-pod-0").await,
        "last route not served"
    );
    let to_served = started.elapsed();
    let all_written = wait_until(Duration::from_secs(600), || async {
        cp.metric("serval_status_writes_total", "succeeded").await >= routes as f64
    })
    .await;
    let to_status = started.elapsed();
    println!(
        "first sync, {routes} routes: ready {:.0} ms, last route served {:.0} ms, every route's status written {:.0} ms{}",
        to_ready.as_secs_f64() * 1e3,
        to_served.as_secs_f64() * 1e3,
        to_status.as_secs_f64() * 1e3,
        if all_written {
            ""
        } else {
            " (NOT all written)"
        }
    );

    let client = HttpClient::http1();
    let mut samples = Vec::with_capacity(changes);
    for j in 0..changes {
        let host = format!("c{j}.example");
        let begin = Instant::now();
        em.create(route(&format!("c{j}"), &host, "svc-b"))
            .await
            .expect("create change");
        let served = wait_until(Duration::from_secs(30), || async {
            client
                .get(world.gateway, &host, "/", &[])
                .await
                .is_ok_and(|r| r.status.is_success())
        })
        .await;
        assert!(served, "{host} not served");
        samples.push(begin.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "convergence over {changes} route creations (API server → proxy 200), debounce 50 ms: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let translations = cp.metric("serval_translations_total", "").await;
    let translate_seconds = cp.metric("serval_translate_duration_seconds_sum", "").await;
    println!(
        "translations {translations:.0}, mean translate {:.1} ms",
        translate_seconds / translations * 1e3
    );
    if let Some(pid) = cp.process.id() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS:")) {
            println!("control plane {rss}");
        }
    }
}
