//! HTTPRoute → route entries (one per rule match, hostname and attached listener) plus the
//! route's status: one `parents[]` entry per parentRef to a Gateway of ours, with `Accepted` and
//! `ResolvedRefs`.
//!
//! Entries are ordered and grouped into RouteConfigs by `route_config`; backends become clusters in
//! `backends`, filters are converted in `filters`, timeouts and retries in `policy`. A rule that
//! cannot be served as written answers 500 and the route gets `PartiallyInvalid` (or
//! `ResolvedRefs=False` for a reference): never silently skipped.

use super::{
    Options,
    attach::{self, Attachment, ParentRef},
    backends::{self, BackendRef, Produced},
    filters::{self, Level, Problem},
    gateway::GatewayModel,
    incremental::{Memo, Reuse, Translated},
    inputs::{Inputs, Key},
    matching::{self, Origin},
    policy,
    status::{Condition, GATEWAY_API_VERSION, ObjectStatus, StatusMetadata, condition, reason},
};
use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteRules};
use serval_common::{names, proto::config::v1 as pb};
use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

/// The route kind being translated: HTTPRoute, or GRPCRoute (converted to HTTPRoute form by
/// `grpc_route`, with HTTP/2 to its backends).
#[derive(Clone, Copy, Debug)]
pub(super) struct RouteKind {
    /// `HTTPRoute` or `GRPCRoute`.
    pub(super) name: &'static str,
    /// Backends are spoken to over HTTP/2 unless their appProtocol says otherwise.
    pub(super) h2_backends: bool,
    /// Precedence between matches.
    pub(super) precedence: fn(&pb::RouteMatch, &Origin<'_>) -> pb::Precedence,
}

/// HTTPRoute.
pub(super) const HTTP_ROUTE: RouteKind = RouteKind {
    name: "HTTPRoute",
    h2_backends: false,
    precedence: matching::precedence,
};

/// One route match, attached through one listener for one hostname.
#[derive(Clone, Debug)]
pub(super) struct RouteEntry {
    /// Index into the Gateway models.
    pub(super) gateway: usize,
    /// Index into that Gateway's listeners.
    pub(super) listener: usize,
    /// The hostname pattern requests must carry (`*` for any); shared, entries are copied per
    /// translation.
    pub(super) hostname: Arc<str>,
    /// Shared by every listener and hostname the match is reachable through.
    pub(super) route: Arc<pb::Route>,
    /// The route the match belongs to.
    pub(super) owner: Arc<RouteOwner>,
}

/// Which route an entry comes from, and its age (for conflicts between route kinds).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RouteOwner {
    /// `creationTimestamp` (RFC 3339), if any: older routes win conflicts.
    pub(super) created: Option<String>,
    /// Namespace and name.
    pub(super) key: Key,
    /// `HTTPRoute` or `GRPCRoute`.
    pub(super) kind: &'static str,
}

/// Translates every route of `kind` that names a Gateway of ours, reusing the translations in
/// `memo` that `reuse` allows. `convert` gives a route's HTTPRoute form and, for a route found
/// invalid by it (a GRPCRoute match that has no HTTPRoute form), the message naming the field
/// (the route gets `Accepted=False`); `None` skips the route.
#[allow(clippy::too_many_arguments)] // the two call sites differ in every argument
pub(super) fn translate<S: PartialEq>(
    kind: RouteKind,
    routes: &super::inputs::Map<Key, Arc<S>>,
    convert: impl for<'s> Fn(&Key, &'s S) -> Option<(Cow<'s, HttpRoute>, Option<String>)>,
    memo: &mut Memo<S>,
    reuse: &Reuse<'_>,
    inputs: &Inputs,
    opts: &Options,
    gateways: &mut [GatewayModel],
    resources: &mut super::Resources,
) -> (Vec<RouteEntry>, Vec<Arc<ObjectStatus>>) {
    let index: BTreeMap<Key, usize> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (g.key.clone(), i))
        .collect();
    let mut entries = Vec::new();
    let mut statuses = Vec::new();
    let mut next = Memo::default();
    for (key, source) in routes {
        let translated = match memo.get(key, source, reuse) {
            Some(kept) => {
                reuse.replay(&kept, resources);
                kept
            }
            None => {
                let Some((route, rejected)) = convert(key, source) else {
                    continue;
                };
                Arc::new(translate_one(
                    kind,
                    rejected.as_ref(),
                    inputs,
                    opts,
                    gateways,
                    &index,
                    resources,
                    key,
                    &route,
                ))
            }
        };
        for (g, l) in &translated.counted {
            gateways[*g].listeners[*l].attached_routes += 1;
        }
        entries.extend(translated.entries.iter().cloned());
        statuses.extend(translated.status.iter().cloned());
        next.insert(key, source, &translated);
    }
    *memo = next;
    (entries, statuses)
}

