//! Certificate facts for the troubleshooter (TS-2..TS-4): parsed from DER.
//!
//! Certificates come from remote servers: every field is read defensively,
//! and anything malformed is an `Err` with a message, never a panic.

use std::fmt::Write as _;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::nom;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, AttributeTypeAndValue, X509Name};

use crate::domain::names::CertNames;

#[derive(Debug, Clone)]
pub struct CertInfo {
    /// RFC 4514 order, most specific first: "CN=exch1.example.com, O=Example".
    pub subject: String,
    pub issuer: String,
    /// The raw encoded Names, to compare subjects and issuers exactly.
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// 64 lowercase hex characters of SHA-256 over the DER.
    pub sha256: String,
    pub names: CertNames,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// Subject and issuer are the same encoded Name.
    pub self_issued: bool,
    /// e.g. "sha256WithRSAEncryption", "ecdsa-with-SHA256".
    pub signature_algorithm: String,
    /// e.g. "RSA 2048 bits", "EC P-256", "Ed25519".
    pub key_description: String,
    /// No EKU extension, or one that allows serverAuth or anyExtendedKeyUsage.
    pub server_auth: bool,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
}

/// Parses one DER certificate. Never panics; the error says what is wrong
/// in words an administrator can relate to the file or server.
pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
    if der.is_empty() {
        return Err("The certificate is empty (no data).".to_owned());
    }
    if der.starts_with(b"-----BEGIN") {
        return Err("This is PEM text, not a DER certificate.".to_owned());
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
        nom::Err::Incomplete(_) => {
            "The certificate is truncated: the data ends before the certificate does.".to_owned()
        }
        nom::Err::Error(e) | nom::Err::Failure(e) => {
            format!("This is not a valid DER X.509 certificate ({e}).")
        }
    })?;
    if !rest.is_empty() {
        return Err(format!(
            "The certificate is followed by {} bytes of unexpected data.",
            rest.len()
        ));
    }
    let own = &der[..der.len() - rest.len()];

    let names = cert_names(&cert)?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| format!("The basicConstraints extension is invalid ({e})."))?
        .is_some_and(|bc| bc.value.ca);
    let server_auth = match cert
        .extended_key_usage()
        .map_err(|e| format!("The extendedKeyUsage extension is invalid ({e})."))?
    {
        None => true,
        Some(eku) => eku.value.server_auth || eku.value.any,
    };
    let mut subject_key_id = None;
    let mut authority_key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }

    let subject_der = cert.subject().as_raw().to_vec();
    let issuer_der = cert.issuer().as_raw().to_vec();
    Ok(CertInfo {
        subject: name_string(cert.subject()),
        issuer: name_string(cert.issuer()),
        self_issued: subject_der == issuer_der,
        subject_der,
        issuer_der,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256: sha256_hex(own),
        names,
        is_ca,
        signature_algorithm: signature_name(&cert.signature_algorithm),
        key_description: key_description(&cert),
        server_auth,
        subject_key_id,
        authority_key_id,
    })
}

pub fn sha256_hex(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// "AB:CD:..." for display, from the lowercase hex of `sha256_hex`.
pub fn colon_fingerprint(hex: &str) -> String {
    let chars: Vec<char> = hex.chars().map(|c| c.to_ascii_uppercase()).collect();
    chars
        .chunks(2)
        .map(|pair| pair.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// TS-2 "Unsupported Certificate" reasons this certificate gives, for the
/// position it holds in a chain.
pub fn unsupported_reasons(info: &CertInfo, is_leaf: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    // A self-issued CA certificate is a root: as a trust anchor its own
    // signature is never checked, and old roots are often SHA-1 signed. A
    // self-signed leaf used as its own anchor is checked, so it counts.
    let signature_checked = is_leaf || !(info.self_issued && info.is_ca);
    if signature_checked && let Some(hash) = weak_hash(&info.signature_algorithm) {
        reasons.push(format!(
            "signed with {hash} ({}), which is no longer accepted",
            info.signature_algorithm
        ));
    }
    if let Some(bits) = rsa_bits(&info.key_description)
        && bits < 2048
    {
        reasons.push(format!("RSA key of {bits} bits, below 2048"));
    }
    if is_leaf && info.is_ca {
        reasons.push(
            "a CA certificate (basicConstraints cA) used as the server certificate".to_owned(),
        );
    }
    if is_leaf && !info.server_auth {
        reasons.push(
            "no serverAuth usage: its extended key usage does not allow TLS server \
             authentication"
                .to_owned(),
        );
    }
    reasons
}

fn weak_hash(signature_algorithm: &str) -> Option<&'static str> {
    // Names like "sha1WithRSAEncryption", "ecdsa-with-SHA1", "rsassaPss (SHA-1)".
    let name = signature_algorithm.to_ascii_lowercase().replace('-', "");
    if name.contains("md5") {
        Some("MD5")
    } else if name.contains("md2") {
        Some("MD2")
    } else if name.contains("sha1") {
        Some("SHA-1")
    } else {
        None
    }
}

/// The size in "RSA 1024 bits" (and "RSA-PSS 1024 bits").
fn rsa_bits(key_description: &str) -> Option<u32> {
    let rest = key_description
        .strip_prefix("RSA ")
        .or_else(|| key_description.strip_prefix("RSA-PSS "))?;
    rest.strip_suffix(" bits")?.parse().ok()
}

fn cert_names(cert: &X509Certificate<'_>) -> Result<CertNames, String> {
    let mut names = CertNames {
        common_names: cert
            .subject()
            .iter_common_name()
            .map(attribute_text)
            .collect(),
        ..CertNames::default()
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("The subjectAltName extension is invalid ({e})."))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::from(v6))
    } else {
        None
    }
}

