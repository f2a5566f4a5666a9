//! EWS SOAP: GetFolder requests and the parsing of responses and faults.
//!
//! Responses are read by local element name only: servers and documentation
//! use every prefix (`s:`, `soap:`, `m:`, `t:`, none) and even the envelope
//! namespace varies, so namespaces are not checked.

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// Where EWS lives on every Exchange server that has it.
pub const EWS_PATH: &str = "/EWS/Exchange.asmx";
/// SOAP 1.1, which EWS speaks.
pub const SOAP_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The schema version we ask for. Exchange2007_SP1 rather than a later one:
/// a server rejects versions newer than itself (Exchange 2007 and 2010
/// before SP2 fail schema validation on `Exchange2010_SP2`), while every
/// later server, Exchange Online included, still accepts this one, and
/// GetFolder with impersonation by PrimarySmtpAddress is all in it.
pub(super) const REQUEST_SERVER_VERSION: &str = "Exchange2007_SP1";

/// SOAP GetFolder of the calendar. With `impersonate`, an
/// ExchangeImpersonation header asks for that mailbox's calendar (proving
/// the service account's impersonation rights); without it the server
/// answers with the service account's own calendar.
pub fn get_calendar_folder_request(impersonate: Option<&str>) -> String {
    let impersonation = match impersonate {
        Some(mailbox) => format!(
            "\n    <t:ExchangeImpersonation>\
             \n      <t:ConnectingSID>\
             \n        <t:PrimarySmtpAddress>{}</t:PrimarySmtpAddress>\
             \n      </t:ConnectingSID>\
             \n    </t:ExchangeImpersonation>",
            escape(mailbox)
        ),
        None => String::new(),
    };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
               xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:RequestServerVersion Version="{REQUEST_SERVER_VERSION}"/>{impersonation}
  </soap:Header>
  <soap:Body>
    <m:GetFolder>
      <m:FolderShape>
        <t:BaseShape>Default</t:BaseShape>
      </m:FolderShape>
      <m:FolderIds>
        <t:DistinguishedFolderId Id="calendar"/>
      </m:FolderIds>
    </m:GetFolder>
  </soap:Body>
</soap:Envelope>
"#
    )
}

/// The `ServerVersionInfo` SOAP header of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub build_major: u32,
    pub build_minor: u32,
}

impl ServerVersion {
    /// Best-effort product name and the four numbers, e.g.
    /// "Exchange 2016 (version 15.1.2507.6)".
    pub fn describe(&self) -> String {
        let numbers = format!(
            "{}.{}.{}.{}",
            self.major, self.minor, self.build_major, self.build_minor
        );
        let product = match (self.major, self.minor) {
            (8, _) => "Exchange 2007",
            (14, _) => "Exchange 2010",
            (15, 0) => "Exchange 2013",
            (15, 1) => "Exchange 2016",
            // Subscription Edition kept 15.2; its builds start at 2562.
            (15, 2) if self.build_major >= 2562 => "Exchange Server SE",
            (15, 2) => "Exchange 2019",
            // Exchange Online reports 15.20 and later minors.
            (15, 20..) => "Exchange Online",
            _ => return format!("Exchange (version {numbers})"),
        };
        format!("{product} (version {numbers})")
    }
}

/// What an EWS answer to the GetFolder request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EwsOutcome {
    /// GetFolder succeeded: the calendar folder's display name if given, total count if given.
    Folder {
        display_name: Option<String>,
        total_count: Option<u64>,
    },
    /// Another operation's response succeeded (e.g. `FindItemResponse`):
    /// not an answer to our GetFolder, but a well-formed EWS success.
    OtherSuccess { response: String },
    /// ResponseClass Error (or Warning) with its ResponseCode and MessageText
    /// (each empty when the server left it out).
    Error {
        response_code: String,
        message: String,
    },
    /// A SOAP Fault: faultcode, faultstring, and the EWS ResponseCode from
    /// detail when present (else from an `Error...` fault code or subcode).
    Fault {
        fault_code: String,
        fault_string: String,
        response_code: Option<String>,
    },
}

/// A parsed EWS response: its outcome and the server's version when the
/// `ServerVersionInfo` header was present and complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EwsResponse {
    pub outcome: EwsOutcome,
    pub version: Option<ServerVersion>,
}

