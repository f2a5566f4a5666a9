//! A rustls verifier that records the chain a server presents and accepts it
//! whatever its validity, so the troubleshooter can judge it afterwards
//! (TS-2) — while still verifying the handshake signature with the
//! provider's algorithms, so the peer proved it holds the leaf's key.
//! Credentials are only sent over such a connection after the chain, its
//! validity and the name were judged good (TS-5).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
pub struct CapturingVerifier {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl CapturingVerifier {
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(CapturingVerifier {
            provider,
            chain: Mutex::new(Vec::new()),
        })
    }

    /// The chain as presented, leaf first; empty when none arrived.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        match self.chain.lock() {
            Ok(chain) => chain.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        match self.chain.lock() {
            Ok(mut slot) => *slot = chain,
            Err(poisoned) => *poisoned.into_inner() = chain,
        }
        // Judged afterwards, by `chain::judge`, never trusted here.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client configuration for probing an Exchange server: TLS 1.2 and
/// 1.3 with the capturing verifier, HTTP/1.1 only (IIS refuses NTLM over
/// HTTP/2).
pub fn client_config(verifier: Arc<CapturingVerifier>) -> Result<rustls::ClientConfig, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The TLS server name for a server location: SNI for a name, none for an
/// address.
pub fn server_name(
    host: &crate::domain::gateway::ServerLocation,
) -> Result<ServerName<'static>, String> {
    use crate::domain::gateway::ServerLocation;
    match host {
        ServerLocation::Name(n) => ServerName::try_from(n.clone())
            .map_err(|e| format!("{n} is not a valid TLS server name: {e}")),
        ServerLocation::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
    }
}

/// A connection failure in words an administrator can act on.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listens on that port)".to_owned()
        }
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        _ => e.to_string(),
    }
}
