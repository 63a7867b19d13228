//! "This order is final" signals, for long-polling readers of `GET /api/orders/{id}?wait_ms=N`.
//! The mediator PUBLISHes an order's id on `<stream>.final` when it acknowledges the order's final
//! state; this process subscribes once and wakes the readers parked on that id. A lost signal
//! (Redis blip, reconnect) only costs the reader its wait: it re-reads the order at its deadline.

use futures::StreamExt;
use shop_common::config::ExposeSecret;
use shop_common::config::SecretString;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const RECONNECT_AFTER: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct FinalSignals {
    parked: Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>,
}

/// A parked reader; leaving (signalled or not) removes it.
pub struct Parked<'a> {
    signals: &'a FinalSignals,
    id: Uuid,
    woken: oneshot::Receiver<()>,
}

impl FinalSignals {
    fn parked(&self) -> MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<()>>>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks a reader of `id`. Park BEFORE the last read of the order, so no signal slips between.
    pub fn park(&self, id: Uuid) -> Parked<'_> {
        let (tx, rx) = oneshot::channel();
        self.parked().entry(id).or_default().push(tx);
        Parked {
            signals: self,
            id,
            woken: rx,
        }
    }

    fn wake(&self, id: Uuid) {
        for reader in self.parked().remove(&id).unwrap_or_default() {
            let _ = reader.send(());
        }
    }

    /// Subscribes to `channel` until `stop`, reconnecting after failures.
    pub async fn listen(
        self: Arc<Self>,
        redis_url: SecretString,
        channel: String,
        stop: CancellationToken,
    ) {
        while !stop.is_cancelled() {
            if let Err(e) = self.subscribe(&redis_url, &channel, &stop).await {
                tracing::warn!("final-state signals unavailable, long polls wait out: {e:#}");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
    }

    async fn subscribe(
        &self,
        redis_url: &SecretString,
        channel: &str,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let client = redis::Client::open(redis_url.expose_secret())?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        let mut messages = pubsub.on_message();
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            let Some(message) = message else {
                anyhow::bail!("subscription to {channel} closed");
            };
            let payload: String = message.get_payload()?;
            if let Ok(id) = Uuid::parse_str(&payload) {
                self.wake(id);
            }
        }
    }
}

impl Parked<'_> {
    /// Waits for the signal, at most `limit`; `true` if it came.
    pub async fn wait(&mut self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, &mut self.woken).await,
            Ok(Ok(()))
        )
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        // Our receiver outlives this call: close it so our sender counts as closed below.
        self.woken.close();
        let mut parked = self.signals.parked();
        if let Some(readers) = parked.get_mut(&self.id) {
            readers.retain(|r| !r.is_closed());
            if readers.is_empty() {
                parked.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_wakes_every_reader_of_that_order_only() {
        let signals = FinalSignals::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut first = signals.park(a);
        let mut second = signals.park(a);
        let mut other = signals.park(b);
        signals.wake(a);
        assert!(first.wait(Duration::from_secs(5)).await);
        assert!(second.wait(Duration::from_secs(5)).await);
        assert!(
            !other.wait(Duration::from_millis(20)).await,
            "b was not signalled"
        );
        drop((first, second, other));
        assert!(signals.parked().is_empty(), "leaving readers clean up");
    }
}
