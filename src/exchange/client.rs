//! The one HTTP client that talks to Exchange: HTTP/1.1 over a TLS
//! connection the caller has already judged (the troubleshooter's verifier
//! decides whom to trust; this module only speaks), authenticated per the
//! *Exchange Server Authentication* parameter, with a time limit on every
//! answer and a size limit on every body.
//!
//! HTTP/1.1 only: IIS refuses NTLM over HTTP/2, and NTLM authenticates the
//! connection, so the whole handshake stays on the one connection given.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, StatusCode};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::exchange::{auth as exauth, ntlm};

/// Largest response body read from Exchange.
pub const MAX_BODY: usize = 1024 * 1024;

/// The *Exchange Server Authentication* service parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// NTLMv2 when the server offers it (with channel binding and the
    /// server's SPN), Basic when NTLMv2 is not offered or cannot complete.
    Auto,
    /// Basic, or nothing.
    Basic,
}

#[derive(Clone)]
pub struct Credentials {
    pub account: String,
    pub password: SecretString,
}

/// The scheme whose credentials produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ntlm,
    Basic,
}

/// One request, sent as often as authentication needs (the body is cheap to
/// clone).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Further headers, e.g. `Depth` for WebDAV or `X-AnchorMailbox`.
    pub headers: Vec<(&'static str, String)>,
}

/// An answer, its body read within [`MAX_BODY`].
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `None` when the body was larger than [`MAX_BODY`] or cut off.
    pub body: Option<Bytes>,
}

impl Response {
    /// The schemes this answer's `WWW-Authenticate` headers offer.
    pub fn offered_schemes(&self) -> Vec<String> {
        exauth::offered_schemes(
            self.headers
                .get_all(hyper::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }
}

/// Why NTLMv2 could not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmFailure {
    /// The answer to NEGOTIATE was a 401 without an NTLM challenge.
    NoChallenge,
    /// The challenge was not base64 or not an NTLM CHALLENGE message.
    BadChallenge(String),
    /// Exchange answered the AUTHENTICATE message with 401.
    Refused,
}

impl fmt::Display for NtlmFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NtlmFailure::NoChallenge => f.write_str("the server sent no NTLM challenge"),
            NtlmFailure::BadChallenge(why) => {
                write!(f, "the server's NTLM challenge cannot be read ({why})")
            }
            NtlmFailure::Refused => f.write_str("Exchange refused the NTLMv2 answer (401)"),
        }
    }
}

/// How an authenticated request went.
#[derive(Debug)]
pub struct Exchanged {
    /// The answer to report: to the credentials when any were sent, else to
    /// the request without them.
    pub response: Response,
    /// The schemes offered, in the first 401 and then the final answer.
    pub offered: Vec<String>,
    /// Whether the server asked for credentials at all.
    pub challenged: bool,
    /// The scheme of the credentials behind `response`; `None` when none
    /// were sent (no challenge, or no scheme the mode allows).
    pub scheme: Option<Scheme>,
    /// NTLMv2 was tried and could not complete. With `scheme` Basic, Basic
    /// was tried next; with `scheme` NTLM, Basic was not offered.
    pub ntlm_failed: Option<NtlmFailure>,
}

