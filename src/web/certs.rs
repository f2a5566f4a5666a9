//! System > Security > Certificate Management (TS-7) and the Certificate
//! Import Tool (TS-8). Uploads are parsed at the edge into `Candidate`s
//! (refusing private keys, garbage and empty or oversized files before
//! anything is stored); the store trusts them in one transaction with the
//! restart entry (SV-3) and the audit entry.

use std::collections::HashSet;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_messages::Messages;
use rustls::pki_types::PrivateKeyDer;

use crate::domain::gateway::{Port, ServerLocation};
use crate::domain::names::{NameCheck, check_name};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::trust::{Candidate, Imported, TrustedRow};
use crate::tls::certinfo::{self, CertInfo, colon_fingerprint};
use crate::tls::chain::EXPIRY_WARNING_SECS;
use crate::tls::fetch::{FETCH_TIMEOUT, presented_chain};

use super::forms::{FORM, FieldErrors};
use super::paths;
use super::session::{Admin, CurrentUser};
use super::shell::{Shell, format_time, render};

const LIST: &str = paths::CERTIFICATES;
const IMPORT: &str = paths::CERTIFICATE_IMPORT;

/// Largest certificate file or pasted text accepted (TS-7).
pub const UPLOAD_LIMIT: usize = 1024 * 1024;
/// What the multipart reader takes: the upload and its form's framing.
pub const UPLOAD_BODY_LIMIT: usize = UPLOAD_LIMIT + 64 * 1024;
/// Bodies declared beyond this are refused before they are read.
pub const UPLOAD_HARD_LIMIT: usize = 8 * 1024 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

const NO_CERTIFICATE: &str = "No certificate found in the file: it must hold -----BEGIN \
                              CERTIFICATE----- blocks or be one DER certificate. Nothing stored.";

const PRIVATE_KEY: &str = "This file contains a private key: upload certificates only; the key \
                           stays on the Exchange server. Nothing stored.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(LIST, get(list).post(upload))
        .route(IMPORT, get(import_form).post(import_fetch))
        .route(paths::CERTIFICATE_IMPORT_ACCEPT, post(import_accept))
        .route(paths::CERTIFICATE_DELETE, get(confirm_delete).post(delete))
}

async fn shell(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    title: &str,
) -> AppResult<Shell> {
    Shell::new(state, user, messages, title, LIST).await
}

// ------------------------------------------------------------ upload parsing

/// Reads an uploaded file or pasted text as certificates: a PEM bundle (one
/// or many CERTIFICATE blocks) or one DER certificate. The message says what
/// is wrong and that nothing was stored.
pub fn parse_upload(bytes: &[u8]) -> Result<Vec<Candidate>, String> {
    // Windows editors save PEM with a UTF-8 byte-order mark; left in, it
    // hides the first BEGIN line from the PEM reader.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("The file is empty: nothing stored.".to_owned());
    }
    if bytes.len() > UPLOAD_LIMIT {
        return Err("The file is larger than 1 MiB: nothing stored.".to_owned());
    }
    // Any key block, whatever its algorithm ("PRIVATE KEY", "RSA PRIVATE
    // KEY", "ENCRYPTED PRIVATE KEY", ...), is refused before parsing.
    if contains(bytes, b"PRIVATE KEY") {
        return Err(PRIVATE_KEY.to_owned());
    }
    if contains(bytes, b"-----BEGIN ") {
        return parse_pem(bytes);
    }
    match certinfo::parse(bytes) {
        Ok(info) => Ok(vec![Candidate {
            der: bytes.to_vec(),
            info,
        }]),
        // A DER key (PKCS#8, PKCS#1 or SEC1) gets the key message too.
        Err(_) if PrivateKeyDer::try_from(bytes).is_ok() => Err(PRIVATE_KEY.to_owned()),
        Err(_) => Err(
            "This file is neither PEM certificates nor a DER certificate: nothing stored."
                .to_owned(),
        ),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What is wrong with a PEM file, in words an administrator can act on
/// (the reader's own errors are for programmers). `block` counts from 1.
fn pem_damage(error: rustls_pemfile::Error, block: usize) -> String {
    let why = match error {
        rustls_pemfile::Error::Base64Decode(_) => {
            format!("the base64 text of block {block} cannot be read")
        }
        rustls_pemfile::Error::MissingSectionEnd { end_marker } => format!(
            "block {block} has no -----END {}----- line",
            String::from_utf8_lossy(&end_marker).trim()
        ),
        rustls_pemfile::Error::IllegalSectionStart { .. } => format!(
            "the BEGIN line of block {block} is malformed (it must read -----BEGIN \
             CERTIFICATE-----)"
        ),
    };
    format!("The PEM file is damaged: {why}. Nothing stored.")
}

fn parse_pem(bytes: &[u8]) -> Result<Vec<Candidate>, String> {
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut rest = bytes;
    let mut n = 0;
    loop {
        let item = match rustls_pemfile::read_one_from_slice(rest) {
            Ok(Some((item, remainder))) => {
                rest = remainder;
                item
            }
            Ok(None) => break,
            Err(e) => return Err(pem_damage(e, n + 1)),
        };
        n += 1;
        let rustls_pemfile::Item::X509Certificate(der) = item else {
            return Err(format!(
                "Block {n} of the PEM text is not a certificate (only CERTIFICATE blocks are \
                 accepted): nothing stored."
            ));
        };
        let info = certinfo::parse(&der).map_err(|e| {
            format!("Certificate {n} of the PEM text cannot be read: {e} Nothing stored.")
        })?;
        // The same certificate twice in one file is trusted once.
        if !candidates.iter().any(|c| c.info.sha256 == info.sha256) {
            candidates.push(Candidate {
                der: der.to_vec(),
                info,
            });
        }
    }
    if candidates.is_empty() {
        return Err(NO_CERTIFICATE.to_owned());
    }
    Ok(candidates)
}

// ---------------------------------------------------------------- the list

struct CertRow {
    id: i64,
    subject: String,
    issuer: String,
    not_before: String,
    not_after: String,
    fingerprint: String,
    /// Expired, or expiring within 30 days.
    warning: Option<String>,
    is_ca: bool,
    /// Gateways whose server this certificate names (self-signed or leaf).
    anchors: Vec<String>,
}

#[derive(Template)]
#[template(path = "pages/certs/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<CertRow>,
    pem: String,
    errors: FieldErrors,
}

