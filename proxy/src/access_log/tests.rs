use super::*;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use std::time::Instant;

/// A `Write` into shared memory.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// The lines written, once there are `n` (waits up to 5 s for the writer thread).
    fn lines(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(self.0.lock().clone()).expect("utf-8");
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() >= n {
                return lines
                    .iter()
                    .map(|l| serde_json::from_str(l).expect("a JSON line"))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "{n} lines expected, got {text:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn request(headers: &HeaderMap) -> Request {
    Request::arrived(
        &Method::POST,
        Version::HTTP_11,
        "shop.example.com",
        "/cart/items",
        headers,
        "10.1.2.3:4567".parse().expect("addr"),
        Arc::new(AtomicU64::new(42)),
    )
}

fn facts() -> Facts {
    Facts {
        series: Default::default(),
        route_stats: None,
        span: None,
        enabled: true,
        route: Some(RouteFacts {
            name: serval_common::names::route("app", "HTTPRoute", "web", 2, 0),
            gateway: Arc::from("infra/gw"),
        }),
        upstream: Some(UpstreamFacts {
            cluster: serval_common::names::cluster("app", "svc", 8080),
            endpoint: Some("127.0.0.1:9000".parse().expect("addr")),
            duration: Duration::from_micros(1_500),
            attempts: 2,
        }),
    }
}

#[test]
fn a_line_carries_the_request_the_route_and_the_upstream() {
    let sink = Sink::default();
    let log = AccessLog::to_writer(sink.clone(), Counter::default(), 1 << 20).expect("writer");
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let response = http::Response::builder()
        .status(201)
        .body(crate::body::full(Bytes::from_static(b"hello")))
        .expect("response");
    let logged = Logged::wrap(
        Ending::new(&log, Some(request(&headers)), None, facts()),
        response,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let body = runtime
        .block_on(logged.into_body().collect())
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"hello");
    let line = &sink.lines(1)[0];
    assert_eq!(line["gateway"], "infra/gw");
    assert_eq!(line["route"], "app/web");
    assert_eq!(line["route_kind"], "httproute");
    assert_eq!(line["rule"], 2);
    assert_eq!(line["backend"], "app/svc:8080");
    assert_eq!(line["endpoint"], "127.0.0.1:9000");
    assert_eq!(line["upstream_duration_ms"], 1.5);
    assert_eq!(line["upstream_attempts"], 2);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["host"], "shop.example.com");
    assert_eq!(line["path"], "/cart/items");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 201);
    assert_eq!(line["bytes_received"], 42);
    assert_eq!(line["bytes_sent"], 5);
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["client_address"], "10.1.2.3:4567");
    assert!(line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    let time = line["time"].as_str().expect("time");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "RFC 3339 with milliseconds: {time}"
    );
}

#[test]
fn a_response_read_to_its_end_then_dropped_is_logged_once() {
    let sink = Sink::default();
    let log = AccessLog::to_writer(sink.clone(), Counter::default(), 1 << 20).expect("writer");
    let response = http::Response::builder()
        .status(200)
        .body(crate::body::full(Bytes::from_static(b"ok")))
        .expect("response");
    let mut logged = Logged::wrap(
        Ending::new(&log, Some(request(&HeaderMap::new())), None, facts()),
        response,
    )
    .into_body();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        while let Some(frame) = logged.frame().await {
            frame.expect("frame");
        }
    });
    drop(logged);
    log.close(Duration::from_secs(5));
    let lines = sink.lines(1);
    assert_eq!(lines.len(), 1, "written once: {lines:?}");
    assert_eq!(lines[0]["bytes_sent"], 2);
}

#[test]
fn a_response_dropped_before_its_end_is_logged_with_what_was_sent() {
    let sink = Sink::default();
    let log = AccessLog::to_writer(sink.clone(), Counter::default(), 1 << 20).expect("writer");
    let response = http::Response::builder()
        .status(404)
        .body(crate::body::full(Bytes::from_static(b"not found")))
        .expect("response");
    let logged = Logged::wrap(
        Ending::new(
            &log,
            Some(request(&HeaderMap::new())),
            None,
            Facts::new(true),
        ),
        response,
    );
    drop(logged);
    log.close(Duration::from_secs(5));
    let lines = sink.lines(1);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["status"], 404);
    assert_eq!(line["bytes_sent"], 0);
    assert!(line["route"].is_null() && line["gateway"].is_null() && line["backend"].is_null());
    assert!(line["trace_id"].is_null());
}

