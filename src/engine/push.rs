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
}

struct Entry {
    user: String,
    /// Known once Exchange answered the Subscribe.
    id: Option<String>,
}

/// The call-back paths the engine holds, shared with its listener.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
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

    /// Exchange made the subscription: its id.
    pub fn made(&self, token: &str, id: &str) {
        if let Some(entry) = self.entries().get_mut(token) {
            entry.id = Some(id.to_owned());
        }
    }

    /// The subscription is no longer wanted: its next notification is
    /// answered `Unsubscribe`, which is how EWS push subscriptions end.
    pub fn close(&self, token: &str) {
        self.entries().remove(token);
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
            });
        }
    }
    keep
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
}
