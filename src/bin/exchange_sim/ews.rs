//! EWS: reads just enough of a SOAP request (the operation, the impersonated
//! mailbox, the folders asked for) and writes responses shaped like
//! Exchange's own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::StatusCode;
use quick_xml::escape::escape;
use quick_xml::events::Event;

use crate::{Behave, Sim};

const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const TYPES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// Deeper nesting than this is no EWS request; refusing it keeps the parser's
/// element stack small.
const MAX_DEPTH: usize = 64;
/// GetFolder asks for a handful of folders; more than this is refused.
const MAX_FOLDERS: usize = 16;

/// What the simulator needs from a SOAP request.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    /// Local name of the first element in soap:Body, e.g. `GetFolder`.
    pub operation: Option<String>,
    /// The ExchangeImpersonation ConnectingSID value (SMTP address, UPN or SID).
    pub impersonating: Option<String>,
    /// DistinguishedFolderId Id values, e.g. `calendar`.
    pub folders: Vec<String>,
}

/// Parses the request. Errors are reported as EWS does: a schema-validation fault.
pub fn parse(body: &[u8]) -> Result<Request, String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = Vec::new();
    let mut request = Request::default();
    let mut saw_envelope = false;
    // Text of the ConnectingSID child being read, gathered across entity references.
    let mut sid_text: Option<String> = None;
    // The loop ends at Eof; the body is at most 1 MiB and every event consumes input.
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the request is not well-formed XML: {e}"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    if name != "Envelope" {
                        return Err(format!("the root element is {name}, not soap:Envelope"));
                    }
                    saw_envelope = true;
                }
                let parent = stack.last().map(String::as_str);
                let grandparent = stack.len().checked_sub(2).map(|i| stack[i].as_str());
                if parent == Some("Body") && grandparent == Some("Envelope") {
                    request.operation.get_or_insert_with(|| name.clone());
                }
                if parent == Some("ConnectingSID")
                    && matches!(
                        name.as_str(),
                        "PrimarySmtpAddress" | "SmtpAddress" | "PrincipalName" | "SID"
                    )
                {
                    sid_text = Some(String::new());
                }
                if name == "DistinguishedFolderId" && request.folders.len() < MAX_FOLDERS {
                    if let Ok(Some(id)) = e.try_get_attribute("Id") {
                        let id = id
                            .unescape_value()
                            .map_err(|e| format!("a folder Id attribute is malformed: {e}"))?;
                        request.folders.push(id.into_owned());
                    }
                } else if name == "DistinguishedFolderId" {
                    return Err(format!("more than {MAX_FOLDERS} folders asked for"));
                }
                if matches!(event, Event::Start(_)) {
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                    }
                    stack.push(name);
                } else {
                    // An empty element holds no address.
                    sid_text = None;
                }
            }
            Event::End(_) => {
                stack.pop();
                if let Some(text) = sid_text.take() {
                    let text = text.trim().to_owned();
                    if !text.is_empty() {
                        request.impersonating.get_or_insert(text);
                    }
                }
            }
            Event::Text(ref t) => {
                if let Some(text) = sid_text.as_mut() {
                    let decoded = t.decode().map_err(|e| format!("text is not UTF-8: {e}"))?;
                    text.push_str(&decoded);
                }
            }
            Event::GeneralRef(ref r) => {
                if let Some(text) = sid_text.as_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        Ok(None) => match &**r {
                            b"amp" => Some('&'),
                            b"lt" => Some('<'),
                            b"gt" => Some('>'),
                            b"quot" => Some('"'),
                            b"apos" => Some('\''),
                            _ => None,
                        },
                        Err(_) => None,
                    };
                    let Some(c) = resolved else {
                        return Err("an unknown entity reference".to_owned());
                    };
                    text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_envelope {
        return Err("the request has no soap:Envelope".to_owned());
    }
    if !stack.is_empty() {
        return Err("the request ends inside an element".to_owned());
    }
    Ok(request)
}

/// The status and SOAP body answering `body` under the simulator's behaviour
/// (the HTTP-level behaviours were answered before).
pub fn answer(body: &[u8], sim: &Sim) -> (StatusCode, String) {
    let request = match parse(body) {
        Ok(request) => request,
        Err(why) => {
            return fault(
                "ErrorSchemaValidation",
                &format!("The request failed schema validation: {why}"),
            );
        }
    };
    if sim.behave == Behave::Fault {
        return fault(
            "ErrorImpersonateUserDenied",
            "The account does not have permission to impersonate the requested user.",
        );
    }
    match request.operation.as_deref() {
        Some("GetFolder") => (StatusCode::OK, get_folder(&request, sim)),
        Some(other) => fault(
            "ErrorInvalidRequest",
            &format!("The request is invalid: exchange-sim does not implement {other}."),
        ),
        None => fault(
            "ErrorInvalidRequest",
            "The request is invalid: soap:Body names no operation.",
        ),
    }
}

fn get_folder(request: &Request, sim: &Sim) -> String {
    let mailbox = request.impersonating.as_deref();
    let messages = if sim.behave == Behave::NoMailbox && mailbox.is_none() {
        // The service account itself has no mailbox: every folder fails alike.
        let count = request.folders.len().max(1);
        let one = "        <m:GetFolderResponseMessage ResponseClass=\"Error\">\n\
                   \x20         <m:MessageText>The SMTP address has no mailbox associated with it.</m:MessageText>\n\
                   \x20         <m:ResponseCode>ErrorNonExistentMailbox</m:ResponseCode>\n\
                   \x20         <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>\n\
                   \x20         <m:Folders />\n\
                   \x20       </m:GetFolderResponseMessage>\n";
        one.repeat(count)
    } else {
        let owner = mailbox.unwrap_or("service-account");
        let folders: Vec<&str> = if request.folders.is_empty() {
            vec!["calendar"]
        } else {
            request.folders.iter().map(String::as_str).collect()
        };
        folders
            .iter()
            .map(|id| success_message(owner, id, sim))
            .collect()
    };
    envelope(
        sim,
        &format!(
            "    <m:GetFolderResponse xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
             \x20     <m:ResponseMessages>\n\
             {messages}\
             \x20     </m:ResponseMessages>\n\
             \x20   </m:GetFolderResponse>\n"
        ),
    )
}

