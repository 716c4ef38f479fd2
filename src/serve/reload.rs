//! Reloading the rules: one task takes every trigger (an edit under the rules directory,
//! debounced; SIGHUP; `POST /v1/ruleset/reload`), puts the directory through the gate
//! (`live::try_load`) on a blocking thread, and swaps the ruleset in atomically when it
//! passes. Requests hold the `Arc` of the ruleset they started with, so those in flight
//! finish on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::signal::unix::Signal;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use super::api::Shared;
use super::live::{try_load, Gate};

/// A request to reload, with where to say what it came to.
#[derive(Debug)]
pub struct Reload {
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// What a reload came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    Swapped,
    Unchanged,
    Rejected,
}

/// Takes reload requests until every sender is gone.
pub async fn reloader(app: Shared, dir: PathBuf, mut requests: mpsc::Receiver<Reload>) {
    while let Some(first) = requests.recv().await {
        let mut replies = vec![first.reply];
        // Triggers that came meanwhile are answered by the same try.
        while let Ok(more) = requests.try_recv() {
            replies.push(more.reply);
        }
        let outcome = try_once(&app, &dir).await;
        for reply in replies.into_iter().flatten() {
            let _ = reply.send(outcome);
        }
    }
}

async fn try_once(app: &Shared, dir: &std::path::Path) -> ReloadOutcome {
    let live = app.live.load_full();
    let dir = dir.to_path_buf();
    let gate =
        tokio::task::spawn_blocking(move || try_load(&dir, Some(&live), chrono::Utc::now())).await;
    match gate {
        Ok(Gate::Passed(new)) => {
            tracing::info!(version = %new.version, "rules reloaded: the new ruleset serves");
            app.metrics.reload(true);
            app.metrics.live_version(&new.version);
            app.live.store(Arc::new(new));
            ReloadOutcome::Swapped
        }
        Ok(Gate::Unchanged) => ReloadOutcome::Unchanged,
        Ok(Gate::Rejected(rejection)) => {
            for e in &rejection.errors {
                tracing::warn!(
                    stage = ?rejection.stage,
                    file = e.file.as_deref().unwrap_or(""),
                    line = e.line.unwrap_or(0),
                    column = e.column.unwrap_or(0),
                    code = %e.code,
                    "rules reload rejected; the last good ruleset keeps serving: {}",
                    e.message
                );
            }
            app.metrics.reload(false);
            *app.last_rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some(rejection);
            ReloadOutcome::Rejected
        }
        Err(e) => {
            tracing::error!(error = %e, "the reload task failed");
            app.metrics.reload(false);
            ReloadOutcome::Rejected
        }
    }
}

/// Watches the rules directory; each burst of edits (settled for `debounce`) asks for a
/// reload. The watcher stops when the returned value is dropped.
pub fn watch(
    dir: &std::path::Path,
    debounce: Duration,
    reloads: mpsc::Sender<Reload>,
) -> Result<notify_debouncer_mini::Debouncer<notify::RecommendedWatcher>, notify::Error> {
    let mut debouncer = notify_debouncer_mini::new_debouncer(
        debounce,
        move |events: notify_debouncer_mini::DebounceEventResult| {
            if events.is_ok_and(|e| !e.is_empty()) {
                // A reload already queued covers this edit too.
                let _ = reloads.try_send(Reload { reply: None });
            }
        },
    )?;
    debouncer
        .watcher()
        .watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(debouncer)
}

/// Asks for a reload on every SIGHUP.
pub async fn on_sighup(mut hup: Signal, reloads: mpsc::Sender<Reload>) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the rules");
        if reloads.send(Reload { reply: None }).await.is_err() {
            return;
        }
    }
}
