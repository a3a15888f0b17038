//! The Kubernetes manifests in `manifests/` (installed with `kubectl apply -f manifests/`, examples
//! in `manifests/examples/`) checked against the code they deploy:
//!
//! - every document decodes into its typed struct (k8s-openapi, gateway-api) and encodes back to
//!   the same JSON, so a misspelled or misplaced field, which a decoder drops without a word, fails;
//! - the container command lines parse with the binaries' own `Args`, as the kubelet would run
//!   them (`$(VAR)` expanded, the downward-API environment the code reads through clap `env`);
//! - the RBAC rules grant exactly [`access::required`], no more and no less, and only to the control
//!   plane's ServiceAccount;
//! - Deployments are hardened and probed on their admin ports; the proxy's PodDisruptionBudget,
//!   HorizontalPodAutoscaler and LoadBalancer Service point at it; proxies reach the control plane
//!   through its Service; the GatewayClass names the controller Serval answers to.
//!
//! No cluster is needed: this reads files and calls parsers.

use clap::{CommandFactory, Parser};
use gateway_api::{
    experimental::httproutes::HttpRoute, gatewayclasses::GatewayClass, gateways::Gateway,
};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Container, Namespace, PodSpec, Probe, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::{
            ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
        },
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Resource, ResourceExt};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use serval_control_plane::{
    access::{self, Grant, Scope},
    args::{Args, Command},
    kubernetes,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Where Serval runs.
const NAMESPACE: &str = "serval-system";
/// Name of the control plane's Deployment, Service, ServiceAccount and roles.
const CONTROL_PLANE: &str = "serval-control-plane";
/// Name of the proxy's Deployment, Service, ServiceAccount, PDB and HPA.
const PROXY: &str = "serval-proxy";

// === loading ===

/// Every document of every YAML file under `manifests/`, decoded.
#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    disruption_budgets: Vec<PodDisruptionBudget>,
    autoscalers: Vec<HorizontalPodAutoscaler>,
    gateway_classes: Vec<GatewayClass>,
    gateways: Vec<Gateway>,
    http_routes: Vec<HttpRoute>,
}

impl Manifests {
    /// Reads and decodes everything; fails listing every document that does not decode exactly.
    fn load() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let mut manifests = Self::default();
        let mut problems = Vec::new();
        for path in yaml_files(&root) {
            let file = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let text = std::fs::read_to_string(&path).expect("manifest file is readable");
            let documents: Vec<Value> = match serde_saphyr::from_multiple(&text) {
                Ok(documents) => documents,
                Err(e) => {
                    problems.push(format!("{file}: not YAML: {e}"));
                    continue;
                }
            };
            for (index, document) in documents.iter().enumerate() {
                if let Err(e) = manifests.add(document) {
                    let what = describe(document);
                    problems.push(format!("{file} document {index} ({what}): {e}"));
                }
            }
        }
        assert!(problems.is_empty(), "manifests:\n{}", problems.join("\n"));
        assert!(
            !manifests.deployments.is_empty(),
            "no Deployments under {}",
            root.display()
        );
        manifests
    }

    /// Decodes one document by `(apiVersion, kind)`; an unknown pair is an error.
    fn add(&mut self, document: &Value) -> Result<(), String> {
        const RBAC: &str = "rbac.authorization.k8s.io/v1";
        const GATEWAY: &str = "gateway.networking.k8s.io/v1";
        let api_version = document["apiVersion"].as_str().unwrap_or_default();
        let kind = document["kind"].as_str().unwrap_or_default();
        match (api_version, kind) {
            ("v1", "Namespace") => self.namespaces.push(exact(document)?),
            ("v1", "ServiceAccount") => self.service_accounts.push(exact(document)?),
            ("v1", "Service") => self.services.push(exact(document)?),
            (RBAC, "ClusterRole") => self.cluster_roles.push(exact(document)?),
            (RBAC, "ClusterRoleBinding") => self.cluster_role_bindings.push(exact(document)?),
            (RBAC, "Role") => self.roles.push(exact(document)?),
            (RBAC, "RoleBinding") => self.role_bindings.push(exact(document)?),
            ("apps/v1", "Deployment") => self.deployments.push(exact(document)?),
            ("policy/v1", "PodDisruptionBudget") => self.disruption_budgets.push(exact(document)?),
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                self.autoscalers.push(exact(document)?)
            }
            // The same gateway-api types the control plane decodes (`sources::objects`).
            (GATEWAY, "GatewayClass") => self.gateway_classes.push(exact(document)?),
            (GATEWAY, "Gateway") => self.gateways.push(exact(document)?),
            (GATEWAY, "HTTPRoute") => self.http_routes.push(exact(document)?),
            _ => return Err(format!("unknown apiVersion/kind {api_version:?}/{kind:?}")),
        }
        Ok(())
    }

    fn deployment(&self, name: &str) -> &Deployment {
        named(&self.deployments, Some(NAMESPACE), name)
    }
}

