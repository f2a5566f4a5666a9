//! EWS `GetUserAvailability` (EN-2): the request for up to 100 mailboxes'
//! free/busy over a time window, and its answer parsed into calendar slots,
//! one result per mailbox in the order asked.
//!
//! Time zones: Exchange answers `CalendarEvent` times as local times in the
//! request's `TimeZone`, without an offset. We send UTC (Bias 0, and both
//! the standard and daylight rules at Bias 0, so no transition moves
//! anything), so a time without an offset is read as UTC. A time with an
//! offset (Microsoft's documentation samples carry them) is read with it.

use quick_xml::escape::escape;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::domain::presence::{BusyType, Slot};

use super::ews::{ROOT, Tree};

/// Exchange refuses more mailboxes than this in one request.
pub const MAX_MAILBOXES: usize = 100;

/// Why one mailbox has no calendar in an otherwise good answer
/// (`ErrorMailRecipientNotFound`, no free/busy rights, ...), or why a
/// server asked to be left alone (`ErrorServerBusy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxError {
    pub code: String,
    pub message: String,
    /// `ErrorServerBusy`'s `BackOffMilliseconds`, when given.
    pub back_off_ms: Option<u64>,
}

/// One mailbox's answer: its slots in the window, or why there are none.
pub type MailboxAvailability = Result<Vec<Slot>, MailboxError>;

/// A `GetUserAvailability` request for `mailboxes` (at most
/// [`MAX_MAILBOXES`]) over `[start, end)` (Unix seconds), asking for the
/// `FreeBusy` view, which carries each event's start, end and status.
pub fn request(mailboxes: &[&str], start: i64, end: i64) -> Result<String, String> {
    if mailboxes.is_empty() || mailboxes.len() > MAX_MAILBOXES {
        return Err(format!(
            "GetUserAvailability takes 1 to {MAX_MAILBOXES} mailboxes, not {}",
            mailboxes.len()
        ));
    }
    let stamp = |t: i64| -> Result<String, String> {
        let at = OffsetDateTime::from_unix_timestamp(t).map_err(|e| e.to_string())?;
        at.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .map_err(|e| e.to_string())
    };
    let mut data = String::new();
    for mailbox in mailboxes {
        data.push_str(&format!(
            "\n        <t:MailboxData>\
             \n          <t:Email><t:Address>{}</t:Address></t:Email>\
             \n          <t:AttendeeType>Required</t:AttendeeType>\
             \n          <t:ExcludeConflicts>false</t:ExcludeConflicts>\
             \n        </t:MailboxData>",
            escape(*mailbox)
        ));
    }
    let (start, end) = (stamp(start)?, stamp(end)?);
    Ok(format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
               xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:RequestServerVersion Version="Exchange2007_SP1"/>
  </soap:Header>
  <soap:Body>
    <m:GetUserAvailabilityRequest>
      <t:TimeZone>
        <t:Bias>0</t:Bias>
        <t:StandardTime>
          <t:Bias>0</t:Bias>
          <t:Time>02:00:00</t:Time>
          <t:DayOrder>5</t:DayOrder>
          <t:Month>10</t:Month>
          <t:DayOfWeek>Sunday</t:DayOfWeek>
        </t:StandardTime>
        <t:DaylightTime>
          <t:Bias>0</t:Bias>
          <t:Time>02:00:00</t:Time>
          <t:DayOrder>1</t:DayOrder>
          <t:Month>4</t:Month>
          <t:DayOfWeek>Sunday</t:DayOfWeek>
        </t:DaylightTime>
      </t:TimeZone>
      <m:MailboxDataArray>{data}
      </m:MailboxDataArray>
      <t:FreeBusyViewOptions>
        <t:TimeWindow>
          <t:StartTime>{start}</t:StartTime>
          <t:EndTime>{end}</t:EndTime>
        </t:TimeWindow>
        <t:MergedFreeBusyIntervalInMinutes>30</t:MergedFreeBusyIntervalInMinutes>
        <t:RequestedView>FreeBusy</t:RequestedView>
      </t:FreeBusyViewOptions>
    </m:GetUserAvailabilityRequest>
  </soap:Body>
</soap:Envelope>
"#
    ))
}

/// A `CalendarEvent` time: with an offset as given, without one as UTC
/// (the zone we asked in).
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at.unix_timestamp());
    }
    let local = text.split('.').next().unwrap_or(text);
    PrimitiveDateTime::parse(
        local,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()
    .map(|at| at.assume_utc().unix_timestamp())
}

