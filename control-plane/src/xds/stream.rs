//! The per-stream state machine of the delta protocol. Pure: requests and snapshots in, the
//! response to send (if any) and what the request answered out. No I/O, no clock.
//!
//! What the proxy holds is an `Arc<View>` once it has ACKed a response (shared with every proxy
//! holding that view), or the `initial_resource_versions` it opened the stream with until then;
//! so a connected proxy costs a few hundred bytes here whatever the size of its configuration.

use crate::snapshot::{Scope, Snapshot, View, diff};
use serval_common::{
    SnapshotVersion, Version,
    proto::discovery::v1::{DeltaConfigRequest, DeltaConfigResponse, ErrorDetail, Node},
};
use std::{collections::BTreeMap, sync::Arc};

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

/// What the proxy holds.
#[derive(Debug)]
pub enum Held {
    /// A view it ACKed.
    View(Arc<View>),
    /// The versions it opened the stream with (from an earlier stream or its cache).
    Initial(BTreeMap<String, Version>),
}

/// A response waiting for its ACK or NACK.
#[derive(Debug)]
struct InFlight {
    nonce: String,
    /// The view the proxy holds once it applies the response.
    view: Arc<View>,
    /// `Snapshot::sequence` of the snapshot the view is of.
    sequence: u64,
}

/// What a request answered.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The response of this sequence was applied.
    Ack {
        /// The snapshot sequence the proxy now holds.
        sequence: u64,
    },
    /// The response was rejected.
    Nack {
        /// The rejected view version.
        version: SnapshotVersion,
        /// The proxy's reason.
        error: ErrorDetail,
    },
}

/// The outcome of one request.
#[derive(Debug, Default)]
pub struct Step {
    /// What the request answered (nothing for the first request or a stale nonce).
    pub answer: Option<Answer>,
    /// The response to send now.
    pub response: Option<DeltaConfigResponse>,
}

/// The state of one stream.
#[derive(Debug)]
pub struct StreamState {
    node: Option<Node>,
    scope: Scope,
    held: Held,
    in_flight: Option<InFlight>,
    acked: Option<SnapshotVersion>,
    nacked: Option<SnapshotVersion>,
    last_error: Option<String>,
    /// A response is owed even if it carries nothing (the answer to a stream's first request).
    owe_response: bool,
    responses_sent: u64,
}

impl Default for StreamState {
    fn default() -> Self {
        Self {
            node: None,
            scope: Scope::default(),
            held: Held::Initial(BTreeMap::new()),
            in_flight: None,
            acked: None,
            nacked: None,
            last_error: None,
            owe_response: false,
            responses_sent: 0,
        }
    }
}

impl StreamState {
    /// Handles a request; returns what it answered and the response to send, if any.
    pub fn on_request(
        &mut self,
        request: &DeltaConfigRequest,
        snapshot: &Snapshot,
    ) -> Result<Step, ProtocolError> {
        if self.node.is_none() {
            let node = request.node.clone().ok_or(ProtocolError::MissingNode)?;
            if node.id.is_empty() {
                return Err(ProtocolError::EmptyNodeId);
            }
            self.scope = Scope::of(&node);
            self.node = Some(node);
            self.held = Held::Initial(
                request
                    .initial_resource_versions
                    .iter()
                    .map(|(name, version)| (name.clone(), Version::from_wire(version.clone())))
                    .collect(),
            );
            // The first request is always answered, even when nothing differs: the proxy learns
            // the version it holds is current and its ACK confirms it (a proxy that applied a
            // response but could not ACK it before the stream broke becomes ready this way).
            self.owe_response = true;
            return Ok(Step {
                answer: None,
                response: self.next_response(snapshot),
            });
        }
        // DESIGN.md: a request that does not answer the response in flight is stale; ignore it.
        let Some(in_flight) = self
            .in_flight
            .take_if(|f| f.nonce == request.response_nonce)
        else {
            return Ok(Step::default());
        };
        let answer = match &request.error_detail {
            None => {
                self.acked = Some(in_flight.view.version.clone());
                self.nacked = None;
                self.held = Held::View(in_flight.view);
                Answer::Ack {
                    sequence: in_flight.sequence,
                }
            }
            Some(error) => {
                // NACK: the proxy keeps its last good configuration, so `held` is unchanged, and this
                // version is not sent again.
                self.nacked = Some(in_flight.view.version.clone());
                self.last_error = Some(error.message.clone());
                Answer::Nack {
                    version: in_flight.view.version.clone(),
                    error: error.clone(),
                }
            }
        };
        self.owe_response = false;
        Ok(Step {
            answer: Some(answer),
            response: self.next_response(snapshot),
        })
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
        let view = snapshot.view(&self.scope);
        if self.nacked.as_ref() == Some(&view.version) {
            return None;
        }
        let delta = match &self.held {
            Held::View(held) => view.delta_from(held),
            Held::Initial(versions) => Arc::new(diff::diff(versions, &view)),
        };
        if delta.is_empty() && !self.owe_response {
            return None;
        }
        self.responses_sent += 1;
        let nonce = self.responses_sent.to_string();
        let response = DeltaConfigResponse {
            system_version_info: view.version.to_string(),
            resources: delta
                .upserts
                .iter()
                .map(|(name, v)| v.to_wire(name))
                .collect(),
            removed_resources: delta.removals.clone(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.in_flight = Some(InFlight {
            nonce,
            view,
            sequence: snapshot.sequence,
        });
        Some(response)
    }

    /// The Gateways the node serves.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The node, once the first request arrived.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// What the proxy holds.
    pub fn held(&self) -> &Held {
        &self.held
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

    /// Number of resources the proxy holds.
    pub fn held_count(&self) -> usize {
        match &self.held {
            Held::View(v) => v.resources.len(),
            Held::Initial(m) => m.len(),
        }
    }
}

#[cfg(test)]
mod tests;
