//! Golden tests of `translate`: every `testdata/translate/<area>/<case>.in.yaml` (multi-document
//! Kubernetes YAML, exactly what `standalone --config-dir` reads, loaded after `_base/*.yaml`) is
//! translated and compared with `<case>.out.yaml`.
//!
//! Beyond the comparison, each case checks the invariants: order independence (reversed and
//! shuffled documents give byte-identical output and the same snapshot version), stable versions,
//! consistency (every referenced name exists), status coverage, that the proxy's compiler
//! accepts the resources, and that incremental translation gives the same output as translating
//! from scratch (the same inputs again, and each object removed and added back).
//!
//! `SERVAL_BLESS=1 cargo test -p serval-control-plane --test translate_golden` rewrites expected
//! files and deletes orphaned ones; with `CI=true` nothing is ever written.

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};
use serval_common::Resource;
use serval_control_plane::{
    snapshot::{Scope, Snapshot},
    sources::objects::{self, Object},
    translate::{self, GatewayAddress, Incremental, Inputs, Options, Output},
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

const NOW: &str = "2026-01-01T00:00:00Z";

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let mut cases = Vec::new();
    collect(&root, &root, &mut cases);
    cases.sort();
    let bless = std::env::var("SERVAL_BLESS").is_ok_and(|v| v == "1")
        && std::env::var("CI").map_or(true, |v| v != "true");
    if bless {
        remove_orphans(&root);
    }
    let trials = cases
        .into_iter()
        .map(|(name, path)| {
            let root = root.clone();
            Trial::test(name, move || run_case(&root, &path, bless))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "_base") {
                collect(root, &path, out);
            }
        } else if let Some(stem) = path.to_str().and_then(|p| p.strip_suffix(".in.yaml")) {
            let rel = Path::new(stem)
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push((rel, path));
        }
    }
}

fn remove_orphans(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path.to_str().and_then(|p| p.strip_suffix(".out.yaml"))
                && !Path::new(&format!("{stem}.in.yaml")).exists()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// `kind: TranslateOptions` (optional first document).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CaseOptions {
    #[allow(dead_code)]
    kind: String,
    controller_name: Option<String>,
    base: Option<bool>,
    now: Option<String>,
    /// `Options::fleet_addresses`, as `{type, value}` entries.
    #[serde(default)]
    fleet_addresses: Vec<CaseAddress>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseAddress {
    r#type: String,
    value: String,
}

fn load(path: &Path) -> Result<Vec<Value>, Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn run_case(root: &Path, input: &Path, bless: bool) -> Result<(), Failed> {
    let mut docs = load(input)?;
    let mut options = CaseOptions::default();
    if docs
        .first()
        .and_then(|d| d.get("kind"))
        .and_then(Value::as_str)
        == Some("TranslateOptions")
    {
        options =
            serde_json::from_value(docs.remove(0)).map_err(|e| format!("TranslateOptions: {e}"))?;
    }
    let mut all = Vec::new();
    if options.base.unwrap_or(true) {
        let mut base_files: Vec<PathBuf> = std::fs::read_dir(root.join("_base"))
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .collect();
        base_files.sort();
        for f in base_files {
            all.extend(load(&f)?);
        }
    }
    all.extend(docs);
    let opts = Options {
        controller_name: options
            .controller_name
            .unwrap_or_else(|| serval_common::CONTROLLER_NAME.to_owned()),
        now: options.now.unwrap_or_else(|| NOW.to_owned()),
        fleet_addresses: options
            .fleet_addresses
            .into_iter()
            .map(|a| GatewayAddress {
                r#type: if a.r#type == "Hostname" {
                    "Hostname"
                } else {
                    "IPAddress"
                },
                value: a.value,
            })
            .collect(),
    };

    let objects = objects::parse_values(&input.display().to_string(), all)
        .map_err(|e| e.to_string())?
        .objects;
    let (rendered, version) = render(&objects, &opts)?;

    // Invariant: order independence.
    let mut reversed = objects.clone();
    reversed.reverse();
    let mut shuffled = objects;
    let mut rng = fastrand::Rng::with_seed(7);
    rng.shuffle(&mut shuffled);
    for (what, permuted) in [("reversed", reversed), ("shuffled", shuffled)] {
        let (again, again_version) = render(&permuted, &opts)?;
        if again != rendered || again_version != version {
            return Err(format!(
                "{what} input gives a different output:\n{}",
                diff(&rendered, &again)
            )
            .into());
        }
    }

    let expected_path = PathBuf::from(
        input
            .to_str()
            .and_then(|p| p.strip_suffix(".in.yaml"))
            .map(|p| format!("{p}.out.yaml"))
            .unwrap_or_default(),
    );
    match std::fs::read_to_string(&expected_path) {
        Ok(expected) if expected == rendered => Ok(()),
        _ if bless => std::fs::write(&expected_path, &rendered).map_err(|e| e.to_string().into()),
        Ok(expected) => Err(format!(
            "output differs from {}:\n{}\nrun `SERVAL_BLESS=1 cargo test -p serval-control-plane --test translate_golden` to accept",
            expected_path.display(),
            diff(&expected, &rendered)
        )
        .into()),
        Err(_) => Err(format!(
            "{} is missing; run `SERVAL_BLESS=1 cargo test -p serval-control-plane --test translate_golden`",
            expected_path.display()
        )
        .into()),
    }
}

