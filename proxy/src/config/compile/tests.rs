//! Tests of compiling resources into a runtime Config: missing references, invalid fields, socket merging.

use super::*;
use serval_common::names;

fn listener(gw: &str, ip: &str, port: u32) -> Resource {
    Resource::Listener(pb::Listener {
        name: names::listener("ns", gw, 80),
        address: Some(pb::SocketAddress {
            ip: ip.into(),
            port,
        }),
        gateway: format!("ns/{gw}"),
        section_names: vec!["http".into()],
        protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
            route_config_name: names::route_config("ns", gw, 80),
        })),
    })
}

fn route_config(gw: &str, domain: &str, route: pb::Route) -> Resource {
    Resource::RouteConfig(pb::RouteConfig {
        name: names::route_config("ns", gw, 80),
        virtual_hosts: vec![pb::VirtualHost {
            name: domain.into(),
            domains: vec![domain.into()],
            routes: vec![route],
        }],
    })
}

fn direct_route(name: &str, path: pb::path_match::Kind) -> pb::Route {
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

fn set(resources: Vec<Resource>) -> BTreeMap<String, Resource> {
    resources
        .into_iter()
        .map(|r| (r.name().to_owned(), r))
        .collect()
}

fn prefix(p: &str) -> pb::path_match::Kind {
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
    let resources = set(vec![
        listener("a", "127.0.0.1", 80),
        route_config(
            "a",
            "*",
            direct_route("r", pb::path_match::Kind::Regex("(".into())),
        ),
    ]);
    let err = compile("v".into(), resources, BTreeMap::new(), None).expect_err("bad regex");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "routeconfig/ns/a/80: virtual_hosts[0].routes[0].match.path.regex: invalid regular expression"
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
    let resources = set(vec![
        listener("a", "127.0.10.1", 80),
        listener("b", "127.0.10.2", 80),
        route_config("a", "shared.example", direct_route("from-a", prefix("/"))),
        route_config("b", "shared.example", direct_route("from-b", prefix("/"))),
    ]);
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
    let resources = set(vec![
        listener("a", "127.0.0.1", 80),
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
    ]);
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
