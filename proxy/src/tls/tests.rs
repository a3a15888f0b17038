//! SNI selection, certificate choice by signature scheme and ALPN, through real handshakes over
//! an in-memory pipe.

use super::*;
use parking_lot::Mutex;
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// A certificate for `name` with a key of `alg`, as a Secret resource and its leaf (DER).
fn secret(name: &str, alg: &'static rcgen::SignatureAlgorithm) -> (pb::Secret, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let secret = pb::Secret {
        name: format!("secret/ns/{name}"),
        kind: Some(pb::secret::Kind::TlsCertificate(pb::TlsCertificate {
            certificate_chain: cert.pem().into_bytes(),
            private_key: key.serialize_pem().into_bytes(),
        })),
    };
    (secret, cert.der().to_vec())
}

/// Accepts any server certificate, records the leaf, and offers only `schemes`.
#[derive(Debug)]
struct Recorder {
    schemes: Vec<SignatureScheme>,
    leaf: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.leaf.lock() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

const ECDSA_ONLY: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
const ANY: &[SignatureScheme] = &[
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
];

/// Handshakes with `server` as `server_name` (a DNS name sends SNI, an IP address does not),
/// offering `schemes` and ALPN `h2`, `http/1.1`: the leaf presented and the protocol agreed.
async fn handshake(
    server: &Arc<rustls::ServerConfig>,
    server_name: &str,
    schemes: &[SignatureScheme],
) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let recorder = Arc::new(Recorder {
        schemes: schemes.to_vec(),
        leaf: Mutex::new(None),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(server));
    let server_side = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let connected = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, a)
        .await
        .map_err(|e| e.to_string())?;
    server_side
        .await
        .expect("server task")
        .map_err(|e| e.to_string())?;
    let alpn = connected.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = recorder.leaf.lock().clone().expect("a leaf");
    Ok((leaf, alpn))
}

#[tokio::test]
async fn sni_picks_exact_then_most_specific_wildcard_then_star() {
    let ed = &rcgen::PKCS_ED25519;
    let (exact, exact_leaf) = secret("a.example.com", ed);
    let (narrow, narrow_leaf) = secret("narrow.sub.example.com", ed);
    let (wide, wide_leaf) = secret("wide.example.com", ed);
    let (star, star_leaf) = secret("star", ed);
    let mut resolver = SniResolver::default();
    resolver.add("a.example.com", vec![certified_key(&exact).expect("valid")]);
    resolver.add(
        "*.sub.example.com",
        vec![certified_key(&narrow).expect("valid")],
    );
    resolver.add("*.example.com", vec![certified_key(&wide).expect("valid")]);
    resolver.add("*", vec![certified_key(&star).expect("valid")]);
    // A second definition of a pattern (another Listener on the socket) does not replace it.
    resolver.add("*", vec![certified_key(&exact).expect("valid")]);
    let server = server_config(resolver).expect("config");

    for (name, leaf) in [
        ("a.example.com", &exact_leaf),
        ("A.Example.COM", &exact_leaf),
        ("x.sub.example.com", &narrow_leaf),
        ("x.y.sub.example.com", &narrow_leaf),
        ("b.example.com", &wide_leaf),
        ("sub.example.com", &wide_leaf),
        ("example.com", &star_leaf),
        ("other.org", &star_leaf),
        // An IP address sends no SNI: the listener without hostname answers.
        ("127.0.0.1", &star_leaf),
    ] {
        let (got, alpn) = handshake(&server, name, ANY).await.expect(name);
        assert_eq!(&got, leaf, "{name}");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{name}: ALPN");
    }
}

#[tokio::test]
async fn a_name_no_listener_covers_fails_the_handshake() {
    let (only, _) = secret("a.example.com", &rcgen::PKCS_ED25519);
    let mut resolver = SniResolver::default();
    resolver.add("a.example.com", vec![certified_key(&only).expect("valid")]);
    let server = server_config(resolver).expect("config");
    assert!(handshake(&server, "a.example.com", ANY).await.is_ok());
    assert!(handshake(&server, "b.example.com", ANY).await.is_err());
    assert!(handshake(&server, "127.0.0.1", ANY).await.is_err());
}

#[tokio::test]
async fn the_first_certificate_the_client_can_verify_is_presented() {
    let (ed, ed_leaf) = secret("a.example.com", &rcgen::PKCS_ED25519);
    let (ec, ec_leaf) = secret("a.example.com", &rcgen::PKCS_ECDSA_P256_SHA256);
    let mut resolver = SniResolver::default();
    resolver.add(
        "a.example.com",
        vec![
            certified_key(&ed).expect("valid"),
            certified_key(&ec).expect("valid"),
        ],
    );
    let server = server_config(resolver).expect("config");
    let (first, _) = handshake(&server, "a.example.com", ANY).await.expect("any");
    assert_eq!(first, ed_leaf, "both usable: the first reference");
    let (fallback, _) = handshake(&server, "a.example.com", ECDSA_ONLY)
        .await
        .expect("ecdsa only");
    assert_eq!(fallback, ec_leaf, "Ed25519 not offered: the ECDSA one");
}

#[test]
fn a_bad_secret_is_rejected_naming_it_and_the_field() {
    let (good, _) = secret("a.example.com", &rcgen::PKCS_ED25519);
    let (other, _) = secret("b.example.com", &rcgen::PKCS_ED25519);
    let mut mismatched = good;
    if let (Some(pb::secret::Kind::TlsCertificate(m)), Some(pb::secret::Kind::TlsCertificate(o))) =
        (&mut mismatched.kind, &other.kind)
    {
        m.private_key = o.private_key.clone();
    }
    let error = certified_key(&mismatched).expect_err("refused");
    assert_eq!(
        error,
        invalid(
            "secret/ns/a.example.com",
            "tls_certificate.private_key",
            "does not match the certificate's public key"
        )
    );
    let ca_only = pb::Secret {
        name: "secret/ns/ca".to_owned(),
        kind: Some(pb::secret::Kind::ValidationContext(pb::ValidationContext {
            trusted_ca: b"x".to_vec(),
        })),
    };
    assert_eq!(
        certified_key(&ca_only).expect_err("refused").resource(),
        "secret/ns/ca"
    );
}