/// Translates and renders the golden text; checks the per-run invariants.
fn render(objects: &[Object], opts: &Options) -> Result<(String, String), Failed> {
    let inputs = Inputs::from_objects(objects.iter().cloned());
    let output = translate::translate(&inputs, opts);

    // Invariant: stable versions.
    let snapshot = Snapshot::new(output.resources.clone());
    let again = Snapshot::new(translate::translate(&inputs, opts).resources);
    if snapshot.version != again.version {
        return Err("two translations of the same input have different versions".into());
    }
    // Invariant: consistency.
    for (name, resource) in &output.resources {
        for reference in resource.references() {
            if !output.resources.contains_key(&reference) {
                return Err(format!("{name} refers to missing {reference}").into());
            }
        }
    }
    // Invariant: the proxy accepts what the control plane emits.
    let compiled = serval_proxy::config::compile::compile(
        snapshot.version.to_string(),
        output.resources.clone(),
        BTreeMap::new(),
        None,
    )
    .map_err(|e| format!("the proxy rejects the output: {e}"))?;
    // Invariant: status coverage.
    check_status_coverage(&inputs, opts, &output.statuses)?;
    // Invariant: incremental translation is translation.
    check_incremental(objects, opts, &output)?;

    let mut groups: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for key in [
        "listeners",
        "routeConfigs",
        "attachedRoutes",
        "clusters",
        "clusterLoadAssignments",
        "secrets",
    ] {
        groups.insert(key, Vec::new());
    }
    for resource in output.resources.values() {
        let key = match &**resource {
            Resource::Listener(_) => "listeners",
            Resource::RouteConfig(_) => "routeConfigs",
            Resource::AttachedRoute(_) => "attachedRoutes",
            Resource::Cluster(_) => "clusters",
            Resource::ClusterLoadAssignment(_) => "clusterLoadAssignments",
            Resource::Secret(_) => "secrets",
        };
        groups.entry(key).or_default().push(resource.to_json());
    }
    let mut per_gateway = BTreeMap::new();
    for (ns, name) in inputs.gateways.keys() {
        let id = format!("{ns}/{name}");
        let view = snapshot.view(&Scope::new(vec![id.clone()], String::new()));
        if !view.resources.is_empty() {
            // Invariant: what one Gateway's proxies receive is complete on its own.
            serval_proxy::config::compile::compile(
                view.version.to_string(),
                view.resources
                    .iter()
                    .map(|(k, v)| (k.clone(), v.resource.clone())),
                BTreeMap::new(),
                None,
            )
            .map_err(|e| format!("the proxy rejects the view of {id}: {e}"))?;
            per_gateway.insert(id, view.resources.keys().cloned().collect::<Vec<_>>());
        }
    }
    // The routing tables the proxy builds: per socket, host pattern → routes in the order tried.
    let mut routing = BTreeMap::new();
    for (addr, listener) in &compiled.listeners {
        let hosts: BTreeMap<String, Vec<&str>> = listener
            .router
            .hosts
            .entries()
            .into_iter()
            .map(|(pattern, vh)| (pattern, vh.routes.iter().map(|r| r.name.as_str()).collect()))
            .collect();
        if !hosts.is_empty() {
            routing.insert(addr.to_string(), hosts);
        }
    }
    let mut doc = json!({
        "routing": routing,
        "resources": groups,
        "status": output.statuses,
        "perGateway": per_gateway,
    });
    if !output.diagnostics.is_empty() {
        doc["diagnostics"] = json!(output.diagnostics);
    }
    let text = serde_saphyr::to_string(&doc).map_err(|e| e.to_string())?;
    Ok((text, snapshot.version.to_string()))
}

