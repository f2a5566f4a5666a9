//! Bulk Administration (US-4): import end users from a CSV file (checked
//! row by row into a report first, applied only on "Apply" and then in one
//! transaction or not at all), export them, and synchronize user locales.
//!
//! The checked file waits server-side under a random token (the
//! `bulk_uploads` table, an hour at most), so "Apply" does not upload it
//! again; Apply checks it once more against the database as it is then.

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_messages::Messages;
use bytes::Bytes;
use serde::Deserialize;

use crate::domain::bulk::{COLUMNS, FileError, MAX_BYTES, Outcome, Report};
use crate::domain::locale::Locale;
use crate::domain::user::UserId;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store;
use crate::store::bulk::{Chosen, Refused, StaleUser};

use super::forms::{FORM, FieldErrors};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, render};

const PAGE: &str = paths::BULK;
const IMPORT: &str = paths::BULK_IMPORT;

/// What the multipart reader takes: the file and its form's framing.
pub const UPLOAD_BODY_LIMIT: usize = MAX_BYTES + 64 * 1024;
/// Bodies declared beyond this are refused before they are read (413).
pub const UPLOAD_HARD_LIMIT: usize = 2 * MAX_BYTES;

/// Files of at most this many rows are listed row by row; larger ones show
/// every error and the good rows as counts.
const LIST_ALL_ROWS: usize = 500;
/// Errors listed at most, so a wholly wrong 45,000-row file still gives a
/// page a browser can show; the count says how many more there are.
const ERRORS_SHOWN: usize = crate::domain::bulk::ERRORS_KEPT;
/// Users with an uninstalled locale listed by name.
const STALE_SHOWN: i64 = 100;

const TOO_LARGE: &str = "The file is larger than 16 MiB: nothing imported. Split it into \
                         smaller files.";
const BUSY: &str = "An import is running on this node: try again when it has finished.";

/// The page and its forms (1 MiB body limit, as everywhere).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(PAGE, get(index))
        .route(paths::BULK_IMPORT_APPLY, post(apply))
        .route(paths::BULK_EXPORT, get(export))
        .route(paths::BULK_LOCALES, post(sync_locales))
}

/// The upload, with its own body limits (see `web::app`).
pub fn upload_router() -> Router<AppState> {
    Router::new().route(IMPORT, post(import))
}

// ------------------------------------------------------------------ the page

struct Choice {
    value: String,
    label: String,
}

/// The locale synchronization form as typed, and its messages.
#[derive(Debug, Default, Deserialize)]
struct RawSync {
    #[serde(default)]
    target: String,
    #[serde(default)]
    user_ids: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    locale: String,
}

#[derive(Template)]
#[template(path = "pages/bulk/index.html")]
struct IndexPage {
    shell: Shell,
    columns: String,
    end_users: i64,
    nodes: Vec<Choice>,
    locales: Vec<Choice>,
    sync: RawSync,
    /// The import form's "file", and the locale synchronization's fields
    /// with its message at the top (`FORM`): the two forms share no name.
    errors: FieldErrors,
    stale_total: i64,
    stale: Vec<StaleUser>,
}

impl IndexPage {
    fn target_is(&self, value: &str) -> bool {
        self.sync.target == value || (self.sync.target.is_empty() && value == "users")
    }
}

async fn index_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    sync: RawSync,
    errors: FieldErrors,
) -> AppResult<IndexPage> {
    let nodes = store::bulk::node_names(&state.pool)
        .await?
        .into_iter()
        .map(|n| Choice {
            label: n.clone(),
            value: n,
        })
        .collect();
    let mut conn = state.pool.acquire().await?;
    let locales = store::locales::usable(&mut conn)
        .await?
        .into_iter()
        .map(|l| Choice {
            value: l.tag.to_owned(),
            label: format!("{} ({})", l.label(), l.tag),
        })
        .collect();
    drop(conn);
    let (stale_total, stale) = store::bulk::stale_locales(&state.pool, STALE_SHOWN).await?;
    let end_users = store::bulk::count_end_users(&state.pool).await?;
    Ok(IndexPage {
        shell: Shell::new(state, user, messages, "Bulk Administration", PAGE).await?,
        columns: COLUMNS.join(","),
        end_users,
        nodes,
        locales,
        sync,
        errors,
        stale_total,
        stale,
    })
}

