//! The proxy's admin server: the shared `/healthz`, `/readyz`, `/metrics` plus `/config_dump`.
//! `/readyz` turns ready once the first configuration was applied and ACKed.

use crate::config::{ConfigStore, dump::Dump};
use serval_common::admin::{Reply, Routes};
use std::sync::Arc;

/// The proxy's extra admin routes.
pub fn routes(store: Arc<ConfigStore>) -> Routes {
    Arc::new(move |path| match path {
        "/config_dump" => Some(Reply::json(&Dump::of(&store.load()))),
        _ => None,
    })
}
