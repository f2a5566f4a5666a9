//! The JSON API under /api/. Anonymous callers get 401 JSON, never a redirect
//! to the sign-in page (EN-5). Callers authenticate with a console session
//! or with `Authorization: Bearer <token>` (System > API Tokens).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sqlx::AnyPool;
use tokio::time::Instant;

use crate::domain::user::Role;
use crate::error::AppResult;
use crate::secrets::api_token;
use crate::state::AppState;
use crate::store;

use super::errors::json_error;
use super::paths;
use super::session::SignedIn;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::API_SESSION, get(whoami))
        // Before the `{userid}` route would be tried: "stream" is not a
        // User ID the API serves (axum prefers the static segment anyway).
        .route(paths::API_PRESENCE_STREAM, get(stream))
        .route(paths::API_PRESENCE, get(presence))
        .route("/api/{*rest}", axum::routing::any(unknown))
        .route("/api", axum::routing::any(unknown))
        .route(paths::API_PREFIX, axum::routing::any(unknown))
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750): which scheme to
/// use, and for a token that was sent but refused, that it was the token.
fn unauthorized_with(challenge: &'static str, message: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

pub(super) fn unauthorized() -> Response {
    unauthorized_with(
        "Bearer realm=\"presence-gateway\"",
        "Sign in, or send Authorization: Bearer <token>.",
    )
}

fn invalid_token() -> Response {
    unauthorized_with(
        "Bearer realm=\"presence-gateway\", error=\"invalid_token\"",
        "The Authorization header does not carry a valid API token: it is malformed, unknown \
         or revoked.",
    )
}

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in administrator: reads anyone's presence.
    Admin(SessionCaller),
    /// A signed-in end user: reads only their own.
    EndUser(SessionCaller),
    /// An API token: reads anyone's presence, like an administrator.
    Token { id: i64 },
}

/// A caller signed in to the console, with what an open stream checks
/// again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCaller {
    id: i64,
    user_id: String,
    epoch: i64,
    sign_in_key: String,
}

impl Caller {
    /// Whose presence this caller may read: `None` for anyone's.
    fn only(&self) -> Option<&str> {
        match self {
            Caller::EndUser(user) => Some(&user.user_id),
            Caller::Admin(_) | Caller::Token { .. } => None,
        }
    }

    /// Whether the caller may still read: an open stream asks now and
    /// then, so a revoked token, a sign-out, an expired session, a password
    /// change or a deleted user ends it.
    async fn still_valid(&self, pool: &AnyPool, now: i64) -> AppResult<bool> {
        match self {
            Caller::Token { id } => store::tokens::is_live(pool, *id).await,
            Caller::Admin(user) | Caller::EndUser(user) => {
                // The sign-in row in the shared database, as for every page
                // view, not any node's session cache: sign-out on any node
                // deletes it, and it carries both session limits.
                Ok(
                    store::users::find_signed_in(pool, user.id, &user.sign_in_key)
                        .await?
                        .is_some_and(|(row, _, sign_in)| {
                            row.session_epoch == user.epoch
                                && sign_in.is_some_and(|s| super::session::sign_in_lives(&s, now))
                        }),
                )
            }
        }
    }
}

/// The caller of an API request: `Ok(None)` for anonymous, `Err` with the
/// 401 for an `Authorization` header that does not hold a live token. A
/// request that sends that header is judged by it alone, never by a session
/// cookie that came with it, so a script learns its token is bad.
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Option<Caller>, Response> {
    if let Some(id) = bearer(&parts.headers, state).await? {
        return Ok(Some(Caller::Token { id }));
    }
    let user = <SignedIn as axum::extract::OptionalFromRequestParts<AppState>>::from_request_parts(
        parts, state,
    )
    .await?;
    let Some(SignedIn(user)) = user else {
        return Ok(None);
    };
    let caller = SessionCaller {
        id: user.row.id,
        user_id: user.row.user_id,
        epoch: user.row.session_epoch,
        sign_in_key: user.sign_in_key,
    };
    Ok(Some(match user.role {
        Role::Admin => Caller::Admin(caller),
        Role::EndUser => Caller::EndUser(caller),
    }))
}

