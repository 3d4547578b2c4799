//! [`BufferedWriter`]: a non-blocking, bounded, batching log writer.
//!
//! Log lines are appended to a shared buffer under a short lock; a thread of
//! its own writes the buffer out every [`FLUSH_INTERVAL`] (or sooner when it
//! fills up). Producers never make a system call or wake a thread per line,
//! so a log line costs a lock and a copy. When the output is slow or blocked,
//! lines beyond the limit are dropped and counted, and the application keeps
//! running.
//!
//! The limit is in bytes: the lines waiting plus the batch being written
//! never hold more than the byte limit, so a stalled output with long
//! lines costs a bounded amount of memory (the issue this fixed: a 128,000
//! line bound let 25 KB lines take gigabytes). The two buffers keep their
//! capacity between batches (so a steady load allocates nothing), capped at
//! the limit each, and give it back once the load falls.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How often buffered lines are written out.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// How long shutting down waits for buffered lines to be written.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Capacity a buffer keeps however little it holds.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Lines waiting to be written.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    /// Bytes the writer thread took and has not finished writing.
    in_flight: usize,
    /// Bytes ever appended.
    appended: u64,
    /// Of those, bytes the writer thread has taken.
    taken: u64,
    /// Of those, bytes written (or lost to a failed write).
    written: u64,
    stopping: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer thread early (buffer half full, a flush, or shutdown).
    wake: Condvar,
    /// Signals that the writer thread finished a batch.
    batch_done: Condvar,
    /// Signals that the writer thread has exited.
    done: Mutex<bool>,
    done_cv: Condvar,
    limit_bytes: usize,
    limit_lines: usize,
    dropped: AtomicU64,
    asleep: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The count of lines dropped because the output could not keep up.
#[derive(Clone)]
pub(crate) struct DroppedLines(Arc<Shared>);

impl DroppedLines {
    pub(crate) fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for DroppedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DroppedLines").field(&self.get()).finish()
    }
}

/// The producer side: a [`MakeWriter`] whose writers append to the buffer.
#[derive(Clone)]
pub(crate) struct BufferedWriter(Arc<Shared>);

/// Stops the writer thread when dropped, after it wrote what is buffered
/// (waiting at most [`SHUTDOWN_WAIT`]).
pub(crate) struct WriterGuard(Option<Arc<Shared>>);

