//! A randomized check of the booking ledger: many orders' bookings and releases, duplicated and
//! interleaved concurrently, must conserve couriers exactly and leave every order in a state its
//! answers agree with. The property is the shared kit's (`testing::ledger::conservation`); slots
//! brings its slots, its capacities and the slot list the totals are checked through.

use crate::helpers::spawn_app;
use proptest::prelude::*;
use shop_common::testing::ledger::conservation::{self, Space};

/// Few couriers against up to 30 orders of 1 or 2, so slots fill up often; "19:00" is a
/// well-formed time that is not served.
static SLOTS: Space =
    Space::holds_and_releases(&["00:00", "01:00", "02:00"], "19:00", 0..=8, 1..=2);

proptest! {
    #![proptest_config(conservation::config())]

    #[test]
    fn bookings_conserve_couriers(s in conservation::scenarios(&SLOTS)) {
        conservation::verify(&SLOTS, s, spawn_app);
    }
}
