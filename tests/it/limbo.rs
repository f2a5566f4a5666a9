//! The x509-limbo test suite (SERVER cases) run through our chain and name
//! logic (TS-2..TS-4): `judge` for the chain and dates, `check_name` for the
//! peer name. Where we knowingly answer otherwise than limbo (SPEC or
//! documented scope), the case is listed in `EXPECTED_DIVERGENCES` with why;
//! any other divergence, or a listed one that now agrees, fails the test.
//!
//! limbo.json is vendored at `tests/data/x509-limbo/limbo.json`; its source
//! and licence are in `tests/data/README.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use presence_gateway::domain::gateway::ServerLocation;
use presence_gateway::domain::names::{NameCheck, check_name};
use presence_gateway::tls::chain::{ChainVerdict, ValidityStatus, judge};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

/// limbo.json is about 1.4 MB; refuse anything wildly larger.
const MAX_LIMBO_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct Limbo {
    testcases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    validation_kind: String,
    trusted_certs: Vec<String>,
    untrusted_intermediates: Vec<String>,
    peer_certificate: String,
    validation_time: Option<String>,
    expected_peer_name: Option<PeerName>,
    expected_result: String,
}

#[derive(Deserialize)]
struct PeerName {
    kind: String,
    value: String,
}

// Why we knowingly answer otherwise than limbo, one reason per family.
const REVOCATION: &str = "TS-3: revocation is not checked (the chain detail says so); limbo \
     expects the CRL it supplies to be applied";
const MAX_DEPTH: &str = "limbo asks for a max_chain_depth; the troubleshooter has no such \
     setting (webpki applies its own depth limit)";
const CA_LEAF: &str = "TS-2: a CA flag on the server certificate is Unsupported, though RFC 5280 \
     allows a CA certificate in leaf position";
const SELF_ISSUED: &str = "webpki counts a self-issued (key rollover) intermediate against \
     pathLen and name constraints, which RFC 5280 exempts; TS-3 judges chains with webpki";
const NC_DN: &str = "webpki does not match directoryName name constraints (it refuses them); \
     TS-3 judges chains with webpki";
const NC_PROFILE: &str = "webpki applies name constraints without policing their encoding \
     (criticality, leading period, presence in a leaf, empty subtrees) or checking Subject CNs \
     against them; TS-3 judges chains with webpki";
const ANCHOR: &str = "TS-3: any trust-store certificate is an anchor, i.e. a subject and a key \
     (webpki): the anchor's own extensions, subject and encoding (AKI/SKI, basicConstraints, \
     critical extensions, EKU, key size) are not judged";
const PROFILE: &str = "an RFC 5280 / CA/B Forum issuance rule (AKI/SKI presence, extension \
     criticality, serial number, AIA, keyUsage) that webpki does not enforce; TS-2 refuses only \
     what it lists as Unsupported";
const EKU: &str = "TS-2 refuses only a server certificate whose EKU excludes serverAuth: no EKU, \
     anyExtendedKeyUsage beside serverAuth, or a critical EKU is accepted";
const LEAF_KEY: &str = "the server certificate's own key is used only for the handshake signature, \
     which the capture verifier checks with the provider's algorithms (no DSA, no P-192); TS-2 \
     refuses RSA below 2048 bits, and 2052 bits is not below";
const CN_CONSISTENCY: &str = "TS-4 matches the peer name against the CN and the SAN entries; the \
     name is a SAN entry here, and we do not refuse a certificate whose CN is not a copy of a SAN \
     entry (CA/B Forum 7.1.4.3)";
const CN_MATCH: &str = "TS-4 matches the Subject CN even beside SAN entries (Exchange \
     certificates often name the server only there); modern WebPKI ignores the CN";
const PUBLIC_SUFFIX: &str = "TS-4 refuses wildcards over a single label (*.com) but does not \
     consult the Public Suffix List, so *.co.uk and *.s3.amazonaws.com match one label";

