//! A randomized check of the reservation ledger: many orders' reservations and releases, duplicated
//! and interleaved concurrently, must conserve stock exactly and leave every order in a state its
//! answers agree with. The property is the shared kit's (`testing::ledger::conservation`); items
//! brings its items, its stock sizes and the catalog the totals are checked through.

mod common;

use common::spawn_app;
use proptest::prelude::*;
use shop_common::testing::ledger::conservation::{self, Space, Weights};

/// Small stocks against up to 30 orders of 1 to 3 units, so items sell out often; 999 does not
/// exist.
static ITEMS: Space = Space {
    resources: &["1", "2", "3"],
    unknown: "999",
    initial: 0..=8,
    quantity: 1..=3,
    weights: Weights::HOLDS_AND_RELEASES,
};

proptest! {
    #![proptest_config(conservation::config())]

    #[test]
    fn reservations_conserve_stock(s in conservation::scenarios(&ITEMS)) {
        conservation::verify(&ITEMS, s, spawn_app);
    }
}
