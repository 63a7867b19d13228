//! The names the order API (publisher) and the mediator (consumer) must agree on: the orders
//! streams' names (configuration both read), the orders stream's entry, the dead-letter stream's
//! entry, and the channel announcing final orders.

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

/// The orders stream entry's one field: the order's id.
pub const FIELD: &str = "order_id";

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
