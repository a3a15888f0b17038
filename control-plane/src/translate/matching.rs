//! HTTPRoute matches: conversion to `serval.config.v1.RouteMatch` (with validation) and the
//! Gateway API precedence of each match, sent as a `Precedence` the proxy orders routes by.
//!
//! Precedence (HTTPRoute spec, `rules`): Exact path, then regular-expression path (implementation
//! specific: Serval puts it between Exact and PathPrefix, as Envoy Gateway does), then PathPrefix
//! with the most characters, then a method match, then the most header matches, then the most
//! query parameter matches; ties go to the oldest route, then namespace/name, then rule and match
//! order.

use gateway_api::experimental::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType as HeaderType,
    HttpRouteRulesMatchesPathType as PathType, HttpRouteRulesMatchesQueryParamsType as QueryType,
};
use serval_common::proto::config::v1 as pb;

/// Where a match comes from, for the tie-breakers.
#[derive(Clone, Debug)]
pub(super) struct Origin<'a> {
    /// The route's creationTimestamp.
    pub(super) created: Option<pbjson_types::Timestamp>,
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    pub(super) rule: usize,
    pub(super) match_index: usize,
}

impl Origin<'_> {
    fn precedence(&self) -> pb::Precedence {
        pb::Precedence {
            created: self.created,
            namespace: self.namespace.to_owned(),
            route: self.name.to_owned(),
            rule: u32::try_from(self.rule).unwrap_or(u32::MAX),
            r#match: u32::try_from(self.match_index).unwrap_or(u32::MAX),
            ..Default::default()
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Converts one HTTPRouteMatch (`None`: the default, PathPrefix `/`). `Err` names the field.
pub(super) fn convert(m: Option<&HttpRouteRulesMatches>) -> Result<pb::RouteMatch, String> {
    let Some(m) = m else {
        return Ok(prefix_all());
    };
    let path = match &m.path {
        None => Some(pb::PathMatch {
            kind: Some(pb::path_match::Kind::Prefix("/".to_owned())),
        }),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".to_owned());
            let kind = match p.r#type.as_ref().unwrap_or(&PathType::PathPrefix) {
                PathType::Exact | PathType::PathPrefix if !value.starts_with('/') => {
                    return Err(format!("path.value {value:?} must start with \"/\""));
                }
                PathType::Exact => pb::path_match::Kind::Exact(value),
                PathType::PathPrefix => pb::path_match::Kind::Prefix(value),
                PathType::RegularExpression => {
                    check_regex(&value).map_err(|e| format!("path.value: {e}"))?;
                    pb::path_match::Kind::Regex(value)
                }
            };
            Some(pb::PathMatch { kind: Some(kind) })
        }
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().flatten().enumerate() {
        let kind = match h.r#type.as_ref().unwrap_or(&HeaderType::Exact) {
            HeaderType::Exact => pb::header_match::Kind::Exact(h.value.clone()),
            HeaderType::RegularExpression => {
                check_regex(&h.value).map_err(|e| format!("headers[{i}].value: {e}"))?;
                pb::header_match::Kind::Regex(h.value.clone())
            }
        };
        if http_header_name_invalid(&h.name) {
            return Err(format!(
                "headers[{i}].name {:?} is not a valid header name",
                h.name
            ));
        }
        headers.push(pb::HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            kind: Some(kind),
        });
    }
    let mut query_params = Vec::new();
    for (i, q) in m.query_params.iter().flatten().enumerate() {
        let kind = match q.r#type.as_ref().unwrap_or(&QueryType::Exact) {
            QueryType::Exact => pb::query_param_match::Kind::Exact(q.value.clone()),
            QueryType::RegularExpression => {
                check_regex(&q.value).map_err(|e| format!("queryParams[{i}].value: {e}"))?;
                pb::query_param_match::Kind::Regex(q.value.clone())
            }
        };
        query_params.push(pb::QueryParamMatch {
            name: q.name.clone(),
            kind: Some(kind),
        });
    }
    let method = m
        .method
        .as_ref()
        .and_then(|m| serde_json::to_value(m).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(pb::RouteMatch {
        path,
        headers,
        query_params,
        method,
    })
}

fn prefix_all() -> pb::RouteMatch {
    pb::RouteMatch {
        path: Some(pb::PathMatch {
            kind: Some(pb::path_match::Kind::Prefix("/".to_owned())),
        }),
        ..Default::default()
    }
}

/// The same check the proxy applies, so a pattern accepted here is never NACKed there.
fn check_regex(value: &str) -> Result<(), String> {
    serval_common::validate::whole_value_regex(value).map(|_| ())
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The precedence of a converted match (the proxy orders routes by it).
pub(super) fn precedence(m: &pb::RouteMatch, origin: &Origin<'_>) -> pb::Precedence {
    let (path_kind, path_length) = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(pb::path_match::Kind::Exact(v)) => (0, v.len()),
        Some(pb::path_match::Kind::Regex(v)) => (1, v.len()),
        // A trailing "/" does not make a prefix more specific: "/foo/" matches what "/foo" does.
        Some(pb::path_match::Kind::Prefix(v)) => (2, v.trim_end_matches('/').len()),
        None => (2, 0),
    };
    pb::Precedence {
        path_kind,
        path_length: count(path_length),
        method: !m.method.is_empty(),
        headers: count(m.headers.len()),
        query_params: count(m.query_params.len()),
        ..origin.precedence()
    }
}

/// The precedence key of a GRPCRoute match (converted to path form by `grpc_route`): the most
/// characters of a matching service first, then of a matching method, then the most header
/// matches (GRPCRouteRule ordering); ties as for HTTPRoute. Wildcard parts count no characters.
pub(super) fn grpc_precedence(m: &pb::RouteMatch, origin: &Origin<'_>) -> pb::Precedence {
    let counted = |part: &str| if part == "[^/]+" { 0 } else { part.len() };
    let (service, method) = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(pb::path_match::Kind::Exact(v)) => {
            let (s, m) = v.trim_start_matches('/').split_once('/').unwrap_or((v, ""));
            (s.len(), m.len())
        }
        Some(pb::path_match::Kind::Prefix(v)) => (v.trim_matches('/').len(), 0),
        Some(pb::path_match::Kind::Regex(v)) => {
            let (s, m) = v
                .strip_prefix("/(?:")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(")/(?:"))
                .or_else(|| v.strip_prefix("/[^/]+/").map(|m| ("[^/]+", m)))
                .unwrap_or(("", ""));
            (counted(s), counted(m))
        }
        None => (0, 0),
    };
    pb::Precedence {
        path_kind: 0,
        // Service characters dominate method characters (names are at most 1,024 long).
        path_length: count(service * 2048 + method),
        headers: count(m.headers.len()),
        ..origin.precedence()
    }
}
