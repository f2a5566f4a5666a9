//! WebDAV: PROPFIND requests on a calendar folder and their multistatus answers.

use super::ews::{ROOT, Tree};
use crate::domain::locale::{DEFAULT, Locale};

/// The path of a mailbox's calendar folder: `/exchange/<mailbox>/<folder>/`,
/// each segment percent-encoded as UTF-8. Letters, digits, `-._~` and `@`
/// stay as they are; everything else (spaces, non-ASCII, `/`, `?`, `#`,
/// `%`...) is encoded, and a segment of dots only is encoded too, so that
/// neither value can leave its segment.
pub fn calendar_path(mailbox: &str, folder: &str) -> String {
    format!(
        "/exchange/{}/{}/",
        encode_segment(mailbox),
        encode_segment(folder)
    )
}

/// The calendar folder's name in a user's locale (LO-3), from the locale
/// catalogue; English's for a tag the catalogue does not know.
pub fn calendar_folder(locale_tag: &str) -> &'static str {
    Locale::parse(locale_tag)
        .or_else(|_| Locale::parse(DEFAULT))
        .map_or("Calendar", |l| l.calendar_folder)
}

/// The path of a user's calendar folder: their mailbox and the folder's
/// name in their locale (LO-3), e.g. `/exchange/taro@example.com/%E4%BA%88...`.
pub fn user_calendar_path(mailbox: &str, locale_tag: &str) -> String {
    calendar_path(mailbox, calendar_folder(locale_tag))
}

fn encode_segment(segment: &str) -> String {
    let dots_only = !segment.is_empty() && segment.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-_~@".contains(&b) || (b == b'.' && !dots_only);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal DAV:propfind for the folder's display name and resource type;
/// send it with `Depth: 0` and `Content-Type: text/xml; charset=utf-8`.
pub const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname/><D:resourcetype/></D:prop></D:propfind>
"#;

/// One `<response>` of a multistatus: its href (as sent, trimmed) and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropfindStatus {
    pub href: String,
    pub status: u16,
}

/// The responses of a 207 body: every `<response>` with its href and the
/// HTTP status from its `<status>` or, failing that, its first
/// `<propstat><status>`. Err when the body is not a multistatus or a
/// response lacks an href or a readable status.
pub fn parse_multistatus(body: &[u8]) -> Result<Vec<PropfindStatus>, String> {
    let tree = Tree::parse(body)?;
    let multistatus = tree
        .element_children(ROOT)
        .find(|&n| tree.name(n) == "multistatus")
        .ok_or("not a WebDAV multistatus")?;
    tree.check_closed(multistatus)?;
    let mut statuses = Vec::new();
    for response in tree
        .element_children(multistatus)
        .filter(|&n| tree.name(n) == "response")
    {
        let href = tree
            .child_text(response, "href")
            .filter(|h| !h.is_empty())
            .ok_or("a multistatus response has no href")?;
        let status_line = tree.child_text(response, "status").or_else(|| {
            tree.find_child(response, "propstat")
                .and_then(|p| tree.child_text(p, "status"))
        });
        let status = status_line
            .as_deref()
            .and_then(status_code)
            .ok_or_else(|| format!("no readable status for {href}"))?;
        statuses.push(PropfindStatus { href, status });
    }
    Ok(statuses)
}

