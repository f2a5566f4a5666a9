//! NTLMv2 over HTTP (MS-NLMP), as IIS speaks it in front of Exchange: the
//! client's NEGOTIATE and AUTHENTICATE messages, the server's CHALLENGE read
//! with bounds checks, and Extended Protection's channel binding
//! (`tls-server-end-point`, RFC 5929), which recent Exchange builds require.
//!
//! The server side (a CHALLENGE to send, an AUTHENTICATE to verify) is here
//! too, so exchange-sim and the tests check the client against the same
//! rules rather than against themselves: its core, the NTLMv2 response, is
//! pinned by the known answers of MS-NLMP section 4.2.4.
//!
//! No session security is negotiated (no KEY_EXCH, no signing or sealing):
//! HTTP authentication needs none, TLS protects the connection.

use hmac::{Hmac, Mac};
use md4::Md4;
use md5::{Digest, Md5};
use sha2::{Sha256, Sha384, Sha512};

type HmacMd5 = Hmac<Md5>;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE: u32 = 1;
const CHALLENGE: u32 = 2;
const AUTHENTICATE: u32 = 3;

// Negotiate flags (MS-NLMP 2.2.2.5).
const UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NTLM: u32 = 0x0000_0200;
const ALWAYS_SIGN: u32 = 0x0000_8000;
const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;
const CLIENT_FLAGS: u32 = UNICODE
    | REQUEST_TARGET
    | NTLM
    | ALWAYS_SIGN
    | EXTENDED_SESSIONSECURITY
    | NEGOTIATE_128
    | NEGOTIATE_56;

// AV_PAIR ids (MS-NLMP 2.2.2.1).
const AV_EOL: u16 = 0;
pub const AV_NB_COMPUTER_NAME: u16 = 1;
pub const AV_NB_DOMAIN_NAME: u16 = 2;
pub const AV_DNS_COMPUTER_NAME: u16 = 3;
const AV_TIMESTAMP: u16 = 7;
const AV_TARGET_NAME: u16 = 9;
const AV_CHANNEL_BINDINGS: u16 = 10;

/// The AUTHENTICATE header without the optional Version and MIC fields:
/// neither is needed without NEGOTIATE_VERSION and a MIC.
const AUTHENTICATE_HEADER: usize = 64;

/// An account as NTLM carries it: a down-level `DOMAIN\user` splits in two;
/// a UPN `user@domain` or a bare name goes whole as the user, with no
/// domain, which is how Windows clients send a UPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmAccount {
    pub domain: String,
    pub user: String,
}

impl NtlmAccount {
    pub fn parse(account: &str) -> NtlmAccount {
        match account.split_once('\\') {
            Some((domain, user)) => NtlmAccount {
                domain: domain.to_owned(),
                user: user.to_owned(),
            },
            None => NtlmAccount {
                domain: String::new(),
                user: account.to_owned(),
            },
        }
    }
}

/// The NEGOTIATE message (type 1): flags only, no domain or workstation.
pub fn negotiate_message() -> Vec<u8> {
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(SIGNATURE);
    message.extend_from_slice(&NEGOTIATE.to_le_bytes());
    message.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    // Empty DomainNameFields and WorkstationFields.
    message.extend_from_slice(&[0; 16]);
    message
}

/// Whether `message` is a NEGOTIATE (type 1), for a server deciding
/// between sending a challenge and verifying an answer.
pub fn is_negotiate(message: &[u8]) -> bool {
    message.starts_with(SIGNATURE) && u32_at(message, 8) == Some(NEGOTIATE)
}

/// A server's CHALLENGE message (type 2), as far as NTLMv2 needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    /// The TargetInfo AV pairs, EOL excluded.
    pub target_info: Vec<(u16, Vec<u8>)>,
}

impl Challenge {
    pub fn parse(message: &[u8]) -> Result<Challenge, String> {
        if message.len() < 48 || &message[..8] != SIGNATURE {
            return Err("the NTLM challenge is not an NTLMSSP message".to_owned());
        }
        if u32_at(message, 8) != Some(CHALLENGE) {
            return Err("the NTLM answer is not a CHALLENGE message".to_owned());
        }
        let flags = u32_at(message, 20).unwrap_or(0);
        let mut server_challenge = [0; 8];
        server_challenge.copy_from_slice(&message[24..32]);
        let info =
            field(message, 40).ok_or("the NTLM challenge's TargetInfo lies outside the message")?;
        if info.is_empty() {
            // NTLMv2 needs it: the server offers NTLMv1 only.
            return Err(
                "the NTLM challenge carries no TargetInfo: the server does not offer \
                        NTLMv2"
                    .to_owned(),
            );
        }
        Ok(Challenge {
            flags,
            server_challenge,
            target_info: av_pairs(info)?,
        })
    }

