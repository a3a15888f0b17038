//! `serval-control-plane certgen`: the certificates mutual TLS on the delta protocol needs — a CA,
//! the control plane's server certificate, a proxy client certificate naming the Gateways it may
//! serve (URI SANs, see `serval_common::tls`), and an admin client certificate for
//! `proxy-status` — and, for Kubernetes, the Secrets the manifests mount.
//!
//! An existing `ca.crt`/`ca.key` in the output folder is reused, so further proxy certificates
//! (for other Gateways) come from the same CA. Keys are written with mode 0600. This module does
//! not rotate anything by itself: run it again and the servers reload the files.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serval_common::tls::{ADMIN_URI, GATEWAY_CLASS_URI, GATEWAY_URI};
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// DNS names and IPs of the control plane's certificate.
    pub server_names: Vec<String>,
    /// File name (without extension) of the proxy certificate.
    pub proxy_name: String,
    /// Gateways (`namespace/name`) the proxy certificate allows; with no classes either, every
    /// Gateway.
    pub proxy_gateways: Vec<String>,
    /// GatewayClasses whose Gateways the proxy certificate allows.
    pub proxy_gateway_classes: Vec<String>,
    /// Validity of the leaf certificates, in days (the CA: ten times as long).
    pub valid_days: u32,
    /// Also write `secrets.yaml` with the Secrets for this namespace.
    pub kubernetes_namespace: Option<String>,
}

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertgenError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused the parameters or an existing CA.
    #[error("{what}: {source}")]
    Certificate {
        /// What was being made.
        what: String,
        /// The error.
        #[source]
        source: rcgen::Error,
    },
}

fn cert_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertgenError {
    let what = what.into();
    move |source| CertgenError::Certificate { what, source }
}

/// The files written.
#[derive(Debug)]
pub struct Written {
    /// Every file, in the order written.
    pub files: Vec<PathBuf>,
    /// Whether the CA was created (false: an existing one was reused).
    pub new_ca: bool,
}

/// Generates the certificates.
pub fn run(request: &Request) -> Result<Written, CertgenError> {
    let dir = &request.out_dir;
    std::fs::create_dir_all(dir).map_err(|source| CertgenError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let (ca_pem, ca_key, new_ca) = ca(request, &mut files)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).map_err(cert_error("ca.crt"))?;

    let mut server = leaf(
        request,
        "serval control plane",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    for name in &request.server_names {
        server.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(cert_error(format!("--server-name {name}")))?,
            ),
        });
    }
    let server = issue(dir, "server", &server, &issuer, &mut files)?;

    let mut proxy = leaf(
        request,
        &request.proxy_name,
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let mut uris: Vec<String> = request
        .proxy_gateways
        .iter()
        .map(|g| format!("{GATEWAY_URI}{g}"))
        .chain(
            request
                .proxy_gateway_classes
                .iter()
                .map(|c| format!("{GATEWAY_CLASS_URI}{c}")),
        )
        .collect();
    if uris.is_empty() {
        uris.push(format!("{GATEWAY_URI}*"));
    }
    for uri in uris {
        proxy.subject_alt_names.push(SanType::URI(
            uri.clone()
                .try_into()
                .map_err(cert_error(format!("URI {uri}")))?,
        ));
    }
    let proxy = issue(dir, &request.proxy_name, &proxy, &issuer, &mut files)?;

    let mut admin = leaf(request, "serval admin", ExtendedKeyUsagePurpose::ClientAuth)?;
    admin.subject_alt_names.push(SanType::URI(
        ADMIN_URI.try_into().map_err(cert_error("admin URI"))?,
    ));
    let admin = issue(dir, "admin", &admin, &issuer, &mut files)?;

    if let Some(namespace) = &request.kubernetes_namespace {
        let secret = |name: &str, (cert, key): &(String, String)| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": cert, "tls.key": key, "ca.crt": ca_pem},
            })
        };
        let docs = [
            secret("serval-xds-server", &server),
            secret(&format!("serval-xds-{}", request.proxy_name), &proxy),
            secret("serval-xds-admin", &admin),
        ];
        let mut text = String::new();
        for doc in docs {
            text.push_str("---\n");
            text.push_str(
                &serde_saphyr::to_string(&doc).map_err(|e| CertgenError::Io {
                    path: dir.join("secrets.yaml"),
                    source: std::io::Error::other(e.to_string()),
                })?,
            );
        }
        write(&dir.join("secrets.yaml"), &text, true, &mut files)?;
    }
    Ok(Written { files, new_ca })
}

