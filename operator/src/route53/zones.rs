//! Which hosted zone a hostname's records go into: the one the spec names, else the zone whose
//! name is the longest suffix of the hostname. Answers are kept for a while: Route53 allows five
//! API calls per second per account, and zones rarely move.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{
    client::{Action, AwsClient, AwsError, AwsErrorKind},
    model::{HostedZone, normalize_name},
};

/// How long a zone lookup is reused.
const ZONE_TTL: Duration = Duration::from_secs(600);

/// A hostname and the zone id the spec names for it, if any.
type ZoneKey = (String, Option<String>);

#[derive(Default)]
pub struct ZoneCache {
    zones: Mutex<HashMap<ZoneKey, (Instant, HostedZone)>>,
}

/// The names a hostname's zone may have, longest first: `a.b.example.com` gives
/// `a.b.example.com`, `b.example.com`, `example.com`.
pub fn candidate_zone_names(hostname: &str) -> Vec<String> {
    let labels: Vec<&str> = hostname.trim_end_matches('.').split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

/// Whether `hostname` lies in the zone named `zone`.
pub fn is_in_zone(hostname: &str, zone: &str) -> bool {
    let hostname = normalize_name(hostname);
    let zone = normalize_name(zone);
    hostname == zone || hostname.ends_with(&format!(".{zone}"))
}

impl ZoneCache {
    pub async fn zone_for(
        &self,
        client: &AwsClient,
        hostname: &str,
        zone_id: Option<&str>,
    ) -> Result<HostedZone, AwsError> {
        let key = (hostname.to_string(), zone_id.map(str::to_string));
        if let Some((at, zone)) = self.zones.lock().expect("zone cache lock").get(&key)
            && at.elapsed() < ZONE_TTL
        {
            return Ok(zone.clone());
        }
        let zone = match zone_id {
            Some(id) => {
                let zone = client
                    .hosted_zone(id.trim_start_matches("/hostedzone/"))
                    .await?;
                if !is_in_zone(hostname, &zone.name) {
                    return Err(AwsError {
                        action: Action::GetHostedZone,
                        subject: format!("hosted zone {id}"),
                        kind: AwsErrorKind::HostedZoneNotFound,
                        message: format!(
                            "{hostname} is not in hosted zone {id} ({}); set spec.dns.route53.hostedZoneId to its zone",
                            zone.name
                        ),
                    });
                }
                zone
            }
            None => self.find(client, hostname).await?,
        };
        self.zones
            .lock()
            .expect("zone cache lock")
            .insert(key, (Instant::now(), zone.clone()));
        Ok(zone)
    }

    async fn find(&self, client: &AwsClient, hostname: &str) -> Result<HostedZone, AwsError> {
        let candidates = candidate_zone_names(hostname);
        for name in &candidates {
            let mut zones = client.hosted_zones_named(name).await?;
            match zones.len() {
                0 => continue,
                1 => return Ok(zones.remove(0)),
                _ => {
                    return Err(AwsError {
                        action: Action::ListHostedZonesByName,
                        subject: format!("zone name {name}"),
                        kind: AwsErrorKind::HostedZoneNotFound,
                        message: format!(
                            "{} hosted zones are named {name} ({}): set spec.dns.route53.hostedZoneId",
                            zones.len(),
                            zones
                                .iter()
                                .map(|z| z.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
        }
        Err(AwsError {
            action: Action::ListHostedZonesByName,
            subject: format!("zone of {hostname}"),
            kind: AwsErrorKind::HostedZoneNotFound,
            message: format!(
                "no hosted zone for {hostname} (looked for {})",
                candidates.join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_candidates_are_the_suffixes_longest_first() {
        assert_eq!(
            candidate_zone_names("a.b.example.com"),
            ["a.b.example.com", "b.example.com", "example.com"]
        );
        assert!(is_in_zone("bootstrap.dig.example.com.", "example.com"));
        assert!(is_in_zone("example.com", "example.com."));
        assert!(!is_in_zone("bootstrap.notexample.com", "example.com"));
    }
}
