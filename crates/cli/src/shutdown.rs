//! Waiting for the operator to stop a long-running command: Ctrl-C (SIGINT) or SIGTERM.
//!
//! Installing these handlers replaces the default "die at once" behaviour, so every command
//! that waits here must finish its own work (flush, commit, shut the broker down) and exit.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Resolves when SIGINT or SIGTERM arrives; returns the signal's name for logs.
pub async fn signalled() -> Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate =
            signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                result.context("cannot install the Ctrl-C handler")?;
                Ok("SIGINT")
            }
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot install the Ctrl-C handler")?;
        Ok("Ctrl-C")
    }
}

/// A flag that turns true on SIGINT or SIGTERM, for blocking loops (consumer polls) that
/// check it between polls. The watcher task lives as long as the runtime.
pub fn flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let setter = Arc::clone(&stop);
    tokio::spawn(async move {
        match signalled().await {
            Ok(name) => tracing::debug!(signal = name, "stopping"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "no signal handler"),
        }
        setter.store(true, Ordering::SeqCst);
    });
    stop
}
