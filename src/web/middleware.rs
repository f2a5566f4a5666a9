//! Pieces of the layers around every request (applied in `web::app`):
//! security headers and the CSRF refusal page.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use tower_http::csrf::ProtectionError;
use tower_http::set_header::SetResponseHeaderLayer;

use super::errors;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   object-src 'none'; frame-ancestors 'none'";

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Content-Security-Policy, nosniff, frame refusal and a Referrer-Policy,
/// in the order they are applied.
pub fn security_headers() -> [SetResponseHeaderLayer<HeaderValue>; 4] {
    [
        header_layer(header::CONTENT_SECURITY_POLICY, CSP),
        header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        header_layer(header::X_FRAME_OPTIONS, "DENY"),
        // Not no-referrer: the CSRF check relies on browsers sending Origin.
        header_layer(header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ]
}

/// `Cache-Control: no-store` for everything behind a session (SY-5): pages
/// and API answers hold personal data that a shared or back-button cache
/// must not keep after sign-out. Answers that set their own keep it.
pub fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    header_layer(header::CACHE_CONTROL, "no-store")
}

/// HSTS for a year (SY-5), only when the console serves HTTPS: sent over
/// plain loopback HTTP it would be ignored at best, and at worst make a
/// browser refuse that host's HTTP later.
pub fn strict_transport_security() -> SetResponseHeaderLayer<HeaderValue> {
    header_layer(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000")
}

/// The page a cross-site POST gets (SY-3): 403, nothing changed.
pub fn csrf_refused(_: ProtectionError) -> Response<Body> {
    errors::error_page(
        StatusCode::FORBIDDEN,
        Some(
            "This request came from another site and was refused, so nothing was changed. \
             Open the console directly and try again.",
        ),
    )
}
