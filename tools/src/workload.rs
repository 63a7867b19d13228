//! What orders to send and what must come of them. An order is one of four kinds; each is built so
//! that exactly one saga step can fail, whatever order the mediator runs the steps in, so its
//! outcome is known in advance:
//!
//! | kind       | user | amount        | item          | slot          | expected                     |
//! |------------|------|---------------|---------------|---------------|------------------------------|
//! | `success`  | rich | small         | in stock      | has couriers  | completed, success, no reason|
//! | `no-money` | poor | > any wallet  | in stock      | has couriers  | failed, "Not enough money"   |
//! | `no-item`  | rich | small         | unknown id    | has couriers  | failed, "Can not reserve the item" |
//! | `no-slot`  | rich | small         | in stock      | unknown slot  | failed, "Can not get the delivery slot" |
//!
//! "Poor" users only ever get `no-money` orders, so their wallet never changes and the amount
//! (10,000.00) always exceeds it; "rich" users get deposits covering their `success` orders.

use crate::client::{CallError, ShopClient, User};
use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use rand::Rng;
use shop_common::{
    api::{CreateOrder, Details, OrderView},
    domain::{ItemId, Money, SlotTime},
};
use std::{collections::BTreeMap, fmt, str::FromStr};
use uuid::Uuid;

pub const NOT_ENOUGH_MONEY: &str = "Not enough money";
pub const CANNOT_RESERVE_ITEM: &str = "Can not reserve the item";
pub const NO_DELIVERY_SLOT: &str = "Can not get the delivery slot";

/// The amount of a `no-money` order: above any wallet a poor user can have.
pub const NO_MONEY_CENTS: i64 = 1_000_000;

/// The largest single deposit the API takes (1,000,000.00).
pub const MAX_DEPOSIT_CENTS: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrderKind {
    Success,
    NoMoney,
    NoItem,
    NoSlot,
}

impl OrderKind {
    pub const ALL: [OrderKind; 4] = [
        OrderKind::Success,
        OrderKind::NoMoney,
        OrderKind::NoItem,
        OrderKind::NoSlot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OrderKind::Success => "success",
            OrderKind::NoMoney => "no-money",
            OrderKind::NoItem => "no-item",
            OrderKind::NoSlot => "no-slot",
        }
    }

    /// The `reason` a failed order of this kind must carry; `None` for `success`.
    pub fn expected_reason(self) -> Option<&'static str> {
        match self {
            OrderKind::Success => None,
            OrderKind::NoMoney => Some(NOT_ENOUGH_MONEY),
            OrderKind::NoItem => Some(CANNOT_RESERVE_ITEM),
            OrderKind::NoSlot => Some(NO_DELIVERY_SLOT),
        }
    }

    /// `Ok` if a final `order` is what this kind must end as; else what is wrong.
    pub fn check(self, order: &OrderView) -> Result<(), String> {
        self.check_outcome(
            order.id,
            order.status.as_str(),
            order.success,
            order.reason.as_deref(),
        )
    }

    /// [`OrderKind::check`] on the parts of an order (as the API or the database has them).
    pub fn check_outcome(
        self,
        id: Uuid,
        status: &str,
        success: Option<bool>,
        reason: Option<&str>,
    ) -> Result<(), String> {
        let ok = match self.expected_reason() {
            None => status == "completed" && success == Some(true) && reason.is_none(),
            Some(expected) => {
                status == "failed" && success == Some(false) && reason == Some(expected)
            }
        };
        if ok {
            return Ok(());
        }
        let want = match self.expected_reason() {
            None => "completed".to_owned(),
            Some(r) => format!("failed with {r:?}"),
        };
        Err(format!(
            "{} order {id} ended {status} (success {success:?}, reason {reason:?}); expected {want}",
            self.name()
        ))
    }
}

named!(OrderKind, "order kind");

/// Relative weights of the kinds: `success=90,no-money=4,no-item=3,no-slot=3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: BTreeMap<OrderKind, u32>,
}

