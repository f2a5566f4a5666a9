//! The troubleshooter's wording: pure functions from what a step learned to
//! its status, verdict and detail, unit-tested without sockets.

use crate::domain::gateway::GatewayKind;
use crate::exchange::client::{self, AuthMode, Scheme};
use crate::exchange::{ews, webdav};

use super::{Check, NETWORK_ERROR, Status, VERIFIED};

/// A check's outcome before it is timed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub verdict: String,
    pub detail: String,
}

impl Outcome {
    pub fn new(status: Status, verdict: &str, detail: String) -> Outcome {
        Outcome {
            status,
            verdict: verdict.to_owned(),
            detail,
        }
    }
}

/// The panel's one headline (TS-2): the first failing of the network
/// checks, chain, validity and name, in that order, else Verified.
pub fn headline(checks: &[Check]) -> String {
    for id in ["dns", "tcp", "tls", "chain", "validity", "name"] {
        if let Some(c) = checks
            .iter()
            .find(|c| c.id == id && c.status == Status::Fail)
        {
            return c.verdict.clone();
        }
    }
    VERIFIED.to_owned()
}

/// Who was asked what, for the `auth` verdict.
pub struct AuthFacts<'a> {
    pub kind: GatewayKind,
    pub auth: AuthMode,
    pub account: &'a str,
    pub mailbox: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
}

