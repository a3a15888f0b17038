//! `serval_snapshot_resources_by_kind{kind}`: the latest snapshot's resources counted by kind when
//! `/metrics` is scraped, so publishing a snapshot does not pay for the count.

use crate::snapshot::Snapshot;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};
use serval_common::ResourceKind;
use std::{collections::BTreeMap, sync::Arc};
use tokio::sync::watch;

/// Counts the resources of the snapshot `snapshots` holds at each scrape.
#[derive(Debug)]
pub struct ResourcesByKind(pub watch::Receiver<Arc<Snapshot>>);

impl Collector for ResourcesByKind {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = Arc::clone(&self.0.borrow());
        let mut counts: BTreeMap<&'static str, i64> = ResourceKind::ALL
            .iter()
            .map(|k| (k.message_name(), 0))
            .collect();
        for name in snapshot.resources.keys() {
            if let Some(kind) = ResourceKind::of_name(name) {
                *counts.entry(kind.message_name()).or_default() += 1;
            }
        }
        let mut family = encoder.encode_descriptor(
            "snapshot_resources_by_kind",
            "Resources in the latest snapshot, by kind",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in counts {
            ConstGauge::new(n).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        Ok(())
    }
}