impl Mix {
    pub fn total(&self) -> u32 {
        self.weights.values().sum()
    }

    pub fn weight(&self, kind: OrderKind) -> u32 {
        self.weights.get(&kind).copied().unwrap_or(0)
    }

    pub fn share(&self, kind: OrderKind) -> f64 {
        f64::from(self.weight(kind)) / f64::from(self.total())
    }

    pub fn pick(&self, rng: &mut impl Rng) -> OrderKind {
        let mut roll = rng.random_range(0..self.total());
        for (&kind, &w) in &self.weights {
            if roll < w {
                return kind;
            }
            roll -= w;
        }
        OrderKind::Success
    }
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            weights: BTreeMap::from([
                (OrderKind::Success, 90),
                (OrderKind::NoMoney, 4),
                (OrderKind::NoItem, 3),
                (OrderKind::NoSlot, 3),
            ]),
        }
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected kind=weight"))?;
            let kind: OrderKind = kind.trim().parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            weights.insert(kind, weight);
        }
        let mix = Mix { weights };
        if mix.total() == 0 {
            return Err("the mix must have at least one positive weight".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(k, w)| format!("{k}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// What orders can ask for: the items in stock and slots with couriers (for `success`), and an item
/// id and a slot that do not exist (for `no-item`, `no-slot`).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub items: Vec<ItemId>,
    pub slots: Vec<SlotTime>,
    pub unknown_item: ItemId,
    pub unknown_slot: SlotTime,
    /// Units left over all items, couriers over all slots: bounds on `success` orders.
    pub total_stock: i64,
    pub total_couriers: i64,
}

impl Catalog {
    pub async fn fetch(client: &ShopClient) -> Result<Catalog> {
        let items = client.items().await.context("reading the catalog")?;
        let slots = client.slots().await.context("reading the slots")?;
        let all_items: Vec<i64> = items.iter().map(|i| i.id.get()).collect();
        let all_slots: Vec<String> = slots.iter().map(|s| s.slot.to_string()).collect();
        let in_stock: Vec<ItemId> = items.iter().filter(|i| i.stock > 0).map(|i| i.id).collect();
        let free: Vec<SlotTime> = slots
            .iter()
            .filter(|s| s.free_couriers > 0)
            .map(|s| s.slot.clone())
            .collect();
        if in_stock.is_empty() || free.is_empty() {
            bail!(
                "nothing to order: {} items in stock, {} slots with couriers",
                in_stock.len(),
                free.len()
            );
        }
        Ok(Catalog {
            items: in_stock,
            slots: free,
            unknown_item: ItemId::try_from(unknown_item(&all_items))
                .map_err(anyhow::Error::msg)
                .context("an item id that is not in the catalog")?,
            unknown_slot: SlotTime::try_from(unknown_slot(&all_slots))
                .map_err(anyhow::Error::msg)
                .context("a slot time that is not a slot")?,
            total_stock: items.iter().map(|i| i.stock).sum(),
            total_couriers: slots.iter().map(|s| s.free_couriers).sum(),
        })
    }
}

/// 999 unless taken, else one past the largest id.
fn unknown_item(ids: &[i64]) -> i64 {
    if !ids.contains(&999) {
        999
    } else {
        ids.iter().max().copied().unwrap_or(0) + 1000
    }
}

/// A well-formed "HH:MM" that is not a slot: "19:00" unless taken.
fn unknown_slot(slots: &[String]) -> String {
    let taken = |s: &str| slots.iter().any(|t| t == s);
    std::iter::once("19:00".to_owned())
        .chain((0..24).flat_map(|h| (0..60).map(move |m| format!("{h:02}:{m:02}"))))
        .find(|s| !taken(s))
        .unwrap_or_else(|| "23:59".to_owned())
}

/// The users orders are sent as (see the module docs).
#[derive(Debug, Clone)]
pub struct Population {
    pub rich: Vec<User>,
    pub poor: Vec<User>,
}

/// Builds orders of a kind from a catalog and a population.
#[derive(Debug, Clone)]
pub struct Planner {
    pub catalog: Catalog,
    pub users: Population,
    /// Amounts of the orders that should be charged, in cents (inclusive range).
    pub amount_cents: (i64, i64),
}

impl Planner {
    /// The user and the order for one order of `kind`. A population without poor users sends
    /// `no-money` orders from a rich one (only right if its wallet is small). `rich` must not be
    /// empty.
    pub fn plan(&self, kind: OrderKind, rng: &mut impl Rng) -> (User, CreateOrder) {
        let item = self.catalog.items[rng.random_range(0..self.catalog.items.len())];
        let slot = self.catalog.slots[rng.random_range(0..self.catalog.slots.len())].clone();
        let (lo, hi) = self.amount_cents;
        let amount = rng.random_range(lo..=hi.max(lo));
        let rich = pick(&self.users.rich, rng);
        let order = |amount_cents, item, slot| CreateOrder {
            amount: Money::from_minor(amount_cents),
            details: Details { item, slot },
        };
        match kind {
            OrderKind::Success => (rich, order(amount, item, slot)),
            OrderKind::NoMoney => {
                let poor = if self.users.poor.is_empty() {
                    rich
                } else {
                    pick(&self.users.poor, rng)
                };
                (poor, order(NO_MONEY_CENTS, item, slot))
            }
            OrderKind::NoItem => (rich, order(amount, self.catalog.unknown_item, slot)),
            OrderKind::NoSlot => (rich, order(amount, item, self.catalog.unknown_slot.clone())),
        }
    }
}

fn pick<R: Rng + ?Sized>(users: &[User], rng: &mut R) -> User {
    users[rng.random_range(0..users.len())].clone()
}

/// Signs up and logs in `n` users named `<prefix><i>`, `concurrency` at a time (sign-up hashes a
/// password with Argon2: CPU-heavy on the auth side).
pub async fn register_users(
    client: &ShopClient,
    prefix: &str,
    n: usize,
    concurrency: usize,
    password: &str,
) -> Result<Vec<User>, CallError> {
    stream::iter(0..n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            async move { client.register(&name, password).await }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Deposits `total_cents` into each user's wallet (in chunks the API accepts), `concurrency` users
/// at a time; each chunk has an Idempotency-Key, so a retried one applies once.
pub async fn top_up(
    client: &ShopClient,
    users: &[User],
    total_cents: i64,
    concurrency: usize,
) -> Result<(), CallError> {
    stream::iter(users)
        .map(|user| async move {
            let mut left = total_cents;
            let mut chunk = 0;
            while left > 0 {
                let amount = left.min(MAX_DEPOSIT_CENTS);
                let key = format!("top-up-{}-{chunk}", user.username);
                let mut tries = 0;
                loop {
                    tries += 1;
                    match client.deposit(user, amount, Some(&key)).await {
                        Ok(_) => break,
                        Err(e) if e.is_transient() && tries < 20 => {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                left -= amount;
                chunk += 1;
            }
            Ok(())
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mixes_parse_and_print() {
        let mix: Mix = "success=90,no-money=4,no-item=3,no-slot=3".parse().unwrap();
        assert_eq!(mix, Mix::default());
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.to_string(), "success=90,no-money=4,no-item=3,no-slot=3");
        let only: Mix = "no-slot=1".parse().unwrap();
        assert_eq!(only.share(OrderKind::NoSlot), 1.0);
        for bad in ["", "success", "success=x", "bogus=1", "success=0"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix: Mix = "success=3,no-item=1".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 40_000;
        let successes = (0..n)
            .filter(|_| mix.pick(&mut rng) == OrderKind::Success)
            .count();
        let share = successes as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn unknown_values_avoid_the_catalog() {
        assert_eq!(unknown_item(&[1, 2, 3]), 999);
        assert_eq!(unknown_item(&[999, 5]), 1999);
        assert_eq!(unknown_slot(&["09:00".into()]), "19:00");
        assert_eq!(unknown_slot(&["19:00".into(), "00:00".into()]), "00:01");
    }
}
