//! Who is signed in. The session holds the user's row id, the session epoch
//! it was created under, the key of its sign-in row and when it was last
//! re-saved. The sign-in row (store::sign_ins), read with the user on every
//! request, is what keeps a session alive: sign-out, expiry and a moved
//! epoch delete it, which ends the session on every node at once, whatever
//! a node's session cache still holds or writes back later. A user whose
//! epoch has moved on (password changed, sessions ended) is signed out on
//! the spot.

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use rand::RngCore as _;
use sqlx::AnyPool;
use tower_sessions::Session;

use super::paths;
use crate::domain::user::Role;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::sign_ins::{self, SignIn};
use crate::store::users::{ConfigState, UserRow};

const UID: &str = "uid";
const EPOCH: &str = "epoch";
const SEEN: &str = "seen";
const KEY: &str = "key";
/// Re-save an idle session at most this often: enough to keep the 30-minute
/// idle expiry sliding without a database write on every request.
const TOUCH_AFTER_SECS: i64 = 60;
const IDLE_SECS: i64 = super::SESSION_IDLE_MINUTES * 60;
const LIFETIME_SECS: i64 = super::SESSION_LIFETIME_HOURS * 3600;

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub row: UserRow,
    pub role: Role,
    /// Read with the user in one query, so the shell needs no more queries
    /// on the common path (no pending restart).
    pub config: ConfigState,
    /// The key of this session's sign-in row, for an API stream to check
    /// again later.
    pub sign_in_key: String,
}

/// Whether a sign-in is still within both limits at `now`: 30 minutes idle
/// (by its last request on any node) and 12 hours in all (ASVS 3.3.2).
pub fn sign_in_lives(sign_in: &SignIn, now: i64) -> bool {
    now - sign_in.seen_at <= IDLE_SECS && now - sign_in.created_at < LIFETIME_SECS
}

/// A fresh random key for a sign-in row: 256 bits, never reused, so no
/// written-back session record can ever match a newer row.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Starts a signed-in session: a fresh id (no fixation), a new sign-in row,
/// then the user. A sign-in this browser already had ends first.
pub async fn sign_in(pool: &AnyPool, session: &Session, user: &UserRow, now: i64) -> AppResult<()> {
    if let Some(old) = session.get::<String>(KEY).await? {
        sign_ins::end(pool, &old).await?;
    }
    let key = new_key();
    sign_ins::start(
        pool,
        &key,
        user.id,
        now,
        now - LIFETIME_SECS,
        now - IDLE_SECS,
    )
    .await?;
    session.cycle_id().await?;
    session.insert(UID, user.id).await?;
    session.insert(EPOCH, user.session_epoch).await?;
    session.insert(KEY, key).await?;
    session.insert(SEEN, now).await?;
    Ok(())
}

/// Keeps this session valid after the user's own password change bumped
/// their epoch (which ended every other session). The sign-in row moves to
/// a new key but keeps its start, so a password change never extends the
/// 12-hour lifetime; the old key dies with the old session id, so a copy of
/// the old record cached on another node cannot end (or reach) this one.
pub async fn adopt_epoch(pool: &AnyPool, session: &Session, epoch: i64) -> AppResult<()> {
    let key = new_key();
    if let Some(old) = session.get::<String>(KEY).await? {
        sign_ins::rekey(pool, &old, &key).await?;
    }
    session.cycle_id().await?;
    session.insert(EPOCH, epoch).await?;
    session.insert(KEY, key).await?;
    Ok(())
}

/// Ends the session here and, through its sign-in row, on every node.
pub async fn sign_out(pool: &AnyPool, session: &Session) -> AppResult<()> {
    // The row first: should the flush fail, the session is already over.
    if let Some(key) = session.get::<String>(KEY).await? {
        sign_ins::end(pool, &key).await?;
    }
    session.flush().await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// No session at all.
    Never,
    /// The browser sent a session cookie that no longer names a live session
    /// (idle or absolute expiry, sign-out on any node, password changed).
    Ended,
}

/// Ends a session found dead: its sign-in row (if any) and the record.
async fn end(pool: &AnyPool, session: &Session, key: Option<&str>) -> AppResult<Anonymous> {
    if let Some(key) = key {
        sign_ins::end(pool, key).await?;
    }
    session.flush().await?;
    Ok(Anonymous::Ended)
}