/// Cases where we knowingly answer otherwise than limbo, each looked at, by
/// exact id (an id prefix ending in `*` is allowed, but none is needed).
const EXPECTED_DIVERGENCES: &[(&str, &str)] = &[
    ("crl::revoked-certificate-with-crl", REVOCATION),
    ("crl::crlnumber-missing", REVOCATION),
    ("crl::crlnumber-critical", REVOCATION),
    ("crl::issuer-missing-crlsign", REVOCATION),
    ("pathlen::max-chain-depth-0-exhausted", MAX_DEPTH),
    ("pathlen::max-chain-depth-1-exhausted", MAX_DEPTH),
    ("pathlen::validation-ignores-pathlen-in-leaf", CA_LEAF),
    ("rfc5280::ca-as-leaf", CA_LEAF),
    ("pathlen::self-issued-certs-pathlen", SELF_ISSUED),
    ("rfc5280::nc::permitted-self-issued", SELF_ISSUED),
    ("rfc5280::nc::permitted-dn-match", NC_DN),
    ("rfc5280::nc::permitted-dns-match-noncritical", NC_PROFILE),
    ("rfc5280::nc::invalid-dnsname-leading-period", NC_PROFILE),
    ("rfc5280::nc::not-allowed-in-ee-noncritical", NC_PROFILE),
    ("rfc5280::nc::not-allowed-in-ee-critical", NC_PROFILE),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-null",
        NC_PROFILE,
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences",
        NC_PROFILE,
    ),
    ("pathological::nc-dos-3", NC_PROFILE),
    ("rfc5280::aki::critical-aki", ANCHOR),
    ("rfc5280::aki::cross-signed-root-missing-aki", ANCHOR),
    ("rfc5280::ski::critical-ski", ANCHOR),
    ("rfc5280::ski::root-missing-ski", ANCHOR),
    ("rfc5280::ca-empty-subject", ANCHOR),
    ("rfc5280::unknown-critical-extension-root", ANCHOR),
    ("rfc5280::root-missing-basic-constraints", ANCHOR),
    ("rfc5280::root-non-critical-basic-constraints", ANCHOR),
    ("rfc5280::root-inconsistent-ca-extensions", ANCHOR),
    ("webpki::aki::root-with-aki-missing-keyidentifier", ANCHOR),
    ("webpki::aki::root-with-aki-authoritycertissuer", ANCHOR),
    (
        "webpki::aki::root-with-aki-authoritycertserialnumber",
        ANCHOR,
    ),
    ("webpki::aki::root-with-aki-all-fields", ANCHOR),
    ("webpki::aki::root-with-aki-ski-mismatch", ANCHOR),
    ("webpki::eku::root-has-eku", ANCHOR),
    ("webpki::forbidden-rsa-not-divisible-by-8-in-root", ANCHOR),
    ("rfc5280::aki::leaf-missing-aki", PROFILE),
    ("rfc5280::aki::intermediate-missing-aki", PROFILE),
    ("rfc5280::ski::intermediate-missing-ski", PROFILE),
    ("rfc5280::pc::ica-noncritical-pc", PROFILE),
    ("rfc5280::serial::too-long", PROFILE),
    ("rfc5280::serial::zero", PROFILE),
    ("rfc5280::leaf-ku-keycertsign", PROFILE),
    ("rfc5280::san::noncritical-with-empty-subject", PROFILE),
    ("webpki::san::san-critical-with-nonempty-subject", PROFILE),
    ("webpki::malformed-aia", PROFILE),
    ("webpki::eku::ee-anyeku", EKU),
    ("webpki::eku::ee-critical-eku", EKU),
    ("webpki::eku::ee-without-eku", EKU),
    ("webpki::forbidden-p192-leaf", LEAF_KEY),
    ("webpki::forbidden-dsa-leaf", LEAF_KEY),
    (
        "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
        LEAF_KEY,
    ),
    ("webpki::cn::ipv4-hex-mismatch", CN_CONSISTENCY),
    ("webpki::cn::ipv4-leading-zeros-mismatch", CN_CONSISTENCY),
    ("webpki::cn::ipv6-uppercase-mismatch", CN_CONSISTENCY),
    ("webpki::cn::ipv6-uncompressed-mismatch", CN_CONSISTENCY),
    ("webpki::cn::ipv6-non-rfc5952-mismatch", CN_CONSISTENCY),
    ("webpki::cn::punycode-not-in-san", CN_CONSISTENCY),
    ("webpki::cn::utf8-vs-punycode-mismatch", CN_CONSISTENCY),
    ("webpki::cn::not-in-san", CN_CONSISTENCY),
    ("webpki::cn::case-mismatch", CN_CONSISTENCY),
    ("webpki::san::mismatch-apex-subdomain-san", CN_MATCH),
    ("webpki::san::san-wildcard-only", CN_MATCH),
    ("webpki::san::public-suffix-wildcard-san", CN_MATCH),
    ("webpki::san::no-san", CN_MATCH),
    (
        "webpki::san::public-suffix-multi-label-wildcard-san",
        PUBLIC_SUFFIX,
    ),
    (
        "webpki::san::public-suffix-private-namespace-wildcard-san",
        PUBLIC_SUFFIX,
    ),
];

fn testdata_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

