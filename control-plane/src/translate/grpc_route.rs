//! GRPCRoute → the HTTPRoute form `http_route` translates, so both kinds share attachment,
//! filters, backends, precedence and status.
//!
//! A gRPC call is an HTTP/2 POST to `/<service>/<method>`, so a GRPCRouteMatch becomes an
//! HTTPRouteMatch: `Exact` service and method → an Exact path, service only → the path prefix
//! `/<service>`, method only or `RegularExpression` → a path regular expression; header matches
//! are the same. Filters, backendRefs, hostnames, parentRefs and status are the same shape.
//! Backends are spoken to over HTTP/2 (`http_route::RouteKind::h2_backends`).

use super::{
    Options,
    gateway::GatewayModel,
    http_route::{self, RouteEntry, RouteKind},
    incremental::{Memo, Reuse},
    inputs::Inputs,
    matching,
    status::ObjectStatus,
};
use gateway_api::{
    experimental::httproutes::HttpRoute,
    grpcroutes::{GrpcRoute, GrpcRouteRulesMatches, GrpcRouteRulesMatchesMethodType as MethodType},
};
use serde_json::{Value, json};
use std::{borrow::Cow, sync::Arc};

/// GRPCRoute.
pub(super) const GRPC_ROUTE: RouteKind = RouteKind {
    name: "GRPCRoute",
    h2_backends: true,
    precedence: matching::grpc_precedence,
};

/// A gRPC service name as the GRPCRoute CRD allows it (dotted identifiers).
fn valid_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty()
        && s.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A gRPC method name as the GRPCRoute CRD allows it.
fn valid_method(m: &str) -> bool {
    m.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The HTTPRouteMatch for a GRPCRouteMatch; `Err` says what is invalid about the method match.
fn convert_match(m: &GrpcRouteRulesMatches) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    if let Some(method) = &m.method {
        let service = method.service.as_deref().filter(|s| !s.is_empty());
        let name = method.method.as_deref().filter(|s| !s.is_empty());
        let path = match (
            method.r#type.as_ref().unwrap_or(&MethodType::Exact),
            service,
            name,
        ) {
            (_, None, None) => return Err("method: service or method must be set".to_owned()),
            (MethodType::Exact, Some(s), _) if !valid_service(s) => {
                return Err(format!("method.service: {s:?} is not a gRPC service name"));
            }
            (MethodType::Exact, _, Some(n)) if !valid_method(n) => {
                return Err(format!("method.method: {n:?} is not a gRPC method name"));
            }
            (MethodType::Exact, Some(s), Some(n)) => {
                json!({"type": "Exact", "value": format!("/{s}/{n}")})
            }
            (MethodType::Exact, Some(s), None) => {
                json!({"type": "PathPrefix", "value": format!("/{s}")})
            }
            (MethodType::Exact, None, Some(n)) => {
                json!({"type": "RegularExpression", "value": format!("/[^/]+/{n}")})
            }
            (MethodType::RegularExpression, s, n) => json!({
                "type": "RegularExpression",
                // Each part is grouped, so an alternation stays inside its part.
                "value": format!("/(?:{})/(?:{})", s.unwrap_or("[^/]+"), n.unwrap_or("[^/]+")),
            }),
        };
        out.insert("path".to_owned(), path);
    }
    if let Some(headers) = &m.headers {
        out.insert(
            "headers".to_owned(),
            serde_json::to_value(headers).unwrap_or(Value::Null),
        );
    }
    Ok(Value::Object(out))
}

/// The HTTPRoute form of a GRPCRoute (same metadata, parentRefs, hostnames, status), and the
/// first invalid match (naming the field), if any.
fn to_http_route(route: &GrpcRoute) -> (Option<HttpRoute>, Option<String>) {
    let mut invalid = None;
    let rules: Vec<Value> = route
        .spec
        .rules
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, rule)| {
            let mut r = serde_json::Map::new();
            if let Some(name) = &rule.name {
                r.insert("name".to_owned(), json!(name));
            }
            if let Some(matches) = &rule.matches {
                let converted = matches
                    .iter()
                    .enumerate()
                    .map(|(j, m)| {
                        convert_match(m).unwrap_or_else(|e| {
                            invalid.get_or_insert(format!("spec.rules[{i}].matches[{j}].{e}"));
                            json!({})
                        })
                    })
                    .collect();
                r.insert("matches".to_owned(), Value::Array(converted));
            }
            for (key, value) in [
                ("filters", serde_json::to_value(&rule.filters)),
                ("backendRefs", serde_json::to_value(&rule.backend_refs)),
            ] {
                if let Ok(v) = value
                    && !v.is_null()
                {
                    r.insert(key.to_owned(), v);
                }
            }
            Value::Object(r)
        })
        .collect();
    let value = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": route.metadata,
        "spec": {
            "parentRefs": route.spec.parent_refs,
            "hostnames": route.spec.hostnames,
            "rules": rules,
        },
        "status": route.status,
    });
    match serde_json::from_value(strip_nulls(value)) {
        Ok(r) => (Some(r), invalid),
        Err(e) => (None, Some(format!("cannot be read as a route: {e}"))),
    }
}

/// Drops `null` members, which the generated types reject where a field is required.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Translates every GRPCRoute (see the module docs), reusing what `memo` and `reuse` allow.
pub(super) fn translate(
    inputs: &Inputs,
    opts: &Options,
    (memo, reuse): (&mut Memo<GrpcRoute>, &Reuse<'_>),
    gateways: &mut [GatewayModel],
    resources: &mut super::Resources,
) -> (Vec<RouteEntry>, Vec<Arc<ObjectStatus>>) {
    http_route::translate(
        GRPC_ROUTE,
        &inputs.grpc_routes,
        |key, route| {
            let (converted, invalid) = to_http_route(route);
            if converted.is_none() {
                tracing::warn!(route = ?key, "GRPCRoute has no HTTPRoute form; skipped");
            }
            converted.map(|r| (Cow::Owned(r), invalid))
        },
        memo,
        reuse,
        inputs,
        opts,
        gateways,
        resources,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::grpcroutes::GrpcRouteRulesMatchesMethod;

    fn path_of(t: Option<MethodType>, service: Option<&str>, method: Option<&str>) -> Value {
        convert_match(&GrpcRouteRulesMatches {
            method: Some(GrpcRouteRulesMatchesMethod {
                r#type: t,
                service: service.map(str::to_owned),
                method: method.map(str::to_owned),
            }),
            headers: None,
        })
        .map_or(Value::Null, |m| m["path"].clone())
    }

    #[test]
    fn methods_become_paths() {
        let (s, m) = (Some("pkg.Svc"), Some("Call"));
        assert_eq!(
            path_of(None, s, m),
            json!({"type": "Exact", "value": "/pkg.Svc/Call"})
        );
        assert_eq!(
            path_of(None, s, None),
            json!({"type": "PathPrefix", "value": "/pkg.Svc"})
        );
        assert_eq!(
            path_of(None, None, m),
            json!({"type": "RegularExpression", "value": "/[^/]+/Call"})
        );
        assert_eq!(
            path_of(Some(MethodType::RegularExpression), Some("pkg\\..*"), None),
            json!({"type": "RegularExpression", "value": "/(?:pkg\\..*)/(?:[^/]+)"})
        );
        assert_eq!(path_of(None, Some("bad name"), m), Value::Null);
        assert_eq!(path_of(None, s, Some("a/b")), Value::Null);
        assert_eq!(path_of(None, None, None), Value::Null);
    }
}
