//! Judging a captured chain against the trust store (TS-2, TS-3) with
//! rustls-webpki, and the validity of every certificate in it.
//!
//! webpki checks the leaf's dates before it builds the path, so an expired
//! leaf would hide a missing or bad issuer: a time error is judged again at
//! a time inside the certificates' validity, and dates are reported by the
//! separate validity judgement. Revocation is not checked.

use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::tls::certinfo::{self, CertInfo};

/// A certificate expiring within this many seconds gets a warning (TS-9).
pub const EXPIRY_WARNING_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVerdict {
    Verified,
    Missing,
    Bad,
    Unsupported,
}

impl ChainVerdict {
    /// The verdict words of TS-2.
    pub fn verdict(self) -> &'static str {
        match self {
            ChainVerdict::Verified => "Verified",
            ChainVerdict::Missing => "Failed - Certificate Missing From Chain",
            ChainVerdict::Bad => "Failed - Bad Certificates",
            ChainVerdict::Unsupported => "Failed - Unsupported Certificate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    Presented,
    Trusted,
    Missing,
    Bad,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Presented => "presented",
            EntryStatus::Trusted => "trusted",
            EntryStatus::Missing => "missing",
            EntryStatus::Bad => "bad",
        }
    }
}

/// One line of the chain view (TS-3). A missing certificate is known only by
/// its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub subject: String,
    pub issuer: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub sha256: Option<String>,
    pub status: EntryStatus,
}

