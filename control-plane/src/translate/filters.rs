//! HTTPRoute filters → `serval.config.v1.Filters` (plus the redirect action), for rules and for
//! backendRefs.
//!
//! Validation follows the specification, including what the CRD's CEL rules enforce in a cluster
//! (a standalone folder has no admission webhook): each filter's own field set, at most one of each
//! kind except RequestMirror, RequestRedirect not with URLRewrite, `ReplacePrefixMatch` only on a
//! PathPrefix match, CORS not on a backendRef. A rule whose filters cannot be served as written
//! answers 500 — a filter is never skipped silently — and the problem becomes route status.
//!
//! Backend-level filters have the same shape as rule-level ones; they are converted through JSON
//! into the rule-level type so there is one code path.

use super::{
    backends::{self, BackendRef, Produced},
    http_route::RouteKind,
    inputs::Inputs,
    status::reason,
};
use gateway_api::experimental::httproutes::{
    HttpRouteRulesFilters, HttpRouteRulesFiltersCors as Cors,
    HttpRouteRulesFiltersRequestMirror as Mirror, HttpRouteRulesFiltersRequestRedirect as Redirect,
    HttpRouteRulesFiltersRequestRedirectPathType as RedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme, HttpRouteRulesFiltersType as FilterType,
    HttpRouteRulesFiltersUrlRewrite as UrlRewrite,
    HttpRouteRulesFiltersUrlRewritePathType as RewritePathType,
};
use serde::Serialize;
use serval_common::{proto::config::v1 as pb, validate};

/// Where the filters are written, which decides what they may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// `spec.rules[].filters`.
    Rule,
    /// `spec.rules[].backendRefs[].filters`.
    Backend,
}

