//! HTTP only: one module per console area, each with its own router, and the
//! middleware every response passes through.

pub mod api;
pub mod app_users;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod certs;
pub mod chart;
pub mod console;
pub mod control;
pub mod end_users;
pub mod errors;
pub mod forms;
pub mod gateways;
pub mod health;
pub mod i18n;
pub mod locales;
pub mod metrics;
pub mod middleware;
pub mod params;
pub mod paths;
pub mod redundancy;
pub mod refusals;
pub mod session;
pub mod shell;
pub mod tokens;
pub mod troubleshooter;
pub mod user_options;

use axum::Router;
use axum::http::StatusCode;
use tower::ServiceBuilder;
use tower_http::csrf::CsrfLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{CachingSessionStore, Expiry, SessionManagerLayer};
use tower_sessions_moka_store::MokaStore;

use crate::state::AppState;

/// Largest request body accepted anywhere unless a route says otherwise.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest a request may take before it is answered with 408.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const SESSION_COOKIE: &str = "pg_session";
pub const SESSION_IDLE_MINUTES: i64 = 30;
/// However active, a session ends this long after sign-in (ASVS 3.3.2).
pub const SESSION_LIFETIME_HOURS: i64 = 12;
/// Sessions kept in the in-memory cache; older ones are read from SQLite.
const SESSION_CACHE_CAPACITY: u64 = 50_000;

/// The whole application, as served and as tested.
pub fn app(state: AppState) -> Router {
    let https = state.settings.serves_https();
    // Sessions are cached in memory in front of SQLite, so a page view reads
    // no session record. The cache is safe in a cluster because no record
    // is trusted alone: every request reads the session's sign-in row (and
    // the user's epoch) from the shared database in the same query as the
    // user, so sign-out or expiry on any node, which deletes the row, ends
    // the session on every node at once, and a stale record another node
    // caches or writes back names a row that is gone for good.
    let store = CachingSessionStore::new(
        MokaStore::new(Some(SESSION_CACHE_CAPACITY)),
        crate::store::session_store(&state.pool),
    );
    let sessions = SessionManagerLayer::new(store)
        .with_name(SESSION_COOKIE)
        // Browsers drop Secure cookies over plain http, so the flag follows
        // whether the console serves HTTPS (loopback HTTP otherwise).
        .with_secure(https)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(
            SESSION_IDLE_MINUTES,
        )));

    let pages = Router::new()
        .merge(auth::router())
        .merge(console::router())
        .merge(control::router())
        .merge(gateways::router())
        .merge(troubleshooter::router())
        .merge(audit::router())
        .merge(params::router())
        .merge(locales::router())
        .merge(user_options::router())
        .merge(end_users::router())
        .merge(app_users::router())
        .merge(api::router())
        .merge(bulk::router())
        .merge(tokens::router())
        .merge(redundancy::router())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    // Certificate uploads may be sent larger than the 1 MiB they may hold,
    // so the page can say so beside the field: the multipart reader stops
    // at the upload limit, and a hard cap refuses anything far beyond it
    // before it is read.
    let uploads = certs::router()
        .layer(axum::extract::DefaultBodyLimit::max(
            certs::UPLOAD_BODY_LIMIT,
        ))
        .layer(RequestBodyLimitLayer::new(certs::UPLOAD_HARD_LIMIT));
    // Bulk imports likewise, at 16 MiB (US-4).
    let bulk_uploads = bulk::upload_router()
        .layer(axum::extract::DefaultBodyLimit::max(
            bulk::UPLOAD_BODY_LIMIT,
        ))
        .layer(RequestBodyLimitLayer::new(bulk::UPLOAD_HARD_LIMIT));
    let with_sessions = Router::new()
        .merge(pages)
        .merge(uploads)
        .merge(bulk_uploads)
        .fallback(errors::not_found)
        .layer(
            ServiceBuilder::new()
                .layer(sessions)
                .layer(axum_messages::MessagesManagerLayer),
        )
        // Static files and health checks (in `bare`) stay cacheable.
        .layer(middleware::no_store());

    // Health checks and static files need no session: keep them cheap.
    let bare = Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(assets::router())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    let mut router = Router::new()
        .merge(bare)
        .merge(with_sessions)
        // Innermost first: each `layer` wraps everything above it.
        .layer(CsrfLayer::new().with_rejection_response(middleware::csrf_refused))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(errors::decorate));
    for layer in middleware::security_headers() {
        router = router.layer(layer);
    }
    if https {
        router = router.layer(middleware::strict_transport_security());
    }
    router.layer(TraceLayer::new_for_http()).with_state(state)
}