/// The API token an `Authorization` header carries, by its id: `Ok(None)`
/// without the header, `Err` with the 401 for one that is malformed,
/// unknown or revoked.
pub(super) async fn bearer(headers: &HeaderMap, state: &AppState) -> Result<Option<i64>, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(api_token::from_authorization)
        .ok_or_else(invalid_token)?;
    let hash = api_token::hash_secret(&token);
    match store::tokens::authenticate(&state.pool, &hash, state.now()).await {
        Ok(Some(row)) => Ok(Some(row.id)),
        Ok(None) => Err(invalid_token()),
        Err(e) => Err(api_failure(e)),
    }
}

/// An authenticated API caller; anyone else gets 401 JSON.
pub struct ApiCaller(pub Caller);

impl<S> FromRequestParts<S> for ApiCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        authenticate(parts, &state)
            .await?
            .map(ApiCaller)
            .ok_or_else(unauthorized)
    }
}

/// A server-side failure as JSON (the chain goes to the log, as for pages).
fn api_failure(error: crate::error::AppError) -> Response {
    let status = error.status();
    tracing::error!(error = ?error, "API request failed");
    json_error(
        status,
        if error.database_away() {
            "The database cannot be reached just now; try again in a moment."
        } else {
            "Something went wrong on the server; the details are in the service log."
        },
    )
}

/// Who the caller is: `{"user_id", "role"}`.
async fn whoami(user: Option<SignedIn>) -> Response {
    match user {
        Some(SignedIn(user)) => axum::Json(serde_json::json!({
            "user_id": user.row.user_id,
            "role": user.role.as_str(),
        }))
        .into_response(),
        None => unauthorized(),
    }
}

/// Unknown API paths: 401 to anonymous callers (so nothing about the API is
/// revealed before authentication), 404 JSON otherwise.
async fn unknown(ApiCaller(_): ApiCaller) -> Response {
    json_error(StatusCode::NOT_FOUND, "No such API endpoint.")
}

/// A published presence as EN-5's JSON object.
pub fn presence_json(p: &store::presence::Published) -> serde_json::Value {
    serde_json::json!({
        "userid": p.user_id,
        "calendar_presence": p.presence.as_str(),
        "since": crate::clock::rfc3339(p.since),
        "until": p.until.and_then(crate::clock::rfc3339),
        "gateway": p.gateway,
    })
}

/// `GET /api/v1/presence/{userid}` (EN-5): an administrator or a token
/// reads anyone's; an end user reads only their own (anyone else's is 404,
/// as if it did not exist); anonymous callers get 401.
async fn presence(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    Path(userid): Path<String>,
) -> Response {
    let not_found = || json_error(StatusCode::NOT_FOUND, "No such user.");
    if let Some(own) = caller.only()
        && !own.eq_ignore_ascii_case(userid.trim())
    {
        return not_found();
    }
    match store::presence::of_end_user(&state.pool, &userid).await {
        Ok(Some(published)) => axum::Json(presence_json(&published)).into_response(),
        Ok(None) => not_found(),
        Err(e) => api_failure(e),
    }
}

// ------------------------------------------------------------------- stream

/// Events read per query while a resumed stream catches up with the feed.
const PAGE: i64 = 100;
/// How long a stream waits before reading the log again after the
/// database was unavailable.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies and clients from closing an
/// idle stream, and lets the server notice a client that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream checks that its caller may still read.
const RECHECK_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize)]
struct StreamQuery {
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// Where a stream resumes: the `Last-Event-ID` header (which a browser's
/// EventSource sends when it reconnects, so it wins), else the query
/// parameter; `None` for a new stream. `Err` for a value that is not a
/// sequence number.
fn resume_after(headers: &HeaderMap, query: &StreamQuery) -> Result<Option<i64>, ()> {
    let raw = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().map_err(|_| ())?),
        None => query.last_event_id.as_deref(),
    };
    match raw.map(str::trim) {
        // An empty id is how the SSE spec resets it: start afresh.
        None | Some("") => Ok(None),
        Some(id) => id
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or(()),
    }
}