/// Filters converted for the proxy.
#[derive(Debug, Default)]
pub(super) struct Converted {
    pub(super) filters: pb::Filters,
    /// A RequestRedirect filter: the rule (or backend) answers with it instead of forwarding.
    pub(super) redirect: Option<pb::Redirect>,
    /// Field path of a `ReplacePrefixMatch`, which needs the match to be a PathPrefix.
    pub(super) replaces_prefix: Option<String>,
    /// A mirror backendRef that did not resolve (the mirror is left out): (reason, message).
    pub(super) unresolved: Option<(&'static str, String)>,
}

/// Why the filters cannot be served as written; the rule (or backend) answers 500.
#[derive(Debug)]
pub(super) enum Problem {
    /// The route asks for something invalid or unsupported: `PartiallyInvalid`, reason
    /// `UnsupportedValue` (or `IncompatibleFilters`).
    Invalid(&'static str, String),
    /// An ExtensionRef Serval cannot resolve: `ResolvedRefs=False`.
    Unresolved(&'static str, String),
}

/// Converts backendRef filters (any serializable filter of the rule-level shape).
pub(super) fn to_rule_filters<T: Serialize>(
    filters: &[T],
) -> Result<Vec<HttpRouteRulesFilters>, String> {
    filters
        .iter()
        .map(|f| {
            serde_json::to_value(f)
                .and_then(serde_json::from_value)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Converts `filters` written at `field` (e.g. `spec.rules[0].filters`) of a route in `ns`.
pub(super) fn convert(
    inputs: &Inputs,
    route_kind: RouteKind,
    ns: &str,
    field: &str,
    level: Level,
    filters: &[HttpRouteRulesFilters],
    resources: &mut Produced<'_>,
) -> Result<Converted, Problem> {
    let mut out = Converted::default();
    let mut seen: Vec<&FilterType> = Vec::new();
    let mut rewrite = false;
    for (i, filter) in filters.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let repeatable = matches!(
            filter.r#type,
            FilterType::RequestMirror | FilterType::ExtensionRef
        );
        if !repeatable && seen.contains(&&filter.r#type) {
            return Err(Problem::Invalid(
                reason::UNSUPPORTED_VALUE,
                format!(
                    "{at}: filter type {} may appear only once",
                    type_name(&filter.r#type)
                ),
            ));
        }
        seen.push(&filter.r#type);
        let missing = |what: &str| {
            Problem::Invalid(
                reason::UNSUPPORTED_VALUE,
                format!(
                    "{at}.{what} must be set for type {}",
                    type_name(&filter.r#type)
                ),
            )
        };
        match filter.r#type {
            FilterType::RequestHeaderModifier => {
                let m = filter
                    .request_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("requestHeaderModifier"))?;
                out.filters.request_headers = Some(header_modifier(
                    &format!("{at}.requestHeaderModifier"),
                    m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.remove.iter().flatten(),
                )?);
            }
            FilterType::ResponseHeaderModifier => {
                let m = filter
                    .response_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("responseHeaderModifier"))?;
                out.filters.response_headers = Some(header_modifier(
                    &format!("{at}.responseHeaderModifier"),
                    m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.remove.iter().flatten(),
                )?);
            }
            FilterType::RequestRedirect => {
                let r = filter
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("requestRedirect"))?;
                let (redirect, prefix) = redirect(&format!("{at}.requestRedirect"), r)?;
                out.replaces_prefix = out.replaces_prefix.or(prefix);
                out.redirect = Some(redirect);
            }
            FilterType::UrlRewrite => {
                let r = filter
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("urlRewrite"))?;
                let (rewrite_pb, prefix) = url_rewrite(&format!("{at}.urlRewrite"), r)?;
                out.replaces_prefix = out.replaces_prefix.or(prefix);
                out.filters.url_rewrite = Some(rewrite_pb);
                rewrite = true;
            }
            FilterType::RequestMirror => {
                let m = filter
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing("requestMirror"))?;
                match mirror(
                    inputs,
                    route_kind,
                    ns,
                    &format!("{at}.requestMirror"),
                    m,
                    resources,
                )? {
                    Ok(mirror) => out.filters.mirrors.push(mirror),
                    Err(unresolved) => {
                        out.unresolved.get_or_insert(unresolved);
                    }
                }
            }
            FilterType::Cors => {
                if level == Level::Backend {
                    return Err(Problem::Invalid(
                        reason::UNSUPPORTED_VALUE,
                        format!("{at}: CORS is only supported as a rule filter"),
                    ));
                }
                let c = filter.cors.as_ref().ok_or_else(|| missing("cors"))?;
                out.filters.cors = Some(cors(&format!("{at}.cors"), c)?);
            }
            FilterType::ExtensionRef => {
                let what = filter.extension_ref.as_ref().map_or_else(
                    || "an unset extensionRef".to_owned(),
                    |e| format!("{}/{} {:?}", e.group, e.kind, e.name),
                );
                return Err(Problem::Unresolved(
                    reason::INVALID_KIND,
                    format!(
                        "{at}: ExtensionRef to {what} is not supported by Serval; the rule answers 500"
                    ),
                ));
            }
            FilterType::ExternalAuth => {
                return Err(Problem::Invalid(
                    reason::UNSUPPORTED_VALUE,
                    format!(
                        "{at}: filter type ExternalAuth is not supported; the rule answers 500"
                    ),
                ));
            }
        }
    }
    if rewrite && out.redirect.is_some() {
        return Err(Problem::Invalid(
            reason::INCOMPATIBLE_FILTERS,
            format!("{field}: RequestRedirect and URLRewrite cannot be used together"),
        ));
    }
    Ok(out)
}

fn type_name(t: &FilterType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn invalid(message: String) -> Problem {
    Problem::Invalid(reason::UNSUPPORTED_VALUE, message)
}

fn header_modifier<'a>(
    at: &str,
    set: impl Iterator<Item = (&'a String, &'a String)>,
    add: impl Iterator<Item = (&'a String, &'a String)>,
    remove: impl Iterator<Item = &'a String>,
) -> Result<pb::HeaderModifier, Problem> {
    let mut out = pb::HeaderModifier::default();
    let mut names = Vec::new();
    for (list, entries, field) in [
        (&mut out.set, set.collect::<Vec<_>>(), "set"),
        (&mut out.add, add.collect(), "add"),
    ] {
        for (i, (name, value)) in entries.into_iter().enumerate() {
            validate::header_name(name)
                .map_err(|e| invalid(format!("{at}.{field}[{i}].name: {e}")))?;
            validate::header_value(value)
                .map_err(|e| invalid(format!("{at}.{field}[{i}].value: {e}")))?;
            let lower = name.to_ascii_lowercase();
            if names.contains(&(field, lower.clone())) {
                return Err(invalid(format!(
                    "{at}.{field}[{i}].name: {name:?} is listed twice (names are case-insensitive)"
                )));
            }
            names.push((field, lower.clone()));
            list.push(pb::HeaderValue {
                name: lower,
                value: value.clone(),
            });
        }
    }
    for (i, name) in remove.enumerate() {
        validate::header_name(name).map_err(|e| invalid(format!("{at}.remove[{i}]: {e}")))?;
        out.remove.push(name.to_ascii_lowercase());
    }
    Ok(out)
}

fn path_modifier(
    at: &str,
    replace_full: bool,
    full: Option<&String>,
    prefix: Option<&String>,
) -> Result<(pb::PathModifier, Option<String>), Problem> {
    let kind = if replace_full {
        let v = full.ok_or_else(|| {
            invalid(format!(
                "{at}.replaceFullPath must be set for type ReplaceFullPath"
            ))
        })?;
        check_path(&format!("{at}.replaceFullPath"), v)?;
        pb::path_modifier::Kind::ReplaceFullPath(v.clone())
    } else {
        let v = prefix.ok_or_else(|| {
            invalid(format!(
                "{at}.replacePrefixMatch must be set for type ReplacePrefixMatch"
            ))
        })?;
        if !v.is_empty() {
            check_path(&format!("{at}.replacePrefixMatch"), v)?;
        }
        pb::path_modifier::Kind::ReplacePrefixMatch(v.clone())
    };
    let prefix_field = (!replace_full).then(|| format!("{at}.replacePrefixMatch"));
    Ok((pb::PathModifier { kind: Some(kind) }, prefix_field))
}

/// A path a filter writes: absolute, without query or fragment, printable ASCII.
fn check_path(at: &str, path: &str) -> Result<(), Problem> {
    let ok = path.starts_with('/')
        && path.len() <= 1024
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{at}: {path:?} must be an absolute path without query or fragment"
        )))
    }
}