#[test]
fn a_request_dropped_before_its_response_is_logged_with_status_0() {
    let sink = Sink::default();
    let log = AccessLog::to_writer(sink.clone(), Counter::default(), 1 << 20).expect("writer");
    let mut in_flight = InFlight::new(&log, Some(request(&HeaderMap::new())), None);
    in_flight.facts = facts();
    drop(in_flight);
    // Off: nothing is recorded or written.
    drop(InFlight::new(&log, None, None));
    log.close(Duration::from_secs(5));
    let lines = sink.lines(1);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], 0);
    assert_eq!(lines[0]["route"], "app/web");
    assert_eq!(lines[0]["endpoint"], "127.0.0.1:9000");
}

#[test]
fn lines_after_close_are_dropped_and_counted() {
    let sink = Sink::default();
    let dropped = Counter::default();
    let log = AccessLog::to_writer(sink.clone(), dropped.clone(), 1 << 20).expect("writer");
    log.close(Duration::from_secs(5));
    drop(InFlight::new(&log, Some(request(&HeaderMap::new())), None));
    assert_eq!(dropped.get(), 1);
    assert!(sink.0.lock().is_empty());
}

/// A `Write` that says when it is entered, then blocks until told to go on.
struct Stuck {
    entered: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

impl Write for Stuck {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.entered.send(());
        let _ = self.go.recv();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_blocked_writer_drops_and_counts_lines_instead_of_waiting() {
    let write_one = |log: &AccessLog| {
        let response = http::Response::new(crate::body::empty());
        drop(Logged::wrap(
            Ending::new(
                log,
                Some(request(&HeaderMap::new())),
                None,
                Facts::new(true),
            ),
            response,
        ));
    };
    // How long one such line is.
    let sink = Sink::default();
    write_one(&AccessLog::to_writer(sink.clone(), Counter::default(), 1 << 20).expect("writer"));
    sink.lines(1);
    let length = sink.0.lock().len();
    assert!(length > 100, "one line: {length} bytes");

    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let stuck = Stuck {
        entered: entered_tx,
        go: go_rx,
    };
    let dropped = Counter::default();
    // Room for two lines and a half.
    let log = AccessLog::to_writer(stuck, dropped.clone(), length * 5 / 2).expect("writer");
    write_one(&log);
    entered
        .recv_timeout(Duration::from_secs(5))
        .expect("the writer thread writes the first line");
    let started = Instant::now();
    for _ in 0..10 {
        write_one(&log);
    }
    // The writer is stuck on the first line: two more fit in the buffer, eight are dropped.
    assert_eq!(dropped.get(), 8);
    assert!(started.elapsed() < Duration::from_secs(1), "never waits");
    drop(go);
}

#[test]
fn trace_ids_come_only_from_valid_traceparents() {
    let with = |value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static(value));
        trace_id(&headers).map(str::to_owned)
    };
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert_eq!(
        with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
        Some(id)
    );
    // A later version may add fields.
    assert_eq!(
        with("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").as_deref(),
        Some(id)
    );
    for invalid in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        assert_eq!(with(invalid), None, "{invalid}");
    }
    assert_eq!(trace_id(&HeaderMap::new()), None);
}

#[test]
fn off_writes_nothing() {
    let log = AccessLog::stdout(Format::Off, Counter::default()).expect("off");
    assert!(!log.is_on());
}

/// The request metrics' text exposition.
fn exposition(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text
}

#[test]
fn metrics_are_recorded_once_at_the_end_and_cancelled_before_a_response() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let metered = |received: u64| Metered {
        metrics: Arc::clone(&metrics),
        arrived: Instant::now(),
        received: Arc::new(AtomicU64::new(received)),
    };
    let response = http::Response::builder()
        .status(503)
        .body(crate::body::full(Bytes::from_static(b"down")))
        .expect("response");
    // The log is off: metrics only.
    let in_flight = InFlight::new(&AccessLog::off(), None, Some(metered(7)));
    let mut body = in_flight.respond(response).into_body();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        while let Some(frame) = body.frame().await {
            frame.expect("frame");
        }
    });
    let text = exposition(&registry);
    let no_route = r#"gateway="",listener="",route="",route_kind="",rule="",backend="""#;
    assert!(
        text.contains(&format!(
            r#"http_requests_total{{{no_route},status_class="5xx"}} 1"#
        )),
        "recorded when the body ended: {text}"
    );
    drop(body);
    let text = exposition(&registry);
    assert!(
        text.contains(&format!(
            r#"http_requests_total{{{no_route},status_class="5xx"}} 1"#
        )),
        "not again on drop: {text}"
    );
    assert!(
        text.contains(&format!(r#"http_request_body_bytes_total{{{no_route}}} 7"#)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"http_response_body_bytes_total{{{no_route}}} 4"#
        )),
        "{text}"
    );
    // A request dropped before its response.
    drop(InFlight::new(&AccessLog::off(), None, Some(metered(0))));
    let text = exposition(&registry);
    assert!(
        text.contains(&format!(
            r#"http_requests_total{{{no_route},status_class="cancelled"}} 1"#
        )),
        "{text}"
    );
}
