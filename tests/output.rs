//! Reading a child process's stdout or stderr line by line on a thread of
//! its own, and waiting for a line.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lines a child process wrote, shared with the thread that reads them.
#[derive(Default)]
pub(crate) struct Lines {
    pub(crate) received: Mutex<Vec<String>>,
    pub(crate) closed: std::sync::atomic::AtomicBool,
    pub(crate) changed: Condvar,
}

pub(crate) fn pump(stream: impl Read + Send + 'static) -> Arc<Lines> {
    pump_until(stream, None)
}

/// Like [`pump`]; with `stop`, stops reading after the first line
/// containing its text and holds the pipe open, unread, until its receiver's
/// sender is dropped.
pub(crate) fn pump_until(
    stream: impl Read + Send + 'static,
    stop: Option<(&'static str, std::sync::mpsc::Receiver<()>)>,
) -> Arc<Lines> {
    let lines = Arc::new(Lines::default());
    let shared = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        for line in reader.by_ref().lines() {
            let Ok(line) = line else { break };
            let last = stop.as_ref().is_some_and(|(text, _)| line.contains(text));
            shared.received.lock().unwrap().push(line);
            shared.changed.notify_all();
            if let (true, Some((_, hold))) = (last, &stop) {
                // Blocks until the app is dropped; the pipe stays open.
                let _ = hold.recv();
                return;
            }
        }
        let _guard = shared.received.lock().unwrap();
        shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        shared.changed.notify_all();
    });
    lines
}

pub(crate) fn wait_for(
    lines: &Lines,
    timeout: Duration,
    mut pred: impl FnMut(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut guard = lines.received.lock().unwrap();
    loop {
        if let Some(line) = guard.iter().find(|l| pred(l)) {
            return Some(line.clone());
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        guard = lines.changed.wait_timeout(guard, deadline - now).unwrap().0;
    }
}