fn expiry_warning(not_after: i64, now: i64) -> Option<String> {
    if not_after < now {
        Some(format!("Expired on {}", format_time(not_after)))
    } else if not_after - now <= EXPIRY_WARNING_SECS {
        let days = (not_after - now) / 86_400;
        Some(match days {
            0 => "Expires within a day".to_owned(),
            1 => "Expires in 1 day".to_owned(),
            n => format!("Expires in {n} days"),
        })
    } else {
        None
    }
}

async fn list_page(
    state: &AppState,
    user: &CurrentUser,
    messages: Messages,
    pem: String,
    errors: FieldErrors,
) -> AppResult<ListPage> {
    let now = state.now();
    let gateways = store::gateways::list(&state.pool, None).await?;
    let servers: Vec<(String, ServerLocation)> = gateways
        .into_iter()
        .filter_map(|g| {
            let location = ServerLocation::parse(&g.server).ok()?;
            Some((g.description, location))
        })
        .collect();
    let rows = store::trust::list(&state.pool)
        .await?
        .into_iter()
        .map(|row| cert_row(row, &servers, now))
        .collect();
    Ok(ListPage {
        shell: shell(state, user, messages, "Certificate Management").await?,
        rows,
        pem,
        errors,
    })
}

/// No chains are stored, so "anchors" is what can be said honestly: a CA
/// anchors whatever chain leads to it; any other certificate (a self-signed
/// server certificate) anchors the gateways whose server it names (TS-4).
fn cert_row(row: TrustedRow, servers: &[(String, ServerLocation)], now: i64) -> CertRow {
    let parsed = certinfo::parse(&row.der).ok();
    let is_ca = parsed.as_ref().is_some_and(|info| info.is_ca);
    let anchors = match &parsed {
        Some(info) if !info.is_ca => servers
            .iter()
            .filter(|(_, location)| {
                matches!(
                    check_name(location, &info.names, true),
                    NameCheck::Verified { .. }
                )
            })
            .map(|(description, location)| format!("{description} ({location})"))
            .collect(),
        _ => Vec::new(),
    };
    CertRow {
        id: row.id,
        warning: expiry_warning(row.not_after, now),
        not_before: format_time(row.not_before),
        not_after: format_time(row.not_after),
        fingerprint: colon_fingerprint(&row.sha256),
        subject: row.subject,
        issuer: row.issuer,
        is_ca,
        anchors,
    }
}

async fn list(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let page = list_page(
        &state,
        &user,
        messages,
        String::new(),
        FieldErrors::default(),
    )
    .await?;
    render(StatusCode::OK, &page)
}

// ------------------------------------------------------------------ upload