impl BufferedWriter {
    /// Starts the writer thread writing to `output`. At most `limit_bytes`
    /// bytes of lines wait or are being written, and at most `limit_lines`
    /// lines wait (not counting the batch being written), when given.
    pub(crate) fn start(
        output: Box<dyn Write + Send>,
        limit_bytes: usize,
        limit_lines: Option<usize>,
    ) -> io::Result<(Self, WriterGuard, DroppedLines)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            batch_done: Condvar::new(),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            limit_bytes: limit_bytes.max(1),
            limit_lines: limit_lines.map_or(usize::MAX, |lines| lines.max(1)),
            dropped: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
        });
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("multiweb-log-writer".to_owned())
            .spawn(move || run(&worker, output))?;
        Ok((
            Self(Arc::clone(&shared)),
            WriterGuard(Some(Arc::clone(&shared))),
            DroppedLines(shared),
        ))
    }

    /// Appends one or more whole lines, or drops and counts them when they
    /// do not fit.
    pub(crate) fn append(&self, buf: &[u8]) {
        let shared = &self.0;
        let mut pending = shared.lock();
        let held = pending.bytes.len() + pending.in_flight;
        if pending.stopping
            || pending.lines >= shared.limit_lines
            || buf.len() > shared.limit_bytes - held
        {
            drop(pending);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        reserve_within(&mut pending.bytes, buf.len(), shared.limit_bytes);
        pending.bytes.extend_from_slice(buf);
        pending.lines += 1;
        pending.appended += buf.len() as u64;
        let wake =
            pending.lines >= shared.limit_lines / 2 || held + buf.len() >= shared.limit_bytes / 2;
        drop(pending);
        if wake && shared.asleep.load(Ordering::Relaxed) {
            shared.wake.notify_one();
        }
    }

    /// Waits until every line appended so far is written, or `timeout`
    /// has passed, or the writer has stopped.
    pub(crate) fn flush_within(&self, timeout: Duration) {
        let shared = &self.0;
        let deadline = Instant::now() + timeout;
        let mut pending = shared.lock();
        let target = pending.appended;
        shared.wake.notify_one();
        while pending.written < target && !pending.stopping {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            pending = shared
                .batch_done
                .wait_timeout(pending, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Reserves room for `additional` more bytes in `bytes`, growing as a
/// `Vec` does (doubling) but never past `limit` (which the caller checked
/// the bytes fit in).
fn reserve_within(bytes: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = bytes.len() + additional;
    if needed > bytes.capacity() {
        let capacity = (bytes.capacity() * 2).max(4096).min(limit).max(needed);
        bytes.reserve_exact(capacity - bytes.len());
    }
}

fn run(shared: &Shared, mut output: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        let (stopping, lines) = {
            let mut pending = shared.lock();
            // The previous batch is written (or counted as dropped).
            if pending.written != pending.taken {
                pending.in_flight = 0;
                pending.written = pending.taken;
                shared.batch_done.notify_all();
            }
            if pending.lines == 0 && !pending.stopping {
                shared.asleep.store(true, Ordering::Relaxed);
                pending = shared
                    .wake
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                shared.asleep.store(false, Ordering::Relaxed);
            }
            std::mem::swap(&mut batch, &mut pending.bytes);
            pending.in_flight = batch.len();
            pending.taken = pending.appended;
            let lines = std::mem::take(&mut pending.lines);
            (pending.stopping, lines)
        };
        if !batch.is_empty() {
            // A failed write (a closed stdout, say) loses this batch: count
            // it; the application never sees the error.
            if output
                .write_all(&batch)
                .and_then(|()| output.flush())
                .is_err()
            {
                shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            let used = batch.len();
            batch.clear();
            // After a burst, give back what the usual load does not need.
            if batch.capacity() > KEEP_CAPACITY && used < batch.capacity() / 4 {
                batch.shrink_to(KEEP_CAPACITY.max(used * 2));
            }
        }
        if stopping {
            let mut pending = shared.lock();
            pending.in_flight = 0;
            pending.written = pending.taken;
            shared.batch_done.notify_all();
            if pending.lines == 0 {
                break;
            }
        }
    }
    *shared.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
    shared.done_cv.notify_all();
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else { return };
        shared.lock().stopping = true;
        shared.wake.notify_one();
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut done = shared.done.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            done = shared
                .done_cv
                .wait_timeout(done, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl std::fmt::Debug for WriterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterGuard").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BufferedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedWriter").finish_non_exhaustive()
    }
}

impl Write for BufferedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedWriter {
    type Writer = BufferedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An output whose writes block until it is opened; it records what
    /// went through and whether a write is waiting.
    #[derive(Clone, Default)]
    struct Valve(Arc<(Mutex<ValveState>, Condvar)>);

    /// Whether the valve is open, whether a write waits, what went through.
    type ValveState = (bool, bool, Vec<u8>);

    impl Valve {
        fn open(&self) {
            self.0.0.lock().unwrap().0 = true;
            self.0.1.notify_all();
        }

        /// Waits until the writer thread is blocked in a write.
        fn wait_blocked(&self) {
            let state = self.0.0.lock().unwrap();
            drop(self.0.1.wait_while(state, |s| !s.1).unwrap());
        }

        fn written(&self) -> Vec<u8> {
            self.0.0.lock().unwrap().2.clone()
        }
    }

    impl Write for Valve {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut state = self.0.0.lock().unwrap();
            state.1 = true;
            self.0.1.notify_all();
            let mut state = self.0.1.wait_while(state, |s| !s.0).unwrap();
            state.2.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_lost_to_a_failing_output_are_counted() {
        let (writer, guard, dropped) =
            BufferedWriter::start(Box::new(Broken), 1 << 20, None).unwrap();
        for _ in 0..10 {
            writer.append(b"line\n");
        }
        drop(guard);
        assert_eq!(dropped.get(), 10);
    }

    #[test]
    fn writes_every_line_in_order_by_shutdown() {
        let sink = Sink::default();
        let (writer, guard, dropped) =
            BufferedWriter::start(Box::new(sink.clone()), 1 << 20, None).unwrap();
        for i in 0..1_000 {
            writer.append(format!("line {i}\n").as_bytes());
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut expected = String::new();
        for i in 0..1_000 {
            std::fmt::Write::write_fmt(&mut expected, format_args!("line {i}\n")).unwrap();
        }
        assert_eq!(text, expected);
        assert_eq!(dropped.get(), 0);
        writer.append(b"after shutdown\n");
        assert_eq!(
            dropped.get(),
            1,
            "lines after shutdown are counted, not written"
        );
    }

    /// A 100-byte line.
    fn line(i: usize) -> Vec<u8> {
        let mut line = format!("line {i:04}").into_bytes();
        line.resize(99, b'.');
        line.push(b'\n');
        line
    }

    #[test]
    fn a_blocked_output_holds_at_most_the_byte_bound() {
        let valve = Valve::default();
        let (writer, guard, dropped) =
            BufferedWriter::start(Box::new(valve.clone()), 1_000, None).unwrap();
        // The writer thread takes these three lines and blocks writing them.
        for i in 0..3 {
            writer.append(&line(i));
        }
        valve.wait_blocked();
        // The batch being written counts: seven more lines fit, no more.
        for i in 3..100 {
            writer.append(&line(i));
        }
        assert_eq!(dropped.get(), 90);
        valve.open();
        drop(guard);
        let expected: Vec<u8> = (0..10).flat_map(line).collect();
        assert_eq!(valve.written(), expected);
        assert_eq!(dropped.get(), 90);
    }

    #[test]
    fn a_line_longer_than_the_bound_is_dropped_and_counted() {
        let sink = Sink::default();
        let (writer, guard, dropped) =
            BufferedWriter::start(Box::new(sink.clone()), 150, None).unwrap();
        writer.append(&[b'x'; 151]);
        writer.append(&line(1));
        drop(guard);
        assert_eq!(dropped.get(), 1);
        assert_eq!(*sink.0.lock().unwrap(), line(1));
    }

    #[test]
    fn a_line_bound_applies_besides_the_byte_bound() {
        let valve = Valve::default();
        let (writer, guard, dropped) =
            BufferedWriter::start(Box::new(valve.clone()), 1 << 20, Some(4)).unwrap();
        writer.append(&line(0));
        valve.wait_blocked();
        for i in 1..10 {
            writer.append(&line(i));
        }
        assert_eq!(
            dropped.get(),
            5,
            "four lines wait besides the one being written"
        );
        valve.open();
        drop(guard);
        assert_eq!(valve.written(), (0..5).flat_map(line).collect::<Vec<u8>>());
    }

    #[test]
    fn flush_within_returns_once_the_lines_so_far_are_written() {
        let sink = Sink::default();
        let (writer, _guard, _) =
            BufferedWriter::start(Box::new(sink.clone()), 1 << 20, None).unwrap();
        for i in 0..100 {
            writer.append(&line(i));
        }
        writer.flush_within(Duration::from_secs(30));
        assert_eq!(
            *sink.0.lock().unwrap(),
            (0..100).flat_map(line).collect::<Vec<u8>>()
        );
    }

    #[test]
    fn flush_within_gives_up_on_a_blocked_output() {
        let valve = Valve::default();
        let (writer, guard, _) =
            BufferedWriter::start(Box::new(valve.clone()), 1 << 20, None).unwrap();
        writer.append(&line(0));
        writer.flush_within(Duration::from_millis(50));
        assert!(
            valve.written().is_empty(),
            "returned while the output is blocked"
        );
        valve.open();
        drop(guard);
        assert_eq!(valve.written(), line(0));
    }

    #[test]
    fn reserve_within_never_grows_past_the_bound() {
        let mut bytes = Vec::new();
        for _ in 0..1_000 {
            reserve_within(&mut bytes, 3_000, 100_000);
            if bytes.len() + 3_000 > 100_000 {
                break;
            }
            bytes.extend_from_slice(&[0; 3_000]);
            assert!(bytes.capacity() <= 100_000, "{}", bytes.capacity());
        }
        assert_eq!(bytes.len(), 99_000);
    }
}
