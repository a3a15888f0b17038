//! The lean span path: a bounded queue of finished span records and the task that turns them
//! into OTLP spans ([`super::encode`]) and exports them in batches ([`super::otlp::Sender`]).
//!
//! A hot path that makes a span per request (the proxy's request spans) records plain values
//! (ids, clock readings, strings it already holds) and pushes one record when the span ends: a
//! lock held for a `Vec::push`. Everything else (OTLP attribute lists, span names, encoding,
//! sending) happens in the export task, off the request path. Spans that find the queue full are
//! dropped and counted, as are the spans of an export that fails; nothing waits for the
//! collector. Sizes and timing follow the batch span processor's `OTEL_BSP_*` settings.
//!
//! It does not sample (the caller decides before recording) and does not retry exports.

use super::{
    encode::{SpanWriter, push_span},
    otlp::Sender,
};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;

/// A finished span, as its recorder kept it.
pub trait Record: Send + 'static {
    /// Writes the OTLP span (in the export task).
    fn encode(&self, span: &mut SpanWriter<'_>);
}

/// Queue sizes and timing (`OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
/// `OTEL_BSP_SCHEDULE_DELAY`).
#[derive(Clone, Copy, Debug)]
pub struct BatchSettings {
    /// Records waiting at most; more are dropped.
    pub queue: usize,
    /// Spans per export request at most.
    pub batch: usize,
    /// How long a record waits for a batch to fill before it is exported anyway.
    pub delay: Duration,
}

/// The sending side of the queue; cheap to clone.
#[derive(Debug)]
pub struct SpanQueue<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for SpanQueue<R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<R> {
    records: Mutex<Vec<R>>,
    settings: BatchSettings,
    /// A batch is full, or the queue closed.
    ready: Notify,
    closed: AtomicBool,
    /// Records the export task has taken and not yet sent: they count against the bound.
    in_flight: AtomicUsize,
    dropped: Counter,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<R: Record> SpanQueue<R> {
    /// A queue whose records `sender` exports, from a task on the current Tokio runtime;
    /// records dropped (queue full, export failed) are counted in `dropped`.
    pub fn start(sender: Sender, settings: BatchSettings, dropped: Counter) -> Self {
        let settings = BatchSettings {
            queue: settings.queue.max(1),
            batch: settings.batch.clamp(1, settings.queue.max(1)),
            // A zero delay would make the task spin.
            delay: settings.delay.max(Duration::from_millis(1)),
        };
        let shared = Arc::new(Shared {
            records: Mutex::new(Vec::with_capacity(settings.queue)),
            settings,
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            dropped,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(export_loop(Arc::clone(&shared), sender));
        *shared.task.lock() = Some(task);
        Self { shared }
    }

    /// Queues a finished span, or drops (and counts) it when the queue is full or closed.
    pub fn push(&self, record: R) {
        let shared = &*self.shared;
        let mut records = shared.records.lock();
        if records.len() + shared.in_flight.load(Ordering::Relaxed) >= shared.settings.queue
            || shared.closed.load(Ordering::Relaxed)
        {
            drop(records);
            shared.dropped.inc();
            return;
        }
        records.push(record);
        let full = records.len() == shared.settings.batch;
        drop(records);
        if full {
            shared.ready.notify_one();
        }
    }

    /// Exports what is queued and stops the task, waiting at most `limit`. Later records are
    /// dropped.
    pub async fn close(&self, limit: Duration) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.ready.notify_one();
        let task = self.shared.task.lock().take();
        if let Some(task) = task
            && tokio::time::timeout(limit, task).await.is_err()
        {
            tracing::warn!(
                ?limit,
                "spans still queued at shutdown were not all exported"
            );
        }
    }
}

async fn export_loop<R: Record>(shared: Arc<Shared<R>>, mut sender: Sender) {
    let mut spare: Vec<R> = Vec::with_capacity(shared.settings.queue);
    let (mut spans, mut scratch) = (Vec::new(), Vec::new());
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let closed = shared.closed.load(Ordering::Relaxed);
        if !closed {
            tokio::select! {
                () = shared.ready.notified() => {}
                () = tokio::time::sleep(shared.settings.delay) => {}
            }
        }
        let mut taken = {
            let mut records = shared.records.lock();
            shared.in_flight.store(records.len(), Ordering::Relaxed);
            std::mem::replace(&mut *records, spare)
        };
        while !taken.is_empty() {
            let n = taken.len().min(shared.settings.batch);
            spans.clear();
            for record in taken.drain(..n) {
                scratch.clear();
                record.encode(&mut SpanWriter::new(&mut scratch));
                push_span(&mut spans, &scratch);
            }
            let result = sender.export(&spans).await;
            shared.in_flight.fetch_sub(n, Ordering::Relaxed);
            if let Err(error) = result {
                shared.dropped.inc_by(n as u64);
                // One line per ten seconds at most: a collector that is down is one problem.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(%error, spans = n, "dropping spans");
                    last_warning = Some(tokio::time::Instant::now());
                }
            }
        }
        spare = taken;
        if closed {
            let left = std::mem::take(&mut *shared.records.lock());
            shared.dropped.inc_by(left.len() as u64);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::{
        OtlpProtocol,
        encode::Kind,
        otlp::{Sender, Target},
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    };

    /// A span named by a number.
    struct Numbered(u8);

    impl Record for Numbered {
        fn encode(&self, span: &mut SpanWriter<'_>) {
            span.ids([self.0; 16], [self.0; 8], None)
                .flags(false)
                .name(&[&self.0.to_string()])
                .kind(Kind::Server)
                .times(1, 2);
        }
    }

    /// An OTLP receiver keeping the span names of each request.
    #[derive(Clone, Default)]
    struct Receiver(Arc<Mutex<Vec<Vec<String>>>>);

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let names = request
                .into_inner()
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| s.name.clone())
                .collect();
            self.0.lock().push(names);
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    impl Receiver {
        async fn start() -> (Self, String) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let receiver = Self::default();
            let service = TraceServiceServer::new(receiver.clone());
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            (receiver, url)
        }

        fn requests(&self) -> Vec<Vec<String>> {
            self.0.lock().clone()
        }
    }

