//! The delta path against the full compile: over random sequences of route and endpoint changes
//! (wildcard and exact hostnames, two RouteConfigs on one socket, routes moving between
//! listeners, Clusters removed under their routes), both must accept and reject the same
//! responses and serve the same virtual hosts with the same routes and endpoints.

use super::super::tests::{listener, route_config_with};
use super::*;
use crate::router::{Action, Target};
use serval_common::names;

const HOSTNAMES: &[&str] = &[
    "x.example.com",
    "y.example.com",
    "*.example.com",
    "a.x.example.com",
    "*.x.example.com",
    "other.org",
    "*",
];

/// (gateway, its listeners as (section, hostname)).
const GATEWAYS: &[(&str, &[(&str, &str)])] = &[
    ("a", &[("any", "*"), ("ex", "*.example.com")]),
    ("b", &[("any", "*"), ("x", "x.example.com")]),
    ("c", &[("any", "*")]),
];

fn cluster_name(i: usize) -> String {
    names::cluster("ns", &format!("svc{i}"), 80)
}

fn cluster(i: usize, port: u32) -> [Resource; 2] {
    let assignment = format!("endpoints/ns/svc{i}/80");
    [
        Resource::Cluster(pb::Cluster {
            name: cluster_name(i),
            load_assignment_name: assignment.clone(),
            ..Default::default()
        }),
        Resource::ClusterLoadAssignment(pb::ClusterLoadAssignment {
            name: assignment,
            cluster_name: cluster_name(i),
            endpoints: vec![pb::Endpoint {
                address: Some(pb::SocketAddress {
                    ip: "127.0.0.1".into(),
                    port,
                }),
                ..Default::default()
            }],
        }),
    ]
}

