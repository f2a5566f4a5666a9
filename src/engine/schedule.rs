//! The engine's scheduler (EN-3): every watched user's calendar slice in
//! one sorted queue, not a task per user. Pure and clock-driven: the caller
//! says what time it is; the scheduler says which users' presence to
//! publish, and when to ask again.
//!
//! A transition at a calendar boundary `t` is published at the top of `t`'s
//! minute plus the user's stable offset within *Calendar Spread*, never
//! before (`domain::presence::publish_at`): boundaries come in crowds (a
//! whole company's meetings start at 10:00). What a read teaches late (the
//! first read after a start, a notification in mid-minute that changes the
//! current state or its end) is published at once (EN-3): only one user's
//! answer arrives at a time, and holding it would show a stale state for up
//! to a minute.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::domain::presence::{self, CalendarPresence, Slot};

/// A publication the scheduler asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub user: String,
    pub presence: CalendarPresence,
    /// When the state began (the transition's instant).
    pub since: i64,
    /// When it ends, if the calendar says.
    pub until: Option<i64>,
    /// When it was due to be published (the publication lag is measured
    /// from here).
    pub due_at: i64,
}

struct Watch {
    slots: Vec<Slot>,
    offset: u32,
    /// What was last published (state and until when), if anything: a
    /// change of either is published, so a meeting extended or cut short
    /// shows its new end.
    published: Option<(CalendarPresence, Option<i64>)>,
    /// Bumped at every change of the calendar, so queue entries made for
    /// an older calendar are skipped when they come up.
    generation: u64,
}

/// Entries: (publication time, transition time, generation, user).
type Entry = Reverse<(i64, i64, u64, String)>;

/// When a state that differs from what was published goes out.
#[derive(Clone, Copy)]
enum When {
    /// Learned late: as soon as the caller asks what is due.
    Now,
    /// The calendar already said so: at its boundary's minute plus the
    /// offset (or now, if that has passed).
    AtBoundary,
    /// A parameter changed for everyone: at the next minute plus the
    /// offset, spread like a boundary.
    NextMinute,
}

pub struct Schedule {
    display_oof: bool,
    users: HashMap<String, Watch>,
    /// What the store shows for users not read yet (an engine restart), so
    /// an unchanged state is not published again.
    seeded: HashMap<String, (CalendarPresence, Option<i64>)>,
    queue: BinaryHeap<Entry>,
}

