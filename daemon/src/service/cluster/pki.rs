//! The cluster's certificates for etcd: one CA per cluster (made by the bootstrap member,
//! handed to each joiner over the pinned TLS of the join), and one certificate per member
//! that the member issues itself, valid as server and client (etcd's peers use it both
//! ways) for its own address and for [`ETCD_NAME`], the name silod's client checks.
//!
//! The CA key is on every member, as LXD's cluster key is: any member admits joiners.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use crate::store::etcd::{CA_CERT, CA_KEY, ETCD_NAME, MEMBER_CERT, MEMBER_KEY};

/// A CA: certificate and key, PEM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ca {
    /// Certificate.
    pub cert: String,
    /// Key.
    pub key: String,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "silo");
    dn.push(DnType::CommonName, "silo cluster CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    p
}

/// A new CA.
pub fn new_ca() -> Result<Ca, String> {
    let key = KeyPair::generate().map_err(|e| format!("CA key: {e}"))?;
    let cert = ca_params()
        .self_signed(&key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    Ok(Ca {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A member certificate for `name` at `ip`, signed by `ca`: (certificate, key), PEM.
pub fn member_cert(ca: &Ca, name: &str, ip: IpAddr) -> Result<(String, String), String> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| format!("CA key: {e}"))?;
    // The issuer is the CA's name and key: the same DN and key as its certificate, which
    // is all a verifier matches a signature against.
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate().map_err(|e| format!("member key: {e}"))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "silo");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.subject_alt_names = vec![
        SanType::DnsName(
            ETCD_NAME
                .try_into()
                .map_err(|e| format!("SAN {ETCD_NAME}: {e}"))?,
        ),
        SanType::IpAddress(ip),
    ];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| format!("member certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes the CA and a fresh member certificate into `dir` (`<state>/cluster`).
pub fn install(dir: &Path, ca: &Ca, name: &str, ip: IpAddr) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = member_cert(ca, name, ip)?;
    for (f, text, mode) in [
        (CA_CERT, ca.cert.as_str(), 0o644),
        (CA_KEY, ca.key.as_str(), 0o600),
        (MEMBER_CERT, cert.as_str(), 0o644),
        (MEMBER_KEY, key.as_str(), 0o600),
    ] {
        crate::service::trust::write_private(&dir.join(f), text, mode)
            .map_err(|e| format!("{f}: {e}"))?;
    }
    Ok(())
}

/// Reads the CA back from `dir`.
pub fn load_ca(dir: &Path) -> Result<Ca, String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{f}: {e}"));
    Ok(Ca {
        cert: read(CA_CERT)?,
        key: read(CA_KEY)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_certificate_chains_to_its_ca_and_names_its_address() {
        let ca = new_ca().unwrap();
        let (cert, _key) = member_cert(&ca, "m1", "10.9.8.7".parse().unwrap()).unwrap();
        let der = |pem: &str| {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
        };
        let (cd, ad) = (der(&cert), der(&ca.cert));
        let (_, c) = x509_parser::parse_x509_certificate(&cd).unwrap();
        let (_, a) = x509_parser::parse_x509_certificate(&ad).unwrap();
        assert_eq!(c.issuer(), a.subject());
        // The check etcd's client makes: the chain to the CA, and the name silod verifies.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&ca.cert)).unwrap();
        #[allow(deprecated)]
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls_pki_types::ServerName::try_from(ETCD_NAME).unwrap();
        v.verify_server_cert(
            &der(&cert),
            &[],
            &name,
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .unwrap();
        let other = new_ca().unwrap();
        let (stranger, _) = member_cert(&other, "m9", "10.9.8.7".parse().unwrap()).unwrap();
        assert!(v
            .verify_server_cert(
                &der(&stranger),
                &[],
                &name,
                &[],
                rustls_pki_types::UnixTime::now()
            )
            .is_err());
        let san = c.subject_alternative_name().unwrap().unwrap().value;
        let shown = format!("{:?}", san.general_names);
        assert!(shown.contains("silo-etcd"), "{shown}");
        assert!(shown.contains("[10, 9, 8, 7]"), "{shown}");
    }
}
