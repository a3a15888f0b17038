//! A bounded request loop for e2e tests: N workers send GETs through the gateway until stopped (or
//! a hard cap on count and time), recording every failure and which pod answered.

use crate::harness::HttpClient;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::task::JoinSet;

/// What the loop saw.
#[derive(Debug, Default)]
pub struct LoopReport {
    /// Requests sent.
    pub sent: u64,
    /// Requests that failed (error or non-200), with their reason.
    pub failures: Vec<String>,
    /// Answers per pod.
    pub pods: BTreeMap<String, u64>,
}

impl LoopReport {
    /// Panics, showing the first few failures, unless every request succeeded.
    pub fn assert_no_failures(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed: {:?}",
            self.failures.len(),
            self.sent,
            &self.failures[..self.failures.len().min(5)]
        );
    }
}

/// A running request loop.
#[derive(Debug)]
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    tasks: JoinSet<LoopReport>,
    last_pod: Arc<tokio::sync::Mutex<String>>,
}

impl RequestLoop {
    /// Starts `workers` loops of GET `http://gateway{path}` with `Host: host`, each sending its
    /// next request as soon as the last one is answered. Each stops after `max_requests` or
    /// `max_time` even if never told to.
    pub fn start(
        gateway: SocketAddr,
        host: &str,
        path: &str,
        workers: usize,
        max_requests: u64,
        max_time: Duration,
    ) -> Self {
        Self::spawn(gateway, host, path, workers, None, max_requests, max_time)
    }

    /// One loop sending a request every `interval` (or, when an answer takes longer, as soon as
    /// it is in): a steady probe that does not itself load the machine to the full.
    pub fn paced(
        gateway: SocketAddr,
        host: &str,
        path: &str,
        interval: Duration,
        max_requests: u64,
        max_time: Duration,
    ) -> Self {
        Self::spawn(
            gateway,
            host,
            path,
            1,
            Some(interval),
            max_requests,
            max_time,
        )
    }

    fn spawn(
        gateway: SocketAddr,
        host: &str,
        path: &str,
        workers: usize,
        interval: Option<Duration>,
        max_requests: u64,
        max_time: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let last_pod = Arc::new(tokio::sync::Mutex::new(String::new()));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (stop, sent, last_pod) =
                (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&last_pod));
            let (host, path) = (host.to_owned(), path.to_owned());
            tasks.spawn(async move {
                let client = HttpClient::http1();
                let started = Instant::now();
                let mut report = LoopReport::default();
                let mut ticks = interval.map(|every| {
                    let mut ticks = tokio::time::interval(every);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticks
                });
                while !stop.load(Ordering::Relaxed)
                    && sent.load(Ordering::Relaxed) < max_requests
                    && started.elapsed() < max_time
                {
                    if let Some(ticks) = ticks.as_mut() {
                        ticks.tick().await;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    report.sent += 1;
                    match client.get(gateway, &host, &path, &[]).await {
                        Ok(r) if r.status == 200 => {
                            let pod = r.echo().map(|e| e.pod).unwrap_or_default();
                            *last_pod.lock().await = pod.clone();
                            *report.pods.entry(pod).or_default() += 1;
                        }
                        Ok(r) => report.failures.push(format!(
                            "status {}: {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        )),
                        Err(e) => report.failures.push(e),
                    }
                }
                report
            });
        }
        Self {
            stop,
            sent,
            tasks,
            last_pod,
        }
    }

    /// Requests sent so far by all workers.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The pod of the latest successful answer.
    pub async fn last_pod(&self) -> String {
        self.last_pod.lock().await.clone()
    }

    /// Stops the workers and merges their reports.
    pub async fn stop(mut self) -> LoopReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoopReport::default();
        while let Some(result) = self.tasks.join_next().await {
            let Ok(report) = result else { continue };
            total.sent += report.sent;
            total.failures.extend(report.failures);
            for (pod, n) in report.pods {
                *total.pods.entry(pod).or_default() += n;
            }
        }
        total
    }
}
