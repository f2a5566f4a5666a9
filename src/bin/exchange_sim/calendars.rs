//! Scripted calendars (EN-6): a population of mailboxes with generated
//! meetings and rows loaded from `mailbox,start,end,busy_type` files or
//! posted while the simulator runs; and the `SerializableTimeZone` rules
//! that `GetUserAvailability` answers in (local times, no offset), as
//! Exchange does.

use std::collections::HashMap;
use std::sync::RwLock;

use presence_gateway::domain::presence::{BusyType, Slot};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

/// Most rows one load may carry (a file or a POST).
pub const MAX_ROWS: usize = 1_000_000;

/// One mailbox's calendar replaced by a load: whether it held events before
/// and after, so a push notification can tell a creation from a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub mailbox: String,
    pub had_events: bool,
    pub has_events: bool,
}

/// Every mailbox the simulator knows, with its calendar.
#[derive(Default)]
pub struct Calendars {
    mailboxes: RwLock<HashMap<String, Vec<Slot>>>,
}

/// The address of generated mailbox `i`.
pub fn generated_address(i: usize) -> String {
    format!("user{i:05}@example.com")
}

impl Calendars {
    /// `count` generated mailboxes (`user00000@example.com`, ...), each with
    /// a day of meetings around `now`: on the hours from 08:00 to 17:00
    /// UTC of yesterday, today and tomorrow, a few per person, Busy mostly,
    /// now and then Tentative, Out of Office or Working Elsewhere. The same
    /// for the same `count` and day.
    pub fn generated(count: usize, now: i64) -> Calendars {
        let day = now.div_euclid(86_400) * 86_400;
        let mut mailboxes = HashMap::with_capacity(count);
        for i in 0..count {
            let mut slots = Vec::new();
            for d in -1..=1_i64 {
                for hour in 8..18_i64 {
                    let pick = (i as i64 * 7 + hour * 3 + d * 11).rem_euclid(5);
                    if pick > 1 {
                        continue;
                    }
                    let start = day + d * 86_400 + hour * 3600;
                    let length = if (i + hour as usize).is_multiple_of(2) {
                        1800
                    } else {
                        3600
                    };
                    let busy = match (i as i64 + hour).rem_euclid(10) {
                        0 => BusyType::Tentative,
                        1 => BusyType::OutOfOffice,
                        2 => BusyType::WorkingElsewhere,
                        _ => BusyType::Busy,
                    };
                    slots.push(Slot {
                        start,
                        end: start + length,
                        busy,
                    });
                }
            }
            mailboxes.insert(generated_address(i), slots);
        }
        Calendars {
            mailboxes: RwLock::new(mailboxes),
        }
    }

    /// Loads `mailbox,start,end,busy_type` rows (RFC 3339 times; a first
    /// line starting with `mailbox` is a header): each mailbox named gets
    /// exactly the rows given, others keep theirs. A mailbox with an empty
    /// start and end (`mailbox,,,`) gets an empty calendar. All or nothing.
    /// Returns the mailboxes changed, in address order.
    pub fn load(&self, text: &str) -> Result<Vec<Change>, String> {
        let mut parsed: HashMap<String, Vec<Slot>> = HashMap::new();
        for (n, line) in text.lines().enumerate().take(MAX_ROWS + 1) {
            if n == MAX_ROWS {
                return Err(format!("more than {MAX_ROWS} rows"));
            }
            let line = line.trim();
            if line.is_empty() || (n == 0 && line.to_ascii_lowercase().starts_with("mailbox")) {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [mailbox, start, end, busy] = fields[..] else {
                return Err(format!(
                    "line {}: expected mailbox,start,end,busy_type",
                    n + 1
                ));
            };
            if !mailbox.contains('@') {
                return Err(format!("line {}: {mailbox:?} is no mailbox address", n + 1));
            }
            let slots = parsed.entry(mailbox.to_ascii_lowercase()).or_default();
            if start.is_empty() && end.is_empty() {
                continue;
            }
            let time = |t: &str| {
                OffsetDateTime::parse(t, &Rfc3339)
                    .map(|t| t.unix_timestamp())
                    .map_err(|e| format!("line {}: {t:?} is no RFC 3339 time: {e}", n + 1))
            };
            let (start, end) = (time(start)?, time(end)?);
            if end <= start {
                return Err(format!("line {}: the end is not after the start", n + 1));
            }
            let busy = BusyType::parse(busy)
                .ok_or_else(|| format!("line {}: unknown busy type {busy:?}", n + 1))?;
            slots.push(Slot { start, end, busy });
        }
        let mut mailboxes = self
            .mailboxes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed: Vec<Change> = parsed
            .iter()
            .map(|(mailbox, slots)| Change {
                mailbox: mailbox.clone(),
                had_events: mailboxes.get(mailbox).is_some_and(|s| !s.is_empty()),
                has_events: !slots.is_empty(),
            })
            .collect();
        changed.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
        mailboxes.extend(parsed);
        Ok(changed)
    }

    /// Whether the simulator has a mailbox at this address.
    pub fn knows(&self, mailbox: &str) -> bool {
        self.mailboxes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&mailbox.to_ascii_lowercase())
    }

