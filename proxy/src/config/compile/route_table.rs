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
//! ([`RouteCache`]).

use super::{CompileError, compile_route, invalid};
use crate::{
    router::{Route, Router, VirtualHost},
    upstream::Cluster,
};
use serval_common::{hostname, proto::config::v1 as pb, validate};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

/// The AttachedRoutes of each RouteConfig, by RouteConfig name.
pub(super) type Attached<'a> = BTreeMap<&'a str, Vec<&'a pb::AttachedRoute>>;

/// Groups `routes` by the RouteConfigs they attach to, checking that each exists.
pub(super) fn index<'a>(
    routes: impl Iterator<Item = &'a pb::AttachedRoute>,
    route_configs: &BTreeMap<&str, &'a pb::RouteConfig>,
) -> Result<Attached<'a>, CompileError> {
    let mut out: Attached<'_> = BTreeMap::new();
    for route in routes {
        for (i, a) in route.attachments.iter().enumerate() {
            let Some(rc) = route_configs.get(a.route_config.as_str()) else {
                return Err(CompileError::Missing {
                    resource: route.name.clone(),
                    missing: a.route_config.clone(),
                });
            };
            if !rc
                .listeners
                .iter()
                .any(|l| l.section_name == a.section_name)
            {
                return Err(invalid(
                    &route.name,
                    format!("attachments[{i}].section_name"),
                    format!("{} has no listener {:?}", rc.name, a.section_name),
                ));
            }
            let list = out.entry(rc.name.as_str()).or_default();
            if list.last().is_none_or(|r| r.name != route.name) {
                list.push(route);
            }
        }
    }
    Ok(out)
}

/// The compiled routes of one AttachedRoute, each with its sort key, and the list they were
/// compiled into (its identity, for reusing virtual hosts).
type Compiled<'a> = (Vec<(PrecedenceKey<'a>, Arc<Route>)>, Arc<Vec<Arc<Route>>>);

/// Compiled routes by AttachedRoute: from the previous configuration when unchanged, else
/// compiled now (once, however many RouteConfigs the AttachedRoute joins).
pub(super) struct RouteCache<'a> {
    previous: Option<&'a super::Compiled>,
    versions: &'a BTreeMap<String, String>,
    clusters: &'a BTreeMap<String, Arc<Cluster>>,
    now: super::CompiledRoutes,
    vhosts: super::CompiledHosts,
}

impl<'a> RouteCache<'a> {
    pub(super) fn new(
        previous: Option<&'a super::Compiled>,
        versions: &'a BTreeMap<String, String>,
        clusters: &'a BTreeMap<String, Arc<Cluster>>,
    ) -> Self {
        Self {
            previous,
            versions,
            clusters,
            now: BTreeMap::new(),
            vhosts: BTreeMap::new(),
        }
    }

    /// What this configuration compiled or reused, for the next one.
    pub(super) fn into_compiled(self) -> (super::CompiledRoutes, super::CompiledHosts) {
        (self.now, self.vhosts)
    }

    fn routes(&mut self, ar: &pb::AttachedRoute) -> Result<Arc<Vec<Arc<Route>>>, CompileError> {
        if let Some(kept) = self.now.get(&ar.name) {
            return Ok(Arc::clone(&kept.routes));
        }
        let version = self.versions.get(&ar.name).filter(|v| !v.is_empty());
        let kept = match self.reusable(&ar.name, version) {
            Some(kept) => kept,
            None => {
                let mut routes = Vec::with_capacity(ar.routes.len());
                for (r, route) in ar.routes.iter().enumerate() {
                    let field = format!("routes[{r}]");
                    routes.push(Arc::new(compile_route(
                        &ar.name,
                        &field,
                        route,
                        self.clusters,
                    )?));
                }
                let clusters = serval_common::resource::attached_route_references(ar)
                    .into_iter()
                    .filter_map(|n| {
                        let cluster = Arc::clone(self.clusters.get(&n)?);
                        Some((n, cluster))
                    })
                    .collect();
                Arc::new(super::CompiledAttachedRoute {
                    version: version.cloned().unwrap_or_default(),
                    routes: Arc::new(routes),
                    clusters,
                })
            }
        };
        let routes = Arc::clone(&kept.routes);
        if version.is_some() {
            self.now.insert(ar.name.clone(), kept);
        }
        Ok(routes)
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
        (Some(&kept.version) == version && same_clusters).then(|| Arc::clone(kept))
    }

    /// The virtual host `pattern` of RouteConfig `rc` (at `rc_version`) from the previous
    /// configuration, if it was built from the same owner and the same compiled routes.
    fn reusable_host(
        &self,
        rc: &str,
        pattern: &str,
        inputs: &super::HostInputs,
    ) -> Option<Arc<VirtualHost>> {
        let kept = self.previous?.hosts.get(rc)?.get(pattern)?;
        (kept.inputs == *inputs).then(|| Arc::clone(&kept.host))
    }
}

/// One compiled route with where it sorts.
struct Entry<'a> {
    specificity: &'a str,
    key: PrecedenceKey<'a>,
    route: &'a Arc<Route>,
}

