//! Microsoft Graph's `getSchedule` over the scripted calendars EWS reads:
//! validated as Graph does, answered in UTC.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use presence_gateway::domain::presence::{BusyType, Slot};
use serde_json::{Value, json};

use crate::Sim;
use crate::calendars::Zone;
use crate::graph::{
    InFlight, JSON, access_denied, graph_error, graph_time, respond, unauthenticated,
};
use crate::service::read_body;

/// Schedules one getSchedule may name: "getSchedule can support looking up
/// free/busy information for up to 20 entities at once", and "the time
/// period to look up must be less than 42 days" — Microsoft Graph,
/// "Get free/busy schedule of Outlook calendar users and resources",
/// https://learn.microsoft.com/graph/outlook-get-free-busy-schedule
/// (Limits and error conditions).
pub const MAX_SCHEDULES: usize = 20;
pub const MAX_PERIOD_SECS: i64 = 42 * 86_400;

pub async fn get_schedule(
    request: Request<Incoming>,
    sim: &Sim,
    mailbox: &str,
) -> Response<Full<Bytes>> {
    let graph = &sim.graph;
    // Counted before the latency, so overlapping requests show.
    let _inflight = InFlight::enter(graph, mailbox);
    if !graph.config.latency.is_zero() {
        tokio::time::sleep(graph.config.latency).await;
    }
    if !graph.authorized(request.headers()) {
        return unauthenticated();
    }
    if let Some(throttle) = graph.take_throttle(mailbox) {
        graph.counts().throttled += 1;
        let code = if throttle.status == StatusCode::TOO_MANY_REQUESTS {
            "ApplicationThrottled"
        } else {
            "TooManyRequests"
        };
        let mut response = graph_error(
            throttle.status,
            code,
            "Application is over its MailboxConcurrency limit.",
        );
        if let Some(secs) = throttle.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return response;
    }
    let utc_asked = request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("outlook.timezone=\"utc\""));
    let Ok(body) = read_body(request).await else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The body could not be read.",
        );
    };
    let query = match parse_schedule_request(&body) {
        Ok(q) => q,
        Err(why) => return graph_error(StatusCode::BAD_REQUEST, "ErrorInvalidParameter", &why),
    };
    if graph.forbidden(mailbox) || query.schedules.iter().any(|s| graph.forbidden(s)) {
        return access_denied();
    }
    let value: Vec<Value> = query
        .schedules
        .iter()
        .map(|address| schedule_information(sim, address, &query))
        .collect();
    let mut response = respond(StatusCode::OK, JSON, json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.scheduleInformation)",
        "value": value,
    }).to_string());
    if utc_asked {
        response.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("outlook.timezone=\"UTC\""),
        );
    }
    response
}

#[derive(Debug, PartialEq, Eq)]
pub struct ScheduleQuery {
    pub schedules: Vec<String>,
    pub start: i64,
    pub end: i64,
    pub interval_minutes: i64,
}

/// The getSchedule body, validated as Graph does (the sim reads UTC times
/// only: it has no Windows time zone table).
pub fn parse_schedule_request(body: &[u8]) -> Result<ScheduleQuery, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("The body is not JSON: {e}"))?;
    // Graph reads property names case-insensitively (its own samples send
    // "Schedules" and "StartTime").
    let get = |name: &str| -> Option<&Value> {
        value
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let schedules: Vec<String> = get("schedules")
        .and_then(Value::as_array)
        .ok_or("schedules: a list of SMTP addresses is required.")?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or("schedules: strings only.")
        })
        .collect::<Result<_, _>>()?;
    if schedules.is_empty() {
        return Err("schedules: at least one is required.".to_owned());
    }
    if schedules.len() > MAX_SCHEDULES {
        return Err(format!(
            "schedules: at most {MAX_SCHEDULES} per request, {} given.",
            schedules.len()
        ));
    }
    let time = |name: &str| -> Result<i64, String> {
        let t = get(name).ok_or(format!("{name} is required."))?;
        let field = |f: &str| t.get(f).and_then(Value::as_str);
        let zone = field("timeZone").ok_or(format!("{name}.timeZone is required."))?;
        if !["utc", "etc/utc", "coordinated universal time"]
            .contains(&zone.trim().to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "{name}.timeZone: exchange-sim reads UTC only, not {zone:?}."
            ));
        }
        let text = field("dateTime").ok_or(format!("{name}.dateTime is required."))?;
        Zone::default()
            .parse(text)
            .ok_or(format!("{name}.dateTime: {text:?} is not a date and time."))
    };
    let (start, end) = (time("startTime")?, time("endTime")?);
    if end <= start {
        return Err("endTime must be after startTime.".to_owned());
    }
    if end - start >= MAX_PERIOD_SECS {
        return Err("The requested time duration must be less than 42 days.".to_owned());
    }
    let interval_minutes = match get("availabilityViewInterval") {
        None | Some(Value::Null) => 30,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| (5..=1440).contains(n))
            .ok_or("availabilityViewInterval: minimum 5, maximum 1440.")?,
    };
    Ok(ScheduleQuery {
        schedules,
        start,
        end,
        interval_minutes,
    })
}