#[allow(clippy::too_many_arguments)] // two call sites; a struct would only rename the arguments
pub(super) fn translate_one(
    kind: RouteKind,
    rejected: Option<&String>,
    inputs: &Inputs,
    opts: &Options,
    gateways: &[GatewayModel],
    index: &BTreeMap<Key, usize>,
    resources: &mut super::Resources,
    (ns, name): &Key,
    route: &HttpRoute,
) -> Translated {
    let mut out = Translated::default();
    let generation = route.metadata.generation.unwrap_or(0);
    let hostnames: Vec<String> = route
        .spec
        .hostnames
        .iter()
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let parents = attach::of_ours(
        route.spec.parent_refs.iter().flatten().map(|p| {
            ParentRef::with_defaults(
                (p.group.as_ref(), p.kind.as_ref(), p.namespace.as_ref()),
                &p.name,
                (p.section_name.as_ref(), p.port),
                ns,
            )
        }),
        index,
    );
    if parents.is_empty() {
        return out;
    }
    let attachments: Vec<Attachment> = parents
        .iter()
        .map(|(parent, gw)| {
            attach::attach(inputs, &gateways[*gw], parent, kind.name, ns, &hostnames)
        })
        .collect();
    let attached_anywhere = attachments
        .iter()
        .any(|a| matches!(a, Attachment::Attached(_)));

    // Rules are translated once, and only for a route that attaches somewhere, so unattached routes
    // add no clusters.
    let invalid_hostname = hostnames.iter().enumerate().find_map(|(i, h)| {
        serval_common::validate::host_pattern(h, false)
            .err()
            .map(|e| format!("spec.hostnames[{i}]: {e}"))
    });
    let invalid_hostname = invalid_hostname.or_else(|| rejected.cloned());
    let rules = if let Some(message) = invalid_hostname {
        Err((reason::UNSUPPORTED_VALUE, message))
    } else if attached_anywhere {
        let mut produced = Produced::new(resources);
        let rules = translate_rules(kind, inputs, ns, name, route, &mut produced);
        out.services = produced.services;
        out.names = produced.names;
        rules
    } else {
        Ok(RulesOutcome::default())
    };

    let owner = Arc::new(RouteOwner {
        created: route
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        key: (ns.to_owned(), name.to_owned()),
        kind: kind.name,
    });
    let cond =
        |t: &str, ok: bool, r: &str, m: String| Condition::new(t, ok, r, m, generation, &opts.now);
    let mut parent_statuses = Vec::new();
    let mut counted = std::collections::BTreeSet::new();
    for ((parent, gw), attachment) in parents.iter().zip(attachments) {
        let mut conditions = Vec::new();
        match (&attachment, &rules) {
            (Attachment::Rejected(r, m), _) => {
                conditions.push(cond(condition::ACCEPTED, false, r, m.clone()))
            }
            (Attachment::Attached(_), Err((r, message))) => {
                conditions.push(cond(condition::ACCEPTED, false, r, message.clone()));
            }
            (Attachment::Attached(listeners), Ok(outcome)) => {
                conditions.push(cond(
                    condition::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "accepted".into(),
                ));
                for (listener, listener_hostnames) in listeners {
                    // A route counts once per listener, however many of its parentRefs reach it.
                    if counted.insert((*gw, *listener)) {
                        out.counted.push((*gw, *listener));
                    }
                    for hostname in listener_hostnames {
                        let hostname: Arc<str> = Arc::from(hostname.as_str());
                        for m in &outcome.matches {
                            out.entries.push(RouteEntry {
                                gateway: *gw,
                                listener: *listener,
                                hostname: Arc::clone(&hostname),
                                route: Arc::clone(&m.route),
                                owner: Arc::clone(&owner),
                            });
                        }
                    }
                }
                if let Some((r, message)) = &outcome.partially_invalid {
                    conditions.push(cond(condition::PARTIALLY_INVALID, true, r, message.clone()));
                }
            }
        }
        conditions.push(match &rules {
            Ok(RulesOutcome {
                unresolved: Some((r, m)),
                ..
            }) => cond(condition::RESOLVED_REFS, false, r, m.clone()),
            _ => cond(
                condition::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "resolved".into(),
            ),
        });
        parent_statuses.push(serde_json::json!({
            "parentRef": parent,
            "controllerName": opts.controller_name,
            "conditions": conditions,
        }));
    }
    out.status = Some(Arc::new(ObjectStatus {
        api_version: GATEWAY_API_VERSION.to_owned(),
        kind: kind.name.to_owned(),
        metadata: StatusMetadata {
            name: name.to_owned(),
            namespace: Some(ns.to_owned()),
            generation,
        },
        status: serde_json::json!({ "parents": parents_with_foreign(route, opts, parent_statuses) }),
    }));
    out
}