    fn queue(
        url: String,
        queue: usize,
        batch: usize,
        delay: Duration,
    ) -> (SpanQueue<Numbered>, Counter) {
        let target = Target {
            url,
            protocol: OtlpProtocol::Grpc,
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            resource: Vec::new(),
        };
        let dropped = Counter::default();
        let sender = Sender::new(target, "test").expect("sender");
        let settings = BatchSettings {
            queue,
            batch,
            delay,
        };
        (SpanQueue::start(sender, settings, dropped.clone()), dropped)
    }

    #[tokio::test]
    async fn spans_are_exported_in_batches_and_those_beyond_the_queue_are_counted() {
        let (receiver, url) = Receiver::start().await;
        let (queue, dropped) = queue(url, 10, 4, Duration::from_millis(20));
        // The export task cannot run between these pushes (one thread, no await): 10 fit.
        for n in 0..15 {
            queue.push(Numbered(n));
        }
        assert_eq!(dropped.get(), 5);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while receiver.requests().iter().map(Vec::len).sum::<usize>() < 10 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                receiver.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let requests = receiver.requests();
        assert!(
            requests.iter().all(|r| !r.is_empty() && r.len() <= 4),
            "{requests:?}"
        );
        let names: Vec<String> = requests.concat();
        let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
        assert_eq!(names, expected);
        assert_eq!(dropped.get(), 5);
    }

    #[tokio::test]
    async fn closing_exports_what_is_queued_and_later_spans_are_dropped() {
        let (receiver, url) = Receiver::start().await;
        let (queue, dropped) = queue(url, 100, 50, Duration::from_secs(3600));
        for n in 0..3 {
            queue.push(Numbered(n));
        }
        queue.close(Duration::from_secs(10)).await;
        assert_eq!(receiver.requests(), vec![vec!["0", "1", "2"]]);
        queue.push(Numbered(9));
        assert_eq!(dropped.get(), 1);
    }

    #[tokio::test]
    async fn the_spans_of_a_failed_export_are_counted_as_dropped() {
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let (queue, dropped) = queue(url, 100, 50, Duration::from_secs(3600));
        for n in 0..3 {
            queue.push(Numbered(n));
        }
        queue.close(Duration::from_secs(10)).await;
        assert_eq!(dropped.get(), 3);
    }
}
