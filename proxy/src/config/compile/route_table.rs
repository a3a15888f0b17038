//! Assembles the routing table of one HTTP listener socket from its `RouteConfig` (the Gateway
//! listeners on the port, with their hostnames) and the `AttachedRoute`s that join it.
//!
//! The rules, the same the Gateway API gives (and the control plane used to apply itself):
//! - one virtual host per hostname pattern of a listener or a route on the port;
//! - a pattern belongs to the listener with the most specific hostname covering it, and only
//!   routes attached through that listener serve it;
//! - within a virtual host, routes of more specific hostnames come first, then by `Precedence`;
//!   each host's list is complete (the proxy never falls through to another virtual host), so
//!   routes of less specific hostnames of the same listener follow the more specific ones.
//!
//! Each route is compiled once per AttachedRoute and shared by every virtual host it is in; an
//! AttachedRoute unchanged since the previous configuration keeps its compiled routes
//! ([`RouteCache`]). [`build_host`] builds one virtual host from the RouteConfig's index; the
//! full compile calls it for every pattern, `delta` only for the patterns a change touches.

use super::{
    AttachedWith, ClusterMap, CompileError, CompiledHost, Held, RouteConfigHosts, compile_route,
    invalid,
};
use crate::router::{Route, Router, VirtualHost};
use serval_common::{hostname, proto::config::v1 as pb, validate};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// The AttachedRoutes of each RouteConfig, by RouteConfig name.
pub(super) type Attached<'a> = BTreeMap<&'a str, Vec<&'a pb::AttachedRoute>>;

/// `ar`'s attachment `i` names `rc` (held) and one of its listeners; returns `rc`.
pub(super) fn check_attachment<'r>(
    ar: &pb::AttachedRoute,
    i: usize,
    a: &pb::RouteAttachment,
    rc: Option<&'r pb::RouteConfig>,
) -> Result<&'r pb::RouteConfig, CompileError> {
    let Some(rc) = rc else {
        return Err(CompileError::Missing {
            resource: ar.name.clone(),
            missing: a.route_config.clone(),
        });
    };
    if !rc
        .listeners
        .iter()
        .any(|l| l.section_name == a.section_name)
    {
        return Err(invalid(
            &ar.name,
            format!("attachments[{i}].section_name"),
            format!("{} has no listener {:?}", rc.name, a.section_name),
        ));
    }
    Ok(rc)
}

/// Groups `routes` by the RouteConfigs they attach to, checking that each exists.
pub(super) fn index<'a>(
    routes: impl Iterator<Item = &'a pb::AttachedRoute>,
    route_configs: &BTreeMap<&str, &'a pb::RouteConfig>,
) -> Result<Attached<'a>, CompileError> {
    let mut out: Attached<'_> = BTreeMap::new();
    for route in routes {
        for (i, a) in route.attachments.iter().enumerate() {
            let rc = check_attachment(
                route,
                i,
                a,
                route_configs.get(a.route_config.as_str()).copied(),
            )?;
            let list = out.entry(rc.name.as_str()).or_default();
            if list.last().is_none_or(|r| r.name != route.name) {
                list.push(route);
            }
        }
    }
    Ok(out)
}

/// Compiled routes by AttachedRoute: from the previous configuration when unchanged, else
/// compiled now (once, however many RouteConfigs the AttachedRoute joins).
pub(super) struct RouteCache<'a> {
    previous: Option<&'a super::Compiled>,
    versions: &'a Held<String>,
    clusters: &'a ClusterMap,
    now: super::CompiledRoutes,
    hosts: Held<RouteConfigHosts>,
}

impl<'a> RouteCache<'a> {
    pub(super) fn new(
        previous: Option<&'a super::Compiled>,
        versions: &'a Held<String>,
        clusters: &'a ClusterMap,
    ) -> Self {
        Self {
            previous,
            versions,
            clusters,
            now: Held::new(),
            hosts: Held::new(),
        }
    }