fn hostname(at: &str, h: &str) -> Result<String, Problem> {
    let lower = h.to_ascii_lowercase();
    if lower.starts_with('*') {
        return Err(invalid(format!(
            "{at}: {h:?} must be a hostname, not a wildcard"
        )));
    }
    validate::host_pattern(&lower, false).map_err(|e| invalid(format!("{at}: {e}")))?;
    Ok(lower)
}

fn redirect(at: &str, r: &Redirect) -> Result<(pb::Redirect, Option<String>), Problem> {
    let mut prefix = None;
    let path = match &r.path {
        None => None,
        Some(p) => {
            let (m, pre) = path_modifier(
                &format!("{at}.path"),
                matches!(p.r#type, RedirectPathType::ReplaceFullPath),
                p.replace_full_path.as_ref(),
                p.replace_prefix_match.as_ref(),
            )?;
            prefix = pre;
            Some(m)
        }
    };
    let status_code = r.status_code.unwrap_or(302);
    if ![301, 302, 303, 307, 308].contains(&status_code) {
        return Err(invalid(format!(
            "{at}.statusCode: {status_code} is not one of 301, 302, 303, 307, 308"
        )));
    }
    let port = match r.port {
        None => 0,
        Some(p) => u32::try_from(p)
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| invalid(format!("{at}.port: {p} is not a port")))?,
    };
    Ok((
        pb::Redirect {
            scheme: match r.scheme {
                None => String::new(),
                Some(Scheme::Http) => "http".to_owned(),
                Some(Scheme::Https) => "https".to_owned(),
            },
            hostname: r
                .hostname
                .as_deref()
                .map(|h| hostname(&format!("{at}.hostname"), h))
                .transpose()?
                .unwrap_or_default(),
            port,
            path,
            status_code: u32::try_from(status_code).unwrap_or(302),
        },
        prefix,
    ))
}