/// The signed-in user, or why there is none.
pub async fn current_user(
    session: &Session,
    parts: &Parts,
    state: &AppState,
) -> AppResult<Result<CurrentUser, Anonymous>> {
    let sent_cookie = parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(super::SESSION_COOKIE));
    let anonymous = if sent_cookie {
        Anonymous::Ended
    } else {
        Anonymous::Never
    };
    let pool = &state.pool;
    let Some(uid) = session.get::<i64>(UID).await? else {
        return Ok(Err(anonymous));
    };
    // A session without a sign-in row key cannot be checked across nodes.
    let Some(key) = session.get::<String>(KEY).await? else {
        return Ok(Err(end(pool, session, None).await?));
    };
    let epoch = session.get::<i64>(EPOCH).await?.unwrap_or(-1);
    let now = state.now();
    let seen = session.get::<i64>(SEEN).await?.unwrap_or(0);
    // One query for the user, the configuration state and the sign-in row.
    // The row, not this node's copy of the session, decides: idle time is
    // judged by the last request on any node, by the application's clock
    // (the store's own expiry, slid by the re-save below, is the backstop).
    let Some((row, config, sign_in)) = crate::store::users::find_signed_in(pool, uid, &key).await?
    else {
        return Ok(Err(end(pool, session, Some(&key)).await?));
    };
    let live = sign_in.is_some_and(|s| sign_in_lives(&s, now));
    if !live || row.session_epoch != epoch {
        return Ok(Err(end(pool, session, Some(&key)).await?));
    }
    if now - seen >= TOUCH_AFTER_SECS {
        session.insert(SEEN, now).await?;
        // An update only: it cannot bring back a row ended meanwhile.
        sign_ins::touch(pool, &key, now).await?;
    }
    let role = row.role()?;
    Ok(Ok(CurrentUser {
        row,
        role,
        config,
        sign_in_key: key,
    }))
}

fn sign_in_redirect(parts: &Parts, why: Anonymous) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if next != "/" {
        query.append_pair("next", next);
    }
    if why == Anonymous::Ended {
        query.append_pair("ended", "1");
    }
    let query = query.finish();
    if query.is_empty() {
        Redirect::to(paths::LOGIN).into_response()
    } else {
        Redirect::to(&format!("{}?{query}", paths::LOGIN)).into_response()
    }
}

async fn load(parts: &mut Parts, state: &AppState) -> Result<CurrentUser, Response> {
    let session = Session::from_request_parts(parts, state)
        .await
        .map_err(|(status, msg)| super::errors::error_page(status, Some(msg)))?;
    match current_user(&session, parts, state).await {
        Ok(Ok(user)) => Ok(user),
        Ok(Err(why)) => Err(sign_in_redirect(parts, why)),
        Err(e) => Err(e.into_response()),
    }
}

/// Any signed-in user, whatever the role; anonymous visitors go to sign-in.
pub struct SignedIn(pub CurrentUser);

/// A signed-in administrator who has no pending forced password change.
pub struct Admin(pub CurrentUser);

/// A signed-in end user (User Options).
pub struct EndUser(pub CurrentUser);

impl<S> FromRequestParts<S> for SignedIn
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        load(parts, &state).await.map(SignedIn)
    }
}

fn must_change_redirect() -> Response {
    Redirect::to(paths::ACCOUNT_PASSWORD).into_response()
}

impl<S> FromRequestParts<S> for Admin
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let user = load(parts, &state).await?;
        if user.role != Role::Admin {
            return Err(super::errors::error_page(
                StatusCode::FORBIDDEN,
                Some(
                    "The administration console is for administrators. Your own settings are \
                     under User Options.",
                ),
            ));
        }
        if user.row.must_change_password {
            return Err(must_change_redirect());
        }
        Ok(Admin(user))
    }
}

impl<S> FromRequestParts<S> for EndUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let user = load(parts, &state).await?;
        if user.role != Role::EndUser {
            return Err(super::errors::error_page(
                StatusCode::FORBIDDEN,
                Some(
                    "User Options are for end users. Administrators manage users under User \
                     Management in the console.",
                ),
            ));
        }
        if user.row.must_change_password {
            return Err(must_change_redirect());
        }
        Ok(EndUser(user))
    }
}

/// `Option<SignedIn>`: the signed-in user if there is one, without
/// redirecting (the sign-in page, the API).
impl<S> OptionalFromRequestParts<S> for SignedIn
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let state = AppState::from_ref(state);
        let session = Session::from_request_parts(parts, &state)
            .await
            .map_err(|(status, msg)| super::errors::error_page(status, Some(msg)))?;
        match current_user(&session, parts, &state).await {
            Ok(Ok(user)) => Ok(Some(SignedIn(user))),
            Ok(Err(_)) => Ok(None),
            Err(e) => Err(e.into_response()),
        }
    }
}
