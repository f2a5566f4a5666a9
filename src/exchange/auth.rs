//! Authentication headers: Basic, and the schemes a server offers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The `Authorization` value for Basic: `Basic <base64(account:password)>`,
/// the credentials taken as UTF-8 (RFC 7617; IIS decodes them so).
/// The password is only read, never logged.
pub fn basic_authorization(account: &str, password: &str) -> String {
    let mut credentials = Vec::with_capacity(account.len() + 1 + password.len());
    credentials.extend_from_slice(account.as_bytes());
    credentials.push(b':');
    credentials.extend_from_slice(password.as_bytes());
    format!("Basic {}", STANDARD.encode(&credentials))
}

/// The schemes offered in WWW-Authenticate header values, in order,
/// de-duplicated case-insensitively (first spelling kept): e.g.
/// `["Negotiate", "NTLM", "Basic"]`. Handles several headers and
/// comma-joined challenges with parameters (`Basic realm="x", NTLM`) or a
/// token68 (`NTLM TlRMTVNTUAACAAAA...`).
pub fn offered_schemes<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut schemes: Vec<String> = Vec::new();
    for value in values {
        for element in split_outside_quotes(value) {
            let element = element.trim();
            // A challenge starts with its scheme, alone or followed by a
            // space; an element `name=value` is a parameter of the previous
            // challenge.
            let end = element.find([' ', '\t', '=']).unwrap_or(element.len());
            let (scheme, rest) = element.split_at(end);
            if scheme.is_empty() || rest.starts_with('=') || !scheme.bytes().all(is_tchar) {
                continue;
            }
            if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                schemes.push(scheme.to_string());
            }
        }
    }
    schemes
}

/// Whether `scheme` is among `schemes`, case-insensitively (RFC 7235).
pub fn offers(schemes: &[String], scheme: &str) -> bool {
    schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme))
}

/// Split at commas that are not inside a quoted string (a realm may hold
/// commas); a backslash escapes the next character inside quotes.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_for_domain_account_and_non_ascii_password() {
        let value = basic_authorization("CORP\\svc", "pässwörd€");
        let encoded = value.strip_prefix("Basic ").unwrap();
        let decoded = STANDARD.decode(encoded).unwrap();
        assert_eq!(decoded, "CORP\\svc:pässwörd€".as_bytes());
        assert_eq!(
            basic_authorization("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        // A colon in the password survives: only the first one separates.
        let value = basic_authorization("u", "a:b");
        let decoded = STANDARD.decode(&value[6..]).unwrap();
        assert_eq!(decoded, b"u:a:b");
    }

    #[test]
    fn typical_iis_headers() {
        let schemes = offered_schemes(["Negotiate", "NTLM", r#"Basic realm="ex.example.com""#]);
        assert_eq!(schemes, ["Negotiate", "NTLM", "Basic"]);
        assert!(offers(&schemes, "ntlm"));
        assert!(offers(&schemes, "BASIC"));
        assert!(!offers(&schemes, "Digest"));
    }

    #[test]
    fn comma_joined_challenges_with_parameters() {
        let schemes = offered_schemes([
            r#"Basic realm="a, b", charset="UTF-8", NTLM, Negotiate"#,
            "ntlm",
            r#"Digest realm="x\"y,z", qop="auth", nonce="abc""#,
            "Bearer",
        ]);
        assert_eq!(schemes, ["Basic", "NTLM", "Negotiate", "Digest", "Bearer"]);
    }

    #[test]
    fn token68_challenges() {
        let schemes = offered_schemes([
            "NTLM TlRMTVNTUAACAAAADAAMADgAAAAFgomi==",
            "Negotiate oYIBCzCCAQegAwoBAQ==",
        ]);
        assert_eq!(schemes, ["NTLM", "Negotiate"]);
    }

    #[test]
    fn empty_and_odd_values() {
        assert!(offered_schemes([]).is_empty());
        assert!(offered_schemes([""]).is_empty());
        assert!(offered_schemes([" , ,", "=x", "\"quoted\""]).is_empty());
        assert!(!offers(&[], "Basic"));
        assert_eq!(offered_schemes(["  Basic  "]), ["Basic"]);
    }
}
