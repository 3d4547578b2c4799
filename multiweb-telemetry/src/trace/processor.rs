//! The span processor: tail sampling of error traces, a bounded queue, and an
//! exporter thread with its own runtime.

use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar};

use crossbeam_channel::Sender;
use metrics::Counter;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use rustc_hash::FxHashMap;

use super::otlp::{ExportError, Failure, MAX_REQUEST_BYTES, OtlpExporter, PartialSuccess};
use crate::Error;

/// Name of the counter of spans dropped before reaching the collector.
pub const SPANS_DROPPED: &str = "multiweb_telemetry_spans_dropped_total";
/// Name of the counter of spans the collector accepted.
pub const SPANS_EXPORTED: &str = "multiweb_telemetry_spans_exported_total";

/// Most spans held at once for undecided traces (see [`crate::trace`]).
pub const MAX_PENDING_SPANS: usize = 4096;

/// Spans per export request.
const MAX_BATCH: usize = 512;
/// Longest a finished span waits before its batch is sent.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Export failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

enum Control {
    Resource(Resource),
    Flush(Sender<()>),
    Shutdown(Sender<()>),
}

/// Spans of traces whose fate is decided when their local root ends.
/// Keyed by trace ids this process generated (a remote parent's trace is
/// never held), so a fast non-keyed hash is safe.
#[derive(Default)]
struct Pending {
    traces: FxHashMap<TraceId, PendingTrace>,
    spans: usize,
}

#[derive(Default)]
struct PendingTrace {
    /// The first held span, inline: most held traces have one (a handler
    /// span under the request span), and a `Vec` of spans would be a
    /// kilobyte-sized allocation per request.
    first: Option<SpanData>,
    more: Vec<SpanData>,
    error: bool,
}

impl PendingTrace {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn push(&mut self, span: SpanData) {
        if self.first.is_none() {
            self.first = Some(span);
        } else {
            self.more.push(span);
        }
    }

    fn into_spans(self) -> impl Iterator<Item = SpanData> {
        self.first.into_iter().chain(self.more)
    }
}

/// What waits for the exporter thread. Producers append under a short lock
/// and wake the thread only when the queue is half full: a span costs no
/// system call.
#[derive(Default)]
struct QueueState {
    spans: Vec<SpanData>,
    control: Vec<Control>,
    closed: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
    asleep: AtomicBool,
    capacity: usize,
    /// Spans refused because the queue was full, since the exporter thread
    /// last looked (it logs the warning: a span's end must not log).
    refused: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a span, or returns `false` when the queue is full or closed.
    fn push(&self, span: SpanData) -> bool {
        let mut state = self.lock();
        if state.closed || state.spans.len() >= self.capacity {
            return false;
        }
        state.spans.push(span);
        let wake = state.spans.len() * 2 >= self.capacity || state.spans.len() >= MAX_BATCH;
        drop(state);
        if wake && self.asleep.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
        true
    }

    /// Whether new spans are refused now.
    fn is_full(&self) -> bool {
        self.lock().spans.len() >= self.capacity
    }

    /// Appends a control message and wakes the thread; `false` once closed.
    fn send(&self, control: Control) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.control.push(control);
        drop(state);
        self.wake.notify_one();
        true
    }
}

/// Queues sampled spans for the exporter thread; holds `RecordOnly` spans
/// until their local root ends, then queues them if the trace had an error.
pub(crate) struct ExportProcessor {
    queue: Arc<Queue>,
    /// Longest a flush may wait: the export in progress and every batch the
    /// queue can hold, each bounded by the export timeout.
    flush_timeout: Duration,
    pending: Mutex<Pending>,
    dropped: Counter,
}

impl std::fmt::Debug for ExportProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportProcessor").finish_non_exhaustive()
    }
}

