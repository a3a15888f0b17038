//! The five configuration resource kinds, their type URLs and name prefixes, and the conversion of a
//! resource to and from its wire form (`google.protobuf.Any`).
//!
//! [`Resource::references`] lists the names a resource points at (Listener → RouteConfig,
//! AttachedRoute → RouteConfig and Cluster, Cluster → ClusterLoadAssignment);
//! [`Resource::attaches_to`] the names it joins (AttachedRoute → RouteConfig, the reverse
//! direction: a RouteConfig does not list its routes). The control plane uses both to compute which
//! resources a proxy needs, the proxy to check that a configuration is complete.
//! This module does not validate resource contents beyond decoding.

use crate::{proto::config::v1 as pb, version::Version};
use pbjson_types::Any;
use prost::Message;
use std::fmt;

const TYPE_URL_PREFIX: &str = "type.googleapis.com/serval.config.v1.";

/// What dumps show instead of a private key.
pub const REDACTED: &str = "[redacted]";

/// The kinds of configuration resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// A socket to bind (`serval.config.v1.Listener`).
    Listener,
    /// The routing table of an HTTP listener socket (`serval.config.v1.RouteConfig`).
    RouteConfig,
    /// One route's matches as attached to one Gateway (`serval.config.v1.AttachedRoute`).
    AttachedRoute,
    /// An upstream (`serval.config.v1.Cluster`).
    Cluster,
    /// The endpoints of an upstream (`serval.config.v1.ClusterLoadAssignment`).
    ClusterLoadAssignment,
    /// TLS material (`serval.config.v1.Secret`).
    Secret,
}

impl ResourceKind {
    /// Every kind, from the listener down to the material it uses.
    pub const ALL: [Self; 6] = [
        Self::Listener,
        Self::RouteConfig,
        Self::AttachedRoute,
        Self::Cluster,
        Self::ClusterLoadAssignment,
        Self::Secret,
    ];

    /// The protobuf message name.
    pub fn message_name(self) -> &'static str {
        match self {
            Self::Listener => "Listener",
            Self::RouteConfig => "RouteConfig",
            Self::AttachedRoute => "AttachedRoute",
            Self::Cluster => "Cluster",
            Self::ClusterLoadAssignment => "ClusterLoadAssignment",
            Self::Secret => "Secret",
        }
    }

    /// The type URL of `google.protobuf.Any` payloads of this kind.
    pub fn type_url(self) -> String {
        format!("{TYPE_URL_PREFIX}{}", self.message_name())
    }

    /// The kind of a type URL.
    pub fn from_type_url(url: &str) -> Option<Self> {
        let message = url.strip_prefix(TYPE_URL_PREFIX)?;
        Self::ALL.into_iter().find(|k| k.message_name() == message)
    }

    /// The first segment of every resource name of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::RouteConfig => "routeconfig",
            Self::AttachedRoute => "attachedroute",
            Self::Cluster => "cluster",
            Self::ClusterLoadAssignment => "endpoints",
            Self::Secret => "secret",
        }
    }

    /// The kind of a resource name, read from its prefix.
    pub fn of_name(name: &str) -> Option<Self> {
        let prefix = name.split('/').next()?;
        Self::ALL.into_iter().find(|k| k.prefix() == prefix)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message_name())
    }
}

/// A decoded configuration resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// See [`ResourceKind::Listener`].
    Listener(pb::Listener),
    /// See [`ResourceKind::RouteConfig`].
    RouteConfig(pb::RouteConfig),
    /// See [`ResourceKind::AttachedRoute`].
    AttachedRoute(pb::AttachedRoute),
    /// See [`ResourceKind::Cluster`].
    Cluster(pb::Cluster),
    /// See [`ResourceKind::ClusterLoadAssignment`].
    ClusterLoadAssignment(pb::ClusterLoadAssignment),
    /// See [`ResourceKind::Secret`].
    Secret(pb::Secret),
}

/// Why a wire resource could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The `Any` carries a type this proxy does not know.
    #[error("resource {name}: unknown type {type_url:?}")]
    UnknownType {
        /// Resource name.
        name: String,
        /// The unknown type URL.
        type_url: String,
    },
    /// The payload's bytes are not a valid message of its type.
    #[error("resource {name}: invalid {kind} payload")]
    Invalid {
        /// Resource name.
        name: String,
        /// The declared kind.
        kind: ResourceKind,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// The payload's own name differs from the name it was sent under, or its prefix does not
    /// match its type.
    #[error("resource {name}: name does not match the {kind} payload named {payload_name:?}")]
    NameMismatch {
        /// Name the resource was sent under.
        name: String,
        /// The declared kind.
        kind: ResourceKind,
        /// The name inside the payload.
        payload_name: String,
    },
}

