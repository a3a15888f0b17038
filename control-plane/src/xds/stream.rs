//! The per-stream state machine of the delta protocol. Pure: requests and snapshots in, the
//! response to send (if any) out. No I/O, no clock.

use crate::snapshot::{Snapshot, diff};
use serval_common::{
    SnapshotVersion, Version,
    proto::discovery::v1::{DeltaConfigRequest, DeltaConfigResponse, Node, Resource},
};
use std::collections::BTreeMap;

/// Why a request is refused (the stream is closed with this).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first request of a stream has no `node`.
    #[error("the first request of a stream must carry node")]
    MissingNode,
    /// The node id is empty.
    #[error("node.id must not be empty")]
    EmptyNodeId,
}

/// A response waiting for its ACK or NACK.
#[derive(Debug)]
struct InFlight {
    nonce: String,
    version: SnapshotVersion,
    /// What the proxy holds once it applies the response.
    resulting: BTreeMap<String, Version>,
}

/// The state of one stream.
#[derive(Debug, Default)]
pub struct StreamState {
    node: Option<Node>,
    /// What the proxy holds: from `initial_resource_versions`, then from each ACKed response.
    held: BTreeMap<String, Version>,
    in_flight: Option<InFlight>,
    acked: Option<SnapshotVersion>,
    nacked: Option<SnapshotVersion>,
    last_error: Option<String>,
    /// A response is owed even if it carries nothing (the answer to a stream's first request).
    owe_response: bool,
    responses_sent: u64,
    acks: u64,
    nacks: u64,
}

impl StreamState {
    /// Handles a request; returns the response to send, if any.
    pub fn on_request(
        &mut self,
        request: &DeltaConfigRequest,
        snapshot: &Snapshot,
    ) -> Result<Option<DeltaConfigResponse>, ProtocolError> {
        if self.node.is_none() {
            let node = request.node.clone().ok_or(ProtocolError::MissingNode)?;
            if node.id.is_empty() {
                return Err(ProtocolError::EmptyNodeId);
            }
            self.node = Some(node);
            self.held = request
                .initial_resource_versions
                .iter()
                .map(|(name, version)| (name.clone(), Version::from_wire(version.clone())))
                .collect();
            // The first request is always answered, even when nothing differs: the proxy learns
            // the version it holds is current and its ACK confirms it (a proxy that applied a
            // response but could not ACK it before the stream broke becomes ready this way).
            self.owe_response = true;
            return Ok(self.next_response(snapshot));
        }
        // DESIGN.md: a request that does not answer the response in flight is stale; ignore it.
        let Some(in_flight) = self
            .in_flight
            .take_if(|f| f.nonce == request.response_nonce)
        else {
            return Ok(None);
        };
        match &request.error_detail {
            None => {
                self.held = in_flight.resulting;
                self.acked = Some(in_flight.version);
                self.nacked = None;
                self.acks += 1;
            }
            Some(error) => {
                // NACK: the proxy keeps its last good configuration, so `held` is unchanged, and this
                // version is not sent again.
                self.nacked = Some(in_flight.version);
                self.last_error = Some(error.message.clone());
                self.nacks += 1;
            }
        }
        self.owe_response = false;
        Ok(self.next_response(snapshot))
    }

    /// Handles a new snapshot; returns the response to send, if any.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Option<DeltaConfigResponse> {
        self.node.as_ref()?;
        self.next_response(snapshot)
    }

    /// The response bringing the proxy from what it holds to its view of `snapshot`, unless one is
    /// in flight (changes coalesce until it is answered), the view is the one it NACKed, or there
    /// is nothing to change.
    fn next_response(&mut self, snapshot: &Snapshot) -> Option<DeltaConfigResponse> {
        if self.in_flight.is_some() {
            return None;
        }
        let view = snapshot.view(self.gateways());
        if self.nacked.as_ref() == Some(&view.version) {
            return None;
        }
        let delta = diff::diff(&self.held, &view);
        if delta.is_empty() && !self.owe_response {
            return None;
        }
        self.responses_sent += 1;
        let nonce = self.responses_sent.to_string();
        self.in_flight = Some(InFlight {
            nonce: nonce.clone(),
            version: view.version.clone(),
            resulting: view
                .resources
                .iter()
                .map(|(name, v)| (name.clone(), v.version.clone()))
                .collect(),
        });
        Some(DeltaConfigResponse {
            system_version_info: view.version.to_string(),
            resources: delta
                .upserts
                .into_iter()
                .map(|(name, v)| Resource {
                    name,
                    version: v.version.to_string(),
                    resource: Some(v.any.clone()),
                })
                .collect(),
            removed_resources: delta.removals,
            nonce,
        })
    }

    /// The Gateways of the node (empty: all).
    pub fn gateways(&self) -> &[String] {
        self.node
            .as_ref()
            .map(|n| n.gateways.as_slice())
            .unwrap_or_default()
    }

    /// The node, once the first request arrived.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// The last acknowledged view version.
    pub fn acked(&self) -> Option<&SnapshotVersion> {
        self.acked.as_ref()
    }

    /// The last rejected view version, if the proxy has not acknowledged one since.
    pub fn nacked(&self) -> Option<&SnapshotVersion> {
        self.nacked.as_ref()
    }

    /// The message of the last NACK.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Number of ACKs and NACKs received on this stream.
    pub fn answers(&self) -> (u64, u64) {
        (self.acks, self.nacks)
    }

    /// Number of resources the proxy holds.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests;