fn url_rewrite(at: &str, r: &UrlRewrite) -> Result<(pb::UrlRewrite, Option<String>), Problem> {
    let mut prefix = None;
    let path = match &r.path {
        None => None,
        Some(p) => {
            let (m, pre) = path_modifier(
                &format!("{at}.path"),
                matches!(p.r#type, RewritePathType::ReplaceFullPath),
                p.replace_full_path.as_ref(),
                p.replace_prefix_match.as_ref(),
            )?;
            prefix = pre;
            Some(m)
        }
    };
    Ok((
        pb::UrlRewrite {
            hostname: r
                .hostname
                .as_deref()
                .map(|h| hostname(&format!("{at}.hostname"), h))
                .transpose()?
                .unwrap_or_default(),
            path,
        },
        prefix,
    ))
}

/// `Ok(Err(..))`: the mirror's backendRef did not resolve; the mirror is left out.
fn mirror(
    inputs: &Inputs,
    route_kind: RouteKind,
    ns: &str,
    at: &str,
    m: &Mirror,
    resources: &mut Produced<'_>,
) -> Result<Result<pb::RequestMirror, (&'static str, String)>, Problem> {
    let (numerator, denominator) = match (&m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{at}: percent and fraction cannot both be set"
            )));
        }
        (Some(p), None) => (*p, 100),
        (None, Some(f)) => (f.numerator, f.denominator.unwrap_or(100)),
        (None, None) => (100, 100),
    };
    if denominator < 1 || numerator < 0 || numerator > denominator {
        return Err(invalid(format!(
            "{at}: the mirrored share {numerator}/{denominator} must be between 0 and 1"
        )));
    }
    let b = &m.backend_ref;
    let backend = BackendRef::with_defaults(
        (b.group.as_deref(), b.kind.as_deref()),
        &b.name,
        b.namespace.as_deref(),
        b.port,
        ns,
    );
    Ok(
        match backends::resolve(
            inputs,
            route_kind.name,
            backends::Transport::Http {
                h2_default: route_kind.h2_backends,
            },
            ns,
            &backend,
            resources,
        ) {
            Ok(cluster) => Ok(pb::RequestMirror {
                cluster,
                numerator: u32::try_from(numerator).unwrap_or(0),
                denominator: u32::try_from(denominator).unwrap_or(100),
            }),
            Err((r, message)) => Err((r, format!("{at}.backendRef: {message}"))),
        },
    )
}

fn cors(at: &str, c: &Cors) -> Result<pb::CorsPolicy, Problem> {
    let origins = c.allow_origins.clone().unwrap_or_default();
    for (i, o) in origins.iter().enumerate() {
        validate::cors_origin(o).map_err(|e| invalid(format!("{at}.allowOrigins[{i}]: {e}")))?;
    }
    let list = |field: &str, values: &Option<Vec<String>>| -> Result<Vec<String>, Problem> {
        let values = values.clone().unwrap_or_default();
        if values.len() > 1 && values.iter().any(|v| v == "*") {
            return Err(invalid(format!(
                "{at}.{field}: \"*\" must be the only entry"
            )));
        }
        for (i, v) in values.iter().enumerate() {
            if v != "*" {
                validate::header_name(v).map_err(|e| invalid(format!("{at}.{field}[{i}]: {e}")))?;
            }
        }
        Ok(values)
    };
    let max_age = c.max_age.unwrap_or(5);
    Ok(pb::CorsPolicy {
        allow_origins: origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        allow_methods: list("allowMethods", &c.allow_methods)?,
        allow_headers: list("allowHeaders", &c.allow_headers)?
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        expose_headers: list("exposeHeaders", &c.expose_headers)?
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_age_seconds: u32::try_from(max_age)
            .map_err(|_| invalid(format!("{at}.maxAge: {max_age} must not be negative")))?,
    })
}
