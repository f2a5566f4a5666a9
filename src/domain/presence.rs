//! Calendar presence (EN-3, EN-5): what a calendar says about a person now,
//! and when that changes. Pure: slots and a time in, a state out.

use std::fmt;

/// A person's calendar presence as published (EN-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalendarPresence {
    Available,
    InAMeeting,
    Away,
    /// Calendar presence off, no calendar read yet, or no data.
    Unknown,
}

impl CalendarPresence {
    /// The API's spelling (EN-5).
    pub fn as_str(self) -> &'static str {
        match self {
            CalendarPresence::Available => "available",
            CalendarPresence::InAMeeting => "in_a_meeting",
            CalendarPresence::Away => "away",
            CalendarPresence::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Option<CalendarPresence> {
        [
            CalendarPresence::Available,
            CalendarPresence::InAMeeting,
            CalendarPresence::Away,
            CalendarPresence::Unknown,
        ]
        .into_iter()
        .find(|p| p.as_str() == value)
    }

    /// How people read it (pages).
    pub fn label(self) -> &'static str {
        match self {
            CalendarPresence::Available => "Available",
            CalendarPresence::InAMeeting => "In a meeting",
            CalendarPresence::Away => "Away",
            CalendarPresence::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for CalendarPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A calendar slot's free/busy status, as Exchange (EWS `BusyType`) and
/// Graph (`scheduleItems` status) report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusyType {
    Free,
    Tentative,
    Busy,
    OutOfOffice,
    WorkingElsewhere,
    NoData,
}

impl BusyType {
    /// EWS's `BusyType` (`Free`, `Tentative`, `Busy`, `OOF`,
    /// `WorkingElsewhere`, `NoData`) or Graph's status (`free`, `tentative`,
    /// `busy`, `oof`, `workingElsewhere`, `unknown`), case-insensitively.
    pub fn parse(value: &str) -> Option<BusyType> {
        Some(match value.trim().to_ascii_lowercase().as_str() {
            "free" => BusyType::Free,
            "tentative" => BusyType::Tentative,
            "busy" => BusyType::Busy,
            "oof" | "outofoffice" => BusyType::OutOfOffice,
            "workingelsewhere" => BusyType::WorkingElsewhere,
            "nodata" | "unknown" => BusyType::NoData,
            _ => return None,
        })
    }
}

/// One calendar slot: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub start: i64,
    pub end: i64,
    pub busy: BusyType,
}

/// EN-3's mapping of one status. Out of Office counts as Away only when the
/// *Calendar Out of Office Information* parameter says to display it;
/// otherwise it is treated as Free.
pub fn map(busy: BusyType, display_oof: bool) -> CalendarPresence {
    match busy {
        BusyType::Busy => CalendarPresence::InAMeeting,
        BusyType::OutOfOffice if display_oof => CalendarPresence::Away,
        BusyType::OutOfOffice
        | BusyType::Free
        | BusyType::Tentative
        | BusyType::WorkingElsewhere => CalendarPresence::Available,
        BusyType::NoData => CalendarPresence::Unknown,
    }
}

/// Which of two overlapping states shows: displayed Out of Office over Busy
/// over the rest (EN-3); no data yields to any data.
fn rank(presence: CalendarPresence) -> u8 {
    match presence {
        CalendarPresence::Away => 3,
        CalendarPresence::InAMeeting => 2,
        CalendarPresence::Available => 1,
        CalendarPresence::Unknown => 0,
    }
}

/// The presence at `now`: the highest-ranked state of the slots covering
/// it, Available when none does.
pub fn presence_at(slots: &[Slot], now: i64, display_oof: bool) -> CalendarPresence {
    slots
        .iter()
        .filter(|s| s.start <= now && now < s.end)
        .map(|s| map(s.busy, display_oof))
        .max_by_key(|p| rank(*p))
        .unwrap_or(CalendarPresence::Available)
}

/// The state at `now` and when it ends (the next instant at which the
/// state differs), if the slots say; `None` when it lasts beyond them.
pub fn current(slots: &[Slot], now: i64, display_oof: bool) -> (CalendarPresence, Option<i64>) {
    let state = presence_at(slots, now, display_oof);
    (state, next_change(slots, now, display_oof))
}

/// The first slot boundary after `now` at which the presence changes.
pub fn next_change(slots: &[Slot], now: i64, display_oof: bool) -> Option<i64> {
    let state = presence_at(slots, now, display_oof);
    let mut boundaries: Vec<i64> = slots
        .iter()
        .flat_map(|s| [s.start, s.end])
        .filter(|&t| t > now)
        .collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    boundaries
        .into_iter()
        .find(|&t| presence_at(slots, t, display_oof) != state)
}

/// When the state at `now` began: the latest slot boundary at or before
/// `now` with a different state just before it. `None` when the slots do
/// not say (the state holds from before the first boundary).
pub fn began(slots: &[Slot], now: i64, display_oof: bool) -> Option<i64> {
    let state = presence_at(slots, now, display_oof);
    let mut boundaries: Vec<i64> = slots
        .iter()
        .flat_map(|s| [s.start, s.end])
        .filter(|&t| t <= now)
        .collect();
    boundaries.sort_unstable_by(|a, b| b.cmp(a));
    boundaries.dedup();
    // Every boundary that kept the state is passed over: it began earlier.
    boundaries
        .into_iter()
        .find(|&t| presence_at(slots, t - 1, display_oof) != state)
}

/// A user's stable offset within *Calendar Spread* (seconds, 0-59): a hash
/// of the user ID (FNV-1a, the same on every node and every run), so that
/// thousands of users changing at one minute are published spread over it.
pub fn offset_seconds(user_id: &str, spread: u32) -> u32 {
    if spread == 0 {
        return 0;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in user_id.to_ascii_lowercase().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % spread
}

/// When a transition at `at` is published: the top of the minute in which
/// it happens plus the user's offset, never before the transition itself
/// (then the next minute's).
pub fn publish_at(at: i64, offset: u32) -> i64 {
    let minute = at.div_euclid(60) * 60;
    let candidate = minute + i64::from(offset);
    if candidate < at {
        candidate + 60
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_began_at_the_boundary_that_changed_it() {
        let busy = |start, end| Slot {
            start,
            end,
            busy: BusyType::Busy,
        };
        // Two meetings back to back: one state from 100 to 300.
        let slots = [busy(100, 200), busy(200, 300)];
        assert_eq!(began(&slots, 250, false), Some(100));
        assert_eq!(began(&slots, 100, false), Some(100));
        assert_eq!(began(&slots, 320, false), Some(300));
        // Available from before anything the slots say.
        assert_eq!(began(&slots, 50, false), None);
        // Tentative keeps Available: the state did not change at 400.
        let mixed = [
            busy(100, 200),
            Slot {
                start: 400,
                end: 500,
                busy: BusyType::Tentative,
            },
        ];
        assert_eq!(began(&mixed, 450, false), Some(200));
    }

    const H: i64 = 3600;

    fn slot(start: i64, end: i64, busy: BusyType) -> Slot {
        Slot { start, end, busy }
    }

    #[test]
    fn each_status_maps_as_en3_says() {
        use BusyType::*;
        use CalendarPresence::*;
        for (busy, hidden, shown) in [
            (Busy, InAMeeting, InAMeeting),
            (OutOfOffice, Available, Away),
            (Free, Available, Available),
            (Tentative, Available, Available),
            (WorkingElsewhere, Available, Available),
            (NoData, Unknown, Unknown),
        ] {
            assert_eq!(map(busy, false), hidden, "{busy:?}");
            assert_eq!(map(busy, true), shown, "{busy:?}");
        }
    }

    #[test]
    fn both_spellings_parse() {
        for (ews, graph, busy) in [
            ("Busy", "busy", BusyType::Busy),
            ("OOF", "oof", BusyType::OutOfOffice),
            ("Tentative", "tentative", BusyType::Tentative),
            (
                "WorkingElsewhere",
                "workingElsewhere",
                BusyType::WorkingElsewhere,
            ),
            ("Free", "free", BusyType::Free),
            ("NoData", "unknown", BusyType::NoData),
        ] {
            assert_eq!(BusyType::parse(ews), Some(busy));
            assert_eq!(BusyType::parse(graph), Some(busy));
        }
        assert_eq!(BusyType::parse("Maybe"), None);
        for p in ["available", "in_a_meeting", "away", "unknown"] {
            assert_eq!(CalendarPresence::parse(p).map(|p| p.as_str()), Some(p));
        }
    }

    #[test]
    fn overlaps_show_displayed_oof_over_busy_over_the_rest() {
        let slots = [
            slot(9 * H, 11 * H, BusyType::Tentative),
            slot(10 * H, 12 * H, BusyType::Busy),
            slot(10 * H + 1800, 11 * H, BusyType::OutOfOffice),
        ];
        assert_eq!(
            presence_at(&slots, 9 * H, true),
            CalendarPresence::Available
        );
        assert_eq!(
            presence_at(&slots, 10 * H, true),
            CalendarPresence::InAMeeting
        );
        assert_eq!(
            presence_at(&slots, 10 * H + 1800, true),
            CalendarPresence::Away
        );
        // OOF not displayed: treated as free, so Busy shows.
        assert_eq!(
            presence_at(&slots, 10 * H + 1800, false),
            CalendarPresence::InAMeeting
        );
        // Nothing covers 13:00: available; the end is exclusive.
        assert_eq!(
            presence_at(&slots, 12 * H, true),
            CalendarPresence::Available
        );
    }

    #[test]
    fn the_current_state_knows_when_it_ends() {
        let slots = [
            slot(10 * H, 11 * H, BusyType::Busy),
            // Back to back: still in a meeting at 11:00.
            slot(11 * H, 12 * H, BusyType::Busy),
            slot(14 * H, 15 * H, BusyType::OutOfOffice),
        ];
        assert_eq!(
            current(&slots, 9 * H, true),
            (CalendarPresence::Available, Some(10 * H))
        );
        assert_eq!(
            current(&slots, 10 * H, true),
            (CalendarPresence::InAMeeting, Some(12 * H))
        );
        // Hidden OOF is no change at all.
        assert_eq!(
            current(&slots, 12 * H, false),
            (CalendarPresence::Available, None)
        );
        assert_eq!(
            current(&slots, 12 * H, true),
            (CalendarPresence::Available, Some(14 * H))
        );
    }

    #[test]
    fn offsets_are_stable_and_within_the_spread() {
        assert_eq!(offset_seconds("alice", 0), 0);
        let a = offset_seconds("alice", 50);
        assert_eq!(
            a,
            offset_seconds("ALICE", 50),
            "user IDs are case-insensitive"
        );
        assert!(a < 50);
        // Spread over the range for many users.
        let mut seen = [false; 59];
        for i in 0..5000 {
            seen[offset_seconds(&format!("user{i:05}"), 59) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn publication_is_at_the_minute_plus_offset_never_before() {
        // 10:00:00 with offset 17 -> 10:00:17.
        assert_eq!(publish_at(10 * H, 17), 10 * H + 17);
        // 10:00:30 with offset 17: 10:00:17 would be early -> 10:01:17.
        assert_eq!(publish_at(10 * H + 30, 17), 10 * H + 60 + 17);
        // 10:00:17 exactly: on time.
        assert_eq!(publish_at(10 * H + 17, 17), 10 * H + 17);
    }
}