/// The object `namespace/name` (`None`: cluster-scoped) among `objects`.
fn named<'a, T: Resource<DynamicType = ()>>(
    objects: &'a [T],
    namespace: Option<&str>,
    name: &str,
) -> &'a T {
    objects
        .iter()
        .find(|o| {
            o.meta().name.as_deref() == Some(name) && o.meta().namespace.as_deref() == namespace
        })
        .unwrap_or_else(|| panic!("no {} {namespace:?}/{name} in the manifests", T::kind(&())))
}

/// `*.yaml` and `*.yml` files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry is readable").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `Kind namespace/name` of a document, for messages.
fn describe(document: &Value) -> String {
    let kind = document["kind"].as_str().unwrap_or("?");
    let name = document["metadata"]["name"].as_str().unwrap_or("?");
    match document["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Decodes `document` as `T` and requires that encoding it again gives the same JSON: a field the
/// type does not know (misspelled, misplaced) would otherwise vanish without an error.
fn exact<T: Serialize + DeserializeOwned>(document: &Value) -> Result<T, String> {
    let typed: T =
        serde_json::from_value(document.clone()).map_err(|e| format!("does not decode: {e}"))?;
    let encoded = serde_json::to_value(&typed).map_err(|e| format!("does not encode: {e}"))?;
    let mut diffs = Vec::new();
    differences("", document, &encoded, &mut diffs);
    if diffs.is_empty() {
        Ok(typed)
    } else {
        Err(format!("changes when decoded:\n  {}", diffs.join("\n  ")))
    }
}

/// Where `decoded` differs from `original`, as `path: what` lines.
fn differences(path: &str, original: &Value, decoded: &Value, out: &mut Vec<String>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (original, decoded) {
        (Value::Object(written), Value::Object(read)) => {
            for (key, value) in written {
                match read.get(key) {
                    Some(other) => differences(&at(key), value, other, out),
                    None => out.push(format!("{}: dropped (unknown or misplaced field)", at(key))),
                }
            }
            for (key, value) in read.iter().filter(|(key, _)| !written.contains_key(*key)) {
                out.push(format!("{}: added by the decoder: {value}", at(key)));
            }
        }
        (Value::Array(written), Value::Array(read)) if written.len() == read.len() => {
            for (index, (value, other)) in written.iter().zip(read).enumerate() {
                differences(&format!("{path}[{index}]"), value, other, out);
            }
        }
        _ if original == decoded => {}
        _ => out.push(format!("{path}: written {original}, decoded as {decoded}")),
    }
}

// === pods and containers ===

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    let spec = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref());
    spec.expect("Deployment has a pod template spec")
}

fn pod_labels(deployment: &Deployment) -> &BTreeMap<String, String> {
    let template = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref());
    template
        .and_then(|meta| meta.labels.as_ref())
        .expect("pod template has labels")
}

/// The one container of a Serval pod.
fn container(deployment: &Deployment) -> &Container {
    let containers = &pod_spec(deployment).containers;
    assert_eq!(
        containers.len(),
        1,
        "{}: one container",
        deployment.name_any()
    );
    &containers[0]
}

fn args(container: &Container) -> &[String] {
    container.args.as_deref().unwrap_or_default()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|a| a == flag);
    let value = at.and_then(|at| args.get(at + 1));
    value.unwrap_or_else(|| panic!("no {flag} VALUE in {args:?}"))
}

/// The port of a `--<name>-addr IP:PORT` flag.
fn addr_port(container: &Container, name: &str) -> i32 {
    let addr: SocketAddr = flag(args(container), name)
        .parse()
        .expect("address is IP:PORT");
    i32::from(addr.port())
}

