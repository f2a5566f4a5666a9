//! System > Audit Log: every configuration change, newest first, with what
//! was there before and after (secrets were redacted before they were stored).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum_messages::Messages;
use serde::Deserialize;

use crate::error::AppResult;
use crate::state::AppState;
use crate::store;

use super::paths;
use super::session::Admin;
use super::shell::{Shell, format_time, render};

pub const PATH: &str = paths::AUDIT_LOG;
const PAGE_SIZE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(audit_log))
}

struct EntryView {
    at: String,
    actor: String,
    action: String,
    target: String,
    before: Vec<(String, String)>,
    after: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "pages/audit/index.html")]
struct AuditPage {
    shell: Shell,
    entries: Vec<EntryView>,
    older: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    before: Option<i64>,
}

/// A stored JSON object as `name: value` lines for people.
fn fields(json: Option<&str>) -> Vec<(String, String)> {
    let Some(value) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return Vec::new();
    };
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let shown = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => "(none)".to_owned(),
                    other => other.to_string(),
                };
                (k.replace('_', " "), shown)
            })
            .collect(),
        other => vec![(String::new(), other.to_string())],
    }
}

async fn audit_log(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(query): Query<AuditQuery>,
    messages: Messages,
) -> AppResult<Response> {
    let rows = store::audit::page(&state.pool, query.before, PAGE_SIZE + 1).await?;
    let has_more = rows.len() as i64 > PAGE_SIZE;
    let rows: Vec<_> = rows.into_iter().take(PAGE_SIZE as usize).collect();
    let older = if has_more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let entries = rows
        .into_iter()
        .map(|r| EntryView {
            at: format_time(r.at),
            before: fields(r.before_json.as_deref()),
            after: fields(r.after_json.as_deref()),
            actor: r.actor,
            action: r.action,
            target: r.target,
        })
        .collect();
    render(
        StatusCode::OK,
        &AuditPage {
            shell: Shell::new(&state, &user, messages, "Audit Log", PATH).await?,
            entries,
            older,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn json_objects_become_lines() {
        let lines = fields(Some(
            r#"{"account_name":"svc@example.com","port":443,"test_mailbox":null}"#,
        ));
        assert_eq!(
            lines,
            vec![
                ("account name".to_owned(), "svc@example.com".to_owned()),
                ("port".to_owned(), "443".to_owned()),
                ("test mailbox".to_owned(), "(none)".to_owned()),
            ]
        );
        assert!(fields(None).is_empty());
        assert!(fields(Some("not json")).is_empty());
    }
}