/// RFC 4514: the last RDN first, multi-valued RDNs joined by '+'.
fn name_string(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = escape_value(&attribute_text(atv));
                    match short_name(&oid) {
                        Some(short) => format!("{short}={value}"),
                        None => format!("{oid}={value}"),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.46" => "dnQualifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// The text of a Name attribute whatever its string type; other values as
/// "#" and hex, as RFC 4514 does.
fn attribute_text(atv: &AttributeTypeAndValue<'_>) -> String {
    if let Ok(s) = atv.as_str() {
        return s.to_owned();
    }
    let value: &Any<'_> = atv.attr_value();
    let data = value.data;
    match value.tag() {
        // UCS-2 in old Windows certificates.
        Tag::BmpString if data.len().is_multiple_of(2) => char::decode_utf16(
            data.chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks_exact(4)
            .map(|q| {
                char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        // Read as Latin-1, which is what their users meant in practice.
        Tag::TeletexString | Tag::VisibleString => data.iter().map(|b| char::from(*b)).collect(),
        _ => format!("#{}", hex(data)),
    }
}

fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                // Escaped as UTF-8 bytes, as RFC 4514 does for NUL; keeps
                // the one-line views one line.
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn signature_name(alg: &AlgorithmIdentifier<'_>) -> String {
    let oid = alg.algorithm.to_id_string();
    let name = match oid.as_str() {
        "1.2.840.113549.1.1.2" => "md2WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.3.14.3.2.29" => "sha1WithRSASignature",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.10040.4.3" => "dsa-with-SHA1",
        "2.16.840.1.101.3.4.3.2" => "dsa-with-SHA256",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        // The hash is in the parameters, and SHA-1 when they are absent.
        "1.2.840.113549.1.1.10" => {
            let hash = alg
                .parameters
                .as_ref()
                .and_then(|p| RsaSsaPssParams::try_from(p).ok())
                .map(|p| hash_name(&p.hash_algorithm_oid().to_id_string()))
                .unwrap_or_else(|| "SHA-1".to_owned());
            return format!("rsassaPss ({hash})");
        }
        _ => return format!("unknown ({oid})"),
    };
    name.to_owned()
}

fn hash_name(oid: &str) -> String {
    match oid {
        "1.3.14.3.2.26" => "SHA-1".to_owned(),
        "2.16.840.1.101.3.4.2.4" => "SHA-224".to_owned(),
        "2.16.840.1.101.3.4.2.1" => "SHA-256".to_owned(),
        "2.16.840.1.101.3.4.2.2" => "SHA-384".to_owned(),
        "2.16.840.1.101.3.4.2.3" => "SHA-512".to_owned(),
        other => format!("hash {other}"),
    }
}

fn key_description(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {} bits", bit_length(rsa.modulus)),
            _ => "RSA (unreadable key)".to_owned(),
        },
        "1.2.840.113549.1.1.10" => {
            // RSASSA-PSS keys share the RSAPublicKey encoding.
            let key =
                x509_parser::public_key::RSAPublicKey::from_der(&spki.subject_public_key.data);
            match key {
                Ok((_, rsa)) => format!("RSA-PSS {} bits", bit_length(rsa.modulus)),
                Err(_) => "RSA-PSS (unreadable key)".to_owned(),
            }
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|c| c.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "EC P-256".to_owned(),
                Some("1.3.132.0.34") => "EC P-384".to_owned(),
                Some("1.3.132.0.35") => "EC P-521".to_owned(),
                Some(other) => format!("EC (curve {other})"),
                None => "EC (curve not named)".to_owned(),
            }
        }
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        other => format!("unknown key type ({other})"),
    }
}

/// Bits of a big-endian unsigned integer, leading zero bytes (DER's sign
/// byte) ignored. x509-parser's `key_size` assumes a sign byte is present.
fn bit_length(be: &[u8]) -> u32 {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let digits = &be[start..];
    match digits.first() {
        None => 0,
        Some(first) => {
            let len = u32::try_from(digits.len()).unwrap_or(u32::MAX / 8);
            (len - 1) * 8 + (8 - first.leading_zeros())
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, PublicKeyData, SanType, SignatureAlgorithm, date_time_ymd,
    };

    fn leaf_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(vec![cn.to_owned()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    }

    fn self_signed(p: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    /// An RSA public key of `bits` bits; rcgen cannot generate RSA keys
    /// with ring, but it signs a certificate *for* any public key.
    struct RsaPublic(Vec<u8>);

    impl RsaPublic {
        fn of_bits(bits: usize) -> Self {
            // Exactly `bits` significant bits, plus DER's sign byte if needed.
            let mut modulus = vec![0xa5u8; bits.div_ceil(8)];
            modulus[0] = 1 << ((bits - 1) % 8);
            if modulus[0] & 0x80 != 0 {
                modulus.insert(0, 0);
            }
            let exponent = [0x01, 0x00, 0x01];
            let mut body = der_tlv(0x02, &modulus);
            body.extend(der_tlv(0x02, &exponent));
            RsaPublic(der_tlv(0x30, &body))
        }
    }

    impl PublicKeyData for RsaPublic {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &SignatureAlgorithm {
            &rcgen::PKCS_RSA_SHA256
        }
    }

    fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "CH");
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name
            .push(DnType::CommonName, "Example Root CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    #[test]
    fn subject_issuer_names_and_times() {
        let mut p = leaf_params("exch1.example.com");
        p.subject_alt_names = vec![
            SanType::DnsName("exch1.example.com".try_into().unwrap()),
            SanType::DnsName("*.cup.example.com".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
            SanType::IpAddress("2001:db8::1".parse().unwrap()),
            SanType::Rfc822Name("admin@example.com".try_into().unwrap()),
        ];
        p.not_before = date_time_ymd(2024, 1, 2);
        p.not_after = date_time_ymd(2026, 3, 4);
        let der = self_signed(p);
        let info = parse(&der).unwrap();
        assert_eq!(info.subject, "CN=exch1.example.com, O=Example");
        assert_eq!(info.issuer, info.subject);
        assert!(info.self_issued);
        assert_eq!(info.subject_der, info.issuer_der);
        assert_eq!(info.not_before, 1_704_153_600);
        assert_eq!(info.not_after, 1_772_582_400);
        assert_eq!(info.names.common_names, vec!["exch1.example.com"]);
        assert_eq!(
            info.names.dns_names,
            vec!["exch1.example.com", "*.cup.example.com"]
        );
        assert_eq!(
            info.names.ip_addresses,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(info.key_description, "EC P-256");
        assert!(!info.is_ca);
        assert!(info.server_auth);
        assert!(unsupported_reasons(&info, true).is_empty());
    }

    #[test]
    fn several_common_names_and_escaping() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example, Inc. + \"Friends\"");
        p.distinguished_name.push(DnType::CommonName, "exch1");
        // rcgen keeps one value per type: a second CN under its bare OID.
        p.distinguished_name.push(
            DnType::CustomDnType(vec![2, 5, 4, 3]),
            DnValue::Utf8String("exch1.example.com".to_owned()),
        );
        p.distinguished_name.push(
            DnType::CustomDnType(vec![1, 2, 3, 4]),
            DnValue::BmpString("Bü".try_into().unwrap()),
        );
        let info = parse(&self_signed(p)).unwrap();
        assert_eq!(info.names.common_names, vec!["exch1", "exch1.example.com"]);
        assert!(!info.names.has_san());
        assert_eq!(
            info.subject,
            "1.2.3.4=Bü, CN=exch1.example.com, CN=exch1, \
             O=Example\\, Inc. \\+ \\\"Friends\\\""
        );
    }

    #[test]
    fn other_string_types_are_decoded() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(
            DnType::CommonName,
            DnValue::BmpString("exch1.example.com".try_into().unwrap()),
        );
        p.distinguished_name.push(
            DnType::CustomDnType(vec![2, 5, 4, 3]),
            DnValue::UniversalString("exch2.example.com".try_into().unwrap()),
        );
        p.distinguished_name.push(
            DnType::OrganizationName,
            DnValue::TeletexString("Example".try_into().unwrap()),
        );
        let info = parse(&self_signed(p)).unwrap();
        assert_eq!(
            info.names.common_names,
            vec!["exch1.example.com", "exch2.example.com"]
        );
        assert_eq!(
            info.subject,
            "O=Example, CN=exch2.example.com, CN=exch1.example.com"
        );
    }

    #[test]
    fn ca_signed_leaf() {
        let ca = ca();
        let mut p = leaf_params("exch1.example.com");
        p.use_authority_key_identifier_extension = true;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let der = p.signed_by(&key, &ca.cert, &ca.key).unwrap().der().to_vec();
        let leaf = parse(&der).unwrap();
        let root = parse(ca.cert.der()).unwrap();

        assert_eq!(root.subject, "CN=Example Root CA, O=Example, C=CH");
        assert!(root.is_ca && root.self_issued);
        assert_eq!(root.key_description, "EC P-384");
        assert_eq!(root.signature_algorithm, "ecdsa-with-SHA384");
        assert_eq!(leaf.issuer, root.subject);
        assert_eq!(leaf.issuer_der, root.subject_der);
        assert!(!leaf.self_issued && !leaf.is_ca);
        assert_eq!(leaf.key_description, "Ed25519");
        assert_eq!(leaf.signature_algorithm, "ecdsa-with-SHA384");
        assert!(leaf.server_auth);
        assert!(root.subject_key_id.is_some());
        assert_eq!(leaf.authority_key_id, root.subject_key_id);
        assert!(unsupported_reasons(&root, false).is_empty());
        assert!(unsupported_reasons(&leaf, true).is_empty());
        // The CA certificate as a server certificate is refused.
        let reasons = unsupported_reasons(&root, true);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("CA"), "{reasons:?}");
    }

    #[test]
    fn extended_key_usage() {
        let with = |ekus: Vec<ExtendedKeyUsagePurpose>| {
            let mut p = leaf_params("exch1.example.com");
            p.extended_key_usages = ekus;
            parse(&self_signed(p)).unwrap()
        };
        assert!(with(vec![]).server_auth);
        assert!(with(vec![ExtendedKeyUsagePurpose::ServerAuth]).server_auth);
        assert!(with(vec![ExtendedKeyUsagePurpose::Any]).server_auth);
        assert!(
            with(vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth
            ])
            .server_auth
        );
        let client_only = with(vec![ExtendedKeyUsagePurpose::ClientAuth]);
        assert!(!client_only.server_auth);
        let reasons = unsupported_reasons(&client_only, true);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("no serverAuth usage"), "{reasons:?}");
        // Only the server certificate needs serverAuth here.
        assert!(unsupported_reasons(&client_only, false).is_empty());
    }

    #[test]
    fn rsa_key_sizes() {
        let ca = ca();
        for (bits, weak) in [(1024, true), (2047, true), (2048, false), (4096, false)] {
            let p = leaf_params("exch1.example.com");
            let der = p
                .signed_by(&RsaPublic::of_bits(bits), &ca.cert, &ca.key)
                .unwrap()
                .der()
                .to_vec();
            let info = parse(&der).unwrap();
            assert_eq!(info.key_description, format!("RSA {bits} bits"));
            assert_eq!(info.signature_algorithm, "ecdsa-with-SHA384");
            let reasons = unsupported_reasons(&info, true);
            if weak {
                assert_eq!(reasons, vec![format!("RSA key of {bits} bits, below 2048")]);
            } else {
                assert!(reasons.is_empty(), "{bits}: {reasons:?}");
            }
        }
    }

    #[test]
    fn bit_length_counts_exactly() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x7f, 0xff]), 15);
    }

    #[test]
    fn fingerprints() {
        let der = self_signed(leaf_params("exch1.example.com"));
        let info = parse(&der).unwrap();
        let direct: String = Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(info.sha256, direct);
        assert_eq!(info.sha256.len(), 64);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let colons = colon_fingerprint(&info.sha256);
        assert_eq!(colons.len(), 95);
        assert_eq!(colons.replace(':', "").to_ascii_lowercase(), info.sha256);
        assert_eq!(colon_fingerprint("abcdef"), "AB:CD:EF");
        assert_eq!(colon_fingerprint(""), "");
    }

    fn info_with(signature_algorithm: &str, key_description: &str) -> CertInfo {
        CertInfo {
            subject: "CN=exch1.example.com".to_owned(),
            issuer: "CN=Example CA".to_owned(),
            subject_der: vec![1],
            issuer_der: vec![2],
            not_before: 0,
            not_after: 1,
            sha256: "00".repeat(32),
            names: CertNames::default(),
            is_ca: false,
            self_issued: false,
            signature_algorithm: signature_algorithm.to_owned(),
            key_description: key_description.to_owned(),
            server_auth: true,
            subject_key_id: None,
            authority_key_id: None,
        }
    }

    #[test]
    fn unsupported_reason_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool, &[&str])] = &[
            ("sha256WithRSAEncryption", "RSA 2048 bits", true, &[]),
            ("sha1WithRSAEncryption", "RSA 2048 bits", true, &["signed with SHA-1"]),
            ("ecdsa-with-SHA1", "EC P-256", false, &["signed with SHA-1"]),
            ("rsassaPss (SHA-1)", "RSA 2048 bits", true, &["signed with SHA-1"]),
            ("rsassaPss (SHA-256)", "RSA 2048 bits", true, &[]),
            ("md5WithRSAEncryption", "RSA 2048 bits", false, &["signed with MD5"]),
            ("sha256WithRSAEncryption", "RSA 1024 bits", false, &["RSA key of 1024 bits, below 2048"]),
            ("sha256WithRSAEncryption", "RSA-PSS 1024 bits", true, &["RSA key of 1024 bits, below 2048"]),
            ("sha1WithRSAEncryption", "RSA 1024 bits", true, &["signed with SHA-1", "RSA key of 1024 bits"]),
            ("ecdsa-with-SHA384", "EC P-384", true, &[]),
            ("Ed25519", "Ed25519", true, &[]),
        ];
        for (sig, key, is_leaf, want) in cases {
            let reasons = unsupported_reasons(&info_with(sig, key), *is_leaf);
            assert_eq!(reasons.len(), want.len(), "{sig} {key}: {reasons:?}");
            for (got, want) in reasons.iter().zip(want.iter()) {
                assert!(got.starts_with(want), "{sig} {key}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn self_signed_roots_and_leaves() {
        // A SHA-1 root is an anchor whose signature nobody checks.
        let mut root = info_with("sha1WithRSAEncryption", "RSA 2048 bits");
        root.is_ca = true;
        root.self_issued = true;
        assert!(unsupported_reasons(&root, false).is_empty());
        // A self-signed server certificate without the CA flag is fine...
        let mut leaf = info_with("sha256WithRSAEncryption", "RSA 2048 bits");
        leaf.self_issued = true;
        assert!(unsupported_reasons(&leaf, true).is_empty());
        // ...but as its own anchor its SHA-1 signature is checked.
        leaf.signature_algorithm = "sha1WithRSAEncryption".to_owned();
        assert_eq!(unsupported_reasons(&leaf, true).len(), 1);
        // An intermediate's weak signature counts.
        let mut intermediate = info_with("sha1WithRSAEncryption", "RSA 2048 bits");
        intermediate.is_ca = true;
        assert_eq!(unsupported_reasons(&intermediate, false).len(), 1);
        // Leaf-only reasons stay leaf-only.
        intermediate.signature_algorithm = "sha256WithRSAEncryption".to_owned();
        intermediate.server_auth = false;
        assert!(unsupported_reasons(&intermediate, false).is_empty());
    }

    /// A tiny deterministic generator: the tests need no seed file.
    fn lcg(state: &mut u64) -> u8 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*state >> 33) as u8
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(b"").unwrap_err().contains("empty"));
        assert!(
            parse(b"-----BEGIN CERTIFICATE-----\nMIIB\n")
                .unwrap_err()
                .contains("PEM")
        );
        assert!(parse(b"hello, world").is_err());
        assert!(parse(&[0x30]).is_err());
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());

        let der = self_signed(leaf_params("exch1.example.com"));
        for len in 0..der.len() {
            let err = parse(&der[..len]).unwrap_err();
            assert!(!err.is_empty());
        }
        let mut trailing = der.clone();
        trailing.extend_from_slice(b"junk");
        assert!(parse(&trailing).unwrap_err().contains("4 bytes"));

        // Every single-byte corruption parses or fails, but never panics.
        for i in 0..der.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                let _ = parse(&bad);
            }
        }
        let mut state = 7;
        for _ in 0..2000 {
            let len = usize::from(lcg(&mut state)) * 2;
            let mut bytes: Vec<u8> = (0..len).map(|_| lcg(&mut state)).collect();
            if let Some(first) = bytes.first_mut() {
                *first = 0x30; // a SEQUENCE, to get past the first check
            }
            let _ = parse(&bytes);
        }
    }
}