/// The answer to [`request`]: one result per `FreeBusyResponse`, in the
/// order of the mailboxes asked. Err when the body is not such an answer
/// (a SOAP fault included: its code and text are the reason).
pub fn parse(body: &[u8]) -> Result<Vec<MailboxAvailability>, String> {
    let tree = Tree::parse(body)?;
    let body_el = tree
        .find_descendant(ROOT, "Body")
        .ok_or("not a SOAP message: no Body")?;
    tree.check_closed(body_el)?;
    if let Some(fault) = soap_fault(&tree, body_el) {
        return Err(format!("{}: {}", fault.code, fault.message));
    }
    let response = tree
        .find_descendant(body_el, "GetUserAvailabilityResponse")
        .ok_or("not a GetUserAvailability response")?;
    let array = tree
        .find_descendant(response, "FreeBusyResponseArray")
        .ok_or("the response holds no FreeBusyResponseArray")?;
    let mut results = Vec::new();
    for answer in tree
        .element_children(array)
        .filter(|&n| tree.name(n) == "FreeBusyResponse")
    {
        results.push(mailbox(&tree, answer)?);
    }
    Ok(results)
}

/// The SOAP fault `body` carries, if it is one: its `ResponseCode` (or
/// "SOAP fault"), its text, and `ErrorServerBusy`'s `BackOffMilliseconds`.
/// Exchange sends a whole request's refusals this way (busy, schema, rights),
/// usually with HTTP 500.
pub fn fault(body: &[u8]) -> Option<MailboxError> {
    let tree = Tree::parse(body).ok()?;
    let body_el = tree.find_descendant(ROOT, "Body")?;
    soap_fault(&tree, body_el)
}

fn soap_fault(tree: &Tree, body_el: usize) -> Option<MailboxError> {
    let fault = tree.find_child(body_el, "Fault")?;
    let text = tree
        .find_descendant(fault, "faultstring")
        .or_else(|| tree.find_descendant(fault, "Text"))
        .map(|n| tree.text(n))
        .unwrap_or_default();
    let code = tree
        .find_descendant(fault, "ResponseCode")
        .map(|n| tree.text(n).trim().to_owned())
        .unwrap_or_else(|| "SOAP fault".to_owned());
    let back_off_ms = tree
        .descendants(fault)
        .find(|&n| tree.attr(n, "Name") == Some("BackOffMilliseconds"))
        .and_then(|n| tree.text(n).trim().parse().ok());
    Some(MailboxError {
        code,
        message: text.trim().to_owned(),
        back_off_ms,
    })
}

