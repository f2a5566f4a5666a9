//! EWS: reads just enough of a SOAP request (the operation, the impersonated
//! mailbox, the folders asked for) and writes responses shaped like
//! Exchange's own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::StatusCode;
use quick_xml::escape::escape;
use quick_xml::events::Event;

use presence_gateway::domain::presence::BusyType;

use crate::calendars::{Rule, Zone, time_of_day, weekday};
use crate::{Behave, Sim, push};

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
    /// GetUserAvailability's values, by where they stand: `address`,
    /// `TimeZone/Bias`, `StandardTime/Month`, `TimeWindow/StartTime`,
    /// `RequestedView`, ... in document order.
    pub values: Vec<(String, String)>,
}

impl Request {
    /// The first value kept under `key`.
    fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// More values than this is no request we answer (100 mailboxes and a
/// time zone need about 120).
const MAX_VALUES: usize = 1024;

/// The key a GetUserAvailability value is kept under, if it is one.
fn value_key(stack: &[String], name: &str) -> Option<String> {
    let parent = stack.last().map(String::as_str)?;
    let grandparent = stack.len().checked_sub(2).map(|i| stack[i].as_str());
    if stack.iter().any(|s| s == "GetServerTimeZones") {
        return (parent == "Ids" && name == "Id").then(|| "tzid".to_owned());
    }
    if stack.iter().any(|s| s == "Subscribe") {
        return match (grandparent, parent, name) {
            (
                _,
                "PushSubscriptionRequest"
                | "PullSubscriptionRequest"
                | "StreamingSubscriptionRequest",
                "StatusFrequency" | "URL" | "Timeout" | "Watermark",
            ) => Some(format!("subscribe/{name}")),
            (_, "EventTypes", "EventType") => Some("subscribe/EventType".to_owned()),
            (Some("DistinguishedFolderId"), "Mailbox", "EmailAddress") => {
                Some("folder/mailbox".to_owned())
            }
            _ => None,
        };
    }
    if stack.iter().any(|s| s == "Unsubscribe") {
        return (parent == "Unsubscribe" && name == "SubscriptionId")
            .then(|| "SubscriptionId".to_owned());
    }
    let in_request = stack.iter().any(|s| s == "GetUserAvailabilityRequest");
    if !in_request {
        return None;
    }
    match (grandparent, parent, name) {
        (Some("MailboxData"), "Email", "Address") => Some("address".to_owned()),
        (_, "TimeZone" | "StandardTime" | "DaylightTime", _) => Some(format!("{parent}/{name}")),
        (_, "TimeWindow", "StartTime" | "EndTime") => Some(format!("TimeWindow/{name}")),
        (_, "FreeBusyViewOptions", "RequestedView" | "MergedFreeBusyIntervalInMinutes") => {
            Some(name.to_owned())
        }
        _ => None,
    }
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
    // A GetUserAvailability value being read, with its key.
    let mut value: Option<(String, String)> = None;
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
                // Subscribe's shape: which kind of subscription, and its
                // folders in order (a folder's Mailbox follows its folder).
                if stack.iter().any(|s| s == "Subscribe") {
                    let attribute = |key: &str| -> Result<Option<String>, String> {
                        match e.try_get_attribute(key) {
                            Ok(Some(a)) => a
                                .unescape_value()
                                .map(|v| Some(v.into_owned()))
                                .map_err(|e| format!("an attribute is malformed: {e}")),
                            _ => Ok(None),
                        }
                    };
                    let mut found = Vec::new();
                    if parent == Some("Subscribe") {
                        found.push(("subscribe/kind", Some(name.clone())));
                        found.push(("subscribe/all", attribute("SubscribeToAllFolders")?));
                    }
                    match name.as_str() {
                        "FolderId" => found.push(("folder/id", attribute("Id")?)),
                        "DistinguishedFolderId" => {
                            found.push(("folder/distinguished", attribute("Id")?));
                        }
                        _ => {}
                    }
                    for (key, value) in found {
                        if let Some(value) = value {
                            if request.values.len() >= MAX_VALUES {
                                return Err(format!("more than {MAX_VALUES} values"));
                            }
                            request.values.push((key.to_owned(), value));
                        }
                    }
                }
                if parent == Some("ConnectingSID")
                    && matches!(
                        name.as_str(),
                        "PrimarySmtpAddress" | "SmtpAddress" | "PrincipalName" | "SID"
                    )
                {
                    sid_text = Some(String::new());
                }
                if matches!(event, Event::Start(_))
                    && let Some(key) = value_key(&stack, &name)
                {
                    if request.values.len() >= MAX_VALUES {
                        return Err(format!("more than {MAX_VALUES} values"));
                    }
                    value = Some((key, String::new()));
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
                if let Some((key, text)) = value.take() {
                    request.values.push((key, text.trim().to_owned()));
                }
                if let Some(text) = sid_text.take() {
                    let text = text.trim().to_owned();
                    if !text.is_empty() {
                        request.impersonating.get_or_insert(text);
                    }
                }
            }
            Event::Text(ref t) if sid_text.is_some() || value.is_some() => {
                let decoded = t.decode().map_err(|e| format!("text is not UTF-8: {e}"))?;
                if let Some(text) = sid_text.as_mut() {
                    text.push_str(&decoded);
                }
                if let Some((_, text)) = value.as_mut() {
                    text.push_str(&decoded);
                }
            }
            Event::GeneralRef(ref r) if sid_text.is_some() || value.is_some() => {
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
                if let Some(text) = sid_text.as_mut() {
                    text.push(c);
                }
                if let Some((_, text)) = value.as_mut() {
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

/// The operation's name as counted in /sim/stats: the soap:Body element's
/// local name, except `GetUserAvailabilityRequest`, which is the
/// `GetUserAvailability` operation.
pub fn operation_name(request: &Result<Request, String>) -> &str {
    match request {
        Ok(r) => match r.operation.as_deref() {
            Some("GetUserAvailabilityRequest") => "GetUserAvailability",
            Some(other) => other,
            None => "(none)",
        },
        Err(_) => "(malformed)",
    }
}

/// The mailboxes a GetUserAvailability request asks for.
pub fn availability_mailboxes(request: &Request) -> Vec<String> {
    request
        .values
        .iter()
        .filter(|(k, _)| k == "address")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The status and SOAP body answering a parsed request (or the reason it
/// did not parse) under the simulator's behaviour (the HTTP-level
/// behaviours were answered before).
pub fn answer(request: Result<Request, String>, sim: &Sim) -> (StatusCode, String) {
    let request = match request {
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
        Some("GetUserAvailabilityRequest") => get_user_availability(&request, sim),
        Some("GetServerTimeZones") => (StatusCode::OK, get_server_time_zones(&request, sim)),
        Some("Subscribe") => subscribe(&request, sim),
        Some("Unsubscribe") => unsubscribe(&request, sim),
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

/// A folder's FolderId Id: stable per mailbox and folder, like a real one,
/// and opaque (Subscribe reads it back with [`folder_of`]).
pub fn folder_id(owner: &str, distinguished_id: &str) -> String {
    STANDARD.encode(format!("exchange-sim:{owner}:{distinguished_id}"))
}

/// The (mailbox, distinguished folder) a [`folder_id`] names.
fn folder_of(id: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(id.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let rest = text.strip_prefix("exchange-sim:")?;
    let (owner, folder) = rest.rsplit_once(':')?;
    Some((owner.to_owned(), folder.to_owned()))
}

fn success_message(owner: &str, distinguished_id: &str, sim: &Sim) -> String {
    let (class, name) = if distinguished_id.eq_ignore_ascii_case("calendar") {
        ("IPF.Appointment", sim.calendar_folder.clone())
    } else {
        ("IPF.Note", capitalized(distinguished_id))
    };
    let id = folder_id(owner, distinguished_id);
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

/// Exchange answers at most this many mailboxes in one request.
const MAX_AVAILABILITY_MAILBOXES: usize = 100;

/// The request's `TimeZone`, as Exchange reads it: `Bias`, and the
/// `StandardTime` and `DaylightTime` rules when both are there.
fn zone(request: &Request) -> Result<Zone, String> {
    let get = |key: &str| request.value(key);
    let number = |key: &str| -> Result<Option<i32>, String> {
        get(key)
            .map(|v| {
                v.parse::<i32>()
                    .map_err(|_| format!("{key} is not a number: {v:?}"))
            })
            .transpose()
    };
    let rule = |period: &str| -> Result<Option<Rule>, String> {
        let Some(bias) = number(&format!("{period}/Bias"))? else {
            return Ok(None);
        };
        let time = get(&format!("{period}/Time"))
            .and_then(time_of_day)
            .ok_or(format!("{period}/Time is missing or malformed"))?;
        let day_order = number(&format!("{period}/DayOrder"))?.unwrap_or(1);
        let month = number(&format!("{period}/Month"))?.unwrap_or(0);
        let weekday = get(&format!("{period}/DayOfWeek"))
            .and_then(weekday)
            .ok_or(format!("{period}/DayOfWeek is missing or malformed"))?;
        Ok(Some(Rule {
            bias,
            time,
            day_order: u8::try_from(day_order).map_err(|_| "DayOrder out of range")?,
            month: u8::try_from(month).map_err(|_| "Month out of range")?,
            weekday,
        }))
    };
    Ok(Zone {
        bias: number("TimeZone/Bias")?.ok_or("the request has no TimeZone/Bias")?,
        standard: rule("StandardTime")?,
        daylight: rule("DaylightTime")?,
    })
}

fn busy_name(busy: BusyType) -> &'static str {
    match busy {
        BusyType::Free => "Free",
        BusyType::Tentative => "Tentative",
        BusyType::Busy => "Busy",
        BusyType::OutOfOffice => "OOF",
        BusyType::WorkingElsewhere => "WorkingElsewhere",
        BusyType::NoData => "NoData",
    }
}

/// The digit of a merged free/busy interval: the busiest status in it.
fn merged_digit(busy: Option<BusyType>) -> char {
    match busy {
        None | Some(BusyType::Free) => '0',
        Some(BusyType::Tentative) => '1',
        Some(BusyType::Busy) => '2',
        Some(BusyType::OutOfOffice) => '3',
        Some(BusyType::WorkingElsewhere) => '4',
        Some(BusyType::NoData) => '5',
    }
}

/// GetUserAvailability: each mailbox's events in the window, their times
/// local to the request's TimeZone and without an offset, as Exchange
/// writes them; an unknown mailbox is that mailbox's error, not the
/// request's; more than 100 mailboxes fail the request.
fn get_user_availability(request: &Request, sim: &Sim) -> (StatusCode, String) {
    let addresses: Vec<&str> = request
        .values
        .iter()
        .filter(|(k, _)| k == "address")
        .map(|(_, v)| v.as_str())
        .collect();
    if addresses.is_empty() {
        return fault(
            "ErrorInvalidRequest",
            "The request is invalid: MailboxDataArray names no mailbox.",
        );
    }
    if addresses.len() > MAX_AVAILABILITY_MAILBOXES {
        return fault(
            "ErrorInvalidRequest",
            &format!(
                "The request is invalid: {} mailboxes were asked for; the limit is \
                 {MAX_AVAILABILITY_MAILBOXES}.",
                addresses.len()
            ),
        );
    }
    let zone = match zone(request) {
        Ok(zone) => zone,
        Err(why) => {
            return fault(
                "ErrorSchemaValidation",
                &format!("The request failed schema validation: {why}"),
            );
        }
    };
    let get = |key: &str| request.value(key);
    let (Some(start), Some(end)) = (
        get("TimeWindow/StartTime").and_then(|t| zone.parse(t)),
        get("TimeWindow/EndTime").and_then(|t| zone.parse(t)),
    ) else {
        return fault(
            "ErrorInvalidRequest",
            "The request is invalid: the TimeWindow is missing or malformed.",
        );
    };
    if end <= start || end - start > 62 * 86_400 {
        return fault(
            "ErrorInvalidTimeInterval",
            "The time window must end after it starts and span at most 62 days.",
        );
    }
    let view = get("RequestedView").unwrap_or("DetailedMerged");
    let interval = get("MergedFreeBusyIntervalInMinutes")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| (5..=1440).contains(v))
        .unwrap_or(30)
        * 60;
    let merged = view.contains("Merged");
    let view_type = match view {
        "Detailed" | "DetailedMerged" | "FreeBusy" | "FreeBusyMerged" | "MergedOnly" => view,
        _ => "FreeBusy",
    };
    let mut responses = String::new();
    for address in addresses {
        let Some(slots) = sim.calendars.window(address, start, end) else {
            responses.push_str(&format!(
                "        <FreeBusyResponse>\n\
                 \x20         <ResponseMessage ResponseClass=\"Error\">\n\
                 \x20           <MessageText>No mailbox with such guid. Address: {}</MessageText>\n\
                 \x20           <ResponseCode>ErrorMailRecipientNotFound</ResponseCode>\n\
                 \x20           <DescriptiveLinkKey>0</DescriptiveLinkKey>\n\
                 \x20         </ResponseMessage>\n\
                 \x20         <FreeBusyView>\n\
                 \x20           <FreeBusyViewType xmlns=\"{TYPES_NS}\">None</FreeBusyViewType>\n\
                 \x20         </FreeBusyView>\n\
                 \x20       </FreeBusyResponse>\n",
                escape(address)
            ));
            continue;
        };
        let merged_element = if merged {
            let mut digits = String::new();
            let mut at = start;
            while at < end && digits.len() < 10_000 {
                let busiest = slots
                    .iter()
                    .filter(|s| s.start < at + interval && s.end > at)
                    .map(|s| s.busy)
                    .max_by_key(|b| merged_digit(Some(*b)));
                digits.push(merged_digit(busiest));
                at += interval;
            }
            format!(
                "\x20           <MergedFreeBusy xmlns=\"{TYPES_NS}\">{digits}</MergedFreeBusy>\n"
            )
        } else {
            String::new()
        };
        let events: String = slots
            .iter()
            .map(|s| {
                format!(
                    "              <CalendarEvent>\n\
                     \x20               <StartTime>{}</StartTime>\n\
                     \x20               <EndTime>{}</EndTime>\n\
                     \x20               <BusyType>{}</BusyType>\n\
                     \x20             </CalendarEvent>\n",
                    zone.local(s.start),
                    zone.local(s.end),
                    busy_name(s.busy)
                )
            })
            .collect();
        responses.push_str(&format!(
            "        <FreeBusyResponse>\n\
             \x20         <ResponseMessage ResponseClass=\"Success\">\n\
             \x20           <ResponseCode>NoError</ResponseCode>\n\
             \x20         </ResponseMessage>\n\
             \x20         <FreeBusyView>\n\
             \x20           <FreeBusyViewType xmlns=\"{TYPES_NS}\">{view_type}</FreeBusyViewType>\n\
             {merged_element}\
             \x20           <CalendarEventArray xmlns=\"{TYPES_NS}\">\n\
             {events}\
             \x20           </CalendarEventArray>\n\
             \x20         </FreeBusyView>\n\
             \x20       </FreeBusyResponse>\n"
        ));
    }
    (
        StatusCode::OK,
        envelope(
            sim,
            &format!(
                "    <GetUserAvailabilityResponse xmlns=\"{MESSAGES_NS}\">\n\
                 \x20     <FreeBusyResponseArray>\n\
                 {responses}\
                 \x20     </FreeBusyResponseArray>\n\
                 \x20   </GetUserAvailabilityResponse>\n"
            ),
        ),
    )
}

/// The Windows time zones the simulator knows, as (Id, display name,
/// standard bias in minutes, daylight rules): daylight bias, then the
/// (month, occurrence (-1: last), weekday, hour) of the daylight and the
/// standard transitions.
type DaylightRules = (i32, (u8, i8, &'static str, u8), (u8, i8, &'static str, u8));
const TIME_ZONES: &[(&str, &str, i32, Option<DaylightRules>)] = &[
    ("UTC", "(UTC) Coordinated Universal Time", 0, None),
    (
        "Pacific Standard Time",
        "(UTC-08:00) Pacific Time (US &amp; Canada)",
        480,
        Some((-60, (3, 2, "Sunday", 2), (11, 1, "Sunday", 2))),
    ),
    (
        "Eastern Standard Time",
        "(UTC-05:00) Eastern Time (US &amp; Canada)",
        300,
        Some((-60, (3, 2, "Sunday", 2), (11, 1, "Sunday", 2))),
    ),
    (
        "GMT Standard Time",
        "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
        0,
        Some((-60, (3, -1, "Sunday", 1), (10, -1, "Sunday", 2))),
    ),
    (
        "W. Europe Standard Time",
        "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
        -60,
        Some((-60, (3, -1, "Sunday", 2), (10, -1, "Sunday", 3))),
    ),
    (
        "Tokyo Standard Time",
        "(UTC+09:00) Osaka, Sapporo, Tokyo",
        -540,
        None,
    ),
];

/// An xs:duration for a bias in minutes, as Exchange writes Period biases.
fn duration(minutes: i32) -> String {
    let sign = if minutes < 0 { "-" } else { "" };
    let m = minutes.unsigned_abs();
    format!("{sign}P0DT{}H{}M0.0S", m / 60, m % 60)
}

/// GetServerTimeZones with full data for the Ids asked (all when none),
/// which clients such as exchangelib read to build the TimeZone of their
/// GetUserAvailability requests.
fn get_server_time_zones(request: &Request, sim: &Sim) -> String {
    let wanted: Vec<&str> = request
        .values
        .iter()
        .filter(|(k, _)| k == "tzid")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut definitions = String::new();
    for (id, name, bias, daylight) in TIME_ZONES {
        if !wanted.is_empty() && !wanted.contains(id) {
            continue;
        }
        let standard_id = format!("trule:Microsoft/Registry/{id}/2007-Standard");
        let daylight_id = format!("trule:Microsoft/Registry/{id}/2007-Daylight");
        let mut periods = format!(
            "\n            <t:Period Bias=\"{}\" Name=\"Standard\" Id=\"{standard_id}\" />",
            duration(*bias)
        );
        let transitions = match daylight {
            None => format!(
                "\n            <t:Transition><t:To Kind=\"Period\">{standard_id}</t:To></t:Transition>"
            ),
            Some((dst_bias, to_daylight, to_standard)) => {
                periods.push_str(&format!(
                    "\n            <t:Period Bias=\"{}\" Name=\"Daylight\" Id=\"{daylight_id}\" />",
                    duration(bias + dst_bias)
                ));
                [(to_daylight, &daylight_id), (to_standard, &standard_id)]
                    .iter()
                    .map(|((month, occurrence, weekday, hour), to)| {
                        format!(
                            "\n            <t:RecurringDayTransition>\
                             <t:To Kind=\"Period\">{to}</t:To>\
                             <t:TimeOffset>P0DT{hour}H0M0.0S</t:TimeOffset>\
                             <t:Month>{month}</t:Month>\
                             <t:DayOfWeek>{weekday}</t:DayOfWeek>\
                             <t:Occurrence>{occurrence}</t:Occurrence>\
                             </t:RecurringDayTransition>"
                        )
                    })
                    .collect()
            }
        };
        definitions.push_str(&format!(
            "\n          <t:TimeZoneDefinition Id=\"{id}\" Name=\"{name}\">\
             \n            <t:Periods>{periods}\n            </t:Periods>\
             \n            <t:TransitionsGroups>\
             \n            <t:TransitionsGroup Id=\"0\">{transitions}\n            </t:TransitionsGroup>\
             \n            </t:TransitionsGroups>\
             \n            <t:Transitions>\
             \n              <t:Transition><t:To Kind=\"Group\">0</t:To></t:Transition>\
             \n            </t:Transitions>\
             \n          </t:TimeZoneDefinition>"
        ));
    }
    envelope(
        sim,
        &format!(
            "    <m:GetServerTimeZonesResponse xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
             \x20     <m:ResponseMessages>\n\
             \x20       <m:GetServerTimeZonesResponseMessage ResponseClass=\"Success\">\n\
             \x20         <m:ResponseCode>NoError</m:ResponseCode>\n\
             \x20         <m:TimeZoneDefinitions>{definitions}\n\
             \x20         </m:TimeZoneDefinitions>\n\
             \x20       </m:GetServerTimeZonesResponseMessage>\n\
             \x20     </m:ResponseMessages>\n\
             \x20   </m:GetServerTimeZonesResponse>\n"
        ),
    )
}

/// Subscribe (push and pull; streaming is not simulated), as Exchange
/// answers a service account: only under ExchangeImpersonation of a known
/// mailbox, on that mailbox's own calendar (a folder of another mailbox is
/// delegate access, which subscriptions refuse).
fn subscribe(request: &Request, sim: &Sim) -> (StatusCode, String) {
    let schema = |why: &str| {
        fault(
            "ErrorSchemaValidation",
            &format!("The request failed schema validation: {why}"),
        )
    };
    let Some(kind) = request.value("subscribe/kind") else {
        return schema("Subscribe holds no subscription request.");
    };
    let event_types: Vec<String> = request
        .values
        .iter()
        .filter(|(k, _)| k == "subscribe/EventType")
        .map(|(_, v)| v.clone())
        .collect();
    if event_types.is_empty() {
        return schema("EventTypes holds no EventType.");
    }
    if let Some(bad) = event_types
        .iter()
        .find(|t| !push::EVENT_TYPES.contains(&t.as_str()))
    {
        return schema(&format!("{bad:?} is not a valid EventType."));
    }
    // Both frequencies are SubscriptionStatusFrequencyType /
    // SubscriptionTimeoutType: integers from 1 to 1440 minutes.
    let minutes = |key: &str, element: &str| -> Result<u32, (StatusCode, String)> {
        let Some(text) = request.value(key) else {
            return Err(schema(&format!("{kind} has no {element}.")));
        };
        text.parse::<u32>()
            .ok()
            .filter(|m| (1..=1440).contains(m))
            .ok_or_else(|| {
                schema(&format!(
                    "The '{element}' element is invalid - the value '{text}' is not an \
                     integer from 1 to 1440."
                ))
            })
    };
    let push = match kind {
        "PushSubscriptionRequest" => {
            let frequency = match minutes("subscribe/StatusFrequency", "StatusFrequency") {
                Ok(f) => f,
                Err(answer) => return answer,
            };
            let Some(url) = request.value("subscribe/URL").filter(|u| !u.is_empty()) else {
                return schema("PushSubscriptionRequest has no URL.");
            };
            Some((frequency, url))
        }
        "PullSubscriptionRequest" => {
            if let Err(answer) = minutes("subscribe/Timeout", "Timeout") {
                return answer;
            }
            None
        }
        "StreamingSubscriptionRequest" => {
            return subscribe_error(
                sim,
                "ErrorInvalidSubscriptionRequest",
                "exchange-sim does not simulate streaming subscriptions.",
            );
        }
        other => return schema(&format!("{other} is not a subscription request.")),
    };

    // The folders in order: (explicit owner, distinguished folder name).
    let mut folders: Vec<(Option<String>, String)> = Vec::new();
    for (key, value) in &request.values {
        match key.as_str() {
            "folder/distinguished" => folders.push((None, value.clone())),
            "folder/mailbox" => {
                if let Some(last) = folders.last_mut() {
                    last.0 = Some(value.clone());
                }
            }
            "folder/id" => match folder_of(value) {
                Some((owner, folder)) => folders.push((Some(owner), folder)),
                None => {
                    return subscribe_error(sim, "ErrorInvalidIdMalformed", "Id is malformed.");
                }
            },
            _ => {}
        }
    }
    if request.value("subscribe/all") == Some("true") || folders.is_empty() {
        return subscribe_error(
            sim,
            "ErrorInvalidSubscriptionRequest",
            "exchange-sim subscribes to calendar folders named in FolderIds only.",
        );
    }
    let Some(mailbox) = request.impersonating.as_deref() else {
        // Naming another person's mailbox is delegate access; naming none,
        // or the service account's own address, leaves no mailbox at all.
        return if folders
            .iter()
            .any(|(owner, _)| owner.as_deref().is_some_and(|o| sim.calendars.knows(o)))
        {
            subscribe_error(
                sim,
                "ErrorSubscriptionDelegateAccessNotSupported",
                "Subscriptions are not supported for delegate user access.",
            )
        } else {
            // The service account has no mailbox of its own to subscribe to.
            subscribe_error(
                sim,
                "ErrorMissingEmailAddress",
                "When making a request as an account that does not have a mailbox, you must \
                 specify the mailbox primary SMTP address for any distinguished folder Ids.",
            )
        };
    };
    if !sim.calendars.knows(mailbox) {
        return fault(
            "ErrorNonExistentMailbox",
            "The SMTP address has no mailbox associated with it.",
        );
    }
    for (owner, folder) in &folders {
        if owner
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(mailbox))
        {
            return subscribe_error(
                sim,
                "ErrorSubscriptionDelegateAccessNotSupported",
                "Subscriptions are not supported for delegate user access.",
            );
        }
        if !folder.eq_ignore_ascii_case("calendar") {
            return subscribe_error(
                sim,
                "ErrorInvalidSubscriptionRequest",
                "exchange-sim notifies of calendar changes only: subscribe to the calendar folder.",
            );
        }
    }
    if !sim.push.has_room() {
        return subscribe_error(
            sim,
            "ErrorExceededSubscriptionCount",
            "You have exceeded the maximum number of subscriptions (exchange-sim \
             --max-subscriptions).",
        );
    }
    let (id, watermark) = match push {
        Some((frequency, url)) => match push::Target::parse(url) {
            Ok(target) => sim
                .push
                .subscribe_push(mailbox, target, frequency, event_types),
            Err(why) => {
                return subscribe_error(
                    sim,
                    "ErrorInvalidPushSubscriptionUrl",
                    &format!("The push subscription URL is invalid: {why}"),
                );
            }
        },
        None => sim.push.subscribe_pull(mailbox, event_types),
    };
    (
        StatusCode::OK,
        envelope(
            sim,
            &format!(
                "    <m:SubscribeResponse xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
                 \x20     <m:ResponseMessages>\n\
                 \x20       <m:SubscribeResponseMessage ResponseClass=\"Success\">\n\
                 \x20         <m:ResponseCode>NoError</m:ResponseCode>\n\
                 \x20         <m:SubscriptionId>{id}</m:SubscriptionId>\n\
                 \x20         <m:Watermark>{watermark}</m:Watermark>\n\
                 \x20       </m:SubscribeResponseMessage>\n\
                 \x20     </m:ResponseMessages>\n\
                 \x20   </m:SubscribeResponse>\n"
            ),
        ),
    )
}

/// A response-level error of `operation` (200, ResponseClass Error), as EWS
/// answers what is well-formed but refused.
fn response_error(sim: &Sim, operation: &str, code: &str, text: &str) -> (StatusCode, String) {
    (
        StatusCode::OK,
        envelope(
            sim,
            &format!(
                "    <m:{operation}Response xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
                 \x20     <m:ResponseMessages>\n\
                 \x20       <m:{operation}ResponseMessage ResponseClass=\"Error\">\n\
                 \x20         <m:MessageText>{}</m:MessageText>\n\
                 \x20         <m:ResponseCode>{code}</m:ResponseCode>\n\
                 \x20         <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>\n\
                 \x20       </m:{operation}ResponseMessage>\n\
                 \x20     </m:ResponseMessages>\n\
                 \x20   </m:{operation}Response>\n",
                escape(text)
            ),
        ),
    )
}

fn subscribe_error(sim: &Sim, code: &str, text: &str) -> (StatusCode, String) {
    response_error(sim, "Subscribe", code, text)
}

/// Unsubscribe, as Exchange answers it: ends a pull subscription of the
/// impersonated mailbox; ErrorInvalidSubscription for a push subscription
/// (a push subscriber answers a notification with Unsubscribe instead);
/// ErrorSubscriptionNotFound for an id it does not hold.
fn unsubscribe(request: &Request, sim: &Sim) -> (StatusCode, String) {
    let Some(id) = request.value("SubscriptionId").filter(|v| !v.is_empty()) else {
        return fault(
            "ErrorSchemaValidation",
            "The request failed schema validation: Unsubscribe has no SubscriptionId.",
        );
    };
    match sim.push.unsubscribe(id, request.impersonating.as_deref()) {
        Ok(()) => (
            StatusCode::OK,
            envelope(
                sim,
                &format!(
                    "    <m:UnsubscribeResponse xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
                     \x20     <m:ResponseMessages>\n\
                     \x20       <m:UnsubscribeResponseMessage ResponseClass=\"Success\">\n\
                     \x20         <m:ResponseCode>NoError</m:ResponseCode>\n\
                     \x20       </m:UnsubscribeResponseMessage>\n\
                     \x20     </m:ResponseMessages>\n\
                     \x20   </m:UnsubscribeResponse>\n"
                ),
            ),
        ),
        Err((code, text)) => response_error(sim, "Unsubscribe", code, text),
    }
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
    fault_with(code, message, "")
}

/// The throttling fault: `ErrorServerBusy` with the back-off in the
/// detail's `MessageXml`, where exchangelib and the EWS Managed API read it.
pub fn server_busy(back_off_ms: u64) -> (StatusCode, String) {
    fault_with(
        "ErrorServerBusy",
        "The server cannot service this request right now. Try again later.",
        &format!(
            "\x20       <t:MessageXml xmlns:t=\"{TYPES_NS}\">\n\
             \x20         <t:Value Name=\"BackOffMilliseconds\">{back_off_ms}</t:Value>\n\
             \x20       </t:MessageXml>\n"
        ),
    )
}

/// GetUserAvailability answered, but every mailbox's answer is
/// `ErrorServerBusy` with its back-off (the per-mailbox form of throttling).
pub fn server_busy_per_mailbox(mailboxes: &[String], back_off_ms: u64, sim: &Sim) -> String {
    let one = format!(
        "        <FreeBusyResponse>\n\
         \x20         <ResponseMessage ResponseClass=\"Error\">\n\
         \x20           <MessageText>The server cannot service this request right now. Try again later.</MessageText>\n\
         \x20           <ResponseCode>ErrorServerBusy</ResponseCode>\n\
         \x20           <DescriptiveLinkKey>0</DescriptiveLinkKey>\n\
         \x20           <MessageXml><t:Value xmlns:t=\"{TYPES_NS}\" Name=\"BackOffMilliseconds\">{back_off_ms}</t:Value></MessageXml>\n\
         \x20         </ResponseMessage>\n\
         \x20       </FreeBusyResponse>\n"
    );
    envelope(
        sim,
        &format!(
            "    <GetUserAvailabilityResponse xmlns=\"{MESSAGES_NS}\">\n\
             \x20     <FreeBusyResponseArray>\n\
             {}\
             \x20     </FreeBusyResponseArray>\n\
             \x20   </GetUserAvailabilityResponse>\n",
            one.repeat(mailboxes.len().max(1))
        ),
    )
}

fn fault_with(code: &str, message: &str, extra_detail: &str) -> (StatusCode, String) {
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
         {extra_detail}\
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
