//! The orders stream as this consumer group sees it: every Redis command the consumer sends — read,
//! claim, heartbeat, acknowledge, dead-letter, trim, leave — and the parsing of their replies into
//! typed entries. Scheduling (which entry runs when, on how many slots) is `crate::consumer`'s.
//!
//! Commands go on the process's shared connection, except the blocking read of new entries: it
//! has a connection of its own ([`Reader`]), because a blocking read would stall every command
//! pipelined behind it on a shared one.

use crate::config::StreamConfig;
use anyhow::{Context, Result};
use order_store::stream::{FIELD, dead_letter, final_channel};
use redis::{
    FromRedisValue, RedisResult, Value,
    aio::MultiplexedConnection,
    streams::{StreamInfoGroupsReply, StreamPendingCountReply, StreamPendingReply},
};
use shop_common::{config::SecretString, redis::Redis};
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};
use uuid::Uuid;

/// `XCLAIM <stream> <group> <consumer> 0 <id> JUSTID` for each id still pending for this consumer,
/// checked and claimed atomically; returns the ids that are not (claimed by another consumer, or
/// no longer pending). JUSTID: not counted as a delivery.
/// KEYS: stream. ARGV: group, consumer, ids...
static HEARTBEAT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        local lost = {}
        for i = 3, #ARGV do
            local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
            if p[1] and p[1][2] == ARGV[2] then
                redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
            else
                lost[#lost + 1] = ARGV[i]
            end
        end
        return lost
        ",
    )
});

/// One stream entry, fields as text.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl Entry {
    pub fn order_id(&self) -> Option<Uuid> {
        let (_, value) = self.fields.iter().find(|(k, _)| k == FIELD)?;
        Uuid::parse_str(value).ok()
    }

    fn payload(&self) -> String {
        let map: BTreeMap<_, _> = self.fields.iter().cloned().collect();
        serde_json::to_string(&map).unwrap_or_default()
    }
}

/// Entries taken over by one `XAUTOCLAIM`, and where the next one goes on (none: the scan is done).
pub struct Claimed {
    pub next: Option<String>,
    pub entries: Vec<Entry>,
}

/// The orders stream, its consumer group and this consumer's name in it, and the dead-letter
/// stream.
pub struct OrdersStream {
    cfg: StreamConfig,
    redis: Redis,
}

impl OrdersStream {
    pub fn new(cfg: StreamConfig, redis: Redis) -> Self {
        Self { cfg, redis }
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.redis.connection()
    }