fn success_message(owner: &str, distinguished_id: &str, sim: &Sim) -> String {
    let (class, name) = if distinguished_id.eq_ignore_ascii_case("calendar") {
        ("IPF.Appointment", sim.calendar_folder.clone())
    } else {
        ("IPF.Note", capitalized(distinguished_id))
    };
    // Stable per mailbox and folder, like a real FolderId, and opaque.
    let id = STANDARD.encode(format!("exchange-sim:{owner}:{distinguished_id}"));
    let change_key = STANDARD.encode(format!("ck:{distinguished_id}"));
    let folder_element = if class == "IPF.Appointment" {
        "CalendarFolder"
    } else {
        "Folder"
    };
    format!(
        "        <m:GetFolderResponseMessage ResponseClass=\"Success\">\n\
         \x20         <m:ResponseCode>NoError</m:ResponseCode>\n\
         \x20         <m:Folders>\n\
         \x20           <t:{folder_element}>\n\
         \x20             <t:FolderId Id=\"{id}\" ChangeKey=\"{change_key}\" />\n\
         \x20             <t:FolderClass>{class}</t:FolderClass>\n\
         \x20             <t:DisplayName>{name}</t:DisplayName>\n\
         \x20             <t:TotalCount>0</t:TotalCount>\n\
         \x20             <t:ChildFolderCount>0</t:ChildFolderCount>\n\
         \x20           </t:{folder_element}>\n\
         \x20         </m:Folders>\n\
         \x20       </m:GetFolderResponseMessage>\n",
        name = escape(name.as_str()),
    )
}

fn capitalized(id: &str) -> String {
    let mut chars = id.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A SOAP envelope with the ServerVersionInfo header every EWS answer carries.
fn envelope(sim: &Sim, body: &str) -> String {
    let v = &sim.version;
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <s:Envelope xmlns:s=\"{SOAP_NS}\">\n\
         \x20 <s:Header>\n\
         \x20   <h:ServerVersionInfo MajorVersion=\"{}\" MinorVersion=\"{}\" MajorBuildNumber=\"{}\" MinorBuildNumber=\"{}\" \
         xmlns:h=\"{TYPES_NS}\" xmlns=\"{TYPES_NS}\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" />\n\
         \x20 </s:Header>\n\
         \x20 <s:Body xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n\
         {body}\
         \x20 </s:Body>\n\
         </s:Envelope>\n",
        v.major, v.minor, v.major_build, v.minor_build,
    )
}

/// A 500 with a SOAP fault, as EWS sends for request-level errors: the
/// ResponseCode in the fault code and again in the detail.
pub fn fault(code: &str, message: &str) -> (StatusCode, String) {
    let message = escape(message);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <s:Envelope xmlns:s=\"{SOAP_NS}\">\n\
         \x20 <s:Body>\n\
         \x20   <s:Fault>\n\
         \x20     <faultcode xmlns:a=\"{TYPES_NS}\">a:{code}</faultcode>\n\
         \x20     <faultstring xml:lang=\"en-US\">{message}</faultstring>\n\
         \x20     <detail>\n\
         \x20       <e:ResponseCode xmlns:e=\"{ERRORS_NS}\">{code}</e:ResponseCode>\n\
         \x20       <e:Message xmlns:e=\"{ERRORS_NS}\">{message}</e:Message>\n\
         \x20       <e:MessageText xmlns:e=\"{ERRORS_NS}\">{message}</e:MessageText>\n\
         \x20     </detail>\n\
         \x20   </s:Fault>\n\
         \x20 </s:Body>\n\
         </s:Envelope>\n"
    );
    (StatusCode::INTERNAL_SERVER_ERROR, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_operation_impersonation_and_folders() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <soap:Header>
    <t:ExchangeImpersonation><t:ConnectingSID>
      <t:PrimarySmtpAddress>a&amp;b@example.com</t:PrimarySmtpAddress>
    </t:ConnectingSID></t:ExchangeImpersonation>
  </soap:Header>
  <soap:Body>
    <GetFolder xmlns="http://schemas.microsoft.com/exchange/services/2006/messages">
      <FolderShape><t:BaseShape>Default</t:BaseShape></FolderShape>
      <FolderIds><t:DistinguishedFolderId Id="calendar"/></FolderIds>
    </GetFolder>
  </soap:Body>
</soap:Envelope>"#;
        let request = parse(body).expect("parses");
        assert_eq!(request.operation.as_deref(), Some("GetFolder"));
        assert_eq!(request.impersonating.as_deref(), Some("a&b@example.com"));
        assert_eq!(request.folders, vec!["calendar".to_owned()]);
    }

    #[test]
    fn refuses_what_is_not_a_soap_envelope() {
        assert!(parse(b"<html></html>").is_err());
        assert!(parse(b"not xml at all <").is_err());
        assert!(parse(b"").is_err());
        let deep = format!(
            "<Envelope>{}{}</Envelope>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(parse(deep.as_bytes()).is_err());
    }
}
