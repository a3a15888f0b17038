//! The file source: every `*.yaml`/`*.yml` file directly in `--config-dir`, re-read when the folder
//! changes (notify events, debounced; only the files the events name, and new ones) and entirely
//! on a slow periodic resync as a safety net.
//!
//! A file that fails to parse (half-written, invalid) is reported and keeps its last good objects;
//! the other files are unaffected. A file that disappears takes its objects with it.

use super::objects::{self, Object};
pub use super::{SourceState, Timing};
use serval_common::shutdown;
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::sync::{mpsc, watch};

/// Why the folder itself cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing the folder failed.
    #[error("config dir {dir}: {source}")]
    ReadDir {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The watcher could not be set up.
    #[error("config dir {dir}: cannot watch: {source}")]
    Watch {
        /// The folder.
        dir: PathBuf,
        /// The notify error.
        #[source]
        source: notify::Error,
    },
}

/// Reads a config folder, keeping the last good objects of each file.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Counts the folder's change events.
    events: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, Default)]
struct FileState {
    text: String,
    objects: Vec<Object>,
    skipped: Vec<String>,
    error: Option<String>,
}

impl FileSource {
    /// A source over `dir` (nothing read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            events: Default::default(),
        }
    }

    /// Counts the folder's change events in `events`.
    pub fn counting_events(mut self, events: prometheus_client::metrics::counter::Counter) -> Self {
        self.events = events;
        self
    }

    /// Re-reads the folder.
    pub fn reload(&mut self) -> Result<SourceState, Error> {
        self.reload_files(None)
    }

    /// Re-reads the folder: every file, or (`Some(names)`) only the files of those names and
    /// files not read before; a file no longer listed is dropped either way.
    fn reload_files(&mut self, only: Option<&BTreeSet<OsString>>) -> Result<SourceState, Error> {
        let read_dir = std::fs::read_dir(&self.dir).map_err(|source| Error::ReadDir {
            dir: self.dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = read_dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_config_file(p))
            .collect();
        paths.sort();
        let mut files = BTreeMap::new();
        for path in paths {
            let unchanged =
                only.is_some_and(|names| path.file_name().is_some_and(|n| !names.contains(n)));
            let mut state = match self.files.remove(&path) {
                Some(state) if unchanged => {
                    files.insert(path, state);
                    continue;
                }
                known => known.unwrap_or_default(),
            };
            let origin = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Err(e) => state.error = Some(format!("{origin}: {e}")),
                Ok(text) if text == state.text && state.error.is_none() => {}
                Ok(text) => match objects::parse_documents(&origin, &text) {
                    Ok(parsed) => {
                        state.objects = parsed.objects;
                        state.skipped = parsed.skipped;
                        state.error = None;
                        state.text = text;
                    }
                    Err(e) => {
                        state.error = Some(e.to_string());
                        state.text = text;
                    }
                },
            }
            files.insert(path, state);
        }
        self.files = files;
        Ok(self.state())
    }

    fn state(&self) -> SourceState {
        let mut state = SourceState::default();
        state
            .objects
            .reserve_exact(self.files.values().map(|f| f.objects.len()).sum());
        for file in self.files.values() {
            state.objects.extend(file.objects.iter().cloned());
            state.skipped.extend(file.skipped.iter().cloned());
            state.errors.extend(file.error.iter().cloned());
        }
        state
    }

    /// Reads the folder, publishes the state, then re-reads and publishes after every change
    /// until shutdown.
    pub async fn run(
        mut self,
        timing: Timing,
        publish: watch::Sender<Arc<SourceState>>,
        mut shutdown: shutdown::Watch,
    ) -> Result<(), Error> {
        // Each change event carries the names of the files it touched.
        let (tx, mut events) = mpsc::unbounded_channel::<Vec<OsString>>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(e) = event
                    && is_change(&e.kind)
                {
                    let names = e
                        .paths
                        .iter()
                        .filter_map(|p| p.file_name())
                        .map(OsString::from);
                    let _ = tx.send(names.collect());
                }
            })
            .map_err(|source| Error::Watch {
                dir: self.dir.clone(),
                source,
            })?;
        notify::Watcher::watch(&mut watcher, &self.dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| Error::Watch {
                dir: self.dir.clone(),
                source,
            })?;
        let mut observed_at = None;
        // Files named by change events since the last reload; `None`: read every file (the
        // first read, a periodic resync, or an event that named no file).
        let mut changed: Option<BTreeSet<OsString>> = None;
        loop {
            match self.reload_files(changed.take().as_ref()) {
                Ok(mut state) => {
                    state.observed_at = observed_at.take();
                    for error in &state.errors {
                        tracing::warn!(%error, "config file not loaded; its last good objects are kept");
                    }
                    for note in &state.skipped {
                        tracing::debug!(%note, "document skipped");
                    }
                    if let Some(at) = state.observed_at {
                        tracing::debug!(
                            since_observed_ms = at.elapsed().as_secs_f64() * 1e3,
                            objects = state.objects.len(),
                            "config dir read"
                        );
                    }
                    publish.send_replace(Arc::new(state));
                }
                Err(error) => {
                    tracing::warn!(%error, "config dir not readable; keeping the last good objects")
                }
            }
            // Wait for the first event (or a resync), then for a quiet period.
            let mut names = BTreeSet::new();
            let mut every_file = false;
            let events_seen = &self.events;
            let mut note = |event: Option<Vec<OsString>>| match event {
                None => false,
                Some(event) => {
                    events_seen.inc();
                    every_file |= event.is_empty();
                    names.extend(event);
                    true
                }
            };
            tokio::select! {
                _ = shutdown.fired() => return Ok(()),
                _ = tokio::time::sleep(timing.resync) => continue,
                event = events.recv() => if !note(event) { return Ok(()) },
            }
            observed_at = Some(std::time::Instant::now());
            let deadline = tokio::time::Instant::now() + timing.max_delay;
            loop {
                tokio::select! {
                    _ = shutdown.fired() => return Ok(()),
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = tokio::time::sleep(timing.debounce) => break,
                    event = events.recv() => if !note(event) { return Ok(()) },
                }
            }
            changed = (!every_file).then_some(names);
        }
    }
}

/// Events that can change what the folder holds. Accesses (including our own reads) and
/// metadata-only changes are not, or every reload would trigger the next.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{EventKind, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

fn is_config_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.')
        && path.is_file()
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

#[cfg(test)]
mod tests;