/// A port as a number, resolving a name through the container's ports.
fn port_number(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => {
            let mut ports = container.ports.iter().flatten();
            let port = ports.find(|p| p.name.as_deref() == Some(name.as_str()));
            port.unwrap_or_else(|| panic!("{}: no port named {name}", container.name))
                .container_port
        }
    }
}

/// Path and port of an HTTP probe.
fn http_probe(container: &Container, probe: Option<&Probe>) -> (String, i32) {
    let get = probe.and_then(|p| p.http_get.as_ref());
    let get = get.unwrap_or_else(|| panic!("{}: an HTTP probe is missing", container.name));
    (
        get.path.clone().unwrap_or_default(),
        port_number(container, &get.port),
    )
}

/// Whether a non-empty `selector` matches `labels`.
fn selects(selector: Option<&BTreeMap<String, String>>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

// === command lines ===

/// What a container runs, as the binary sees it.
struct CommandLine {
    /// The binary name, the args with `$(VAR)` expanded, then the flags clap reads from the
    /// environment (`#[arg(env)]`), given explicitly because tests do not set environment variables.
    argv: Vec<String>,
    /// Variables of the container's environment that neither the args nor clap read.
    unused_env: Vec<String>,
}

impl CommandLine {
    fn of(deployment: &Deployment, binary: &str, mut command: clap::Command) -> Self {
        let container = container(deployment);
        assert!(
            container.command.is_none(),
            "{binary}: the image's ENTRYPOINT runs, args only"
        );
        let env = pod_env(deployment, container);
        let mut used = BTreeSet::new();
        let mut argv = vec![binary.to_owned()];
        argv.extend(
            args(container)
                .iter()
                .map(|arg| expand(arg, &env, &mut used)),
        );

        command.build();
        let subcommand = args(container)
            .first()
            .and_then(|name| command.find_subcommand(name));
        let options = command
            .get_arguments()
            .chain(subcommand.into_iter().flat_map(|s| s.get_arguments()));
        for option in options.filter(|o| o.get_action().takes_values()) {
            let var = option.get_env().and_then(|v| v.to_str());
            let (Some(var), Some(long)) = (var, option.get_long()) else {
                continue;
            };
            if let Some(value) = env.get(var) {
                argv.extend([format!("--{long}"), value.clone()]);
                used.insert(var.to_owned());
            }
        }
        let unused_env = env.into_keys().filter(|k| !used.contains(k)).collect();
        Self { argv, unused_env }
    }
}

/// The container's environment as the kubelet sets it: literal values and the downward-API fields
/// `metadata.name` (a sample pod name) and `metadata.namespace`.
fn pod_env(deployment: &Deployment, container: &Container) -> BTreeMap<String, String> {
    let pod_name = format!("{}-5d8f7c9b4-x2x7q", deployment.name_any());
    let namespace = deployment.namespace().unwrap_or_default();
    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let field = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref());
        let value = match (&var.value, field.map(|f| f.field_path.as_str())) {
            (Some(value), None) => value.clone(),
            (None, Some("metadata.name")) => pod_name.clone(),
            (None, Some("metadata.namespace")) => namespace.clone(),
            _ => panic!(
                "env {}: only values and metadata.name/namespace are modelled",
                var.name
            ),
        };
        env.insert(var.name.clone(), value);
    }
    env
}

/// Expands `$(VAR)` as the kubelet does; a reference to an undefined variable fails (the kubelet
/// would pass it on verbatim).
fn expand(arg: &str, env: &BTreeMap<String, String>, used: &mut BTreeSet<String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("$(") {
        let end = rest[start..].find(')').map(|end| start + end);
        let end = end.unwrap_or_else(|| panic!("unclosed $( in {arg:?}"));
        let var = &rest[start + 2..end];
        let value = env.get(var);
        let value = value.unwrap_or_else(|| panic!("{arg:?}: the container defines no {var}"));
        out.push_str(&rest[..start]);
        out.push_str(value);
        used.insert(var.to_owned());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

// === RBAC ===

/// `apiGroups × resources × verbs` of `rules`, at `scope`.
fn grants(rules: Option<&Vec<PolicyRule>>, scope: Scope, origin: &str) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules.into_iter().flatten() {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{origin}: resourceNames and nonResourceURLs are not part of access::required()"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let (group, resource, verb) = (group.clone(), resource.clone(), verb.clone());
                    grants.insert(Grant {
                        scope,
                        group,
                        resource,
                        verb,
                    });
                }
            }
        }
    }
    grants
}