impl ChainEntry {
    fn of(info: &CertInfo, status: EntryStatus) -> ChainEntry {
        ChainEntry {
            subject: info.subject.clone(),
            issuer: Some(info.issuer.clone()),
            not_before: Some(info.not_before),
            not_after: Some(info.not_after),
            sha256: Some(info.sha256.clone()),
            status,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidityStatus {
    Valid,
    ExpiringSoon,
    Expired,
}

impl ValidityStatus {
    pub fn verdict(self) -> &'static str {
        match self {
            ValidityStatus::Valid | ValidityStatus::ExpiringSoon => "Verified",
            ValidityStatus::Expired => "Failed - Certificate Expired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Judgement {
    pub chain: ChainVerdict,
    pub chain_detail: String,
    pub validity: ValidityStatus,
    pub validity_detail: String,
    pub entries: Vec<ChainEntry>,
    /// The leaf, parsed, when it parses (for the name check).
    pub leaf: Option<CertInfo>,
}

struct Anchor {
    der: CertificateDer<'static>,
    info: CertInfo,
}

const REVOCATION_NOTE: &str = "Revocation is not checked.";

/// Judges `presented` (leaf first) against the trust store `anchors` at
/// `now` (Unix seconds).
pub fn judge(
    presented: &[CertificateDer<'static>],
    anchors: &[CertificateDer<'static>],
    now: i64,
) -> Judgement {
    let Some(leaf_der) = presented.first() else {
        return unparsable("The server presented no certificate.".to_owned());
    };
    let parsed: Vec<Result<CertInfo, String>> =
        presented.iter().map(|c| certinfo::parse(c)).collect();
    let mut infos = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.into_iter().enumerate() {
        match p {
            Ok(info) => infos.push(info),
            Err(e) => {
                return unparsable(format!(
                    "Certificate {} of the chain the server presented cannot be read: {e}",
                    i + 1
                ));
            }
        }
    }
    let anchors: Vec<Anchor> = anchors
        .iter()
        .filter_map(|der| {
            certinfo::parse(der).ok().map(|info| Anchor {
                der: der.clone(),
                info,
            })
        })
        .collect();
    let leaf = infos[0].clone();
    let mut entries: Vec<ChainEntry> = infos
        .iter()
        .map(|i| ChainEntry::of(i, EntryStatus::Presented))
        .collect();

    let mut path = None;
    let (chain, chain_detail, trusted) = judge_path(
        leaf_der,
        presented,
        &infos,
        &anchors,
        now,
        &mut entries,
        &mut path,
    );
    // Dates count for the certificates of the path that verified: a server
    // may still send an expired cross-certificate the path goes around (the
    // AddTrust "chain of pain"), which clients ignore. Without a path, every
    // presented certificate counts.
    let mut dated: Vec<&CertInfo> = match &path {
        Some(on_path) => infos
            .iter()
            .enumerate()
            .filter(|(i, _)| *i == 0 || on_path.contains(i))
            .map(|(_, info)| info)
            .collect(),
        None => infos.iter().collect(),
    };
    if let Some(anchor) = trusted {
        let anchor = &anchors[anchor];
        if let Some(entry) = entries
            .iter_mut()
            .find(|e| e.sha256.as_deref() == Some(anchor.info.sha256.as_str()))
        {
            entry.status = EntryStatus::Trusted;
        } else {
            entries.push(ChainEntry::of(&anchor.info, EntryStatus::Trusted));
            dated.push(&anchor.info);
        }
    }
    let (validity, validity_detail) = judge_validity(&dated, now);
    Judgement {
        chain,
        chain_detail,
        validity,
        validity_detail,
        entries,
        leaf: Some(leaf),
    }
}

fn unparsable(detail: String) -> Judgement {
    Judgement {
        chain: ChainVerdict::Unsupported,
        chain_detail: detail,
        validity: ValidityStatus::Expired,
        validity_detail: "Not judged: the chain could not be read.".to_owned(),
        entries: Vec::new(),
        leaf: None,
    }
}

/// The chain verdict, its detail, and the index of the anchor that
/// completed the path when it verified. When webpki built a path, `path`
/// receives the indices in `presented` of the intermediates it went through.
fn judge_path(
    leaf_der: &CertificateDer<'static>,
    presented: &[CertificateDer<'static>],
    infos: &[CertInfo],
    anchors: &[Anchor],
    now: i64,
    entries: &mut Vec<ChainEntry>,
    path: &mut Option<Vec<usize>>,
) -> (ChainVerdict, String, Option<usize>) {
    // Certificates the verifier cannot accept, whatever the path (TS-2).
    let mut reasons = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        for reason in certinfo::unsupported_reasons(info, i == 0) {
            reasons.push(format!("{}: {reason}", info.subject));
        }
    }
    if !reasons.is_empty() {
        return (
            ChainVerdict::Unsupported,
            format!(
                "The verifier cannot accept {}. Replace the certificate on the Exchange server.",
                reasons.join("; ")
            ),
            None,
        );
    }

    // The leaf itself in the trust store (a self-signed server certificate
    // imported as its own anchor, TS-3).
    if let Some(i) = anchors
        .iter()
        .position(|a| a.info.sha256 == infos[0].sha256)
    {
        return (
            ChainVerdict::Verified,
            format!("The server's certificate is itself in the trust store. {REVOCATION_NOTE}"),
            Some(i),
        );
    }

    let trust: Vec<TrustAnchor<'_>> = anchors
        .iter()
        .filter_map(|a| webpki::anchor_from_trusted_cert(&a.der).ok())
        .collect();
    if trust.is_empty() {
        return missing(infos, anchors, entries, "The trust store is empty. ");
    }
    let intermediates = &presented[1..];
    let Ok(end_entity) = EndEntityCert::try_from(leaf_der) else {
        return (
            ChainVerdict::Unsupported,
            "The server's certificate cannot be read by the verifier.".to_owned(),
            None,
        );
    };
    let algorithms = crate::tls::provider().signature_verification_algorithms.all;

    // Judge at now; on a date error, again at times inside each
    // certificate's validity, so an expired leaf cannot hide a bad issuer.
    let mut times = vec![now];
    for info in infos {
        times.push(info.not_before + (info.not_after - info.not_before) / 2);
    }
    let mut result = Err(webpki::Error::UnknownIssuer);
    for t in times.into_iter().take(8) {
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0) as u64));
        result = end_entity
            .verify_for_usage(
                algorithms,
                &trust,
                intermediates,
                at,
                KeyUsage::server_auth(),
                None,
                None,
            )
            .map(|verified| {
                let on_path = verified
                    .intermediate_certificates()
                    .filter_map(|c| presented.iter().position(|p| *p == c.der()))
                    .collect::<Vec<usize>>();
                (verified.anchor().subject.as_ref().to_vec(), on_path)
            });
        match &result {
            Err(e) if is_date_error(e) => continue,
            _ => break,
        }
    }
    match result {
        Ok((anchor_subject, on_path)) => {
            *path = Some(on_path);
            // webpki gives the anchor's subject as the Name's contents:
            // compare it with each anchor as webpki sees it.
            let anchor = anchors.iter().position(|a| {
                webpki::anchor_from_trusted_cert(&a.der)
                    .is_ok_and(|t| t.subject.as_ref() == anchor_subject.as_slice())
            });
            let through = anchor
                .map(|i| format!(" through {}", anchors[i].info.subject))
                .unwrap_or_default();
            (
                ChainVerdict::Verified,
                format!("The chain leads to a trusted certificate{through}. {REVOCATION_NOTE}"),
                anchor,
            )
        }
        Err(e) if is_date_error(&e) => (
            ChainVerdict::Verified,
            format!(
                "The chain leads to a trusted certificate; its dates are judged under validity. \
                 {REVOCATION_NOTE}"
            ),
            None,
        ),
        Err(webpki::Error::UnknownIssuer) => missing(infos, anchors, entries, ""),
        Err(webpki::Error::InvalidSignatureForPublicKey) => bad(infos, anchors, entries)
            .unwrap_or_else(|| {
                (
                    ChainVerdict::Bad,
                    "A signature in the chain does not verify with its issuer's key.".to_owned(),
                    None,
                )
            }),
        Err(other) => (
            ChainVerdict::Unsupported,
            format!(
                "The verifier cannot accept this chain ({}). Replace the certificate on the \
                 Exchange server.",
                describe_webpki(&other)
            ),
            None,
        ),
    }
}

fn is_date_error(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::CertExpired { .. }
            | webpki::Error::CertNotValidYet { .. }
            | webpki::Error::InvalidCertValidity
    )
}

// The context-free variants are deprecated but still returned by some paths.
#[allow(deprecated)]
fn describe_webpki(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CaUsedAsEndEntity => {
            "a CA certificate is used as the server certificate".to_owned()
        }
        webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the server certificate is not for server authentication".to_owned()
        }
        webpki::Error::UnsupportedSignatureAlgorithm
        | webpki::Error::UnsupportedSignatureAlgorithmContext(_)
        | webpki::Error::UnsupportedSignatureAlgorithmForPublicKey
        | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a signature algorithm or key size it does not support".to_owned()
        }
        other => format!("{other:?}"),
    }
}