async fn index(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let page = index_page(
        &state,
        &user,
        messages,
        RawSync::default(),
        FieldErrors::default(),
    )
    .await?;
    render(StatusCode::OK, &page)
}

// -------------------------------------------------------------------- import

struct RowView {
    row: usize,
    user_id: String,
    outcome: &'static str,
    class: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "pages/bulk/report.html")]
struct ReportPage {
    shell: Shell,
    file_name: String,
    size: String,
    total: usize,
    created: usize,
    updated: usize,
    unchanged: usize,
    errors: usize,
    rows: Vec<RowView>,
    /// Every row is listed (a small file); otherwise errors only.
    listed_all: bool,
    /// Errors not listed (beyond `ERRORS_SHOWN`).
    errors_not_shown: usize,
    /// Present when the file is clean: what "Apply" sends back.
    token: Option<String>,
    /// Why an Apply was refused after all (the database changed).
    refused_note: Option<String>,
}

fn row_views(report: &Report) -> (Vec<RowView>, bool, usize) {
    let listed_all = report.total <= LIST_ALL_ROWS;
    let mut shown_errors = 0;
    let mut views = Vec::new();
    for r in &report.rows {
        let (outcome, class, message) = match &r.outcome {
            Outcome::Create(_) => ("Create", "status-pass", String::new()),
            Outcome::Update {
                unchanged: false, ..
            } => ("Update", "status-pass", String::new()),
            Outcome::Update {
                unchanged: true, ..
            } => ("Update", "status-pass", "No change.".to_owned()),
            Outcome::Error(message) => ("Error", "status-fail", message.clone()),
        };
        let is_error = class == "status-fail";
        if is_error {
            if shown_errors == ERRORS_SHOWN {
                continue;
            }
            shown_errors += 1;
        } else if !listed_all {
            continue;
        }
        views.push(RowView {
            row: r.row,
            user_id: r.user_id.clone(),
            outcome,
            class,
            message,
        });
    }
    (views, listed_all, report.errors - shown_errors)
}

/// "2.4 MiB", "512 bytes".
fn size(bytes: usize) -> String {
    if bytes < 1024 {
        crate::domain::count(bytes as i64, "byte")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

async fn report_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    (file_name, bytes): (&str, usize),
    report: &Report,
    token: Option<String>,
    refused_note: Option<String>,
) -> AppResult<ReportPage> {
    let (rows, listed_all, errors_not_shown) = row_views(report);
    Ok(ReportPage {
        shell: Shell::new(state, user, messages, "Import Validation Report", PAGE).await?,
        file_name: file_name.to_owned(),
        size: size(bytes),
        total: report.total,
        created: report.created,
        updated: report.updated,
        unchanged: report.unchanged,
        errors: report.errors,
        rows,
        listed_all,
        errors_not_shown,
        token,
        refused_note,
    })
}

/// Reads the `file` part: (name, bytes), or the message for beside the
/// field. The part is read chunk by chunk and given up on as soon as it
/// passes `MAX_BYTES`, counting the bytes that arrived, whatever the request
/// declared; the rest of the body is never read.
async fn read_file(multipart: &mut Multipart) -> Result<(String, Bytes), String> {
    let failed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            TOO_LARGE.to_owned()
        } else {
            format!(
                "The upload could not be read ({}): nothing imported.",
                e.body_text()
            )
        }
    };
    let mut file = None;
    while let Some(mut field) = multipart.next_field().await.map_err(failed)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or_default().to_owned();
        // One buffer, grown as chunks come: never a second copy of the file.
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > MAX_BYTES {
                return Err(TOO_LARGE.to_owned());
            }
            bytes.extend_from_slice(&chunk);
        }
        // A form sent without a chosen file has an empty, unnamed part.
        if !(name.is_empty() && bytes.is_empty()) {
            // The file is all this form carries: the rest is not read.
            file = Some((name, Bytes::from(bytes)));
            break;
        }
    }
    file.ok_or_else(|| "Choose a CSV file to import: nothing was uploaded.".to_owned())
}

