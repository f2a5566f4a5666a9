//! The engine's calendar work over EWS (EN-2 to EN-5): which users it
//! reads and subscribes, through which gateway, when, bounded per gateway
//! (EN-4); and what the scheduler says to publish. The requests themselves
//! are `ews`'s.
//!
//! Two clocks meet here on purpose. Calendar time (what to read, when a
//! meeting starts, when to publish) is the injected clock, so tests move
//! through a day without waiting. Network time (Exchange Timeout, a
//! server's back-off, retry delays) is real time: it is about a server's
//! load now, whatever the calendar says.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::domain::presence::{self, BusyType, Slot};
use crate::error::AppResult;
use crate::exchange::availability::{self, MailboxAvailability};
use crate::store;
use crate::store::engine::{CalendarUser, Departure};
use crate::store::health::{GatewayHealth, Minute};
use crate::store::presence::Publication;

use super::ews::{Answer, DEFAULT_BACK_OFF, Endpoint, SubAnswer, read, subscribe};
use super::graph::GraphEndpoint;
use super::push::{self, Heard, Registry};
use super::schedule::Schedule;
use crate::exchange::graph::LifecycleEvent;
use tokio::sync::mpsc;

/// How often a user's calendar is read again when nothing tells the engine
/// it changed (calendar seconds). Push notifications, when they arrive,
/// make reads sooner; this keeps presence right when they do not.
pub const REFRESH_SECONDS: i64 = 300;
/// A read covers today and tomorrow (UTC days), so the state's end is known
/// however late in the day it is read.
const WINDOW_SECONDS: i64 = 2 * 86_400;
/// Consecutive failed requests after which a gateway is set aside and its
/// users move to a healthy one.
pub const FAILURES_TO_SET_ASIDE: u32 = 3;
/// How long a gateway set aside takes no new users before it is tried again.
pub const SET_ASIDE: Duration = Duration::from_secs(60);
/// While a gateway is set aside, at most one request to it this often.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Retry delays after a failed or refused (queue full) request: doubling
/// from the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_LAST: Duration = Duration::from_secs(60);
/// How often a subscribed user's calendar is read when no notification
/// asks: a guard against notifications lost while the subscription still
/// looks alive.
pub const SUBSCRIBED_REFRESH_SECONDS: i64 = 3600;
/// Notifications arriving within this are read in one request.
const BATCH_WINDOW: Duration = Duration::from_millis(300);
/// After Exchange refuses a subscription (rights, too many), how long the
/// user is only polled before asking again (calendar seconds).
const SUBSCRIBE_RETRY_SECONDS: i64 = 900;
/// Why users are `unknown` when the engine runs with no EWS or Microsoft
/// 365 gateway (WebDAV calendars are not read by this engine).
pub const NO_EWS_GATEWAY: &str = "the Presence Engine runs with no EWS or Microsoft 365 \
     Presence Gateway (after adding one, restart the engine in Control Center)";
/// Why users not read yet are `unknown` while every gateway is set aside.
pub const NO_GATEWAY_REACHABLE: &str = "no Microsoft Exchange gateway can be reached";
/// How often the passes over every user (what is due, what to subscribe,
/// which subscriptions went silent) run at most.
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// How often health and counts are written for other nodes to see.
const HEALTH_EVERY: Duration = Duration::from_secs(3);

/// A watched user's read state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Read when calendar time reaches `next` and real time `hold`.
    Idle { next: i64, hold: Option<Instant> },
    /// In a gateway's queue or request.
    Busy,
}

/// A watched user's push subscription (EN-2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Push {
    /// None (yet): made after the first read, when a call-back URL is set.
    Off,
    /// Asked for, with this call-back token.
    Pending { token: String },
    /// Held; `heard` is when a notification last came (calendar time),
    /// `watermark` the newest it carried (or the Subscribe's).
    Active {
        token: String,
        heard: i64,
        watermark: String,
    },
}

impl Push {
    fn token(&self) -> Option<&str> {
        match self {
            Push::Off => None,
            Push::Pending { token } | Push::Active { token, .. } => Some(token),
        }
    }
}

/// A push `Subscribe` (or a Microsoft 365 subscription's creation or
/// renewal) waiting for a thread.
struct SubJob {
    user: String,
    epoch: u64,
    token: String,
    mailbox: String,
    /// Microsoft 365: the subscription to renew (None: make one).
    renew: Option<String>,
}

/// A Microsoft 365 subscription held (GR-5).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GraphSub {
    id: String,
    /// When to renew it (calendar time); i64::MAX while a renewal runs.
    renew_at: i64,
}

struct Watched {
    mailbox: Option<String>,
    gateway: Option<usize>,
    reading: Reading,
    /// Bumped when the mailbox changes, so an answer for the old one is
    /// not taken for the new.
    epoch: u64,
    /// Why the state is unknown, for the End User page.
    reason: Option<String>,
    /// Read successfully at least once (a failure keeps what was read).
    read_once: bool,
    /// Consecutive failed attempts, for the retry delay.
    failures: u32,
    push: Push,
    /// When to try subscribing again after a refusal (calendar time).
    push_retry_at: i64,
    /// A change was notified while a read was under way: read again.
    reread: bool,
    /// Microsoft 365: the subscription behind `push`, once made.
    graph: Option<GraphSub>,
}

impl Watched {
    fn new(mailbox: Option<String>, now: i64) -> Watched {
        Watched {
            mailbox,
            gateway: None,
            reading: Reading::Idle {
                next: now,
                hold: None,
            },
            epoch: 0,
            reason: None,
            read_once: false,
            failures: 0,
            push: Push::Off,
            push_retry_at: now,
            reread: false,
            graph: None,
        }
    }
}

/// Where a gateway's requests go: an Exchange server over EWS, or
/// Microsoft 365 over Graph (GR-5: same scheduler, mapping, publication
/// and limits; only the requests differ).
#[derive(Clone)]
pub enum Source {
    Ews(Arc<Endpoint>),
    Graph(Arc<GraphEndpoint>),
}

impl Source {
    fn id(&self) -> i64 {
        match self {
            Source::Ews(e) => e.id,
            Source::Graph(e) => e.id,
        }
    }

    fn description(&self) -> &str {
        match self {
            Source::Ews(e) => &e.description,
            Source::Graph(e) => &e.description,
        }
    }

    /// Mailboxes per read: `GetUserAvailability` takes 100, `getSchedule`
    /// is documented for 20.
    fn batch(&self) -> usize {
        match self {
            Source::Ews(_) => availability::MAX_MAILBOXES,
            Source::Graph(_) => crate::exchange::graph::MAX_SCHEDULES,
        }
    }