/// Loads `ca.crt`/`ca.key` from the folder, or creates them.
fn ca(
    request: &Request,
    files: &mut Vec<PathBuf>,
) -> Result<(String, KeyPair, bool), CertgenError> {
    let (cert_path, key_path) = (
        request.out_dir.join("ca.crt"),
        request.out_dir.join("ca.key"),
    );
    if cert_path.exists() && key_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CertgenError::Io {
                path: p.to_owned(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(cert_error("ca.key"))?;
        return Ok((read(&cert_path)?, key, false));
    }
    let key = KeyPair::generate().map_err(cert_error("CA key"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error("CA"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "serval delta protocol CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, request.valid_days.saturating_mul(10));
    let cert = params.self_signed(&key).map_err(cert_error("CA"))?;
    write(&cert_path, &cert.pem(), false, files)?;
    write(&key_path, &key.serialize_pem(), true, files)?;
    Ok((cert.pem(), key, true))
}

fn leaf(
    request: &Request,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, CertgenError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(cert_error(common_name))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, request.valid_days);
    Ok(params)
}

/// Valid from yesterday (clock skew) for `days` days.
fn set_validity(params: &mut CertificateParams, days: u32) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d) = civil_from_days(i64::try_from(since_epoch.as_secs() / 86_400).unwrap_or(0));
    let today = rcgen::date_time_ymd(y, m, d);
    let day = std::time::Duration::from_secs(86_400);
    params.not_before = today - day;
    params.not_after = today + day * days.max(1);
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        i32::try_from(y).unwrap_or(1970),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

/// Issues `params` with a new key; writes `<name>.crt` and `<name>.key`; returns both PEMs.
fn issue(
    dir: &Path,
    name: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, &KeyPair>,
    files: &mut Vec<PathBuf>,
) -> Result<(String, String), CertgenError> {
    let key = KeyPair::generate().map_err(cert_error(format!("{name} key")))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_error(name.to_owned()))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    write(&dir.join(format!("{name}.crt")), &cert_pem, false, files)?;
    write(&dir.join(format!("{name}.key")), &key_pem, true, files)?;
    Ok((cert_pem, key_pem))
}

fn write(
    path: &Path,
    text: &str,
    secret: bool,
    files: &mut Vec<PathBuf>,
) -> Result<(), CertgenError> {
    let io = |source| CertgenError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    files.push(path.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serval_common::tls::{Identity, TlsFiles};

    #[test]
    fn days_convert_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn generated_material_makes_both_tls_sides_and_names_the_gateways() {
        let dir = std::env::temp_dir().join(format!("serval-certgen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let request = Request {
            out_dir: dir.clone(),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            proxy_name: "proxy-a".into(),
            proxy_gateways: vec!["ns/a".into()],
            proxy_gateway_classes: vec![],
            valid_days: 30,
            kubernetes_namespace: Some("serval-system".into()),
        };
        let first = run(&request).expect("generated");
        assert!(first.new_ca);
        let again = run(&request).expect("generated again");
        assert!(!again.new_ca, "the CA is reused");
        let file = |n: &str| dir.join(n);
        serval_common::tls::server_config(&TlsFiles {
            cert: file("server.crt"),
            key: file("server.key"),
            ca: file("ca.crt"),
        })
        .expect("server side loads");
        serval_common::tls::client_config(&TlsFiles {
            cert: file("proxy-a.crt"),
            key: file("proxy-a.key"),
            ca: file("ca.crt"),
        })
        .expect("client side loads");
        let der = |n: &str| {
            let pem = std::fs::read(file(n)).expect("read");
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            CertificateDer::from_pem_slice(&pem).expect("pem").to_vec()
        };
        let proxy = Identity::from_certificate(&der("proxy-a.crt")).expect("identity");
        assert_eq!(proxy.gateways, ["ns/a".to_owned()].into());
        assert!(!proxy.all_gateways && !proxy.admin);
        assert!(
            Identity::from_certificate(&der("admin.crt"))
                .expect("admin")
                .admin
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file("proxy-a.key"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "keys are private");
        }
        let secrets = std::fs::read_to_string(file("secrets.yaml")).expect("secrets");
        assert!(secrets.contains("serval-xds-proxy-a") && secrets.contains("ca.crt"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