/// Equality is reflexive: the messages have no floating-point fields. (`Eq` also lets
/// `Arc<Resource>` compare by pointer first.)
impl Eq for Resource {}

impl Resource {
    /// The kind of this resource.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Listener(_) => ResourceKind::Listener,
            Self::RouteConfig(_) => ResourceKind::RouteConfig,
            Self::AttachedRoute(_) => ResourceKind::AttachedRoute,
            Self::Cluster(_) => ResourceKind::Cluster,
            Self::ClusterLoadAssignment(_) => ResourceKind::ClusterLoadAssignment,
            Self::Secret(_) => ResourceKind::Secret,
        }
    }

    /// The resource's name (its `name` field).
    pub fn name(&self) -> &str {
        match self {
            Self::Listener(r) => &r.name,
            Self::RouteConfig(r) => &r.name,
            Self::AttachedRoute(r) => &r.name,
            Self::Cluster(r) => &r.name,
            Self::ClusterLoadAssignment(r) => &r.name,
            Self::Secret(r) => &r.name,
        }
    }

    /// The protobuf encoding of the payload.
    pub fn encode_payload(&self) -> Vec<u8> {
        match self {
            Self::Listener(r) => r.encode_to_vec(),
            Self::RouteConfig(r) => r.encode_to_vec(),
            Self::AttachedRoute(r) => r.encode_to_vec(),
            Self::Cluster(r) => r.encode_to_vec(),
            Self::ClusterLoadAssignment(r) => r.encode_to_vec(),
            Self::Secret(r) => r.encode_to_vec(),
        }
    }

    /// The content-hash version of this resource.
    pub fn version(&self) -> Version {
        Version::of_bytes(&self.encode_payload())
    }

    /// The payload as a `google.protobuf.Any`.
    pub fn to_any(&self) -> Any {
        Any {
            type_url: self.kind().type_url(),
            value: self.encode_payload().into(),
        }
    }

    /// Decodes a payload sent under `name`.
    pub fn from_any(name: &str, any: &Any) -> Result<Self, DecodeError> {
        let kind =
            ResourceKind::from_type_url(&any.type_url).ok_or_else(|| DecodeError::UnknownType {
                name: name.to_owned(),
                type_url: any.type_url.clone(),
            })?;
        let bytes = any.value.as_ref();
        let invalid = |source| DecodeError::Invalid {
            name: name.to_owned(),
            kind,
            source,
        };
        let resource = match kind {
            ResourceKind::Listener => Self::Listener(pb::Listener::decode(bytes).map_err(invalid)?),
            ResourceKind::RouteConfig => {
                Self::RouteConfig(pb::RouteConfig::decode(bytes).map_err(invalid)?)
            }
            ResourceKind::AttachedRoute => {
                Self::AttachedRoute(pb::AttachedRoute::decode(bytes).map_err(invalid)?)
            }
            ResourceKind::Cluster => Self::Cluster(pb::Cluster::decode(bytes).map_err(invalid)?),
            ResourceKind::ClusterLoadAssignment => Self::ClusterLoadAssignment(
                pb::ClusterLoadAssignment::decode(bytes).map_err(invalid)?,
            ),
            ResourceKind::Secret => Self::Secret(pb::Secret::decode(bytes).map_err(invalid)?),
        };
        if resource.name() != name || ResourceKind::of_name(name) != Some(kind) {
            return Err(DecodeError::NameMismatch {
                name: name.to_owned(),
                kind,
                payload_name: resource.name().to_owned(),
            });
        }
        Ok(resource)
    }

    /// Names of the resources this one refers to, sorted and without duplicates.
    pub fn references(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Self::Listener(l) => match &l.protocol {
                Some(pb::listener::Protocol::Http(http)) => {
                    out.push(http.route_config_name.clone());
                    let certificates = http.tls.iter().flat_map(|t| &t.certificates);
                    out.extend(certificates.flat_map(|c| c.secrets.iter().cloned()));
                }
                Some(pb::listener::Protocol::Tcp(l4) | pb::listener::Protocol::Udp(l4)) => {
                    out.extend(
                        l4.backends
                            .iter()
                            .filter(|b| !b.cluster.is_empty())
                            .map(|b| b.cluster.clone()),
                    );
                }
                None => {}
            },
            // Routes of a deprecated inline RouteConfig are not followed: the proxy rejects it.
            Self::RouteConfig(_) => {}
            Self::AttachedRoute(ar) => out.extend(attached_route_references(ar)),
            Self::Cluster(c) => out.push(c.load_assignment_name.clone()),
            Self::ClusterLoadAssignment(_) | Self::Secret(_) => {}
        }
        out.sort();
        out.dedup();
        out
    }

    /// Names of the resources this one joins although they do not name it (an AttachedRoute joins
    /// the RouteConfigs of its attachments), sorted and without duplicates. A proxy that holds one
    /// of them needs this resource too.
    pub fn attaches_to(&self) -> Vec<String> {
        let mut out: Vec<String> = match self {
            Self::AttachedRoute(ar) => ar
                .attachments
                .iter()
                .map(|a| a.route_config.clone())
                .collect(),
            _ => Vec::new(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// This resource with private keys replaced by [`REDACTED`], for what people read
    /// (`/config_dump`, `GetProxyConfig`, golden files); everything else is unchanged.
    pub fn redacted(&self) -> std::borrow::Cow<'_, Self> {
        match self {
            Self::Secret(pb::Secret {
                name,
                kind: Some(pb::secret::Kind::TlsCertificate(tls)),
            }) => std::borrow::Cow::Owned(Self::Secret(pb::Secret {
                name: name.clone(),
                kind: Some(pb::secret::Kind::TlsCertificate(pb::TlsCertificate {
                    certificate_chain: tls.certificate_chain.clone(),
                    private_key: REDACTED.as_bytes().to_vec(),
                })),
            })),
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    /// The payload as proto3 JSON (for `/config_dump` and golden files), private keys
    /// [`redacted`](Self::redacted).
    pub fn to_json(&self) -> serde_json::Value {
        let value = match &*self.redacted() {
            Self::Listener(r) => serde_json::to_value(r),
            Self::RouteConfig(r) => serde_json::to_value(r),
            Self::AttachedRoute(r) => serde_json::to_value(r),
            Self::Cluster(r) => serde_json::to_value(r),
            Self::ClusterLoadAssignment(r) => serde_json::to_value(r),
            Self::Secret(r) => serde_json::to_value(r),
        };
        // Serializing generated messages into a Value cannot fail: no maps with non-string keys.
        value.unwrap_or(serde_json::Value::Null)
    }
}

/// Names an AttachedRoute refers to: the RouteConfigs it joins and the Clusters its routes (and
/// their mirrors) use, unsorted and possibly repeated.
pub fn attached_route_references(ar: &pb::AttachedRoute) -> Vec<String> {
    let mut out: Vec<String> = ar
        .attachments
        .iter()
        .map(|a| a.route_config.clone())
        .collect();
    let mirrors = |f: &Option<pb::Filters>| {
        f.iter()
            .flat_map(|f| &f.mirrors)
            .map(|m| m.cluster.clone())
            .collect::<Vec<_>>()
    };
    for route in &ar.routes {
        out.extend(mirrors(&route.filters));
        if let Some(pb::route::Action::Route(action)) = &route.action {
            for backend in &action.backends {
                out.extend(mirrors(&backend.filters));
                if let Some(pb::weighted_backend::Target::Cluster(c)) = &backend.target {
                    out.push(c.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> Resource {
        Resource::Cluster(pb::Cluster {
            name: name.into(),
            load_assignment_name: "endpoints/ns/svc/80".into(),
            service: "ns/svc".into(),
            port: 80,
            ..Default::default()
        })
    }

    #[test]
    fn any_round_trip() {
        let r = cluster("cluster/ns/svc/80");
        let back = Resource::from_any("cluster/ns/svc/80", &r.to_any()).expect("decodes");
        assert_eq!(back, r);
        assert_eq!(r.references(), vec!["endpoints/ns/svc/80".to_owned()]);
    }

    #[test]
    fn decode_rejects_unknown_type_and_wrong_name() {
        let r = cluster("cluster/ns/svc/80");
        let mut any = r.to_any();
        let err = Resource::from_any("cluster/ns/other/80", &any).expect_err("name mismatch");
        assert!(err.to_string().contains("cluster/ns/other/80"), "{err}");
        any.type_url = "type.googleapis.com/serval.config.v1.Nope".into();
        let err = Resource::from_any("cluster/ns/svc/80", &any).expect_err("unknown type");
        assert!(err.to_string().contains("unknown type"), "{err}");
        let r = cluster("listener/ns/svc/80");
        let err = Resource::from_any("listener/ns/svc/80", &r.to_any()).expect_err("prefix");
        assert!(matches!(err, DecodeError::NameMismatch { .. }), "{err}");
    }

    #[test]
    fn type_urls_round_trip() {
        for kind in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_type_url(&kind.type_url()), Some(kind));
        }
    }
}