impl ExportProcessor {
    /// Starts the exporter thread. `make_exporter` runs on that thread,
    /// inside its runtime (tonic needs one to build its channel).
    pub(crate) fn start<F>(
        queue_size: usize,
        timeout: Duration,
        make_exporter: F,
    ) -> Result<Self, Error>
    where
        F: FnOnce() -> Result<OtlpExporter, Error> + Send + 'static,
    {
        metrics::describe_counter!(
            SPANS_DROPPED,
            "Finished spans dropped before reaching the collector (queue full, export failed or \
             rejected, or a span too large to send)."
        );
        metrics::describe_counter!(SPANS_EXPORTED, "Spans the collector accepted.");
        let dropped = metrics::counter!(SPANS_DROPPED);
        dropped.absolute(0);
        let accepted = metrics::counter!(SPANS_EXPORTED);
        accepted.absolute(0);

        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            wake: Condvar::new(),
            asleep: AtomicBool::new(false),
            capacity: queue_size,
            refused: AtomicU64::new(0),
        });
        let worker_queue = Arc::clone(&queue);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let worker_dropped = dropped.clone();
        thread::Builder::new()
            .name("multiweb-span-exporter".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(source) => {
                        let _ = ready_tx.send(Err(Error::Spawn {
                            what: "span exporter runtime",
                            source,
                        }));
                        return;
                    }
                };
                let exporter = {
                    let _entered = runtime.enter();
                    make_exporter()
                };
                match exporter {
                    Ok(exporter) => {
                        let _ = ready_tx.send(Ok(()));
                        Worker {
                            runtime,
                            exporter,
                            queue: worker_queue,
                            dropped: worker_dropped,
                            exported: accepted,
                            warned: Warned::default(),
                        }
                        .run();
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })
            .map_err(|source| Error::Spawn {
                what: "span exporter",
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(Error::Spawn {
                    what: "span exporter",
                    source: std::io::Error::other("the exporter thread stopped while starting"),
                });
            }
        }
        let batches = u32::try_from(queue_size.div_ceil(MAX_BATCH)).unwrap_or(u32::MAX);
        Ok(Self {
            queue,
            flush_timeout: timeout.saturating_mul(batches.saturating_add(1)),
            pending: Mutex::new(Pending::default()),
            dropped,
        })
    }

    fn enqueue(&self, span: SpanData) {
        if !self.queue.push(span) {
            self.dropped.increment(1);
            self.queue.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ask(&self, make: impl FnOnce(Sender<()>) -> Control, timeout: Duration) -> OTelSdkResult {
        let (done, wait) = crossbeam_channel::bounded(1);
        if !self.queue.send(make(done)) {
            return Ok(()); // already shut down
        }
        wait.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

/// A span is the local root when it has no parent in this process.
fn is_local_root(span: &SpanData) -> bool {
    span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote
}

/// The same span, marked sampled (it was recorded but not sampled).
fn mark_sampled(mut span: SpanData) -> SpanData {
    let cx = &span.span_context;
    span.span_context = SpanContext::new(
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().with_sampled(true),
        cx.is_remote(),
        cx.trace_state().clone(),
    );
    span
}

impl SpanProcessor for ExportProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.enqueue(span);
            return;
        }
        // Recorded but not sampled: the error rule decides at the local root.
        let error = matches!(span.status, Status::Error { .. });
        let trace_id = span.span_context.trace_id();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if is_local_root(&span) {
            // Most local roots have no held children (a single-span trace).
            let held = if pending.traces.is_empty() {
                PendingTrace::default()
            } else {
                pending.traces.remove(&trace_id).unwrap_or_default()
            };
            pending.spans -= held.len();
            drop(pending);
            if error || held.error {
                for held_span in held.into_spans() {
                    self.enqueue(mark_sampled(held_span));
                }
                self.enqueue(mark_sampled(span));
            }
            return;
        }
        if pending.spans >= MAX_PENDING_SPANS {
            // Over the memory bound: the span is not kept, but an error still
            // marks its trace so the root and the other held spans are kept.
            if error && let Some(trace) = pending.traces.get_mut(&trace_id) {
                trace.error = true;
            }
            return;
        }
        pending.spans += 1;
        let trace = pending.traces.entry(trace_id).or_default();
        trace.error |= error;
        trace.push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, self.flush_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.queue.send(Control::Resource(resource.clone()));
    }
}

/// The exporter thread.
struct Worker {
    runtime: tokio::runtime::Runtime,
    exporter: OtlpExporter,
    queue: Arc<Queue>,
    dropped: Counter,
    exported: Counter,
    warned: Warned,
}