/// Adds the virtual hosts of `rc` to `router`.
pub(super) fn add(
    router: &mut Router,
    rc: &pb::RouteConfig,
    attached: &[&pb::AttachedRoute],
    cache: &mut RouteCache<'_>,
) -> Result<(), CompileError> {
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
    let rc_version = cache.versions.get(&rc.name).cloned().unwrap_or_default();
    // Compile every route once; group them by (hostname, listener).
    let mut compiled: Vec<(&pb::AttachedRoute, Compiled<'_>)> = Vec::with_capacity(attached.len());
    for ar in attached {
        let built = cache.routes(ar)?;
        let identity = Arc::clone(&built);
        let mut routes = Vec::with_capacity(ar.routes.len());
        for (r, (route, compiled_route)) in ar.routes.iter().zip(built.iter()).enumerate() {
            let key = PrecedenceKey::of(route).ok_or_else(|| {
                invalid(&ar.name, format!("routes[{r}].precedence"), "must be set")
            })?;
            routes.push((key, Arc::clone(compiled_route)));
        }
        compiled.push((ar, (routes, identity)));
    }
    let mut by_hostname: HashMap<&str, Vec<(&str, &Compiled<'_>)>> = HashMap::new();
    let mut patterns: BTreeSet<&str> = rc.listeners.iter().map(|l| l.hostname.as_str()).collect();
    for (ar, routes) in &compiled {
        for (i, a) in ar.attachments.iter().enumerate() {
            if a.route_config != rc.name {
                continue;
            }
            for (h, hostname) in a.hostnames.iter().enumerate() {
                validate::host_pattern(hostname, true).map_err(|reason| {
                    invalid(&ar.name, format!("attachments[{i}].hostnames[{h}]"), reason)
                })?;
                patterns.insert(hostname);
                by_hostname
                    .entry(hostname)
                    .or_default()
                    .push((&a.section_name, routes));
            }
        }
    }

    for pattern in patterns {
        // The listener that owns requests for this pattern: the most specific one covering it.
        let Some(owner) = rc
            .listeners
            .iter()
            .filter(|l| hostname::covers(&l.hostname, pattern))
            .min_by(|a, b| hostname::by_specificity(&a.hostname, &b.hostname))
        else {
            continue;
        };
        let covering = hostname::covering_patterns(pattern);
        let groups = || {
            covering
                .iter()
                .enumerate()
                .filter_map(|(c, h)| by_hostname.get_key_value(h.as_str()).map(|g| (c, g)))
                .flat_map(|(c, (h, groups))| {
                    groups
                        .iter()
                        .filter(|(section, _)| *section == owner.section_name)
                        .map(move |(_, routes)| (c, *h, *routes))
                })
        };
        // What the virtual host is built from: unchanged, the previous one is reused.
        let inputs = super::HostInputs {
            route_config_version: rc_version.clone(),
            owner: owner.section_name.clone(),
            routes: groups()
                .map(|(c, _, (_, identity))| (c, Arc::clone(identity)))
                .collect(),
        };
        let vhost = match cache.reusable_host(&rc.name, pattern, &inputs) {
            Some(kept) => kept,
            None => {
                let mut entries: Vec<Entry<'_>> = groups()
                    .flat_map(|(_, h, (routes, _))| {
                        routes.iter().map(move |(key, route)| Entry {
                            specificity: h,
                            key: key.clone(),
                            route,
                        })
                    })
                    .collect();
                entries.sort_by(|a, b| {
                    hostname::by_specificity(a.specificity, b.specificity)
                        .then_with(|| a.key.cmp(&b.key))
                        .then_with(|| a.route.name.cmp(&b.route.name))
                });
                let mut seen = BTreeSet::new();
                let routes: Vec<Arc<Route>> = entries
                    .into_iter()
                    .filter(|e| seen.insert(e.route.name.as_str()))
                    .map(|e| Arc::clone(e.route))
                    .collect();
                Arc::new(VirtualHost::new(pattern.to_owned(), routes))
            }
        };
        // A pattern two Listener resources on one socket both define: the first keeps it.
        router.hosts.insert(pattern, Arc::clone(&vhost));
        if !rc_version.is_empty() {
            cache.vhosts.entry(rc.name.clone()).or_default().insert(
                pattern.to_owned(),
                super::CompiledHost {
                    inputs,
                    host: vhost,
                },
            );
        }
    }
    Ok(())
}

/// Gateway API match precedence as a sort key: smaller wins (see `serval.config.v1.Precedence`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PrecedenceKey<'a> {
    path_kind: u32,
    path_length: Reverse<u32>,
    no_method: bool,
    headers: Reverse<u32>,
    query_params: Reverse<u32>,
    /// `None` (no creation time) sorts first.
    created: Option<(i64, i32)>,
    namespace: &'a str,
    route: &'a str,
    rule: u32,
    r#match: u32,
}

impl<'a> PrecedenceKey<'a> {
    fn of(route: &'a pb::Route) -> Option<Self> {
        let p = route.precedence.as_ref()?;
        Some(Self {
            path_kind: p.path_kind,
            path_length: Reverse(p.path_length),
            no_method: !p.method,
            headers: Reverse(p.headers),
            query_params: Reverse(p.query_params),
            created: p.created.map(|t| (t.seconds, t.nanos)),
            namespace: &p.namespace,
            route: &p.route,
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
