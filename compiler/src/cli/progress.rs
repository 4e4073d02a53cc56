//! A progress line for long work (building the C of a large model,
//! benchmarks, QEMU runs): on standard error when it is a terminal, after
//! half a second, as `nnc: building the C ... 3.2 s` with a spinner,
//! erased when the work ends. Nothing at all when standard error is piped
//! or redirected, so logs and scripts see no control characters.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The line shows up only for work longer than this
/// (`$NNC_PROGRESS_DELAY_MS` overrides it).
const DELAY: Duration = Duration::from_millis(500);
const TICK: Duration = Duration::from_millis(100);

/// Shows `what` with the elapsed time until dropped.
#[derive(Debug)]
pub(super) struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(what: impl Into<String>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                thread: None,
            };
        }
        let what = what.into();
        let delay = std::env::var("NNC_PROGRESS_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DELAY, Duration::from_millis);
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            if !matches!(rx.recv_timeout(delay), Err(RecvTimeoutError::Timeout)) {
                return;
            }
            let spin = ['|', '/', '-', '\\'];
            let mut i = 0;
            loop {
                let mut e = std::io::stderr().lock();
                let _ = write!(
                    e,
                    "\r\x1b[2Knnc: {what} {} {:.1} s",
                    spin[i % spin.len()],
                    t0.elapsed().as_secs_f64()
                );
                let _ = e.flush();
                drop(e);
                i += 1;
                if !matches!(rx.recv_timeout(TICK), Err(RecvTimeoutError::Timeout)) {
                    let _ = write!(std::io::stderr(), "\r\x1b[2K");
                    return;
                }
            }
        });
        Progress {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
