//! Wake-ups from other instances: a connection that `LISTEN`s on the events channel and bumps
//! a counter for every notification, and also when the connection was lost and came back
//! (notifications sent meanwhile are gone, so whoever follows must look).

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::jobs::store::StoreError;

/// The channel every event transaction notifies.
pub(super) const CHANNEL: &str = "offstage_events";

/// Listens until `closed`; the receiver changes whenever there may be new events.
pub(super) async fn start(
    options: PgConnectOptions,
    closed: CancellationToken,
) -> Result<watch::Receiver<u64>, StoreError> {
    // A pool of one, so the listener reconnects by itself; named, so an operator (or a test)
    // can tell it apart in `pg_stat_activity`.
    let pool: PgPool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.application_name("offstage-listen"))
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    let (wake, wakeups) = watch::channel(0_u64);
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                () = closed.cancelled() => break,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(_notification)) => {}
                // The connection dropped; the next call reconnects and listens again.
                Ok(None) => tracing::debug!("event listener reconnecting"),
                Err(error) => {
                    tracing::warn!(%error, "event listener failed; polling until it is back");
                    tokio::select! {
                        () = closed.cancelled() => break,
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                }
            }
            wake.send_modify(|count| *count = count.wrapping_add(1));
        }
        pool.close().await;
    });
    Ok(wakeups)
}