    fn av(&self, id: u16) -> Option<&[u8]> {
        self.target_info
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_slice())
    }
}

/// What the client binds its response to, beyond the server's challenge.
pub struct Binding<'a> {
    /// MD5 of the channel bindings of the TLS connection (see
    /// `channel_bindings_hash`), or None when not known.
    pub channel_bindings: Option<[u8; 16]>,
    /// The service principal name, `HTTP/<host>`.
    pub target_name: Option<&'a str>,
}

/// The AUTHENTICATE message (type 3) answering `challenge`.
/// `client_challenge` is random; `now` is the time in Windows FILETIME
/// units, used when the server sends no timestamp of its own.
pub fn authenticate_message(
    challenge: &Challenge,
    account: &NtlmAccount,
    password: &str,
    binding: &Binding<'_>,
    client_challenge: [u8; 8],
    now: u64,
) -> Vec<u8> {
    let key = ntowf_v2(&nt_hash(password), &account.user, &account.domain);
    let server_time = challenge
        .av(AV_TIMESTAMP)
        .and_then(|v| v.try_into().ok())
        .map(u64::from_le_bytes);
    let mut pairs: Vec<(u16, Vec<u8>)> = challenge
        .target_info
        .iter()
        .filter(|(id, _)| *id != AV_CHANNEL_BINDINGS && *id != AV_TARGET_NAME)
        .cloned()
        .collect();
    if let Some(hash) = binding.channel_bindings {
        pairs.push((AV_CHANNEL_BINDINGS, hash.to_vec()));
    }
    if let Some(spn) = binding.target_name {
        pairs.push((AV_TARGET_NAME, utf16le(spn)));
    }
    let (nt_response, _) = nt_response(
        &key,
        &challenge.server_challenge,
        &client_challenge,
        server_time.unwrap_or(now),
        &encode_av_pairs(&pairs),
    );
    // With a server timestamp, LMv2 is replaced by zeros (MS-NLMP 3.1.5.1.2).
    let lm_response = if server_time.is_some() {
        vec![0; 24]
    } else {
        lm_v2_response(&key, &challenge.server_challenge, &client_challenge)
    };
    let flags = CLIENT_FLAGS & (challenge.flags | UNICODE);
    let payloads: [Vec<u8>; 6] = [
        lm_response,
        nt_response,
        utf16le(&account.domain),
        utf16le(&account.user),
        Vec::new(), // workstation
        Vec::new(), // encrypted random session key
    ];
    let mut message =
        Vec::with_capacity(AUTHENTICATE_HEADER + payloads.iter().map(Vec::len).sum::<usize>());
    message.extend_from_slice(SIGNATURE);
    message.extend_from_slice(&AUTHENTICATE.to_le_bytes());
    let mut offset = AUTHENTICATE_HEADER;
    for payload in &payloads {
        // Field lengths are u16: every payload here is far smaller.
        let length = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        message.extend_from_slice(&length.to_le_bytes());
        message.extend_from_slice(&length.to_le_bytes());
        message.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += payload.len();
    }
    message.extend_from_slice(&flags.to_le_bytes());
    for payload in &payloads {
        message.extend_from_slice(payload);
    }
    message
}

/// MD5 of the `gss_channel_bindings_struct` of a TLS connection whose
/// server presented `leaf_der`: no addresses, and as application data
/// `tls-server-end-point:` followed by the certificate's hash under its
/// signature's hash algorithm, SHA-256 for MD5 and SHA-1 (RFC 5929 4.1).
pub fn channel_bindings_hash(leaf_der: &[u8]) -> [u8; 16] {
    let digest: Vec<u8> = match end_point_hash(leaf_der) {
        EndPointHash::Sha384 => Sha384::digest(leaf_der).to_vec(),
        EndPointHash::Sha512 => Sha512::digest(leaf_der).to_vec(),
        EndPointHash::Sha256 => Sha256::digest(leaf_der).to_vec(),
    };
    let mut data = b"tls-server-end-point:".to_vec();
    data.extend_from_slice(&digest);
    let mut flattened = vec![0; 16]; // initiator and acceptor: no address
    flattened.extend_from_slice(&(data.len() as u32).to_le_bytes());
    flattened.extend_from_slice(&data);
    Md5::digest(&flattened).into()
}

enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

fn end_point_hash(leaf_der: &[u8]) -> EndPointHash {
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(leaf_der) else {
        return EndPointHash::Sha256;
    };
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => EndPointHash::Sha384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => EndPointHash::Sha512,
        _ => EndPointHash::Sha256,
    }
}

/// Windows FILETIME: 100-nanosecond ticks since 1601-01-01 UTC.
pub fn filetime(unix_seconds: i64) -> u64 {
    const UNIX_EPOCH_AS_FILETIME_SECONDS: i64 = 11_644_473_600;
    ((unix_seconds.saturating_add(UNIX_EPOCH_AS_FILETIME_SECONDS)).max(0) as u64)
        .saturating_mul(10_000_000)
}

// ------------------------------------------------------------- the server

/// A CHALLENGE message as IIS sends it, for exchange-sim.
pub fn challenge_message(
    server_challenge: [u8; 8],
    target_name: &str,
    pairs: &[(u16, &str)],
    timestamp: u64,
) -> Vec<u8> {
    let name = utf16le(target_name);
    let mut info: Vec<(u16, Vec<u8>)> = pairs.iter().map(|(id, v)| (*id, utf16le(v))).collect();
    info.push((AV_TIMESTAMP, timestamp.to_le_bytes().to_vec()));
    let info = encode_av_pairs(&info);
    let flags = CLIENT_FLAGS | TARGET_INFO | 0x0002_0000; // TARGET_TYPE_SERVER
    let mut message = Vec::with_capacity(48 + name.len() + info.len());
    message.extend_from_slice(SIGNATURE);
    message.extend_from_slice(&CHALLENGE.to_le_bytes());
    put_field(&mut message, name.len(), 48);
    message.extend_from_slice(&flags.to_le_bytes());
    message.extend_from_slice(&server_challenge);
    message.extend_from_slice(&[0; 8]);
    put_field(&mut message, info.len(), 48 + name.len());
    message.extend_from_slice(&name);
    message.extend_from_slice(&info);
    message
}

/// Why a server refuses an AUTHENTICATE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed(String),
    /// Not NTLMv2 (an NTLMv1 or anonymous response).
    NotV2,
    UnknownAccount,
    WrongPassword,
    /// The channel bindings are absent (where required) or name another
    /// TLS connection: a relay, or a TLS-intercepting proxy.
    ChannelBinding,
}

/// Verifies an AUTHENTICATE message against the server's challenge and the
/// one account it knows, as a domain controller would for IIS. The account
/// matches case-insensitively as `DOMAIN\user`, or as the user name alone
/// when `account` has no domain.
pub fn verify(
    message: &[u8],
    server_challenge: &[u8; 8],
    account: &str,
    password: &str,
    channel_bindings: Option<[u8; 16]>,
    require_channel_bindings: bool,
) -> Result<(), Refusal> {
    let malformed = |what: &str| Refusal::Malformed(what.to_owned());
    if message.len() < AUTHENTICATE_HEADER || &message[..8] != SIGNATURE {
        return Err(malformed("not an NTLMSSP message"));
    }
    if u32_at(message, 8) != Some(AUTHENTICATE) {
        return Err(malformed("not an AUTHENTICATE message"));
    }
    let nt = field(message, 20).ok_or_else(|| malformed("NtChallengeResponse out of bounds"))?;
    let domain = field(message, 28).ok_or_else(|| malformed("DomainName out of bounds"))?;
    let user = field(message, 36).ok_or_else(|| malformed("UserName out of bounds"))?;
    if nt.len() <= 16 + 28 {
        return Err(Refusal::NotV2);
    }
    let sent = NtlmAccount {
        domain: utf16le_to_string(domain),
        user: utf16le_to_string(user),
    };
    let wanted = NtlmAccount::parse(account);
    let same_user = sent.user.eq_ignore_ascii_case(&wanted.user);
    let same_domain = wanted.domain.is_empty() || sent.domain.eq_ignore_ascii_case(&wanted.domain);
    if !(same_user && same_domain) {
        return Err(Refusal::UnknownAccount);
    }
    let key = ntowf_v2(&nt_hash(password), &sent.user, &sent.domain);
    let (proof, blob) = nt.split_at(16);
    let mut mac = hmac_md5(&key);
    mac.update(server_challenge);
    mac.update(blob);
    if mac.verify_slice(proof).is_err() {
        return Err(Refusal::WrongPassword);
    }
    // The blob: 28 bytes of header, then the client's AV pairs.
    let pairs = av_pairs(&blob[28..]).map_err(Refusal::Malformed)?;
    let sent_bindings = pairs
        .iter()
        .find(|(id, _)| *id == AV_CHANNEL_BINDINGS)
        .map(|(_, v)| v.as_slice())
        // All zeros: the client did not know the channel (MS-NLMP 2.2.2.1).
        .filter(|v| v.iter().any(|b| *b != 0));
    match (sent_bindings, channel_bindings) {
        (Some(sent), Some(expected)) if sent != expected => Err(Refusal::ChannelBinding),
        (None, _) if require_channel_bindings => Err(Refusal::ChannelBinding),
        _ => Ok(()),
    }
}