/// Parse an EWS SOAP response (or fault). Err, with a short reason, when the
/// body is not well-formed XML, holds a DOCTYPE, is not SOAP, or carries no
/// response (a request, for instance).
pub fn parse_response(body: &[u8]) -> Result<EwsResponse, String> {
    let tree = Tree::parse(body)?;
    let body_el = tree.find_descendant(ROOT, "Body").ok_or_else(|| {
        format!(
            "not a SOAP message: no Body in <{}>",
            tree.first_element_name()
        )
    })?;
    // Missing end tags of the envelope are forgiven (one of Microsoft's
    // samples lacks </s:Envelope>), a body cut short is not.
    tree.check_closed(body_el)?;
    let version = tree
        .find_descendant(ROOT, "ServerVersionInfo")
        .and_then(|n| server_version(&tree, n));

    if let Some(fault) = tree.find_child(body_el, "Fault") {
        return Ok(EwsResponse {
            outcome: parse_fault(&tree, fault),
            version,
        });
    }

    let response = tree
        .element_children(body_el)
        .next()
        .ok_or("the SOAP Body is empty")?;
    let response_name = tree.name(response);
    if !response_name.ends_with("Response") {
        return Err(format!(
            "not an EWS response: the SOAP Body holds <{response_name}>"
        ));
    }

    // Each ResponseMessage carries a ResponseClass; a problem in any of them
    // matters more than the successes around it.
    let messages: Vec<usize> = tree
        .descendants(response)
        .filter(|&n| tree.attr(n, "ResponseClass").is_some())
        .collect();
    let failed = messages
        .iter()
        .copied()
        .find(|&n| tree.attr(n, "ResponseClass").map(str::trim) != Some("Success"));
    let outcome = match (failed, messages.first()) {
        (Some(message), _) => EwsOutcome::Error {
            response_code: tree.child_text(message, "ResponseCode").unwrap_or_default(),
            message: tree.child_text(message, "MessageText").unwrap_or_default(),
        },
        (None, Some(&message)) if response_name == "GetFolderResponse" => {
            let folders = tree.find_descendant(message, "Folders").unwrap_or(message);
            let folder = tree.element_children(folders).next().unwrap_or(folders);
            EwsOutcome::Folder {
                display_name: tree.child_text(folder, "DisplayName"),
                total_count: tree
                    .child_text(folder, "TotalCount")
                    .and_then(|t| t.parse().ok()),
            }
        }
        (None, Some(_)) => EwsOutcome::OtherSuccess {
            response: response_name.to_string(),
        },
        (None, None) => {
            return Err(format!(
                "<{response_name}> holds no response message with a ResponseClass"
            ));
        }
    };
    Ok(EwsResponse { outcome, version })
}

/// SOAP 1.1 (`faultcode`, `faultstring`, `detail`) or SOAP 1.2
/// (`Code/Value`, `Reason/Text`, `Detail`).
fn parse_fault(tree: &Tree, fault: usize) -> EwsOutcome {
    let code_el = tree.find_child(fault, "Code");
    let fault_code = tree
        .child_text(fault, "faultcode")
        .or_else(|| code_el.and_then(|c| tree.child_text(c, "Value")))
        .unwrap_or_default();
    let fault_string = tree
        .child_text(fault, "faultstring")
        .or_else(|| {
            tree.find_child(fault, "Reason")
                .and_then(|r| tree.child_text(r, "Text"))
        })
        .unwrap_or_default();
    let subcode = code_el
        .and_then(|c| tree.find_child(c, "Subcode"))
        .and_then(|s| tree.child_text(s, "Value"));
    let from_detail = tree
        .find_child(fault, "detail")
        .or_else(|| tree.find_child(fault, "Detail"))
        .and_then(|d| tree.find_descendant(d, "ResponseCode"))
        .map(|n| tree.text(n))
        .filter(|t| !t.is_empty());
    // EWS puts its code in the fault code too ("a:ErrorSchemaValidation").
    let from_code = [Some(&fault_code), subcode.as_ref()]
        .into_iter()
        .flatten()
        .map(|c| c.rsplit(':').next().unwrap_or(c))
        .find(|c| c.starts_with("Error"))
        .map(str::to_string);
    EwsOutcome::Fault {
        fault_code,
        fault_string,
        response_code: from_detail.or(from_code),
    }
}

fn server_version(tree: &Tree, node: usize) -> Option<ServerVersion> {
    let number = |name: &str| tree.attr(node, name)?.trim().parse::<u32>().ok();
    Some(ServerVersion {
        major: number("MajorVersion")?,
        minor: number("MinorVersion")?,
        build_major: number("MajorBuildNumber")?,
        build_minor: number("MinorBuildNumber")?,
    })
}