fn mailbox(tree: &Tree, answer: usize) -> Result<MailboxAvailability, String> {
    if let Some(message) = tree.find_child(answer, "ResponseMessage") {
        let class = tree.attr(message, "ResponseClass").map(str::trim);
        if class != Some("Success") {
            let back_off_ms = tree
                .descendants(message)
                .find(|&n| tree.attr(n, "Name") == Some("BackOffMilliseconds"))
                .and_then(|n| tree.text(n).trim().parse().ok());
            return Ok(Err(MailboxError {
                code: tree.child_text(message, "ResponseCode").unwrap_or_default(),
                message: tree.child_text(message, "MessageText").unwrap_or_default(),
                back_off_ms,
            }));
        }
    }
    let Some(view) = tree.find_child(answer, "FreeBusyView") else {
        return Ok(Ok(Vec::new()));
    };
    let mut slots = Vec::new();
    if let Some(events) = tree.find_child(view, "CalendarEventArray") {
        for event in tree
            .element_children(events)
            .filter(|&n| tree.name(n) == "CalendarEvent")
        {
            let field = |name: &str| tree.child_text(event, name).unwrap_or_default();
            let (start, end, busy) = (field("StartTime"), field("EndTime"), field("BusyType"));
            let start = parse_time(&start).ok_or_else(|| format!("bad StartTime {start:?}"))?;
            let end = parse_time(&end).ok_or_else(|| format!("bad EndTime {end:?}"))?;
            let busy = BusyType::parse(&busy).ok_or_else(|| format!("bad BusyType {busy:?}"))?;
            if end > start {
                slots.push(Slot { start, end, busy });
            }
        }
    }
    Ok(Ok(slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/data/ews/getuseravailability-02.xml");

    fn at(text: &str) -> i64 {
        OffsetDateTime::parse(text, &Rfc3339)
            .expect("time")
            .unix_timestamp()
    }

    #[test]
    fn microsofts_sample_answer_parses_with_its_offsets() {
        let results = parse(SAMPLE.as_bytes()).expect("parse");
        assert_eq!(results.len(), 2);
        let first = results[0].as_ref().expect("first mailbox");
        assert_eq!(first.len(), 3);
        assert_eq!(
            first[0],
            Slot {
                start: at("2006-10-16T13:00:00Z"),
                end: at("2006-10-16T13:30:00Z"),
                busy: BusyType::Busy
            }
        );
        let second = results[1].as_ref().expect("second mailbox");
        assert_eq!(second[0].busy, BusyType::Tentative);
        assert_eq!(second[0].start, at("2006-10-16T16:00:00Z"));
    }

    #[test]
    fn times_without_an_offset_are_in_the_zone_we_asked_utc() {
        assert_eq!(
            parse_time("2026-12-02T10:00:00"),
            Some(at("2026-12-02T10:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-12-02T10:00:00.000"),
            Some(at("2026-12-02T10:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-12-02T10:00:00+01:00"),
            Some(at("2026-12-02T09:00:00Z"))
        );
        assert_eq!(parse_time("tomorrow"), None);
    }

    #[test]
    fn the_request_asks_in_utc_for_the_free_busy_view() {
        let xml = request(&["a@example.com", "b&c@example.com"], 0, 86_400).expect("request");
        assert!(xml.contains("<t:Bias>0</t:Bias>"));
        assert!(!xml.contains("<t:Bias>-60</t:Bias>"));
        assert!(xml.contains("<t:StartTime>1970-01-01T00:00:00</t:StartTime>"));
        assert!(xml.contains("<t:EndTime>1970-01-02T00:00:00</t:EndTime>"));
        assert!(xml.contains("<t:RequestedView>FreeBusy</t:RequestedView>"));
        assert!(xml.contains("<t:Address>b&amp;c@example.com</t:Address>"));
        // The request is well-formed for our own reader.
        assert!(Tree::parse(xml.as_bytes()).is_ok());
        let many: Vec<String> = (0..101).map(|i| format!("u{i}@example.com")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(request(&many, 0, 60).is_err());
        assert!(request(&many[..100], 0, 60).is_ok());
        assert!(request(&[], 0, 60).is_err());
    }

    #[test]
    fn a_mailbox_error_is_that_mailboxs_not_the_batchs() {
        let body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
          <GetUserAvailabilityResponse xmlns="http://schemas.microsoft.com/exchange/services/2006/messages">
            <FreeBusyResponseArray>
              <FreeBusyResponse>
                <ResponseMessage ResponseClass="Error">
                  <MessageText>The recipient could not be found.</MessageText>
                  <ResponseCode>ErrorMailRecipientNotFound</ResponseCode>
                </ResponseMessage>
              </FreeBusyResponse>
              <FreeBusyResponse>
                <ResponseMessage ResponseClass="Success"><ResponseCode>NoError</ResponseCode></ResponseMessage>
                <FreeBusyView>
                  <CalendarEventArray xmlns="http://schemas.microsoft.com/exchange/services/2006/types">
                    <CalendarEvent><StartTime>2026-12-02T10:00:00</StartTime><EndTime>2026-12-02T11:00:00</EndTime><BusyType>OOF</BusyType></CalendarEvent>
                  </CalendarEventArray>
                </FreeBusyView>
              </FreeBusyResponse>
              <FreeBusyResponse>
                <ResponseMessage ResponseClass="Error">
                  <MessageText>The server cannot service this request right now.</MessageText>
                  <ResponseCode>ErrorServerBusy</ResponseCode>
                  <MessageXml><t:Value xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Name="BackOffMilliseconds">30000</t:Value></MessageXml>
                </ResponseMessage>
              </FreeBusyResponse>
            </FreeBusyResponseArray>
          </GetUserAvailabilityResponse></s:Body></s:Envelope>"#;
        let results = parse(body.as_bytes()).expect("parse");
        let missing = results[0].as_ref().unwrap_err();
        assert_eq!(missing.code, "ErrorMailRecipientNotFound");
        assert_eq!(missing.back_off_ms, None);
        let slots = results[1].as_ref().expect("second");
        assert_eq!(
            slots,
            &vec![Slot {
                start: at("2026-12-02T10:00:00Z"),
                end: at("2026-12-02T11:00:00Z"),
                busy: BusyType::OutOfOffice
            }]
        );
        assert_eq!(results[2].as_ref().unwrap_err().back_off_ms, Some(30_000));
    }

    #[test]
    fn a_fault_or_garbage_is_an_error() {
        let fault = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
            <faultcode>a:ErrorSchemaValidation</faultcode><faultstring>The request failed schema validation.</faultstring>
          </s:Fault></s:Body></s:Envelope>"#;
        let e = parse(fault.as_bytes()).unwrap_err();
        assert!(e.contains("schema validation"), "{e}");
        assert!(parse(b"<html>hi</html>").is_err());
        assert!(parse(b"").is_err());
        assert_eq!(super::fault(b"<html>hi</html>"), None);
    }

    /// The shape Exchange sends when it throttles a whole request (HTTP 500).
    #[test]
    fn a_server_busy_fault_carries_its_back_off() {
        let busy = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
            <faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode>
            <faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring>
            <detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode>
            <e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message>
            <t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">2500</t:Value></t:MessageXml>
            </detail></s:Fault></s:Body></s:Envelope>"#;
        let found = fault(busy.as_bytes()).expect("a fault");
        assert_eq!(found.code, "ErrorServerBusy");
        assert_eq!(found.back_off_ms, Some(2500));
        assert!(found.message.starts_with("The server cannot service"));
        assert!(
            parse(busy.as_bytes())
                .unwrap_err()
                .starts_with("ErrorServerBusy: ")
        );
    }
}
