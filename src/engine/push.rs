//! The subscriptions the engine holds (EN-2), as its notification listener
//! sees them: one unguessable call-back path per subscription, so a
//! notification is matched by where it was posted and by the subscription
//! id inside it. Anything else is answered `Unsubscribe`.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::RngCore;
use tokio::sync::mpsc;

/// Where notifications are posted: `/ews/<token>`.
pub const PATH_PREFIX: &str = "/ews/";

/// How many heard notifications may wait for the engine's next round;
/// beyond that they are still answered OK (the user's calendar is read at
/// its next refresh anyway).
pub const QUEUE: usize = 65_536;

/// A notification for a subscription the engine holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub user: String,
    pub token: String,
    /// Something in the calendar changed (not just a status event).
    pub changed: bool,
    /// The notification's previous and newest watermarks.
    pub previous_watermark: Option<String>,
    pub watermark: Option<String>,
    /// Microsoft 365: something happened to the subscription itself.
    pub lifecycle: Option<crate::exchange::graph::LifecycleEvent>,
}

struct Entry {
    user: String,
    /// Known once Exchange answered the Subscribe.
    id: Option<String>,
}

/// The call-back paths the engine holds, shared with its listener. For
/// Microsoft 365 the token is the subscription's `clientState` (Graph
/// posts every notification to one URL), found by the subscription id.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
    /// Graph subscription id -> clientState.
    graph_ids: Mutex<HashMap<String, String>>,
}

/// How a Microsoft 365 notification was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphJudged {
    /// Ours: the user and the subscription's token (its clientState).
    Held { user: String, token: String },
    /// A subscription id this engine does not hold (ended, or never made).
    Unknown,
    /// A subscription we hold, with the wrong clientState: a forgery, or a
    /// stale sender. Ignored.
    Mismatch,
}

impl Registry {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new call-back path token for `user` (128 random bits).
    pub fn open(&self, user: &str) -> String {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.entries().insert(
            token.clone(),
            Entry {
                user: user.to_owned(),
                id: None,
            },
        );
        token
    }

    /// A Microsoft 365 subscription's `clientState` for `user` (256
    /// random bits), held like an EWS call-back token.
    pub fn open_graph(&self, user: &str) -> String {
        let token = crate::exchange::graph::new_client_state();
        self.entries().insert(
            token.clone(),
            Entry {
                user: user.to_owned(),
                id: None,
            },
        );
        token
    }

    /// Exchange (or Graph) made the subscription: its id.
    pub fn made(&self, token: &str, id: &str) {
        if let Some(entry) = self.entries().get_mut(token) {
            entry.id = Some(id.to_owned());
        }
    }

    /// Graph made the subscription `id` under `token`.
    pub fn made_graph(&self, token: &str, id: &str) {
        self.made(token, id);
        self.graph_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), token.to_owned());
    }

    /// The subscription is no longer wanted: its next notification is
    /// answered `Unsubscribe`, which is how EWS push subscriptions end
    /// (Graph's are deleted besides, and their notifications ignored).
    pub fn close(&self, token: &str) {
        if let Some(Entry { id: Some(id), .. }) = self.entries().remove(token) {
            self.graph_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }

    /// Whose Microsoft 365 notification this is: the subscription id must
    /// be held and the `clientState` match it, compared in constant time.
    pub fn judge_graph(&self, subscription_id: &str, client_state: Option<&str>) -> GraphJudged {
        let token = self
            .graph_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subscription_id)
            .cloned();
        let Some(token) = token else {
            return GraphJudged::Unknown;
        };
        if !crate::exchange::graph::client_state_matches(&token, client_state) {
            return GraphJudged::Mismatch;
        }
        match self.entries().get(&token) {
            Some(entry) => GraphJudged::Held {
                user: entry.user.clone(),
                token,
            },
            None => GraphJudged::Unknown,
        }
    }

    /// Whose notification this is, if the engine holds it: the token must
    /// be open and the id match (a notification that arrives before the
    /// Subscribe's answer, with no id recorded yet, is accepted).
    pub fn judge(&self, token: &str, subscription_id: &str) -> Option<String> {
        let entries = self.entries();
        let entry = entries.get(token)?;
        match &entry.id {
            Some(id) if id != subscription_id => None,
            _ => Some(entry.user.clone()),
        }
    }
}

/// The listener's side: what a notification posted to `path` with these
/// notifications means, and what to answer. Heard notifications go to the
/// engine through `heard`.
pub fn notified(
    registry: &Registry,
    heard: &mpsc::Sender<Heard>,
    path: &str,
    notifications: &[crate::exchange::push::Notification],
) -> crate::exchange::push::Keep {
    use crate::exchange::push::Keep;
    let Some(token) = path.strip_prefix(PATH_PREFIX) else {
        return Keep::Unsubscribe;
    };
    let mut keep = Keep::Unsubscribe;
    for n in notifications {
        if let Some(user) = registry.judge(token, &n.subscription_id) {
            keep = Keep::Ok;
            // A full queue loses nothing that matters: the OK keeps the
            // subscription and the next refresh reads the calendar.
            let _ = heard.try_send(Heard {
                user,
                token: token.to_owned(),
                changed: n.changed,
                previous_watermark: n.previous_watermark.clone(),
                watermark: n.watermark.clone(),
                lifecycle: None,
            });
        }
    }
    keep
}

