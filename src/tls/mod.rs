//! TLS: the console's own certificate (SY-1). Later: the trust store, chain
//! capture and name matching for Exchange servers.

pub mod capture;
pub mod certinfo;
pub mod chain;
pub mod console;
pub mod fetch;
pub mod system;

use std::sync::Arc;

/// The one crypto provider, passed explicitly everywhere: with two providers
/// compiled into the tree, rustls' implicit default would panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
