//! The certificates of HTTPS listeners: each `tls.certificateRefs` entry resolved to a TLS Secret
//! (same namespace, or another one that a ReferenceGrant opens to Gateways), its certificate
//! chain and key checked with the proxy's own rules, and turned into a `Secret` resource.
//!
//! A listener is served with the certificates that resolve; the first reference that does not
//! sets its `ResolvedRefs` condition (`InvalidCertificateRef` or `RefNotPermitted`). Which
//! listener presents which certificate is the Listener resource's business (`route_config`).

use super::{inputs::Inputs, reference_grant, status::reason};
use gateway_api::gateways::{GatewayListeners, GatewayListenersTlsMode};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use serval_common::{Resource, names, proto::config::v1 as pb, tls::serving};
use std::sync::Arc;

/// The Kubernetes Secret type of TLS Secrets.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// What the `tls` of one listener resolved to.
#[derive(Debug, Default)]
pub(super) struct Resolved {
    /// The `Secret` resources of the references that resolved, in reference order.
    pub(super) secrets: Vec<Arc<Resource>>,
    /// The first reference that did not resolve: (reason, message).
    pub(super) unresolved: Option<(&'static str, String)>,
    /// Why the listener's TLS settings cannot be served at all: (reason, message).
    pub(super) not_accepted: Option<(&'static str, String)>,
}

/// Resolves the certificates of `listener`, an HTTPS listener of a Gateway in `gateway_ns`.
pub(super) fn resolve(inputs: &Inputs, gateway_ns: &str, listener: &GatewayListeners) -> Resolved {
    let mut out = Resolved::default();
    let Some(tls) = &listener.tls else {
        out.unresolved = Some((
            reason::INVALID_CERTIFICATE_REF,
            "tls: an HTTPS listener needs tls.certificateRefs".to_owned(),
        ));
        return out;
    };
    if matches!(tls.mode, Some(GatewayListenersTlsMode::Passthrough)) {
        out.not_accepted = Some((
            reason::UNSUPPORTED_VALUE,
            "tls.mode: Passthrough is only possible on a TLS listener; HTTPS terminates TLS"
                .to_owned(),
        ));
        return out;
    }
    let refs = tls.certificate_refs.as_deref().unwrap_or_default();
    if refs.is_empty() {
        out.unresolved = Some((
            reason::INVALID_CERTIFICATE_REF,
            "tls.certificateRefs: an HTTPS listener needs at least one certificate".to_owned(),
        ));
    }
    for (i, r) in refs.iter().enumerate() {
        let group = r.group.as_deref().unwrap_or_default();
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
        let field = format!("tls.certificateRefs[{i}]");
        let result = if !matches!(group, "" | "core") || kind != "Secret" {
            Err((
                reason::INVALID_CERTIFICATE_REF,
                format!(
                    "{field}: {}/{kind} is not supported; refer to a core Secret",
                    if group.is_empty() { "core" } else { group }
                ),
            ))
        } else if ns != gateway_ns
            && !reference_grant::permits(inputs, "Gateway", gateway_ns, "", "Secret", ns, &r.name)
        {
            Err((
                reason::REF_NOT_PERMITTED,
                format!(
                    "{field}: Secret {ns}/{} is in another namespace and no ReferenceGrant there \
                     allows Gateways of {gateway_ns} to use it",
                    r.name
                ),
            ))
        } else {
            match inputs.secrets.get(&(ns.to_owned(), r.name.clone())) {
                None => Err((
                    reason::INVALID_CERTIFICATE_REF,
                    format!("{field}: Secret {ns}/{} not found", r.name),
                )),
                Some(secret) => secret_resource(ns, &r.name, secret).map_err(|why| {
                    (
                        reason::INVALID_CERTIFICATE_REF,
                        format!("{field}: Secret {ns}/{}: {why}", r.name),
                    )
                }),
            }
        };
        match result {
            Ok(resource) => out.secrets.push(Arc::new(resource)),
            Err(problem) => {
                out.unresolved.get_or_insert(problem);
            }
        }
    }
    out
}

/// The `Secret` resource of a TLS Secret, if its certificate and key can be served.
fn secret_resource(ns: &str, name: &str, secret: &Secret) -> Result<Resource, String> {
    if let Some(t) = secret.type_.as_deref().filter(|t| *t != TLS_SECRET_TYPE) {
        return Err(format!("type {t:?} is not {TLS_SECRET_TYPE:?}"));
    }
    let chain = value(secret, "tls.crt").ok_or("no tls.crt")?;
    let key = value(secret, "tls.key").ok_or("no tls.key")?;
    serving::certified_key(&chain, &key).map_err(|e| {
        let key = match e.field {
            "private_key" => "tls.key",
            _ => "tls.crt",
        };
        format!("{key}: {}", e.reason)
    })?;
    Ok(Resource::Secret(pb::Secret {
        name: names::secret(ns, name),
        kind: Some(pb::secret::Kind::TlsCertificate(pb::TlsCertificate {
            certificate_chain: chain,
            private_key: key,
        })),
    }))
}

/// A data key of `secret`: `stringData` wins over `data`, as the API server merges them.
fn value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    let from_string = secret.string_data.as_ref().and_then(|d| d.get(key));
    match from_string {
        Some(s) => Some(s.as_bytes().to_vec()),
        None => secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|ByteString(b)| b.clone()),
    }
}