    fn is_graph(&self) -> bool {
        matches!(self, Source::Graph(_))
    }
}

struct Gateway {
    endpoint: Source,
    in_flight: usize,
    /// Batches (user, epoch) waiting for a thread. With `subs`, at most
    /// Exchange Queue requests wait; reads go first.
    queue: VecDeque<Vec<(String, u64)>>,
    subs: VecDeque<SubJob>,
    throttled_until: Option<Instant>,
    failures: u32,
    set_aside_until: Option<Instant>,
    /// While set aside: when the next probe request may go.
    next_probe: Option<Instant>,
    users: usize,
    last_success: Option<i64>,
    last_error: Option<(i64, String)>,
    /// Requests started in the current minute and the last full one.
    requests: (i64, i64, i64),
}

impl Gateway {
    fn new(endpoint: Source) -> Gateway {
        Gateway {
            endpoint,
            in_flight: 0,
            queue: VecDeque::new(),
            subs: VecDeque::new(),
            throttled_until: None,
            failures: 0,
            set_aside_until: None,
            next_probe: None,
            users: 0,
            last_success: None,
            last_error: None,
            requests: (0, 0, 0),
        }
    }

    /// Whether another request may start now: a thread is free, the
    /// server has not asked to be left alone, and, while the gateway is set
    /// aside, no probe is out and the last was [`PROBE_EVERY`] ago (a
    /// failing server gets one request at a time, not a flood).
    fn may_start(&self, threads: usize, at: Instant) -> bool {
        if self.in_flight >= threads || self.throttled(at) {
            return false;
        }
        self.healthy(at) || (self.in_flight == 0 && self.next_probe.is_none_or(|next| next <= at))
    }

    fn started(&mut self, at: Instant) {
        self.in_flight += 1;
        if !self.healthy(at) {
            self.next_probe = Some(at + PROBE_EVERY);
        }
    }

    fn waiting(&self) -> usize {
        self.queue.len() + self.subs.len()
    }

    fn healthy(&self, at: Instant) -> bool {
        self.set_aside_until.is_none_or(|until| until <= at)
    }

    fn throttled(&self, at: Instant) -> bool {
        self.throttled_until.is_some_and(|until| until > at)
    }

    fn count_request(&mut self, now: i64) {
        let minute = now.div_euclid(60) * 60;
        let (current, count, last) = self.requests;
        self.requests = if current == minute {
            (minute, count + 1, last)
        } else if current + 60 == minute {
            (minute, 1, count)
        } else {
            (minute, 1, 0)
        };
    }

    fn per_minute(&self, now: i64) -> i64 {
        let minute = now.div_euclid(60) * 60;
        let (current, count, last) = self.requests;
        if current == minute {
            last.max(count)
        } else if current + 60 == minute {
            count
        } else {
            0
        }
    }
}

/// What a finished request was and how it went.
enum Outcome {
    Read {
        batch: Vec<(String, u64)>,
        answer: Answer,
    },
    Subscribe {
        user: String,
        epoch: u64,
        token: String,
        answer: SubAnswer,
    },
    /// A Microsoft 365 subscription made (`renewed` None) or renewed.
    GraphSubscribe {
        user: String,
        epoch: u64,
        token: String,
        renewed: Option<String>,
        answer: Result<crate::exchange::graph::Subscription, Option<String>>,
    },
}

/// A finished read.
struct ReadDone {
    batch: Vec<(String, u64)>,
    finished: Instant,
}

/// A finished request, back to the engine.
struct Done {
    gateway: usize,
    outcome: Outcome,
    /// When the request was started, for the answer-time histogram.
    started: Instant,
    finished: Instant,
}

/// The parameters the work runs with.
pub struct Limits {
    /// Exchange Threads: concurrent requests per gateway.
    pub threads: usize,
    /// Exchange Queue: requests waiting for a thread, per gateway.
    pub queue: usize,
    /// Calendar Spread, seconds (applies live).
    pub spread: u32,
    /// Calendar Out of Office Information (applies live).
    pub display_oof: bool,
    /// Where Exchange posts notifications, `http://<Notification
    /// Host>:<port>`; none: calendars are only polled.
    pub callback: Option<String>,
    /// EWS Status Frequency, minutes.
    pub status_minutes: u32,
    /// Microsoft 365 Notification URL: the public https base Graph posts
    /// to; none: Microsoft 365 calendars are only polled.
    pub graph_callback: Option<String>,
    /// Microsoft 365 Poll Interval, minutes (applies live): how often a
    /// Microsoft 365 user's calendar is read.
    pub poll_minutes: u32,
}

pub struct Calendars {
    node: String,
    gateways: Vec<Gateway>,
    users: HashMap<String, Watched>,
    schedule: Schedule,
    limits: Limits,
    next_gateway: usize,
    tasks: JoinSet<Done>,
    /// Rung by each finished request, so answers are handled at once.
    ready: Arc<Notify>,
    /// Counts per minute not yet written.
    minutes: Vec<Minute>,
    health_written: Option<Instant>,
    /// When the passes over every user last ran.
    scanned: Option<Instant>,
    /// Something Control Center should see soon happened (a first success,
    /// an error, a throttle): health is written at the next round.
    health_dirty: bool,
    /// Publications for the next round, before anything newer: departures
    /// (as `unknown`) and what the database could not take.
    leaving: Vec<Publication>,
    /// The call-back paths the listener answers for.
    registry: Arc<Registry>,
    /// Notifications the listener heard for subscriptions held.
    heard: mpsc::Receiver<Heard>,
    /// Microsoft 365 subscriptions to delete (gateway, id): their users
    /// left or switched calendar presence off.
    ending: Vec<(usize, String)>,
}

/// What to keep of a batch the database did not take, oldest first: all of
/// it, unless a long outage made it larger than a few publications per
/// user, when only each user's latest is kept (their presence stays right;
/// the log then misses the intermediate states).
fn unwritten(batch: Vec<Publication>, users: usize) -> Vec<Publication> {
    let limit = users.saturating_mul(8).max(10_000);
    if batch.len() <= limit {
        return batch;
    }
    let mut latest: HashMap<String, usize> = HashMap::with_capacity(users);
    for (i, p) in batch.iter().enumerate() {
        latest.insert(p.user_id.clone(), i);
    }
    batch
        .into_iter()
        .enumerate()
        .filter(|(i, p)| latest.get(&p.user_id) == Some(i))
        .map(|(_, p)| p)
        .collect()
}