/// The flash after an import: what was added, what was already there.
fn confirm_imported(messages: Messages, imported: &Imported) -> Messages {
    let added = imported.added.len();
    let already = imported.already.len();
    let mut messages = messages;
    if added > 0 {
        messages = messages.success(format!(
            "{} imported: {}. Restart the Presence Engine for the change to take effect.",
            certificates(added),
            imported.added.join("; ")
        ));
    }
    if already > 0 {
        let text = format!(
            "{} already trusted, not added again: {}.",
            certificates(already),
            imported.already.join("; ")
        );
        messages = if added > 0 {
            messages.info(text)
        } else {
            messages.warning(format!("Nothing imported. {text}"))
        };
    }
    messages
}

fn certificates(n: usize) -> String {
    crate::domain::count(n as i64, "certificate")
}

/// The upload as sent: the file (name and bytes) and the pasted text.
#[derive(Default)]
struct RawUpload {
    file: Option<(String, Vec<u8>)>,
    pem: String,
}

/// Reads the multipart form, bounded by `UPLOAD_BODY_LIMIT`; a field cut
/// short by that limit is reported as too large, beside the field.
async fn read_upload(multipart: &mut Multipart) -> Result<RawUpload, String> {
    let mut raw = RawUpload::default();
    let too_large = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "The file is larger than 1 MiB: nothing stored.".to_owned()
        } else {
            format!(
                "The upload could not be read ({}): nothing stored.",
                e.body_text()
            )
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(too_large)? {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let bytes = field.bytes().await.map_err(too_large)?;
                // A form sent without a chosen file has an empty, unnamed part.
                if !(name.is_empty() && bytes.is_empty()) {
                    raw.file = Some((name, bytes.to_vec()));
                }
            }
            Some("pem") => raw.pem = field.text().await.map_err(too_large)?,
            _ => {}
        }
    }
    Ok(raw)
}

async fn upload(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let raw = match read_upload(&mut multipart).await {
        Ok(raw) => raw,
        Err(message) => {
            let mut errors = FieldErrors::default();
            errors.set("file", message);
            let page = list_page(&state, &user, messages, String::new(), errors);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page.await?);
        }
    };
    let mut errors = FieldErrors::default();
    let mut candidates = Vec::new();
    match (&raw.file, raw.pem.trim().is_empty()) {
        (None, true) => {
            errors.set(
                "file",
                "Choose a certificate file (PEM or DER), or paste PEM certificates: nothing was \
                 uploaded.",
            );
        }
        _ => {
            if let Some((name, bytes)) = &raw.file {
                match parse_upload(bytes) {
                    Ok(found) => candidates.extend(found),
                    Err(e) if name.is_empty() => errors.set("file", e),
                    Err(e) => errors.set("file", format!("{name}: {e}")),
                }
            }
            if !raw.pem.trim().is_empty() {
                match parse_upload(raw.pem.as_bytes()) {
                    Ok(found) => candidates.extend(found),
                    Err(e) => {
                        let mut message = e
                            .replace("This file", "The pasted text")
                            .replace("The file", "The pasted text");
                        if contains(raw.pem.as_bytes(), b"PRIVATE KEY") {
                            // The box is emptied below; say why it is.
                            message
                                .push_str(" The text box was emptied so the key is not sent back.");
                        }
                        errors.set("pem", message)
                    }
                }
            }
        }
    }
    if errors.any() {
        // A private key is a secret: never sent back into the page.
        let shown = if contains(raw.pem.as_bytes(), b"PRIVATE KEY") {
            String::new()
        } else {
            raw.pem
        };
        let page = list_page(&state, &user, messages, shown, errors).await?;
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let imported =
        store::trust::import(&state.pool, &candidates, &user.row.user_id, state.now()).await?;
    confirm_imported(messages, &imported);
    Ok(Redirect::to(LIST).into_response())
}

// ------------------------------------------------------------------ delete

#[derive(Template)]
#[template(path = "pages/certs/delete.html")]
struct DeletePage {
    shell: Shell,
    row: CertRow,
}

async fn confirm_delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = store::trust::find(&state.pool, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let gateways = store::gateways::list(&state.pool, None).await?;
    let servers: Vec<(String, ServerLocation)> = gateways
        .into_iter()
        .filter_map(|g| Some((g.description, ServerLocation::parse(&g.server).ok()?)))
        .collect();
    let now = state.now();
    render(
        StatusCode::OK,
        &DeletePage {
            shell: shell(&state, &user, messages, "Delete Trusted Certificate").await?,
            row: cert_row(row, &servers, now),
        },
    )
}

