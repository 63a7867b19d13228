//! items' HTTP endpoint: the public catalog. The reservation ledger's endpoints come from
//! `shop_common::ledger`; items has no errors of its own beyond the ledger's refusals and an
//! unreachable database (`ApiError::unexpected`: 503).

use crate::db;

shop_common::public_listing!(
    "/api/items",
    "listItems",
    shop_common::api::Item,
    db::list_items,
    "The catalog: every item with its price and the stock left."
);
