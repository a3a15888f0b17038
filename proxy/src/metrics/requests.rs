//! Request metrics by route: counts, durations and bytes of every HTTP request, labelled only with
//! what the configuration names — Gateway, listener (`sectionName`), route (`namespace/name`),
//! route kind, rule (its name, else its index) and backend Service (`namespace/name:port`) — plus
//! the response's status class. Nothing comes from the request (no path, host or header value),
//! so the number of series is bounded by the configuration, whatever the traffic.
//!
//! Series per route rule, for each listener it serves and each backend picked:
//! `requests_total` one per status class seen (at most 7: `1xx`…`5xx`, `cancelled`, `other`),
//! `request_duration_seconds` 16 (13 buckets, `+Inf`, `_sum`, `_count`), and 2 byte counters:
//! at most 25. Requests no route matched share one series set (empty route labels).
//!
//! Series of routes that left the configuration are removed ([`RequestMetrics::retain`]).
//! The labels are built when a route is compiled, not per request, and each route keeps the
//! handles of the series it used first ([`RouteStats`]), so recording a request is atomic adds
//! there; other label sets take a hash lookup per family.

use parking_lot::Mutex;
use prometheus_client::{
    encoding::{EncodeLabelSet, LabelSetEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
    time::Duration,
};

/// Bucket bounds of `request_duration_seconds`.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of one route rule, built once when the route is compiled.
#[derive(Debug, Default, Hash, PartialEq, Eq)]
pub struct RouteId {
    /// `namespace/name` of the Gateway.
    pub gateway: Arc<str>,
    /// `namespace/name` of the route.
    pub route: Arc<str>,
    /// `httproute` or `grpcroute`.
    pub route_kind: Arc<str>,
    /// The rule's name, else its index.
    pub rule: Arc<str>,
}

impl RouteId {
    /// The labels of the route named `name` (`route/<ns>/<kind>/<name>/rule/<i>/...`) on
    /// `gateway`, with the rule's name if it has one.
    pub fn new(name: &str, gateway: Arc<str>, rule_name: &str) -> Self {
        let parsed = serval_common::names::parse_route(name);
        let rule = match (rule_name, parsed) {
            ("", Some(p)) => p.rule.to_string(),
            ("", None) => String::new(),
            (named, _) => named.to_owned(),
        };
        Self {
            gateway,
            route: Arc::from(
                parsed
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .unwrap_or_default(),
            ),
            route_kind: Arc::from(parsed.map(|p| p.kind).unwrap_or_default()),
            rule: Arc::from(rule),
        }
    }
}

/// A compiled route rule's labels, and the series handles of the first listener and backend it
/// served, filled by its first request.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// The labels.
    pub id: Arc<RouteId>,
    cached: OnceLock<Cached>,
}

impl RouteStats {
    /// The stats of a route rule labelled `id` (nothing cached yet).
    pub fn new(id: RouteId) -> Self {
        Self {
            id: Arc::new(id),
            cached: OnceLock::new(),
        }
    }
}

/// Handles of one series set (the families' own metrics, shared).
#[derive(Debug)]
struct Cached {
    listener: Arc<str>,
    backend: Arc<str>,
    duration: Histogram,
    received: Counter,
    sent: Counter,
    /// By status class ([`CLASSES`] order), created on first use.
    by_class: [OnceLock<Counter>; 7],
}

/// The status classes, in [`class_index`] order.
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "cancelled", "other"];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        0 => 5,
        _ => 6,
    }
}

/// One route rule on one listener with one backend.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Series {
    /// The route rule (empty: no route matched).
    pub route: Arc<RouteId>,
    /// The listener whose virtual host matched.
    pub listener: Arc<str>,
    /// The backend Service picked (empty: none, e.g. a redirect).
    pub backend: Arc<str>,
}

impl EncodeLabelSet for Series {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let r = &*self.route;
        [
            ("gateway", &*r.gateway),
            ("listener", &*self.listener),
            ("route", &*r.route),
            ("route_kind", &*r.route_kind),
            ("rule", &*r.rule),
            ("backend", &*self.backend),
        ]
        .encode(encoder)
    }
}

/// A [`Series`] with the response's status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct StatusSeries {
    series: Series,
    status_class: &'static str,
}

impl EncodeLabelSet for StatusSeries {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.series.encode(encoder)?;
        [("status_class", self.status_class)].encode(encoder)
    }
}

