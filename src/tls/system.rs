//! The operating system's CA certificates (GR-3): Microsoft's servers are
//! judged against them plus the trust store, so a TLS-inspecting proxy's CA
//! can be added in the console while Microsoft's own chains need nothing.
//! Read once from the bundle file the system keeps (as OpenSSL and curl
//! do); `SSL_CERT_FILE` names another.

use std::path::PathBuf;
use std::sync::OnceLock;

use rustls::pki_types::CertificateDer;

/// Where Linux distributions keep the bundle: Debian and Ubuntu, Fedora and
/// RHEL, Alpine and others, openSUSE.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// The system's CA certificates; empty when no bundle can be read (the
/// trust store alone then decides, and the troubleshooter says why a chain
/// is not trusted).
pub fn roots() -> &'static [CertificateDer<'static>] {
    ROOTS.get_or_init(|| {
        let chosen: Vec<PathBuf> = match std::env::var_os("SSL_CERT_FILE") {
            Some(file) => vec![PathBuf::from(file)],
            None => BUNDLES.iter().map(PathBuf::from).collect(),
        };
        for path in chosen {
            let Ok(pem) = std::fs::read(&path) else {
                continue;
            };
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut pem.as_slice())
                    .filter_map(Result::ok)
                    .collect();
            if !certs.is_empty() {
                tracing::debug!(path = %path.display(), count = certs.len(), "system CA certificates");
                return certs;
            }
        }
        tracing::warn!("no system CA certificates found: only the trust store is used");
        Vec::new()
    })
}