fn show(grants: &BTreeSet<&Grant>) -> String {
    let line = |g: &&Grant| {
        let group = if g.group.is_empty() { "core" } else { &g.group };
        format!("  {:?} {group}/{} {}", g.scope, g.resource, g.verb)
    };
    let lines: Vec<String> = grants.iter().map(line).collect();
    if lines.is_empty() {
        "  (none)".to_owned()
    } else {
        lines.join("\n")
    }
}

/// A RoleBinding or ClusterRoleBinding, as the checks read it.
struct Binding<'a> {
    origin: String,
    namespace: Option<String>,
    role_ref: &'a RoleRef,
    subjects: &'a [Subject],
}

impl Manifests {
    fn bindings(&self) -> Vec<Binding<'_>> {
        let cluster = self.cluster_role_bindings.iter().map(|b| Binding {
            origin: format!("ClusterRoleBinding {}", b.name_any()),
            namespace: b.namespace(),
            role_ref: &b.role_ref,
            subjects: b.subjects.as_deref().unwrap_or_default(),
        });
        let namespaced = self.role_bindings.iter().map(|b| Binding {
            origin: format!("RoleBinding {:?}/{}", b.namespace(), b.name_any()),
            namespace: b.namespace(),
            role_ref: &b.role_ref,
            subjects: b.subjects.as_deref().unwrap_or_default(),
        });
        cluster.chain(namespaced).collect()
    }
}

// === tests ===

#[test]
fn every_document_decodes_without_losing_fields() {
    let manifests = Manifests::load();
    named(&manifests.namespaces, None, NAMESPACE);
}

#[test]
fn control_plane_command_line_parses_and_validates() {
    let manifests = Manifests::load();
    let deployment = manifests.deployment(CONTROL_PLANE);
    let line = CommandLine::of(deployment, CONTROL_PLANE, Args::command());
    let args = Args::try_parse_from(&line.argv);
    let args = args.unwrap_or_else(|e| panic!("{:?} does not parse:\n{e}", line.argv));
    let Command::Kubernetes(args) = args.command else {
        panic!("the control plane runs `kubernetes`");
    };
    let config = kubernetes::Config::try_from(args).expect("control plane args are valid");
    assert!(
        line.unused_env.is_empty(),
        "env never read: {:?}",
        line.unused_env
    );

    // The Lease lives where the Role grants it, and the identity is the pod's name.
    assert_eq!(
        config.lease.namespace, NAMESPACE,
        "Lease namespace (POD_NAMESPACE)"
    );
    let identity = &config.lease.identity;
    assert!(
        identity.starts_with(CONTROL_PLANE),
        "identity {identity} is the pod name (POD_NAME)"
    );
    // Gateway addresses come from the proxy's Service.
    let (namespace, name) = config.proxy_service.expect("--proxy-service is set");
    assert_eq!(
        (namespace.as_str(), name.as_str()),
        (NAMESPACE, PROXY),
        "--proxy-service"
    );
}

#[test]
fn proxy_command_line_parses_and_validates() {
    let manifests = Manifests::load();
    let command = serval_proxy::args::Args::command();
    let line = CommandLine::of(manifests.deployment(PROXY), PROXY, command);
    let args = serval_proxy::args::Args::try_parse_from(&line.argv);
    let args = args.unwrap_or_else(|e| panic!("{:?} does not parse:\n{e}", line.argv));
    serval_proxy::ProxyConfig::try_from(args).expect("proxy args are valid");
    assert!(
        line.unused_env.is_empty(),
        "env the proxy never reads: {:?}",
        line.unused_env
    );
}

