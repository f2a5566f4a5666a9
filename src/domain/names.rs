//! TS-4 name matching of the Presence Gateway value against a certificate.
//!
//! webpki ignores the Subject CN, and Exchange certificates often carry the
//! server name only there, so names are matched here, by our own rules.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::domain::gateway::ServerLocation;

/// The names a (leaf) certificate gives itself, as written in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    pub common_names: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

impl CertNames {
    /// Whether the certificate has any dNSName or iPAddress SAN entry.
    pub fn has_san(&self) -> bool {
        !self.dns_names.is_empty() || !self.ip_addresses.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    San,
    SubjectCn,
}

impl MismatchKind {
    /// The `name` verdict, in the words of TS-2.
    pub fn verdict(self) -> &'static str {
        match self {
            MismatchKind::San => "Failed - SAN Mismatch",
            MismatchKind::SubjectCn => "Failed - Subject CN Mismatch",
        }
    }

    fn for_names(names: &CertNames) -> Self {
        if names.has_san() {
            MismatchKind::San
        } else {
            MismatchKind::SubjectCn
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameCheck {
    Verified {
        matched_name: String,
        detail: String,
    },
    Mismatch {
        kind: MismatchKind,
        detail: String,
    },
}

/// Matches the Presence Gateway value against the leaf's names (TS-4).
/// `dns_configured` is SY-2: without DNS only an IP address can be checked.
pub fn check_name(location: &ServerLocation, names: &CertNames, dns_configured: bool) -> NameCheck {
    match location {
        ServerLocation::Ip(ip) => check_ip(*ip, names),
        ServerLocation::Name(host) if !dns_configured => NameCheck::Mismatch {
            kind: MismatchKind::for_names(names),
            detail: format!(
                "DNS is not configured, so the server cannot be checked by the name {}: enter \
                 the Exchange server's IP address as the Presence Gateway, and make that address \
                 the certificate's Subject CN (or an IP address subjectAltName entry). {}",
                shown(host),
                match listing(names) {
                    Some(l) => format!("The certificate names {l}."),
                    None => format!("The certificate names {NO_NAMES_CLAUSE}."),
                }
            ),
        },
        ServerLocation::Name(host) => check_host(host, names),
    }
}

fn check_ip(ip: IpAddr, names: &CertNames) -> NameCheck {
    if let Some(found) = names.ip_addresses.iter().find(|a| **a == ip) {
        return NameCheck::Verified {
            matched_name: found.to_string(),
            detail: format!("{ip} is an IP address subjectAltName entry of the certificate."),
        };
    }
    // An IPv4 address in the CN is the usual way an Exchange self-signed
    // certificate names an address; for IPv6 TS-4 requires the SAN entry.
    let cn_ip = |cn: &&String| cn.trim().parse::<IpAddr>().ok() == Some(ip);
    if ip.is_ipv4()
        && let Some(cn) = names.common_names.iter().find(cn_ip)
    {
        return NameCheck::Verified {
            matched_name: cn.clone(),
            detail: format!("{ip} is the certificate's Subject CN."),
        };
    }

    // The one hint most likely to explain the mismatch, else advice.
    let note = if ip.is_ipv6() && names.common_names.iter().any(|cn| cn_ip(&cn)) {
        " An IPv6 address must be an IP address subjectAltName entry: the Subject CN is not \
         enough."
            .to_owned()
    } else if names
        .dns_names
        .iter()
        .any(|d| d.trim().parse::<IpAddr>().ok() == Some(ip))
    {
        " The address is written as a DNS subjectAltName entry: it must be an IP address \
         entry."
            .to_owned()
    } else {
        format!(
            " Enter an address the certificate names as the Presence Gateway, or reissue the \
             certificate with {ip} as {}.",
            if ip.is_ipv4() {
                "its Subject CN or an IP address subjectAltName entry"
            } else {
                "an IP address subjectAltName entry"
            }
        )
    };
    NameCheck::Mismatch {
        kind: MismatchKind::for_names(names),
        detail: format!(
            "{ip} is {} of the certificate, which names {}.{note}",
            if ip.is_ipv4() {
                "neither an IP address subjectAltName entry nor the Subject CN"
            } else {
                "not an IP address subjectAltName entry"
            },
            listing(names).as_deref().unwrap_or(NO_NAMES_CLAUSE)
        ),
    }
}

/// Why a certificate name with a `*` cannot match anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadWildcard {
    /// `ex*.example.com`, `*ex.example.com`, `**.example.com`.
    PartialLabel,
    /// `exch1.*.example.com`, `*.*.example.com`.
    NotLeftmost,
    /// `*.com`, `*`.
    TooBroad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern<'a> {
    Exact(&'a str),
    /// `*.` followed by this remainder of two or more labels.
    Wildcard(&'a str),
    Bad(BadWildcard),
    /// Empty, or bytes outside ASCII: matches nothing.
    Unusable,
}

/// Strips one trailing dot; refuses names that are empty or not ASCII
/// (an IDN must be written as its `xn--` A-label to be compared).
fn normalize(name: &str) -> Option<&str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty() && name.is_ascii()).then_some(name)
}

fn pattern(name: &str) -> Pattern<'_> {
    let Some(name) = normalize(name) else {
        return Pattern::Unusable;
    };
    if !name.contains('*') {
        return Pattern::Exact(name);
    }
    let (first, rest) = name.split_once('.').unwrap_or((name, ""));
    if first != "*" {
        return Pattern::Bad(if first.contains('*') {
            BadWildcard::PartialLabel
        } else {
            BadWildcard::NotLeftmost
        });
    }
    if rest.contains('*') {
        return Pattern::Bad(BadWildcard::NotLeftmost);
    }
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Pattern::Bad(BadWildcard::TooBroad);
    }
    Pattern::Wildcard(rest)
}