impl Schedule {
    /// `display_oof`: the *Calendar Out of Office Information* parameter.
    pub fn new(display_oof: bool) -> Schedule {
        Schedule {
            display_oof,
            users: HashMap::new(),
            seeded: HashMap::new(),
            queue: BinaryHeap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The parameter changed (it applies incrementally): every user's
    /// state is judged again at the next minute plus their offset.
    pub fn set_display_oof(&mut self, display_oof: bool, now: i64) {
        if self.display_oof == display_oof {
            return;
        }
        self.display_oof = display_oof;
        let users: Vec<String> = self.users.keys().cloned().collect();
        for user in users {
            self.reschedule(&user, now, When::NextMinute);
        }
    }

    /// A user's calendar as just read (or first read). A current state or
    /// end that the calendar known before did not foretell (or any, on the
    /// first read) is published at once when it differs from what was
    /// published; one it foretold keeps its boundary's minute plus the
    /// offset; later transitions in their turn.
    pub fn set_calendar(&mut self, user: &str, slots: Vec<Slot>, offset: u32, now: i64) {
        let display_oof = self.display_oof;
        let foretold = self
            .users
            .get(user)
            .map(|watch| presence::current(&watch.slots, now, display_oof));
        let seeded = self.seeded.remove(user);
        let watch = self.users.entry(user.to_owned()).or_insert(Watch {
            slots: Vec::new(),
            offset,
            published: seeded,
            generation: 0,
        });
        watch.slots = slots;
        watch.offset = offset;
        let when = if foretold == Some(presence::current(&watch.slots, now, display_oof)) {
            When::AtBoundary
        } else {
            When::Now
        };
        self.reschedule(user, now, when);
    }

    /// What is already published for `user` (state, until when), before
    /// their calendar is first read: the first read then publishes only
    /// what differs.
    pub fn seed(&mut self, user: &str, presence: CalendarPresence, until: Option<i64>) {
        if !self.users.contains_key(user) {
            self.seeded.insert(user.to_owned(), (presence, until));
        }
    }

    /// The user is no longer watched (calendar switched off, moved to
    /// another node); their queue entries are dropped when they come up.
    pub fn remove(&mut self, user: &str) {
        self.users.remove(user);
        self.seeded.remove(user);
    }

    fn reschedule(&mut self, user: &str, now: i64, when: When) {
        let display_oof = self.display_oof;
        let Some(watch) = self.users.get_mut(user) else {
            return;
        };
        watch.generation += 1;
        let state = presence::current(&watch.slots, now, display_oof);
        let entry = if watch.published != Some(state) {
            let at = match when {
                When::Now => now,
                When::AtBoundary => {
                    // Or at once, when a re-read comes after that time
                    // and before the caller asked what is due.
                    let boundary = presence::began(&watch.slots, now, display_oof).unwrap_or(now);
                    presence::publish_at(boundary, watch.offset).max(now)
                }
                When::NextMinute => presence::publish_at(now, watch.offset),
            };
            Some((at, now))
        } else {
            presence::next_change(&watch.slots, now, display_oof)
                .map(|at| (presence::publish_at(at, watch.offset), at))
        };
        if let Some((publish, transition)) = entry {
            self.queue.push(Reverse((
                publish,
                transition,
                watch.generation,
                user.to_owned(),
            )));
        }
    }

    /// When to call [`Schedule::due`] next, if anything is queued.
    pub fn next_wake(&mut self) -> Option<i64> {
        // Stale entries at the head would wake the caller for nothing.
        while let Some(Reverse((_, _, generation, user))) = self.queue.peek() {
            match self.users.get(user) {
                Some(watch) if watch.generation == *generation => break,
                _ => {
                    self.queue.pop();
                }
            }
        }
        self.queue.peek().map(|Reverse((at, ..))| *at)
    }

    /// The publications due at `now`, each user's next one queued.
    pub fn due(&mut self, now: i64) -> Vec<Due> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _, _, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((due_at, transition, generation, user))) = self.queue.pop() else {
                break;
            };
            let display_oof = self.display_oof;
            let Some(watch) = self.users.get_mut(&user) else {
                continue;
            };
            if watch.generation != generation {
                continue;
            }
            let (state, until) = presence::current(&watch.slots, transition, display_oof);
            if watch.published != Some((state, until)) {
                watch.published = Some((state, until));
                // A state first seen late (a first read, a calendar changed
                // under way) began when the calendar says, not when seen.
                let since =
                    presence::began(&watch.slots, transition, display_oof).unwrap_or(transition);
                out.push(Due {
                    user: user.clone(),
                    presence: state,
                    since,
                    until,
                    due_at,
                });
            }
            if let Some(next) = until {
                watch.generation += 1;
                self.queue.push(Reverse((
                    presence::publish_at(next, watch.offset),
                    next,
                    watch.generation,
                    user,
                )));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::presence::BusyType;

    const H: i64 = 3600;
    const DAY: i64 = 86_400 * 20_000;

    fn meeting(start: i64, end: i64) -> Slot {
        Slot {
            start,
            end,
            busy: BusyType::Busy,
        }
    }

    #[test]
    fn a_meeting_is_published_at_its_minute_plus_the_offset_and_ends_likewise() {
        let mut s = Schedule::new(false);
        let now = DAY + 9 * H;
        s.set_calendar("alice", vec![meeting(DAY + 10 * H, DAY + 11 * H)], 17, now);
        // The first read publishes the current state at once.
        assert_eq!(s.next_wake(), Some(now));
        assert_eq!(
            s.due(now),
            vec![Due {
                user: "alice".into(),
                presence: CalendarPresence::Available,
                since: now,
                until: Some(DAY + 10 * H),
                due_at: now,
            }]
        );
        // Never early: nothing at 10:00:16, the meeting at 10:00:17.
        assert_eq!(s.next_wake(), Some(DAY + 10 * H + 17));
        assert_eq!(s.due(DAY + 10 * H + 16), vec![]);
        let due = s.due(DAY + 10 * H + 17);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].presence, CalendarPresence::InAMeeting);
        assert_eq!(due[0].since, DAY + 10 * H);
        assert_eq!(due[0].until, Some(DAY + 11 * H));
        let due = s.due(DAY + 11 * H + 17);
        assert_eq!(due[0].presence, CalendarPresence::Available);
        assert_eq!(due[0].until, None);
        assert_eq!(s.next_wake(), None);
    }