#[test]
fn rbac_grants_exactly_what_the_control_plane_needs() {
    let manifests = Manifests::load();
    let mut granted = BTreeSet::new();
    for role in &manifests.cluster_roles {
        let origin = format!("ClusterRole {}", role.name_any());
        assert!(role.aggregation_rule.is_none(), "{origin}: no aggregation");
        granted.extend(grants(role.rules.as_ref(), Scope::Cluster, &origin));
    }
    for role in &manifests.roles {
        let origin = format!("Role {:?}/{}", role.namespace(), role.name_any());
        assert_eq!(
            role.namespace().as_deref(),
            Some(NAMESPACE),
            "{origin}: own namespace only"
        );
        granted.extend(grants(role.rules.as_ref(), Scope::OwnNamespace, &origin));
    }
    let required = access::required();
    let missing: BTreeSet<&Grant> = required.difference(&granted).collect();
    let extra: BTreeSet<&Grant> = granted.difference(&required).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "RBAC differs from access::required()\nmissing:\n{}\nextra:\n{}",
        show(&missing),
        show(&extra)
    );
}

#[test]
fn roles_are_bound_to_the_control_plane_only() {
    let manifests = Manifests::load();
    let control_plane = Subject {
        kind: "ServiceAccount".to_owned(),
        name: CONTROL_PLANE.to_owned(),
        namespace: Some(NAMESPACE.to_owned()),
        api_group: None,
    };
    let mut roles: BTreeSet<(&str, String)> = BTreeSet::new();
    roles.extend(
        manifests
            .cluster_roles
            .iter()
            .map(|r| ("ClusterRole", r.name_any())),
    );
    roles.extend(manifests.roles.iter().map(|r| ("Role", r.name_any())));
    let mut bound = BTreeSet::new();
    for binding in manifests.bindings() {
        let origin = &binding.origin;
        let (kind, name) = (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.clone(),
        );
        let role_group = binding.role_ref.api_group.as_deref();
        assert_eq!(
            role_group,
            Some("rbac.authorization.k8s.io"),
            "{origin}: roleRef.apiGroup"
        );
        if kind == "Role" {
            assert_eq!(
                binding.namespace.as_deref(),
                Some(NAMESPACE),
                "{origin}: own namespace"
            );
        }
        assert!(
            roles.contains(&(kind, name.clone())),
            "{origin}: no {kind} {name} in the manifests"
        );
        let proxy = binding.subjects.iter().any(|s| s.name == PROXY);
        assert!(!proxy, "{origin}: the proxy needs no API access");
        assert_eq!(
            binding.subjects,
            std::slice::from_ref(&control_plane),
            "{origin}: control plane only"
        );
        bound.insert((kind, name));
    }
    let unbound: Vec<_> = roles
        .iter()
        .filter(|r| !bound.contains(&(r.0, r.1.clone())))
        .collect();
    assert!(unbound.is_empty(), "roles bound to nobody: {unbound:?}");
}

#[test]
fn pods_run_as_their_service_accounts() {
    let manifests = Manifests::load();
    for name in [CONTROL_PLANE, PROXY] {
        named(&manifests.service_accounts, Some(NAMESPACE), name);
        let account = pod_spec(manifests.deployment(name))
            .service_account_name
            .as_deref();
        assert_eq!(account, Some(name), "{name} runs as its own ServiceAccount");
    }
    let proxy = named(&manifests.service_accounts, Some(NAMESPACE), PROXY);
    assert_eq!(
        proxy.automount_service_account_token,
        Some(false),
        "the proxy gets no API token"
    );
}

/// What is missing from the hardening of a Deployment's containers.
fn hardening_problems(deployment: &Deployment) -> Vec<String> {
    let pod = pod_spec(deployment);
    let pod_security = pod.security_context.as_ref();
    let mut problems = Vec::new();
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let security = c.security_context.as_ref();
        let non_root = security.and_then(|s| s.run_as_non_root);
        let non_root = non_root.or(pod_security.and_then(|s| s.run_as_non_root));
        let user = security.and_then(|s| s.run_as_user);
        let user = user.or(pod_security.and_then(|s| s.run_as_user));
        let seccomp = security.and_then(|s| s.seccomp_profile.as_ref());
        let seccomp = seccomp.or(pod_security.and_then(|s| s.seccomp_profile.as_ref()));
        let capabilities = security.and_then(|s| s.capabilities.as_ref());
        let drop = capabilities
            .and_then(|c| c.drop.as_deref())
            .unwrap_or_default();
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let image = c.image.as_deref().unwrap_or_default();
        let checks = [
            (non_root == Some(true), "runAsNonRoot: true"),
            (user.is_some_and(|u| u != 0), "a non-zero runAsUser"),
            (
                security.and_then(|s| s.read_only_root_filesystem) == Some(true),
                "readOnlyRootFilesystem: true",
            ),
            (
                security.and_then(|s| s.allow_privilege_escalation) == Some(false),
                "allowPrivilegeEscalation: false",
            ),
            (drop.iter().any(|c| c == "ALL"), "capabilities.drop: [ALL]"),
            (
                capabilities.is_none_or(|c| c.add.is_none()),
                "no added capabilities",
            ),
            (
                seccomp.is_some_and(|s| s.type_ == "RuntimeDefault"),
                "seccompProfile RuntimeDefault",
            ),
            (
                requests.is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")),
                "cpu and memory requests",
            ),
            (
                limits.is_some_and(|l| l.contains_key("memory")),
                "a memory limit",
            ),
            (
                image.contains(':') && !image.ends_with(":latest"),
                "an image pinned to a version",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                problems.push(format!(
                    "{}/{}: wants {what}",
                    deployment.name_any(),
                    c.name
                ));
            }
        }
    }
    problems
}

