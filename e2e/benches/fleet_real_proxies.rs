//! Twenty real `serval-proxy` processes, each on its own loopback address (`--bind-address`), one
//! control plane, 5,000 HTTPRoutes. Fifty times, a new HTTPRoute (a new hostname) is written to
//! the config folder; per change, the time from the write until the first 200 for the new
//! hostname through every proxy (each proxy polled every millisecond, the 20 pollers spread over
//! that millisecond). Meanwhile a request loop through every proxy to an existing route (one
//! request every 5 ms per proxy, running before the first change; `--loop-interval-ms 0` for back
//! to back) must see no failure. The binaries log at `info`, as deployed (`--log FILTER`).
//!
//! `cargo build --release && cargo bench -p serval-e2e --bench fleet_real_proxies` runs it against
//! the release binaries. Under `cargo test` it runs once with 3 proxies, 50 routes and 3 changes
//! as a smoke test. Figures are reported; only "no failed request" and "every proxy served every
//! new route" are asserted.

use serval_e2e::{
    fleet_sim::quantile,
    harness::{
        ControlPlane, EchoBackend, HttpClient, Proxy, TempDir, gateway_yaml, service_yaml,
        unique_loopback_ip,
    },
    load::RequestLoop,
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

fn route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{host}\"]\n  rules:\n  - backendRefs: [{{name: svc, port: 80}}]\n"
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    // `--loop-interval-ms N`: each proxy's request loop sends a request every N ms (default 5,
    // i.e. 200 requests/s per proxy); 0 sends back to back, which keeps both cores of a small
    // machine busy with the loop itself.
    let (mut proxies, routes, changes) = if full { (20, 5_000, 50) } else { (3, 50, 3) };
    let number = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|n| {
                n.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{flag} takes a number"))
            })
            .unwrap_or(default)
    };
    // `--poll-interval-ms N`: how often each proxy is asked for the new hostname (default 1).
    let poll_interval = Duration::from_millis(number("--poll-interval-ms", 1));
    // `--proxies N`: fewer (or more) proxies than the 20 of the issue, to see how the figures
    // follow the number of processes sharing the cores.
    proxies = number("--proxies", proxies as u64) as usize;
    let loop_interval = match number("--loop-interval-ms", 5) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    // `--proxy-worker-threads N`: each proxy's `--worker-threads` (default 1: twenty proxies share
    // this machine's cores, as an operator would configure them; 0 = the proxy's default, one per
    // CPU).
    let worker_threads = number("--proxy-worker-threads", 1);
    // `--poll-stagger 0|1`: whether the proxies' polls are spread over the poll interval (default
    // 1: proxy i polls at i/N of it) instead of all firing at the same instant.
    let stagger = number("--poll-stagger", 1) == 1;
    // `--log FILTER`: the binaries' `SERVAL_LOG` (default `info`, as deployed; the e2e tests' debug
    // level writes a line for every request that matches no route, which every poll is at first).
    let log = args
        .iter()
        .position(|a| a == "--log")
        .and_then(|i| args.get(i + 1))
        .map_or("info", String::as_str);
    let env = [("SERVAL_LOG", log)];
    let logs = TempDir::new("bench-real-logs");
    let dir = TempDir::new("bench-real");
    let backend = EchoBackend::start("svc", "svc-pod-0", logs.path()).await;
    dir.write(
        "gateway.yaml",
        &gateway_yaml(Ipv4Addr::new(127, 0, 0, 1), 8080),
    );
    dir.write("service.yaml", &service_yaml("svc", &[backend.addr]));
    dir.write(
        "routes.yaml",
        &(0..routes)
            .map(|i| route(&format!("route-{i}"), &format!("app-{i}.example.com")))
            .collect::<Vec<_>>()
            .join("---\n"),
    );
    // `--debounce-ms N`: the control plane's quiet period (default 2). Each change is one file
    // written whole and renamed into place, so its events come within microseconds of each other;
    // the quiet period only has to outlast that burst (the control plane's own default, 100 ms, is
    // for people editing several files by hand).
    let debounce = number("--debounce-ms", 2).to_string();
    let cp = ControlPlane::start_with_env(
        dir.path(),
        logs.path(),
        None,
        &[
            "--no-proxy",
            "--debounce-ms",
            &debounce,
            "--max-delay-ms",
            "50",
        ],
        &env,
    )
    .await;
    let mut fleet = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..proxies {
        let ip = unique_loopback_ip();
        let mut args = vec!["--bind-address".to_owned(), ip.to_string()];
        if worker_threads > 0 {
            args.extend(["--worker-threads".to_owned(), worker_threads.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proxy =
            Proxy::start_with_env(cp.xds, &format!("real-{i:02}"), logs.path(), &args, &env).await;
        fleet.push(proxy);
        addrs.push((ip, 8080).into());
    }
    let client = HttpClient::http1();
    for addr in &addrs {
        let ok = client
            .get(*addr, "app-0.example.com", "/", &[])
            .await
            .is_ok_and(|r| r.status == 200);
        assert!(ok, "{addr} does not serve the existing routes");
    }
    println!("{proxies} proxies up with {routes} HTTPRoutes");

    let loops: Vec<RequestLoop> = addrs
        .iter()
        .map(|addr| match loop_interval {
            Some(every) => RequestLoop::paced(
                *addr,
                "app-0.example.com",
                "/",
                every,
                10_000_000,
                Duration::from_secs(1_800),
            ),
            None => RequestLoop::start(
                *addr,
                "app-0.example.com",
                "/",
                1,
                10_000_000,
                Duration::from_secs(1_800),
            ),
        })
        .collect();

    // The loops run before the first change: each has sent 100 requests (half a second at the
    // default pace), so their first connections are not part of any change. Bounded: 30 s more
    // than 100 requests take at the loops' pace.
    let settle = Instant::now();
    let settle_limit = Duration::from_secs(30) + loop_interval.unwrap_or_default() * 100;
    while loops.iter().any(|l| l.sent() < 100) {
        assert!(settle.elapsed() < settle_limit, "request loops not running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut per_change = Vec::new();
    let mut per_proxy = Vec::new();
    for k in 0..changes {
        let host = format!("new-{k}.example.com");
        let t0 = Instant::now();
        dir.write(&format!("new-{k}.yaml"), &route(&format!("new-{k}"), &host));
        let mut polls = tokio::task::JoinSet::new();
        for (i, addr) in addrs.iter().copied().enumerate() {
            let (client, host) = (client.clone(), host.clone());
            let offset = if stagger {
                poll_interval * i as u32 / addrs.len() as u32
            } else {
                Duration::ZERO
            };
            polls.spawn(async move {
                // Polls start every `poll_interval` (at once when the last one took longer), so
                // a slow answer does not also add the interval. Bounded: 30 s of polling at most.
                let mut next = tokio::time::Instant::now() + offset;
                tokio::time::sleep_until(next).await;
                while t0.elapsed() < Duration::from_secs(30) {
                    if client
                        .get(addr, &host, "/", &[])
                        .await
                        .is_ok_and(|r| r.status == 200)
                    {
                        return Some(t0.elapsed());
                    }
                    next += poll_interval;
                    tokio::time::sleep_until(next).await;
                }
                None
            });
        }
        let mut slowest = Duration::ZERO;
        while let Some(done) = polls.join_next().await {
            let took = done
                .expect("poll task")
                .unwrap_or_else(|| panic!("{host} not served by every proxy within 30 s"));
            per_proxy.push(took.as_secs_f64() * 1e3);
            slowest = slowest.max(took);
        }
        per_change.push(slowest.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut slowest: Vec<(usize, f64)> = per_change.iter().copied().enumerate().collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "slowest changes (index: ms): {}",
        slowest
            .iter()
            .take(5)
            .map(|(k, ms)| format!("{k}: {ms:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut sent = 0;
    for l in loops {
        let report = l.stop().await;
        sent += report.sent;
        report.assert_no_failures();
    }
    println!(
        "new HTTPRoute → first 200 through every proxy ({proxies} proxies, {routes} routes, {changes} changes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; per proxy p50 {:.1} ms, p99 {:.1} ms; {sent} requests meanwhile, 0 failed",
        quantile(&mut per_change.clone(), 0.5),
        quantile(&mut per_change.clone(), 0.99),
        quantile(&mut per_change, 1.0),
        quantile(&mut per_proxy.clone(), 0.5),
        quantile(&mut per_proxy, 0.99),
    );
    let (mut apply_sum, mut apply_count) = (0.0, 0.0);
    for proxy in &fleet {
        apply_sum += proxy
            .metric("serval_config_apply_duration_seconds_sum")
            .await
            .unwrap_or(0.0);
        apply_count += proxy
            .metric("serval_config_apply_duration_seconds_count")
            .await
            .unwrap_or(0.0);
    }
    if apply_count > 0.0 {
        println!(
            "proxies: {apply_count} configurations applied, {:.1} ms each on average",
            apply_sum / apply_count * 1e3
        );
    }
    if let Some(translate) = cp.metric("serval_translate_duration_seconds_sum").await
        && let Some(count) = cp.metric("serval_translate_duration_seconds_count").await
    {
        println!(
            "control plane: {count} translations, {:.1} ms each on average",
            translate / count * 1e3
        );
    }
    // Where the time goes: change observed → every proxy ACKed (debounce, reading, translating,
    // distributing), and snapshot published → every proxy ACKed (distribution alone).
    for (what, metric) in [
        (
            "observed → every proxy ACKed",
            "serval_xds_convergence_seconds",
        ),
        (
            "published → every proxy ACKed",
            "serval_xds_rollout_seconds",
        ),
    ] {
        if let Some(sum) = cp.metric(&format!("{metric}_sum")).await
            && let Some(count) = cp.metric(&format!("{metric}_count")).await
            && count > 0.0
        {
            println!(
                "control plane: {what}: {:.1} ms on average over {count} snapshots",
                sum / count * 1e3
            );
        }
    }
}
