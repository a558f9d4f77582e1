//! One [`CancellationToken`] for the whole process, cancelled by the first SIGINT or SIGTERM.
//!
//! Every Hookline binary stops this way: the publisher, the consumer, the setup CLI's long
//! commands, the demo, the bench, and the customer-side `hookline-receiver`. It is a crate of its
//! own so that the receiver, which must not link librdkafka, shares it with the others instead of
//! keeping a copy.

use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGINT or SIGTERM. Must be called inside a Tokio
/// runtime. The SIGTERM handler is in place when this returns, so a SIGTERM that comes at once
/// (an orchestrator stopping a process that just started) is a clean stop, not the default
/// action's kill.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let terminate = listen_for_terminate();
    tokio::spawn(async move {
        wait_for_signal(terminate).await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
type Terminate = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Terminate = ();

#[cfg(unix)]
fn listen_for_terminate() -> Terminate {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(terminate) => Some(terminate),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C will stop this process");
            None
        }
    }
}

#[cfg(not(unix))]
fn listen_for_terminate() -> Terminate {}

#[cfg(unix)]
async fn wait_for_signal(terminate: Terminate) {
    match terminate {
        Some(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal((): Terminate) {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_sigterm_right_after_the_call_cancels_the_token() {
        let token = on_signal();
        // Sent before the task that waits for it has run: the handler is in place already.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), token.cancelled()).await.expect("cancelled by SIGTERM");
    }
}
