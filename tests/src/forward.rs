//! Forwarding a store's seams: [`forward_seams!`](crate::forward_seams) implements the seams a
//! test's wrapper store leaves alone by calling the same method of the store it wraps, so the
//! wrapper writes only the seam it changes (a store that holds some calls at a gate, say).
//!
//! What it does not do: forward part of a seam. A wrapper that changes one method writes that
//! seam whole, so what it changes stays in plain sight.

/// Implements the named seams for `$wrapper` by forwarding every method to its field `$field`,
/// itself a store: `forward_seams!(GatedStore => inner: Sales, Orders, OrderQueue, SeedLocks,
/// Audit, Rooms);`. The seams' default methods are forwarded too, so the wrapper behaves as the store
/// it wraps in everything it does not write itself.
#[macro_export]
macro_rules! forward_seams {
    ($wrapper:ty => $field:ident: $($seam:ident),+ $(,)?) => {
        $( $crate::forward_seams!(@$seam $wrapper, $field); )+
    };
    (@Stock $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::stock::Ledger;
            use ::flashgate_core::warehouse::store::{Stock, StoreResult};
            impl Stock for $w {
                async fn put_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
                    self.$f.put_stock(sku, total).await
                }
                async fn available(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
                    self.$f.available(skus).await
                }
                async fn ledger(&self, sku: i64) -> StoreResult<Option<Ledger>> {
                    self.$f.ledger(sku).await
                }
                async fn skus(&self) -> StoreResult<Vec<i64>> {
                    self.$f.skus().await
                }
            }
        };
    };
    (@Sales $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::stock::{Sale, SaleState};
            use ::flashgate_core::warehouse::store::{Sales, StoreResult};
            impl Sales for $w {
                async fn put_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
                    self.$f.put_sale(sale).await
                }
                async fn sale(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
                    self.$f.sale(event_id).await
                }
                async fn sales_of(&self, sku: i64) -> StoreResult<Vec<i64>> {
                    self.$f.sales_of(sku).await
                }
                async fn sales_ending_from(&self, from_ms: i64) -> StoreResult<Vec<i64>> {
                    self.$f.sales_ending_from(from_ms).await
                }
            }
        };
    };
    (@Orders $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::stock::{BuyDecision, BuyRequest, Order, PayRequest};
            use ::flashgate_core::warehouse::store::{Orders, StoreResult};
            impl Orders for $w {
                async fn buy(&self, req: &BuyRequest, now_ms: i64) -> StoreResult<BuyDecision> {
                    self.$f.buy(req, now_ms).await
                }
                async fn order(&self, order_no: &str) -> StoreResult<Option<Order>> {
                    self.$f.order(order_no).await
                }
                async fn pay(&self, req: &PayRequest, now_ms: i64) -> StoreResult<Order> {
                    self.$f.pay(req, now_ms).await
                }
                async fn cancel(
                    &self,
                    order_no: &str,
                    user_id: &str,
                    now_ms: i64,
                ) -> StoreResult<Order> {
                    self.$f.cancel(order_no, user_id, now_ms).await
                }
                async fn expire_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
                    self.$f.expire_due(now_ms, limit).await
                }
                async fn close_ended(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
                    self.$f.close_ended(now_ms).await
                }
            }
        };
    };
    (@OrderQueue $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::stock::Win;
            use ::std::time::Duration;
            use ::flashgate_core::warehouse::store::{OrderQueue, StoreResult};
            impl OrderQueue for $w {
                async fn read_wins(
                    &self,
                    consumer: &str,
                    count: usize,
                    block: Duration,
                ) -> StoreResult<Vec<Win>> {
                    self.$f.read_wins(consumer, count, block).await
                }
                async fn reclaim_wins(
                    &self,
                    consumer: &str,
                    min_idle: Duration,
                    count: usize,
                ) -> StoreResult<Vec<Win>> {
                    self.$f.reclaim_wins(consumer, min_idle, count).await
                }
                async fn create_order(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
                    self.$f.create_order(win, now_ms).await
                }
                async fn ack_win(&self, win: &Win) -> StoreResult<()> {
                    self.$f.ack_win(win).await
                }
                async fn settle_wins(&self, wins: &[Win], now_ms: i64) -> StoreResult<Vec<bool>> {
                    self.$f.settle_wins(wins, now_ms).await
                }
            }
        };
    };
    (@SeedLocks $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::stock::audit::LockSnapshot;
            use ::flashgate_core::stock::lock::{LockRecords, LockRepairs};
            use ::flashgate_core::stock::LockRequest;
            use ::std::time::Duration;
            use ::flashgate_core::warehouse::store::{SeedLocks, StoreResult};
            impl SeedLocks for $w {
                async fn lock(&self, req: &LockRequest) -> StoreResult<()> {
                    self.$f.lock(req).await
                }
                async fn unlock(&self, order_id: i64, finish: bool) -> StoreResult<()> {
                    self.$f.unlock(order_id, finish).await
                }
                async fn repair_locks(&self, older_than: Duration) -> StoreResult<LockRepairs> {
                    self.$f.repair_locks(older_than).await
                }
                async fn locks(&self) -> StoreResult<Vec<LockSnapshot>> {
                    self.$f.locks().await
                }
                async fn lock_records(&self) -> StoreResult<LockRecords> {
                    self.$f.lock_records().await
                }
            }
        };
    };
    (@Rooms $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::admission::Rules;
            use ::flashgate_core::stock::room::{Joined, Moved, Place};
            use ::flashgate_core::stock::Sale;
            use ::flashgate_core::warehouse::store::{Rooms, StoreResult};
            impl Rooms for $w {
                async fn put_room(&self, sale: &Sale, rules: Option<&Rules>) -> StoreResult<()> {
                    self.$f.put_room(sale, rules).await
                }
                async fn room(&self, event_id: i64) -> StoreResult<Option<Rules>> {
                    self.$f.room(event_id).await
                }
                async fn join_room(
                    &self,
                    event_id: i64,
                    user: &str,
                    secret: &[u8],
                    now_ms: i64,
                ) -> StoreResult<Joined> {
                    self.$f.join_room(event_id, user, secret, now_ms).await
                }
                async fn move_room(&self, event_id: i64, now_ms: i64) -> StoreResult<Moved> {
                    self.$f.move_room(event_id, now_ms).await
                }
                async fn claim_room(
                    &self,
                    event_id: i64,
                    user: &str,
                    now_ms: i64,
                ) -> StoreResult<Place> {
                    self.$f.claim_room(event_id, user, now_ms).await
                }
                async fn open_rooms(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
                    self.$f.open_rooms(now_ms).await
                }
            }
        };
    };
    (@Audit $w:ty, $f:ident) => {
        const _: () = {
            use ::flashgate_core::stock::audit::SkuSnapshot;
            use ::flashgate_core::warehouse::store::{Audit, StoreResult};
            impl Audit for $w {
                async fn snapshot(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
                    self.$f.snapshot(sku).await
                }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use flashgate_core::warehouse::store::{MemoryStore, Stock, Store};

    /// Every seam forwarded: the wrapper is a store, and acts on the store it wraps.
    #[derive(Clone)]
    struct Wrapped {
        inner: MemoryStore,
    }

    crate::forward_seams!(Wrapped => inner: Stock, Sales, Orders, OrderQueue, SeedLocks, Audit, Rooms);

    async fn put_through<S: Store>(store: &S) {
        store.put_stock(1, 7).await.expect("put stock");
    }

    #[tokio::test]
    async fn a_wrapper_forwarding_every_seam_is_the_store_it_wraps() {
        let inner = MemoryStore::new();
        put_through(&Wrapped {
            inner: inner.clone(),
        })
        .await;
        assert_eq!(inner.available(&[1]).await.unwrap(), vec![Some(7)]);
    }
}