    /// What this configuration compiled or reused, for the next one.
    pub(super) fn into_compiled(self) -> (super::CompiledRoutes, Held<RouteConfigHosts>) {
        (self.now, self.hosts)
    }

    fn routes(&mut self, ar: &pb::AttachedRoute) -> Result<(), CompileError> {
        if self.now.contains_key(&ar.name) {
            return Ok(());
        }
        let version = self.versions.get(&ar.name).filter(|v| !v.is_empty());
        let kept = match self.reusable(&ar.name, version) {
            Some(kept) => kept,
            None => Arc::new(compile_attached_route(
                ar,
                version.cloned().unwrap_or_default(),
                self.clusters,
            )?),
        };
        self.now.insert(ar.name.clone(), kept);
        Ok(())
    }

    /// The previous compilation of `name`, if its version and every Cluster it uses are
    /// unchanged.
    fn reusable(
        &self,
        name: &str,
        version: Option<&String>,
    ) -> Option<Arc<super::CompiledAttachedRoute>> {
        let kept = self.previous?.routes.get(name)?;
        let same_clusters = kept.clusters.iter().all(|(n, before)| {
            self.clusters
                .get(n)
                .is_some_and(|now| Arc::ptr_eq(now, before))
        });
        (version.is_some() && Some(&kept.version) == version && same_clusters)
            .then(|| Arc::clone(kept))
    }
}

/// Compiles the routes of `ar` with their precedence and the Clusters they use.
pub(super) fn compile_attached_route(
    ar: &pb::AttachedRoute,
    version: String,
    clusters: &ClusterMap,
) -> Result<super::CompiledAttachedRoute, CompileError> {
    let mut routes = Vec::with_capacity(ar.routes.len());
    let mut keys = Vec::with_capacity(ar.routes.len());
    for (r, route) in ar.routes.iter().enumerate() {
        let field = format!("routes[{r}]");
        routes.push(Arc::new(compile_route(&ar.name, &field, route, clusters)?));
        keys.push(
            PrecedenceKey::of(route).ok_or_else(|| {
                invalid(&ar.name, format!("routes[{r}].precedence"), "must be set")
            })?,
        );
    }
    let clusters = serval_common::resource::attached_route_references(ar)
        .into_iter()
        .filter_map(|n| {
            let cluster = Arc::clone(clusters.get(&n)?);
            Some((n, cluster))
        })
        .collect();
    Ok(super::CompiledAttachedRoute {
        version,
        routes: Arc::new(routes),
        keys,
        clusters,
    })
}

/// Checks the RouteConfig itself: no inline virtual hosts, valid listener hostnames.
pub(super) fn check_route_config(rc: &pb::RouteConfig) -> Result<(), CompileError> {
    #[allow(deprecated)] // read only to reject it
    if !rc.virtual_hosts.is_empty() {
        return Err(invalid(
            &rc.name,
            "virtual_hosts",
            "no longer supported: routes arrive as AttachedRoute resources (upgrade the control plane)",
        ));
    }
    for (i, l) in rc.listeners.iter().enumerate() {
        validate::host_pattern(&l.hostname, true)
            .map_err(|reason| invalid(&rc.name, format!("listeners[{i}].hostname"), reason))?;
    }
    Ok(())
}

/// The (hostname, section) pairs through which `ar` joins `rc`, hostnames checked.
pub(super) fn attachments_to<'a>(
    ar: &'a pb::AttachedRoute,
    rc: &str,
) -> Result<Vec<(&'a str, &'a str)>, CompileError> {
    let mut out = Vec::new();
    for (i, a) in ar.attachments.iter().enumerate() {
        if a.route_config != rc {
            continue;
        }
        for (h, hostname) in a.hostnames.iter().enumerate() {
            validate::host_pattern(hostname, true).map_err(|reason| {
                invalid(&ar.name, format!("attachments[{i}].hostnames[{h}]"), reason)
            })?;
            out.push((hostname.as_str(), a.section_name.as_str()));
        }
    }
    Ok(out)
}