/// The topmost presented certificate: follow issuers within the presented
/// chain from the leaf (bounded by its length).
fn topmost(infos: &[CertInfo]) -> &CertInfo {
    let mut current = &infos[0];
    for _ in 0..infos.len() {
        if current.self_issued {
            break;
        }
        match infos
            .iter()
            .find(|c| c.subject_der == current.issuer_der && c.sha256 != current.sha256)
        {
            Some(next) => current = next,
            None => break,
        }
    }
    current
}

/// No path to a trust anchor: a store certificate with the needed subject
/// but another key is Bad Certificates; otherwise the issuer is missing.
fn missing(
    infos: &[CertInfo],
    anchors: &[Anchor],
    entries: &mut Vec<ChainEntry>,
    prefix: &str,
) -> (ChainVerdict, String, Option<usize>) {
    if let Some(bad) = bad(infos, anchors, entries) {
        return bad;
    }
    let top = topmost(infos);
    if top.self_issued {
        return (
            ChainVerdict::Missing,
            format!(
                "{prefix}The chain ends at {}, which is not in the trust store. Import it (or \
                 its issuer) with the Certificate Import Tool.",
                top.subject
            ),
            None,
        );
    }
    entries.push(ChainEntry {
        subject: top.issuer.clone(),
        issuer: None,
        not_before: None,
        not_after: None,
        sha256: None,
        status: EntryStatus::Missing,
    });
    (
        ChainVerdict::Missing,
        format!(
            "{prefix}No path to a trusted certificate: the issuer {} of {} is neither sent by \
             the server nor in the trust store. Import it, or have the Exchange server send the \
             whole chain.",
            top.issuer, top.subject
        ),
        None,
    )
}

