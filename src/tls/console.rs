//! The console's HTTPS certificate: the one given with --tls-cert/--tls-key,
//! or a self-signed one generated once into the data directory.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{AppError, AppResult};
use crate::secrets::write_private;

pub const GENERATED_DIR: &str = "console-tls";

pub struct ConsoleCert {
    pub config: Arc<rustls::ServerConfig>,
    /// Set when the certificate was generated in this start.
    pub generated: Option<PathBuf>,
    pub cert_path: PathBuf,
}

/// Loads or generates the certificate and builds the server configuration.
pub fn load(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    node_name: &str,
    listen_ip: IpAddr,
) -> AppResult<ConsoleCert> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_owned(), key.to_owned(), None),
        _ => {
            let dir = data_dir.join(GENERATED_DIR);
            let cert_path = dir.join("cert.pem");
            let key_path = dir.join("key.pem");
            let mut generated = None;
            if !cert_path.exists() || !key_path.exists() {
                generate(&dir, &cert_path, &key_path, node_name, listen_ip)?;
                generated = Some(cert_path.clone());
            }
            (cert_path, key_path, generated)
        }
    };
    let chain = read_chain(&cert_path)?;
    let key = read_key(&key_path)?;
    let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AppError::Config(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            AppError::Config(format!(
                "the certificate {} and key {} do not make a usable pair: {e}",
                cert_path.display(),
                key_path.display()
            ))
        })?;
    // Only what the console speaks: offered h2, browsers and curl pick it
    // and then get nothing from an HTTP/1.1 server.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ConsoleCert {
        config: Arc::new(config),
        generated,
        cert_path,
    })
}

fn generate(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    node_name: &str,
    listen_ip: IpAddr,
) -> AppResult<()> {
    fs::create_dir_all(dir)?;
    let mut names = vec![node_name.to_owned(), "localhost".to_owned()];
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !listen_ip.is_unspecified() && !ips.contains(&listen_ip) {
        ips.push(listen_ip);
    }
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| AppError::Config(format!("generating the console certificate: {e}")))?;
    params
        .subject_alt_names
        .extend(ips.into_iter().map(rcgen::SanType::IpAddress));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_name);
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "presence-gateway (self-signed)",
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let key = rcgen::KeyPair::generate()
        .map_err(|e| AppError::Config(format!("generating the console key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| AppError::Config(format!("signing the console certificate: {e}")))?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    fs::write(cert_path, cert.pem())?;
    Ok(())
}

fn read_chain(path: &Path) -> AppResult<Vec<CertificateDer<'static>>> {
    let pem = fs::read(path)
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", path.display())))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AppError::Config(format!("{} is not PEM: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(AppError::Config(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> AppResult<PrivateKeyDer<'static>> {
    let pem = fs::read(path)
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| AppError::Config(format!("{} is not PEM: {e}", path.display())))?
        .ok_or_else(|| AppError::Config(format!("{} holds no private key", path.display())))
}