impl Calendars {
    pub fn new(
        node: &str,
        endpoints: Vec<Source>,
        limits: Limits,
        ready: Arc<Notify>,
        registry: Arc<Registry>,
        heard: mpsc::Receiver<Heard>,
    ) -> Self {
        Calendars {
            node: node.to_owned(),
            gateways: endpoints.into_iter().map(Gateway::new).collect(),
            users: HashMap::new(),
            schedule: Schedule::new(limits.display_oof),
            limits,
            next_gateway: 0,
            tasks: JoinSet::new(),
            ready,
            minutes: Vec::new(),
            health_written: None,
            scanned: None,
            health_dirty: false,
            leaving: Vec::new(),
            registry,
            heard,
            ending: Vec::new(),
        }
    }

    /// What the store already shows for the node's users (an engine
    /// restart): their first read publishes only what differs.
    pub fn seed(&mut self, published: Vec<(String, presence::CalendarPresence, Option<i64>)>) {
        for (user, state, until) in published {
            self.schedule.seed(&user, state, until);
        }
    }

    /// The live parameters changed (EN-1: without a restart).
    pub fn set_live(
        &mut self,
        spread: u32,
        display_oof: bool,
        status_minutes: u32,
        poll_minutes: u32,
        now: i64,
    ) {
        self.limits.spread = spread;
        self.limits.poll_minutes = poll_minutes;
        // New subscriptions take it; held ones keep theirs until renewed.
        self.limits.status_minutes = status_minutes;
        self.limits.display_oof = display_oof;
        self.schedule.set_display_oof(display_oof, now);
    }

    /// The node's calendar users as the store has them now: new ones are
    /// read at once, a changed mailbox is read again, and those who left
    /// stop being read; `departures` says why they left.
    /// The users this node serves now; returns those who left and whether
    /// any joined.
    pub fn set_roster(&mut self, roster: Vec<CalendarUser>, now: i64) -> (Vec<String>, bool) {
        let mut seen: HashMap<String, Option<String>> = roster
            .into_iter()
            .map(|u| (u.user_id, u.mailbox.filter(|m| !m.trim().is_empty())))
            .collect();
        let mut left = Vec::new();
        for (user, watched) in self.users.iter_mut() {
            match seen.remove(user) {
                None => left.push(user.clone()),
                Some(mailbox) if mailbox != watched.mailbox => {
                    watched.mailbox = mailbox;
                    watched.epoch += 1;
                    // The subscription was on the old mailbox.
                    if let Some(token) = watched.push.token() {
                        self.registry.close(token);
                    }
                    if let (Some(sub), Some(g)) = (watched.graph.take(), watched.gateway) {
                        self.ending.push((g, sub.id));
                    }
                    watched.push = Push::Off;
                    watched.reading = Reading::Idle {
                        next: now,
                        hold: None,
                    };
                }
                Some(_) => {}
            }
        }
        for user in &left {
            let Some(watched) = self.users.remove(user) else {
                continue;
            };
            // Its next notification is answered Unsubscribe (Microsoft
            // 365's subscription is deleted).
            if let Some(token) = watched.push.token() {
                self.registry.close(token);
            }
            if let (Some(sub), Some(g)) = (watched.graph, watched.gateway) {
                self.ending.push((g, sub.id));
            }
            if let Some(g) = watched.gateway {
                self.gateways[g].users = self.gateways[g].users.saturating_sub(1);
            }
            self.schedule.remove(user);
        }
        let joined = !seen.is_empty();
        for (user, mailbox) in seen {
            self.users.insert(user, Watched::new(mailbox, now));
        }
        (left, joined)
    }

    /// Departed users whose presence must now read `unknown` (calendar
    /// switched off, no node); those moved to another node or deleted are
    /// another engine's or nobody's to publish.
    pub fn departed(&mut self, why: Vec<(String, Departure)>, now: i64) {
        for (user, departure) in why {
            let reason = match departure {
                Departure::CalendarOff => store::presence::CALENDAR_OFF,
                Departure::NoNode => store::presence::NO_NODE,
                Departure::OtherNode | Departure::Deleted => continue,
            };
            self.leaving.push(Publication {
                user_id: user,
                presence: presence::CalendarPresence::Unknown,
                since: now,
                until: None,
                gateway: None,
                reason: Some(reason.to_owned()),
            });
        }
    }

    /// Every watched user as `unknown` with `reason` (the engine stops:
    /// nothing keeps their presence true any more).
    pub fn all_unknown(&self, reason: &str, now: i64) -> Vec<Publication> {
        self.users
            .keys()
            .map(|user| Publication {
                user_id: user.clone(),
                presence: presence::CalendarPresence::Unknown,
                since: now,
                until: None,
                gateway: None,
                reason: Some(reason.to_owned()),
            })
            .collect()
    }

