//! Server certificates of HTTPS listeners: the PEM certificate chain and private key of a TLS
//! Secret → a rustls [`CertifiedKey`], checked (the chain holds at least one certificate, the
//! leaf parses, the key is of a supported type and matches the leaf's public key).
//!
//! The control plane uses this to decide whether a certificateRef resolves
//! (`InvalidCertificateRef` otherwise) and the proxy to compile `Secret` resources, so both
//! reach the same verdict. Choosing a certificate for a connection (SNI) is the proxy's.

use rustls::{crypto::ring, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Why a certificate chain and key cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct KeyPairError {
    /// `certificate_chain` or `private_key`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn error(field: &'static str, reason: impl Into<String>) -> KeyPairError {
    KeyPairError {
        field,
        reason: reason.into(),
    }
}

/// The chain (PEM, leaf first) and key (PEM: PKCS#8, PKCS#1 or SEC1) as a rustls key, checked.
pub fn certified_key(chain: &[u8], key: &[u8]) -> Result<CertifiedKey, KeyPairError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| error("certificate_chain", format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("certificate_chain", "no PEM CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| error("private_key", format!("no PEM private key: {e}")))?;
    let provider = ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| error("private_key", format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(error(
            "private_key",
            "does not match the certificate's public key",
        )),
        Err(e) => Err(error("certificate_chain", format!("leaf certificate: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_is_served_and_mismatches_name_the_field() {
        let (cert, key) = pair("a.example");
        let certified = certified_key(cert.as_bytes(), key.as_bytes()).expect("valid");
        assert_eq!(certified.cert.len(), 1);

        let (_, other_key) = pair("b.example");
        let mismatch = certified_key(cert.as_bytes(), other_key.as_bytes()).expect_err("refused");
        assert_eq!(mismatch.field, "private_key");
        assert!(mismatch.reason.contains("does not match"), "{mismatch}");

        let no_cert = certified_key(b"Hello world\n", key.as_bytes()).expect_err("refused");
        assert_eq!(no_cert.field, "certificate_chain");
        let no_key = certified_key(cert.as_bytes(), b"Hello world\n").expect_err("refused");
        assert_eq!(no_key.field, "private_key");

        let garbage_cert =
            "-----BEGIN CERTIFICATE-----\nSGVsbG8gd29ybGQK\n-----END CERTIFICATE-----\n";
        let bad_leaf = certified_key(garbage_cert.as_bytes(), key.as_bytes()).expect_err("refused");
        assert_eq!(bad_leaf.field, "certificate_chain", "{bad_leaf}");
    }
}
