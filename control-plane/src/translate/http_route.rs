//! HTTPRoute → route entries (one per rule match, hostname and attached listener) plus the
//! route's status: one `parents[]` entry per parentRef to a Gateway of ours, with `Accepted` and
//! `ResolvedRefs`.
//!
//! Entries are ordered and grouped into RouteConfigs by `route_config`; backends become clusters in
//! `backends`. Filters are not implemented yet: a rule with filters answers 500 and the route gets
//! `PartiallyInvalid` (never silently skipped).

use super::{
    Options,
    attach::{self, Attachment, ParentRef},
    backends::{self, BackendRef},
    gateway::{GATEWAY_GROUP, GatewayModel},
    inputs::{Inputs, Key},
    matching::{self, Origin, Precedence},
    status::{Condition, GATEWAY_API_VERSION, ObjectStatus, StatusMetadata, condition, reason},
};
use gateway_api::httproutes::{HttpRoute, HttpRouteRules};
use serval_common::{Resource, names, proto::config::v1 as pb};
use std::collections::BTreeMap;

const KIND: &str = "HTTPRoute";

/// One route match, attached through one listener for one hostname.
#[derive(Debug)]
pub(super) struct RouteEntry {
    /// Index into the Gateway models.
    pub(super) gateway: usize,
    /// Index into that Gateway's listeners.
    pub(super) listener: usize,
    /// The hostname pattern requests must carry (`*` for any).
    pub(super) hostname: String,
    pub(super) precedence: Precedence,
    pub(super) route: pb::Route,
}

/// Translates every HTTPRoute that names a Gateway of ours.
pub(super) fn translate(
    inputs: &Inputs,
    opts: &Options,
    gateways: &mut [GatewayModel],
    resources: &mut BTreeMap<String, Resource>,
) -> (Vec<RouteEntry>, Vec<ObjectStatus>) {
    let index: BTreeMap<Key, usize> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (g.key.clone(), i))
        .collect();
    let mut entries = Vec::new();
    let mut statuses = Vec::new();
    for ((ns, name), route) in &inputs.http_routes {
        if let Some(status) = translate_one(
            inputs,
            opts,
            gateways,
            &index,
            resources,
            ns,
            name,
            route,
            &mut entries,
        ) {
            statuses.push(status);
        }
    }
    (entries, statuses)
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the arguments
fn translate_one(
    inputs: &Inputs,
    opts: &Options,
    gateways: &mut [GatewayModel],
    index: &BTreeMap<Key, usize>,
    resources: &mut BTreeMap<String, Resource>,
    ns: &str,
    name: &str,
    route: &HttpRoute,
    entries: &mut Vec<RouteEntry>,
) -> Option<ObjectStatus> {
    let generation = route.metadata.generation.unwrap_or(0);
    let hostnames: Vec<String> = route
        .spec
        .hostnames
        .iter()
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let parents: Vec<(ParentRef, usize)> = route
        .spec
        .parent_refs
        .iter()
        .flatten()
        .filter_map(|p| {
            let parent = ParentRef {
                group: p.group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_owned()),
                kind: p.kind.clone().unwrap_or_else(|| "Gateway".to_owned()),
                namespace: p.namespace.clone().unwrap_or_else(|| ns.to_owned()),
                name: p.name.clone(),
                section_name: p.section_name.clone(),
                port: p.port,
            };
            let gw = *index.get(&(parent.namespace.clone(), parent.name.clone()))?;
            parent.is_gateway().then_some((parent, gw))
        })
        .collect();
    if parents.is_empty() {
        return None;
    }
    let attachments: Vec<Attachment> = parents
        .iter()
        .map(|(parent, gw)| attach::attach(inputs, &gateways[*gw], parent, KIND, ns, &hostnames))
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
    let rules = if let Some(message) = invalid_hostname {
        Err(message)
    } else if attached_anywhere {
        translate_rules(inputs, ns, name, route, resources)
    } else {
        Ok(RulesOutcome::default())
    };

    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
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
            (Attachment::Attached(_), Err(message)) => conditions.push(cond(
                condition::ACCEPTED,
                false,
                reason::UNSUPPORTED_VALUE,
                message.clone(),
            )),
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
                        gateways[*gw].listeners[*listener].attached_routes += 1;
                    }
                    for hostname in listener_hostnames {
                        for m in &outcome.matches {
                            entries.push(RouteEntry {
                                gateway: *gw,
                                listener: *listener,
                                hostname: hostname.clone(),
                                precedence: matching::precedence(
                                    m.route
                                        .r#match
                                        .as_ref()
                                        .unwrap_or(&pb::RouteMatch::default()),
                                    Origin {
                                        created: &created,
                                        namespace: ns,
                                        name,
                                        rule: m.rule,
                                        match_index: m.match_index,
                                    },
                                ),
                                route: m.route.clone(),
                            });
                        }
                    }
                }
                if let Some(message) = &outcome.partially_invalid {
                    conditions.push(cond(
                        "PartiallyInvalid",
                        true,
                        reason::UNSUPPORTED_VALUE,
                        message.clone(),
                    ));
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
    Some(ObjectStatus {
        api_version: GATEWAY_API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: StatusMetadata {
            name: name.to_owned(),
            namespace: Some(ns.to_owned()),
            generation,
        },
        status: serde_json::json!({ "parents": parent_statuses }),
    })
}