/// ResponseCodes meaning "the account (or the impersonated mailbox) has no
/// mailbox". TS-5 turns these into a `warn` when no test mailbox was given.
///
/// - ErrorNonExistentMailbox: "Mailbox does not exist" (also the answer for
///   an impersonated address without a mailbox);
/// - ErrorMissingEmailAddress (and ...ForManagedFolder): a distinguished
///   folder was asked for by an account that has no mailbox;
/// - ErrorNameResolutionNoMailbox: the caller must have a mailbox.
///
/// Deliberately not included: ErrorMailboxStoreUnavailable and
/// ErrorMailboxMoveInProgress (the mailbox exists, the database is down or
/// moving: an outage, not a configuration to warn about), ErrorInvalidSmtpAddress
/// and ErrorNonPrimarySmtpAddress (a wrong address, not a missing mailbox).
pub fn is_no_mailbox(response_code: &str) -> bool {
    const CODES: [&str; 4] = [
        "ErrorNonExistentMailbox",
        "ErrorMissingEmailAddress",
        "ErrorMissingEmailAddressForManagedFolder",
        "ErrorNameResolutionNoMailbox",
    ];
    let code = response_code.trim();
    CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// ResponseCodes meaning impersonation rights are missing (or, with
/// ErrorAccessDenied, that the account may not open the folder at all).
pub fn is_impersonation_denied(response_code: &str) -> bool {
    const CODES: [&str; 4] = [
        "ErrorImpersonateUserDenied",
        "ErrorImpersonationDenied",
        "ErrorImpersonationFailed",
        "ErrorAccessDenied",
    ];
    let code = response_code.trim();
    CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// The sentinel node above the document's top-level elements.
pub(super) const ROOT: usize = 0;

/// How many open elements an end tag may close at once.
const END_TAG_RECOVERY_DEPTH: usize = 8;

struct Node {
    /// Local name: the prefix is dropped.
    name: String,
    /// Attributes by local name, values unescaped.
    attrs: Vec<(String, String)>,
    /// The element's own text (not its descendants'), references resolved.
    text: String,
    children: Vec<usize>,
    /// Whether the end tag was read (or implied by an enclosing one).
    closed: bool,
}

/// A small element tree, built without recursion, for the handful of
/// lookups EWS and WebDAV answers need. Shared with `webdav`.
///
/// Lenient where servers and samples are sloppy (several top-level
/// elements, a mismatched end tag, missing end tags after the part that
/// matters: callers check that their element was closed with
/// [`Tree::check_closed`]) and strict where it matters: undefined entities
/// and any DOCTYPE are errors, so no entity is expanded beyond the XML
/// built-ins.
pub(super) struct Tree {
    nodes: Vec<Node>,
    /// The innermost element still open at the end of the input.
    unclosed: Option<usize>,
}

impl Tree {
    pub(super) fn parse(body: &[u8]) -> Result<Tree, String> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let body = body.trim_ascii_start();
        if body.is_empty() {
            return Err("empty body".to_string());
        }
        let mut reader = Reader::from_reader(body);
        let config = reader.config_mut();
        // Recover from a mismatched end tag (seen in Microsoft's own samples)
        // by closing up to the matching open element, below.
        config.check_end_names = false;
        config.allow_unmatched_ends = true;

        let mut tree = Tree {
            nodes: vec![Node {
                name: String::new(),
                attrs: Vec::new(),
                text: String::new(),
                children: Vec::new(),
                closed: false,
            }],
            unclosed: None,
        };
        let mut open = vec![ROOT];
        let mut buf = Vec::new();
        loop {
            let current = open.last().copied().unwrap_or(ROOT);
            let event = reader.read_event_into(&mut buf).map_err(|e| {
                format!(
                    "not well-formed XML (byte {}): {e}",
                    reader.error_position()
                )
            })?;
            match event {
                Event::Start(e) => {
                    let node = tree.push(current, &e, &reader);
                    open.push(node);
                }
                Event::Empty(e) => {
                    let node = tree.push(current, &e, &reader);
                    tree.nodes[node].closed = true;
                }
                Event::End(e) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    // Close the innermost open element of that name and any
                    // left open inside it; ignore an end tag that matches
                    // none. Only a few levels are searched, so stray end
                    // tags under deep nesting cannot make this quadratic.
                    let innermost = open.len().saturating_sub(END_TAG_RECOVERY_DEPTH).max(1);
                    if let Some(at) = open[innermost..]
                        .iter()
                        .rposition(|&n| tree.nodes[n].name == name)
                    {
                        for n in open.drain(innermost + at..) {
                            tree.nodes[n].closed = true;
                        }
                    }
                }
                Event::Text(e) => {
                    let text = e.xml_content().map_err(|e| format!("bad text: {e}"))?;
                    tree.nodes[current].text.push_str(&text);
                }
                Event::CData(e) => {
                    let text = e.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                    tree.nodes[current].text.push_str(&text);
                }
                Event::GeneralRef(e) => {
                    let resolved = match e.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => {
                            let name = e.decode().map_err(|e| format!("bad reference: {e}"))?;
                            resolve_predefined_entity(&name)
                                .ok_or_else(|| format!("undefined entity &{name};"))?
                                .to_string()
                        }
                        Err(err) => return Err(format!("bad character reference: {err}")),
                    };
                    tree.nodes[current].text.push_str(&resolved);
                }
                Event::DocType(_) => {
                    // SOAP forbids a DTD; refusing it rules out entity tricks.
                    return Err("a DOCTYPE is not allowed here".to_string());
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
            buf.clear();
        }
        tree.unclosed = open.get(1..).and_then(|o| o.last().copied());
        if tree.nodes[ROOT].children.is_empty() {
            return Err("not XML: no element found".to_string());
        }
        Ok(tree)
    }

    fn push(&mut self, parent: usize, e: &BytesStart<'_>, reader: &Reader<&[u8]>) -> usize {
        let attrs = e
            .attributes()
            .with_checks(false)
            .filter_map(Result::ok)
            .filter_map(|a| {
                let value = a.decode_and_unescape_value(reader.decoder()).ok()?;
                let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
                Some((key, value.into_owned()))
            })
            .collect();
        let id = self.nodes.len();
        self.nodes.push(Node {
            name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
            attrs,
            text: String::new(),
            children: Vec::new(),
            closed: false,
        });
        self.nodes[parent].children.push(id);
        id
    }

    /// Err when the input ended before `node`'s end tag: a truncated body.
    pub(super) fn check_closed(&self, node: usize) -> Result<(), String> {
        if self.nodes.get(node).is_some_and(|n| n.closed) {
            return Ok(());
        }
        let inner = self.unclosed.unwrap_or(node);
        Err(format!(
            "truncated XML: <{}> is not closed",
            self.name(inner)
        ))
    }

    pub(super) fn name(&self, node: usize) -> &str {
        self.nodes.get(node).map_or("", |n| n.name.as_str())
    }

    fn first_element_name(&self) -> &str {
        self.element_children(ROOT)
            .next()
            .map_or("", |n| self.name(n))
    }

    /// The element's own text, trimmed.
    pub(super) fn text(&self, node: usize) -> String {
        self.nodes
            .get(node)
            .map_or(String::new(), |n| n.text.trim().to_string())
    }

    pub(super) fn attr(&self, node: usize, name: &str) -> Option<&str> {
        let node = self.nodes.get(node)?;
        node.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn element_children(
        &self,
        node: usize,
    ) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.nodes
            .get(node)
            .map(|n| n.children.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
    }

    pub(super) fn find_child(&self, node: usize, name: &str) -> Option<usize> {
        self.element_children(node).find(|&c| self.name(c) == name)
    }

    /// The text of the first child element called `name`.
    pub(super) fn child_text(&self, node: usize, name: &str) -> Option<String> {
        self.find_child(node, name).map(|c| self.text(c))
    }

    /// All elements below `node`, in document order (an explicit stack, so
    /// deep documents cannot overflow ours).
    pub(super) fn descendants(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        let mut stack: Vec<usize> = self.element_children(node).rev().collect();
        std::iter::from_fn(move || {
            let next = stack.pop()?;
            stack.extend(self.element_children(next).rev());
            Some(next)
        })
    }

    pub(super) fn find_descendant(&self, node: usize, name: &str) -> Option<usize> {
        self.descendants(node).find(|&n| self.name(n) == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Microsoft's EWS samples, vendored with their source and licence in
    /// `tests/data/README.md`.
    fn testdata_dir() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
    }

    fn folder(name: Option<&str>, count: Option<u64>) -> EwsOutcome {
        EwsOutcome::Folder {
            display_name: name.map(str::to_string),
            total_count: count,
        }
    }

    fn error(code: &str, message: &str) -> EwsOutcome {
        EwsOutcome::Error {
            response_code: code.to_string(),
            message: message.to_string(),
        }
    }

    fn version(major: u32, minor: u32, build_major: u32, build_minor: u32) -> ServerVersion {
        ServerVersion {
            major,
            minor,
            build_major,
            build_minor,
        }
    }

    /// The request parsed back with the same reader responses go through.
    fn parse_request(xml: &str) -> Tree {
        Tree::parse(xml.as_bytes()).unwrap()
    }

    #[test]
    fn request_without_impersonation_asks_for_the_own_calendar() {
        let xml = get_calendar_folder_request(None);
        let tree = parse_request(&xml);
        let id = tree.find_descendant(ROOT, "DistinguishedFolderId").unwrap();
        assert_eq!(tree.attr(id, "Id"), Some("calendar"));
        let get_folder = tree.find_descendant(ROOT, "GetFolder").unwrap();
        let body = tree.find_descendant(ROOT, "Body").unwrap();
        assert_eq!(tree.find_child(body, "GetFolder"), Some(get_folder));
        let shape = tree.find_descendant(get_folder, "BaseShape").unwrap();
        assert_eq!(tree.text(shape), "Default");
        let rsv = tree.find_descendant(ROOT, "RequestServerVersion").unwrap();
        assert_eq!(tree.attr(rsv, "Version"), Some(REQUEST_SERVER_VERSION));
        assert!(
            tree.find_descendant(ROOT, "ExchangeImpersonation")
                .is_none()
        );
        // The namespaces EWS requires, checked literally.
        assert!(xml.contains(r#"xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#));
        assert!(
            xml.contains(
                r#"xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages""#
            )
        );
    }

    #[test]
    fn request_with_impersonation_escapes_the_mailbox() {
        let xml = get_calendar_folder_request(Some("a&b<c>@example.com"));
        assert!(xml.contains("a&amp;b&lt;c&gt;@example.com"));
        let tree = parse_request(&xml);
        let header = tree.find_descendant(ROOT, "Header").unwrap();
        let imp = tree.find_child(header, "ExchangeImpersonation").unwrap();
        let sid = tree.find_child(imp, "ConnectingSID").unwrap();
        assert_eq!(
            tree.child_text(sid, "PrimarySmtpAddress").as_deref(),
            Some("a&b<c>@example.com")
        );
        let id = tree.find_descendant(ROOT, "DistinguishedFolderId").unwrap();
        assert_eq!(tree.attr(id, "Id"), Some("calendar"));
    }

    /// Every fixture: responses parse, requests and fragments are refused.
    #[test]
    fn fixtures() {
        let dir = testdata_dir().join("ews");
        // Specific expectations: every GetFolder sample and every error.
        let expected: &[(&str, EwsOutcome, Option<ServerVersion>)] = &[
            (
                "getfolder-02.xml",
                folder(Some("Inbox"), Some(2)),
                Some(version(8, 0, 628, 0)),
            ),
            (
                "getfolder-03.xml",
                error("ErrorInvalidIdMalformed", "Id is malformed."),
                Some(version(8, 0, 628, 0)),
            ),
            (
                "howto-appointments-02.xml",
                folder(None, None),
                Some(version(15, 0, 731, 10)),
            ),
            (
                "finditem-03.xml",
                error("ErrorInvalidIdMalformed", "Id is malformed."),
                Some(version(8, 0, 595, 0)),
            ),
            (
                "getevents-03.xml",
                error(
                    "ErrorSubscriptionAccessDenied",
                    "Access is denied. Only the subscription owner may access the subscription.",
                ),
                Some(version(8, 0, 628, 0)),
            ),
            (
                // Its response message is never closed: recovered.
                "getstreamingevents-03.xml",
                error("ErrorInvalidSubscription", ""),
                Some(version(8, 0, 628, 0)),
            ),
            (
                "subscribe-03.xml",
                error(
                    "ErrorSubscriptionDelegateAccessNotSupported",
                    "Subscriptions are not supported for delegate user access.",
                ),
                Some(version(8, 0, 685, 8)),
            ),
            (
                "unsubscribe-03.xml",
                error(
                    "ErrorSubscriptionNotFound",
                    "The specified subscription was not found.",
                ),
                Some(version(8, 0, 628, 0)),
            ),
            (
                // No Envelope: a Header and a Body side by side.
                "getstreamingevents-02.xml",
                EwsOutcome::OtherSuccess {
                    response: "GetStreamingEventsResponse".into(),
                },
                Some(version(15, 0, 775, 7)),
            ),
            (
                "getuseravailability-02.xml",
                EwsOutcome::OtherSuccess {
                    response: "GetUserAvailabilityResponse".into(),
                },
                Some(version(8, 0, 665, 7)),
            ),
        ];

        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no fixtures in {}", dir.display());

        let (mut responses, mut refused, mut checked) = (0, 0, 0);
        for path in &files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let text = std::fs::read_to_string(path).unwrap();
            let is_response = text.contains("ResponseCode>") || text.contains("Fault>");
            let result = parse_response(text.as_bytes());
            if !is_response {
                let err = result.expect_err(name);
                println!("{name}: refused: {err}");
                refused += 1;
                continue;
            }
            let parsed = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            responses += 1;
            println!("{name}: {:?}", parsed);
            if text.contains("ServerVersionInfo") {
                assert!(parsed.version.is_some(), "{name}: version missing");
            }
            match expected.iter().find(|(n, _, _)| *n == name) {
                Some((_, outcome, version)) => {
                    assert_eq!(&parsed.outcome, outcome, "{name}");
                    assert_eq!(&parsed.version, version, "{name}");
                    checked += 1;
                }
                None => {
                    assert!(
                        !text.contains(r#"ResponseClass="Error""#) && !text.contains("Fault>"),
                        "{name}: an error fixture needs an expected outcome"
                    );
                    assert!(
                        !name.starts_with("getfolder"),
                        "{name}: a GetFolder fixture needs an expected outcome"
                    );
                    assert!(
                        matches!(parsed.outcome, EwsOutcome::OtherSuccess { .. }),
                        "{name}: {:?}",
                        parsed.outcome
                    );
                }
            }
        }
        println!(
            "EWS fixtures: {} files, {responses} responses parsed ({checked} with exact outcomes), {refused} requests refused",
            files.len()
        );
        assert_eq!(checked, expected.len(), "an expected fixture is missing");
        // The shared set holds 19 responses and 20 requests or fragments.
        assert!(responses >= 19 && refused >= 20, "{responses} / {refused}");
    }

    #[test]
    fn fixture_requests_are_refused_with_a_reason() {
        let dir = testdata_dir().join("ews");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let err = parse_response(&read("getfolder-01.xml")).unwrap_err();
        assert!(err.contains("<GetFolder>"), "{err}");
        let err = parse_response(&read("howto-impersonation-02.xml")).unwrap_err();
        assert!(err.contains("no Body"), "{err}");
    }

    const ENVELOPE_START: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types"/>
  </s:Header>
  <s:Body>"#;
    const ENVELOPE_END: &str = "</s:Body></s:Envelope>";

    fn envelope(body: &str) -> String {
        format!("{ENVELOPE_START}{body}{ENVELOPE_END}")
    }

    fn get_folder_message(inner: &str, class: &str) -> String {
        envelope(&format!(
            r#"<m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <m:ResponseMessages><m:GetFolderResponseMessage ResponseClass="{class}">{inner}</m:GetFolderResponseMessage></m:ResponseMessages>
</m:GetFolderResponse>"#
        ))
    }

    #[test]
    fn success_with_calendar_folder() {
        let xml = get_folder_message(
            r#"<m:ResponseCode>NoError</m:ResponseCode><m:Folders><t:CalendarFolder>
<t:FolderId Id="AAMk" ChangeKey="AgAA"/><t:DisplayName>Kalender &amp; Termine</t:DisplayName>
<t:TotalCount>42</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount></t:CalendarFolder></m:Folders>"#,
            "Success",
        );
        // A BOM and leading whitespace are tolerated.
        let mut body = b"\xEF\xBB\xBF \r\n".to_vec();
        body.extend_from_slice(xml.as_bytes());
        let parsed = parse_response(&body).unwrap();
        assert_eq!(parsed.outcome, folder(Some("Kalender & Termine"), Some(42)));
        let v = parsed.version.unwrap();
        assert_eq!(v, version(15, 1, 2507, 6));
        assert_eq!(v.describe(), "Exchange 2016 (version 15.1.2507.6)");
    }

    #[test]
    fn error_non_existent_mailbox() {
        let xml = get_folder_message(
            r#"<m:MessageText>The SMTP address has no mailbox associated with it.</m:MessageText>
<m:ResponseCode>ErrorNonExistentMailbox</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Folders/>"#,
            "Error",
        );
        let parsed = parse_response(xml.as_bytes()).unwrap();
        assert_eq!(
            parsed.outcome,
            error(
                "ErrorNonExistentMailbox",
                "The SMTP address has no mailbox associated with it."
            )
        );
        assert!(is_no_mailbox("ErrorNonExistentMailbox"));
        assert!(!is_impersonation_denied("ErrorNonExistentMailbox"));
    }

    #[test]
    fn warning_counts_as_error_and_errors_win_over_successes() {
        let xml = envelope(
            r#"<GetFolderResponse xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"><ResponseMessages>
<GetFolderResponseMessage ResponseClass="Success"><ResponseCode>NoError</ResponseCode></GetFolderResponseMessage>
<GetFolderResponseMessage ResponseClass="Warning"><ResponseCode>ErrorBatchProcessingStopped</ResponseCode></GetFolderResponseMessage>
</ResponseMessages></GetFolderResponse>"#,
        );
        let parsed = parse_response(xml.as_bytes()).unwrap();
        assert_eq!(parsed.outcome, error("ErrorBatchProcessingStopped", ""));
    }

    #[test]
    fn impersonation_denied_as_response_message() {
        let xml = get_folder_message(
            r#"<m:MessageText>The account does not have permission to impersonate the requested user.</m:MessageText><m:ResponseCode>ErrorImpersonateUserDenied</m:ResponseCode>"#,
            "Error",
        );
        let parsed = parse_response(xml.as_bytes()).unwrap();
        let EwsOutcome::Error { response_code, .. } = parsed.outcome else {
            panic!("{:?}", parsed.outcome)
        };
        assert_eq!(response_code, "ErrorImpersonateUserDenied");
        assert!(is_impersonation_denied(&response_code));
        assert!(!is_no_mailbox(&response_code));
    }

    #[test]
    fn soap_11_fault_with_detail_response_code() {
        // The shape Exchange sends when impersonation is refused.
        let xml = envelope(
            r#"<s:Fault>
  <faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorImpersonateUserDenied</faultcode>
  <faultstring xml:lang="en-US">The account does not have permission to impersonate the requested user.</faultstring>
  <detail>
    <e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorImpersonateUserDenied</e:ResponseCode>
    <e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The account does not have permission to impersonate the requested user.</e:Message>
  </detail>
</s:Fault>"#,
        );
        let parsed = parse_response(xml.as_bytes()).unwrap();
        assert_eq!(
            parsed.outcome,
            EwsOutcome::Fault {
                fault_code: "a:ErrorImpersonateUserDenied".into(),
                fault_string:
                    "The account does not have permission to impersonate the requested user.".into(),
                response_code: Some("ErrorImpersonateUserDenied".into()),
            }
        );
        assert_eq!(parsed.version, Some(version(15, 1, 2507, 6)));
    }

    #[test]
    fn soap_11_fault_without_detail() {
        let xml = envelope(
            "<s:Fault><faultcode>s:Client</faultcode><faultstring>Bad request</faultstring></s:Fault>",
        );
        assert_eq!(
            parse_response(xml.as_bytes()).unwrap().outcome,
            EwsOutcome::Fault {
                fault_code: "s:Client".into(),
                fault_string: "Bad request".into(),
                response_code: None,
            }
        );
        // Without detail, an EWS code in the fault code is still found.
        let xml = envelope(
            "<s:Fault><faultcode>a:ErrorSchemaValidation</faultcode><faultstring>x</faultstring></s:Fault>",
        );
        let EwsOutcome::Fault { response_code, .. } =
            parse_response(xml.as_bytes()).unwrap().outcome
        else {
            panic!()
        };
        assert_eq!(response_code.as_deref(), Some("ErrorSchemaValidation"));
    }

    #[test]
    fn soap_12_fault() {
        let xml = r#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Body>
    <env:Fault>
      <env:Code><env:Value>env:Sender</env:Value>
        <env:Subcode><env:Value>a:ErrorInvalidServerVersion</env:Value></env:Subcode></env:Code>
      <env:Reason><env:Text xml:lang="en">The specified server version is invalid.</env:Text></env:Reason>
      <env:Detail><e:Message xmlns:e="urn:x">…</e:Message></env:Detail>
    </env:Fault>
  </env:Body>
</env:Envelope>"#;
        let parsed = parse_response(xml.as_bytes()).unwrap();
        assert_eq!(
            parsed.outcome,
            EwsOutcome::Fault {
                fault_code: "env:Sender".into(),
                fault_string: "The specified server version is invalid.".into(),
                response_code: Some("ErrorInvalidServerVersion".into()),
            }
        );
        assert_eq!(parsed.version, None);
    }

    #[test]
    fn bodies_that_are_not_ews_responses() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("garbage", b"\x00\x01binary garbage \xff\xfe", ""),
            ("plain text", b"Service Unavailable", "no element"),
            ("empty", b"", "empty"),
            ("whitespace", b" \r\n\t", "empty"),
            (
                "html",
                b"<!DOCTYPE html><html><head><title>500</title></head><body><h1>Server Error</h1></body></html>",
                "DOCTYPE",
            ),
            (
                "html without doctype",
                b"<html><body><h1>401 - Unauthorized: Access is denied</h1><br></body></html>",
                "no Body in <html>",
            ),
            (
                "truncated",
                b"<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"x\"><s:Body><m:GetFolderResponse><m:ResponseMessages>",
                "truncated",
            ),
            (
                "truncated in a tag",
                b"<s:Envelope><s:Body><m:GetFolderResp",
                "",
            ),
            (
                "doctype with entities",
                b"<?xml version=\"1.0\"?><!DOCTYPE s [<!ENTITY x \"boom\"><!ENTITY y SYSTEM \"file:///etc/passwd\">]><s:Envelope><s:Body>&x;&y;</s:Body></s:Envelope>",
                "DOCTYPE",
            ),
            (
                "undefined entity",
                b"<s:Envelope><s:Body><r>&nbsp;</r></s:Body></s:Envelope>",
                "undefined entity",
            ),
            ("empty body", b"<s:Envelope><s:Body/></s:Envelope>", "empty"),
            (
                "response without messages",
                b"<s:Envelope><s:Body><m:GetFolderResponse/></s:Body></s:Envelope>",
                "no response message",
            ),
            (
                "utf-16",
                b"\xff\xfe<\x00s\x00:\x00E\x00",
                "",
            ),
        ];
        for (what, body, reason) in cases {
            let err = parse_response(body).expect_err(what);
            assert!(err.contains(reason), "{what}: {err}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 200_000;
        let mut xml = String::from("<s:Envelope><s:Body><m:GetFolderResponse>");
        xml.push_str(&"<a>".repeat(depth));
        xml.push_str(&"</a>".repeat(depth));
        xml.push_str("</m:GetFolderResponse></s:Body></s:Envelope>");
        let err = parse_response(xml.as_bytes()).unwrap_err();
        assert!(err.contains("no response message"), "{err}");

        // Stray end tags under deep nesting: refused, and quickly.
        let xml = format!("<s:Body>{}{}", "<a>".repeat(depth), "</b>".repeat(depth));
        let err = parse_response(xml.as_bytes()).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn stray_end_tag_is_ignored() {
        let xml = "<s:Envelope><s:Body></x></s:Body></s:Envelope>";
        let err = parse_response(xml.as_bytes()).unwrap_err();
        assert!(err.contains("Body is empty"), "{err}");
    }

    #[test]
    fn incomplete_version_header_is_ignored() {
        let xml = r#"<s:Envelope><s:Header><t:ServerVersionInfo MajorVersion="15" MinorVersion="x"/></s:Header>
<s:Body><m:GetFolderResponse><m:ResponseMessages><m:GetFolderResponseMessage ResponseClass="Success">
<m:ResponseCode>NoError</m:ResponseCode></m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse></s:Body></s:Envelope>"#;
        let parsed = parse_response(xml.as_bytes()).unwrap();
        assert_eq!(parsed.version, None);
        assert_eq!(parsed.outcome, folder(None, None));
    }

    #[test]
    fn version_descriptions() {
        let cases = [
            (version(8, 3, 83, 6), "Exchange 2007 (version 8.3.83.6)"),
            (version(14, 3, 123, 4), "Exchange 2010 (version 14.3.123.4)"),
            (
                version(15, 0, 1497, 2),
                "Exchange 2013 (version 15.0.1497.2)",
            ),
            (
                version(15, 1, 2507, 6),
                "Exchange 2016 (version 15.1.2507.6)",
            ),
            (
                version(15, 2, 1544, 4),
                "Exchange 2019 (version 15.2.1544.4)",
            ),
            (
                version(15, 2, 2562, 17),
                "Exchange Server SE (version 15.2.2562.17)",
            ),
            (
                version(15, 20, 8722, 16),
                "Exchange Online (version 15.20.8722.16)",
            ),
            (version(15, 3, 1, 2), "Exchange (version 15.3.1.2)"),
            (version(6, 5, 7638, 1), "Exchange (version 6.5.7638.1)"),
        ];
        for (v, text) in cases {
            assert_eq!(v.describe(), text);
        }
    }

    #[test]
    fn response_code_classes() {
        for code in [
            "ErrorNonExistentMailbox",
            "ErrorMissingEmailAddress",
            "ErrorMissingEmailAddressForManagedFolder",
            "ErrorNameResolutionNoMailbox",
            " errornonexistentmailbox ",
        ] {
            assert!(is_no_mailbox(code), "{code}");
            assert!(!is_impersonation_denied(code), "{code}");
        }
        for code in [
            "ErrorImpersonateUserDenied",
            "ErrorImpersonationDenied",
            "ErrorImpersonationFailed",
            "ErrorAccessDenied",
        ] {
            assert!(is_impersonation_denied(code), "{code}");
            assert!(!is_no_mailbox(code), "{code}");
        }
        for code in [
            "",
            "NoError",
            "ErrorMailboxStoreUnavailable",
            "ErrorInvalidSmtpAddress",
        ] {
            assert!(!is_no_mailbox(code), "{code}");
            assert!(!is_impersonation_denied(code), "{code}");
        }
    }
}
