//! [`ledger_contract_tests!`](crate::ledger_contract_tests): the contract checks of the kit as
//! named tests of a participant that lists its resources ([`Listed`](super::Listed)), so that
//! items and slots state only their resources, not a copy of the same twenty tests.

/// Writes, in a module `ledger_contract`, one test per contract check of
/// `shop_common::testing::ledger`, each on a participant freshly started by
/// `spawn_on(database, available) -> Listed`:
///
/// - `resources`: two resources that exist (the second only for a replay with other terms);
/// - `quantity`: what one order takes of them;
/// - `unknown`: a well-formed resource that does not exist, and `malformed`: keys refused alike.
///
/// `spawn_on` must be a path that resolves from inside the new module (e.g. `crate::helpers::spawn_on`).
#[macro_export]
macro_rules! ledger_contract_tests {
    (
        spawn_on: $spawn_on:path,
        resources: [$resource:expr, $other:expr],
        quantity: $quantity:expr,
        unknown: $unknown:expr,
        malformed: $malformed:expr $(,)?
    ) => {
        /// The participant contract of `shop_common::testing::ledger`, on this participant.
        mod ledger_contract {
            use $crate::__ledger_check as check;
            use $crate::testing::{self, ledger, ledger::Listed, outage::Link};

            const RESOURCE: &str = $resource;
            const QUANTITY: i64 = $quantity;

            /// A fresh participant with `available` of every resource.
            async fn spawn(available: i64) -> Listed {
                $spawn_on(testing::fresh_database().await, available).await
            }

            check!(repeated_hold_takes_once(10 * QUANTITY, RESOURCE, QUANTITY));
            check!(repeated_release_gives_back_once(10 * QUANTITY, RESOURCE, QUANTITY));
            check!(release_before_hold_leaves_a_tombstone(10 * QUANTITY, RESOURCE, QUANTITY));
            check!(multi twenty_orders_race_for_the_last(QUANTITY, RESOURCE, QUANTITY));
            check!(multi the_same_hold_at_once_takes_once(1000, RESOURCE, QUANTITY));
            check!(multi the_same_release_at_once_gives_back_once(1000, RESOURCE, QUANTITY));
            // Regression: an action and compensations of the same order racing each other used to
            // deadlock, or trip a CHECK with a give-back computed from a stale snapshot.
            check!(multi holds_racing_their_releases_never_fail(3 * QUANTITY, RESOURCE, QUANTITY));
            check!(a_replay_with_other_terms_is_refused(10 * QUANTITY, RESOURCE, $other, QUANTITY));
            check!(a_batch_answers_each_order_as_its_own_action(10 * QUANTITY, RESOURCE, QUANTITY));
            check!(unknown_resources_are_rejected(10, $unknown, &$malformed));
            check!(an_exhausted_rejection_is_final(2, RESOURCE));
            check!(a_non_positive_quantity_is_a_bad_request(2, RESOURCE));
            check!(an_unknown_order_is_not_found(2));
            check!(the_ledger_requires_the_internal_token(2, RESOURCE));

            /// With its database down the participant answers 503 `unavailable`, its public list
            /// included, and recovers once the database is back.
            #[tokio::test]
            async fn a_database_outage_is_503_until_it_is_back() {
                let (link, database) = Link::to_database(&testing::fresh_database().await).await;
                let p = $spawn_on(database, 10 * QUANTITY).await;
                let public = p.list_request();
                ledger::a_database_outage_is_503_until_it_is_back(
                    &p, &link, public, RESOURCE, QUANTITY,
                )
                .await;
            }
        }
    };
}

/// One test of [`ledger_contract_tests!`](crate::ledger_contract_tests), named after its check,
/// which runs on a participant started by the caller's `spawn(available)`; `multi` for the checks
/// that send concurrent requests.
#[doc(hidden)]
#[macro_export]
macro_rules! __ledger_check {
    ($check:ident($available:expr $(, $arg:expr)*)) => {
        #[tokio::test]
        async fn $check() {
            $crate::testing::ledger::$check(&spawn($available).await $(, $arg)*).await;
        }
    };
    (multi $check:ident($available:expr $(, $arg:expr)*)) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            $crate::testing::ledger::$check(&spawn($available).await $(, $arg)*).await;
        }
    };
}