    /// One round: take finished answers, start due reads, publish what is
    /// due, and now and then write health. `now` is calendar time.
    pub async fn tick(&mut self, pool: &AnyPool, now: i64) -> AppResult<()> {
        let at = Instant::now();
        while let Some(done) = self.tasks.try_join_next() {
            match done {
                Ok(done) => self.finish(done, now),
                // A request task panicked or was aborted: its users are read
                // again at the next round.
                Err(e) => tracing::warn!(error = %e, "calendar read task ended abnormally"),
            }
        }
        self.hear(now, at);
        // The passes over every user run at most every SCAN_EVERY: a round
        // runs for each finished request, and at 45,000 users a pass per
        // answer would cost more than the answers.
        if self.scanned.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            self.scanned = Some(at);
            self.check_subscriptions(now);
            self.recover_lost(now);
            self.assign(at);
            self.enqueue(now, at);
            self.enqueue_subscriptions(now);
        }
        self.start_requests(now, at);
        self.end_subscriptions(now);
        self.publish(pool, now).await?;
        if self.health_dirty
            || self
                .health_written
                .is_none_or(|t| t.elapsed() >= HEALTH_EVERY)
        {
            self.health_written = Some(Instant::now());
            self.health_dirty = false;
            self.write_health(pool, now, at).await?;
        }
        Ok(())
    }

    /// Notifications heard since the last round: a status keeps the
    /// subscription alive; a change reads the calendar, batched with others
    /// that arrive within [`BATCH_WINDOW`].
    fn hear(&mut self, now: i64, at: Instant) {
        for _ in 0..push::QUEUE {
            let Ok(heard) = self.heard.try_recv() else {
                break;
            };
            let Some(watched) = self.users.get_mut(&heard.user) else {
                continue;
            };
            // A notification whose previous watermark is not the last one
            // heard means notifications were missed: read the calendar.
            let mut missed = false;
            match &mut watched.push {
                Push::Active {
                    token,
                    heard: last,
                    watermark,
                } if *token == heard.token => {
                    *last = now;
                    missed = heard
                        .previous_watermark
                        .as_ref()
                        .is_some_and(|previous| previous != watermark);
                    if let Some(newest) = heard.watermark {
                        *watermark = newest;
                    }
                }
                Push::Pending { token } if *token == heard.token => {}
                _ => continue,
            }
            match heard.lifecycle {
                // Graph dropped it: make it again, and read what may have
                // been missed meanwhile.
                Some(LifecycleEvent::SubscriptionRemoved) => {
                    self.registry.close(&heard.token);
                    watched.push = Push::Off;
                    watched.graph = None;
                    watched.push_retry_at = now;
                    missed = true;
                }
                Some(LifecycleEvent::Missed) => missed = true,
                // Renewing is how an app-only subscription is reauthorized.
                Some(LifecycleEvent::ReauthorizationRequired) => {
                    if let Some(sub) = watched.graph.as_mut()
                        && sub.renew_at != i64::MAX
                    {
                        sub.renew_at = now;
                    }
                }
                Some(LifecycleEvent::Other(_)) | None => {}
            }
            if !heard.changed && !missed {
                continue;
            }
            match watched.reading {
                Reading::Busy => watched.reread = true,
                Reading::Idle { .. } => {
                    watched.reading = Reading::Idle {
                        next: now,
                        hold: Some(at + BATCH_WINDOW),
                    }
                }
            }
        }
    }

    /// EN-2: a subscription silent for two status periods is presumed lost
    /// (Exchange restarted, dropped it): made again, and the calendar read.
    fn check_subscriptions(&mut self, now: i64) {
        let silence = 2 * 60 * i64::from(self.limits.status_minutes.max(1));
        let mut lost = 0usize;
        for watched in self.users.values_mut() {
            // Graph sends no status events: its subscriptions expire and
            // are renewed instead.
            if let Push::Active { token, heard, .. } = &watched.push
                && watched.graph.is_none()
                && now - *heard > silence
            {
                self.registry.close(token);
                watched.push = Push::Off;
                watched.push_retry_at = now;
                if let Reading::Idle { .. } = watched.reading {
                    watched.reading = Reading::Idle {
                        next: now,
                        hold: None,
                    };
                }
                lost += 1;
            }
        }
        if lost > 0 {
            tracing::info!(
                node = self.node,
                lost,
                "push subscriptions silent for two status periods: subscribing again"
            );
        }
    }

    /// Users read at least once without a subscription get one, through
    /// their gateway's queue after its reads.
    fn enqueue_subscriptions(&mut self, now: i64) {
        if self.limits.callback.is_none() && self.limits.graph_callback.is_none() {
            return;
        }
        for (user, watched) in self.users.iter_mut() {
            let (Some(g), Some(mailbox)) = (watched.gateway, watched.mailbox.clone()) else {
                continue;
            };
            let gateway = &mut self.gateways[g];
            let graph = gateway.endpoint.is_graph();
            // Microsoft 365 subscriptions are renewed before they expire.
            if let (Some(sub), Push::Active { token, .. }) = (watched.graph.as_mut(), &watched.push)
                && sub.renew_at <= now
            {
                if gateway.waiting() < self.limits.queue {
                    sub.renew_at = i64::MAX;
                    gateway.subs.push_back(SubJob {
                        user: user.clone(),
                        epoch: watched.epoch,
                        token: token.clone(),
                        mailbox,
                        renew: Some(sub.id.clone()),
                    });
                }
                continue;
            }
            if watched.push != Push::Off || !watched.read_once || watched.push_retry_at > now {
                continue;
            }
            let wanted = if graph {
                self.limits.graph_callback.is_some()
            } else {
                self.limits.callback.is_some()
            };
            if !wanted || gateway.waiting() >= self.limits.queue {
                continue;
            }
            let token = if graph {
                self.registry.open_graph(user)
            } else {
                self.registry.open(user)
            };
            watched.push = Push::Pending {
                token: token.clone(),
            };
            gateway.subs.push_back(SubJob {
                user: user.clone(),
                epoch: watched.epoch,
                token,
                mailbox,
                renew: None,
            });
        }
    }

    /// Deletes the Microsoft 365 subscriptions no longer wanted, each in
    /// its own task bounded by the endpoint's timeout (nothing waits on
    /// them: Graph ends a subscription anyway when it expires).
    fn end_subscriptions(&mut self, now: i64) {
        for (g, id) in std::mem::take(&mut self.ending) {
            let Some(Source::Graph(endpoint)) = self.gateways.get(g).map(|g| &g.endpoint) else {
                continue;
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                if let Err(e) = endpoint.unsubscribe(&id, now).await {
                    tracing::debug!(error = %e, "Microsoft 365 subscription not deleted");
                }
            });
        }
    }

    /// Deletes every Microsoft 365 subscription held (the engine stops),
    /// eight at a time, within 10 seconds in all.
    pub async fn end_graph_subscriptions(&mut self, now: i64) {
        use futures_util::StreamExt as _;
        let mut ending = std::mem::take(&mut self.ending);
        for watched in self.users.values_mut() {
            if let (Some(sub), Some(g)) = (watched.graph.take(), watched.gateway) {
                ending.push((g, sub.id));
            }
        }
        let deletes = ending
            .into_iter()
            .filter_map(|(g, id)| match self.gateways.get(g) {
                Some(Gateway {
                    endpoint: Source::Graph(endpoint),
                    ..
                }) => {
                    let endpoint = endpoint.clone();
                    Some(async move { endpoint.unsubscribe(&id, now).await })
                }
                _ => None,
            });
        let all = futures_util::stream::iter(deletes)
            .buffer_unordered(8)
            .for_each(|_| async {});
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            tracing::info!(
                node = self.node,
                "not every Microsoft 365 subscription was deleted within 10 s; Graph ends them \
                 when they expire"
            );
        }
    }

    /// Users marked busy whose request is no longer running (a task that
    /// ended abnormally) are read again, and subscriptions asked again.
    fn recover_lost(&mut self, now: i64) {
        if !self.tasks.is_empty() || self.gateways.iter().any(|g| g.waiting() > 0) {
            return;
        }
        for watched in self.users.values_mut() {
            if watched.reading == Reading::Busy {
                watched.reading = Reading::Idle {
                    next: now,
                    hold: None,
                };
            }
            if let Push::Pending { token } = &watched.push {
                self.registry.close(token);
                watched.push = Push::Off;
            }
        }
    }

    /// Users without a gateway (new, or their gateway was set aside) get
    /// the next healthy one in turn; they stay on it until it fails.
    fn assign(&mut self, at: Instant) {
        let healthy: Vec<usize> = (0..self.gateways.len())
            .filter(|&g| self.gateways[g].healthy(at))
            .collect();
        if healthy.is_empty() {
            return;
        }
        for watched in self.users.values_mut() {
            let keep = watched
                .gateway
                .is_some_and(|g| self.gateways[g].healthy(at) || watched.reading == Reading::Busy);
            if keep {
                continue;
            }
            if let Some(old) = watched.gateway {
                self.gateways[old].users = self.gateways[old].users.saturating_sub(1);
            }
            let g = healthy[self.next_gateway % healthy.len()];
            self.next_gateway = self.next_gateway.wrapping_add(1);
            watched.gateway = Some(g);
            self.gateways[g].users += 1;
        }
    }

    /// Due users into their gateway's queue, in batches of up to 100; when
    /// the queue is full they fail fast and retry after a delay.
    fn enqueue(&mut self, now: i64, at: Instant) {
        let mut due: Vec<Vec<(String, u64)>> = vec![Vec::new(); self.gateways.len()];
        let mut no_mailbox = Vec::new();
        let mut no_gateway = Vec::new();
        for (user, watched) in self.users.iter_mut() {
            let Reading::Idle { next, hold } = watched.reading else {
                continue;
            };
            if next > now || hold.is_some_and(|h| h > at) {
                continue;
            }
            if watched.mailbox.is_none() {
                no_mailbox.push(user.clone());
                watched.reading = Reading::Idle {
                    next: now + REFRESH_SECONDS,
                    hold: None,
                };
                continue;
            }
            match watched.gateway {
                Some(g) => due[g].push((user.clone(), watched.epoch)),
                None => {
                    no_gateway.push(user.clone());
                    watched.reading = Reading::Idle {
                        next: now,
                        hold: Some(at + RETRY_LAST),
                    };
                }
            }
        }
        for user in no_mailbox {
            self.unreadable(&user, "the user has no mailbox address".to_owned(), now);
        }
        let why = if self.gateways.is_empty() {
            NO_EWS_GATEWAY
        } else {
            NO_GATEWAY_REACHABLE
        };
        for user in no_gateway {
            if !self.users.get(&user).is_some_and(|w| w.read_once) {
                self.unreadable(&user, why.to_owned(), now);
            }
        }
        for (g, mut users) in due.into_iter().enumerate() {
            // A stable order, so the same users share batches read to read.
            users.sort_unstable();
            let size = self.gateways[g].endpoint.batch();
            for batch in users.chunks(size) {
                let gateway = &mut self.gateways[g];
                if gateway.waiting() >= self.limits.queue {
                    gateway.last_error = Some((
                        now,
                        format!(
                            "Exchange Queue full ({} requests waiting): reads retried later",
                            self.limits.queue
                        ),
                    ));
                    for (user, _) in batch {
                        if let Some(watched) = self.users.get_mut(user) {
                            watched.failures += 1;
                            watched.reading = Reading::Idle {
                                next: now,
                                hold: Some(at + retry_delay(watched.failures)),
                            };
                        }
                    }
                    continue;
                }
                for (user, _) in batch {
                    if let Some(watched) = self.users.get_mut(user) {
                        watched.reading = Reading::Busy;
                    }
                }
                gateway.queue.push_back(batch.to_vec());
            }
        }
    }

    /// Starts queued requests while threads are free and the gateway has
    /// not asked to be left alone.
    fn start_requests(&mut self, now: i64, at: Instant) {
        let (start, end) = window(now);
        for (g, gateway) in self.gateways.iter_mut().enumerate() {
            while gateway.may_start(self.limits.threads, at) {
                let Some(batch) = gateway.queue.pop_front() else {
                    break;
                };
                let mailboxes: Vec<String> = batch
                    .iter()
                    .map(|(user, _)| {
                        self.users
                            .get(user)
                            .and_then(|w| w.mailbox.clone())
                            .unwrap_or_else(|| user.clone())
                    })
                    .collect();
                gateway.started(at);
                gateway.count_request(now);
                crate::telemetry::request(&self.node, gateway.endpoint.description());
                count(&mut self.minutes, now, |m| m.requests += 1);
                let source = gateway.endpoint.clone();
                let ready = self.ready.clone();
                let keep = self.limits.threads;
                self.tasks.spawn(async move {
                    let answer = match source {
                        Source::Ews(e) => read(&e, &mailboxes, start, end, now, keep).await,
                        Source::Graph(e) => {
                            super::graph::read(&e, &mailboxes, start, end, now).await
                        }
                    };
                    ready.notify_one();
                    Done {
                        gateway: g,
                        outcome: Outcome::Read { batch, answer },
                        started: at,
                        finished: Instant::now(),
                    }
                });
            }
            if let Source::Graph(endpoint) = &gateway.endpoint {
                let endpoint = endpoint.clone();
                let Some(base) = self.limits.graph_callback.clone() else {
                    continue;
                };
                while gateway.may_start(self.limits.threads, at) {
                    let Some(job) = gateway.subs.pop_front() else {
                        break;
                    };
                    gateway.started(at);
                    gateway.count_request(now);
                    crate::telemetry::request(&self.node, gateway.endpoint.description());
                    count(&mut self.minutes, now, |m| m.requests += 1);
                    let endpoint = endpoint.clone();
                    let ready = self.ready.clone();
                    let base = base.clone();
                    self.tasks.spawn(async move {
                        let answer = match &job.renew {
                            Some(id) => endpoint.renew(id, now).await,
                            None => endpoint
                                .subscribe(&job.mailbox, &base, &job.token, now)
                                .await
                                .map_err(Some),
                        };
                        ready.notify_one();
                        Done {
                            gateway: g,
                            outcome: Outcome::GraphSubscribe {
                                user: job.user,
                                epoch: job.epoch,
                                token: job.token,
                                renewed: job.renew,
                                answer,
                            },
                            started: at,
                            finished: Instant::now(),
                        }
                    });
                }
                continue;
            }
            let Some(callback) = self.limits.callback.as_deref() else {
                continue;
            };
            while gateway.may_start(self.limits.threads, at) {
                let Source::Ews(endpoint) = &gateway.endpoint else {
                    break;
                };
                let endpoint = endpoint.clone();
                let Some(job) = gateway.subs.pop_front() else {
                    break;
                };
                gateway.started(at);
                gateway.count_request(now);
                crate::telemetry::request(&self.node, gateway.endpoint.description());
                count(&mut self.minutes, now, |m| m.requests += 1);
                let ready = self.ready.clone();
                let keep = self.limits.threads;
                let url = format!("{callback}{}{}", push::PATH_PREFIX, job.token);
                let minutes = self.limits.status_minutes;
                self.tasks.spawn(async move {
                    let answer = subscribe(&endpoint, &job.mailbox, &url, minutes, now, keep).await;
                    ready.notify_one();
                    Done {
                        gateway: g,
                        outcome: Outcome::Subscribe {
                            user: job.user,
                            epoch: job.epoch,
                            token: job.token,
                            answer,
                        },
                        started: at,
                        finished: Instant::now(),
                    }
                });
            }
        }
    }

    fn finish(&mut self, done: Done, now: i64) {
        let g = done.gateway;
        crate::telemetry::answered(
            &self.node,
            self.gateways[g].endpoint.description(),
            done.finished.saturating_duration_since(done.started),
        );
        self.gateways[g].in_flight = self.gateways[g].in_flight.saturating_sub(1);
        let (batch, answer) = match done.outcome {
            Outcome::Read { batch, answer } => (batch, answer),
            Outcome::Subscribe {
                user,
                epoch,
                token,
                answer,
            } => return self.subscribed(g, &user, epoch, &token, answer, now, done.finished),
            Outcome::GraphSubscribe {
                user,
                epoch,
                token,
                renewed,
                answer,
            } => return self.graph_subscribed(g, &user, epoch, &token, renewed, answer, now),
        };
        let done = ReadDone {
            batch,
            finished: done.finished,
        };
        match answer {
            Answer::Read(results) if results.len() == done.batch.len() => {
                let gateway = &mut self.gateways[g];
                gateway.failures = 0;
                self.health_dirty |= gateway.last_success.is_none();
                gateway.last_success = Some(now);
                for ((user, epoch), result) in done.batch.into_iter().zip(results) {
                    match result {
                        Err(e) if e.code == "ErrorServerBusy" => {
                            let back_off = e
                                .back_off_ms
                                .map_or(DEFAULT_BACK_OFF, Duration::from_millis);
                            self.throttle(g, done.finished + back_off, &e.code, now);
                            self.retry(&user, now, Some(done.finished + back_off), false);
                        }
                        result => self.read_one(&user, epoch, result, g, now),
                    }
                }
            }
            Answer::Read(results) => {
                let reason = format!(
                    "GetUserAvailability answered {} mailboxes for {} asked",
                    results.len(),
                    done.batch.len()
                );
                self.failed(g, done.batch, reason, now, done.finished);
            }
            Answer::Busy { back_off, text } => {
                let until = done.finished + back_off;
                self.throttle(g, until, &text, now);
                count(&mut self.minutes, now, |m| m.errors += 1);
                for (user, _) in done.batch {
                    self.retry(&user, now, Some(until), false);
                }
            }
            Answer::Failed(reason) => self.failed(g, done.batch, reason, now, done.finished),
        }
    }

    /// A `Subscribe` came back.
    #[allow(clippy::too_many_arguments)]
    fn subscribed(
        &mut self,
        g: usize,
        user: &str,
        epoch: u64,
        token: &str,
        answer: SubAnswer,
        now: i64,
        finished: Instant,
    ) {
        let current = self
            .users
            .get(user)
            .is_some_and(|w| w.epoch == epoch && w.push.token() == Some(token));
        if !current {
            // The user left, or their mailbox changed, meanwhile.
            self.registry.close(token);
            return;
        }
        let retry_refused = now + SUBSCRIBE_RETRY_SECONDS;
        let (push, retry_at) = match answer {
            SubAnswer::Made(made) => {
                self.registry.made(token, &made.id);
                let gateway = &mut self.gateways[g];
                self.health_dirty |= gateway.last_success.is_none();
                gateway.last_success = Some(now);
                gateway.failures = 0;
                (
                    Push::Active {
                        token: token.to_owned(),
                        heard: now,
                        watermark: made.watermark,
                    },
                    now,
                )
            }
            SubAnswer::Busy { back_off, text } => {
                self.throttle(g, finished + back_off, &text, now);
                count(&mut self.minutes, now, |m| m.errors += 1);
                (Push::Off, now)
            }
            SubAnswer::Refused(reason) => {
                let gateway = &mut self.gateways[g];
                crate::telemetry::error(&self.node, gateway.endpoint.description(), "refused");
                gateway.last_error = Some((now, format!("Subscribe for {user}: {reason}")));
                self.health_dirty = true;
                count(&mut self.minutes, now, |m| m.errors += 1);
                (Push::Off, retry_refused)
            }
            SubAnswer::Failed(reason) => {
                self.failed(g, Vec::new(), reason, now, finished);
                (Push::Off, retry_refused.min(now + 60))
            }
        };
        if push == Push::Off {
            self.registry.close(token);
        }
        if let Some(watched) = self.users.get_mut(user) {
            // Read once more now that changes are notified, so one made
            // between the first read and the subscription is not missed.
            if matches!(push, Push::Active { .. }) {
                match watched.reading {
                    Reading::Busy => watched.reread = true,
                    Reading::Idle { .. } => {
                        watched.reading = Reading::Idle {
                            next: now,
                            hold: None,
                        }
                    }
                }
            }
            watched.push = push;
            watched.push_retry_at = retry_at;
        }
    }

    /// A Microsoft 365 subscription was made or renewed, or not.
    #[allow(clippy::too_many_arguments)]
    fn graph_subscribed(
        &mut self,
        g: usize,
        user: &str,
        epoch: u64,
        token: &str,
        renewed: Option<String>,
        answer: Result<crate::exchange::graph::Subscription, Option<String>>,
        now: i64,
    ) {
        let current = self
            .users
            .get(user)
            .is_some_and(|w| w.epoch == epoch && w.push.token() == Some(token));
        if !current {
            // The user left or changed mailbox meanwhile: not wanted.
            self.registry.close(token);
            if let Ok(made) = &answer {
                self.ending.push((g, made.id.clone()));
            }
            return;
        }
        let Some(watched) = self.users.get_mut(user) else {
            return;
        };
        match answer {
            Ok(made) => {
                self.registry.made_graph(token, &made.id);
                watched.graph = Some(GraphSub {
                    renew_at: crate::exchange::graph::renew_at(now, made.expires),
                    id: made.id,
                });
                if renewed.is_none() {
                    watched.push = Push::Active {
                        token: token.to_owned(),
                        heard: now,
                        watermark: String::new(),
                    };
                    // Read once more now that changes are notified, so one
                    // made between the read and the subscription is seen.
                    match watched.reading {
                        Reading::Busy => watched.reread = true,
                        Reading::Idle { .. } => {
                            watched.reading = Reading::Idle {
                                next: now,
                                hold: None,
                            }
                        }
                    }
                }
                let gateway = &mut self.gateways[g];
                self.health_dirty |= gateway.last_success.is_none();
                gateway.last_success = Some(now);
            }
            Err(why) => {
                // Gone (404 on renewal) or refused: made again later; the
                // calendar is polled meanwhile.
                self.registry.close(token);
                watched.push = Push::Off;
                watched.graph = None;
                watched.push_retry_at = if why.is_some() {
                    now + SUBSCRIBE_RETRY_SECONDS
                } else {
                    now
                };
                if let Some(why) = why {
                    let gateway = &mut self.gateways[g];
                    crate::telemetry::error(&self.node, gateway.endpoint.description(), "refused");
                    gateway.last_error = Some((now, format!("Subscription for {user}: {why}")));
                    self.health_dirty = true;
                    count(&mut self.minutes, now, |m| m.errors += 1);
                }
            }
        }
    }

    fn throttle(&mut self, g: usize, until: Instant, text: &str, now: i64) {
        let gateway = &mut self.gateways[g];
        let description = gateway.endpoint.description();
        crate::telemetry::error(&self.node, description, "throttled");
        crate::telemetry::throttled(
            &self.node,
            description,
            until.saturating_duration_since(Instant::now()),
        );
        gateway.throttled_until = Some(gateway.throttled_until.map_or(until, |t| t.max(until)));
        gateway.last_error = Some((now, text.to_owned()));
        self.health_dirty = true;
    }

    fn failed(
        &mut self,
        g: usize,
        batch: Vec<(String, u64)>,
        reason: String,
        now: i64,
        at: Instant,
    ) {
        count(&mut self.minutes, now, |m| m.errors += 1);
        let gateway = &mut self.gateways[g];
        crate::telemetry::error(&self.node, gateway.endpoint.description(), "failed");
        gateway.failures += 1;
        gateway.last_error = Some((now, reason.clone()));
        self.health_dirty = true;
        let set_aside = gateway.failures >= FAILURES_TO_SET_ASIDE;
        if set_aside {
            tracing::warn!(
                node = self.node,
                gateway = gateway.endpoint.description(),
                reason,
                "gateway set aside after repeated failures; its users move"
            );
            gateway.set_aside_until = Some(at + SET_ASIDE);
            gateway.failures = 0;
        }
        for (user, _) in batch {
            let never_read = self.users.get(&user).is_some_and(|w| !w.read_once);
            if never_read {
                self.unreadable(&user, format!("not read yet: {reason}"), now);
            }
            self.retry(&user, now, None, true);
        }
        if set_aside {
            for watched in self.users.values_mut() {
                if watched.gateway == Some(g) && watched.reading != Reading::Busy {
                    // Read at once through the gateway `assign` picks next.
                    watched.reading = Reading::Idle {
                        next: now,
                        hold: None,
                    };
                }
            }
        }
    }

    /// The user is read again: after `hold`, or after the retry delay.
    fn retry(&mut self, user: &str, now: i64, hold: Option<Instant>, failed: bool) {
        if let Some(watched) = self.users.get_mut(user) {
            if failed {
                watched.failures += 1;
            }
            watched.reading = Reading::Idle {
                next: now,
                hold: Some(hold.unwrap_or_else(|| Instant::now() + retry_delay(watched.failures))),
            };
        }
    }

    fn read_one(
        &mut self,
        user: &str,
        epoch: u64,
        result: MailboxAvailability,
        g: usize,
        now: i64,
    ) {
        let Some(watched) = self.users.get_mut(user) else {
            return;
        };
        if watched.epoch != epoch {
            // The mailbox changed while this was read: read the new one.
            watched.reading = Reading::Idle {
                next: now,
                hold: None,
            };
            return;
        }
        // Notified users need reading only when told; the long refresh
        // guards against notifications lost without the subscription
        // looking lost.
        let refresh = if self.gateways[g].endpoint.is_graph() {
            i64::from(self.limits.poll_minutes.max(1)) * 60
        } else if matches!(watched.push, Push::Active { .. }) {
            SUBSCRIBED_REFRESH_SECONDS
        } else {
            REFRESH_SECONDS
        };
        watched.reading = Reading::Idle {
            next: if std::mem::take(&mut watched.reread) {
                now
            } else {
                now + refresh
            },
            hold: None,
        };
        watched.failures = 0;
        watched.gateway = Some(g);
        match result {
            Ok(slots) => {
                watched.reason = None;
                watched.read_once = true;
                let offset = presence::offset_seconds(user, self.limits.spread);
                self.schedule.set_calendar(user, slots, offset, now);
            }
            Err(e) => {
                let reason = if e.message.trim().is_empty() {
                    e.code
                } else {
                    format!("{}: {}", e.code, e.message.trim())
                };
                self.unreadable(user, reason, now);
            }
        }
    }

    /// The user's calendar cannot be read: `unknown` with `reason`, at the
    /// minute plus their offset like any change.
    fn unreadable(&mut self, user: &str, reason: String, now: i64) {
        let Some(watched) = self.users.get_mut(user) else {
            return;
        };
        watched.reason = Some(reason);
        let (start, end) = window(now);
        let offset = presence::offset_seconds(user, self.limits.spread);
        self.schedule.set_calendar(
            user,
            vec![Slot {
                start,
                end,
                busy: BusyType::NoData,
            }],
            offset,
            now,
        );
    }

    async fn publish(&mut self, pool: &AnyPool, now: i64) -> AppResult<()> {
        let mut batch = std::mem::take(&mut self.leaving);
        let mut lags = Vec::new();
        for due in self.schedule.due(now) {
            lags.push(now - due.due_at);
            let watched = self.users.get(&due.user);
            let unknown = due.presence == presence::CalendarPresence::Unknown;
            batch.push(Publication {
                gateway: if unknown {
                    None
                } else {
                    watched
                        .and_then(|w| w.gateway)
                        .map(|g| self.gateways[g].endpoint.description().to_owned())
                },
                reason: if unknown {
                    watched.and_then(|w| w.reason.clone())
                } else {
                    None
                },
                user_id: due.user,
                presence: due.presence,
                // Unknown began when it was found out, not at the window's
                // start its stand-in slot begins with.
                since: if unknown { now } else { due.since },
                until: if unknown { None } else { due.until },
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        let written = match store::presence::publish_as(pool, &self.node, &batch, now).await {
            Ok(written) => written,
            Err(e) => {
                // The database did not take them (restarting, unreachable):
                // they are written first at the next round, so no
                // transition is lost (CL-5).
                self.leaving = unwritten(batch, self.users.len());
                return Err(e);
            }
        };
        let n = i64::try_from(written.len()).unwrap_or(i64::MAX);
        count(&mut self.minutes, now, |m| m.transitions += n);
        crate::telemetry::transitions(&self.node, written.len() as u64);
        for lag in lags {
            crate::telemetry::publication_lag(&self.node, lag);
        }
        Ok(())
    }

    async fn write_health(&mut self, pool: &AnyPool, now: i64, at: Instant) -> AppResult<()> {
        let mut subscriptions = vec![0i64; self.gateways.len()];
        for watched in self.users.values() {
            if let (Push::Active { .. }, Some(g)) = (&watched.push, watched.gateway) {
                subscriptions[g] += 1;
            }
        }
        for (g, held) in self.gateways.iter().zip(&subscriptions) {
            crate::telemetry::subscriptions(&self.node, g.endpoint.description(), *held);
        }
        let rows: Vec<GatewayHealth> = self
            .gateways
            .iter()
            .zip(subscriptions)
            .map(|(g, subscriptions)| GatewayHealth {
                subscriptions,
                node: self.node.clone(),
                gateway_id: g.endpoint.id(),
                description: g.endpoint.description().to_owned(),
                users: i64::try_from(g.users).unwrap_or(i64::MAX),
                healthy: g.healthy(at),
                last_success: g.last_success,
                last_error_at: g.last_error.as_ref().map(|(t, _)| *t),
                last_error: g.last_error.as_ref().map(|(_, e)| e.clone()),
                throttled_until: g
                    .throttled_until
                    .filter(|&t| t > at)
                    .map(|t| now + i64::try_from((t - at).as_secs()).unwrap_or(0) + 1),
                requests_per_minute: g.per_minute(now),
                updated_at: now,
            })
            .collect();
        let minutes = std::mem::take(&mut self.minutes);
        store::health::write(pool, &self.node, &rows, &minutes, now).await
    }
}

/// The window a read covers: from the start of `now`'s UTC day, two days.
pub fn window(now: i64) -> (i64, i64) {
    let start = now.div_euclid(86_400) * 86_400;
    (start, start + WINDOW_SECONDS)
}

fn retry_delay(failures: u32) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(8));
    doubled.min(RETRY_LAST)
}