/// A random AttachedRoute `r{i}`: one or two attachments, one to three routes (forwarding to a
/// Cluster that may not exist, or answering directly), now and then a listener that does not
/// exist.
fn random_route(rng: &mut fastrand::Rng, i: usize) -> Resource {
    let name = format!("r{i}");
    let attachments = (0..rng.usize(1..=2))
        .map(|_| {
            let (gw, sections) = GATEWAYS[rng.usize(..GATEWAYS.len())];
            let section = if rng.usize(..40) == 0 {
                "missing"
            } else {
                sections[rng.usize(..sections.len())].0
            };
            pb::RouteAttachment {
                route_config: names::route_config("ns", gw, 80),
                section_name: section.into(),
                hostnames: (0..rng.usize(1..=2))
                    .map(|_| HOSTNAMES[rng.usize(..HOSTNAMES.len())].to_owned())
                    .collect(),
            }
        })
        .collect();
    let routes = (0..rng.usize(1..=3))
        .map(|r| {
            let path = ["/", "/a", "/a/b", "/b"][rng.usize(..4)];
            let action = if rng.bool() {
                pb::route::Action::Route(pb::RouteAction {
                    backends: vec![pb::WeightedBackend {
                        weight: 1,
                        target: Some(pb::weighted_backend::Target::Cluster(cluster_name(
                            rng.usize(..3),
                        ))),
                        filters: None,
                    }],
                })
            } else {
                pb::route::Action::DirectResponse(pb::DirectResponse {
                    status: 200 + rng.u32(..5),
                    body: String::new(),
                })
            };
            pb::Route {
                name: format!("{name}-{r}"),
                r#match: Some(pb::RouteMatch {
                    path: Some(pb::PathMatch {
                        kind: Some(pb::path_match::Kind::Prefix(path.into())),
                    }),
                    ..Default::default()
                }),
                action: Some(action),
                precedence: Some(pb::Precedence {
                    path_kind: 2,
                    path_length: path.len() as u32,
                    namespace: "ns".into(),
                    route: name.clone(),
                    rule: r as u32,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    Resource::AttachedRoute(pb::AttachedRoute {
        name: names::attached_route("ns", "gw", "HTTPRoute", "ns", &name),
        routes,
        attachments,
    })
}

/// Listeners a and b share 127.0.0.1:80, c is alone on :81; three Clusters.
fn base() -> BTreeMap<String, Resource> {
    let mut out = BTreeMap::new();
    for (i, (gw, sections)) in GATEWAYS.iter().enumerate() {
        let port = if i == 2 { 81 } else { 80 };
        for r in [
            listener(gw, "127.0.0.1", port),
            route_config_with(gw, sections),
        ] {
            out.insert(r.name().to_owned(), r);
        }
    }
    for i in 0..3 {
        for r in cluster(i, 9000 + i as u32) {
            out.insert(r.name().to_owned(), r);
        }
    }
    out
}

fn mutate(
    rng: &mut fastrand::Rng,
    world: &BTreeMap<String, Resource>,
) -> BTreeMap<String, Resource> {
    let mut next = world.clone();
    for _ in 0..rng.usize(1..=3) {
        match rng.usize(..10) {
            0..=5 => {
                let i = rng.usize(..12);
                let r = random_route(rng, i);
                next.insert(r.name().to_owned(), r);
            }
            6 => {
                let name = names::attached_route(
                    "ns",
                    "gw",
                    "HTTPRoute",
                    "ns",
                    &format!("r{}", rng.usize(..12)),
                );
                next.remove(&name);
            }
            7 | 8 => {
                let i = rng.usize(..3);
                for r in cluster(i, 9000 + rng.u32(..100)) {
                    next.insert(r.name().to_owned(), r);
                }
            }
            _ => {
                let i = rng.usize(..3);
                for r in cluster(i, 0) {
                    next.remove(r.name());
                }
            }
        }
    }
    next
}

fn changes(before: &BTreeMap<String, Resource>, after: &BTreeMap<String, Resource>) -> Changes {
    Changes {
        upserts: after
            .iter()
            .filter(|(n, r)| before.get(*n) != Some(r))
            .map(|(n, r)| (n.clone(), Arc::new(r.clone()), r.version().to_string()))
            .collect(),
        removed: before
            .keys()
            .filter(|n| !after.contains_key(*n))
            .cloned()
            .collect(),
    }
}

fn full(world: &BTreeMap<String, Resource>) -> Result<Config, super::super::CompileError> {
    super::super::compile_with(
        None,
        "v".into(),
        world
            .iter()
            .map(|(n, r)| (n.clone(), Arc::new(r.clone())))
            .collect(),
        world
            .iter()
            .map(|(n, r)| (n.clone(), r.version().to_string()))
            .collect(),
        None,
    )
}

/// What each socket serves: every host pattern with its virtual host's routes, each with where
/// it sends requests (Cluster and endpoint port, or the direct status).
type Served = BTreeMap<SocketAddr, Vec<(String, Vec<(String, String)>)>>;

fn served(config: &Config) -> Served {
    config
        .listeners
        .iter()
        .map(|(addr, l)| {
            let hosts = l
                .router
                .hosts
                .entries()
                .into_iter()
                .map(|(pattern, host)| {
                    let routes = host
                        .routes
                        .iter()
                        .map(|r| {
                            let action = match &r.action {
                                Action::Forward(b) => b
                                    .cumulative
                                    .iter()
                                    .map(|(_, b)| match &b.target {
                                        Target::Cluster(c) => {
                                            format!("{}:{}", c.name, c.endpoints[0].addr.port())
                                        }
                                        other => format!("{other:?}"),
                                    })
                                    .collect::<Vec<_>>()
                                    .join(","),
                                Action::Direct(d) => d.status.to_string(),
                                Action::Redirect(_) => "redirect".into(),
                            };
                            (r.name.clone(), action)
                        })
                        .collect();
                    assert_eq!(host.name, pattern, "a host serves its own pattern");
                    (pattern, routes)
                })
                .collect();
            (*addr, hosts)
        })
        .collect()
}

#[test]
fn delta_equals_full_compile_over_random_changes() {
    let mut accepted = 0;
    let mut rejected = 0;
    for seed in 0..12 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut world = base();
        let mut current = full(&world).expect("the base compiles");
        for step in 0..150 {
            let next = mutate(&mut rng, &world);
            let delta = changes(&world, &next);
            let by_delta = apply(&current, "v".into(), &delta)
                .expect("routes and endpoints only: the delta path applies");
            match (full(&next), by_delta) {
                (Ok(want), Ok(got)) => {
                    assert_eq!(served(&got), served(&want), "seed {seed} step {step}");
                    current = got;
                    world = next;
                    accepted += 1;
                }
                (Err(_), Err(_)) => rejected += 1,
                (want, got) => panic!(
                    "seed {seed} step {step}: full compile {:?}, delta {:?}",
                    want.err(),
                    got.err()
                ),
            }
        }
    }
    assert!(
        accepted > 600 && rejected > 100,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn a_route_change_rebuilds_its_hosts_only_and_shares_the_rest() {
    let mut world = base();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..12 {
        let mut r = random_route(&mut rng, i);
        if let Resource::AttachedRoute(ar) = &mut r {
            ar.attachments = vec![pb::RouteAttachment {
                route_config: names::route_config("ns", "c", 80),
                section_name: "any".into(),
                hostnames: vec![format!("h{i}.example.org")],
            }];
            for route in &mut ar.routes {
                route.action = Some(pb::route::Action::DirectResponse(pb::DirectResponse {
                    status: 200,
                    body: String::new(),
                }));
            }
        }
        world.insert(r.name().to_owned(), r);
    }
    let before = full(&world).expect("compiles");
    let mut next = world.clone();
    let name = names::attached_route("ns", "gw", "HTTPRoute", "ns", "r3");
    if let Some(Resource::AttachedRoute(ar)) = next.get_mut(&name) {
        ar.routes[0].action = Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 204,
            body: String::new(),
        }));
    }
    let after = apply(&before, "v2".into(), &changes(&world, &next))
        .expect("delta path")
        .expect("accepted");
    assert_eq!(served(&after), served(&full(&next).expect("compiles")));
    let socket = SocketAddr::from(([127, 0, 0, 1], 81));
    let host =
        |c: &Config, h: &str| Arc::clone(c.listeners[&socket].router.hosts.get(h).expect("served"));
    assert!(!Arc::ptr_eq(
        &host(&before, "h3.example.org"),
        &host(&after, "h3.example.org")
    ));
    for i in (0..12).filter(|i| *i != 3) {
        let h = format!("h{i}.example.org");
        assert!(
            Arc::ptr_eq(&host(&before, &h), &host(&after, &h)),
            "{h} is shared"
        );
    }
    assert_eq!(after.version, "v2");
}

#[test]
fn listener_route_config_and_l4_changes_take_the_full_path() {
    let world = base();
    let current = full(&world).expect("compiles");
    let mut next = world.clone();
    let rc = route_config_with("a", &[("any", "*")]);
    next.insert(rc.name().to_owned(), rc);
    assert!(apply(&current, "v".into(), &changes(&world, &next)).is_none());
    let mut next = world.clone();
    next.remove(&names::listener("ns", "c", 80));
    assert!(apply(&current, "v".into(), &changes(&world, &next)).is_none());
}
