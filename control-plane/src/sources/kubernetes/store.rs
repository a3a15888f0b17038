//! The store: every watched kind's current objects, merged into one [`SourceState`] and published
//! for translation.
//!
//! Nothing is published until every kind has completed its first listing (or was found missing):
//! then the complete world is published at once. After that, changes are debounced (a quiet period,
//! bounded by a maximum delay) so a burst of events becomes one translation.

use super::{
    kinds::{Kind, WATCHED},
    watch::{Change, Seen, Update},
};
use crate::{
    metrics::{KindLabels, Metrics},
    sources::{
        ObservedStatus, SourceState, Timing,
        objects::{Object, ObjectRef},
    },
};
use serval_common::shutdown;
use std::{collections::BTreeMap, sync::Arc};
use tokio::sync::{mpsc, watch};

/// The objects of one kind.
#[derive(Debug, Default)]
struct KindState {
    /// Completed at least one listing.
    listed: bool,
    /// The last good (decoded) version of every object.
    objects: BTreeMap<ObjectRef, Object>,
    /// What the API server holds, for objects whose newest version decoded.
    observed: BTreeMap<ObjectRef, ObservedStatus>,
}

impl KindState {
    /// Takes in one seen object. One whose newest version does not decode keeps its last good
    /// version (if any) but loses its observed status, so no status is written over it. Returns
    /// whether only its status changed.
    fn see(&mut self, seen: Seen, previous: &mut BTreeMap<ObjectRef, Object>) -> bool {
        match seen.decoded {
            Some((object, observed)) => {
                let status_only = previous
                    .get(&seen.reference)
                    .is_some_and(|old| old.same_but_status(&object));
                self.objects.insert(seen.reference.clone(), object);
                self.observed.insert(seen.reference, observed);
                status_only
            }
            None => {
                if let Some(last_good) = previous.remove(&seen.reference) {
                    self.objects.insert(seen.reference.clone(), last_good);
                }
                self.observed.remove(&seen.reference);
                // The configuration is unchanged, but what status may be written over changed.
                true
            }
        }
    }
}

/// All kinds.
#[derive(Debug)]
pub(super) struct Store {
    kinds: BTreeMap<&'static str, KindState>,
    /// Bumped by every change that is not status-only ([`SourceState::config_generation`]).
    config_generation: u64,
}

impl Store {
    /// An empty store expecting every kind of [`WATCHED`].
    pub(super) fn new() -> Self {
        Self {
            kinds: WATCHED
                .iter()
                .map(|k| (k.kind, KindState::default()))
                .collect(),
            config_generation: 0,
        }
    }

    /// Applies one update.
    pub(super) fn apply(&mut self, update: Update) {
        let state = self.kinds.entry(update.kind.kind).or_default();
        let status_only = match update.change {
            Change::Listed(seen) => {
                // The listing replaces the kind: objects not listed are gone.
                state.listed = true;
                let mut previous = std::mem::take(&mut state.objects);
                state.observed.clear();
                for one in seen {
                    state.see(one, &mut previous);
                }
                false
            }
            Change::Applied(seen) => {
                let mut last_good: BTreeMap<ObjectRef, Object> = state
                    .objects
                    .remove(&seen.reference)
                    .map(|o| (seen.reference.clone(), o))
                    .into_iter()
                    .collect();
                state.see(*seen, &mut last_good)
            }
            Change::Deleted(reference) => {
                state.objects.remove(&reference);
                state.observed.remove(&reference);
                false
            }
        };
        if !status_only {
            self.config_generation += 1;
        }
    }

    /// Every kind has completed its first listing.
    pub(super) fn synced(&self) -> bool {
        self.kinds.values().all(|k| k.listed)
    }

    /// Kinds still waiting for their first listing.
    pub(super) fn pending(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|(_, k)| !k.listed)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Every object, by kind, namespace and name.
    pub(super) fn state(&self) -> SourceState {
        SourceState {
            config_generation: self.config_generation,
            objects: self
                .kinds
                .values()
                .flat_map(|k| k.objects.values().cloned())
                .collect(),
            observed: self
                .kinds
                .values()
                .flat_map(|k| k.observed.iter().map(|(r, o)| (r.clone(), o.clone())))
                .collect(),
            ..SourceState::default()
        }
    }

    fn count(&self, metrics: &Metrics) {
        for (kind, state) in &self.kinds {
            metrics
                .kubernetes_objects
                .get_or_create(&KindLabels::of(kind))
                .set(state.objects.len() as i64);
        }
    }
}

/// Applies updates and publishes: once when every kind is listed, then after each debounced burst.
pub(super) async fn run(
    mut updates: mpsc::Receiver<Update>,
    timing: Timing,
    publish: watch::Sender<Arc<SourceState>>,
    metrics: Arc<Metrics>,
    mut shutdown: shutdown::Watch,
) {
    let mut store = Store::new();
    // Until the first full sync: apply everything, publish nothing.
    while !store.synced() {
        let update = tokio::select! {
            _ = shutdown.fired() => return,
            update = updates.recv() => update,
        };
        let Some(update) = update else { return };
        log_listing(&update);
        store.apply(update);
        if !store.synced() {
            tracing::debug!(pending = ?store.pending(), "waiting for the first listing of every kind");
        }
    }
    tracing::info!("every kind listed: first full sync");
    store.count(&metrics);
    publish.send_replace(Arc::new(store.state()));
    loop {
        let update = tokio::select! {
            _ = shutdown.fired() => return,
            update = updates.recv() => update,
        };
        let Some(update) = update else { return };
        let observed_at = std::time::Instant::now();
        log_listing(&update);
        store.apply(update);
        // Debounce: wait for a quiet period, but never longer than max_delay in all.
        let deadline = tokio::time::Instant::now() + timing.max_delay;
        loop {
            tokio::select! {
                _ = shutdown.fired() => return,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep(timing.debounce) => break,
                update = updates.recv() => match update {
                    Some(update) => {
                        log_listing(&update);
                        store.apply(update);
                    }
                    None => return,
                },
            }
        }
        store.count(&metrics);
        let mut state = store.state();
        state.observed_at = Some(observed_at);
        publish.send_replace(Arc::new(state));
    }
}

fn log_listing(update: &Update) {
    if let Change::Listed(objects) = &update.change {
        let kind: &Kind = update.kind;
        tracing::info!(kind = kind.kind, objects = objects.len(), "listed");
    }
}

#[cfg(test)]
mod tests;