async fn delete(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<i64>,
    messages: Messages,
) -> AppResult<Response> {
    let row = store::trust::delete(&state.pool, id, &user.row.user_id, state.now()).await?;
    messages.success(format!(
        "Deleted certificate {}. Restart the Presence Engine for the change to take effect.",
        row.subject
    ));
    Ok(Redirect::to(LIST).into_response())
}

// ------------------------------------------------------------- import tool

/// One certificate of a fetched chain.
struct ChainRow {
    position: &'static str,
    subject: String,
    issuer: String,
    not_before: String,
    not_after: String,
    warning: Option<String>,
    sha256: String,
    fingerprint: String,
    is_ca: bool,
    self_issued: bool,
    trusted: bool,
    /// Ticked by default: CA and self-signed certificates are anchors.
    ticked: bool,
}

#[derive(Template)]
#[template(path = "pages/certs/import.html")]
struct ImportPage {
    shell: Shell,
    host: String,
    port: String,
    /// Beside Host and Port; at the top of the chain's form (`FORM`), why
    /// the chosen certificates were not imported.
    errors: FieldErrors,
    /// The chain fetched, with the host and port it came from.
    chain: Option<Vec<ChainRow>>,
    fetched_from: String,
}

#[derive(Debug, Default, serde::Deserialize)]
struct RawTarget {
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
}

impl ImportPage {
    async fn new(
        state: &AppState,
        user: &CurrentUser,
        messages: Messages,
        raw: &RawTarget,
    ) -> AppResult<ImportPage> {
        Ok(ImportPage {
            shell: shell(state, user, messages, "Certificate Import Tool").await?,
            host: raw.host.clone(),
            port: raw.port.clone(),
            errors: FieldErrors::default(),
            chain: None,
            fetched_from: String::new(),
        })
    }
}

async fn import_form(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let raw = RawTarget {
        host: String::new(),
        port: Port::RECOMMENDED.to_string(),
    };
    let page = ImportPage::new(&state, &user, messages, &raw).await?;
    render(StatusCode::OK, &page)
}

/// Parses host and port, placing messages on `page`.
fn parse_target(raw: &RawTarget, page: &mut ImportPage) -> Option<(ServerLocation, Port)> {
    let host = ServerLocation::parse(&raw.host)
        .map_err(|e| page.errors.set("host", e))
        .ok();
    let port = Port::parse(&raw.port)
        .map_err(|e| page.errors.set("port", e))
        .ok();
    host.zip(port)
}

/// A fetched chain, each certificate parsed where it can be.
struct Fetched {
    chain: Vec<(Vec<u8>, Result<CertInfo, String>)>,
}

async fn fetch(host: &ServerLocation, port: Port) -> Result<Fetched, String> {
    let chain = presented_chain(host, port.get(), FETCH_TIMEOUT).await?;
    Ok(Fetched {
        chain: chain
            .into_iter()
            .map(|der| {
                let info = certinfo::parse(&der);
                (der.to_vec(), info)
            })
            .collect(),
    })
}

fn chain_rows(fetched: &Fetched, trusted: &HashSet<String>, now: i64) -> Vec<ChainRow> {
    let last = fetched.chain.len().saturating_sub(1);
    fetched
        .chain
        .iter()
        .enumerate()
        .map(|(i, (der, info))| {
            let position = match i {
                0 => "Server certificate",
                i if i == last => "Last in chain",
                _ => "Intermediate",
            };
            match info {
                Ok(info) => ChainRow {
                    position,
                    subject: info.subject.clone(),
                    issuer: info.issuer.clone(),
                    not_before: format_time(info.not_before),
                    not_after: format_time(info.not_after),
                    warning: expiry_warning(info.not_after, now),
                    sha256: info.sha256.clone(),
                    fingerprint: colon_fingerprint(&info.sha256),
                    is_ca: info.is_ca,
                    self_issued: info.self_issued,
                    trusted: trusted.contains(&info.sha256),
                    ticked: info.is_ca || info.self_issued,
                },
                Err(e) => {
                    let sha256 = certinfo::sha256_hex(der);
                    ChainRow {
                        position,
                        subject: format!("(unreadable: {e})"),
                        issuer: String::new(),
                        not_before: String::new(),
                        not_after: String::new(),
                        warning: None,
                        fingerprint: colon_fingerprint(&sha256),
                        trusted: trusted.contains(&sha256),
                        sha256: String::new(),
                        is_ca: false,
                        self_issued: false,
                        ticked: false,
                    }
                }
            }
        })
        .collect()
}