fn covers(pattern: Pattern<'_>, host: &str) -> bool {
    match pattern {
        Pattern::Exact(name) => name.eq_ignore_ascii_case(host),
        Pattern::Wildcard(rest) => match host.split_once('.') {
            Some((label, host_rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(host_rest),
            None => false,
        },
        Pattern::Bad(_) | Pattern::Unusable => false,
    }
}

fn check_host(host: &str, names: &CertNames) -> NameCheck {
    let Some(host) = normalize(host) else {
        return NameCheck::Mismatch {
            kind: MismatchKind::for_names(names),
            detail: format!(
                "The Presence Gateway {} is not an ASCII host name, so no certificate name can \
                 match it: enter the name in its xn-- form.",
                shown(host),
            ),
        };
    };

    // SAN entries before the CN, and an exact name before a wildcard, so the
    // name reported is the most specific one the certificate gives.
    let candidates = names
        .dns_names
        .iter()
        .map(|n| (n, "DNS subjectAltName entry"))
        .chain(names.common_names.iter().map(|n| (n, "Subject CN")));
    let mut wildcard_match = None;
    for (name, place) in candidates {
        let p = pattern(name);
        if covers(p, host) {
            match p {
                Pattern::Exact(_) => {
                    return NameCheck::Verified {
                        matched_name: name.clone(),
                        detail: sentence(format!(
                            "{host} matches the certificate's {place} {}",
                            shown(name)
                        )),
                    };
                }
                _ => {
                    wildcard_match.get_or_insert((name, place));
                }
            }
        }
    }
    if let Some((name, place)) = wildcard_match {
        return NameCheck::Verified {
            matched_name: name.clone(),
            detail: sentence(format!(
                "{host} matches the certificate's wildcard {place} {}",
                shown(name)
            )),
        };
    }

    NameCheck::Mismatch {
        kind: MismatchKind::for_names(names),
        detail: format!("{}{}", not_named(names, host), host_note(host, names)),
    }
}

/// The one hint most likely to explain a host-name mismatch, else advice.
fn host_note(host: &str, names: &CertNames) -> String {
    let all = || names.dns_names.iter().chain(names.common_names.iter());
    if let Some(name) = all().find(|n| pattern(n) == Pattern::Bad(BadWildcard::PartialLabel)) {
        return format!(
            " Partial-label wildcards such as {} are unsupported: a wildcard must be the \
             whole leftmost label (*.example.com).",
            shown(name)
        );
    }
    if let Some(name) = all().find(|n| pattern(n) == Pattern::Bad(BadWildcard::NotLeftmost)) {
        return format!(
            " Wildcards other than a single whole leftmost label, such as {}, are unsupported.",
            shown(name)
        );
    }
    if let Some(name) = all().find(|n| pattern(n) == Pattern::Bad(BadWildcard::TooBroad)) {
        return format!(
            " The wildcard {} is refused: it would cover a whole top-level domain.",
            shown(name)
        );
    }
    for name in all() {
        if let Pattern::Wildcard(rest) = pattern(name) {
            if rest.eq_ignore_ascii_case(host) {
                return format!(
                    " A wildcard covers exactly one label: {} does not cover {host} itself.",
                    shown(name)
                );
            }
            if host
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", rest.to_ascii_lowercase()))
            {
                return format!(
                    " A wildcard covers exactly one label: {} does not cover {host}.",
                    shown(name)
                );
            }
        }
    }
    if all().any(|n| !n.is_ascii()) {
        return " Names with characters outside ASCII are not compared: an international name \
                 must be written in its xn-- form."
            .to_owned();
    }
    format!(
        " Enter a name the certificate gives as the Presence Gateway, or reissue the \
         certificate with {host} {}.",
        if names.has_san() {
            "in its subjectAltName"
        } else {
            "as its Subject CN"
        }
    )
}

/// Ends with a full stop, unless a name with its trailing dot already does.
fn sentence(mut text: String) -> String {
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// How many names of each kind a detail lists before "and N more".
const LIST_MAX: usize = 5;
/// Certificate text is the peer's: keep one name from flooding the panel.
const NAME_MAX: usize = 80;

const NO_NAMES_CLAUSE: &str = "no server: it has no Subject CN and no subjectAltName entries";

/// "The certificate names Subject CN a; subjectAltName DNS b, but not c."
fn not_named(names: &CertNames, target: &str) -> String {
    match listing(names) {
        Some(l) => format!("The certificate names {l}, but not {target}."),
        None => format!("The certificate names {NO_NAMES_CLAUSE}."),
    }
}

/// "Subject CN a; subjectAltName DNS b, c; subjectAltName IP d", or None.
fn listing(names: &CertNames) -> Option<String> {
    let mut parts = Vec::new();
    if !names.common_names.is_empty() {
        parts.push(format!(
            "Subject CN {}",
            list(names.common_names.iter().map(|n| shown(n)))
        ));
    }
    if !names.dns_names.is_empty() {
        parts.push(format!(
            "subjectAltName DNS {}",
            list(names.dns_names.iter().map(|n| shown(n)))
        ));
    }
    if !names.ip_addresses.is_empty() {
        parts.push(format!(
            "subjectAltName IP {}",
            list(names.ip_addresses.iter().map(|a| a.to_string()))
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut out = String::new();
    for (i, item) in items.take(LIST_MAX).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&item);
    }
    if total > LIST_MAX {
        let _ = write!(out, " and {} more", total - LIST_MAX);
    }
    out
}

/// A name fit for a one-line detail: control characters escaped, long names cut.
fn shown(name: &str) -> String {
    if name.is_empty() {
        return "\"\"".to_owned();
    }
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == NAME_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn names(cns: &[&str], dns: &[&str], ips: &[&str]) -> CertNames {
        CertNames {
            common_names: cns.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn loc(raw: &str) -> ServerLocation {
        ServerLocation::parse(raw).unwrap()
    }

    /// Expected outcome: `Ok(matched_name)` or `Err(kind)`.
    type Want = Result<&'static str, MismatchKind>;

    struct Row {
        what: &'static str,
        location: &'static str,
        cns: &'static [&'static str],
        dns: &'static [&'static str],
        ips: &'static [&'static str],
        dns_on: bool,
        want: Want,
        /// A fragment the detail must contain.
        detail: &'static str,
    }

    use MismatchKind::{San, SubjectCn};

    const fn row(
        what: &'static str,
        location: &'static str,
        cns: &'static [&'static str],
        dns: &'static [&'static str],
        ips: &'static [&'static str],
        want: Want,
        detail: &'static str,
    ) -> Row {
        Row {
            what,
            location,
            cns,
            dns,
            ips,
            dns_on: true,
            want,
            detail,
        }
    }

    const fn no_dns(mut r: Row) -> Row {
        r.dns_on = false;
        r
    }

    #[rustfmt::skip]
    const ROWS: &[Row] = &[
        // Subject CN
        row("CN exact", "exch1.example.com", &["exch1.example.com"], &[], &[], Ok("exch1.example.com"), "Subject CN"),
        row("CN case, as written", "exch1.example.com", &["EXCH1.Example.COM"], &[], &[], Ok("EXCH1.Example.COM"), "Subject CN"),
        row("CN trailing dot", "exch1.example.com", &["exch1.example.com."], &[], &[], Ok("exch1.example.com."), ""),
        row("location trailing dot", "exch1.example.com.", &["exch1.example.com"], &[], &[], Ok("exch1.example.com"), ""),
        row("CN mismatch", "exch2.example.com", &["exch1.example.com"], &[], &[], Err(SubjectCn), "Subject CN exch1.example.com"),
        row("CN mismatch names the host", "exch2.example.com", &["exch1.example.com"], &[], &[], Err(SubjectCn), "exch2.example.com"),
        row("second CN matches", "exch2.example.com", &["exch1.example.com", "exch2.example.com"], &[], &[], Ok("exch2.example.com"), ""),
        row("no names at all", "exch1.example.com", &[], &[], &[], Err(SubjectCn), "no Subject CN and no subjectAltName"),
        // SAN
        row("SAN only match", "exch1.example.com", &[], &["mail.example.com", "exch1.example.com"], &[], Ok("exch1.example.com"), "DNS subjectAltName"),
        row("SAN mismatch", "exch3.example.com", &["exch1.example.com"], &["mail.example.com"], &[], Err(San), "subjectAltName DNS mail.example.com"),
        row("CN still counts with SANs", "exch1.example.com", &["exch1.example.com"], &["mail.example.com"], &[], Ok("exch1.example.com"), "Subject CN"),
        row("SAN case and dot", "exch1.example.com", &[], &["Exch1.EXAMPLE.com."], &[], Ok("Exch1.EXAMPLE.com."), ""),
        row("only an IP SAN: San kind", "exch1.example.com", &["exch1.example.net"], &[], &["10.0.0.1"], Err(San), "subjectAltName IP 10.0.0.1"),
        row("exact before wildcard", "exch1.example.com", &[], &["*.example.com", "exch1.example.com"], &[], Ok("exch1.example.com"), ""),
        // Wildcards
        row("wildcard one label", "exch1.cup.example.com", &[], &["*.cup.example.com"], &[], Ok("*.cup.example.com"), "wildcard"),
        row("wildcard in CN", "exch1.cup.example.com", &["*.cup.example.com"], &[], &[], Ok("*.cup.example.com"), "wildcard Subject CN"),
        row("wildcard case", "exch1.cup.example.com", &[], &["*.CUP.Example.com"], &[], Ok("*.CUP.Example.com"), ""),
        row("wildcard not bare domain", "cup.example.com", &[], &["*.cup.example.com"], &[], Err(San), "does not cover cup.example.com itself"),
        row("wildcard not two labels", "a.exch1.cup.example.com", &[], &["*.cup.example.com"], &[], Err(San), "exactly one label"),
        row("partial wildcard prefix", "exch1.example.com", &[], &["ex*.example.com"], &[], Err(San), "Partial-label wildcards such as ex*.example.com are unsupported"),
        row("partial wildcard suffix", "exch1.example.com", &["*h1.example.com"], &[], &[], Err(SubjectCn), "unsupported"),
        row("wildcard not leftmost", "exch1.a.example.com", &[], &["exch1.*.example.com"], &[], Err(San), "unsupported"),
        row("wildcard *.com refused", "example.com", &[], &["*.com"], &[], Err(San), "top-level domain"),
        row("bare * refused", "exch1", &["*"], &[], &[], Err(SubjectCn), "top-level domain"),
        row("wildcard never matches IP", "10.0.0.1", &["*.0.0.1"], &["*.0.0.1"], &[], Err(San), "IP address subjectAltName entry"),
        // IPv4
        row("IPv4 CN", "10.0.0.1", &["10.0.0.1"], &[], &[], Ok("10.0.0.1"), "Subject CN"),
        row("IPv4 SAN", "10.0.0.1", &["exch1.example.com"], &[], &["10.0.0.9", "10.0.0.1"], Ok("10.0.0.1"), "IP address subjectAltName"),
        row("IPv4 CN with SANs present", "10.0.0.1", &["10.0.0.1"], &["exch1.example.com"], &[], Ok("10.0.0.1"), ""),
        row("IPv4 mismatch", "10.0.0.2", &["10.0.0.1"], &[], &[], Err(SubjectCn), "nor the Subject CN of the certificate, which names Subject CN 10.0.0.1"),
        row("IPv4 only as DNS SAN", "10.0.0.1", &[], &["10.0.0.1"], &[], Err(San), "must be an IP address entry"),
        // IPv6
        row("IPv6 SAN", "2001:db8::1", &[], &[], &["2001:db8::1"], Ok("2001:db8::1"), ""),
        row("IPv6 SAN, other spelling", "[2001:DB8:0::1]", &["exch1"], &[], &["2001:db8::1"], Ok("2001:db8::1"), ""),
        row("IPv6 only in CN", "2001:db8::1", &["2001:db8::1"], &[], &[], Err(SubjectCn), "the Subject CN is not enough"),
        // DNS not configured (SY-2)
        no_dns(row("no DNS, IPv4 CN", "10.0.0.1", &["10.0.0.1"], &[], &[], Ok("10.0.0.1"), "")),
        no_dns(row("no DNS, IPv4 SAN", "10.0.0.1", &["exch1.example.com"], &["exch1.example.com"], &["10.0.0.1"], Ok("10.0.0.1"), "")),
        no_dns(row("no DNS, IP mismatch", "10.0.0.1", &["exch1.example.com"], &[], &[], Err(SubjectCn), "names Subject CN exch1.example.com")),
        no_dns(row("no DNS, hostname, no SAN", "exch1.example.com", &["exch1.example.com"], &[], &[], Err(SubjectCn), "enter the Exchange server's IP address as the Presence Gateway")),
        no_dns(row("no DNS, hostname, SANs", "exch1.example.com", &["exch1.example.com"], &["exch1.example.com"], &[], Err(San), "Subject CN")),
        // Non-ASCII
        row("non-ASCII CN matches nothing", "xn--bcher-kva.example.com", &["bücher.example.com"], &[], &[], Err(SubjectCn), "xn--"),
        row("A-label compares", "xn--bcher-kva.example.com", &[], &["XN--BCHER-KVA.example.com"], &[], Ok("XN--BCHER-KVA.example.com"), ""),
        row("empty names match nothing", "exch1.example.com", &[""], &["", "."], &[], Err(San), "Subject CN \"\""),
    ];

    #[test]
    fn table() {
        assert!(ROWS.len() >= 30);
        for r in ROWS {
            let got = check_name(&loc(r.location), &names(r.cns, r.dns, r.ips), r.dns_on);
            let detail = match (&got, r.want) {
                (
                    NameCheck::Verified {
                        matched_name,
                        detail,
                    },
                    Ok(want),
                ) => {
                    assert_eq!(matched_name, want, "{}", r.what);
                    detail
                }
                (NameCheck::Mismatch { kind, detail }, Err(want)) => {
                    assert_eq!(*kind, want, "{}", r.what);
                    detail
                }
                _ => panic!("{}: got {got:?}, want {:?}", r.what, r.want),
            };
            assert!(
                detail.contains(r.detail),
                "{}: detail {detail:?} lacks {:?}",
                r.what,
                r.detail
            );
            assert!(!detail.is_empty(), "{}", r.what);
        }
    }

    #[test]
    fn verdict_words() {
        assert_eq!(MismatchKind::San.verdict(), "Failed - SAN Mismatch");
        assert_eq!(
            MismatchKind::SubjectCn.verdict(),
            "Failed - Subject CN Mismatch"
        );
    }

    #[test]
    fn has_san() {
        assert!(!names(&["a.example.com"], &[], &[]).has_san());
        assert!(names(&[], &["a.example.com"], &[]).has_san());
        assert!(names(&[], &[], &["::1"]).has_san());
    }

    #[test]
    fn long_lists_are_cut() {
        let dns: Vec<String> = (0..12).map(|i| format!("host{i}.example.com")).collect();
        let n = CertNames {
            common_names: vec!["x".repeat(500)],
            dns_names: dns,
            ip_addresses: vec![],
        };
        let NameCheck::Mismatch { detail, .. } =
            check_name(&ServerLocation::Name("exch1.example.com".into()), &n, true)
        else {
            panic!("expected a mismatch");
        };
        assert!(detail.contains("host4.example.com"), "{detail}");
        assert!(!detail.contains("host5.example.com"), "{detail}");
        assert!(detail.contains("and 7 more"), "{detail}");
        assert!(detail.len() < 500, "{detail}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let n = names(&["evil\n.example.com"], &[], &[]);
        let NameCheck::Mismatch { detail, .. } =
            check_name(&ServerLocation::Name("exch1.example.com".into()), &n, true)
        else {
            panic!("expected a mismatch");
        };
        assert!(!detail.contains('\n'), "{detail}");
    }

    #[test]
    fn raw_locations_are_normalized() {
        // ServerLocation values built by hand rather than parsed.
        let n = names(&["exch1.example.com"], &[], &[]);
        let upper = ServerLocation::Name("EXCH1.example.com.".into());
        assert!(matches!(
            check_name(&upper, &n, true),
            NameCheck::Verified { .. }
        ));
        let v4 = ServerLocation::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(matches!(
            check_name(&v4, &names(&["10.0.0.1"], &[], &[]), false),
            NameCheck::Verified { .. }
        ));
        let v6 = ServerLocation::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(matches!(
            check_name(&v6, &names(&[], &[], &["::1"]), false),
            NameCheck::Verified { .. }
        ));
    }
}