fn load() -> Limbo {
    let path = testdata_dir().join("x509-limbo/limbo.json");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| {
        panic!(
            "x509-limbo data not found at {} ({e}): it is vendored in the repository",
            path.display()
        )
    });
    assert!(
        meta.len() <= MAX_LIMBO_BYTES,
        "{} is {} bytes, more than the {MAX_LIMBO_BYTES} expected",
        path.display(),
        meta.len()
    );
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not limbo JSON: {e}", path.display()))
}

fn ders(pems: &[String]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for pem in pems {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            out.push(cert.map_err(|e| format!("PEM: {e}"))?);
        }
    }
    Ok(out)
}

fn unix_time(validation_time: Option<&str>) -> i64 {
    match validation_time {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("validation_time {t:?}: {e}"))
            .unix_timestamp(),
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    }
}

/// Our answer: SUCCESS (true) or FAILURE with the reason from our detail.
fn our_answer(case: &Case) -> Result<(), String> {
    let mut presented = ders(std::slice::from_ref(&case.peer_certificate))?;
    presented.extend(ders(&case.untrusted_intermediates)?);
    let anchors = ders(&case.trusted_certs)?;
    let j = judge(
        &presented,
        &anchors,
        unix_time(case.validation_time.as_deref()),
    );
    if j.chain != ChainVerdict::Verified {
        return Err(format!("chain {:?}: {}", j.chain, j.chain_detail));
    }
    if j.validity == ValidityStatus::Expired {
        return Err(format!("validity: {}", j.validity_detail));
    }
    if let Some(peer) = &case.expected_peer_name {
        let location = ServerLocation::parse(&peer.value)
            .map_err(|e| format!("peer name {} {:?} refused: {e}", peer.kind, peer.value))?;
        let leaf = j.leaf.as_ref().ok_or("no parsed leaf")?;
        if let NameCheck::Mismatch { kind, detail } = check_name(&location, &leaf.names, true) {
            return Err(format!("name {kind:?}: {detail}"));
        }
    }
    Ok(())
}

fn listed(id: &str) -> Option<&'static (&'static str, &'static str)> {
    EXPECTED_DIVERGENCES
        .iter()
        .find(|(pat, _)| match pat.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => id == *pat,
        })
}

fn word(success: bool) -> &'static str {
    if success { "SUCCESS" } else { "FAILURE" }
}

/// One line of a detail, cut: the summary must stay readable.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(160).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

#[test]
fn limbo_server_cases() {
    let limbo = load();
    let cases: Vec<&Case> = limbo
        .testcases
        .iter()
        .filter(|c| c.validation_kind == "SERVER")
        .collect();
    assert!(!cases.is_empty(), "no SERVER cases in limbo.json");

    let mut agree = 0;
    let mut expected_divergences = 0;
    let mut unexpected = Vec::new();
    // Entry -> whether some case still diverges under it.
    let mut used: BTreeMap<&str, bool> = EXPECTED_DIVERGENCES
        .iter()
        .map(|(pat, _)| (*pat, false))
        .collect();
    for case in &cases {
        let expected = match case.expected_result.as_str() {
            "SUCCESS" => true,
            "FAILURE" => false,
            other => panic!("{}: expected_result {other:?}", case.id),
        };
        let ours = our_answer(case);
        let reason = ours.as_ref().err().map(|r| short(r)).unwrap_or_default();
        if ours.is_ok() == expected {
            agree += 1;
            continue;
        }
        let line = format!(
            "{}: expected {}, ours {}{}",
            case.id,
            word(expected),
            word(ours.is_ok()),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        );
        match listed(&case.id) {
            Some((pat, why)) => {
                expected_divergences += 1;
                used.insert(pat, true);
                eprintln!("  expected divergence {line} -- {why}");
            }
            None => unexpected.push(line),
        }
    }
    // The list must stay honest: an entry under which no case diverges
    // (the case now agrees, or the id is mistyped or gone) is stale.
    let stale: Vec<String> = used
        .iter()
        .filter(|(_, hit)| !**hit)
        .map(|(pat, _)| {
            format!(
                "{pat}: no SERVER case diverges under it any more (it now agrees, or no such \
                 id); remove the entry"
            )
        })
        .collect();

    eprintln!(
        "x509-limbo SERVER cases: {}, agree {agree}, expected divergences {expected_divergences}",
        cases.len()
    );
    for line in &unexpected {
        eprintln!("  UNEXPECTED divergence {line}");
    }
    for line in &stale {
        eprintln!("  STALE entry {line}");
    }
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} unexpected divergence(s) and {} stale entr(y/ies) in EXPECTED_DIVERGENCES: see above",
        unexpected.len(),
        stale.len()
    );
}