/// Translates with one [`Incremental`] translator through: nothing → `objects` → the same again
/// (every HTTPRoute and GRPCRoute and every AttachedRoute must be reused) → for each object, `objects` without it →
/// `objects`; each output must equal translating the same inputs from scratch.
fn check_incremental(objects: &[Object], opts: &Options, full: &Output) -> Result<(), Failed> {
    let mut incremental = Incremental::default();
    let mut step = |objects: &[Object], expected: Option<&Output>, what: &str| {
        let inputs = Inputs::from_objects(objects.iter().cloned());
        let scratch;
        let expected = match expected {
            Some(e) => e,
            None => {
                scratch = translate::translate(&inputs, opts);
                &scratch
            }
        };
        let routes = inputs.http_routes.len() + inputs.grpc_routes.len();
        let got = incremental.translate(inputs, opts);
        let differs = if got.resources != expected.resources {
            "resources"
        } else if got.statuses != expected.statuses {
            "statuses"
        } else if got.diagnostics != expected.diagnostics {
            "diagnostics"
        } else {
            return Ok((got, routes));
        };
        Err(Failed::from(format!(
            "incremental translation {what}: its {differs} differ from a translation from scratch"
        )))
    };
    let (first, _) = step(objects, Some(full), "from nothing")?;
    let (again, routes) = step(objects, Some(full), "of the same inputs again")?;
    if again.reused_routes != routes {
        return Err(format!(
            "incremental translation of the same inputs again reused {} of {routes} routes",
            again.reused_routes
        )
        .into());
    }
    // The same inputs again give the same AttachedRoute resources, not equal copies.
    for (name, resource) in &again.resources {
        if matches!(&**resource, Resource::AttachedRoute(_))
            && !first
                .resources
                .get(name)
                .is_some_and(|r| std::sync::Arc::ptr_eq(r, resource))
        {
            return Err(format!("{name} was built again from the same inputs").into());
        }
    }
    for (i, object) in objects.iter().enumerate() {
        let mut without = objects.to_vec();
        without.remove(i);
        let what = object.object_ref();
        step(&without, None, &format!("without {what}"))?;
        step(objects, Some(full), &format!("with {what} back"))?;
    }
    Ok(())
}

fn check_status_coverage(
    inputs: &Inputs,
    opts: &Options,
    statuses: &[std::sync::Arc<translate::ObjectStatus>],
) -> Result<(), Failed> {
    let has = |kind: &str, ns: &str, name: &str| {
        statuses.iter().any(|s| {
            s.kind == kind
                && s.metadata.name == name
                && s.metadata.namespace.as_deref().unwrap_or("") == ns
        })
    };
    for (name, class) in &inputs.gateway_classes {
        let ours = class.spec.controller_name == opts.controller_name;
        if ours != has("GatewayClass", "", name) {
            return Err(
                format!("GatewayClass {name}: status coverage wrong (ours: {ours})").into(),
            );
        }
        for ((ns, gw), gateway) in &inputs.gateways {
            if gateway.spec.gateway_class_name == *name && ours != has("Gateway", ns, gw) {
                return Err(
                    format!("Gateway {ns}/{gw}: status coverage wrong (ours: {ours})").into(),
                );
            }
        }
    }
    Ok(())
}

fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}
