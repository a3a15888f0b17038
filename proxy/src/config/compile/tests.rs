//! Tests of compiling resources into a runtime Config: missing references, invalid fields, socket merging.

use super::*;
use serval_common::names;

pub(super) fn listener(gw: &str, ip: &str, port: u32) -> Resource {
    Resource::Listener(pb::Listener {
        name: names::listener("ns", gw, 80),
        address: Some(pb::SocketAddress {
            ip: ip.into(),
            port,
        }),
        gateway: format!("ns/{gw}"),
        gateway_class: String::new(),
        section_names: vec!["http".into()],
        protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
            route_config_name: names::route_config("ns", gw, 80),
            ..Default::default()
        })),
    })
}

/// The RouteConfig of `gw`'s port 80 with listeners (section name, hostname).
pub(super) fn route_config_with(gw: &str, listeners: &[(&str, &str)]) -> Resource {
    Resource::RouteConfig(pb::RouteConfig {
        name: names::route_config("ns", gw, 80),
        listeners: listeners
            .iter()
            .map(|(section, host)| pb::ListenerHost {
                section_name: (*section).into(),
                hostname: (*host).into(),
            })
            .collect(),
        ..Default::default()
    })
}

/// Route `route.name` of `gw`, attached through listener `section` for `hostnames`.
pub(super) fn attached(gw: &str, section: &str, hostnames: &[&str], route: pb::Route) -> Resource {
    let name = route.name.clone();
    let route = pb::Route {
        precedence: route.precedence.clone().or(Some(pb::Precedence {
            namespace: "ns".into(),
            route: name.clone(),
            ..Default::default()
        })),
        ..route
    };
    Resource::AttachedRoute(pb::AttachedRoute {
        name: names::attached_route("ns", gw, "HTTPRoute", "ns", &name),
        routes: vec![route],
        attachments: vec![pb::RouteAttachment {
            route_config: names::route_config("ns", gw, 80),
            section_name: section.into(),
            hostnames: hostnames.iter().map(|h| (*h).into()).collect(),
        }],
    })
}

/// A RouteConfig with one listener `http` (any host) and `route` for `domain`.
fn route_config(gw: &str, domain: &str, route: pb::Route) -> Vec<Resource> {
    vec![
        route_config_with(gw, &[("http", "*")]),
        attached(gw, "http", &[domain], route),
    ]
}

pub(super) fn direct_route(name: &str, path: pb::path_match::Kind) -> pb::Route {
    pb::Route {
        name: name.into(),
        r#match: Some(pb::RouteMatch {
            path: Some(pb::PathMatch { kind: Some(path) }),
            ..Default::default()
        }),
        action: Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 204,
            body: String::new(),
        })),
        ..Default::default()
    }
}

pub(super) fn set(resources: Vec<Resource>) -> BTreeMap<String, Resource> {
    resources
        .into_iter()
        .map(|r| (r.name().to_owned(), r))
        .collect()
}

pub(super) fn prefix(p: &str) -> pb::path_match::Kind {
    pb::path_match::Kind::Prefix(p.into())
}

#[test]
fn missing_route_config_names_the_listener() {
    let err = compile(
        "v".into(),
        set(vec![listener("a", "127.0.0.1", 80)]),
        BTreeMap::new(),
        None,
    )
    .expect_err("incomplete");
    assert_eq!(
        err,
        CompileError::Missing {
            resource: "listener/ns/a/80".into(),
            missing: "routeconfig/ns/a/80".into(),
        }
    );
}

#[test]
fn invalid_regex_names_the_field() {
    let resources = set([
        vec![listener("a", "127.0.0.1", 80)],
        route_config(
            "a",
            "*",
            direct_route("r", pb::path_match::Kind::Regex("(".into())),
        ),
    ]
    .concat());
    let err = compile("v".into(), resources, BTreeMap::new(), None).expect_err("bad regex");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "attachedroute/ns/a/httproute/ns/r: routes[0].match.path.regex: invalid regular expression"
        ),
        "{text}"
    );
}