/// One open stream: where it is in the log, and the process's feed it
/// follows once it has caught up (`store::feed`).
struct Tail {
    pool: AnyPool,
    /// The application's clock, for the session limits on a recheck.
    clock: crate::clock::SharedClock,
    caller: Caller,
    /// The newest sequence number sent (or passed over as not the
    /// caller's).
    after: i64,
    /// Up to here the stream reads the log itself (it resumed from an
    /// older event); beyond, the feed brings every event.
    catch_up_to: i64,
    pending: VecDeque<store::presence::Published>,
    feed: tokio::sync::broadcast::Receiver<store::feed::Shared>,
    recheck_at: Instant,
    /// The database was unreachable at the last read.
    database_down: bool,
    /// The stream said its last word (it fell behind the feed).
    ended: bool,
    /// Released when the stream is dropped, i.e. when the client goes away.
    _permit: crate::state::StreamPermit,
}

impl Tail {
    /// Logged once per outage, not at every read.
    fn database_away(&mut self, error: &crate::error::AppError) {
        if !self.database_down {
            tracing::warn!(error = %error, "presence stream: the database is unavailable; waiting");
            self.database_down = true;
        }
    }

    /// An event from the feed, kept if this stream has not sent it and its
    /// caller may read it.
    fn take(&mut self, event: &store::presence::Published) {
        if event.seq <= self.after {
            return;
        }
        self.after = event.seq;
        if self
            .caller
            .only()
            .is_none_or(|own| own.eq_ignore_ascii_case(&event.user_id))
        {
            self.pending.push_back(event.clone());
        }
    }

    /// The next event to send, waiting for one; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Some(
                    Event::default()
                        .event("presence")
                        .id(p.seq.to_string())
                        .data(presence_json(&p).to_string()),
                );
            }
            if self.ended {
                return None;
            }
            if Instant::now() >= self.recheck_at {
                match self.caller.still_valid(&self.pool, self.clock.unix()).await {
                    Ok(true) => self.recheck_at = Instant::now() + RECHECK_EVERY,
                    Ok(false) => return None,
                    Err(e) if e.database_away() => {
                        self.database_away(&e);
                        tokio::time::sleep(RETRY_EVERY).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "presence stream: checking the caller failed");
                        return None;
                    }
                }
            }
            if self.after < self.catch_up_to {
                let page =
                    store::presence::events_after(&self.pool, self.after, self.caller.only(), PAGE)
                        .await;
                match page {
                    Ok(page) => {
                        self.database_down = false;
                        match page.last() {
                            Some(last) => self.after = last.seq.max(self.after),
                            // Nothing more of the caller's up to the feed.
                            None => self.after = self.catch_up_to,
                        }
                        self.pending.extend(page);
                    }
                    // The database is restarting (CL-5): the stream stays
                    // open and reads on from where it was when it is back.
                    Err(e) if e.database_away() => {
                        self.database_away(&e);
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                    Err(e) => {
                        // The client reconnects with Last-Event-ID and loses
                        // nothing.
                        tracing::warn!(error = %e, "presence stream: reading the log failed");
                        return None;
                    }
                }
                continue;
            }
            tokio::select! {
                received = self.feed.recv() => match received {
                    Ok(event) => self.take(&event),
                    Err(RecvError::Lagged(_)) => {
                        // The others are not held up for this reader: it is
                        // told, and resumes from its last event.
                        self.ended = true;
                        return Some(
                            Event::default().event("overflow").data(
                                serde_json::json!({
                                    "error": "This stream fell too far behind and is closed; \
                                              reconnect with Last-Event-ID to resume from the \
                                              last event received."
                                })
                                .to_string(),
                            ),
                        );
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(self.recheck_at) => {}
            }
        }
    }
}