// ------------------------------------------------------------ the algorithm

/// NTOWFv1: MD4 of the UTF-16LE password (MS-NLMP 3.3.1).
fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// NTOWFv2 (MS-NLMP 3.3.2): HMAC-MD5 keyed by the NT hash over the
/// upper-cased user and the domain as written, in UTF-16LE.
fn ntowf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let mut mac = hmac_md5(nt_hash);
    mac.update(&utf16le(&user.to_uppercase()));
    mac.update(&utf16le(domain));
    mac.finalize().into_bytes().into()
}

/// The NTLMv2 response (NTProofStr followed by the client's blob) and the
/// session base key (MS-NLMP 3.3.2).
fn nt_response(
    key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    time: u64,
    target_info: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let mut blob = Vec::with_capacity(28 + target_info.len() + 4);
    blob.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    blob.extend_from_slice(&time.to_le_bytes());
    blob.extend_from_slice(client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(target_info);
    blob.extend_from_slice(&[0; 4]);
    let mut mac = hmac_md5(key);
    mac.update(server_challenge);
    mac.update(&blob);
    let proof: [u8; 16] = mac.finalize().into_bytes().into();
    let mut mac = hmac_md5(key);
    mac.update(&proof);
    let session_base_key = mac.finalize().into_bytes().into();
    let mut response = proof.to_vec();
    response.extend_from_slice(&blob);
    (response, session_base_key)
}

/// LMv2: HMAC-MD5 over both challenges, then the client's challenge.
fn lm_v2_response(key: &[u8; 16], server_challenge: &[u8; 8], client: &[u8; 8]) -> Vec<u8> {
    let mut mac = hmac_md5(key);
    mac.update(server_challenge);
    mac.update(client);
    let mut response = mac.finalize().into_bytes().to_vec();
    response.extend_from_slice(client);
    response
}

fn hmac_md5(key: &[u8]) -> HmacMd5 {
    // HMAC takes keys of any length: this cannot fail.
    <HmacMd5 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

// ---------------------------------------------------------------- encoding

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn utf16le_to_string(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The payload a (length, max length, offset) field at `at` points to.
fn field(message: &[u8], at: usize) -> Option<&[u8]> {
    let length = usize::from(u16_at(message, at)?);
    let offset = usize::try_from(u32_at(message, at + 4)?).ok()?;
    message.get(offset..offset.checked_add(length)?)
}

fn put_field(message: &mut Vec<u8>, length: usize, offset: usize) {
    let length = u16::try_from(length).unwrap_or(u16::MAX);
    message.extend_from_slice(&length.to_le_bytes());
    message.extend_from_slice(&length.to_le_bytes());
    message.extend_from_slice(&(offset as u32).to_le_bytes());
}

/// AV pairs up to MsvAvEOL (required), bounds-checked.
fn av_pairs(mut bytes: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, String> {
    let mut pairs = Vec::new();
    // At most one pair per four bytes: the loop ends.
    while let (Some(id), Some(length)) = (u16_at(bytes, 0), u16_at(bytes, 2)) {
        if id == AV_EOL {
            return Ok(pairs);
        }
        let value = bytes
            .get(4..4 + usize::from(length))
            .ok_or("an NTLM AV pair runs past its field")?;
        pairs.push((id, value.to_vec()));
        bytes = &bytes[4 + usize::from(length)..];
    }
    Err("the NTLM AV pairs have no end marker".to_owned())
}

fn encode_av_pairs(pairs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (id, value) in pairs {
        bytes.extend_from_slice(&id.to_le_bytes());
        let length = u16::try_from(value.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(&value[..usize::from(length)]);
    }
    bytes.extend_from_slice(&[0; 4]); // MsvAvEOL
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let clean: String = text.split_whitespace().collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];

    /// MS-NLMP 4.2.4: the TargetInfo of the example CHALLENGE.
    fn example_target_info() -> Vec<u8> {
        encode_av_pairs(&[
            (AV_NB_DOMAIN_NAME, utf16le("Domain")),
            (AV_NB_COMPUTER_NAME, utf16le("Server")),
        ])
    }

    #[test]
    fn ms_nlmp_4_2_4_known_answers() {
        // 4.2.2.1.2: NTOWFv1("Password").
        assert_eq!(
            nt_hash("Password").to_vec(),
            hex("a4f49c406510bdcab6824ee7c30fd852")
        );
        // 4.2.4.1.1: NTOWFv2("Password", "User", "Domain").
        let key = ntowf_v2(&nt_hash("Password"), "User", "Domain");
        assert_eq!(key.to_vec(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
        // 4.2.4.2.1: the LMv2 response.
        assert_eq!(
            lm_v2_response(&key, &SERVER_CHALLENGE, &CLIENT_CHALLENGE),
            hex("86c35097ac9cec102554764a57cccc19 aaaaaaaaaaaaaaaa")
        );
        // 4.2.4.2.2: the whole NTLMv2 response; 4.2.4.1.2: the session base key.
        let (response, session_base_key) = nt_response(
            &key,
            &SERVER_CHALLENGE,
            &CLIENT_CHALLENGE,
            0,
            &example_target_info(),
        );
        assert_eq!(
            response,
            hex(
                "68cd0ab851e51c96aabc927bebef6a1c 0101000000000000 0000000000000000
                 aaaaaaaaaaaaaaaa 00000000 02000c0044006f006d00610069006e00
                 01000c005300650072007600650072000000000000000000"
            )
        );
        assert_eq!(
            session_base_key.to_vec(),
            hex("8de40ccadbc14a82f15cb0ad0de95ca3")
        );
    }

    #[test]
    fn accounts_split_as_windows_sends_them() {
        let account = NtlmAccount::parse("CORP\\svc");
        assert_eq!(
            (account.domain.as_str(), account.user.as_str()),
            ("CORP", "svc")
        );
        let account = NtlmAccount::parse("svc@corp.example.com");
        assert_eq!(account.domain, "");
        assert_eq!(account.user, "svc@corp.example.com");
        assert_eq!(NtlmAccount::parse("svc").user, "svc");
    }

    fn exchange(account: &str, password: &str, bindings: Option<[u8; 16]>) -> (Vec<u8>, [u8; 8]) {
        let server_challenge = [7; 8];
        let challenge = challenge_message(
            server_challenge,
            "EXAMPLE",
            &[
                (AV_NB_DOMAIN_NAME, "EXAMPLE"),
                (AV_NB_COMPUTER_NAME, "EXCH1"),
                (AV_DNS_COMPUTER_NAME, "exch1.example.com"),
            ],
            filetime(1_800_000_000),
        );
        let challenge = Challenge::parse(&challenge).expect("challenge");
        assert_eq!(challenge.server_challenge, server_challenge);
        let message = authenticate_message(
            &challenge,
            &NtlmAccount::parse(account),
            password,
            &Binding {
                channel_bindings: bindings,
                target_name: Some("HTTP/exch1.example.com"),
            },
            [9; 8],
            filetime(1_800_000_000),
        );
        (message, server_challenge)
    }

    #[test]
    fn a_client_message_verifies_only_with_the_right_password_account_and_channel() {
        let bindings = Some([5; 16]);
        let (message, sc) = exchange("CORP\\svc", "s3cret", bindings);
        assert_eq!(
            verify(&message, &sc, "corp\\SVC", "s3cret", bindings, true),
            Ok(())
        );
        assert_eq!(
            verify(&message, &sc, "svc", "s3cret", bindings, true),
            Ok(())
        );
        assert_eq!(
            verify(&message, &sc, "CORP\\svc", "other", bindings, true),
            Err(Refusal::WrongPassword)
        );
        assert_eq!(
            verify(&message, &sc, "OTHER\\svc", "s3cret", bindings, true),
            Err(Refusal::UnknownAccount)
        );
        assert_eq!(
            verify(&message, &[8; 8], "CORP\\svc", "s3cret", bindings, true),
            Err(Refusal::WrongPassword),
            "another challenge"
        );
        assert_eq!(
            verify(&message, &sc, "CORP\\svc", "s3cret", Some([6; 16]), true),
            Err(Refusal::ChannelBinding),
            "another TLS connection"
        );
        let (unbound, sc) = exchange("svc@corp.example.com", "s3cret", None);
        assert_eq!(
            verify(
                &unbound,
                &sc,
                "svc@corp.example.com",
                "s3cret",
                bindings,
                true
            ),
            Err(Refusal::ChannelBinding),
            "Extended Protection required"
        );
        assert_eq!(
            verify(
                &unbound,
                &sc,
                "SVC@corp.example.com",
                "s3cret",
                bindings,
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        assert!(Challenge::parse(b"").is_err());
        assert!(Challenge::parse(&[0; 64]).is_err());
        let mut challenge = challenge_message([1; 8], "X", &[(AV_NB_COMPUTER_NAME, "X")], 0);
        // TargetInfo pointing past the end.
        challenge[44] = 0xff;
        assert!(Challenge::parse(&challenge).is_err());
        let (message, sc) = exchange("svc", "pw", None);
        for cut in [0, 8, 12, 63, 64, message.len() - 1] {
            assert!(
                verify(&message[..cut], &sc, "svc", "pw", None, false).is_err(),
                "{cut}"
            );
        }
        let mut bad = message.clone();
        bad[20] = 0xff; // NtChallengeResponse length
        bad[21] = 0xff;
        assert!(verify(&bad, &sc, "svc", "pw", None, false).is_err());
        assert!(av_pairs(&[1, 0, 200, 0, 1]).is_err());
        assert!(av_pairs(&[1, 0, 0, 0]).is_err(), "no EOL");
    }

    #[test]
    fn negotiate_message_is_the_fixed_32_bytes() {
        let message = negotiate_message();
        assert!(is_negotiate(&message));
        assert!(!is_negotiate(&challenge_message([1; 8], "X", &[], 0)));
        assert!(!is_negotiate(b"NTLMSSP"));
        assert_eq!(message.len(), 32);
        assert_eq!(&message[..8], b"NTLMSSP\0");
        assert_eq!(u32_at(&message, 8), Some(1));
        assert_eq!(u32_at(&message, 12), Some(CLIENT_FLAGS));
    }

    /// RFC 5929: the end point's hash follows the certificate's signature
    /// algorithm (SHA-384 for ECDSA P-384 with SHA-384), in the flattened
    /// gss_channel_bindings_struct Windows hashes.
    #[test]
    fn channel_bindings_follow_the_certificates_signature_hash() {
        fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params =
                rcgen::CertificateParams::new(vec!["exch1.example.com".to_owned()]).unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        }
        fn expected(digest: &[u8]) -> [u8; 16] {
            let mut flat = vec![0u8; 16];
            flat.extend_from_slice(&((21 + digest.len()) as u32).to_le_bytes());
            flat.extend_from_slice(b"tls-server-end-point:");
            flat.extend_from_slice(digest);
            Md5::digest(&flat).into()
        }
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            channel_bindings_hash(&p256),
            expected(&Sha256::digest(&p256))
        );
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            channel_bindings_hash(&p384),
            expected(&Sha384::digest(&p384))
        );
        assert_ne!(channel_bindings_hash(&p256), channel_bindings_hash(&p384));
    }

    #[test]
    fn filetime_counts_from_1601() {
        assert_eq!(filetime(0), 116_444_736_000_000_000);
        assert_eq!(filetime(-20_000_000_000), 0);
    }
}
