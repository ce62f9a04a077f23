//! The accept loop of silod's listeners that face callers it does not trust to be gentle (the
//! HTTPS endpoint, each instance's `/dev/lxd`): a bounded number of open connections, and a
//! back-off instead of a spin when accepting fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Accepts until `stop`, with at most `max` connections open at once: `serve` gets each with
/// the permit it must hold for its life. An accept error (out of fds and the like) is logged
/// as `what` and retried after a pause.
pub async fn bounded<S, A, Fut>(
    max: usize,
    stop: &CancellationToken,
    what: &str,
    mut accept: A,
    mut serve: impl FnMut(S, OwnedSemaphorePermit),
) where
    A: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
{
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            r = accept() => match r {
                Ok(s) => serve(s, permit),
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on {what}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