#[test]
fn deployments_are_hardened() {
    let manifests = Manifests::load();
    let problems: Vec<String> = manifests
        .deployments
        .iter()
        .flat_map(hardening_problems)
        .collect();
    assert!(
        problems.is_empty(),
        "not hardened:\n{}",
        problems.join("\n")
    );
}

#[test]
fn serval_pods_are_probed_on_their_admin_port() {
    let manifests = Manifests::load();
    for name in [CONTROL_PLANE, PROXY] {
        let c = container(manifests.deployment(name));
        let admin = addr_port(c, "--admin-addr");
        let readiness = http_probe(c, c.readiness_probe.as_ref());
        let liveness = http_probe(c, c.liveness_probe.as_ref());
        assert_eq!(
            readiness,
            ("/readyz".to_owned(), admin),
            "{name}: readiness probe"
        );
        assert_eq!(
            liveness,
            ("/healthz".to_owned(), admin),
            "{name}: liveness probe"
        );
    }
}

#[test]
fn control_plane_runs_two_replicas_with_its_identity_from_the_downward_api() {
    let manifests = Manifests::load();
    let deployment = manifests.deployment(CONTROL_PLANE);
    assert_eq!(
        deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(2),
        "replicas"
    );
    let env = container(deployment).env.as_deref().unwrap_or_default();
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let from = env.iter().find(|e| e.name == var);
        let from = from.and_then(|e| e.value_from.as_ref()?.field_ref.as_ref());
        assert_eq!(
            from.map(|f| f.field_path.as_str()),
            Some(field),
            "{var} comes from {field}"
        );
    }
}

#[test]
fn proxy_drains_within_its_grace_period() {
    let manifests = Manifests::load();
    let deployment = manifests.deployment(PROXY);
    let c = container(deployment);
    let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
    let pre_stop = pre_stop.and_then(|h| h.sleep.as_ref());
    let pre_stop = pre_stop
        .expect("a preStop sleep (the image has no shell)")
        .seconds;
    let drain: i64 = flag(args(c), "--drain-timeout-secs")
        .parse()
        .expect("drain is seconds");
    let grace = pod_spec(deployment)
        .termination_grace_period_seconds
        .unwrap_or(30);
    assert!(pre_stop > 0, "preStop sleeps");
    assert!(
        pre_stop + drain < grace,
        "preStop {pre_stop}s + drain {drain}s < grace {grace}s"
    );
}

#[test]
fn disruption_budget_and_autoscaler_target_the_proxy() {
    let manifests = Manifests::load();
    let selector = manifests
        .deployment(PROXY)
        .spec
        .as_ref()
        .map(|s| &s.selector);

    let budget = named(&manifests.disruption_budgets, Some(NAMESPACE), PROXY);
    let spec = budget.spec.as_ref().expect("PDB spec");
    assert_eq!(
        spec.selector.as_ref(),
        selector,
        "the PDB selects the proxy pods"
    );
    assert_eq!(
        spec.min_available,
        Some(IntOrString::Int(1)),
        "PDB minAvailable"
    );

    let spec = &named(&manifests.autoscalers, Some(NAMESPACE), PROXY).spec;
    let target = &spec.scale_target_ref;
    assert_eq!(
        (
            target.api_version.as_deref(),
            target.kind.as_str(),
            target.name.as_str()
        ),
        (Some("apps/v1"), "Deployment", PROXY),
        "the HPA scales the proxy Deployment"
    );
    assert_eq!(
        (spec.min_replicas, spec.max_replicas),
        (Some(2), 10),
        "HPA bounds"
    );
    let mut resources = spec
        .metrics
        .iter()
        .flatten()
        .filter_map(|m| m.resource.as_ref());
    let cpu = resources
        .find(|r| r.name == "cpu")
        .expect("the HPA scales on CPU");
    assert_eq!(cpu.target.average_utilization, Some(70), "HPA CPU target");
}

