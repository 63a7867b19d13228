//! The names the order API (publisher) and the mediator (consumer) must agree on: the orders
//! streams' names (configuration both read), the orders stream's entry ([`Terms`] and its
//! fields), the dead-letter stream's entry, and the channel announcing final orders.

use shop_common::domain::Money;
use uuid::Uuid;

/// The streams' names, from the environment of both services: the order API publishes on the
/// orders stream and shows the dead letters to operators, the mediator consumes the one and
/// writes the other.
#[derive(Debug, Clone, clap::Args)]
pub struct Streams {
    /// The saga stream: the order API publishes new orders on it, the mediator consumes it.
    #[arg(long, env, default_value = "orders")]
    pub orders_stream: String,
    /// Where an entry that keeps failing or is malformed is copied before its `XACK` (its order,
    /// if any, compensated and failed).
    #[arg(long, env, default_value = "orders.dead")]
    pub dead_letter_stream: String,
}

/// The orders stream entry's field every entry has: the order's id. An entry with nothing else
/// (the sweep's re-publication, a cancel) asks the mediator to read the order.
pub const FIELD: &str = "order_id";

/// What a saga needs of its order: who pays how much for which item in which slot. The entry the
/// order API adds when it stores a new order carries them ([`Terms::fields`]), so that the
/// mediator's first run of it does not read the order back — the order was `pending` when it was
/// published, and a run that finds it has moved on since (a cancel, another run) loses its guarded
/// transition and follows what is recorded, as after any lost race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub id: Uuid,
    pub username: String,
    pub amount: Money,
    pub item: i64,
    pub slot: String,
}

/// The terms' fields, next to [`FIELD`].
mod terms {
    pub const USERNAME: &str = "username";
    /// Minor units (cents), as the database stores them.
    pub const AMOUNT: &str = "amount";
    pub const ITEM: &str = "item";
    pub const SLOT: &str = "slot";
}

impl Terms {
    /// The entry announcing a new order.
    pub fn fields(&self) -> [(&'static str, String); 5] {
        [
            (FIELD, self.id.to_string()),
            (terms::USERNAME, self.username.clone()),
            (terms::AMOUNT, self.amount.minor().to_string()),
            (terms::ITEM, self.item.to_string()),
            (terms::SLOT, self.slot.clone()),
        ]
    }

    /// The terms an entry carries, if it carries them all, well formed.
    pub fn from_fields(fields: &[(String, String)]) -> Option<Self> {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        Some(Self {
            id: Uuid::parse_str(field(FIELD)?).ok()?,
            username: field(terms::USERNAME)?.to_owned(),
            amount: field(terms::AMOUNT)?
                .parse::<i64>()
                .ok()
                .filter(|minor| *minor > 0)
                .map(Money::from_minor)?,
            item: field(terms::ITEM)?.parse().ok()?,
            slot: field(terms::SLOT)?.to_owned(),
        })
    }
}

/// The fields of a dead-letter entry: the order (empty when the entry had no valid one), the
/// orders-stream entry it came from, why it was dead-lettered, and that entry's fields as JSON.
pub mod dead_letter {
    pub const ORDER_ID: &str = "order_id";
    pub const STREAM_ID: &str = "stream_id";
    pub const REASON: &str = "reason";
    pub const PAYLOAD: &str = "payload";
}

/// The pub/sub channel on which the mediator announces orders that reached a final state.
pub fn final_channel(stream: &str) -> String {
    format!("{stream}.final")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(fields: &[(&str, String)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn terms_travel_in_an_entry_unchanged() {
        let terms = Terms {
            id: Uuid::now_v7(),
            username: "ann".into(),
            amount: Money::from_minor(1234),
            item: 3,
            slot: "10:00".into(),
        };
        let fields = owned(&terms.fields());
        assert_eq!(Terms::from_fields(&fields), Some(terms));
    }

    #[test]
    fn an_entry_without_every_term_has_none() {
        let id = Uuid::now_v7().to_string();
        assert_eq!(Terms::from_fields(&owned(&[(FIELD, id.clone())])), None);
        let no_amount = owned(&[
            (FIELD, id),
            (terms::USERNAME, "ann".into()),
            (terms::AMOUNT, "0".into()),
            (terms::ITEM, "3".into()),
            (terms::SLOT, "10:00".into()),
        ]);
        assert_eq!(Terms::from_fields(&no_amount), None);
    }
}
