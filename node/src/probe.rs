//! `cercle-node probe`: asks a node, through the standard gRPC health service, whether it
//! serves the ledger; exit 0 when it does. For container health checks and monitoring, so
//! that an image needs no other tool.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The service whose health is asked.
const LEDGER_SERVICE: &str = "cercle.v1.Ledger";

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The node's URL (https:// for TLS)
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50051", env = "CERCLE_NODE")]
    node: String,
    /// Trust this CA certificate (PEM) besides the system's roots
    #[arg(long, value_name = "FILE", env = "CERCLE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The name the node's certificate must hold, when it is not the URL's host
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    /// Give up after this long, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
}

pub async fn probe(args: ProbeArgs) -> Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut endpoint = Endpoint::from_shared(args.node.clone())
        .map_err(|e| anyhow!("invalid node URL '{}': {e}", args.node))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if args.node.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some(name) = &args.tls_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| anyhow!("TLS: {e}"))?;
    }
    let channel =
        endpoint.connect().await.map_err(|e| anyhow!("cannot reach {}: {}", args.node, chain(&e)))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest { service: LEDGER_SERVICE.into() })
        .await
        .map_err(|s| anyhow!("{} answered the health check with {:?}: {}", args.node, s.code(), s.message()))?
        .into_inner();
    match ServingStatus::try_from(answer.status) {
        Ok(ServingStatus::Serving) => {
            println!("{} serves {LEDGER_SERVICE}", args.node);
            Ok(())
        }
        Ok(other) => bail!("{} does not serve {LEDGER_SERVICE}: {}", args.node, other.as_str_name()),
        Err(_) => bail!("{} answered an unknown health status {}", args.node, answer.status),
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}