fn bad(
    infos: &[CertInfo],
    anchors: &[Anchor],
    entries: &mut Vec<ChainEntry>,
) -> Option<(ChainVerdict, String, Option<usize>)> {
    let top = topmost(infos);
    let wanted = if top.self_issued {
        &top.subject_der
    } else {
        &top.issuer_der
    };
    let anchor = anchors
        .iter()
        .find(|a| &a.info.subject_der == wanted && a.info.sha256 != top.sha256)?;
    entries.push(ChainEntry::of(&anchor.info, EntryStatus::Bad));
    Some((
        ChainVerdict::Bad,
        format!(
            "The trust store holds {} (SHA-256 {}), but its key does not verify the signature \
             on {}: the server's certificate was probably regenerated. Import the current \
             certificate and delete the old one.",
            anchor.info.subject,
            certinfo::colon_fingerprint(&anchor.info.sha256),
            top.subject
        ),
        None,
    ))
}

fn judge_validity(certs: &[&CertInfo], now: i64) -> (ValidityStatus, String) {
    let date = |t: i64| crate::clock::format_time(t);
    let mut expired = Vec::new();
    let mut soon = Vec::new();
    for c in certs {
        if now > c.not_after {
            expired.push(format!("{} expired on {}", c.subject, date(c.not_after)));
        } else if now < c.not_before {
            expired.push(format!(
                "{} is not valid until {}",
                c.subject,
                date(c.not_before)
            ));
        } else if c.not_after - now < EXPIRY_WARNING_SECS {
            soon.push(format!(
                "{} expires on {} (in {} days)",
                c.subject,
                date(c.not_after),
                (c.not_after - now) / 86_400
            ));
        }
    }
    if !expired.is_empty() {
        (ValidityStatus::Expired, format!("{}.", expired.join("; ")))
    } else if !soon.is_empty() {
        (
            ValidityStatus::ExpiringSoon,
            format!("{}: renew it before then.", soon.join("; ")),
        )
    } else {
        (
            ValidityStatus::Valid,
            "Every certificate of the chain is within its validity dates.".to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, date_time_ymd};

    fn ca_params(cn: &str, from: i32, until: i32) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(until, 1, 1);
        p
    }

    /// 2025-06-01, inside every validity below except the expired ones.
    const NOW: i64 = 1_748_736_000;

    /// The AddTrust "chain of pain" (x509-limbo
    /// pathological::multiple-chains-expired-intermediate): the server
    /// still sends an expired cross-certificate of a root that is itself
    /// trusted; the path goes around it, so it must not make the chain
    /// Expired. Sent on the path, an expired intermediate still does.
    #[test]
    fn expired_certificate_off_the_path_does_not_count() {
        let old_root_key = KeyPair::generate().unwrap();
        let old_root = ca_params("Old Root", 2000, 2040)
            .self_signed(&old_root_key)
            .unwrap();
        let root_key = KeyPair::generate().unwrap();
        let root = ca_params("Root", 2010, 2040)
            .self_signed(&root_key)
            .unwrap();
        let expired_cross = ca_params("Root", 2000, 2020)
            .signed_by(&root_key, &old_root, &old_root_key)
            .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec!["exch1.example.com".to_owned()]).unwrap();
        leaf_params.not_before = date_time_ymd(2024, 1, 1);
        leaf_params.not_after = date_time_ymd(2026, 1, 1);
        let leaf = leaf_params.signed_by(&leaf_key, &root, &root_key).unwrap();

        let presented = vec![leaf.der().clone(), expired_cross.der().clone()];
        let both = vec![root.der().clone(), old_root.der().clone()];
        let j = judge(&presented, &both, NOW);
        assert_eq!(j.chain, ChainVerdict::Verified, "{}", j.chain_detail);
        assert_eq!(j.validity, ValidityStatus::Valid, "{}", j.validity_detail);
        // The chain view still lists what the server sent.
        assert_eq!(j.entries[1].status, EntryStatus::Presented);

        // Only the old root trusted: the path needs the expired cross-cert.
        let old_only = vec![old_root.der().clone()];
        let j = judge(&presented, &old_only, NOW);
        assert_eq!(j.chain, ChainVerdict::Verified, "{}", j.chain_detail);
        assert_eq!(j.validity, ValidityStatus::Expired, "{}", j.validity_detail);
        assert!(
            j.validity_detail.contains("CN=Root"),
            "{}",
            j.validity_detail
        );
    }
}
