//! Readiness as a set of latches (linkerd's `Readiness`/`Latch`): a component is ready once every
//! latch handed out has been released, and never becomes unready again.
//!
//! This module only tracks readiness; the admin server reports it on `/readyz`.

use std::sync::{Arc, Weak};

/// Reports whether every [`Latch`] has been released.
#[derive(Clone, Debug)]
pub struct Readiness(Weak<()>);

/// Holds readiness back until released (or dropped).
#[derive(Clone, Debug)]
pub struct Latch(#[allow(dead_code)] Arc<()>); // held for its strong count only

impl Readiness {
    /// A readiness with one latch; clone the latch to add more.
    pub fn new() -> (Self, Latch) {
        let latch = Arc::new(());
        (Self(Arc::downgrade(&latch)), Latch(latch))
    }

    /// True once every latch was released.
    pub fn is_ready(&self) -> bool {
        self.0.upgrade().is_none()
    }
}

impl Latch {
    /// Releases this latch.
    pub fn release(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_every_latch_released() {
        let (ready, a) = Readiness::new();
        let b = a.clone();
        assert!(!ready.is_ready());
        a.release();
        assert!(!ready.is_ready());
        b.release();
        assert!(ready.is_ready());
    }
}
