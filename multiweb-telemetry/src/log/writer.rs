//! [`BufferedWriter`]: a non-blocking, bounded, batching log writer.
//!
//! Log lines are appended to a shared buffer under a short lock; a thread of
//! its own writes the buffer out every [`FLUSH_INTERVAL`] (or sooner when it
//! fills up). Producers never make a system call or wake a thread per line,
//! so a log line costs a lock and a copy. When the output is slow or blocked,
//! lines beyond the limit are dropped and counted, and the application keeps
//! running.

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

/// Lines waiting to be written.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    stopping: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer thread early (buffer half full, or shutdown).
    wake: Condvar,
    /// Signals that the writer thread has exited.
    done: Mutex<bool>,
    done_cv: Condvar,
    limit: usize,
    dropped: AtomicU64,
    asleep: AtomicBool,
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
    /// Starts the writer thread writing to `output`; at most `limit_lines`
    /// lines wait at once.
    pub(crate) fn start(
        output: Box<dyn Write + Send>,
        limit_lines: usize,
    ) -> io::Result<(Self, WriterGuard, DroppedLines)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            limit: limit_lines.max(1),
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

    /// Appends one or more whole lines.
    pub(crate) fn append(&self, buf: &[u8]) {
        let shared = &self.0;
        let mut pending = shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending.stopping || pending.lines >= shared.limit {
            drop(pending);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.bytes.extend_from_slice(buf);
        pending.lines += 1;
        let wake = pending.lines * 2 >= shared.limit;
        drop(pending);
        if wake && shared.asleep.load(Ordering::Relaxed) {
            shared.wake.notify_one();
        }
    }
}

fn run(shared: &Shared, mut output: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        let (stopping, lines) = {
            let mut pending = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
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
            batch.clear();
        }
        if stopping {
            let has_more = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .lines
                > 0;
            if !has_more {
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
        shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopping = true;
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
        let (writer, guard, dropped) = BufferedWriter::start(Box::new(Broken), 10_000).unwrap();
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
            BufferedWriter::start(Box::new(sink.clone()), 10_000).unwrap();
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
}