#[derive(Debug)]
pub enum ClientError {
    /// No answer within the time limit.
    Timeout(Duration),
    /// The connection failed or closed.
    Http(hyper::Error),
    /// The request could not be built (a header value, say).
    Request(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Timeout(limit) => {
                write!(f, "no answer within {} s", limit.as_secs_f32())
            }
            ClientError::Http(e) => write!(f, "{e}"),
            ClientError::Request(e) => write!(f, "cannot build the request: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<hyper::Error> for ClientError {
    fn from(e: hyper::Error) -> ClientError {
        ClientError::Http(e)
    }
}

/// Where the connection goes, for the `Host` header and NTLM's SPN.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The `Host` header: the server location, with the port unless 443.
    pub host_header: String,
    /// The server location alone, for the SPN `HTTP/<host>`.
    pub host: String,
    /// The server's leaf certificate (DER), for Extended Protection's
    /// channel bindings; `None` sends none.
    pub leaf: Option<Vec<u8>>,
}

/// One HTTP/1.1 connection to Exchange.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    peer: Peer,
    /// Bound on each answer (the *Exchange Timeout* parameter).
    timeout: Duration,
    /// How [`Connection::request`] authenticated this connection, once it
    /// has: NTLM holds for the connection, Basic goes with each request.
    scheme: Option<Scheme>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// HTTP/1.1 over `stream`, a connection whose server the caller has
    /// verified.
    pub async fn handshake<S>(stream: S, peer: Peer, timeout: Duration) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = tokio::time::timeout(
            timeout,
            hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| ClientError::Timeout(timeout))??;
        let driver = tokio::spawn(async move {
            // The connection's end is seen by the sender as an error.
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            driver,
            peer,
            timeout,
            scheme: None,
        })
    }

    /// Whether the server may still be sent requests on this connection
    /// (it has not closed it), so the engine may keep it for the next one.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends `request` with an optional `Authorization` value and reads the
    /// whole answer, within the time limit and [`MAX_BODY`].
    pub async fn send(
        &mut self,
        request: &Request,
        authorization: Option<&str>,
    ) -> Result<Response, ClientError> {
        let built = self.build(request, authorization)?;
        let limit = self.timeout;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(built).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .ok();
            Ok::<_, ClientError>(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    fn build(
        &self,
        request: &Request,
        authorization: Option<&str>,
    ) -> Result<hyper::Request<Full<Bytes>>, ClientError> {
        let mut builder = hyper::Request::builder()
            .method(request.method)
            .uri(&request.path)
            .header(hyper::header::HOST, self.peer.host_header.as_str())
            .header(hyper::header::CONTENT_TYPE, request.content_type)
            .header(
                hyper::header::USER_AGENT,
                concat!("presence-gateway/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(value) = authorization {
            builder = builder.header(hyper::header::AUTHORIZATION, value);
        }
        builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| ClientError::Request(e.to_string()))
    }

    /// Sends `request` authenticated per `mode`: first without credentials,
    /// to learn the schemes the server offers (IIS answers 401 with them),
    /// then Basic in one round trip or NTLMv2 in two. Under Auto, NTLMv2 is
    /// taken when offered, and Basic (when offered) whenever NTLMv2 cannot
    /// complete: no challenge, a challenge that cannot be read, or a 401 to
    /// the AUTHENTICATE message (Extended Protection through a proxy that
    /// terminates TLS does that).
    pub async fn authenticated(
        &mut self,
        request: &Request,
        credentials: &Credentials,
        mode: AuthMode,
    ) -> Result<Exchanged, ClientError> {
        let first = self.send(request, None).await?;
        let challenged = first.status == StatusCode::UNAUTHORIZED;
        let mut offered = first.offered_schemes();
        let chosen = if challenged {
            choose_scheme(mode, &offered)
        } else {
            None
        };
        let (response, scheme, ntlm_failed) = match chosen {
            None => (first, None, None),
            Some(Scheme::Basic) => (self.basic(request, credentials).await?, chosen, None),
            Some(Scheme::Ntlm) => match self.ntlm(request, request, credentials).await? {
                Ok(response) => (response, chosen, None),
                Err((failure, _)) if exauth::offers(&offered, "Basic") => {
                    let response = self.basic(request, credentials).await?;
                    (response, Some(Scheme::Basic), Some(failure))
                }
                Err((failure, answer)) => (answer, chosen, Some(failure)),
            },
        };
        for scheme in response.offered_schemes() {
            if !exauth::offers(&offered, &scheme) {
                offered.push(scheme);
            }
        }
        Ok(Exchanged {
            response,
            offered,
            challenged,
            scheme,
            ntlm_failed,
        })
    }

    /// Sends `request` on a connection used for many (the engine's): it is
    /// authenticated once, per `mode`, and then kept so: NTLM holds for
    /// the connection, Basic goes with every request. The handshake's first
    /// steps carry an empty body, as curl does, so a server that answers a
    /// challenge without reading the body (and then closes the connection)
    /// is sent the body once, with the credentials. A 401 on an
    /// authenticated connection starts over.
    pub async fn request(
        &mut self,
        request: &Request,
        credentials: &Credentials,
        mode: AuthMode,
    ) -> Result<Response, ClientError> {
        match self.scheme {
            Some(Scheme::Basic) => {
                let answer = self.basic(request, credentials).await?;
                if answer.status != StatusCode::UNAUTHORIZED {
                    return Ok(answer);
                }
            }
            Some(Scheme::Ntlm) => {
                let answer = self.send(request, None).await?;
                if answer.status != StatusCode::UNAUTHORIZED {
                    return Ok(answer);
                }
            }
            None => {}
        }
        self.scheme = None;
        let probe = Request {
            body: Bytes::new(),
            ..request.clone()
        };
        let first = self.send(&probe, None).await?;
        if first.status != StatusCode::UNAUTHORIZED {
            // Nothing asked: the request itself, anonymously.
            return self.send(request, None).await;
        }
        let offered = first.offered_schemes();
        let (answer, scheme) = match choose_scheme(mode, &offered) {
            None => return Ok(first),
            Some(Scheme::Basic) => (self.basic(request, credentials).await?, Scheme::Basic),
            Some(Scheme::Ntlm) => match self.ntlm(&probe, request, credentials).await? {
                Ok(answer) => (answer, Scheme::Ntlm),
                Err(_) if exauth::offers(&offered, "Basic") => {
                    (self.basic(request, credentials).await?, Scheme::Basic)
                }
                Err((_, answer)) => return Ok(answer),
            },
        };
        if answer.status != StatusCode::UNAUTHORIZED {
            self.scheme = Some(scheme);
        }
        Ok(answer)
    }

    async fn basic(
        &mut self,
        request: &Request,
        credentials: &Credentials,
    ) -> Result<Response, ClientError> {
        let authorization =
            exauth::basic_authorization(&credentials.account, credentials.password.expose_secret());
        self.send(request, Some(&authorization)).await
    }

    /// NEGOTIATE, then AUTHENTICATE bound to this connection. `Err` carries
    /// why NTLMv2 could not complete and the answer that showed it; an
    /// answer to NEGOTIATE that is not a 401 (a 5xx, say) is the outcome.
    async fn ntlm(
        &mut self,
        negotiate_with: &Request,
        request: &Request,
        credentials: &Credentials,
    ) -> Result<Result<Response, (NtlmFailure, Response)>, ClientError> {
        let negotiate = format!("NTLM {}", STANDARD.encode(ntlm::negotiate_message()));
        let second = self.send(negotiate_with, Some(&negotiate)).await?;
        if second.status != StatusCode::UNAUTHORIZED {
            return Ok(Ok(second));
        }
        let challenge = match ntlm_challenge(&second.headers) {
            Ok(challenge) => challenge,
            Err(failure) => return Ok(Err((failure, second))),
        };
        let spn = format!("HTTP/{}", self.peer.host);
        let message = ntlm::authenticate_message(
            &challenge,
            &ntlm::NtlmAccount::parse(&credentials.account),
            credentials.password.expose_secret(),
            &ntlm::Binding {
                channel_bindings: self.peer.leaf.as_deref().map(ntlm::channel_bindings_hash),
                target_name: Some(&spn),
            },
            rand::random(),
            ntlm::filetime(time::OffsetDateTime::now_utc().unix_timestamp()),
        );
        let authenticate = format!("NTLM {}", STANDARD.encode(message));
        let answer = self.send(request, Some(&authenticate)).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Ok(Err((NtlmFailure::Refused, answer)));
        }
        Ok(Ok(answer))
    }
}

