//! Fixtures for `scripts/bench/edge.sh worker`: creates two sales at a running warehouse — sale 1
//! open with a large pool, sale 2 open and already sold out — and prints, as shell assignments,
//! a user token and a purchase link for each, minted with the keys the bench gives the Worker.
//!
//! Usage: `worker_bench_fixture GRPC_ADDR USER_TOKEN_KEY LINK_KEYS`

use flashgate_core::identity::{Identity, TokenPolicy, UserKeys};
use flashgate_core::link::{self, KeyRing, LinkClaims};
use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, seckill_client::SeckillClient, BuyReq, Event, PutSkuStockReq,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, user_key, link_keys] = args.as_slice() else {
        anyhow::bail!("usage: worker_bench_fixture GRPC_ADDR USER_TOKEN_KEY LINK_KEYS");
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut admin = AdminClient::new(channel.clone());
    let now = now_ms();
    for (id, sku, pool) in [(1, 9001, 1_000_000), (2, 9002, 1)] {
        admin
            .put_sku_stock(PutSkuStockReq {
                sku_id: sku,
                num: pool,
            })
            .await?;
        admin
            .put_event(Event {
                id,
                sku_id: sku,
                pool,
                start_ms: now - 1_000,
                end_ms: now + 3_600_000,
                // The forwarded-buy bench repeats one link: the same idempotent purchase.
                per_user_limit: 1,
                pay_window_ms: 600_000,
                subpools: 0,
                price: 1999,
                currency: "EUR".into(),
                ..Default::default()
            })
            .await?;
    }
    // Sale 2's only unit goes to someone else.
    SeckillClient::new(channel)
        .buy(BuyReq {
            event_id: 2,
            user_id: "early-bird".into(),
            qty: 1,
            request_id: "early-bird".into(),
        })
        .await?;
    let keys = UserKeys::single(user_key.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let identity = Identity::new(keys, TokenPolicy::default(), false);
    let ring = KeyRing::parse(link_keys).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, event, sku, user) in [
        ("BUY", 1, 9001, "bench-buyer"),
        ("SOLDOUT", 2, 9002, "bench-late"),
    ] {
        let claims = LinkClaims {
            event_id: event,
            sku_id: sku,
            user_id: user.into(),
            max_qty: 1,
            not_before_ms: now - 1_000,
            expires_ms: now + 3_600_000,
            nonce: [event as u8; 16],
        };
        let token = link::mint(&ring, &claims, now).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        println!("{name}_PATH=/api/buy/{token}");
        println!("{name}_TOKEN={}", identity.mint(user, now, 3_600_000));
    }
    Ok(())
}