    /// Sends `cmd` on the shared connection; `what` names it in errors.
    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd, what: &'static str) -> Result<T> {
        cmd.query_async(&mut self.conn()).await.context(what)
    }

    /// `XREADGROUP GROUP <group> <consumer> COUNT <count> [BLOCK <ms>] STREAMS <stream> <from>`:
    /// from `>`, new entries; from an id, this consumer's pending entries after it.
    fn read_group(&self, count: usize, block: Option<Duration>, from: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS")
            .arg(&self.cfg.names.orders_stream)
            .arg(from);
        cmd
    }

    /// `XGROUP CREATE <stream> <group> 0 MKSTREAM`: from 0, so nothing published before the group
    /// existed is missed. A group that exists already is fine.
    pub async fn create_group(&self) -> Result<()> {
        let mut conn = self.conn();
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e).context("XGROUP CREATE"),
            _ => Ok(()),
        }
    }

    /// Up to `count` of this consumer's pending entries after `after` ("0": from the first).
    pub async fn own_pending(&self, after: &str, count: usize) -> Result<Vec<Entry>> {
        let read = self.read_group(count, None, after);
        let reply: Value = self.query(&read, "reading own pending entries").await?;
        Ok(read_reply_entries(&reply))
    }

    /// A reader of new entries, on a connection of its own whose replies may take `block`.
    pub fn reader(&self, redis_url: SecretString, block: Duration) -> Reader<'_> {
        Reader {
            stream: self,
            redis_url,
            block,
            conn: None,
        }
    }

    /// How often each entry (now this consumer's) has been delivered.
    pub async fn delivery_counts(&self, entries: &[Entry]) -> Result<HashMap<String, u64>> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(HashMap::new());
        };
        let mut xpending = redis::cmd("XPENDING");
        xpending
            .arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len() + self.cfg.concurrency)
            .arg(&self.cfg.consumer);
        let pending: StreamPendingCountReply = self.query(&xpending, "XPENDING").await?;
        Ok(pending
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered as u64))
            .collect())
    }

    /// `XAUTOCLAIM`s up to `count` entries idle for longer than CLAIM_MIN_IDLE_MS, scanning the
    /// pending list from `cursor` ("0-0": from its start).
    pub async fn claim_idle(&self, cursor: &str, count: usize) -> Result<Claimed> {
        let mut xautoclaim = redis::cmd("XAUTOCLAIM");
        xautoclaim
            .arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(self.cfg.claim_min_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(count);
        let reply: Value = self.query(&xautoclaim, "XAUTOCLAIM").await?;
        Ok(autoclaim_reply(&reply))
    }

    /// Resets the idle time of `ids` that this consumer still owns (see [`HEARTBEAT`]); returns
    /// those it no longer owns.
    pub async fn heartbeat(&self, ids: &[String]) -> Result<Vec<String>> {
        HEARTBEAT
            .key(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(ids)
            .invoke_async(&mut self.conn())
            .await
            .context("heartbeat script")
    }

    pub async fn dead_letter(
        &self,
        entry: &Entry,
        order_id: Option<Uuid>,
        reason: &str,
    ) -> Result<()> {
        tracing::warn!(stream_id = %entry.id, ?order_id, reason, "dead-lettering a stream entry");
        let order_id = order_id.map(|id| id.to_string()).unwrap_or_default();
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&self.cfg.names.dead_letter_stream)
            .arg("*")
            .arg(dead_letter::ORDER_ID)
            .arg(order_id)
            .arg(dead_letter::STREAM_ID)
            .arg(&entry.id)
            .arg(dead_letter::REASON)
            .arg(reason)
            .arg(dead_letter::PAYLOAD)
            .arg(entry.payload());
        let _: String = self.query(&xadd, "XADD to the dead-letter stream").await?;
        metrics::counter!("mediator_dead_letters_total").increment(1);
        Ok(())
    }

    /// XACK plus the "order is final" signal that long-polling readers of the order API wait on,
    /// in one round trip. The signal is a hint: a reader that misses it re-reads at its deadline.
    pub async fn ack_final(&self, stream_id: &str, order_id: Uuid) -> Result<()> {
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg(stream_id)
            .ignore()
            .cmd("PUBLISH")
            .arg(final_channel(&self.cfg.names.orders_stream))
            .arg(order_id.to_string())
            .ignore()
            .query_async(&mut self.conn())
            .await
            .context("XACK + PUBLISH")?;
        Ok(())
    }

    pub async fn ack(&self, stream_id: &str) -> Result<()> {
        let mut xack = redis::cmd("XACK");
        xack.arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg(stream_id);
        let _: i64 = self.query(&xack, "XACK").await?;
        Ok(())
    }

    /// Deletes the entries every consumer group of the stream is done with: those before the
    /// oldest pending entry, or before the last delivered one when nothing is pending.
    pub async fn trim(&self) -> Result<()> {
        let mut xinfo = redis::cmd("XINFO");
        xinfo.arg("GROUPS").arg(&self.cfg.names.orders_stream);
        let groups: StreamInfoGroupsReply = self.query(&xinfo, "XINFO GROUPS").await?;
        let mut keep_from: Option<(u64, u64)> = None;
        for group in &groups.groups {
            let oldest_needed = if group.pending > 0 {
                let mut xpending = redis::cmd("XPENDING");
                xpending.arg(&self.cfg.names.orders_stream).arg(&group.name);
                match self.query(&xpending, "XPENDING summary").await? {
                    StreamPendingReply::Data(d) => d.start_id,
                    _ => group.last_delivered_id.clone(),
                }
            } else {
                group.last_delivered_id.clone()
            };
            let Some(id) = parse_stream_id(&oldest_needed) else {
                return Ok(());
            };
            keep_from = Some(keep_from.map_or(id, |k| k.min(id)));
        }
        let Some((ms, seq)) = keep_from.filter(|k| *k > (0, 0)) else {
            return Ok(());
        };
        let mut xtrim = redis::cmd("XTRIM");
        xtrim
            .arg(&self.cfg.names.orders_stream)
            .arg("MINID")
            .arg("~")
            .arg(format!("{ms}-{seq}"));
        let _: i64 = self.query(&xtrim, "XTRIM").await?;
        Ok(())
    }

    /// Removes this consumer from the group, unless entries are still pending for it (removing
    /// it would drop them from the group's pending list: they would never be recovered).
    pub async fn leave_group_if_idle(&self) -> Result<()> {
        let mut xpending = redis::cmd("XPENDING");
        xpending
            .arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.cfg.consumer);
        let pending: StreamPendingCountReply = self.query(&xpending, "XPENDING").await?;
        if !pending.ids.is_empty() {
            tracing::info!("entries still pending for this consumer: staying in the group");
            return Ok(());
        }
        let mut delconsumer = redis::cmd("XGROUP");
        delconsumer
            .arg("DELCONSUMER")
            .arg(&self.cfg.names.orders_stream)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer);
        let _: i64 = self.query(&delconsumer, "XGROUP DELCONSUMER").await?;
        Ok(())
    }
}