#[test]
fn proxy_service_is_a_load_balancer_in_front_of_the_gateway_listeners() {
    let manifests = Manifests::load();
    let deployment = manifests.deployment(PROXY);
    let service = named(&manifests.services, Some(NAMESPACE), PROXY);
    let spec = service.spec.as_ref().expect("Service spec");
    assert_eq!(
        spec.type_.as_deref(),
        Some("LoadBalancer"),
        "proxy Service type"
    );
    let selected = selects(spec.selector.as_ref(), pod_labels(deployment));
    assert!(selected, "the proxy Service selects the proxy pods");
    let c = container(deployment);
    let ports = spec.ports.iter().flatten();
    let targets: BTreeSet<i32> = ports
        .filter_map(|p| p.target_port.as_ref())
        .map(|t| port_number(c, t))
        .collect();
    for gateway in &manifests.gateways {
        for listener in &gateway.spec.listeners {
            let (name, port) = (gateway.name_any(), listener.port);
            let exposed = targets.contains(&port);
            assert!(
                exposed,
                "Gateway {name} port {port} is not behind the proxy Service"
            );
        }
    }
}

#[test]
fn proxies_reach_the_control_plane_through_its_service() {
    let manifests = Manifests::load();
    let control_plane = manifests.deployment(CONTROL_PLANE);
    let server = flag(args(container(manifests.deployment(PROXY))), "--xds-server");
    let authority = server
        .strip_prefix("https://")
        .expect("--xds-server is https://HOST:PORT (mutual TLS)");
    let (host, port) = authority.split_once(':').expect("--xds-server has a port");
    let port: i32 = port.parse().expect("--xds-server port is a number");
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let service = host.strip_suffix(".svc").and_then(|h| h.split_once('.'));
    let (name, namespace) = service.expect("--xds-server host is SERVICE.NAMESPACE.svc");

    let service = named(&manifests.services, Some(namespace), name);
    let spec = service.spec.as_ref().expect("Service spec");
    let selected = selects(spec.selector.as_ref(), pod_labels(control_plane));
    assert!(selected, "Service {name} selects the control plane");
    let service_port = spec.ports.iter().flatten().find(|p| p.port == port);
    let service_port = service_port.unwrap_or_else(|| panic!("Service {name} has no port {port}"));
    let target = service_port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port));
    let cp = container(control_plane);
    assert_eq!(
        port_number(cp, &target),
        addr_port(cp, "--xds-addr"),
        "Service {name}:{port} → --xds-addr"
    );
}

#[test]
fn the_delta_protocol_is_mutual_tls_with_the_secrets_certgen_writes() {
    let manifests = Manifests::load();
    for (name, secret) in [
        (CONTROL_PLANE, "serval-xds-server"),
        (PROXY, "serval-xds-proxy"),
    ] {
        let deployment = manifests.deployment(name);
        let c = container(deployment);
        let argv = args(c);
        assert!(
            !argv.iter().any(|a| a == "--xds-plaintext"),
            "{name} runs the delta protocol in plaintext"
        );
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret))
            .unwrap_or_else(|| panic!("{name} mounts no Secret {secret}"));
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("{name} does not mount volume {}", volume.name));
        assert_eq!(mount.read_only, Some(true));
        for (name_of_flag, key) in [
            ("--xds-cert", "tls.crt"),
            ("--xds-key", "tls.key"),
            ("--xds-ca", "ca.crt"),
        ] {
            assert_eq!(
                flag(argv, name_of_flag),
                format!("{}/{key}", mount.mount_path),
                "{name} {name_of_flag}"
            );
        }
    }
    // certgen's default server names cover the address proxies dial.
    let server = flag(args(container(manifests.deployment(PROXY))), "--xds-server");
    let host = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or_default()
        .to_owned();
    let defaults = serval_control_plane::args::CertgenArgs::default_server_names();
    assert!(defaults.contains(&host), "{host} not in {defaults:?}");
}

