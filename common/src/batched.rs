//! Batches: many callers' items handled by one call instead of one call each — for writes, group
//! commit (one request, one statement, one commit for all); for reads, one query — every caller
//! still answered with its own item's result.
//!
//! A batch is whatever waits when one of `in_flight` applications is free, up to `max` items: a
//! lone caller goes at once, alone, and under load the batches grow while the previous ones are
//! being applied — no timer, no added wait. A batch that fails fails each of its callers with the
//! same error; what to do then (retry, answer 503) is each caller's own decision, as it would be
//! for an item applied on its own. Used for the participants' forward actions and the sagas'
//! transitions (the mediator), and the order API's INSERT and its reads of final orders.

use std::{future::Future, sync::Arc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Items waiting for a free application; a caller past this many waits for room.
const QUEUE: usize = 4096;

/// How callers' items are batched.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Batches being applied at once.
    pub in_flight: usize,
    /// The most items in one batch.
    pub max: usize,
}

/// Why an item got no result of its batch.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum BatchError {
    #[error("the batches have stopped")]
    Stopped,
    #[error("a batch of {sent} was answered with {answered} results")]
    Mismatch { sent: usize, answered: usize },
}

type Reply<R, E> = oneshot::Sender<Result<R, E>>;

/// Callers' items, applied in batches by one task.
pub struct Batched<T, R, E> {
    queue: mpsc::Sender<(T, Reply<R, E>)>,
}

impl<T, R, E> Clone for Batched<T, R, E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T, R, E> Batched<T, R, E>
where
    T: Send + 'static,
    R: Send + 'static,
    E: Clone + From<BatchError> + Send + 'static,
{
    /// Starts the task that applies batches with `apply`, which answers one result per item, in
    /// the items' order. The task ends once every clone of the returned handle is dropped.
    pub fn start<F, Fut>(limits: Limits, apply: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, E>> + Send + 'static,
    {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(gather(waiting, limits, Arc::new(apply)));
        Self { queue }
    }

    /// `item` applied in the next batch: its own result.
    pub async fn submit(&self, item: T) -> Result<R, E> {
        let (reply, answer) = oneshot::channel();
        let stopped = || E::from(BatchError::Stopped);
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn gather<T, R, E, F, Fut>(
    mut waiting: mpsc::Receiver<(T, Reply<R, E>)>,
    limits: Limits,
    apply: Arc<F>,
) where
    T: Send + 'static,
    R: Send + 'static,
    E: Clone + From<BatchError> + Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<R>, E>> + Send + 'static,
{
    let free = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    loop {
        // A free application first: meanwhile, what arrives waits and joins the next batch.
        let Ok(permit) = free.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < limits.max
            && let Ok(next) = waiting.try_recv()
        {
            batch.push(next);
        }
        tokio::spawn(apply_batch(apply.clone(), batch, permit));
    }
}

async fn apply_batch<T, R, E, F, Fut>(
    apply: Arc<F>,
    batch: Vec<(T, Reply<R, E>)>,
    _permit: OwnedSemaphorePermit,
) where
    E: Clone + From<BatchError>,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, E>>,
{
    let (items, replies): (Vec<T>, Vec<Reply<R, E>>) = batch.into_iter().unzip();
    let sent = items.len();
    let results = match apply(items).await {
        Ok(results) if results.len() == sent => results,
        Ok(results) => {
            let mismatch = E::from(BatchError::Mismatch {
                sent,
                answered: results.len(),
            });
            return fail_each(replies, mismatch);
        }
        Err(e) => return fail_each(replies, e),
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(Ok(result));
    }
}

fn fail_each<R, E: Clone>(replies: Vec<Reply<R, E>>, e: E) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

/// An error shared by every item of a failed batch, for appliers whose errors are
/// [`anyhow::Error`]: it leads to the batch's error as its source, so what callers look for in an
/// error's chain (`crate::error::Dependency::down_in`: Postgres is down) is found through it.
#[derive(Debug, Clone)]
pub struct BatchFailed(Arc<anyhow::Error>);

impl std::fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("its batch failed")
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(AsRef::<dyn std::error::Error>::as_ref(self.0.as_ref()))
    }
}

impl From<anyhow::Error> for BatchFailed {
    fn from(e: anyhow::Error) -> Self {
        Self(Arc::new(e))
    }
}

impl From<BatchError> for BatchFailed {
    fn from(e: BatchError) -> Self {
        Self(Arc::new(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, stream::FuturesOrdered};
    use std::sync::Mutex;

    /// A group whose batches wait for a permit of the returned gate, each batch's size recorded;
    /// each item answers itself doubled, or the batch fails if it holds a negative item.
    #[allow(clippy::type_complexity)]
    fn gated(
        limits: Limits,
    ) -> (
        Batched<i64, i64, BatchFailed>,
        Arc<Semaphore>,
        Arc<Mutex<Vec<usize>>>,
    ) {
        let gate = Arc::new(Semaphore::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (g, s) = (gate.clone(), sizes.clone());
        let group = Batched::start(limits, move |items: Vec<i64>| {
            let (gate, sizes) = (g.clone(), s.clone());
            async move {
                sizes.lock().unwrap().push(items.len());
                let _permit = gate.acquire().await.unwrap();
                if items.iter().any(|i| *i < 0) {
                    return Err(anyhow::anyhow!("a negative item").into());
                }
                Ok(items.iter().map(|i| i * 2).collect())
            }
        });
        (group, gate, sizes)
    }

    #[tokio::test]
    async fn items_waiting_while_every_application_is_busy_go_together_each_answered_its_own() {
        let (group, gate, sizes) = gated(Limits {
            in_flight: 1,
            max: 3,
        });
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await.unwrap() }
        });
        // The lone first item goes at once, alone; the next five wait for it.
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let waiting = tokio::spawn({
            let group = group.clone();
            async move {
                let rest: FuturesOrdered<_> = (2..=6).map(|i| group.submit(i)).collect();
                rest.map(|r| r.unwrap()).collect::<Vec<_>>().await
            }
        });
        while group.queue.max_capacity() - group.queue.capacity() < 5 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(Semaphore::MAX_PERMITS / 2);
        assert_eq!(first.await.unwrap(), 2);
        assert_eq!(waiting.await.unwrap(), vec![4, 6, 8, 10, 12]);
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![1, 3, 2],
            "at most max to a batch"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_items_with_its_cause_in_the_chain() {
        let (group, gate, _) = gated(Limits {
            in_flight: 1,
            max: 8,
        });
        gate.add_permits(Semaphore::MAX_PERMITS / 2);
        let results: Vec<_> = [1, -1]
            .map(|i| group.submit(i))
            .into_iter()
            .collect::<FuturesOrdered<_>>()
            .collect()
            .await;
        for result in results {
            let err = anyhow::Error::from(result.unwrap_err());
            assert!(format!("{err:#}").contains("a negative item"), "{err:#}");
        }
        assert_eq!(
            group.submit(5).await.unwrap(),
            10,
            "the next batch is applied"
        );
    }
}
