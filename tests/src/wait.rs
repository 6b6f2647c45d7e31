//! Waiting without guessing: every test waits for a condition by polling it until a deadline,
//! never by sleeping for a time it hopes is long enough. One loop does all the polling; the
//! helpers differ only in how often they look again and what a timeout says.

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// How often a poll looks again.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// 5 ms, doubling to at most 100 ms: quick when the condition is near, cheap when it is not.
    Backoff,
    /// A fixed interval (a check that itself costs, e.g. one that spends a rate limit).
    Every(Duration),
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_until(what, timeout, Pace::Backoff, check).await
}

/// Polls `check` at `pace` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, pace: Pace, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_explained(what, timeout, pace, check, String::new).await
}

/// [`poll_until`], with `explain()` appended to the timeout's panic (a process's log, say).
pub async fn poll_explained<T, F, Fut>(
    what: &str,
    timeout: Duration,
    pace: Pace,
    mut check: F,
    explain: impl Fn() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = match pace {
        Pace::Backoff => Duration::from_millis(5),
        Pace::Every(every) => every,
    };
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}{}",
            explain()
        );
        tokio::time::sleep(pause).await;
        if let Pace::Backoff = pace {
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// A free TCP port on loopback (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