/// The `auth` verdict from Exchange's answer to the authenticated request.
pub fn auth(facts: &AuthFacts<'_>, exchanged: client::Exchanged) -> Outcome {
    let fail = |verdict: &str, detail: String| Outcome::new(Status::Fail, verdict, detail);
    let AuthFacts {
        kind,
        auth,
        account,
        mailbox,
        method,
        path,
    } = *facts;
    let client::Exchanged {
        response,
        offered: schemes,
        challenged,
        scheme,
        ntlm_failed,
    } = exchanged;
    if let (Some(failure), Some(Scheme::Ntlm)) = (&ntlm_failed, scheme)
        && *failure != client::NtlmFailure::Refused
    {
        return fail(
            "Failed - Authentication Rejected",
            format!(
                "NTLMv2 authentication could not complete: {failure}. The server does not \
                 offer Basic, so nothing else was tried."
            ),
        );
    }
    let mode_note = auth_note(scheme, auth, ntlm_failed.as_ref(), response.status);
    let body = match response.body.clone() {
        Some(b) => b,
        None => {
            return fail(
                NETWORK_ERROR,
                format!("The answer to {method} {path} is larger than 1 MiB or was cut off."),
            );
        }
    };
    let parts = response;
    if challenged && scheme.is_none() {
        let offered = if schemes.is_empty() {
            "no authentication scheme".to_owned()
        } else {
            schemes.join(", ")
        };
        let advice = match auth {
            AuthMode::Basic => {
                "Exchange Server Authentication is Basic Only: choose Auto (NTLMv2, then Basic), \
                 or enable Basic authentication on the virtual directory."
            }
            AuthMode::Auto => {
                "Enable Windows (NTLM) or Basic authentication on the virtual directory."
            }
        };
        return fail(
            "Failed - Authentication Rejected",
            format!(
                "The server offers {offered}, and the troubleshooter speaks NTLMv2 and Basic \
                 only: no credentials were sent. {advice}"
            ),
        );
    }
    if !challenged && parts.status.is_success() {
        return fail(
            "Failed - Server Error",
            format!(
                "{method} {path} answered {} without asking for credentials: this is not how \
                 Exchange behaves; check the Presence Gateway and port.",
                parts.status.as_u16()
            ),
        );
    }
    let offered = if schemes.is_empty() {
        String::new()
    } else {
        format!(" Schemes offered: {}.", schemes.join(", "))
    };
    let status = parts.status.as_u16();
    match (kind, status) {
        (_, 401) => {
            let advice = if account.contains('\\') || account.contains('@') {
                ""
            } else {
                " The account has no domain: try domain\\user."
            };
            fail(
                "Failed - Authentication Rejected",
                format!(
                    "Exchange rejected the credentials of {account} (401). Check the account \
                     name and password; a down-level name needs its domain\\ prefix.{advice}{offered}{mode_note}"
                ),
            )
        }
        (GatewayKind::Ews, 403) => fail(
            "Failed - Access Denied",
            format!(
                "Exchange refused {account} (403): the account lacks the ApplicationImpersonation \
                 right.{offered}"
            ),
        ),
        (GatewayKind::WebDav, 403) => fail(
            "Failed - Access Denied",
            format!(
                "Exchange refused {account} (403): the account lacks Receive-As rights on the \
                 mailbox store.{offered}"
            ),
        ),
        (_, 404) => fail(
            "Failed - Not Found",
            format!(
                "{method} {path} answered 404: check the path, the mailbox{}.",
                if kind == GatewayKind::WebDav {
                    " and the localized calendar folder name"
                } else {
                    ""
                }
            ),
        ),
        (GatewayKind::Ews, _) => ews_outcome(mailbox, status, &body, &offered, &mode_note),
        (GatewayKind::WebDav, 207) => match webdav::parse_multistatus(&body) {
            Ok(statuses) if statuses.iter().any(|s| s.status == 200) => Outcome::new(
                Status::Pass,
                VERIFIED,
                format!(
                    "PROPFIND {path} answered 207 with the calendar folder.{offered}{mode_note}"
                ),
            ),
            Ok(statuses) => fail(
                "Failed - Not Found",
                format!(
                    "PROPFIND {path} found no calendar folder ({}): check the mailbox and the \
                     localized calendar folder name.",
                    statuses
                        .iter()
                        .map(|s| s.status.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Err(e) => fail(
                "Failed - Server Error",
                format!("PROPFIND {path}: unreadable answer: {e}."),
            ),
        },
        (_, s) if s >= 500 => fail(
            "Failed - Server Error",
            format!("{method} {path} answered {s}.{offered}"),
        ),
        (_, s) => fail(
            "Failed - Server Error",
            format!(
                "{method} {path} answered {s}, which the troubleshooter does not expect.{offered}"
            ),
        ),
    }
}

/// How the credentials were sent, for the `auth` detail: the scheme, and
/// when NTLMv2 could not complete, why and how Basic then fared.
pub fn auth_note(
    scheme: Option<Scheme>,
    mode: AuthMode,
    ntlm_failed: Option<&client::NtlmFailure>,
    status: hyper::StatusCode,
) -> String {
    match (scheme, ntlm_failed) {
        (Some(Scheme::Basic), Some(failure)) => {
            let outcome = if status == hyper::StatusCode::UNAUTHORIZED {
                "Basic was tried next and was rejected too"
            } else {
                "Basic was tried next and Exchange accepted it"
            };
            let proxy = if *failure == client::NtlmFailure::Refused {
                " If a load balancer or proxy terminates TLS in front of Exchange, Extended \
                 Protection refuses NTLM through it."
            } else {
                ""
            };
            format!(" Authentication: NTLMv2 failed ({failure}); {outcome}.{proxy}")
        }
        (Some(Scheme::Ntlm), Some(failure)) => {
            format!(" Authentication: NTLMv2 failed ({failure}); the server does not offer Basic.")
        }
        (Some(Scheme::Ntlm), None) => {
            " Authentication: NTLMv2, bound to this TLS connection.".to_owned()
        }
        (_, _) if mode == AuthMode::Basic => " Authentication: Basic.".to_owned(),
        (_, _) => " Authentication: Basic (the server does not offer NTLM).".to_owned(),
    }
}

/// A WebDAV mailbox from the account: `DOMAIN\user` or `user@domain` -> `user`.
pub fn mailbox_of(account: &str) -> String {
    let user = account.rsplit('\\').next().unwrap_or(account);
    user.split('@').next().unwrap_or(user).to_owned()
}

fn ews_outcome(
    mailbox: Option<&str>,
    status: u16,
    body: &[u8],
    offered: &str,
    mode_note: &str,
) -> Outcome {
    let parsed = match ews::parse_response(body) {
        Ok(p) => p,
        Err(e) => {
            return Outcome::new(
                Status::Fail,
                "Failed - Server Error",
                format!(
                    "POST {} answered {status} without a readable EWS response: {e}.",
                    ews::EWS_PATH
                ),
            );
        }
    };
    let version = parsed
        .version
        .as_ref()
        .map(|v| format!(" Exchange version: {}.", v.describe()))
        .unwrap_or_default();
    let whose = match mailbox {
        Some(m) => format!("the calendar of {m} (impersonated)"),
        None => "the service account's own calendar".to_owned(),
    };
    match parsed.outcome {
        ews::EwsOutcome::Folder { .. } if status == 200 => Outcome::new(
            Status::Pass,
            VERIFIED,
            format!("GetFolder of {whose} succeeded.{version}{offered}{mode_note}"),
        ),
        ews::EwsOutcome::Error { response_code, .. }
            if mailbox.is_none() && ews::is_no_mailbox(&response_code) =>
        {
            Outcome::new(
                Status::Warn,
                "Credentials Accepted",
                format!(
                    "The credentials were accepted, but the service account has no mailbox of \
                     its own ({response_code}). Give a Test Mailbox to prove impersonation.{version}{mode_note}"
                ),
            )
        }
        ews::EwsOutcome::Error {
            response_code,
            message,
        }
        | ews::EwsOutcome::Fault {
            response_code: Some(response_code),
            fault_string: message,
            ..
        } => {
            let advice = if ews::is_impersonation_denied(&response_code) {
                " The account lacks the ApplicationImpersonation right on that mailbox."
            } else if ews::is_no_mailbox(&response_code) {
                " Check the Test Mailbox address."
            } else {
                ""
            };
            Outcome::new(
                Status::Fail,
                "Failed - EWS Error",
                format!(
                    "GetFolder of {whose} failed with {response_code}: {message}.{advice}{version}"
                ),
            )
        }
        ews::EwsOutcome::Fault {
            fault_code,
            fault_string,
            response_code: None,
        } => Outcome::new(
            Status::Fail,
            "Failed - EWS Error",
            format!("EWS answered a SOAP fault ({fault_code}): {fault_string}.{version}"),
        ),
        ews::EwsOutcome::OtherSuccess { response } => Outcome::new(
            Status::Fail,
            "Failed - Server Error",
            format!("EWS answered {response} instead of a GetFolder response.{version}"),
        ),
        ews::EwsOutcome::Folder { .. } => Outcome::new(
            Status::Fail,
            "Failed - Server Error",
            format!("EWS answered {status} with a folder, which is unexpected.{version}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use hyper::{HeaderMap, StatusCode};

    use super::*;
    use crate::exchange::client::{Exchanged, NtlmFailure, Response};

    const EWS_FOLDER: &str = include_str!("../../tests/data/ews/getfolder-02.xml");

    fn facts(kind: GatewayKind, auth: AuthMode, account: &'static str) -> AuthFacts<'static> {
        AuthFacts {
            kind,
            auth,
            account,
            mailbox: Some("user@example.com"),
            method: "POST",
            path: "/EWS/Exchange.asmx",
        }
    }

    fn answered(status: u16, scheme: Option<Scheme>, body: &str) -> Exchanged {
        Exchanged {
            response: Response {
                status: StatusCode::from_u16(status).expect("status"),
                headers: HeaderMap::new(),
                body: Some(Bytes::from(body.to_owned())),
            },
            offered: vec!["NTLM".to_owned(), "Basic".to_owned()],
            challenged: true,
            scheme,
            ntlm_failed: None,
        }
    }

    fn check(id: &'static str, status: Status, verdict: &str) -> Check {
        Check {
            id,
            status,
            verdict: verdict.to_owned(),
            detail: String::new(),
            elapsed_ms: 0,
        }
    }

    #[test]
    fn the_headline_is_the_first_failing_of_the_network_and_certificate_checks() {
        let pass = |id| check(id, Status::Pass, "Connected");
        let mut checks: Vec<Check> = ["dns", "tcp", "tls", "chain", "validity", "name"]
            .into_iter()
            .map(pass)
            .collect();
        checks.push(check(
            "auth",
            Status::Fail,
            "Failed - Authentication Rejected",
        ));
        // auth is not part of the headline (TS-2).
        assert_eq!(headline(&checks), VERIFIED);
        checks[5] = check("name", Status::Fail, "Failed - SAN Mismatch");
        checks[4] = check("validity", Status::Fail, "Failed - Certificate Expired");
        assert_eq!(headline(&checks), "Failed - Certificate Expired");
        checks[1] = check("tcp", Status::Fail, NETWORK_ERROR);
        assert_eq!(headline(&checks), NETWORK_ERROR);
    }

    #[test]
    fn the_auth_note_says_how_credentials_went() {
        let ok = hyper::StatusCode::OK;
        assert_eq!(
            auth_note(Some(Scheme::Ntlm), AuthMode::Auto, None, ok),
            " Authentication: NTLMv2, bound to this TLS connection."
        );
        assert_eq!(
            auth_note(Some(Scheme::Basic), AuthMode::Basic, None, ok),
            " Authentication: Basic."
        );
        assert_eq!(
            auth_note(Some(Scheme::Basic), AuthMode::Auto, None, ok),
            " Authentication: Basic (the server does not offer NTLM)."
        );
        let refused = auth_note(
            Some(Scheme::Basic),
            AuthMode::Auto,
            Some(&NtlmFailure::Refused),
            hyper::StatusCode::UNAUTHORIZED,
        );
        assert!(refused.contains("NTLMv2 failed (Exchange refused the NTLMv2 answer (401))"));
        assert!(refused.contains("Basic was tried next and was rejected too."));
        assert!(refused.contains("terminates TLS"));
        let missing = auth_note(
            Some(Scheme::Basic),
            AuthMode::Auto,
            Some(&NtlmFailure::NoChallenge),
            ok,
        );
        assert!(
            missing.contains("the server sent no NTLM challenge"),
            "{missing}"
        );
        assert!(missing.contains("Exchange accepted it"), "{missing}");
        assert!(!missing.contains("terminates TLS"), "{missing}");
    }

    #[test]
    fn status_codes_get_their_advice() {
        let ews = facts(GatewayKind::Ews, AuthMode::Auto, "svc");
        let out = auth(&ews, answered(401, Some(Scheme::Basic), ""));
        assert_eq!(out.status, Status::Fail);
        assert_eq!(out.verdict, "Failed - Authentication Rejected");
        assert!(out.detail.contains("try domain\\user"), "{}", out.detail);
        let qualified = facts(GatewayKind::Ews, AuthMode::Auto, "CORP\\svc");
        let out = auth(&qualified, answered(401, Some(Scheme::Basic), ""));
        assert!(!out.detail.contains("try domain\\user"), "{}", out.detail);
        let out = auth(&ews, answered(403, Some(Scheme::Ntlm), ""));
        assert_eq!(out.verdict, "Failed - Access Denied");
        assert!(out.detail.contains("ApplicationImpersonation"));
        let dav = AuthFacts {
            method: "PROPFIND",
            path: "/exchange/user/Kalender/",
            ..facts(GatewayKind::WebDav, AuthMode::Basic, "CORP\\dav")
        };
        let out = auth(&dav, answered(403, Some(Scheme::Basic), ""));
        assert!(out.detail.contains("Receive-As"), "{}", out.detail);
        let out = auth(&dav, answered(404, Some(Scheme::Basic), ""));
        assert_eq!(out.verdict, "Failed - Not Found");
        assert!(out.detail.contains("localized calendar folder name"));
        let out = auth(&ews, answered(503, Some(Scheme::Basic), ""));
        assert_eq!(out.verdict, "Failed - Server Error");
        assert!(out.detail.contains("answered 503"), "{}", out.detail);
    }

    #[test]
    fn a_folder_answer_passes_and_names_the_version() {
        let ews = facts(GatewayKind::Ews, AuthMode::Auto, "svc@example.com");
        let out = auth(&ews, answered(200, Some(Scheme::Ntlm), EWS_FOLDER));
        assert_eq!(out.status, Status::Pass, "{}", out.detail);
        assert!(
            out.detail
                .contains("GetFolder of the calendar of user@example.com")
        );
        assert!(out.detail.contains("Exchange version"), "{}", out.detail);
        assert!(out.detail.contains("NTLMv2, bound"), "{}", out.detail);
    }

    #[test]
    fn nothing_sent_is_explained() {
        let basic_only = facts(GatewayKind::Ews, AuthMode::Basic, "svc");
        let mut out = answered(401, None, "");
        out.offered = vec!["Negotiate".to_owned(), "NTLM".to_owned()];
        let out = auth(&basic_only, out);
        assert!(
            out.detail.contains("no credentials were sent"),
            "{}",
            out.detail
        );
        assert!(out.detail.contains("choose Auto"), "{}", out.detail);
        // An answer without a challenge is not Exchange.
        let mut open = answered(200, None, "");
        open.challenged = false;
        let out = auth(&basic_only, open);
        assert!(out.detail.contains("without asking for credentials"));
        // NTLMv2 stopped and no Basic to fall back to.
        let mut stuck = answered(401, Some(Scheme::Ntlm), "");
        stuck.ntlm_failed = Some(NtlmFailure::NoChallenge);
        stuck.offered = vec!["NTLM".to_owned()];
        let out = auth(&facts(GatewayKind::Ews, AuthMode::Auto, "svc"), stuck);
        assert!(
            out.detail
                .contains("could not complete: the server sent no NTLM challenge")
        );
        // A body over the limit.
        let mut big = answered(200, Some(Scheme::Basic), "");
        big.response.body = None;
        let out = auth(&basic_only, big);
        assert_eq!(out.verdict, NETWORK_ERROR);
        assert!(out.detail.contains("larger than 1 MiB"));
    }

    #[test]
    fn a_webdav_account_gives_its_mailbox() {
        assert_eq!(mailbox_of("CORP\\alice"), "alice");
        assert_eq!(mailbox_of("alice@example.com"), "alice");
        assert_eq!(mailbox_of("alice"), "alice");
    }
}