#[test]
fn listener_address_must_be_an_ip_and_port() {
    let err = compile(
        "v".into(),
        set(vec![listener("a", "localhost", 80)]),
        BTreeMap::new(),
        None,
    )
    .expect_err("not an ip");
    assert!(err.to_string().contains("address.ip"), "{err}");
    let err = compile(
        "v".into(),
        set(vec![listener("a", "127.0.0.1", 70000)]),
        BTreeMap::new(),
        None,
    )
    .expect_err("not a port");
    assert!(err.to_string().contains("address.port"), "{err}");
}

#[test]
fn bind_address_merges_listeners_onto_one_socket_first_name_wins() {
    let resources = set([
        vec![
            listener("a", "127.0.10.1", 80),
            listener("b", "127.0.10.2", 80),
        ],
        route_config("a", "shared.example", direct_route("from-a", prefix("/"))),
        route_config("b", "shared.example", direct_route("from-b", prefix("/"))),
    ]
    .concat());
    let separate = compile("v".into(), resources.clone(), BTreeMap::new(), None).expect("valid");
    assert_eq!(separate.listeners.len(), 2);
    let merged = compile(
        "v".into(),
        resources,
        BTreeMap::new(),
        Some([127, 0, 0, 9].into()),
    )
    .expect("valid");
    assert_eq!(merged.listeners.len(), 1);
    let socket = &merged.listeners[&SocketAddr::from(([127, 0, 0, 9], 80))];
    assert_eq!(socket.names, ["listener/ns/a/80", "listener/ns/b/80"]);
    let req = http::Request::get("/").body(()).expect("request");
    let route = socket.router.route("shared.example", &req).expect("routed");
    assert_eq!(route.name, "from-a");
}

#[test]
fn zero_weight_backends_are_never_picked() {
    let resources = set([
        vec![listener("a", "127.0.0.1", 80)],
        route_config(
            "a",
            "*",
            pb::Route {
                name: "r".into(),
                r#match: None,
                action: Some(pb::route::Action::Route(pb::RouteAction {
                    backends: vec![pb::WeightedBackend {
                        weight: 0,
                        target: Some(pb::weighted_backend::Target::DirectResponse(
                            pb::DirectResponse {
                                status: 200,
                                body: String::new(),
                            },
                        )),
                        filters: None,
                    }],
                })),
                ..Default::default()
            },
        ),
    ]
    .concat());
    let config = compile("v".into(), resources, BTreeMap::new(), None).expect("valid");
    let socket = &config.listeners[&SocketAddr::from(([127, 0, 0, 1], 80))];
    let req = http::Request::get("/").body(()).expect("request");
    let route = socket.router.route("any", &req).expect("routed");
    let Action::Forward(backends) = &route.action else {
        panic!("forward expected")
    };
    assert_eq!(backends.total, 0);
    assert!(backends.pick().is_none());
}

fn route_name(config: &Config, host: &str, path: &str) -> Option<String> {
    let socket = &config.listeners[&SocketAddr::from(([127, 0, 0, 1], 80))];
    let req = http::Request::get(path).body(()).expect("request");
    socket.router.route(host, &req).map(|r| r.name.clone())
}

#[test]
fn a_host_belongs_to_the_most_specific_listener_and_only_its_routes() {
    let resources = set(vec![
        listener("a", "127.0.0.1", 80),
        route_config_with("a", &[("any", "*"), ("wild", "*.example.com")]),
        attached(
            "a",
            "wild",
            &["*.example.com"],
            direct_route("api", prefix("/api")),
        ),
        attached("a", "any", &["*"], direct_route("catch-all", prefix("/"))),
    ]);
    let config = compile("v".into(), resources, BTreeMap::new(), None).expect("valid");
    assert_eq!(
        route_name(&config, "x.example.com", "/api").as_deref(),
        Some("api")
    );
    // The `wild` listener owns x.example.com: the catch-all of `any` does not serve it.
    assert_eq!(route_name(&config, "x.example.com", "/other"), None);
    assert_eq!(
        route_name(&config, "other.org", "/api").as_deref(),
        Some("catch-all")
    );
}