/// Adds the virtual hosts of `rc` to `router`.
pub(super) fn add(
    router: &mut Router,
    rc: &pb::RouteConfig,
    attached: &[&pb::AttachedRoute],
    cache: &mut RouteCache<'_>,
) -> Result<(), CompileError> {
    check_route_config(rc)?;
    let rc_version = cache.versions.get(&rc.name).cloned().unwrap_or_default();
    // Compile every route once; index them by hostname.
    let mut by_hostname: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for ar in attached {
        cache.routes(ar)?;
        for (hostname, section) in attachments_to(ar, &rc.name)? {
            by_hostname
                .entry(hostname)
                .or_default()
                .push((ar.name.clone(), section.to_owned()));
        }
    }
    let mut state = RouteConfigHosts {
        attached: by_hostname
            .into_iter()
            .map(|(h, list)| (h.to_owned(), Arc::new(list)))
            .collect(),
        hosts: Held::new(),
    };
    let mut patterns: BTreeSet<&str> = rc.listeners.iter().map(|l| l.hostname.as_str()).collect();
    patterns.extend(state.attached.keys().map(String::as_str));
    let previous = cache.previous.and_then(|p| p.hosts.get(&rc.name));
    let mut hosts = Held::new();
    for pattern in patterns {
        let kept = previous.and_then(|p| p.hosts.get(pattern));
        let Some(host) = build_host(rc, &rc_version, pattern, &state.attached, &cache.now, kept)
        else {
            continue;
        };
        // A pattern two Listener resources on one socket both define: the first keeps it.
        router.hosts.insert(pattern, Arc::clone(&host.host));
        hosts.insert(pattern.to_owned(), host);
    }
    state.hosts = hosts;
    cache.hosts.insert(rc.name.clone(), state);
    Ok(())
}

/// The virtual host of `pattern` in `rc`: the routes attached through the listener owning the
/// pattern with a hostname covering it, most specific hostname first, then by precedence. `None`
/// when no listener owns the pattern. `kept` (the previous one) is returned when built from the
/// same inputs.
pub(super) fn build_host(
    rc: &pb::RouteConfig,
    rc_version: &str,
    pattern: &str,
    attached: &Held<AttachedWith>,
    routes: &super::CompiledRoutes,
    kept: Option<&Arc<CompiledHost>>,
) -> Option<Arc<CompiledHost>> {
    // The listener that owns requests for this pattern: the most specific one covering it.
    let owner = rc
        .listeners
        .iter()
        .filter(|l| hostname::covers(&l.hostname, pattern))
        .min_by(|a, b| hostname::by_specificity(&a.hostname, &b.hostname))?;
    let covering = hostname::covering_patterns(pattern);
    let mut groups: Vec<(usize, &str, &super::CompiledAttachedRoute)> = Vec::new();
    for (c, h) in covering.iter().enumerate() {
        let Some(list) = attached.get(h.as_str()) else {
            continue;
        };
        for (ar, section) in list.iter() {
            if *section == owner.section_name
                && let Some(compiled) = routes.get(ar)
            {
                groups.push((c, h.as_str(), compiled));
            }
        }
    }
    // What the virtual host is built from: unchanged, the previous one is reused.
    let inputs = super::HostInputs {
        route_config_version: rc_version.to_owned(),
        owner: owner.section_name.clone(),
        routes: groups
            .iter()
            .map(|(c, _, compiled)| (*c, Arc::clone(&compiled.routes)))
            .collect(),
    };
    if let Some(kept) = kept
        && !rc_version.is_empty()
        && kept.inputs == inputs
    {
        return Some(Arc::clone(kept));
    }
    let mut entries: Vec<Entry<'_>> = groups
        .iter()
        .flat_map(|(_, h, compiled)| {
            compiled
                .keys
                .iter()
                .zip(compiled.routes.iter())
                .map(move |(key, route)| Entry {
                    specificity: h,
                    key,
                    route,
                })
        })
        .collect();
    entries.sort_by(|a, b| {
        hostname::by_specificity(a.specificity, b.specificity)
            .then_with(|| a.key.cmp(b.key))
            .then_with(|| a.route.name.cmp(&b.route.name))
    });
    let mut seen = BTreeSet::new();
    let routes: Vec<Arc<Route>> = entries
        .into_iter()
        .filter(|e| seen.insert(e.route.name.as_str()))
        .map(|e| Arc::clone(e.route))
        .collect();
    let listener = Arc::from(inputs.owner.as_str());
    Some(Arc::new(CompiledHost {
        inputs,
        host: Arc::new(VirtualHost::new(pattern.to_owned(), listener, routes)),
    }))
}