/// Graph's status name of a calendar entry.
pub fn status_name(busy: BusyType) -> &'static str {
    match busy {
        BusyType::Free => "free",
        BusyType::Tentative => "tentative",
        BusyType::Busy => "busy",
        BusyType::OutOfOffice => "oof",
        BusyType::WorkingElsewhere => "workingElsewhere",
        BusyType::NoData => "unknown",
    }
}

/// The availabilityView digit: the busiest entry in an interval wins, as
/// Exchange merges free/busy.
fn digit(busy: BusyType) -> (u8, char) {
    match busy {
        BusyType::Free => (0, '0'),
        BusyType::WorkingElsewhere => (1, '4'),
        BusyType::Tentative => (2, '1'),
        BusyType::Busy => (3, '2'),
        BusyType::OutOfOffice => (4, '3'),
        BusyType::NoData => (0, '0'),
    }
}

pub fn availability_view(slots: &[Slot], q: &ScheduleQuery) -> String {
    let step = q.interval_minutes * 60;
    let mut view = String::new();
    let mut at = q.start;
    while at < q.end {
        let next = (at + step).min(q.end);
        let best = slots
            .iter()
            .filter(|s| s.start < next && s.end > at)
            .map(|s| digit(s.busy))
            .max_by_key(|(rank, _)| *rank)
            .map_or('0', |(_, c)| c);
        view.push(best);
        at = next;
    }
    view
}

fn schedule_information(sim: &Sim, address: &str, q: &ScheduleQuery) -> Value {
    let Some(mut slots) = sim.calendars.window(address, q.start, q.end) else {
        return json!({
            "scheduleId": address,
            "availabilityView": "",
            "error": {
                "message": format!("The mailbox {address} could not be found."),
                "responseCode": "ErrorMailRecipientNotFound",
            },
        });
    };
    slots.sort_by_key(|s| (s.start, s.end));
    let items: Vec<Value> = slots
        .iter()
        .map(|s| {
            json!({
                "isPrivate": false,
                "status": status_name(s.busy),
                "subject": "",
                "location": "",
                "start": {"dateTime": graph_time(s.start), "timeZone": "UTC"},
                "end": {"dateTime": graph_time(s.end), "timeZone": "UTC"},
            })
        })
        .collect();
    json!({
        "scheduleId": address,
        "availabilityView": availability_view(&slots, q),
        "scheduleItems": items,
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": "UTC"},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(schedules: usize) -> Vec<u8> {
        let list: Vec<String> = (0..schedules)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        json!({
            "schedules": list,
            "startTime": {"dateTime": "2026-12-03T00:00:00", "timeZone": "UTC"},
            "endTime": {"dateTime": "2026-12-03T04:00:00", "timeZone": "UTC"},
            "availabilityViewInterval": 60,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn schedule_requests_are_validated() {
        let q = parse_schedule_request(&body(2)).expect("valid");
        assert_eq!(q.schedules.len(), 2);
        assert_eq!(q.end - q.start, 4 * 3600);
        assert_eq!(q.interval_minutes, 60);
        assert!(parse_schedule_request(&body(MAX_SCHEDULES)).is_ok());
        assert!(parse_schedule_request(&body(MAX_SCHEDULES + 1)).is_err());
        assert!(parse_schedule_request(&body(0)).is_err());
        assert!(parse_schedule_request(b"not json").is_err());
        let pacific = String::from_utf8(body(1))
            .expect("utf8")
            .replace("\"UTC\"", "\"Pacific Standard Time\"");
        assert!(parse_schedule_request(pacific.as_bytes()).is_err());
    }

    #[test]
    fn availability_view_takes_the_busiest_status() {
        let q = parse_schedule_request(&body(1)).expect("valid");
        let h = 3600;
        let slots = [
            Slot {
                start: q.start + h,
                end: q.start + 2 * h,
                busy: BusyType::Tentative,
            },
            Slot {
                start: q.start + h + 600,
                end: q.start + h + 1200,
                busy: BusyType::Busy,
            },
            Slot {
                start: q.start + 3 * h,
                end: q.start + 4 * h,
                busy: BusyType::OutOfOffice,
            },
        ];
        assert_eq!(availability_view(&slots, &q), "0203");
        assert_eq!(status_name(BusyType::WorkingElsewhere), "workingElsewhere");
        assert_eq!(graph_time(0), "1970-01-01T00:00:00.0000000");
    }
}