/// The code of a status line: "HTTP/1.1 404 Resource Not Found" -> 404.
fn status_code(line: &str) -> Option<u16> {
    let code = line.split_whitespace().nth(1)?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_paths_are_escaped() {
        assert_eq!(
            calendar_path("jdoe@example.com", "Calendar"),
            "/exchange/jdoe@example.com/Calendar/"
        );
        assert_eq!(
            calendar_path("j doe", "Calendrier partagé"),
            "/exchange/j%20doe/Calendrier%20partag%C3%A9/"
        );
        assert_eq!(
            calendar_path("a/b?c#d%e", "カレンダー"),
            "/exchange/a%2Fb%3Fc%23d%25e/%E3%82%AB%E3%83%AC%E3%83%B3%E3%83%80%E3%83%BC/"
        );
        assert_eq!(calendar_path("..", "."), "/exchange/%2E%2E/%2E/");
        assert_eq!(
            calendar_path("j.doe", "Kalender"),
            "/exchange/j.doe/Kalender/"
        );
    }

    #[test]
    fn user_calendar_paths_follow_the_locale() {
        assert_eq!(
            user_calendar_path("taro@example.jp", "ja-JP"),
            "/exchange/taro@example.jp/%E4%BA%88%E5%AE%9A%E8%A1%A8/"
        );
        assert_eq!(
            user_calendar_path("joao@example.com.br", "pt-BR"),
            "/exchange/joao@example.com.br/Calend%C3%A1rio/"
        );
        assert_eq!(
            user_calendar_path("hans@example.de", "de-de"),
            "/exchange/hans@example.de/Kalender/"
        );
        assert_eq!(
            user_calendar_path("anne@example.fr", "fr-FR"),
            "/exchange/anne@example.fr/Calendrier/"
        );
        // Unknown or empty locales use English's folder.
        assert_eq!(calendar_folder("xx-XX"), "Calendar");
        assert_eq!(calendar_folder(""), "Calendar");
        assert_eq!(calendar_folder(DEFAULT), "Calendar");
        for locale in crate::domain::locale::CATALOGUE {
            assert_eq!(calendar_folder(locale.tag), locale.calendar_folder);
        }
    }

    #[test]
    fn propfind_body_is_well_formed() {
        let tree = Tree::parse(PROPFIND_BODY.as_bytes()).unwrap();
        let prop = tree.find_descendant(ROOT, "prop").unwrap();
        assert!(tree.find_child(prop, "displayname").is_some());
        assert!(tree.find_child(prop, "resourcetype").is_some());
    }

    #[test]
    fn multistatus_with_200_and_404() {
        // Exchange 2003 style: `a:` for DAV, a second namespace for types.
        let body = br#"<?xml version="1.0"?>
<a:multistatus xmlns:b="urn:uuid:c2f41010-65b3-11d1-a29f-00aa00c14882/" xmlns:a="DAV:">
  <a:response>
    <a:href>https://ex.example.com/exchange/jdoe/Calendar/</a:href>
    <a:propstat>
      <a:status>HTTP/1.1 200 OK</a:status>
      <a:prop><a:displayname>Calendar</a:displayname><a:resourcetype><a:collection/></a:resourcetype></a:prop>
    </a:propstat>
    <a:propstat>
      <a:status>HTTP/1.1 404 Resource Not Found</a:status>
      <a:prop><a:getetag/></a:prop>
    </a:propstat>
  </a:response>
  <a:response>
    <a:href>https://ex.example.com/exchange/jdoe/Kalender/</a:href>
    <a:status>HTTP/1.1 404 Resource Not Found</a:status>
  </a:response>
</a:multistatus>"#;
        assert_eq!(
            parse_multistatus(body).unwrap(),
            [
                PropfindStatus {
                    href: "https://ex.example.com/exchange/jdoe/Calendar/".into(),
                    status: 200
                },
                PropfindStatus {
                    href: "https://ex.example.com/exchange/jdoe/Kalender/".into(),
                    status: 404
                },
            ]
        );
    }

    #[test]
    fn empty_multistatus() {
        let body = br#"<D:multistatus xmlns:D="DAV:"/>"#;
        assert_eq!(parse_multistatus(body).unwrap(), []);
    }

    #[test]
    fn not_multistatus() {
        let cases: &[(&[u8], &str)] = &[
            (b"garbage \xff", ""),
            (b"", "empty"),
            (b"<html><body>Not Found</body></html>", "not a WebDAV multistatus"),
            (
                b"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href>",
                "truncated",
            ),
            (
                b"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href><D:status>HTTP/1.1 abc</D:status></D:response></D:multistatus>",
                "no readable status for /x",
            ),
            (
                b"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:status>HTTP/1.1 200 OK</D:status></D:response></D:multistatus>",
                "no href",
            ),
            (
                b"<!DOCTYPE m [<!ENTITY e \"x\">]><D:multistatus xmlns:D=\"DAV:\">&e;</D:multistatus>",
                "DOCTYPE",
            ),
        ];
        for (body, reason) in cases {
            let err = parse_multistatus(body).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
    }
}
