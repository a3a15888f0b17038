//! Compiles the filter and policy parts of a route: `Filters`, `Redirect`, `Timeouts` and
//! `RetryPolicy`. Every error names the field; validation is the one the control plane applied
//! (`serval_common::validate`), so what it sends is never rejected here.

use super::{CompileError, invalid};
use crate::{
    filters::{CorsPolicy, Filters, HeaderModifier, Mirror, PathModifier, Redirect, UrlRewrite},
    router::{RetryPolicy, Timeouts},
};
use http::{HeaderName, HeaderValue, StatusCode};
use serval_common::{proto::config::v1 as pb, validate};
use std::{sync::Arc, time::Duration};

/// Where the pieces being compiled sit, for error messages.
pub(super) struct At<'a> {
    pub(super) resource: &'a str,
    pub(super) field: String,
}

impl At<'_> {
    fn err(&self, sub: &str, reason: impl Into<String>) -> CompileError {
        invalid(self.resource, format!("{}.{sub}", self.field), reason)
    }
}

pub(super) fn filters(
    at: &At<'_>,
    f: Option<&pb::Filters>,
    clusters: &super::ClusterMap,
) -> Result<Filters, CompileError> {
    let Some(f) = f else {
        return Ok(Filters::default());
    };
    let mut mirrors = Vec::with_capacity(f.mirrors.len());
    for (i, m) in f.mirrors.iter().enumerate() {
        let cluster = clusters
            .get(&m.cluster)
            .ok_or_else(|| CompileError::Missing {
                resource: at.resource.to_owned(),
                missing: m.cluster.clone(),
            })?;
        let (numerator, denominator) = match (m.numerator, m.denominator) {
            (0, 0) => (1, 1),
            (n, d) if d > 0 && n <= d => (n, d),
            (n, d) => {
                return Err(at.err(
                    &format!("mirrors[{i}]"),
                    format!("share {n}/{d} must be between 0 and 1"),
                ));
            }
        };
        mirrors.push(Mirror {
            cluster: Arc::clone(cluster),
            numerator,
            denominator,
        });
    }
    Ok(Filters {
        request_headers: f
            .request_headers
            .as_ref()
            .map(|h| header_modifier(at, "request_headers", h))
            .transpose()?,
        response_headers: f
            .response_headers
            .as_ref()
            .map(|h| header_modifier(at, "response_headers", h))
            .transpose()?,
        url_rewrite: f
            .url_rewrite
            .as_ref()
            .map(|r| url_rewrite(at, r))
            .transpose()?,
        mirrors,
        cors: f.cors.as_ref().map(|c| cors(at, c)).transpose()?,
    })
}