fn file_message(name: &str, error: &FileError) -> String {
    let message = match error {
        FileError::TooLarge => TOO_LARGE.to_owned(),
        other => other.to_string(),
    };
    if name.is_empty() {
        message
    } else {
        format!("{name}: {message}")
    }
}

async fn refuse_file(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    message: String,
) -> AppResult<Response> {
    refuse_file_with(
        state,
        user,
        messages,
        StatusCode::UNPROCESSABLE_ENTITY,
        message,
    )
    .await
}

async fn refuse_file_with(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    status: StatusCode,
    message: String,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    errors.set("file", message);
    let page = index_page(state, user, messages, RawSync::default(), errors).await?;
    render(status, &page)
}

/// The page saying another import runs here (409: try again later).
async fn refuse_busy(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
) -> AppResult<Response> {
    refuse_file_with(state, user, messages, StatusCode::CONFLICT, BUSY.to_owned()).await
}

/// Checks the uploaded file and shows the report; nothing is written to
/// the users. A clean file is kept for "Apply".
async fn import(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    mut multipart: Multipart,
) -> AppResult<Response> {
    // Taken before the body is read, so one upload's buffer at a time is
    // held; dropped with this future however the request ends, which stops
    // the check on its blocking thread.
    let Some(work) = state.imports.try_start() else {
        return refuse_busy(&state, &user, messages).await;
    };
    let (name, bytes) = match read_file(&mut multipart).await {
        Ok(file) => file,
        Err(message) => return refuse_file(&state, &user, messages, message).await,
    };
    let report = match store::bulk::check(&state.pool, bytes.clone(), &work).await? {
        Ok(report) => report,
        Err(e) => return refuse_file(&state, &user, messages, file_message(&name, &e)).await,
    };
    // The page keeps only the rows it shows: the full report (every row
    // parsed, several times the file's size) goes before the file is copied
    // into the database, so the two are never held at once.
    let mut page = report_page(
        &state,
        &user,
        messages,
        (&name, bytes.len()),
        &report,
        None,
        None,
    )
    .await?;
    let clean = report.is_clean();
    drop(report);
    let status = if clean {
        let token =
            store::bulk::save_pending(&state.pool, &user.row.user_id, &name, &bytes, state.now())
                .await?;
        page.token = Some(token);
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    drop(bytes);
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
struct ApplyForm {
    #[serde(default)]
    token: String,
}

/// Applies a checked file: checked again, then written in one transaction
/// or not at all.
async fn apply(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(form): Form<ApplyForm>,
) -> AppResult<Response> {
    // Before the stored file is loaded: a busy node loads nothing.
    let Some(work) = state.imports.try_start() else {
        return refuse_busy(&state, &user, messages).await;
    };
    let now = state.now();
    let token = form.token.trim();
    let Some(pending) =
        store::bulk::find_pending(&state.pool, token, &user.row.user_id, now).await?
    else {
        let message = "This checked file is no longer waiting to be applied (it was applied \
                       already, or checked more than an hour ago): upload it again. Nothing was \
                       written."
            .to_owned();
        return refuse_file(&state, &user, messages, message).await;
    };
    let bytes_len = pending.bytes.len();
    let hash = store::bulk::unusable_password_hash().await?;
    let outcome = store::bulk::apply(
        &state.pool,
        Bytes::from(pending.bytes),
        &hash,
        &user.row.user_id,
        now,
        Some(token),
        &work,
    )
    .await?;
    match outcome {
        Ok(applied) => {
            messages.success(format!("Import applied: {}.", applied.summary()));
            Ok(Redirect::to(PAGE).into_response())
        }
        Err(Refused::Rows(report)) => {
            let note = "The users, nodes or locales changed since the file was checked, and \
                        rows are now in error: nothing was written. Fix them and upload the \
                        file again."
                .to_owned();
            let page = report_page(
                &state,
                &user,
                messages,
                (&pending.file_name, bytes_len),
                &report,
                None,
                Some(note),
            )
            .await?;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(Refused::File(e)) => {
            let message = file_message(&pending.file_name, &e);
            refuse_file(&state, &user, messages, message).await
        }
    }
}

// -------------------------------------------------------------------- export

/// Every end user as `users.csv`, in the import format.
async fn export(State(state): State<AppState>, Admin(_user): Admin) -> AppResult<Response> {
    let csv = store::bulk::export(&state.pool).await?;
    let mut response = csv.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"users.csv\""),
    );
    // Names and mailboxes: kept out of shared caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

// ------------------------------------------------------ locale synchronization

/// Parses the form into whose locale to set and to what, with every message
/// placed beside its field.
fn parse_sync(raw: &RawSync) -> Result<(Chosen, Locale), FieldErrors> {
    let mut errors = FieldErrors::default();
    let chosen = match raw.target.as_str() {
        "users" | "" => {
            let mut ids: Vec<UserId> = Vec::new();
            let mut bad = Vec::new();
            for (n, line) in raw.user_ids.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match UserId::parse(line) {
                    Ok(id) => {
                        if !ids
                            .iter()
                            .any(|o| o.as_str().eq_ignore_ascii_case(id.as_str()))
                        {
                            ids.push(id);
                        }
                    }
                    Err(e) => bad.push(format!("line {}: {e}", n + 1)),
                }
            }
            if !bad.is_empty() {
                bad.truncate(10);
                errors.set("user_ids", bad.join(" "));
                None
            } else if ids.is_empty() {
                errors.set("user_ids", "Enter at least one User ID, one per line.");
                None
            } else {
                Some(Chosen::Users(ids))
            }
        }
        "node" => {
            if raw.node.trim().is_empty() {
                errors.set("node", "Choose a node.");
                None
            } else {
                Some(Chosen::Node(raw.node.trim().to_owned()))
            }
        }
        "stale" => Some(Chosen::Stale),
        _ => {
            errors.set("target", "Choose whose locale to set.");
            None
        }
    };
    let locale = Locale::parse(&raw.locale)
        .map_err(|e| errors.set("locale", e))
        .ok();
    match (chosen, locale) {
        (Some(chosen), Some(locale)) => Ok((chosen, locale)),
        _ => Err(errors),
    }
}

async fn sync_locales(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawSync>,
) -> AppResult<Response> {
    let (chosen, locale) = match parse_sync(&raw) {
        Ok(parsed) => parsed,
        Err(errors) => {
            let page = index_page(&state, &user, messages, raw, errors).await?;
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let outcome = store::bulk::sync_locales(
        &state.pool,
        &chosen,
        &locale,
        &user.row.user_id,
        state.now(),
    )
    .await?;
    match outcome {
        Ok(synced) => {
            let mut text = format!(
                "User Locale set to {} for {}.",
                locale.label(),
                crate::domain::count(synced.changed as i64, "user")
            );
            if synced.already > 0 {
                text.push_str(&format!(" {} had it already.", synced.already));
            }
            messages.success(text);
            Ok(Redirect::to(PAGE).into_response())
        }
        Err(why) => {
            let mut errors = FieldErrors::default();
            errors.set(FORM, why);
            let page = index_page(&state, &user, messages, raw, errors).await?;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_forms_parse_with_messages_beside_fields() {
        let raw = RawSync {
            target: "users".to_owned(),
            user_ids: "alice\n\n Bob \nALICE\n".to_owned(),
            node: String::new(),
            locale: "de-DE".to_owned(),
        };
        let (chosen, locale) = parse_sync(&raw).expect("valid");
        assert_eq!(locale.tag, "de-DE");
        let Chosen::Users(ids) = chosen else {
            panic!("{chosen:?}")
        };
        assert_eq!(ids.len(), 2, "blank lines and repeats dropped");

        let raw = RawSync {
            target: "users".to_owned(),
            user_ids: "ok\nnot ok\n".to_owned(),
            node: String::new(),
            locale: "xx".to_owned(),
        };
        let errors = parse_sync(&raw).unwrap_err();
        assert!(
            errors
                .get("user_ids")
                .unwrap_or_default()
                .contains("line 2")
        );
        assert!(errors.has("locale"));

        let raw = RawSync {
            target: "node".to_owned(),
            locale: "en-US".to_owned(),
            ..RawSync::default()
        };
        assert!(parse_sync(&raw).unwrap_err().has("node"));
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(16 * 1024 * 1024), "16.0 MiB");
    }
}
