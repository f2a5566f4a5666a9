//! The server certificate: a throwaway CA and a leaf it signs for the
//! `--name` values, or the chain and key the user gives.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const CA_NAME: &str = "exchange-sim test CA";

/// What the TLS server presents, and the CA to hand to clients when generated.
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca_pem: Option<String>,
}

/// A CA valid for a year and a leaf for `names` signed by it. The chain served
/// is leaf then CA, so an import tool can offer the CA for trust.
pub fn generate(names: &[String]) -> Result<ServerCert> {
    let Some(first) = names.first() else {
        bail!("at least one --name is needed for the generated certificate");
    };
    let now = time::OffsetDateTime::now_utc();
    // A day of slack in the past so clocks a little behind still accept it.
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(365);

    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_NAME);
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "exchange-sim");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca = ca_params
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;

    let mut leaf_params = CertificateParams::default();
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.as_str()
                    .try_into()
                    .with_context(|| format!("--name {name:?} is not a usable DNS name"))?,
            ),
        };
        leaf_params.subject_alt_names.push(san);
    }
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, first.as_str());
    leaf_params
        .distinguished_name
        .push(DnType::OrganizationName, "exchange-sim");
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.not_before = not_before;
    leaf_params.not_after = not_after;
    let leaf_key = KeyPair::generate().context("generating the server key")?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .context("signing the server certificate")?;

    Ok(ServerCert {
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        ca_pem: Some(ca.pem()),
    })
}

/// The chain (PEM, leaf first) and private key given with --cert/--key.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<ServerCert> {
    let pem =
        fs::read(cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", cert_path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert_path.display());
    }
    let pem = fs::read(key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{} is not PEM", key_path.display()))?
        .with_context(|| format!("{} holds no private key", key_path.display()))?;
    Ok(ServerCert {
        chain,
        key,
        ca_pem: None,
    })
}