/// Reads new entries (`XREADGROUP ... BLOCK`) on a dedicated connection, opened on first use and
/// again after an error.
pub struct Reader<'a> {
    stream: &'a OrdersStream,
    redis_url: SecretString,
    block: Duration,
    conn: Option<MultiplexedConnection>,
}

impl Reader<'_> {
    /// Up to `count` new entries, waiting at most the reader's block time for the first.
    pub async fn read_new(&mut self, count: usize) -> Result<Vec<Entry>> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                shop_common::redis::dedicated_connection(&self.redis_url, self.block)
                    .await
                    .context("Redis unavailable for reading")?,
            ),
        };
        let read: RedisResult<Value> = self
            .stream
            .read_group(count, Some(self.block), ">")
            .query_async(conn)
            .await;
        match read {
            Ok(reply) => Ok(read_reply_entries(&reply)),
            Err(e) => {
                self.conn = None;
                if e.code() == Some("NOGROUP") {
                    // The stream was deleted under us: start over from its beginning.
                    let _ = self.stream.create_group().await;
                }
                Err(e).context("reading the orders stream failed")
            }
        }
    }
}

// ------------------------------------------------------------------ reply parsing
// Parsed by hand: an entry deleted from the stream comes back from the pending list with a nil
// field list, which must surface as a malformed entry (dead-lettered), not as a reply error.

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// `[[id, [field, value, ...] | nil], ...]`
fn entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else {
                return None;
            };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(kv)) => kv
                    .chunks(2)
                    .filter_map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
                    .collect(),
                Some(Value::Map(kv)) => kv
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect(),
                _ => Vec::new(),
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// An XREADGROUP reply: nil, `[[stream, entries]]`, or (RESP3) `{stream: entries}`.
fn read_reply_entries(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// An XAUTOCLAIM reply: `[next cursor, entries, deleted ids]`.
fn autoclaim_reply(v: &Value) -> Claimed {
    let Value::Array(parts) = v else {
        return Claimed {
            next: None,
            entries: Vec::new(),
        };
    };
    Claimed {
        next: parts.first().and_then(text),
        entries: parts.get(1).map(entries).unwrap_or_default(),
    }
}

fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_read_replies_including_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("orders"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("order_id"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let e = read_reply_entries(&reply);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].id, "1-0");
        assert_eq!(e[0].fields, [("order_id".to_string(), "x".to_string())]);
        assert!(e[1].fields.is_empty());
        assert!(e[1].order_id().is_none());
        assert!(read_reply_entries(&Value::Nil).is_empty());
    }

    #[test]
    fn parses_stream_ids() {
        assert_eq!(
            parse_stream_id("1700000000000-3"),
            Some((1_700_000_000_000, 3))
        );
        assert_eq!(parse_stream_id("0-0"), Some((0, 0)));
        assert_eq!(parse_stream_id("x"), None);
    }
}
