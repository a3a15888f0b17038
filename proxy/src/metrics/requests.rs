//! Request metrics by route: counts, durations and bytes of every HTTP request, labelled only with
//! what the configuration names — Gateway, listener (`sectionName`), route (`namespace/name`),
//! route kind, rule (its name, else its index) and backend Service (`namespace/name:port`) — plus
//! the response's status class. Nothing comes from the request (no path, host or header value),
//! so the number of series is bounded by the configuration, whatever the traffic.
//!
//! Series per route rule, for each listener it serves and each backend picked:
//! `requests_total` one per status class seen (at most 6: `1xx`…`5xx`, `cancelled`),
//! `request_duration_seconds` 16 (13 buckets, `+Inf`, `_sum`, `_count`), and 2 byte counters:
//! at most 24. Requests no route matched share one series set (empty route labels).
//!
//! Series of routes that left the configuration are removed ([`RequestMetrics::retain`]).
//! Recording a request is a hash lookup and atomic adds; the labels are built when a route is
//! compiled, not per request.

use parking_lot::Mutex;
use prometheus_client::{
    encoding::{EncodeLabelSet, LabelSetEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use std::{collections::HashSet, sync::Arc, time::Duration};

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

/// `1xx` … `5xx`; `cancelled` for a request that ended before its response (status 0).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "cancelled",
    }
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

    /// Records one finished request.
    pub fn record(&self, done: &Finished<'_>) {
        if self.duration.get(done.series).is_none() {
            self.known.lock().insert(done.series.clone());
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
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx", "cancelled"] {
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
            m.record(&Finished {
                series: s,
                status,
                duration: Duration::from_millis(3),
                received: 10,
                sent: 20,
            });
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
    }
}
