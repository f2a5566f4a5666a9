//! Error pages. Handlers' own errors render through `AppError`; bare error
//! responses from extractors and layers (a form that does not parse, a body
//! over the limit, a timeout) are given a readable page by `decorate`, so no
//! visitor ever meets a blank or plain-text answer.

use askama::Template;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::paths;

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

fn title_and_message(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("Bad request", "The request could not be understood."),
        401 => ("Sign-in required", "Sign in to continue."),
        403 => (
            "Access denied",
            "Your account does not have access to this page.",
        ),
        404 => ("Page not found", "There is no page at this address."),
        405 => (
            "Not allowed",
            "This address does not accept that kind of request.",
        ),
        408 => (
            "Request timed out",
            "The request took too long and was stopped. Nothing was half-written; try again.",
        ),
        413 => (
            "Too large",
            "What you sent is larger than this page accepts, so nothing was changed.",
        ),
        415 => (
            "Unsupported format",
            "The form was sent in a format this page does not accept.",
        ),
        422 => (
            "Form not understood",
            "The form could not be read: a field is missing or malformed. Go back, check the \
             fields and send it again.",
        ),
        429 => ("Too many requests", "Wait a moment and try again."),
        503 => (
            "Database unavailable",
            "The database cannot be reached just now, so this page cannot be shown. Nothing was \
             half-written; the service reconnects by itself: try again in a moment.",
        ),
        _ if status.is_server_error() => (
            "Something went wrong",
            "Something went wrong on the server. Nothing was half-written; the details are in \
             the service log.",
        ),
        _ => ("Request failed", "The request could not be completed."),
    }
}

/// A complete HTML error page with the given status.
pub fn error_page(status: StatusCode, message: Option<&str>) -> Response {
    let (title, default_message) = title_and_message(status);
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message: message.unwrap_or(default_message),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the error page failed");
            (status, format!("{} {}", status.as_u16(), title)).into_response()
        }
    }
}

/// A JSON error body for API callers: `{"error": "..."}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, None)
}

fn is_html_or_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html") || ct.starts_with("application/json"))
}

/// Replaces the body of bare 4xx/5xx responses with an error page (or JSON
/// under /api/), keeping the status and any headers such as Allow.
pub async fn decorate(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with(paths::API_PREFIX);
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_html_or_json(&response) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = if api {
        json_error(status, title_and_message(status).1)
    } else {
        error_page(status, None)
    };
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = new_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    } else {
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Response::from_parts(parts, Body::new(body))
}

/// Renders the error with the plain error page; the chain goes to the log.
impl IntoResponse for crate::error::AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let mut chain = format!("{self}");
            let mut source = std::error::Error::source(&self);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %chain, "request failed");
        }
        match &self {
            crate::error::AppError::Refused(refusal) => {
                error_page(status, Some(&refusal.to_string()))
            }
            _ => error_page(status, None),
        }
    }
}