    #[test]
    fn a_meeting_extended_publishes_its_new_end_and_a_seeded_state_is_not_repeated() {
        let mut s = Schedule::new(false);
        let now = DAY + 10 * H + 600;
        // After an engine restart, the store already shows bob in the
        // meeting until 11:00: reading the same calendar publishes nothing.
        s.seed("bob", CalendarPresence::InAMeeting, Some(DAY + 11 * H));
        s.set_calendar("bob", vec![meeting(DAY + 10 * H, DAY + 11 * H)], 0, now);
        assert_eq!(s.due(now + 60), vec![]);
        // The meeting is extended to 12:00: same state, new end, published.
        s.set_calendar(
            "bob",
            vec![meeting(DAY + 10 * H, DAY + 12 * H)],
            0,
            now + 60,
        );
        let due = s.due(now + 120);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].until, Some(DAY + 12 * H));
        assert_eq!(due[0].since, DAY + 10 * H);
        // Nothing at 11:00; available at 12:00.
        assert_eq!(s.due(DAY + 11 * H + 30), vec![]);
        assert_eq!(s.due(DAY + 12 * H)[0].presence, CalendarPresence::Available);
    }

    #[test]
    fn a_changed_calendar_replaces_what_was_queued() {
        let mut s = Schedule::new(false);
        let now = DAY + 9 * H;
        s.set_calendar("bob", vec![meeting(DAY + 10 * H, DAY + 11 * H)], 0, now);
        assert_eq!(s.due(now).len(), 1);
        // The meeting is cancelled: available now lasts beyond what the
        // calendar says, which is published (until: none); nothing happens
        // at 10:00.
        s.set_calendar("bob", vec![], 0, now + 60);
        let due = s.due(now + 60);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].presence, due[0].until),
            (CalendarPresence::Available, None)
        );
        assert_eq!(s.next_wake(), None);
        assert_eq!(s.due(DAY + 12 * H), vec![]);
        // A meeting that already started is published at once, not at the
        // next minute plus the offset.
        s.set_calendar(
            "bob",
            vec![meeting(DAY + 11 * H, DAY + 13 * H)],
            5,
            DAY + 12 * H + 30,
        );
        let due = s.due(DAY + 12 * H + 30);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].presence, CalendarPresence::InAMeeting);
        // A user no longer watched is forgotten.
        s.remove("bob");
        assert_eq!(s.next_wake(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn what_a_read_teaches_late_is_published_at_once_and_boundaries_keep_their_minute_plus_offset()
    {
        let mut s = Schedule::new(false);
        let offset = 40;
        let at = |hour: i64, minute: i64, second: i64| DAY + hour * H + minute * 60 + second;
        // The first read after a start, in mid-minute: published at once
        // (not at 09:00:40, nor 09:01:40), since what the calendar says.
        let calendar = vec![meeting(at(10, 0, 0), at(11, 0, 0))];
        s.set_calendar("dave", calendar.clone(), offset, at(9, 0, 30));
        assert_eq!(s.next_wake(), Some(at(9, 0, 30)));
        let due = s.due(at(9, 0, 30));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].presence, CalendarPresence::Available);
        // A poll at 10:00:05 finds the meeting the calendar foretold: it
        // keeps 10:00 plus the offset, never earlier.
        s.set_calendar("dave", calendar, offset, at(10, 0, 5));
        assert_eq!(s.next_wake(), Some(at(10, 0, 40)));
        assert_eq!(s.due(at(10, 0, 39)), vec![]);
        let due = s.due(at(10, 0, 40));
        assert_eq!(
            (due[0].presence, due[0].since, due[0].until),
            (
                CalendarPresence::InAMeeting,
                at(10, 0, 0),
                Some(at(11, 0, 0))
            )
        );
        // A notification at 10:20:10 cuts the meeting short to 10:25: the
        // new end is published at once.
        let cut = vec![meeting(at(10, 0, 0), at(10, 25, 0))];
        s.set_calendar("dave", cut.clone(), offset, at(10, 20, 10));
        let due = s.due(at(10, 20, 10));
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].presence, due[0].since, due[0].until),
            (
                CalendarPresence::InAMeeting,
                at(10, 0, 0),
                Some(at(10, 25, 0))
            )
        );
        // The end itself is a boundary: 10:25 plus the offset.
        assert_eq!(s.next_wake(), Some(at(10, 25, 40)));
        assert_eq!(s.due(at(10, 25, 39)), vec![]);
        assert_eq!(
            s.due(at(10, 25, 40))[0].presence,
            CalendarPresence::Available
        );
        // A meeting booked for 11:00 gives the current state an end: that
        // is published at once; the meeting itself at 11:00 plus the offset.
        let mut more = cut;
        more.push(meeting(at(11, 0, 0), at(11, 30, 0)));
        s.set_calendar("dave", more.clone(), offset, at(10, 30, 0));
        let due = s.due(at(10, 30, 0));
        assert_eq!(
            (due[0].presence, due[0].until),
            (CalendarPresence::Available, Some(at(11, 0, 0)))
        );
        assert_eq!(s.next_wake(), Some(at(11, 0, 40)));
        // A re-read after a boundary's time but before anyone asked what
        // was due keeps it due then, not a minute later.
        s.set_calendar("dave", more, offset, at(11, 0, 50));
        assert_eq!(s.next_wake(), Some(at(11, 0, 50)));
        assert_eq!(
            s.due(at(11, 0, 50))[0].presence,
            CalendarPresence::InAMeeting
        );
    }

    #[test]
    fn the_out_of_office_parameter_applies_incrementally() {
        let mut s = Schedule::new(false);
        let now = DAY + 9 * H;
        let oof = Slot {
            start: DAY,
            end: DAY + 86_400,
            busy: BusyType::OutOfOffice,
        };
        s.set_calendar("carol", vec![oof], 0, now);
        assert_eq!(s.due(now)[0].presence, CalendarPresence::Available);
        s.set_display_oof(true, now + 120);
        let due = s.due(now + 180);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].presence, CalendarPresence::Away);
    }

    #[test]
    fn thousands_of_users_share_one_queue() {
        let mut s = Schedule::new(false);
        let now = DAY + 9 * H;
        for i in 0..10_000 {
            let user = format!("user{i:05}");
            let offset = presence::offset_seconds(&user, 50);
            s.set_calendar(
                &user,
                vec![meeting(DAY + 10 * H, DAY + 10 * H + 1800)],
                offset,
                now,
            );
        }
        assert_eq!(s.due(now + 60).len(), 10_000);
        // At 10:00 the meetings start, spread over 50 seconds.
        let mut published = 0;
        let mut at = DAY + 10 * H;
        while let Some(wake) = s.next_wake().filter(|w| *w < DAY + 10 * H + 60) {
            assert!(wake >= at);
            at = wake;
            published += s.due(wake).len();
        }
        assert_eq!(published, 10_000);
        assert!(at < DAY + 10 * H + 50, "spread within Calendar Spread");
    }
}