/// *Exchange Server Authentication*: Auto takes NTLMv2 when offered, then
/// Basic; Basic Only takes Basic or nothing.
pub fn choose_scheme(mode: AuthMode, offered: &[String]) -> Option<Scheme> {
    match mode {
        AuthMode::Auto if exauth::offers(offered, "NTLM") => Some(Scheme::Ntlm),
        _ if exauth::offers(offered, "Basic") => Some(Scheme::Basic),
        _ => None,
    }
}

/// The CHALLENGE in the 401 answering our NEGOTIATE.
fn ntlm_challenge(headers: &HeaderMap) -> Result<ntlm::Challenge, NtlmFailure> {
    let token = headers
        .get_all(hyper::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("NTLM").then(|| token.trim())
        })
        .ok_or(NtlmFailure::NoChallenge)?;
    let bytes = STANDARD
        .decode(token)
        .map_err(|_| NtlmFailure::BadChallenge("not base64".to_owned()))?;
    ntlm::Challenge::parse(&bytes).map_err(NtlmFailure::BadChallenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn auto_prefers_ntlm_and_basic_only_never_takes_it() {
        let both = schemes(&["Negotiate", "NTLM", "Basic"]);
        assert_eq!(choose_scheme(AuthMode::Auto, &both), Some(Scheme::Ntlm));
        assert_eq!(choose_scheme(AuthMode::Basic, &both), Some(Scheme::Basic));
        let ntlm_only = schemes(&["NTLM"]);
        assert_eq!(choose_scheme(AuthMode::Basic, &ntlm_only), None);
        assert_eq!(
            choose_scheme(AuthMode::Auto, &schemes(&["Negotiate"])),
            None
        );
        assert_eq!(
            choose_scheme(AuthMode::Auto, &schemes(&["basic"])),
            Some(Scheme::Basic)
        );
    }

    fn with_challenge(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_str(v).expect("test header"),
            );
        }
        headers
    }

    #[test]
    fn a_challenge_that_is_missing_or_unreadable_is_named() {
        assert_eq!(
            ntlm_challenge(&with_challenge(&["NTLM", "Basic realm=\"x\""])).err(),
            Some(NtlmFailure::NoChallenge)
        );
        assert_eq!(
            ntlm_challenge(&with_challenge(&["NTLM %%%"])).err(),
            Some(NtlmFailure::BadChallenge("not base64".to_owned()))
        );
        let garbled = format!("NTLM {}", STANDARD.encode(b"NTLMSSP\0 not a challenge"));
        assert!(matches!(
            ntlm_challenge(&with_challenge(&[&garbled])),
            Err(NtlmFailure::BadChallenge(_))
        ));
    }
}