/// The listener's side for Microsoft 365: each notification held goes to
/// the engine; one with a wrong `clientState` is ignored and logged.
/// Returns how many were held.
pub fn notified_graph(
    registry: &Registry,
    heard: &mpsc::Sender<Heard>,
    notifications: &[crate::exchange::graph::Notification],
) -> usize {
    use crate::exchange::graph::Notification;
    let mut held = 0;
    for n in notifications {
        match registry.judge_graph(n.subscription_id(), n.client_state()) {
            GraphJudged::Held { user, token } => {
                held += 1;
                let lifecycle = match n {
                    Notification::Lifecycle { event, .. } => Some(event.clone()),
                    Notification::Change { .. } => None,
                };
                let _ = heard.try_send(Heard {
                    user,
                    token,
                    changed: lifecycle.is_none(),
                    previous_watermark: None,
                    watermark: None,
                    lifecycle,
                });
            }
            GraphJudged::Mismatch => tracing::warn!(
                subscription = n.subscription_id(),
                "Microsoft 365 notification with a wrong clientState: ignored"
            ),
            GraphJudged::Unknown => tracing::debug!(
                subscription = n.subscription_id(),
                "Microsoft 365 notification for a subscription not held: ignored"
            ),
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::push::{Keep, Notification};

    fn note(id: &str, changed: bool) -> Notification {
        Notification {
            subscription_id: id.to_owned(),
            previous_watermark: None,
            watermark: None,
            changed,
        }
    }

    #[test]
    fn only_held_subscriptions_are_kept_and_heard() {
        let registry = Registry::default();
        let (tx, mut rx) = mpsc::channel(8);
        let token = registry.open("alice");
        assert_eq!(token.len(), 32);
        assert_ne!(registry.open("alice"), token, "a new path each time");
        let path = format!("{PATH_PREFIX}{token}");

        // Before Exchange's answer, any id at the right path is accepted.
        assert_eq!(
            notified(&registry, &tx, &path, &[note("s1", false)]),
            Keep::Ok
        );
        registry.made(&token, "s1");
        assert_eq!(
            notified(&registry, &tx, &path, &[note("s1", true)]),
            Keep::Ok
        );
        assert_eq!(
            notified(&registry, &tx, &path, &[note("other", true)]),
            Keep::Unsubscribe
        );
        assert_eq!(
            notified(&registry, &tx, "/ews/unknown", &[note("s1", true)]),
            Keep::Unsubscribe
        );
        assert_eq!(
            notified(&registry, &tx, "/elsewhere", &[note("s1", true)]),
            Keep::Unsubscribe
        );
        registry.close(&token);
        assert_eq!(
            notified(&registry, &tx, &path, &[note("s1", true)]),
            Keep::Unsubscribe
        );

        let heard: Vec<Heard> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(heard.len(), 2, "only what was kept reaches the engine");
        assert_eq!(heard[0].user, "alice");
        assert!(!heard[0].changed && heard[1].changed);
    }

    #[test]
    fn graph_notifications_need_a_held_id_and_its_client_state() {
        use crate::exchange::graph::{LifecycleEvent, Notification};
        let registry = Registry::default();
        let (tx, mut rx) = mpsc::channel(8);
        let state = registry.open_graph("bob");
        assert_eq!(state.len(), 43);
        let change = |id: &str, client_state: &str| Notification::Change {
            subscription_id: id.to_owned(),
            client_state: Some(client_state.to_owned()),
            change_type: "updated".to_owned(),
            resource: "Users/bob@x.com/Events/1".to_owned(),
            mailbox: Some("bob@x.com".to_owned()),
        };
        // Before Graph's answer the id is unknown: ignored.
        assert_eq!(notified_graph(&registry, &tx, &[change("g1", &state)]), 0);
        registry.made_graph(&state, "g1");
        assert_eq!(notified_graph(&registry, &tx, &[change("g1", &state)]), 1);
        assert_eq!(
            registry.judge_graph("g1", Some("forged")),
            GraphJudged::Mismatch
        );
        assert_eq!(registry.judge_graph("g1", None), GraphJudged::Mismatch);
        assert_eq!(notified_graph(&registry, &tx, &[change("g1", "forged")]), 0);
        let removed = Notification::Lifecycle {
            subscription_id: "g1".to_owned(),
            client_state: Some(state.clone()),
            event: LifecycleEvent::SubscriptionRemoved,
        };
        assert_eq!(
            notified_graph(&registry, &tx, std::slice::from_ref(&removed)),
            1
        );
        registry.close(&state);
        assert_eq!(
            registry.judge_graph("g1", Some(&state)),
            GraphJudged::Unknown
        );
        assert_eq!(notified_graph(&registry, &tx, &[removed]), 0);
        let heard: Vec<Heard> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(heard.len(), 2);
        assert!(heard[0].changed && heard[0].lifecycle.is_none());
        assert_eq!(
            heard[1].lifecycle,
            Some(LifecycleEvent::SubscriptionRemoved)
        );
        assert_eq!(heard[1].token, state);
    }
}