#[test]
fn routes_of_less_specific_hostnames_follow_within_a_listener() {
    let resources = set(vec![
        listener("a", "127.0.0.1", 80),
        route_config_with("a", &[("http", "*")]),
        attached(
            "a",
            "http",
            &["a.example.com"],
            direct_route("exact-host", prefix("/x")),
        ),
        attached("a", "http", &["*"], direct_route("any-host", prefix("/"))),
    ]);
    let config = compile("v".into(), resources, BTreeMap::new(), None).expect("valid");
    assert_eq!(
        route_name(&config, "a.example.com", "/x").as_deref(),
        Some("exact-host")
    );
    assert_eq!(
        route_name(&config, "a.example.com", "/y").as_deref(),
        Some("any-host")
    );
    assert_eq!(
        route_name(&config, "b.example.com", "/x").as_deref(),
        Some("any-host")
    );
}

#[test]
fn precedence_orders_routes_across_attached_routes() {
    let with = |name: &str, path: &str, p: pb::Precedence| pb::Route {
        precedence: Some(p),
        ..direct_route(name, prefix(path))
    };
    let resources = set(vec![
        listener("a", "127.0.0.1", 80),
        route_config_with("a", &[("http", "*")]),
        attached(
            "a",
            "http",
            &["*"],
            with(
                "short",
                "/",
                pb::Precedence {
                    path_kind: 2,
                    path_length: 0,
                    ..Default::default()
                },
            ),
        ),
        attached(
            "a",
            "http",
            &["*"],
            with(
                "long",
                "/api",
                pb::Precedence {
                    path_kind: 2,
                    path_length: 4,
                    ..Default::default()
                },
            ),
        ),
    ]);
    let config = compile("v".into(), resources, BTreeMap::new(), None).expect("valid");
    assert_eq!(route_name(&config, "h", "/api/x").as_deref(), Some("long"));
    assert_eq!(route_name(&config, "h", "/else").as_deref(), Some("short"));
}

#[test]
fn attachments_must_name_a_held_route_config_and_one_of_its_listeners() {
    let route = attached("a", "http", &["*"], direct_route("r", prefix("/")));
    let err = compile(
        "v".into(),
        set(vec![listener("a", "127.0.0.1", 80), route.clone()]),
        BTreeMap::new(),
        None,
    )
    .expect_err("no route config");
    assert_eq!(
        err,
        CompileError::Missing {
            resource: "attachedroute/ns/a/httproute/ns/r".into(),
            missing: "routeconfig/ns/a/80".into(),
        }
    );
    let err = compile(
        "v".into(),
        set(vec![
            listener("a", "127.0.0.1", 80),
            route_config_with("a", &[("other", "*")]),
            route,
        ]),
        BTreeMap::new(),
        None,
    )
    .expect_err("unknown listener");
    assert!(
        err.to_string()
            .contains("attachments[0].section_name: routeconfig/ns/a/80 has no listener \"http\""),
        "{err}"
    );
}

#[test]
fn inline_virtual_hosts_are_refused() {
    #[allow(deprecated)]
    let old = Resource::RouteConfig(pb::RouteConfig {
        name: names::route_config("ns", "a", 80),
        virtual_hosts: vec![pb::VirtualHost::default()],
        listeners: vec![],
    });
    let err = compile(
        "v".into(),
        set(vec![listener("a", "127.0.0.1", 80), old]),
        BTreeMap::new(),
        None,
    )
    .expect_err("deprecated field");
    assert!(
        err.to_string()
            .contains("virtual_hosts: no longer supported"),
        "{err}"
    );
}