fn header_modifier(
    at: &At<'_>,
    field: &str,
    h: &pb::HeaderModifier,
) -> Result<HeaderModifier, CompileError> {
    let pair = |list: &str, i: usize, v: &pb::HeaderValue| {
        let name = HeaderName::from_bytes(v.name.as_bytes()).map_err(|_| {
            at.err(
                &format!("{field}.{list}[{i}].name"),
                format!("{:?} is not a header name", v.name),
            )
        })?;
        let value = HeaderValue::from_str(&v.value).map_err(|_| {
            at.err(
                &format!("{field}.{list}[{i}].value"),
                format!("{:?} is not a header value", v.value),
            )
        })?;
        Ok::<_, CompileError>((name, value))
    };
    Ok(HeaderModifier {
        set: h
            .set
            .iter()
            .enumerate()
            .map(|(i, v)| pair("set", i, v))
            .collect::<Result<_, _>>()?,
        add: h
            .add
            .iter()
            .enumerate()
            .map(|(i, v)| pair("add", i, v))
            .collect::<Result<_, _>>()?,
        remove: h
            .remove
            .iter()
            .enumerate()
            .map(|(i, n)| {
                HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                    at.err(
                        &format!("{field}.remove[{i}]"),
                        format!("{n:?} is not a header name"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

fn path_modifier(
    at: &At<'_>,
    field: &str,
    p: Option<&pb::PathModifier>,
) -> Result<Option<PathModifier>, CompileError> {
    let Some(p) = p else { return Ok(None) };
    match &p.kind {
        None => Err(at.err(field, "kind must be set")),
        Some(pb::path_modifier::Kind::ReplaceFullPath(v)) if v.starts_with('/') => {
            Ok(Some(PathModifier::ReplaceFullPath(v.clone())))
        }
        Some(pb::path_modifier::Kind::ReplacePrefixMatch(v))
            if v.is_empty() || v.starts_with('/') =>
        {
            Ok(Some(PathModifier::ReplacePrefixMatch(v.clone())))
        }
        Some(_) => Err(at.err(field, "the path must start with \"/\"")),
    }
}

fn hostname(at: &At<'_>, field: &str, h: &str) -> Result<Option<String>, CompileError> {
    if h.is_empty() {
        return Ok(None);
    }
    validate::host_pattern(h, false).map_err(|e| at.err(field, e))?;
    Ok(Some(h.to_owned()))
}

fn url_rewrite(at: &At<'_>, r: &pb::UrlRewrite) -> Result<UrlRewrite, CompileError> {
    Ok(UrlRewrite {
        hostname: hostname(at, "url_rewrite.hostname", &r.hostname)?,
        path: path_modifier(at, "url_rewrite.path", r.path.as_ref())?,
    })
}

/// A redirect; `field` is where it sits (`redirect` or `route.backends[i].redirect`).
pub(super) fn redirect(
    at: &At<'_>,
    field: &str,
    r: &pb::Redirect,
) -> Result<Redirect, CompileError> {
    let scheme = match r.scheme.as_str() {
        "" => None,
        "http" | "https" => Some(r.scheme.clone()),
        other => {
            return Err(at.err(
                &format!("{field}.scheme"),
                format!("{other:?} is not http or https"),
            ));
        }
    };
    let port = match r.port {
        0 => None,
        p => Some(
            u16::try_from(p)
                .map_err(|_| at.err(&format!("{field}.port"), format!("{p} is not a port")))?,
        ),
    };
    let status = match r.status_code {
        0 => StatusCode::FOUND,
        c @ (301 | 302 | 303 | 307 | 308) => {
            StatusCode::from_u16(u16::try_from(c).unwrap_or(302)).unwrap_or(StatusCode::FOUND)
        }
        c => {
            return Err(at.err(
                &format!("{field}.status_code"),
                format!("{c} is not a redirect status"),
            ));
        }
    };
    Ok(Redirect {
        scheme,
        hostname: hostname(at, &format!("{field}.hostname"), &r.hostname)?,
        port,
        path: path_modifier(at, &format!("{field}.path"), r.path.as_ref())?,
        status,
    })
}

fn cors(at: &At<'_>, c: &pb::CorsPolicy) -> Result<CorsPolicy, CompileError> {
    for (i, o) in c.allow_origins.iter().enumerate() {
        validate::cors_origin(o).map_err(|e| at.err(&format!("cors.allow_origins[{i}]"), e))?;
    }
    Ok(CorsPolicy {
        allow_origins: c
            .allow_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        allow_credentials: c.allow_credentials,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age_seconds: c.max_age_seconds,
    })
}

fn duration(
    at: &At<'_>,
    field: &str,
    d: Option<&pbjson_types::Duration>,
) -> Result<Option<Duration>, CompileError> {
    let Some(d) = d else { return Ok(None) };
    let (Ok(secs), Ok(nanos)) = (u64::try_from(d.seconds), u32::try_from(d.nanos)) else {
        return Err(at.err(field, "must not be negative"));
    };
    let d = Duration::new(secs, nanos);
    Ok((!d.is_zero()).then_some(d))
}

pub(super) fn timeouts(at: &At<'_>, t: Option<&pb::Timeouts>) -> Result<Timeouts, CompileError> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    Ok(Timeouts {
        request: duration(at, "timeouts.request", t.request.as_ref())?,
        backend_request: duration(at, "timeouts.backend_request", t.backend_request.as_ref())?,
    })
}

pub(super) fn retry(
    at: &At<'_>,
    r: Option<&pb::RetryPolicy>,
) -> Result<Option<RetryPolicy>, CompileError> {
    let Some(r) = r else { return Ok(None) };
    let mut codes = Vec::with_capacity(r.codes.len());
    for (i, c) in r.codes.iter().enumerate() {
        let code = u16::try_from(*c)
            .ok()
            .filter(|c| (400..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                at.err(
                    &format!("retry.codes[{i}]"),
                    format!("{c} is not a status code from 400 to 599"),
                )
            })?;
        codes.push(code);
    }
    Ok(Some(RetryPolicy {
        codes,
        attempts: r.attempts,
        // Present means as given (0: retry at once); absent means the default.
        backoff: match r.backoff.as_ref() {
            None => Duration::from_millis(25),
            Some(_) => duration(at, "retry.backoff", r.backoff.as_ref())?.unwrap_or_default(),
        },
    }))
}