/// When each kind of warning was last logged: each is limited to one per
/// [`WARN_EVERY`] on its own, so that one cause never hides another.
#[derive(Default)]
struct Warned {
    failed: Option<Instant>,
    tls: Option<Instant>,
    rejected: Option<Instant>,
    partial: Option<Instant>,
    too_large: Option<Instant>,
    queue_full: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let (spans, control) = {
                let mut state = self.queue.lock();
                if state.spans.len() < MAX_BATCH && state.control.is_empty() {
                    self.queue.asleep.store(true, Ordering::Relaxed);
                    state = self
                        .queue
                        .wake
                        .wait_timeout(state, BATCH_DELAY)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    self.queue.asleep.store(false, Ordering::Relaxed);
                }
                let spans = std::mem::take(&mut state.spans);
                let control = std::mem::take(&mut state.control);
                if control.iter().any(|c| matches!(c, Control::Shutdown(_))) {
                    state.closed = true;
                }
                (spans, control)
            };
            self.warn_queue_full();
            for message in &control {
                if let Control::Resource(resource) = message {
                    self.exporter.set_resource(resource);
                }
            }
            for batch in spans.chunks(MAX_BATCH) {
                self.export(batch);
            }
            for message in control {
                match message {
                    Control::Resource(_) => {}
                    Control::Flush(done) => {
                        let _ = done.send(());
                    }
                    Control::Shutdown(done) => {
                        let _ = done.send(());
                        return;
                    }
                }
            }
        }
    }

    /// Sends `batch`, in parts when its request would be larger than
    /// [`MAX_REQUEST_BYTES`]: a span too large on its own is dropped alone,
    /// never with its neighbours.
    fn export(&mut self, batch: &[SpanData]) {
        let encoded = self.exporter.encode(batch);
        if encoded.len() > MAX_REQUEST_BYTES {
            if let [span] = batch {
                self.dropped.increment(1);
                if due(&mut self.warned.too_large) {
                    tracing::warn!(
                        target: "multiweb_telemetry::trace",
                        span = %span.name,
                        bytes = encoded.len(),
                        limit = MAX_REQUEST_BYTES,
                        "a span too large for one export request was dropped \
                         (counted in multiweb_telemetry_spans_dropped_total, \
                         logged at most once a minute)"
                    );
                }
                return;
            }
            let (first, second) = batch.split_at(batch.len() / 2);
            self.export(first);
            self.export(second);
            return;
        }
        let count = batch.len() as u64;
        let (exporter, queue) = (&mut self.exporter, &self.queue);
        let result = self
            .runtime
            .block_on(exporter.send(encoded, batch.len(), || queue.is_full()));
        match result {
            Ok(partial) => {
                self.exported
                    .increment(count.saturating_sub(partial.rejected));
                self.dropped.increment(partial.rejected);
                if partial != PartialSuccess::default() {
                    self.warn_partial(count, &partial);
                }
            }
            Err(error) => {
                // Counted once, when the request is finally given up.
                self.dropped.increment(count);
                self.warn_failure(count, &error);
            }
        }
    }

    /// Logs why a request was given up, at most once a minute per kind.
    fn warn_failure(&mut self, count: u64, error: &ExportError) {
        let last = match error.failure {
            Failure::Failed => &mut self.warned.failed,
            Failure::Tls => &mut self.warned.tls,
            Failure::Rejected => &mut self.warned.rejected,
        };
        if !due(last) {
            return;
        }
        match error.failure {
            Failure::Failed => tracing::warn!(
                target: "multiweb_telemetry::trace",
                error = %error,
                dropped = count,
                "span export failed; dropping spans until the collector answers \
                 (counted in multiweb_telemetry_spans_dropped_total, logged at most once a minute)"
            ),
            Failure::Tls => tracing::warn!(
                target: "multiweb_telemetry::trace",
                error = %error,
                dropped = count,
                "span export failed: no TLS connection to the collector; dropping spans \
                 until one succeeds (counted in multiweb_telemetry_spans_dropped_total, \
                 logged at most once a minute)"
            ),
            Failure::Rejected => tracing::warn!(
                target: "multiweb_telemetry::trace",
                error = %error,
                dropped = count,
                "span export rejected by the collector; the spans are dropped, not retried \
                 (counted in multiweb_telemetry_spans_dropped_total, logged at most once a minute)"
            ),
        }
    }

    /// Logs spans refused by a full queue, at most once a minute.
    fn warn_queue_full(&mut self) {
        if self.queue.refused.load(Ordering::Relaxed) == 0 || !due(&mut self.warned.queue_full) {
            return;
        }
        let refused = self.queue.refused.swap(0, Ordering::Relaxed);
        tracing::warn!(
            target: "multiweb_telemetry::trace",
            dropped = refused,
            capacity = self.queue.capacity,
            "the span queue is full; new spans are dropped until the exporter catches up \
             (counted in multiweb_telemetry_spans_dropped_total, logged at most once a minute; \
             a larger `span_queue_size` absorbs longer bursts)"
        );
    }

    /// Logs what a collector said when it accepted a batch only in part (or
    /// with a warning), at most once a minute.
    fn warn_partial(&mut self, count: u64, partial: &PartialSuccess) {
        if !due(&mut self.warned.partial) {
            return;
        }
        tracing::warn!(
            target: "multiweb_telemetry::trace",
            rejected = partial.rejected,
            of = count,
            message = %partial.message,
            "the collector accepted spans only in part or with a warning \
             (rejected spans counted in multiweb_telemetry_spans_dropped_total, \
             logged at most once a minute)"
        );
    }
}

/// Whether a warning limited to one per [`WARN_EVERY`] may be logged now;
/// notes it in `last` if so.
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}
