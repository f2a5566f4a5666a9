//! EWS push notifications (EN-2): the `Subscribe` request for one user's
//! calendar folder under `ExchangeImpersonation`, its answer, the
//! `SendNotification` requests Exchange then posts to the call-back URL, and
//! the `SendNotificationResult` that keeps (`OK`) or ends (`Unsubscribe`) a
//! subscription. EWS has no call that ends a push subscription: answering
//! `Unsubscribe`, or no longer answering, is how a subscriber leaves.

use quick_xml::escape::escape;

use super::availability::MailboxError;
use super::ews::{REQUEST_SERVER_VERSION, ROOT, Tree};

/// The calendar changes that matter to presence.
const EVENT_TYPES: [&str; 5] = [
    "CreatedEvent",
    "DeletedEvent",
    "ModifiedEvent",
    "MovedEvent",
    "CopiedEvent",
];

/// A push `Subscribe` for `mailbox`'s calendar, made as that mailbox
/// (impersonation), posting to `url` with a status notification every
/// `status_frequency` minutes when nothing else happens.
pub fn subscribe_request(mailbox: &str, url: &str, status_frequency: u32) -> String {
    let events: String = EVENT_TYPES
        .iter()
        .map(|e| format!("\n          <t:EventType>{e}</t:EventType>"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
               xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:RequestServerVersion Version="{REQUEST_SERVER_VERSION}"/>
    <t:ExchangeImpersonation>
      <t:ConnectingSID>
        <t:SmtpAddress>{mailbox}</t:SmtpAddress>
      </t:ConnectingSID>
    </t:ExchangeImpersonation>
  </soap:Header>
  <soap:Body>
    <m:Subscribe>
      <m:PushSubscriptionRequest>
        <t:FolderIds>
          <t:DistinguishedFolderId Id="calendar"/>
        </t:FolderIds>
        <t:EventTypes>{events}
        </t:EventTypes>
        <t:StatusFrequency>{status_frequency}</t:StatusFrequency>
        <t:URL>{url}</t:URL>
      </m:PushSubscriptionRequest>
    </m:Subscribe>
  </soap:Body>
</soap:Envelope>
"#,
        mailbox = escape(mailbox),
        url = escape(url),
    )
}

/// A subscription Exchange made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    pub id: String,
    pub watermark: String,
}

fn fault_or(tree: &Tree, body: usize, what: &str) -> MailboxError {
    let fault = tree.find_child(body, "Fault");
    let pick = |name: &str| {
        fault
            .and_then(|f| tree.find_descendant(f, name))
            .map(|n| tree.text(n).trim().to_owned())
    };
    MailboxError {
        code: pick("ResponseCode").unwrap_or_else(|| "SOAP fault".to_owned()),
        message: pick("faultstring").unwrap_or_else(|| format!("not a {what} answer")),
        back_off_ms: fault
            .and_then(|f| {
                tree.descendants(f)
                    .find(|&n| tree.attr(n, "Name") == Some("BackOffMilliseconds"))
            })
            .and_then(|n| tree.text(n).trim().parse().ok()),
    }
}

/// The answer to [`subscribe_request`]: the subscription, or Exchange's
/// refusal (its `ResponseCode` and text; `ErrorServerBusy`'s back-off).
pub fn parse_subscribe(body: &[u8]) -> Result<Subscribed, MailboxError> {
    let malformed = |message: String| MailboxError {
        code: "ErrorInvalidResponse".to_owned(),
        message,
        back_off_ms: None,
    };
    let tree = Tree::parse(body).map_err(malformed)?;
    let body_el = tree
        .find_descendant(ROOT, "Body")
        .ok_or_else(|| malformed("not a SOAP message: no Body".to_owned()))?;
    let Some(message) = tree.find_descendant(body_el, "SubscribeResponseMessage") else {
        return Err(fault_or(&tree, body_el, "Subscribe"));
    };
    let class = tree.attr(message, "ResponseClass").map(str::trim);
    if class != Some("Success") {
        return Err(MailboxError {
            code: tree
                .child_text(message, "ResponseCode")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            message: tree
                .child_text(message, "MessageText")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            back_off_ms: tree
                .descendants(message)
                .find(|&n| tree.attr(n, "Name") == Some("BackOffMilliseconds"))
                .and_then(|n| tree.text(n).trim().parse().ok()),
        });
    }
    let id = tree
        .child_text(message, "SubscriptionId")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("the answer holds no SubscriptionId".to_owned()))?;
    Ok(Subscribed {
        id,
        watermark: tree
            .child_text(message, "Watermark")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    })
}

/// One `Notification` of a `SendNotification`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub subscription_id: String,
    /// The watermark of the notification before this one, as Exchange
    /// remembers it: unlike the last one heard, notifications were missed.
    pub previous_watermark: Option<String>,
    /// The newest watermark it carries.
    pub watermark: Option<String>,
    /// Something in the folder changed (any event but a status event).
    pub changed: bool,
}

/// A `SendNotification` request from Exchange: its notifications (Exchange
/// sends one per request in practice; the schema allows several).
pub fn parse_notification(body: &[u8]) -> Result<Vec<Notification>, String> {
    let tree = Tree::parse(body)?;
    let body_el = tree
        .find_descendant(ROOT, "Body")
        .ok_or("not a SOAP message: no Body")?;
    tree.check_closed(body_el)?;
    let send = tree
        .find_descendant(body_el, "SendNotification")
        .ok_or("not a SendNotification request")?;
    let notifications: Vec<Notification> = tree
        .descendants(send)
        .filter(|&n| tree.name(n) == "Notification")
        .filter_map(|n| notification(&tree, n))
        .collect();
    if notifications.is_empty() {
        return Err("the SendNotification carries no notification".to_owned());
    }
    Ok(notifications)
}