/// `1xx` … `5xx`; `cancelled` for a request that ended before its response (status 0); `other`
/// for a status outside 100–599 (a backend may send one).
pub fn status_class(status: u16) -> &'static str {
    CLASSES[class_index(status)]
}

type HistogramFamily = Family<Series, Histogram, fn() -> Histogram>;

/// The per-route request metric families.
#[derive(Debug)]
pub struct RequestMetrics {
    requests: Family<StatusSeries, Counter>,
    duration: HistogramFamily,
    received: Family<Series, Counter>,
    sent: Family<Series, Counter>,
    /// Every series created, to remove those of routes that are gone.
    known: Mutex<HashSet<Series>>,
}

/// One finished request.
#[derive(Debug)]
pub struct Finished<'a> {
    /// Its labels.
    pub series: &'a Series,
    /// The response status (0: none was sent).
    pub status: u16,
    /// From arrival to the last response byte.
    pub duration: Duration,
    /// Request body bytes.
    pub received: u64,
    /// Response body bytes.
    pub sent: u64,
}

impl RequestMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            received: Family::default(),
            sent: Family::default(),
            known: Mutex::new(HashSet::new()),
        };
        registry.register(
            "http_requests",
            "HTTP requests by Gateway, listener, route, rule, backend and status class",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "From a request's arrival to its last response byte",
            m.duration.clone(),
        );
        registry.register(
            "http_request_body_bytes",
            "Request body bytes received from clients",
            m.received.clone(),
        );
        registry.register(
            "http_response_body_bytes",
            "Response body bytes sent to clients",
            m.sent.clone(),
        );
        m
    }

    /// Records one finished request of the route rule `stats` (none: no route matched).
    pub fn record(&self, stats: Option<&RouteStats>, done: &Finished<'_>) {
        if let Some(cached) = stats.and_then(|s| s.cached.get())
            && *cached.listener == *done.series.listener
            && *cached.backend == *done.series.backend
        {
            cached.duration.observe(done.duration.as_secs_f64());
            cached.received.inc_by(done.received);
            cached.sent.inc_by(done.sent);
            let class = class_index(done.status);
            cached.by_class[class]
                .get_or_init(|| self.status_counter(done.series, CLASSES[class]))
                .inc();
            return;
        }
        self.record_by_labels(done);
        if let Some(stats) = stats {
            // The first label set this route rule served: keep its handles.
            let _ = stats.cached.get_or_init(|| Cached {
                listener: Arc::clone(&done.series.listener),
                backend: Arc::clone(&done.series.backend),
                duration: self.duration.get_or_create_owned(done.series),
                received: self.received.get_or_create_owned(done.series),
                sent: self.sent.get_or_create_owned(done.series),
                by_class: Default::default(),
            });
        }
    }

    fn status_counter(&self, series: &Series, status_class: &'static str) -> Counter {
        self.requests.get_or_create_owned(&StatusSeries {
            series: series.clone(),
            status_class,
        })
    }

    /// Records `done` through the families (a hash lookup each). The series is registered in
    /// `known` under its lock, so [`RequestMetrics::retain`] cannot remove it in between and leave
    /// a series it no longer knows.
    fn record_by_labels(&self, done: &Finished<'_>) {
        let mut known = self.known.lock();
        if !known.contains(done.series) {
            known.insert(done.series.clone());
        }
        self.duration
            .get_or_create(done.series)
            .observe(done.duration.as_secs_f64());
        self.received
            .get_or_create(done.series)
            .inc_by(done.received);
        self.sent.get_or_create(done.series).inc_by(done.sent);
        let with_status = StatusSeries {
            series: done.series.clone(),
            status_class: status_class(done.status),
        };
        self.requests.get_or_create(&with_status).inc();
        drop(known);
    }

    /// Removes the series of route rules for which `keep` is false (routes no longer
    /// configured). Requests without a route are always kept.
    pub fn retain(&self, mut keep: impl FnMut(&RouteId) -> bool) -> usize {
        let mut known = self.known.lock();
        let gone: Vec<Series> = known
            .iter()
            .filter(|s| !s.route.route.is_empty() && !keep(&s.route))
            .cloned()
            .collect();
        for series in &gone {
            known.remove(series);
            self.duration.remove(series);
            self.received.remove(series);
            self.sent.remove(series);
            for class in CLASSES {
                self.requests.remove(&StatusSeries {
                    series: series.clone(),
                    status_class: class,
                });
            }
        }
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn series(route: &str, rule: &str) -> Series {
        Series {
            route: Arc::new(RouteId::new(
                &format!("route/ns/httproute/{route}/rule/{rule}/match/0"),
                Arc::from("ns/gw"),
                "",
            )),
            listener: Arc::from("http"),
            backend: Arc::from("ns/svc:80"),
        }
    }

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn labels_come_from_configuration_and_gone_routes_are_removed() {
        let mut registry = Registry::default();
        let m = RequestMetrics::register(&mut registry);
        let (a, b) = (series("a", "0"), series("b", "1"));
        for (s, status) in [(&a, 200), (&a, 503), (&b, 0), (&Series::default(), 404)] {
            m.record(
                None,
                &Finished {
                    series: s,
                    status,
                    duration: Duration::from_millis(3),
                    received: 10,
                    sent: 20,
                },
            );
        }
        let text = exposition(&registry);
        assert!(
            text.contains(r#"http_requests_total{gateway="ns/gw",listener="http",route="ns/a",route_kind="httproute",rule="0",backend="ns/svc:80",status_class="5xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"route="ns/b",route_kind="httproute",rule="1",backend="ns/svc:80",status_class="cancelled"} 1"#), "{text}");
        assert!(text.contains(r#"http_request_body_bytes_total{gateway="ns/gw",listener="http",route="ns/a",route_kind="httproute",rule="0",backend="ns/svc:80"} 20"#), "{text}");

        // Route b leaves the configuration: its series go, a's and the no-route ones stay.
        assert_eq!(m.retain(|r| &*r.route == "ns/a"), 1);
        let text = exposition(&registry);
        assert!(!text.contains(r#"route="ns/b""#), "{text}");
        assert!(text.contains(r#"route="ns/a""#), "{text}");
        assert!(
            text.contains(r#"route="",route_kind="",rule="",backend="",status_class="4xx"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_route_records_through_its_cached_handles_into_the_same_series() {
        let mut registry = Registry::default();
        let m = RequestMetrics::register(&mut registry);
        let a = series("a", "0");
        let stats = RouteStats {
            id: Arc::clone(&a.route),
            cached: OnceLock::new(),
        };
        let other_backend = Series {
            backend: Arc::from("ns/other:80"),
            ..a.clone()
        };
        for (s, status) in [
            (&a, 200),
            (&a, 200),
            (&a, 404),
            (&other_backend, 200),
            (&a, 0),
        ] {
            m.record(
                Some(&stats),
                &Finished {
                    series: s,
                    status,
                    duration: Duration::from_millis(1),
                    received: 1,
                    sent: 2,
                },
            );
        }
        assert!(stats.cached.get().is_some(), "filled by the first request");
        let text = exposition(&registry);
        let line = |backend: &str, class: &str| {
            format!(
                r#"http_requests_total{{gateway="ns/gw",listener="http",route="ns/a",route_kind="httproute",rule="0",backend="{backend}",status_class="{class}"}}"#
            )
        };
        assert!(
            text.contains(&format!("{} 2", line("ns/svc:80", "2xx"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1", line("ns/svc:80", "4xx"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1", line("ns/svc:80", "cancelled"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1", line("ns/other:80", "2xx"))),
            "{text}"
        );
        assert!(
            !text.contains(&line("ns/svc:80", "5xx")),
            "only classes seen: {text}"
        );
        assert!(text.contains(r#"http_response_body_bytes_total{gateway="ns/gw",listener="http",route="ns/a",route_kind="httproute",rule="0",backend="ns/svc:80"} 8"#), "{text}");
        // A removed route's series go, cached or not.
        assert_eq!(m.retain(|_| false), 2);
        assert!(!exposition(&registry).contains("route=\"ns/a\""));
    }

    #[test]
    fn a_named_rule_is_labelled_by_its_name() {
        let id = RouteId::new(
            "route/ns/grpcroute/r/rule/3/match/0",
            Arc::from("ns/gw"),
            "login",
        );
        assert_eq!(
            (&*id.route, &*id.route_kind, &*id.rule),
            ("ns/r", "grpcroute", "login")
        );
        assert_eq!(status_class(0), "cancelled");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(799), "other");
    }
}