fn count(minutes: &mut Vec<Minute>, now: i64, add: impl FnOnce(&mut Minute)) {
    let minute = now.div_euclid(60) * 60;
    if minutes.last().is_none_or(|m| m.minute != minute) {
        minutes.push(Minute {
            minute,
            ..Minute::default()
        });
    }
    if let Some(last) = minutes.last_mut() {
        add(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gateway::ServerLocation;
    use crate::domain::params::ExchangeAuth;
    use crate::exchange::client::Credentials;

    fn publication(user: &str, since: i64) -> Publication {
        Publication {
            user_id: user.to_owned(),
            presence: presence::CalendarPresence::InAMeeting,
            since,
            until: Some(since + 1800),
            gateway: Some("g".to_owned()),
            reason: None,
        }
    }

    /// What the database did not take (restarting, CL-5) is written at the
    /// next round, oldest first, and once.
    #[tokio::test]
    async fn publications_the_database_refused_are_written_at_the_next_round() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = store::open(&dir.path().join("t.db")).await.expect("open");
        for user in ["alice", "bob"] {
            sqlx::query(
                "INSERT INTO users (user_id, role, first_name, last_name, password_hash, \
                 created_at, updated_at) VALUES ($1, 'end_user', 'A', 'B', 'x', 0, 0)",
            )
            .bind(user)
            .execute(&pool)
            .await
            .expect("user");
        }
        let mut calendars = Calendars::new(
            "n",
            Vec::new(),
            Limits {
                threads: 1,
                queue: 1,
                spread: 50,
                display_oof: true,
                callback: None,
                status_minutes: 1,
                graph_callback: None,
                poll_minutes: 1,
            },
            Arc::new(Notify::new()),
            Arc::new(Registry::default()),
            mpsc::channel(1).1,
        );
        let away = store::open(&dir.path().join("away.db"))
            .await
            .expect("open");
        away.close().await;
        calendars.leaving = vec![publication("alice", 60), publication("bob", 120)];
        assert!(calendars.publish(&away, 180).await.is_err());
        calendars.leaving.push(publication("alice", 240));
        calendars.publish(&pool, 300).await.expect("written");
        assert!(calendars.leaving.is_empty());
        let log: Vec<(String, i64)> =
            sqlx::query_as("SELECT user_id, since FROM presence_events ORDER BY seq")
                .fetch_all(&pool)
                .await
                .expect("log");
        assert_eq!(
            log,
            [
                ("alice".to_owned(), 60),
                ("bob".to_owned(), 120),
                ("alice".to_owned(), 240)
            ]
        );
    }

    #[test]
    fn a_long_outage_keeps_each_users_latest() {
        let short: Vec<Publication> = (0..5).map(|i| publication("alice", i)).collect();
        assert_eq!(unwritten(short, 1).len(), 5);
        let mut long: Vec<Publication> = (0..12_000).map(|i| publication("alice", i)).collect();
        long.push(publication("bob", 7));
        let kept = unwritten(long, 2);
        let kept: Vec<(&str, i64)> = kept.iter().map(|p| (p.user_id.as_str(), p.since)).collect();
        assert_eq!(kept, [("alice", 11_999), ("bob", 7)]);
    }

    #[test]
    fn the_window_is_today_and_tomorrow_in_utc() {
        let noon = 20_000 * 86_400 + 12 * 3600;
        assert_eq!(window(noon), (20_000 * 86_400, 20_002 * 86_400));
        assert_eq!(window(20_000 * 86_400), (20_000 * 86_400, 20_002 * 86_400));
    }

    #[test]
    fn retries_double_up_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(2), Duration::from_secs(4));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(30), Duration::from_secs(60));
    }

    #[test]
    fn requests_per_minute_count_the_last_full_minute() {
        let endpoint = Endpoint::new(
            1,
            "g".into(),
            ServerLocation::parse("127.0.0.1").expect("location"),
            443,
            Vec::new(),
            Credentials {
                account: "a".into(),
                password: secrecy::SecretString::from("p".to_owned()),
            },
            true,
            ExchangeAuth::Auto,
            Duration::from_secs(5),
        );
        let mut g = Gateway::new(Source::Ews(Arc::new(endpoint)));
        for _ in 0..7 {
            g.count_request(600);
        }
        assert_eq!(g.per_minute(610), 7);
        g.count_request(660);
        assert_eq!(g.per_minute(670), 7);
        assert_eq!(g.per_minute(725), 1);
        assert_eq!(g.per_minute(900), 0);
    }
}
