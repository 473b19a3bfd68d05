//! `dig-operator`: parses flags, checks the cluster, then runs side by side the HTTP server
//! (`/healthz`, `/readyz`, `/metrics`), the sidecar-injection webhook (every replica) and the
//! controllers (only the replica holding the Lease).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use dig_core::logging::{LogOutput, init_tracing};
use dig_operator::{
    cli::Args,
    controller, crd_check,
    http::{self, Health},
    leader::{LeaderElector, LeaseConfig},
    metrics::Metrics,
    reconcile::{
        context::{Context, registry_stats_fetcher},
        validate::DefaultImages,
    },
    webhook,
};
use futures::FutureExt;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// How long the controllers get to finish once told to stop.
const CONTROLLER_STOP_GRACE: Duration = Duration::from_secs(20);

/// Runs the controllers until `until` completes, then waits at most [`CONTROLLER_STOP_GRACE`]:
/// a kube controller stopped before its caches filled can otherwise wait for them forever.
async fn run_controllers(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    until: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let deadline = {
        let until = until.clone();
        async move {
            until.await;
            tokio::time::sleep(CONTROLLER_STOP_GRACE).await;
        }
    };
    tokio::select! {
        () = controller::run(ctx, namespaces, until) => {}
        () = deadline => tracing::warn!(
            grace = ?CONTROLLER_STOP_GRACE,
            "the controllers did not stop in time; exiting without them"
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dig_core::crypto::install_crypto_provider();
    init_tracing(args.log_format, "info,kube=warn", LogOutput::Stdout);

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster service account, or KUBECONFIG)")?;
    crd_check::ensure_crds(&client).await?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let webhook_metrics = webhook::server::WebhookMetrics::register(
        registry.sub_registry_with_prefix("dig_operator"),
    );
    let registry = Arc::new(registry);
    let health = Arc::new(Health::default());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        .boxed()
        .shared()
    };
    let webhook_stop = stop_tx.clone();
    tokio::spawn(async move {
        dig_core::shutdown::shutdown_signal().await;
        stop_tx.send_replace(true);
    });

    let http_server = tokio::spawn(http::serve(
        args.metrics_listen,
        registry.clone(),
        health.clone(),
        stopped.clone(),
    ));
    let webhook_server = (!args.webhook.no_webhook).then(|| {
        let webhook_args = args.webhook.clone();
        let client = client.clone();
        let image = Some(args.default_sidecar_image.clone());
        let stopped = stopped.clone();
        let serving = Arc::new(webhook::server::ServingCert::default());
        let _ = health.webhook.set(serving.clone());
        tokio::spawn(async move {
            let result = webhook::run(
                &webhook_args,
                client,
                image,
                webhook_metrics,
                serving,
                stopped,
            )
            .await;
            if let Err(error) = &result {
                // Without its webhook the operator would look healthy while every labelled pod
                // is refused: stop, so the failure shows and the pod is restarted.
                tracing::error!(%error, "webhook server failed: shutting down");
                webhook_stop.send_replace(true);
            }
            result
        })
    });

    let identity = args.identity();
    let ctx = Arc::new(Context::new(
        client.clone(),
        DefaultImages {
            sidecar: args.default_sidecar_image.clone(),
            bootstrap: args.default_bootstrap_image.clone(),
        },
        metrics.clone(),
        &identity,
        registry_stats_fetcher(Duration::from_secs(args.registry_timeout_seconds.max(1))),
    ));
    health.started.store(true, Ordering::Relaxed);

    let lost_leadership = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let config = LeaseConfig::new(&args.lease_name, &namespace, &identity);
        tracing::info!(lease = %args.lease_name, %namespace, %identity, "waiting for the leader Lease");
        let (leading_tx, mut leading_rx) = watch::channel(false);
        let (elector_stop_tx, elector_stop_rx) = watch::channel(false);
        let elector = tokio::spawn(
            LeaderElector::new(client.clone(), config).run(leading_tx, elector_stop_rx),
        );
        let mut stop = stop_rx.clone();
        let became_leader = tokio::select! {
            result = leading_rx.wait_for(|leading| *leading) => result.is_ok(),
            _ = stop.wait_for(|stop| *stop) => false,
        };
        if became_leader {
            health.leading.store(true, Ordering::Relaxed);
            metrics.leader.set(1);
            // Reconcile until shutdown or until the Lease is lost (the process then exits and
            // is restarted as a candidate, like client-go's elector).
            let lost = {
                let mut rx = leading_rx.clone();
                async move {
                    let _ = rx.wait_for(|leading| !*leading).await;
                }
            };
            let until = futures::future::select(stopped.clone(), lost.boxed())
                .map(|_| ())
                .boxed()
                .shared();
            run_controllers(ctx, args.namespaces.clone(), until).await;
            health.leading.store(false, Ordering::Relaxed);
            metrics.leader.set(0);
        }
        // Stop campaigning; the elector releases the Lease if it still holds it.
        elector_stop_tx.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
        became_leader && !*stop_rx.borrow()
    } else {
        health.leading.store(true, Ordering::Relaxed);
        run_controllers(ctx, args.namespaces.clone(), stopped.clone()).await;
        false
    };

    let mut webhook_failure = None;
    if let Some(webhook) = webhook_server {
        match tokio::time::timeout(Duration::from_secs(15), webhook).await {
            Ok(Ok(Err(err))) => webhook_failure = Some(err),
            Ok(Err(err)) => tracing::error!(error = %err, "webhook task panicked"),
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), http_server).await;
    if let Some(err) = webhook_failure {
        return Err(anyhow::Error::new(err).context("the sidecar-injection webhook stopped"));
    }
    if lost_leadership {
        anyhow::bail!(
            "lost the leader Lease {}: stopped reconciling; restart to campaign again",
            args.lease_name
        );
    }
    Ok(())
}
