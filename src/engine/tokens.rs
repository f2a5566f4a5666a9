//! App-only Microsoft Graph tokens, one cache per Microsoft 365 gateway
//! (GR-4): a token is used until 5 minutes before it expires, and a burst
//! of requests that finds it stale waits for one renewal instead of each
//! asking the sign-in service. A failed renewal is remembered for a
//! growing pause, so a wrong secret does not hammer Microsoft (which
//! throttles, then locks, applications that keep failing).

use std::future::Future;
use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::clock::SharedClock;
use crate::exchange::graph::{Token, backoff};

/// Renew this long before expiry (GR-4).
pub const RENEW_BEFORE_SECS: i64 = 300;

#[derive(Default)]
struct Slot {
    /// The token and when to stop using it (unix seconds).
    token: Option<(SecretString, i64)>,
    /// The last renewal's failure, and until when it stands.
    failed: Option<(String, i64)>,
    /// Failures in a row, for the pause after the next one.
    failures: u32,
}

/// One gateway's token. Cloning shares the cache.
#[derive(Clone)]
pub struct TokenCache {
    slot: Arc<Mutex<Slot>>,
    clock: SharedClock,
}

impl TokenCache {
    pub fn new(clock: SharedClock) -> TokenCache {
        TokenCache {
            slot: Arc::new(Mutex::new(Slot::default())),
            clock,
        }
    }

    /// The current token, renewed with `fetch` when it is within 5 minutes
    /// of expiring (or half its lifetime, for tokens shorter than 10
    /// minutes). Callers that arrive during a renewal wait for it and share
    /// its outcome. Err is the failure's advice, for health and the log.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<SecretString, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, String>>,
    {
        // Held across the renewal: that is what makes a burst one request.
        let mut slot = self.slot.lock().await;
        let now = self.clock.unix();
        if let Some((token, use_until)) = &slot.token
            && now < *use_until
        {
            return Ok(token.clone());
        }
        if let Some((why, until)) = &slot.failed
            && now < *until
        {
            return Err(why.clone());
        }
        match fetch().await {
            Ok(token) => {
                let lifetime = i64::try_from(token.expires_in).unwrap_or(i64::MAX);
                let margin = if lifetime >= 2 * RENEW_BEFORE_SECS {
                    RENEW_BEFORE_SECS
                } else {
                    lifetime / 2
                };
                let issued = self.clock.unix();
                let secret = SecretString::from(token.access_token);
                slot.token = Some((secret.clone(), issued.saturating_add(lifetime - margin)));
                slot.failed = None;
                slot.failures = 0;
                Ok(secret)
            }
            Err(why) => {
                slot.failures = slot.failures.saturating_add(1);
                let pause = i64::try_from(backoff(slot.failures).as_secs()).unwrap_or(60);
                slot.failed = Some((why.clone(), self.clock.unix() + pause));
                slot.token = None;
                Err(why)
            }
        }
    }

    /// Drops the token, after Graph refused it (401): the next request
    /// renews it, whatever its expiry said.
    pub async fn forget(&self) {
        self.slot.lock().await.token = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use secrecy::ExposeSecret;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::OffsetDateTime;

    fn token(value: &str, expires_in: u64) -> Token {
        Token {
            access_token: value.to_owned(),
            expires_in,
        }
    }

    fn cache() -> (TokenCache, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        ));
        (TokenCache::new(clock.clone()), clock)
    }

    #[tokio::test]
    async fn a_token_is_kept_until_five_minutes_before_it_expires() {
        let (cache, clock) = cache();
        let fetched = AtomicUsize::new(0);
        let fetch = |value: &'static str| {
            let fetched = &fetched;
            move || async move {
                fetched.fetch_add(1, Ordering::SeqCst);
                Ok(token(value, 3599))
            }
        };
        let first = cache.get(fetch("one")).await.unwrap();
        assert_eq!(first.expose_secret(), "one");
        // 3599 - 300 = 3299 s of use.
        clock.advance(time::Duration::seconds(3298));
        assert_eq!(
            cache.get(fetch("two")).await.unwrap().expose_secret(),
            "one"
        );
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        clock.advance(time::Duration::seconds(1));
        assert_eq!(
            cache.get(fetch("two")).await.unwrap().expose_secret(),
            "two"
        );
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
        // A refused token is renewed at once.
        cache.forget().await;
        assert_eq!(
            cache.get(fetch("three")).await.unwrap().expose_secret(),
            "three"
        );
    }

    #[tokio::test]
    async fn fifty_concurrent_requests_share_one_renewal() {
        let (cache, _clock) = cache();
        let fetched = Arc::new(AtomicUsize::new(0));
        // The renewal is held open until every caller is waiting on it.
        let release = Arc::new(tokio::sync::Notify::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let fetched = fetched.clone();
            let release = release.clone();
            let waiting = waiting.clone();
            callers.push(tokio::spawn(async move {
                waiting.fetch_add(1, Ordering::SeqCst);
                cache
                    .get(|| async move {
                        fetched.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok(token("shared", 3599))
                    })
                    .await
            }));
        }
        for _ in 0..1000 {
            if waiting.load(Ordering::SeqCst) == 50 && fetched.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        release.notify_one();
        for caller in callers {
            let got = caller.await.unwrap().unwrap();
            assert_eq!(got.expose_secret(), "shared");
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_is_shared_and_paused_then_retried() {
        let (cache, clock) = cache();
        let fetched = AtomicUsize::new(0);
        let failing = || async {
            fetched.fetch_add(1, Ordering::SeqCst);
            Err::<Token, _>("The client secret is wrong.".to_owned())
        };
        assert_eq!(
            cache.get(failing).await.unwrap_err(),
            "The client secret is wrong."
        );
        // Within the pause (2 s after the first failure) nobody asks again.
        assert!(cache.get(failing).await.is_err());
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        clock.advance(time::Duration::seconds(2));
        assert!(cache.get(failing).await.is_err());
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
        // The second failure pauses longer (4 s).
        clock.advance(time::Duration::seconds(3));
        assert!(cache.get(failing).await.is_err());
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
        clock.advance(time::Duration::seconds(1));
        let ok = cache
            .get(|| async { Ok(token("fixed", 3599)) })
            .await
            .unwrap();
        assert_eq!(ok.expose_secret(), "fixed");
    }

    #[tokio::test]
    async fn a_short_lived_token_is_renewed_at_half_its_life() {
        let (cache, clock) = cache();
        cache
            .get(|| async { Ok(token("short", 120)) })
            .await
            .unwrap();
        clock.advance(time::Duration::seconds(59));
        let same = cache
            .get(|| async { Ok(token("next", 120)) })
            .await
            .unwrap();
        assert_eq!(same.expose_secret(), "short");
        clock.advance(time::Duration::seconds(1));
        let next = cache
            .get(|| async { Ok(token("next", 120)) })
            .await
            .unwrap();
        assert_eq!(next.expose_secret(), "next");
    }
}
