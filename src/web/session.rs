//! Who is signed in. The session holds the user's row id, the session epoch
//! it was created under, and when it was last re-saved. A user whose epoch
//! has moved on (password changed, sessions ended) is signed out on the spot.

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::paths;
use crate::domain::user::Role;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::users::{ConfigState, UserRow};

const UID: &str = "uid";
const EPOCH: &str = "epoch";
const SEEN: &str = "seen";
/// Re-save an idle session at most this often: enough to keep the 30-minute
/// idle expiry sliding without a database write on every request.
const TOUCH_AFTER_SECS: i64 = 60;

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub row: UserRow,
    pub role: Role,
    /// Read with the user in one query, so the shell needs no more queries
    /// on the common path (no pending restart).
    pub config: ConfigState,
}

/// Starts a signed-in session: a fresh id (no fixation), then the user.
pub async fn sign_in(session: &Session, user: &UserRow, now: i64) -> AppResult<()> {
    session.cycle_id().await?;
    session.insert(UID, user.id).await?;
    session.insert(EPOCH, user.session_epoch).await?;
    session.insert(SEEN, now).await?;
    Ok(())
}

/// Keeps this session valid after the user's own password change bumped
/// their epoch (which ended every other session).
pub async fn adopt_epoch(session: &Session, epoch: i64) -> AppResult<()> {
    session.cycle_id().await?;
    session.insert(EPOCH, epoch).await?;
    Ok(())
}

pub async fn sign_out(session: &Session) -> AppResult<()> {
    session.flush().await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// No session at all.
    Never,
    /// The browser sent a session cookie that no longer names a live session
    /// (idle expiry, sign-out elsewhere, password changed).
    Ended,
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
    let Some(uid) = session.get::<i64>(UID).await? else {
        return Ok(Err(anonymous));
    };
    let epoch = session.get::<i64>(EPOCH).await?.unwrap_or(-1);
    let now = state.now();
    let seen = session.get::<i64>(SEEN).await?.unwrap_or(0);
    // Idle expiry by the application's clock; the store's own expiry (the
    // same 30 minutes, slid by the re-save below) is the backstop.
    if now - seen > super::SESSION_IDLE_MINUTES * 60 {
        session.flush().await?;
        return Ok(Err(Anonymous::Ended));
    }
    let Some((row, config)) = crate::store::users::find_signed_in(&state.pool, uid).await? else {
        session.flush().await?;
        return Ok(Err(Anonymous::Ended));
    };
    if row.session_epoch != epoch {
        session.flush().await?;
        return Ok(Err(Anonymous::Ended));
    }
    if now - seen >= TOUCH_AFTER_SECS {
        session.insert(SEEN, now).await?;
    }
    let role = row.role()?;
    Ok(Ok(CurrentUser { row, role, config }))
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
