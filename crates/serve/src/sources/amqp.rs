//! OpenStack notifications from RabbitMQ (AMQP 0-9-1, lapin), as oslo.messaging publishes
//! them: topic exchanges (default `nova` and `neutron`), routing keys `versioned_notifications.info` and
//! `notifications.info`, consumed from a durable queue of pugmark's own.
//!
//! Each delivery is acknowledged to the broker only once the writer returned its `Durable`:
//! a crash before that leaves it in the queue, and the broker redelivers it; the writer
//! recognises a redelivery of something already stored (same bytes — oslo messages carry a
//! unique `message_id`) and acknowledges it without storing it twice. The prefetch window
//! ([`PREFETCH`] unacknowledged deliveries) is the backpressure: a slow disk holds acks back,
//! and the broker stops sending. A lost connection is retried with exponential backoff
//! (1 s doubling to 30 s). A body that is not JSON is stored raw all the same, counted and
//! acknowledged: the ledger keeps evidence, it does not judge it.
//!
//! The exchange is declared the way oslo.messaging declares it (topic, not durable, the
//! default `amqp_durable_queues=False`) so that whichever side comes first, the other's
//! declaration matches.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use model::{Format, Origin, Received};
use tokio::sync::oneshot;

use crate::config::AmqpConfig;
use crate::metrics::Listener;
use crate::senders::{Mapped, Proof};
use crate::sources::{Ctx, record};
use crate::writer::Submission;

const L: Listener = Listener::Amqp;
/// Unacknowledged deliveries the broker may send us.
pub const PREFETCH: u16 = 1000;

/// The broker's `host:port` from an amqp URL, for origins and logs (no credentials).
pub fn broker(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The URL lapin needs: an empty vhost path (`amqp://host:5672/` or no path) means the
/// default vhost `/`, as oslo.messaging and kombu read it; lapin wants it spelled `%2f`.
pub fn lapin_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    match rest.split_once('/') {
        None => format!("{scheme}://{rest}/%2f"),
        Some((auth, "")) => format!("{scheme}://{auth}/%2f"),
        Some(_) => url.to_string(),
    }
}

pub async fn serve(cfg: AmqpConfig, ctx: Ctx) {
    let mut backoff = Duration::from_secs(1);
    let broker = broker(&cfg.url);
    // The broker is the sender: the admin configured it and we log in with its credentials
    // (the built-in entry maps it to `cloud`; the site's map may say otherwise or refuse it).
    let Some(who) = ctx.door(&Proof {
        listener: L,
        ip: None,
        cert: None,
        token: None,
    }) else {
        eprintln!("pugmark serve: amqp: the sender map refuses the broker {broker}; not consuming");
        return;
    };
    loop {
        match consume(&cfg, &ctx, &broker, &who).await {
            Ok(()) => {
                ctx.metrics
                    .problem(L, "consumer ended", &format!("{broker}: reconnecting"));
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                ctx.metrics.problem(
                    L,
                    "broker connection failed",
                    &format!("{broker}: {e}; retrying in {} s", backoff.as_secs()),
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn consume(cfg: &AmqpConfig, ctx: &Ctx, broker: &str, who: &Mapped) -> lapin::Result<()> {
    let conn = Connection::connect(&lapin_url(&cfg.url), ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    ch.queue_declare(
        cfg.queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    for ex in &cfg.exchanges {
        ch.exchange_declare(
            ex.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for key in &cfg.routing_keys {
            ch.queue_bind(
                cfg.queue.as_str().into(),
                ex.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
    }
    let mut consumer = ch
        .basic_consume(
            cfg.queue.as_str().into(),
            "pugmark".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    eprintln!(
        "pugmark serve: amqp: consuming {} from {broker} (exchanges {:?}, keys {:?})",
        cfg.queue, cfg.exchanges, cfg.routing_keys
    );
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let received = Received::now();
        let origin = Origin::Peer {
            addr: format!(
                "{broker}/{}/{}",
                delivery.exchange.as_str(),
                delivery.routing_key.as_str()
            ),
            listener: L.name().into(),
        };
        if serde_json::from_slice::<serde::de::IgnoredAny>(&delivery.data).is_err() {
            ctx.metrics.listener(L).parse_errors.fetch_add(1, Relaxed);
            ctx.metrics.problem(
                L,
                "message is not JSON",
                &format!("on {}, stored raw", delivery.routing_key.as_str()),
            );
        }
        let sender = format!(
            "{}/{}",
            delivery.exchange.as_str(),
            delivery.routing_key.as_str()
        );
        ctx.metrics.seen_as(L, &sender, who, 1, received);
        let rec = record(
            ctx,
            L,
            &origin,
            who.observer,
            received,
            Format::OpenstackNotification,
            delivery.data,
        );
        let (ack, wait) = oneshot::channel();
        if ctx
            .tx
            .send(Submission {
                listener: L,
                records: vec![rec],
                ack: Some(ack),
                share: None,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
        let acker = delivery.acker;
        // Ack once durable, without holding up the next delivery (group commit gathers them).
        tokio::spawn(async move {
            if let Ok(Ok(_durable)) = wait.await {
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
            // Not durable: no ack; the broker redelivers after the channel closes.
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn broker_address_without_credentials() {
        assert_eq!(
            super::broker("amqp://guest:guest@127.0.0.1:20672/%2f"),
            "127.0.0.1:20672"
        );
        assert_eq!(super::broker("amqp://rabbit:5672"), "rabbit:5672");
        assert_eq!(
            super::lapin_url("amqp://rabbit:5672"),
            "amqp://rabbit:5672/%2f"
        );
        assert_eq!(super::lapin_url("amqp://u:p@h:1/"), "amqp://u:p@h:1/%2f");
        assert_eq!(super::lapin_url("amqp://h:1/site"), "amqp://h:1/site");
    }
}