    /// The mailbox's slots overlapping `[start, end)`, or `None` for a
    /// mailbox the simulator does not know.
    pub fn window(&self, mailbox: &str, start: i64, end: i64) -> Option<Vec<Slot>> {
        let mailboxes = self
            .mailboxes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        mailboxes.get(&mailbox.to_ascii_lowercase()).map(|slots| {
            slots
                .iter()
                .filter(|s| s.start < end && s.end > start)
                .copied()
                .collect()
        })
    }

    pub fn len(&self) -> usize {
        self.mailboxes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// One transition rule of a `SerializableTimeZone`: at `time` (seconds
/// after midnight, local) on the `day_order`-th `weekday` of `month` (5:
/// the last), the zone's bias becomes `Bias + bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub bias: i32,
    pub time: u32,
    pub day_order: u8,
    pub month: u8,
    pub weekday: Weekday,
}

/// A request's `TimeZone`: UTC = local + `bias` minutes (plus the rule in
/// force's own bias). Without both rules, or with equal biases, no DST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Zone {
    pub bias: i32,
    pub standard: Option<Rule>,
    pub daylight: Option<Rule>,
}

pub fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim() {
        "Sunday" => Weekday::Sunday,
        "Monday" => Weekday::Monday,
        "Tuesday" => Weekday::Tuesday,
        "Wednesday" => Weekday::Wednesday,
        "Thursday" => Weekday::Thursday,
        "Friday" => Weekday::Friday,
        "Saturday" => Weekday::Saturday,
        _ => return None,
    })
}

/// `HH:MM:SS` as seconds.
pub fn time_of_day(text: &str) -> Option<u32> {
    let mut parts = text.trim().split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, s) = (
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    );
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

impl Rule {
    /// The local instant (seconds, as if UTC) of this rule's transition in
    /// `year`.
    fn local_instant(&self, year: i32) -> Option<i64> {
        let month = Month::try_from(self.month).ok()?;
        let first = Date::from_calendar_date(year, month, 1).ok()?;
        let offset = (7 + self.weekday.number_days_from_sunday() as i32
            - first.weekday().number_days_from_sunday() as i32)
            % 7;
        let mut day = 1 + offset + 7 * (i32::from(self.day_order.clamp(1, 5)) - 1);
        let days_in_month = i32::from(time::util::days_in_month(month, year));
        while day > days_in_month {
            day -= 7;
        }
        let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
        Some(date.midnight().assume_utc().unix_timestamp() + i64::from(self.time))
    }
}

impl Zone {
    /// Minutes to add to local time for UTC at the UTC instant `at`.
    pub fn bias_at(&self, at: i64) -> i32 {
        let (Some(standard), Some(daylight)) = (self.standard, self.daylight) else {
            return self.bias + self.standard.map_or(0, |s| s.bias);
        };
        if standard.bias == daylight.bias || daylight.month == 0 {
            return self.bias + standard.bias;
        }
        let year = OffsetDateTime::from_unix_timestamp(at)
            .map(|t| t.year())
            .unwrap_or(1970);
        // Daylight time starts at a standard-time local instant, and ends
        // at a daylight-time local instant.
        let (Some(start_local), Some(end_local)) =
            (daylight.local_instant(year), standard.local_instant(year))
        else {
            return self.bias + standard.bias;
        };
        let start = start_local + i64::from(self.bias + standard.bias) * 60;
        let end = end_local + i64::from(self.bias + daylight.bias) * 60;
        let in_daylight = if start < end {
            start <= at && at < end
        } else {
            // Southern hemisphere: daylight time spans the new year.
            at >= start || at < end
        };
        self.bias
            + if in_daylight {
                daylight.bias
            } else {
                standard.bias
            }
    }