/// The translated rules of one route.
#[derive(Debug, Default)]
struct RulesOutcome {
    matches: Vec<TranslatedMatch>,
    /// First backendRef that did not resolve: (reason, message).
    unresolved: Option<(&'static str, String)>,
    /// Parts of the route that are not served as written.
    partially_invalid: Option<String>,
}

#[derive(Debug)]
struct TranslatedMatch {
    rule: usize,
    match_index: usize,
    route: pb::Route,
}

/// `Err` (naming the field) when the route cannot be accepted at all.
fn translate_rules(
    inputs: &Inputs,
    ns: &str,
    name: &str,
    route: &HttpRoute,
    resources: &mut BTreeMap<String, Resource>,
) -> Result<RulesOutcome, String> {
    let mut outcome = RulesOutcome::default();
    for (i, rule) in route.spec.rules.iter().flatten().enumerate() {
        let action = rule_action(inputs, ns, rule, resources, &mut outcome, i);
        let matches: Vec<Option<&_>> = match rule.matches.as_deref() {
            None | Some([]) => vec![None],
            Some(ms) => ms.iter().map(Some).collect(),
        };
        for (j, m) in matches.into_iter().enumerate() {
            let route_match =
                matching::convert(m).map_err(|e| format!("spec.rules[{i}].matches[{j}].{e}"))?;
            outcome.matches.push(TranslatedMatch {
                rule: i,
                match_index: j,
                route: pb::Route {
                    name: names::route(ns, KIND, name, i, j),
                    r#match: Some(route_match),
                    action: Some(action.clone()),
                },
            });
        }
    }
    Ok(outcome)
}

fn direct(status: u32, body: impl Into<String>) -> pb::DirectResponse {
    pb::DirectResponse {
        status,
        body: body.into(),
    }
}

fn rule_action(
    inputs: &Inputs,
    ns: &str,
    rule: &HttpRouteRules,
    resources: &mut BTreeMap<String, Resource>,
    outcome: &mut RulesOutcome,
    i: usize,
) -> pb::route::Action {
    if let Some(filter) = rule.filters.iter().flatten().next() {
        let kind = serde_json::to_value(&filter.r#type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let message = format!(
            "spec.rules[{i}].filters: filter type {kind} is not supported yet; the rule answers 500"
        );
        outcome.partially_invalid.get_or_insert(message);
        return pb::route::Action::DirectResponse(direct(500, "filter not supported\n"));
    }
    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    if refs.is_empty() {
        return pb::route::Action::DirectResponse(direct(500, "no backends\n"));
    }
    let mut backends = Vec::new();
    for (j, b) in refs.iter().enumerate() {
        let backend = BackendRef {
            group: b.group.as_deref().unwrap_or_default(),
            kind: b.kind.as_deref().unwrap_or("Service"),
            name: &b.name,
            namespace: b.namespace.as_deref().unwrap_or(ns),
            port: b.port,
        };
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        let target = match backends::resolve(inputs, KIND, ns, &backend, resources) {
            Ok(cluster) => pb::weighted_backend::Target::Cluster(cluster),
            Err((r, m)) => {
                outcome
                    .unresolved
                    .get_or_insert((r, format!("spec.rules[{i}].backendRefs[{j}]: {m}")));
                pb::weighted_backend::Target::DirectResponse(direct(500, "invalid backend\n"))
            }
        };
        if b.filters.as_ref().is_some_and(|f| !f.is_empty()) {
            outcome.partially_invalid.get_or_insert(format!(
                "spec.rules[{i}].backendRefs[{j}].filters are not supported yet; the backend answers 500"
            ));
            backends.push(pb::WeightedBackend {
                weight,
                target: Some(pb::weighted_backend::Target::DirectResponse(direct(
                    500,
                    "filter not supported\n",
                ))),
            });
            continue;
        }
        backends.push(pb::WeightedBackend {
            weight,
            target: Some(target),
        });
    }
    pb::route::Action::Route(pb::RouteAction { backends })
}