/// One compiled route with where it sorts.
struct Entry<'a> {
    specificity: &'a str,
    key: &'a PrecedenceKey,
    route: &'a Arc<Route>,
}

/// Gateway API match precedence as a sort key: smaller wins (see `serval.config.v1.Precedence`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrecedenceKey {
    path_kind: u32,
    path_length: Reverse<u32>,
    no_method: bool,
    headers: Reverse<u32>,
    query_params: Reverse<u32>,
    /// `None` (no creation time) sorts first.
    created: Option<(i64, i32)>,
    namespace: String,
    route: String,
    rule: u32,
    r#match: u32,
}

impl PrecedenceKey {
    fn of(route: &pb::Route) -> Option<Self> {
        let p = route.precedence.as_ref()?;
        Some(Self {
            path_kind: p.path_kind,
            path_length: Reverse(p.path_length),
            no_method: !p.method,
            headers: Reverse(p.headers),
            query_params: Reverse(p.query_params),
            created: p.created.map(|t| (t.seconds, t.nanos)),
            namespace: p.namespace.clone(),
            route: p.route.clone(),
            rule: p.rule,
            r#match: p.r#match,
        })
    }
}

/// Total order of two keys (for tests).
#[cfg(test)]
fn compare(a: &pb::Route, b: &pb::Route) -> std::cmp::Ordering {
    PrecedenceKey::of(a).cmp(&PrecedenceKey::of(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    fn route(name: &str, p: pb::Precedence) -> pb::Route {
        pb::Route {
            name: name.into(),
            precedence: Some(p),
            ..Default::default()
        }
    }

    #[test]
    fn precedence_orders_field_by_field() {
        let base = pb::Precedence {
            path_kind: 2,
            path_length: 4,
            namespace: "ns".into(),
            route: "r".into(),
            ..Default::default()
        };
        let exact = route(
            "e",
            pb::Precedence {
                path_kind: 0,
                ..base.clone()
            },
        );
        let longer = route(
            "l",
            pb::Precedence {
                path_length: 9,
                ..base.clone()
            },
        );
        let method = route(
            "m",
            pb::Precedence {
                method: true,
                ..base.clone()
            },
        );
        let older = route(
            "o",
            pb::Precedence {
                created: Some(pbjson_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..base.clone()
            },
        );
        let newer = route(
            "n",
            pb::Precedence {
                created: Some(pbjson_types::Timestamp {
                    seconds: 2,
                    nanos: 0,
                }),
                ..base.clone()
            },
        );
        let plain = route("p", base);
        assert_eq!(compare(&exact, &longer), Ordering::Less);
        assert_eq!(compare(&longer, &method), Ordering::Less);
        assert_eq!(compare(&method, &plain), Ordering::Less);
        assert_eq!(
            compare(&plain, &older),
            Ordering::Less,
            "no time sorts first"
        );
        assert_eq!(compare(&older, &newer), Ordering::Less);
    }
}