#[test]
fn unchanged_routes_clusters_and_virtual_hosts_are_reused_and_changed_ones_recompiled() {
    let cluster = |port: u32| {
        vec![
            Resource::Cluster(pb::Cluster {
                name: "cluster/ns/svc/80".into(),
                load_assignment_name: "endpoints/ns/svc/80".into(),
                ..Default::default()
            }),
            Resource::ClusterLoadAssignment(pb::ClusterLoadAssignment {
                name: "endpoints/ns/svc/80".into(),
                cluster_name: "cluster/ns/svc/80".into(),
                endpoints: vec![pb::Endpoint {
                    address: Some(pb::SocketAddress {
                        ip: "127.0.0.1".into(),
                        port,
                    }),
                    ..Default::default()
                }],
            }),
        ]
    };
    let forward = |name: &str| pb::Route {
        name: name.into(),
        action: Some(pb::route::Action::Route(pb::RouteAction {
            backends: vec![pb::WeightedBackend {
                weight: 1,
                target: Some(pb::weighted_backend::Target::Cluster(
                    "cluster/ns/svc/80".into(),
                )),
                filters: None,
            }],
        })),
        ..Default::default()
    };
    let world = |port: u32, direct_path: &str| {
        set([
            vec![
                listener("a", "127.0.0.1", 80),
                route_config_with("a", &[("http", "*")]),
                attached("a", "http", &["fwd.example"], forward("fwd")),
                attached(
                    "a",
                    "http",
                    &["direct.example"],
                    direct_route("direct", prefix(direct_path)),
                ),
            ],
            cluster(port),
        ]
        .concat())
    };
    let versions = |resources: &BTreeMap<String, Resource>| -> BTreeMap<String, String> {
        resources
            .iter()
            .map(|(n, r)| (n.clone(), r.version().to_string()))
            .collect()
    };
    let compile_next = |previous: Option<&Config>, resources: BTreeMap<String, Resource>| {
        let v = versions(&resources);
        compile_with(
            previous.map(|c| &c.compiled),
            "v".into(),
            resources
                .into_iter()
                .map(|(n, r)| (n, Arc::new(r)))
                .collect(),
            v.into_iter().collect(),
            None,
        )
        .expect("valid")
    };
    let route_of = |c: &Config, name: &str| {
        Arc::clone(
            &c.compiled.routes[&names::attached_route("ns", "a", "HTTPRoute", "ns", name)].routes,
        )
    };
    let host_of = |c: &Config, pattern: &str| {
        let hosts = c.compiled.hosts.values().next().expect("one RouteConfig");
        Arc::clone(&hosts.hosts[pattern].host)
    };
    let same_host = |a: &Config, b: &Config, pattern: &str| {
        let socket = SocketAddr::from(([127, 0, 0, 1], 80));
        let served = b.listeners[&socket]
            .router
            .hosts
            .get(pattern)
            .expect("served");
        assert!(Arc::ptr_eq(served, &host_of(b, pattern)));
        Arc::ptr_eq(&host_of(a, pattern), &host_of(b, pattern))
    };
    let first = compile_next(None, world(8080, "/"));
    // Only the direct route changes: the forwarding route and the cluster are reused.
    let second = compile_next(Some(&first), world(8080, "/other"));
    assert!(Arc::ptr_eq(
        &route_of(&first, "fwd"),
        &route_of(&second, "fwd")
    ));
    assert!(!Arc::ptr_eq(
        &route_of(&first, "direct"),
        &route_of(&second, "direct")
    ));
    assert!(same_host(&first, &second, "fwd.example"));
    assert!(!same_host(&first, &second, "direct.example"));
    // The endpoints change: the cluster and the route using it are compiled again.
    let third = compile_next(Some(&second), world(9090, "/other"));
    assert!(!Arc::ptr_eq(
        &route_of(&second, "fwd"),
        &route_of(&third, "fwd")
    ));
    assert!(Arc::ptr_eq(
        &route_of(&second, "direct"),
        &route_of(&third, "direct")
    ));
    assert!(!same_host(&second, &third, "fwd.example"));
    assert!(same_host(&second, &third, "direct.example"));
    let socket = &third.listeners[&SocketAddr::from(([127, 0, 0, 1], 80))];
    let req = http::Request::get("/").body(()).expect("request");
    let route = socket.router.route("fwd.example", &req).expect("routed");
    let Action::Forward(backends) = &route.action else {
        panic!("forward expected")
    };
    let Some(Target::Cluster(cluster)) = backends.pick().map(|b| &b.target) else {
        panic!("a cluster")
    };
    assert_eq!(
        cluster.endpoints[0].addr.port(),
        9090,
        "the new endpoints are used"
    );
}