/// `status.parents` as written: the entries of other controllers, untouched and first (another
/// implementation owns them; rewriting them starts write wars), then Serval's.
fn parents_with_foreign(
    route: &HttpRoute,
    opts: &Options,
    ours: Vec<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let mut parents: Vec<serde_json::Value> = route
        .status
        .iter()
        .flat_map(|s| &s.parents)
        .filter(|p| p.controller_name != opts.controller_name)
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    parents.extend(ours);
    parents
}

/// The translated rules of one route.
#[derive(Debug, Default)]
struct RulesOutcome {
    matches: Vec<TranslatedMatch>,
    /// First reference that did not resolve: (reason, message).
    unresolved: Option<(&'static str, String)>,
    /// First part of the route that is not served as written: (reason, message).
    partially_invalid: Option<(&'static str, String)>,
}

#[derive(Debug)]
struct TranslatedMatch {
    route: Arc<pb::Route>,
}

/// `Err((reason, message naming the field))` when the route cannot be accepted at all: a match
/// is invalid, or every rule is ("If all Route Rules in a Route are invalid, the entire Route
/// would be considered invalid"; otherwise the route is `PartiallyInvalid`).
fn translate_rules(
    kind: RouteKind,
    inputs: &Inputs,
    ns: &str,
    name: &str,
    route: &HttpRoute,
    resources: &mut Produced<'_>,
) -> Result<RulesOutcome, (&'static str, String)> {
    let mut outcome = RulesOutcome::default();
    let rules = route.spec.rules.as_deref().unwrap_or_default();
    // Tie-breaker of the precedence rules: the oldest route first.
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| pbjson_types::Timestamp {
            seconds: t.0.as_second(),
            nanos: t.0.subsec_nanosecond(),
        });
    let mut invalid_rules = 0;
    for (i, rule) in rules.iter().enumerate() {
        let rule_out = translate_rule(kind, inputs, ns, rule, i, resources, &mut outcome);
        let mut invalid_matches = 0;
        let matches: Vec<Option<&_>> = match rule.matches.as_deref() {
            None | Some([]) => vec![None],
            Some(ms) => ms.iter().map(Some).collect(),
        };
        for (j, m) in matches.into_iter().enumerate() {
            let route_match = matching::convert(m).map_err(|e| {
                (
                    reason::UNSUPPORTED_VALUE,
                    format!("spec.rules[{i}].matches[{j}].{e}"),
                )
            })?;
            let mut action = rule_out.action.clone();
            let is_prefix = matches!(
                route_match.path.as_ref().and_then(|p| p.kind.as_ref()),
                Some(pb::path_match::Kind::Prefix(_))
            );
            if let (Some(field), false) = (&rule_out.replaces_prefix, is_prefix) {
                outcome.partially_invalid.get_or_insert((
                    reason::UNSUPPORTED_VALUE,
                    format!(
                        "{field} needs a PathPrefix match, but spec.rules[{i}].matches[{j}] is not one; it answers 500"
                    ),
                ));
                action = pb::route::Action::DirectResponse(direct(500, "invalid filter\n"));
                invalid_matches += 1;
            }
            let precedence = (kind.precedence)(
                &route_match,
                &Origin {
                    created,
                    namespace: ns,
                    name,
                    rule: i,
                    match_index: j,
                },
            );
            outcome.matches.push(TranslatedMatch {
                route: Arc::new(pb::Route {
                    name: names::route(ns, kind.name, name, i, j),
                    precedence: Some(precedence),
                    r#match: Some(route_match),
                    filters: rule_out.filters.clone(),
                    timeouts: rule_out.timeouts,
                    retry: rule_out.retry.clone(),
                    rule_name: rule.name.clone().unwrap_or_default(),
                    action: Some(action),
                }),
            });
        }
        if rule_out.invalid
            || invalid_matches == rule.matches.as_ref().map_or(1, |m| m.len().max(1))
        {
            invalid_rules += 1;
        }
    }
    if invalid_rules > 0 && invalid_rules == rules.len() {
        let (r, message) = outcome.partially_invalid.take().unwrap_or((
            reason::UNSUPPORTED_VALUE,
            "every rule is invalid".to_owned(),
        ));
        return Err((r, format!("every rule is invalid; first: {message}")));
    }
    Ok(outcome)
}

fn direct(status: u32, body: impl Into<String>) -> pb::DirectResponse {
    pb::DirectResponse {
        status,
        body: body.into(),
    }
}

/// One rule, the same for each of its matches.
struct RuleOut {
    action: pb::route::Action,
    filters: Option<pb::Filters>,
    timeouts: Option<pb::Timeouts>,
    retry: Option<pb::RetryPolicy>,
    /// Field of a `ReplacePrefixMatch` (rule- or backend-level), which needs PathPrefix matches.
    replaces_prefix: Option<String>,
    /// The rule's filters or policies are invalid: it answers 500.
    invalid: bool,
}

fn translate_rule(
    kind: RouteKind,
    inputs: &Inputs,
    ns: &str,
    rule: &HttpRouteRules,
    i: usize,
    resources: &mut Produced<'_>,
    outcome: &mut RulesOutcome,
) -> RuleOut {
    let fail = |outcome: &mut RulesOutcome, problem: Problem| {
        let invalid = matches!(problem, Problem::Invalid(..));
        match problem {
            Problem::Invalid(r, m) => outcome.partially_invalid.get_or_insert((r, m)),
            Problem::Unresolved(r, m) => outcome.unresolved.get_or_insert((r, m)),
        };
        RuleOut {
            invalid,
            action: pb::route::Action::DirectResponse(direct(500, "invalid rule\n")),
            filters: None,
            timeouts: None,
            retry: None,
            replaces_prefix: None,
        }
    };
    let converted = match filters::convert(
        inputs,
        kind,
        ns,
        &format!("spec.rules[{i}].filters"),
        Level::Rule,
        rule.filters.as_deref().unwrap_or_default(),
        resources,
    ) {
        Ok(c) => c,
        Err(problem) => return fail(outcome, problem),
    };
    if let Some(u) = converted.unresolved {
        outcome.unresolved.get_or_insert(u);
    }
    if rule.session_persistence.is_some() {
        let message = format!(
            "spec.rules[{i}].sessionPersistence is not supported; the rule answers 500 rather than serve without it"
        );
        return fail(
            outcome,
            Problem::Invalid(reason::UNSUPPORTED_VALUE, message),
        );
    }
    let timeouts = match policy::timeouts(i, rule.timeouts.as_ref()) {
        Ok(t) => t,
        Err(m) => return fail(outcome, Problem::Invalid(reason::UNSUPPORTED_VALUE, m)),
    };
    let retry = match policy::retry(i, rule.retry.as_ref()) {
        Ok(r) => r,
        Err(m) => return fail(outcome, Problem::Invalid(reason::UNSUPPORTED_VALUE, m)),
    };
    let mut replaces_prefix = converted.replaces_prefix;
    let filters = Some(converted.filters).filter(|f| *f != pb::Filters::default());
    let action = if let Some(redirect) = converted.redirect {
        pb::route::Action::Redirect(redirect)
    } else {
        let (action, backend_prefix) = rule_backends(kind, inputs, ns, rule, i, resources, outcome);
        replaces_prefix = replaces_prefix.or(backend_prefix);
        action
    };
    RuleOut {
        action,
        filters,
        timeouts,
        retry,
        replaces_prefix,
        invalid: false,
    }
}

fn rule_backends(
    kind: RouteKind,
    inputs: &Inputs,
    ns: &str,
    rule: &HttpRouteRules,
    i: usize,
    resources: &mut Produced<'_>,
    outcome: &mut RulesOutcome,
) -> (pb::route::Action, Option<String>) {
    let mut replaces_prefix = None;
    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    if refs.is_empty() {
        return (
            pb::route::Action::DirectResponse(direct(500, "no backends\n")),
            None,
        );
    }
    let mut backends = Vec::new();
    for (j, b) in refs.iter().enumerate() {
        let at = format!("spec.rules[{i}].backendRefs[{j}]");
        let backend = BackendRef::with_defaults(
            (b.group.as_deref(), b.kind.as_deref()),
            &b.name,
            b.namespace.as_deref(),
            b.port,
            ns,
        );
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        let invalid = |m: &str| Some(pb::weighted_backend::Target::DirectResponse(direct(500, m)));
        let converted = filters::to_rule_filters(b.filters.as_deref().unwrap_or_default())
            .map_err(|e| Problem::Invalid(reason::UNSUPPORTED_VALUE, format!("{at}.filters: {e}")))
            .and_then(|f| {
                filters::convert(
                    inputs,
                    kind,
                    ns,
                    &format!("{at}.filters"),
                    Level::Backend,
                    &f,
                    resources,
                )
            });
        let converted = match converted {
            Ok(c) => c,
            Err(problem) => {
                match problem {
                    Problem::Invalid(r, m) => outcome.partially_invalid.get_or_insert((r, m)),
                    Problem::Unresolved(r, m) => outcome.unresolved.get_or_insert((r, m)),
                };
                backends.push(pb::WeightedBackend {
                    weight,
                    target: invalid("invalid filter\n"),
                    filters: None,
                });
                continue;
            }
        };
        if let Some(u) = converted.unresolved {
            outcome.unresolved.get_or_insert(u);
        }
        if replaces_prefix.is_none() {
            replaces_prefix = converted.replaces_prefix;
        }
        let target = match backends::resolve(
            inputs,
            kind.name,
            backends::Transport::Http {
                h2_default: kind.h2_backends,
            },
            ns,
            &backend,
            resources,
        ) {
            Ok(_) if converted.redirect.is_some() => converted
                .redirect
                .map(pb::weighted_backend::Target::Redirect),
            Ok(cluster) => Some(pb::weighted_backend::Target::Cluster(cluster)),
            Err((r, m)) => {
                outcome.unresolved.get_or_insert((r, format!("{at}: {m}")));
                invalid("invalid backend\n")
            }
        };
        backends.push(pb::WeightedBackend {
            weight,
            target,
            filters: Some(converted.filters).filter(|f| *f != pb::Filters::default()),
        });
    }
    (
        pb::route::Action::Route(pb::RouteAction { backends }),
        replaces_prefix,
    )
}