fn notification(tree: &Tree, node: usize) -> Option<Notification> {
    let subscription_id = tree.child_text(node, "SubscriptionId")?.trim().to_owned();
    let mut watermark = None;
    let mut changed = false;
    for event in tree.element_children(node) {
        let name = tree.name(event);
        if !name.ends_with("Event") {
            continue;
        }
        changed |= name != "StatusEvent";
        if let Some(w) = tree.child_text(event, "Watermark") {
            watermark = Some(w.trim().to_owned());
        }
    }
    Some(Notification {
        subscription_id,
        previous_watermark: tree
            .child_text(node, "PreviousWatermark")
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty()),
        watermark,
        changed,
    })
}

/// What the subscriber answers a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Ok,
    Unsubscribe,
}

/// The `SendNotificationResult` body.
pub fn answer(keep: Keep) -> String {
    let status = match keep {
        Keep::Ok => "OK",
        Keep::Unsubscribe => "Unsubscribe",
    };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><SendNotificationResult xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"><SubscriptionStatus>{status}</SubscriptionStatus></SendNotificationResult></soap:Body></soap:Envelope>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/ews/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn microsofts_subscribe_answers_parse() {
        assert_eq!(
            parse_subscribe(&sample("subscribe-02.xml")),
            Ok(Subscribed {
                id: "39ea5d0f-f062-455e-a1e9-89c0304390f4".to_owned(),
                watermark: "AAAAAHgGAAAAAAAAAQ==".to_owned(),
            })
        );
        // Unprefixed elements in the default namespace, as in the push sample.
        assert_eq!(
            parse_subscribe(&sample("subscribe-05.xml")).map(|s| s.id),
            Ok("83826921-afdf-48be-b469-628cc02b5f49".to_owned())
        );
        let refused = parse_subscribe(&sample("subscribe-03.xml")).unwrap_err();
        assert_eq!(refused.code, "ErrorSubscriptionDelegateAccessNotSupported");
        assert!(refused.message.contains("delegate user access"));
    }

    #[test]
    fn a_fault_or_garbage_is_a_refusal_with_a_code() {
        let busy = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>a:ErrorServerBusy</faultcode><faultstring>Later.</faultstring><detail><e:ResponseCode xmlns:e="e">ErrorServerBusy</e:ResponseCode><t:MessageXml xmlns:t="t"><t:Value Name="BackOffMilliseconds">900</t:Value></t:MessageXml></detail></s:Fault></s:Body></s:Envelope>"#;
        let e = parse_subscribe(busy).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.back_off_ms),
            ("ErrorServerBusy", Some(900))
        );
        assert_eq!(
            parse_subscribe(b"<html/>").unwrap_err().code,
            "ErrorInvalidResponse"
        );
    }

    #[test]
    fn the_request_impersonates_and_names_the_call_back() {
        let xml = subscribe_request("a&b@example.com", "http://gw:50020/ews/x?y&z", 30);
        assert!(xml.contains("<t:SmtpAddress>a&amp;b@example.com</t:SmtpAddress>"));
        assert!(xml.contains("<t:URL>http://gw:50020/ews/x?y&amp;z</t:URL>"));
        assert!(xml.contains("<t:StatusFrequency>30</t:StatusFrequency>"));
        assert!(xml.contains(r#"<t:DistinguishedFolderId Id="calendar"/>"#));
        assert!(Tree::parse(xml.as_bytes()).is_ok());
    }

    /// Microsoft's GetEvents sample carries the same `Notification` element
    /// a push notification does; wrapped as `SendNotification` it parses.
    #[test]
    fn notifications_say_whether_anything_changed() {
        let events = String::from_utf8(sample("getevents-02.xml")).expect("UTF-8");
        let start = events.find("<m:Notification>").expect("notification");
        let end = events.find("</m:Notification>").expect("end") + "</m:Notification>".len();
        let push = format!(
            r#"<soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><soap11:Body><m:SendNotification><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{}</m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>"#,
            &events[start..end]
        );
        let parsed = parse_notification(push.as_bytes()).expect("parse");
        assert_eq!(
            parsed,
            vec![Notification {
                subscription_id: "f6bc657d-dde1-4f94-952d-143b95d6483d".to_owned(),
                previous_watermark: Some("AAAAAMAGAAAAAAAAAQ==".to_owned()),
                watermark: Some("AAAAAOQGAAAAAAAAAQ==".to_owned()),
                changed: true,
            }]
        );
        let status = push.replace("NewMailEvent", "StatusEvent");
        assert!(!parse_notification(status.as_bytes()).expect("parse")[0].changed);
        assert!(parse_notification(b"<x/>").is_err());
    }

    #[test]
    fn the_answer_keeps_or_ends_the_subscription() {
        assert!(answer(Keep::Ok).contains("<SubscriptionStatus>OK</SubscriptionStatus>"));
        assert!(answer(Keep::Unsubscribe).contains("<SubscriptionStatus>Unsubscribe<"));
    }
}