async fn import_fetch(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(raw): Form<RawTarget>,
) -> AppResult<Response> {
    let mut page = ImportPage::new(&state, &user, messages, &raw).await?;
    let Some((host, port)) = parse_target(&raw, &mut page) else {
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    page.host = host.to_string();
    page.port = port.get().to_string();
    match fetch(&host, port).await {
        Err(e) => {
            page.errors.set("host", e);
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Ok(fetched) => {
            let trusted = store::trust::fingerprints(&state.pool).await?;
            page.chain = Some(chain_rows(&fetched, &trusted, state.now()));
            page.fetched_from = format!("{}:{}", page.host, page.port);
            render(StatusCode::OK, &page)
        }
    }
}

/// Accepting re-fetches the chain and imports the ticked fingerprints the
/// server still presents: the browser sends only fingerprints, never the
/// certificates, so nothing it sends can slip in a certificate of its own.
async fn import_accept(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
    Form(pairs): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let mut raw = RawTarget::default();
    let mut ticked: Vec<String> = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "host" => raw.host = value,
            "port" => raw.port = value,
            "accept" => ticked.push(value.trim().to_ascii_lowercase()),
            _ => {}
        }
    }
    let mut page = ImportPage::new(&state, &user, messages.clone(), &raw).await?;
    let Some((host, port)) = parse_target(&raw, &mut page) else {
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    page.host = host.to_string();
    page.port = port.get().to_string();
    let fetched = match fetch(&host, port).await {
        Ok(fetched) => fetched,
        Err(e) => {
            page.errors.set("host", e);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let trusted = store::trust::fingerprints(&state.pool).await?;
    page.chain = Some(chain_rows(&fetched, &trusted, state.now()));
    page.fetched_from = format!("{}:{}", page.host, page.port);

    let mut chosen: Vec<Candidate> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for fingerprint in &ticked {
        let presented = fetched.chain.iter().find_map(|(der, info)| match info {
            Ok(info) if &info.sha256 == fingerprint => Some(Candidate {
                der: der.clone(),
                info: info.clone(),
            }),
            _ => None,
        });
        match presented {
            Some(c) if !chosen.iter().any(|x| x.info.sha256 == c.info.sha256) => chosen.push(c),
            Some(_) => {}
            None => refused.push(fingerprint.clone()),
        }
    }
    if !refused.is_empty() {
        let shown: Vec<String> = refused
            .iter()
            .map(|f| {
                let hex_ok = f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit());
                if hex_ok {
                    colon_fingerprint(f)
                } else {
                    "(not a SHA-256 fingerprint)".to_owned()
                }
            })
            .collect();
        let message = format!(
            "{} does not present the certificate{} {}: nothing was imported. Review the chain \
             as presented now, below, and accept again.",
            page.fetched_from,
            if refused.len() == 1 { "" } else { "s" },
            shown.join(", ")
        );
        page.errors.set(FORM, message);
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    if chosen.is_empty() {
        page.errors.set(
            FORM,
            "Tick at least one certificate to import: nothing was imported.",
        );
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let imported =
        store::trust::import(&state.pool, &chosen, &user.row.user_id, state.now()).await?;
    confirm_imported(messages, &imported);
    Ok(Redirect::to(LIST).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_why() {
        assert!(parse_upload(b"").unwrap_err().contains("empty"));
        assert!(parse_upload(b"  \n").unwrap_err().contains("empty"));
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(parse_upload(key).unwrap_err().contains("private key"));
        assert!(
            parse_upload(b"hello, world")
                .unwrap_err()
                .contains("neither PEM certificates nor a DER certificate")
        );
        let big = vec![b'A'; UPLOAD_LIMIT + 1];
        assert!(
            parse_upload(&big)
                .unwrap_err()
                .contains("larger than 1 MiB")
        );
        let damaged = b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
        let message = parse_upload(damaged).unwrap_err();
        assert_eq!(
            message,
            "The PEM file is damaged: the base64 text of block 1 cannot be read. Nothing stored."
        );
        let unended = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(
            parse_upload(unended)
                .unwrap_err()
                .contains("block 1 has no -----END CERTIFICATE----- line")
        );
        let no_blocks = b"notes: -----BEGIN is not at the start of a line\n";
        assert_eq!(parse_upload(no_blocks).unwrap_err(), NO_CERTIFICATE);
        let csr = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        assert!(parse_upload(csr).is_err());
    }

    #[test]
    fn expiry_warnings() {
        let now = 1_000_000_000;
        assert_eq!(expiry_warning(now + 40 * 86_400, now), None);
        assert_eq!(
            expiry_warning(now + 10 * 86_400, now).as_deref(),
            Some("Expires in 10 days")
        );
        assert!(
            expiry_warning(now - 1, now)
                .unwrap_or_default()
                .starts_with("Expired on")
        );
    }
}
