//! A randomized check of the reservation ledger: many orders' reservations and releases, duplicated
//! and interleaved concurrently, must conserve stock exactly and leave every order in a state its
//! answers agree with. The property is the shared kit's (`testing::ledger::conservation`); items
//! brings its items, its stock sizes and the catalog the totals are checked through.

use crate::helpers::spawn_app;
use proptest::prelude::*;
use shop_common::testing::ledger::conservation::{self, Space};

/// Small stocks against up to 30 orders of 1 to 3 units, so items sell out often; 999 does not
/// exist.
static ITEMS: Space = Space::holds_and_releases(&["1", "2", "3"], "999", 0..=8, 1..=3);

proptest! {
    #![proptest_config(conservation::config())]

    #[test]
    fn reservations_conserve_stock(s in conservation::scenarios(&ITEMS)) {
        conservation::verify(&ITEMS, s, spawn_app);
    }
}