    /// `at` as a local time in this zone, without an offset, as Exchange
    /// writes `CalendarEvent` times.
    pub fn local(&self, at: i64) -> String {
        let local = at - i64::from(self.bias_at(at)) * 60;
        OffsetDateTime::from_unix_timestamp(local)
            .ok()
            .and_then(|t| {
                t.format(format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]"
                ))
                .ok()
            })
            .unwrap_or_default()
    }

    /// A request time: with an offset or `Z` as given; without one, local in
    /// this zone.
    pub fn parse(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
            return Some(at.unix_timestamp());
        }
        let text = text.split('.').next().unwrap_or(text);
        let date = PrimitiveDateTime::parse(
            text,
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .or_else(|_| {
            Date::parse(text, format_description!("[year]-[month]-[day]"))
                .map(|d| PrimitiveDateTime::new(d, Time::MIDNIGHT))
        })
        .ok()?;
        let as_utc = date.assume_utc().unix_timestamp();
        // The bias in force near that instant; near a transition the first
        // guess may be an hour off, so look again.
        let guess = as_utc + i64::from(self.bias_at(as_utc)) * 60;
        Some(as_utc + i64::from(self.bias_at(guess)) * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        OffsetDateTime::parse(text, &Rfc3339)
            .expect("time")
            .unix_timestamp()
    }

    /// Pacific time as Microsoft's samples send it (2007 rules: DST from the
    /// second Sunday of March to the first Sunday of November).
    fn pacific() -> Zone {
        Zone {
            bias: 480,
            standard: Some(Rule {
                bias: 0,
                time: 7200,
                day_order: 1,
                month: 11,
                weekday: Weekday::Sunday,
            }),
            daylight: Some(Rule {
                bias: -60,
                time: 7200,
                day_order: 2,
                month: 3,
                weekday: Weekday::Sunday,
            }),
        }
    }

    #[test]
    fn local_times_follow_the_zone_and_its_daylight_time() {
        let zone = pacific();
        assert_eq!(
            zone.local(at("2026-12-02T18:00:00Z")),
            "2026-12-02T10:00:00"
        );
        assert_eq!(
            zone.local(at("2026-07-01T17:00:00Z")),
            "2026-07-01T10:00:00"
        );
        // 2026-03-08 is the second Sunday of March: 02:00 PST -> 03:00 PDT.
        assert_eq!(
            zone.local(at("2026-03-08T09:59:59Z")),
            "2026-03-08T01:59:59"
        );
        assert_eq!(
            zone.local(at("2026-03-08T10:00:00Z")),
            "2026-03-08T03:00:00"
        );
        assert_eq!(
            zone.parse("2026-12-02T10:00:00"),
            Some(at("2026-12-02T18:00:00Z"))
        );
        assert_eq!(
            zone.parse("2026-07-01T10:00:00"),
            Some(at("2026-07-01T17:00:00Z"))
        );
        assert_eq!(
            zone.parse("2026-07-01T10:00:00Z"),
            Some(at("2026-07-01T10:00:00Z"))
        );
        let utc = Zone::default();
        assert_eq!(utc.local(at("2026-07-01T10:00:00Z")), "2026-07-01T10:00:00");
    }

    #[test]
    fn the_last_weekday_of_a_month() {
        // Central Europe: last Sunday of March and of October.
        let cet = Zone {
            bias: -60,
            standard: Some(Rule {
                bias: 0,
                time: 10800,
                day_order: 5,
                month: 10,
                weekday: Weekday::Sunday,
            }),
            daylight: Some(Rule {
                bias: -60,
                time: 7200,
                day_order: 5,
                month: 3,
                weekday: Weekday::Sunday,
            }),
        };
        assert_eq!(cet.local(at("2026-03-29T00:59:59Z")), "2026-03-29T01:59:59");
        assert_eq!(cet.local(at("2026-03-29T01:00:00Z")), "2026-03-29T03:00:00");
        assert_eq!(cet.local(at("2026-10-25T00:59:59Z")), "2026-10-25T02:59:59");
        assert_eq!(cet.local(at("2026-10-25T01:00:00Z")), "2026-10-25T02:00:00");
    }

    #[test]
    fn rows_replace_a_mailboxs_calendar() {
        let calendars = Calendars::generated(3, at("2026-12-02T12:00:00Z"));
        assert_eq!(calendars.len(), 3);
        assert!(
            calendars
                .window("USER00001@example.com", 0, i64::MAX)
                .is_some_and(|s| !s.is_empty())
        );
        let changed = calendars
            .load(
                "mailbox,start,end,busy_type\n\
                 user00001@example.com,2026-12-02T10:00:00Z,2026-12-02T11:00:00Z,Busy\n\
                 new@example.com,,,\n",
            )
            .expect("load");
        assert_eq!(
            changed,
            vec![
                Change {
                    mailbox: "new@example.com".to_owned(),
                    had_events: false,
                    has_events: false
                },
                Change {
                    mailbox: "user00001@example.com".to_owned(),
                    had_events: true,
                    has_events: true
                },
            ]
        );
        assert!(calendars.knows("New@Example.com"));
        let slots = calendars
            .window("user00001@example.com", 0, i64::MAX)
            .expect("known");
        assert_eq!(slots.len(), 1);
        assert_eq!(
            calendars.window("new@example.com", 0, i64::MAX),
            Some(vec![])
        );
        assert_eq!(calendars.window("nobody@example.com", 0, i64::MAX), None);
        assert!(
            calendars
                .load("x@example.com,2026-12-02T10:00:00Z,2026-12-02T09:00:00Z,Busy")
                .is_err()
        );
        assert!(
            calendars
                .load("x@example.com,yesterday,today,Busy")
                .is_err()
        );
        assert!(
            calendars
                .load("x@example.com,2026-12-02T10:00:00Z,2026-12-02T11:00:00Z,Maybe")
                .is_err()
        );
    }
}