#[test]
fn gateway_class_names_the_serval_controller() {
    let manifests = Manifests::load();
    let class = named(&manifests.gateway_classes, None, "serval");
    assert_eq!(class.spec.controller_name, serval_common::CONTROLLER_NAME);
    for gateway in &manifests.gateways {
        let class = &gateway.spec.gateway_class_name;
        assert_eq!(class, "serval", "Gateway {} class", gateway.name_any());
    }
    for route in &manifests.http_routes {
        for parent in route.spec.parent_refs.iter().flatten() {
            let namespace = parent.namespace.clone().or(route.namespace());
            named(&manifests.gateways, namespace.as_deref(), &parent.name);
        }
    }
}

/// The example, with the GatewayClass, translated as the control plane would: the Gateway is
/// programmed with the fleet's address and the HTTPRoute is accepted with its references resolved.
#[test]
fn the_example_is_accepted_by_translate() {
    use serval_control_plane::{
        sources::objects,
        translate::{self, GatewayAddress, Inputs, Options},
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut documents = Vec::new();
    for file in ["40-gatewayclass.yaml", "examples/echo.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("manifest file is readable");
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
        documents.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    let parsed = objects::parse_values("manifests", documents).expect("the example decodes");
    let options = Options {
        controller_name: serval_common::CONTROLLER_NAME.to_owned(),
        now: "2026-01-01T00:00:00Z".to_owned(),
        fleet_addresses: vec![GatewayAddress {
            r#type: "IPAddress",
            value: "203.0.113.10".to_owned(),
        }],
    };
    let output = translate::translate(&Inputs::from_objects(parsed.objects), &options);
    let status_of = |kind: &str| {
        output
            .statuses
            .iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} status"))
            .status
            .clone()
    };
    let condition = |holder: &Value, kind: &str| {
        holder["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .map(|c| c["status"].clone())
    };
    let class = status_of("GatewayClass");
    assert_eq!(
        condition(&class, "Accepted"),
        Some(Value::from("True")),
        "{class}"
    );
    let gateway = status_of("Gateway");
    assert_eq!(
        condition(&gateway, "Programmed"),
        Some(Value::from("True")),
        "{gateway}"
    );
    assert_eq!(gateway["addresses"][0]["value"], "203.0.113.10");
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 1, "{gateway}");
    let route = status_of("HTTPRoute");
    let parent = &route["parents"][0];
    assert_eq!(
        condition(parent, "Accepted"),
        Some(Value::from("True")),
        "{route}"
    );
    assert_eq!(
        condition(parent, "ResolvedRefs"),
        Some(Value::from("True")),
        "{route}"
    );
    assert!(
        output.resources.keys().any(|name| name.contains("8080")),
        "a listener on 8080: {:?}",
        output.resources.keys().collect::<Vec<_>>()
    );
}

/// The metric families the control plane and a proxy register (the names their `metrics`
/// modules pass to `Registry::register` and `encode_descriptor`, prefixed `serval_`). Read from
/// the source: families without series do not appear in an exposition.
fn registered_families() -> std::collections::BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut families = std::collections::BTreeSet::new();
    for file in [
        "control-plane/src/metrics.rs",
        "control-plane/src/metrics/snapshot_resources.rs",
        "proxy/src/metrics.rs",
        "proxy/src/metrics/requests.rs",
        "common/src/telemetry.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect("a metrics module");
        for call in ["register(", "encode_descriptor("] {
            for (at, _) in text.match_indices(call) {
                let rest = text[at + call.len()..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    families.insert(format!("serval_{name}"));
                }
            }
        }
    }
    assert!(families.len() > 40, "{families:?}");
    families
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_serval_exports() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/grafana/serval-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let families = registered_families();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.starts_with("serval_"));
            for name in names {
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    families.contains(family),
                    "panel {:?} queries {name}, which Serval does not export ({families:?})",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 20, "the dashboard queries {queried} metrics");
}
