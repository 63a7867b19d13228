//! slots' HTTP endpoint: the public list of slots. The booking ledger's endpoints come from
//! `shop_common::ledger`; slots has no errors of its own beyond the ledger's refusals and an
//! unreachable database (`ApiError::unexpected`: 503).

use crate::db;

shop_common::public_listing!(
    "/api/slots",
    "listSlots",
    shop_common::api::Slot,
    db::list_slots,
    "The delivery slots with the couriers still free in each."
);