/// `GET /api/v1/presence/stream` (EN-5): server-sent events named
/// `presence`, one per change, `id` the log's sequence number and `data`
/// the same JSON object as the single-user endpoint. Resumes after
/// `Last-Event-ID` (or `?last_event_id=`); without one, sends changes from
/// now on. An end user's stream carries only their own changes.
async fn stream(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    peer: Option<axum::Extension<crate::net::Peer>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Ok(resume) = resume_after(&headers, &query) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID must be the id of an event this stream sent (a sequence number).",
        );
    };
    let from = peer.map(|axum::Extension(crate::net::Peer(addr))| addr.ip());
    let permit = match state.streams.try_acquire(from) {
        Ok(permit) => permit,
        Err(crate::state::StreamRefusal::Process) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many presence streams are open on this node; try again later or another node.",
            );
        }
        Err(crate::state::StreamRefusal::Address) => {
            return json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many presence streams are open from this address; close some first.",
            );
        }
    };
    let joined = match state
        .feed
        .join(
            &state.pool,
            state.changes.presence_events(),
            state.changes.notified(),
        )
        .await
    {
        Ok(joined) => joined,
        Err(e) => return api_failure(e),
    };
    // A new stream starts at the log's end (the feed may not have read the
    // newest events yet: those it then brings are passed over); a resumed
    // one reads the log itself up to where the feed was.
    let after = match resume {
        Some(seq) => seq,
        None => match store::presence::last_seq(&state.pool).await {
            Ok(seq) => seq,
            Err(e) => return api_failure(e),
        },
    };
    let tail = Tail {
        pool: state.pool.clone(),
        clock: state.clock.clone(),
        caller,
        after,
        catch_up_to: joined.head,
        pending: VecDeque::new(),
        feed: joined.receiver,
        recheck_at: Instant::now() + RECHECK_EVERY,
        database_down: false,
        ended: false,
        _permit: permit,
    };
    // The stream owns the tail: when the client disconnects, hyper drops the
    // body, the stream and its permit with it; no task is left behind.
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = tail.next().await?;
        Some((Ok::<Event, Infallible>(event), tail))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Reverse proxies (nginx) otherwise buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(last_event_id: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(id) = last_event_id {
            headers.insert("last-event-id", HeaderValue::from_str(id).unwrap());
        }
        headers
    }

    fn query(id: Option<&str>) -> StreamQuery {
        StreamQuery {
            last_event_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn resume_point_prefers_the_header() {
        assert_eq!(resume_after(&headers(None), &query(None)), Ok(None));
        assert_eq!(
            resume_after(&headers(Some("42")), &query(None)),
            Ok(Some(42))
        );
        assert_eq!(resume_after(&headers(None), &query(Some("7"))), Ok(Some(7)));
        assert_eq!(
            resume_after(&headers(Some("42")), &query(Some("7"))),
            Ok(Some(42))
        );
        assert_eq!(resume_after(&headers(Some("")), &query(None)), Ok(None));
        assert_eq!(resume_after(&headers(Some("x")), &query(None)), Err(()));
        assert_eq!(resume_after(&headers(None), &query(Some("-1"))), Err(()));
    }

    #[test]
    fn only_end_users_are_limited_to_their_own() {
        let caller = SessionCaller {
            id: 1,
            user_id: "alice".to_owned(),
            epoch: 0,
            sign_in_key: String::new(),
        };
        assert_eq!(Caller::EndUser(caller.clone()).only(), Some("alice"));
        assert_eq!(Caller::Admin(caller).only(), None);
        assert_eq!(Caller::Token { id: 1 }.only(), None);
    }
}
